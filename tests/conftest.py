"""Fixtures shared by the tiers.

- ``repo_root``: the repository checkout (Path).
- ``base_settings_text``: a minimal valid settings file (TOML text) the unit tests vary.
Tier fixtures live in ``integration/conftest.py`` (a real hub process on the real engine) and
``e2e/conftest.py`` (the composed platform and Chromium).
"""

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

BASE_SETTINGS = '''
[spawner]
allowed_images = ["gpuhub/pytorch-cuda:cpu", "example/other:1"]

[[datasets]]
name = "imagenet"
source = "imagenet-vol"
target = "/datasets/imagenet"

[[profiles]]
name = "cpu-small"
image = "gpuhub/pytorch-cuda:cpu"
mem_limit = "4G"
cpu_limit = 1
shm_size = "1G"

[[profiles]]
name = "cpu-data"
image = "gpuhub/pytorch-cuda:cpu"
mem_limit = "8G"
cpu_limit = 2.5
shm_size = "2G"
datasets = ["imagenet"]
groups = ["ml-lab"]
default = true

[[profiles]]
name = "gpu-1"
image = "gpuhub/pytorch-cuda:cpu"
gpus = 1
gpu_mode = "exclusive"
'''


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    """Keep each phase's report on the item (``item.rep_call``) so tier fixtures can dump logs on failure."""
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


@pytest.fixture
def repo_root() -> Path:
    return REPO


@pytest.fixture
def base_settings_text() -> str:
    return BASE_SETTINGS


TIERS = ("unit", "integration", "reliability", "swarm", "benchmarks", "e2e")


def pytest_sessionfinish(session, exitstatus):
    """With GPUHUB_REQUIRE_ALL_TIERS=1 (scripts/test, CI) the run fails if a tier ran no test or any
    test was skipped: a green run must mean every tier ran on real parts."""
    import os

    if os.environ.get("GPUHUB_REQUIRE_ALL_TIERS") != "1":
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is None:
        return
    ran = dict.fromkeys(TIERS, 0)
    for outcome in ("passed", "failed"):
        for rep in reporter.stats.get(outcome, []):
            parts = rep.nodeid.split("/")
            if getattr(rep, "when", "call") == "call" and len(parts) > 1 and parts[1] in ran:
                ran[parts[1]] += 1
    skipped = [rep.nodeid for rep in reporter.stats.get("skipped", [])]
    problems = [f"tier '{t}' ran no test" for t, n in ran.items() if n == 0]
    problems += [f"skipped: {nodeid}" for nodeid in skipped]
    reporter.write_line("gpuhub tiers: " + ", ".join(f"{t} {n}" for t, n in ran.items()))
    if problems:
        for p in problems:
            reporter.write_line(f"gpuhub: {p}", red=True)
        session.exitstatus = 1
