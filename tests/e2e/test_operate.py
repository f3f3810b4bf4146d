"""The operator's experience (issue 16), with the real scripts on the real engine: ``scripts/up --demo``
on a host without GPUs (a GPU server gets a SIMULATED GPU), a second ``scripts/up`` that changes
nothing (same hub container, same images, a clean tree, no dangling images), ``scripts/down`` with a
user's server running (exit 0; homes and hub state kept) and ``scripts/down --all``; and the
JupyterLab extension's build tools installed on a fresh clone without rewriting its lock.

The platform runs as compose project ``gpuhubop`` on its own port, network, state folder and names
(``gpuhubop-*``), from the repository's own settings.toml with only those names changed; everything it
makes is removed at the end.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import ssl
import subprocess
import time
from pathlib import Path

import pytest
import requests

from gpuhub import contract as c
from gpuhub.config.check import DEMO_IMAGE, main as settings_main
from tests.e2e.operator import PREFIX, Operator, admin_token, said, start_server
from tests.hubprocess import REPO, require_engine_and_image

IMAGES = ("gpuhub/hub:latest", DEMO_IMAGE)


def dangling_images() -> set[str]:
    return set(subprocess.run(["docker", "images", "-q", "--no-trunc", "-f", "dangling=true"],
                              capture_output=True, text=True, check=True).stdout.split())


def tree_status() -> str:
    return subprocess.run(["git", "status", "--porcelain"], cwd=REPO, capture_output=True, text=True, check=True).stdout


@pytest.fixture(scope="module")
def operator(tmp_path_factory):
    problem = require_engine_and_image()
    if problem:
        pytest.fail(f"the operate tests cannot run: {problem}", pytrace=False)
    op = Operator(tmp_path_factory.mktemp("operate"))
    op.clean()
    try:
        yield op
    finally:
        op.clean()


@pytest.fixture(scope="module")
def demo(operator):
    """``scripts/up --demo``, as the README says; the hub is healthy when it returns."""
    tree = tree_status()
    result = operator.script("scripts/up", "--demo")
    assert result.returncode == 0, said(result) + operator.logs()
    operator.up_output = result.stdout + result.stderr
    operator.tree_changes = (tree, tree_status())  # `git status` before and after (empty, from a clean clone)
    return operator


# --- the simulated-GPU demo ------------------------------------------------------------------------
def test_demo_settings_are_derived_from_the_settings_file(tmp_path, capsys):
    """``gpuhub-settings demo``: the simulated inventory, env-only, the GPU profiles on the cpu image
    (allowed), every other choice kept; checked by the same loader."""
    from gpuhub.config.schema import parse_settings

    assert settings_main(["demo", str(REPO / "settings.toml")]) == 0
    out, err = capsys.readouterr()
    assert out.startswith("# SIMULATED GPUs")
    assert "SIMULATED GPUs" in err and "gpu-1, gpu-shared" in err
    settings = parse_settings(out)
    original = parse_settings((REPO / "settings.toml").read_text())
    assert (settings.gpus.inventory, settings.gpus.exposure) == ("file:/srv/gpuhub/inventory.toml", "env-only")
    assert {p.name: p.image for p in settings.profiles if p.wants_gpu} == {"gpu-1": DEMO_IMAGE, "gpu-shared": DEMO_IMAGE}
    assert DEMO_IMAGE in settings.spawner.allowed_images
    assert [p.name for p in settings.profiles] == [p.name for p in original.profiles]
    assert settings.spawner.home_volume == original.spawner.home_volume
    assert settings.gpus.max_shares_per_gpu == original.gpus.max_shares_per_gpu

    bad = tmp_path / "bad.toml"
    bad.write_text((REPO / "settings.toml").read_text().replace('mem_limit = "4G"', 'mem_limit = "lots"'))
    assert settings_main(["demo", str(bad)]) == 2
    assert "profiles[0].mem_limit" in capsys.readouterr().err


def test_up_demo_gives_a_gpu_server_a_simulated_gpu(demo):
    assert "SIMULATED" in demo.up_output and demo.url in demo.up_output
    # HTTPS by default: the local CA's fingerprint printed, its certificate where the output says
    der = ssl.PEM_cert_to_DER_cert(Path(demo.ca).read_text())
    fingerprint = ":".join(re.findall("..", hashlib.sha256(der).hexdigest().upper()))
    assert fingerprint in demo.up_output and "state/local-ca.crt" in demo.up_output, demo.up_output
    redirect = requests.get(f"http://127.0.0.1:{demo.port}/hub/login", allow_redirects=False, timeout=10)
    assert redirect.status_code == 308 and redirect.headers["Location"] == f"https://127.0.0.1:{demo.https_port}/hub/login"
    assert "bash scripts/down" in demo.up_output
    derived = (demo.workdir / "state" / "settings.demo.toml").read_text()
    assert derived.startswith("# SIMULATED GPUs") and 'exposure = "env-only"' in derived

    token = admin_token(demo)
    start_server(demo, token, "gpu-1")
    container = demo.user_container()
    assert container is not None and container.status == "running"
    env = dict(e.split("=", 1) for e in container.attrs["Config"]["Env"])
    assert env[c.GPU_SIMULATED_ENV] == "true" and env[c.GPU_EXPOSURE_ENV] == "env-only"
    (uuid,) = c.assigned_devices(env)
    assert uuid.startswith("GPU-5a1d0000-")  # one of inventory.example.toml's simulated GPUs
    assert container.labels[c.GPU_SIMULATED_LABEL] == "true" and container.labels[c.PROFILE_LABEL] == "gpu-1"
    assert container.image.tags == [DEMO_IMAGE]
    # on a contended CPU the hub goes before users' servers (docker-compose.yml: 4 × Docker's default weight)
    assert demo.hub_container().attrs["HostConfig"]["CpuShares"] == 4096
    assert container.attrs["HostConfig"]["CpuShares"] in (0, 1024)  # 0: the default, 1024

    # the server itself says so (what JupyterLab's GPU status bar shows)
    r = requests.get(f"{demo.url}/user/admin/gpuhub/api/v1/gpus", headers={"Authorization": f"token {token}"}, timeout=30, verify=demo.ca)
    assert r.status_code == 200, r.text[:300]
    figures = r.json()
    assert figures["simulated"] is True and figures["exposure"] == "env-only" and figures["assigned"] == [uuid]


def test_up_again_with_nothing_changed_changes_nothing(demo):
    """Same hub container (waiting spawns are not dropped), same images, no tree change, no dangling
    images; the demo stays on; and it is quick."""
    hub = demo.hub_container()
    images = {name: demo.docker.images.get(name).id for name in IMAGES}
    dangling = dangling_images()
    tree = tree_status()
    started = time.monotonic()
    result = demo.script("scripts/up")
    took = time.monotonic() - started
    assert result.returncode == 0, said(result)
    print(f"\nsecond scripts/up: {took:.1f} s")
    assert demo.hub_container().id == hub.id
    assert demo.hub_container().attrs["State"]["StartedAt"] == hub.attrs["State"]["StartedAt"]  # not restarted either
    assert {name: demo.docker.images.get(name).id for name in IMAGES} == images
    assert "is up to date" in result.stderr
    assert "SIMULATED" in result.stdout  # the demo persists
    assert dangling_images() <= dangling
    assert tree_status() == tree
    before_first, after_first = demo.tree_changes
    assert after_first == before_first
    assert took < 60, f"a second scripts/up took {took:.0f} s"


def test_down_keeps_servers_and_data_and_down_all_stops_servers(demo):
    if demo.user_container() is None or demo.user_container().status != "running":
        start_server(demo, admin_token(demo), "cpu-small")
    server = demo.user_container()
    volumes = demo.volumes()
    home = server.labels[c.HOME_VOLUME_LABEL]
    hub_data = f"{PREFIX}_hub-data"
    assert {home, hub_data} <= volumes

    result = demo.script("scripts/down")
    assert result.returncode == 0, said(result)
    assert demo.hub_container() is None
    server.reload()
    assert server.status == "running"  # users' servers outlive the hub
    assert demo.volumes() == volumes
    assert "keep running" in result.stderr

    result = demo.script("scripts/down", "--all")
    assert result.returncode == 0, said(result)
    assert demo.user_container() is None
    assert demo.volumes() == volumes  # homes and hub state kept
    assert not [n for n in demo.docker.networks.list() if n.name.startswith(PREFIX)]


# --- a fresh clone stays clean -----------------------------------------------------------------------
def stale_lock(lock_text: str) -> str:
    """The lock as an npm that lists only this platform's rspack binding writes it (what the repository
    held before): the other platforms' optional bindings and their dependencies left out."""
    lock = json.loads(lock_text)
    other = re.compile(r"node_modules/(@rspack/binding-(?!linux-x64-gnu$)|@emnapi/|@napi-rs/|@tybys/)")
    lock["packages"] = {k: v for k, v in lock["packages"].items() if not other.match(k)}
    return json.dumps(lock, indent=2) + "\n"


