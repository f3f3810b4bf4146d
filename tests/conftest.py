"""Fixtures shared by the three tiers.

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


@pytest.fixture
def repo_root() -> Path:
    return REPO


@pytest.fixture
def base_settings_text() -> str:
    return BASE_SETTINGS
