"""The PyTorch-CUDA image matrix (images/matrix.toml): every tag's CUDA has a minimum driver in the
env check's table, the documented table is the generated one, and the defaults agree everywhere."""

import re
import subprocess
import sys

import pytest

from gpuhub.singleuser.envcheck import MIN_DRIVER
from tests.hubprocess import REPO

MATRIX = REPO / "images" / "matrix.py"


def matrix(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(MATRIX), *args], capture_output=True, text=True)


def test_the_documented_table_is_the_generated_one():
    table = matrix("table").stdout.strip()
    assert table in (REPO / "images" / "README.md").read_text(), "images/README.md: paste `python3 images/matrix.py table`"


def test_every_seed_torch_release_is_built_and_each_cuda_has_a_minimum_driver():
    tags = matrix("tags").stdout.split()
    assert {t.split("-")[0] for t in tags} >= {"2.6", "2.7", "2.8"}
    assert len(tags) == len(set(tags))
    for tag in tags:
        assert re.fullmatch(r"\d+\.\d+-cuda\d+\.\d+", tag)
        assert tag.split("cuda")[1] in MIN_DRIVER


def test_the_default_tag_is_the_default_everywhere():
    tag = matrix("default").stdout.strip()
    row = dict(kv.split("=", 1) for kv in matrix("row", tag).stdout.split())
    base, torch = row["cuda_base"], row["torch"]
    assert f"ARG BASE_IMAGE={base}" in (REPO / "images/pytorch-cuda/Dockerfile").read_text()
    assert f"ARG TORCH_VERSION={torch}" in (REPO / "images/pytorch-cuda/Dockerfile").read_text()
    compose = (REPO / "docker-compose.yml").read_text()
    assert f"GPUHUB_USER_BASE_IMAGE:-{base}" in compose and f"GPUHUB_USER_TAG:-{tag}" in compose


@pytest.mark.parametrize("args, message", [
    (["row", "2.9-cuda13.0"], "no image tag '2.9-cuda13.0'. Tags: 2.6-cuda11.8"),
    (["bogus"], "images/matrix.py table"),
])
def test_bad_requests_say_what_is_accepted(args, message):
    result = matrix(*args)
    assert result.returncode != 0 and message in result.stderr


def test_the_database_is_on_a_network_users_containers_never_join():
    import yaml

    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    services, networks = compose["services"], compose["networks"]
    users_network = "gpuhub"  # the spawner's network: [spawner] network, GPUHUB_NETWORK
    assert users_network not in services["postgres"]["networks"]
    assert set(services["postgres"]["networks"]) <= set(services["hub"]["networks"]) - {users_network}
    assert all(networks[n].get("internal") for n in services["postgres"]["networks"])