def test_building_the_extension_on_a_fresh_clone_leaves_the_tree_clean(tmp_path):
    """images/build.sh's npm step (it runs on a fresh clone) never rewrites package-lock.json, even one
    this npm would write differently; nothing else it makes shows in ``git status`` either."""
    if not shutil.which("npm"):
        pytest.fail("npm is missing: run `bash scripts/test`", pytrace=False)
    clone = tmp_path / "clone"
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "--", "platform/jupyterlab-gpuhub",
                            "images/build.sh", "scripts/lib.sh", ".gitignore"],
                           cwd=REPO, capture_output=True, text=True, check=True).stdout.split()
    for name in files:
        if (REPO / name).is_file():
            (clone / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, clone / name)
    lock = clone / "platform/jupyterlab-gpuhub/package-lock.json"
    lock.write_text(stale_lock(lock.read_text()))
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.org"]
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "clone"]):
        subprocess.run([*git, *args], cwd=clone, check=True)
    committed = lock.read_bytes()

    result = subprocess.run(["bash", "images/build.sh", "labextension"], cwd=clone, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, said(result)
    assert (clone / "platform/gpuhub/labextension/package.json").is_file()
    assert lock.read_bytes() == committed
    status = subprocess.run(["git", "status", "--porcelain"], cwd=clone, capture_output=True, text=True).stdout
    assert status == ""
