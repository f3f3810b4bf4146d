"""Reliability tier (marker ``reliability``): faults injected into the real parts, fuzzed input and
the security boundary, on the real Docker engine and a real PostgreSQL.

Fixtures:
- ``rel_hub`` (session): a hub on PostgreSQL with a simulated inventory of 4 whole GPUs (labelled
  simulated), polling its servers every 2 s, ``start_timeout`` 30 s, named servers allowed, and one
  extra allowed image whose server never answers (``gpuhubrel/never-ready:1``). ``rel_hub.pg`` is its
  database server.
``ROUNDS``: how many times each fault scenario runs (``GPUHUB_FAULT_ROUNDS``, 1 by default, as in CI; the
figures in docs/reliability.md come from ``python benchmarks/reliability.py``, which runs more).
"""

from __future__ import annotations

import io
import os

import docker
import pytest

from tests.hubprocess import USER_IMAGE, HubProcess, fresh_engine_or_fail
from tests.pgserver import PostgresServer

PREFIX = "gpuhubrel"
NEVER_READY_IMAGE = "gpuhubrel/never-ready:1"
ROUNDS = int(os.environ.get("GPUHUB_FAULT_ROUNDS", "1"))


def gpu(i: int) -> str:
    return f"GPU-00000000-0000-0000-0000-{i:012d}"


INVENTORY = "".join(f'[[gpus]]\nuuid = "{gpu(i)}"\nname = "NVIDIA H100 80GB HBM3"\nmemory = "80G"\n\n' for i in range(4))


def profiles(inventory_path) -> str:
    common = 'mem_limit = "512M"\ncpu_limit = 0.5\nshm_size = "64M"'
    return f'''
[gpus]
inventory = "file:{inventory_path}"
exposure = "env-only"
queue_timeout = 120

[[quotas]]
max_gpus = 1

[[profiles]]
name = "cpu-test"
image = "{USER_IMAGE}"
{common}
default = true

[[profiles]]
name = "gpu-1"
image = "{USER_IMAGE}"
{common}
gpus = 1
gpu_mode = "exclusive"

[[profiles]]
name = "never-ready"
description = "a server that starts and never answers"
image = "{NEVER_READY_IMAGE}"
{common}
gpus = 1
gpu_mode = "exclusive"
'''


def pytest_collection_modifyitems(items):
    for item in items:
        if "reliability" in str(item.fspath):
            item.add_marker(pytest.mark.reliability)
            item.add_marker(pytest.mark.docker)


def build_never_ready_image() -> None:
    """The user image whose server never answers: its entrypoint sleeps whatever command it is given.
    (It keeps a CMD: DockerSpawner appends its arguments to the image's CMD.)"""
    dockerfile = f'FROM {USER_IMAGE}\nENTRYPOINT ["/bin/sh", "-c", "sleep infinity", "--"]\nCMD ["jupyterhub-singleuser"]\n'
    docker.from_env().images.build(fileobj=io.BytesIO(dockerfile.encode()), tag=NEVER_READY_IMAGE, rm=True)


@pytest.fixture(scope="session")
def rel_hub(tmp_path_factory):
    fresh_engine_or_fail("reliability", PREFIX)
    build_never_ready_image()
    workdir = tmp_path_factory.mktemp("faulthub")
    (workdir / "inventory.toml").write_text(INVENTORY)
    pg = PostgresServer().start()
    hub = HubProcess(
        workdir,
        prefix=PREFIX,
        profiles=profiles(workdir / "inventory.toml"),
        extra_config="c.Spawner.poll_interval = 2\nc.JupyterHub.allow_named_servers = True\n",
        db_url=pg.create_database("gpuhub"),
    )
    hub.start_timeout = 30
    hub.extra_images = [NEVER_READY_IMAGE]
    hub.pg = pg
    try:
        with hub.running():
            yield hub
    finally:
        pg.stop()
