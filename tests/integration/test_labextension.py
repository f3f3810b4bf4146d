"""The JupyterLab extension's own unit tests (status bar words and levels, the report as text), run
with node's test runner on the compiled TypeScript. images/build.sh (and so scripts/test) compiles it
first; by hand: cd platform/jupyterlab-gpuhub && npm install && npm run build."""

import shutil
import subprocess

import pytest

from tests.hubprocess import REPO

EXTENSION = REPO / "platform" / "jupyterlab-gpuhub"


def test_extension_unit_tests_pass():
    if not shutil.which("node"):
        pytest.fail("node is missing: apt-get install nodejs (or run `bash scripts/test`)", pytrace=False)
    if not (EXTENSION / "lib" / "format.js").exists():
        pytest.fail("the extension is not compiled: cd platform/jupyterlab-gpuhub && npm install && npm run build", pytrace=False)
    result = subprocess.run(["node", "--test", "test/"], cwd=EXTENSION, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "# fail 0" in result.stdout and "# pass 0" not in result.stdout


def test_the_built_extension_is_what_the_wheel_ships():
    built = REPO / "platform" / "gpuhub" / "labextension" / "package.json"
    if not built.exists():
        pytest.fail("the extension is not built: cd platform/jupyterlab-gpuhub && npm run build", pytrace=False)
    pyproject = (REPO / "pyproject.toml").read_text()
    assert '"share/jupyter/labextensions/@gpuhub/jupyterlab-gpuhub"' in pyproject
    assert '"platform/gpuhub/labextension/static/*"' in pyproject
