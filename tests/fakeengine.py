"""``FakeEngine``: the engine seam (``gpuhub.engine.base.Engine``) with no Docker, for unit tests of
the services and of ``GPUSpawner``. Its inventory is a (simulated) inventory file; its devices are
wired as the Docker engine's ``env-only`` exposure; its "containers" live in a dict and answer the
part of Docker's API that DockerSpawner calls (``FakeDocker``). A test can make a call fail
(``FakeDocker.fail``) or a container stop (``FakeDocker.exit``). Real parts are tested in the
integration tier; this stands in only where a unit test needs no engine at all.
"""

from __future__ import annotations

import itertools
from types import SimpleNamespace

from docker.errors import APIError, NotFound

from gpuhub import contract
from gpuhub.engine.base import Engine, RunningServer
from gpuhub.engine.docker import docker_wiring
from gpuhub.inventory.model import Inventory


def _missing(what: str) -> NotFound:
    return NotFound(f"No such container: {what}", response=SimpleNamespace(status_code=404, reason="Not Found", url=""))


class FakeDocker:
    """Containers in memory, by id; what DockerSpawner asks of docker-py's ``APIClient``."""

    def __init__(self, ip: str = "127.0.0.1"):
        self.ip = ip
        self.containers: dict[str, dict] = {}
        self.calls: list[str] = []
        self.fail: dict[str, Exception] = {}  # method -> the error its next call raises
        self._ids = itertools.count(1)

    def __call__(self, method: str, *args, **kwargs):
        self.calls.append(method)
        if method in self.fail:
            raise self.fail.pop(method)
        return getattr(self, method)(*args, **kwargs)

    def create_host_config(self, **kwargs):
        return kwargs

    def inspect_image(self, image):
        return {"Config": {"Cmd": ["jupyterhub-singleuser"]}}

    def create_container(self, image, name, labels=None, host_config=None, environment=None, **kwargs):
        cid = f"{next(self._ids):064x}"
        self.containers[cid] = {
            "Id": cid,
            "Name": "/" + name,
            "Image": image,
            "Config": {"Labels": dict(labels or {}), "Env": [f"{k}={v}" for k, v in (environment or {}).items()]},
            "HostConfig": host_config or {},
            "State": {"Running": False, "ExitCode": 0, "Error": "", "FinishedAt": ""},
            "NetworkSettings": {"Networks": {host_config.get("network_mode", "bridge"): {"IPAddress": self.ip}}},
        }
        return {"Id": cid}

    def _find(self, key: str) -> dict:
        for c in self.containers.values():
            if key in (c["Id"], c["Name"].lstrip("/")):
                return c
        raise _missing(key)

    def inspect_container(self, key):
        return self._find(key)

    def start(self, key):
        self._find(key)["State"]["Running"] = True

    def stop(self, key):
        self._find(key)["State"]["Running"] = False

    def exit(self, key, code: int = 137):
        """The container stopped behind the hub's back."""
        c = self._find(key)
        c["State"].update(Running=False, ExitCode=code, FinishedAt="2026-01-05T09:00:00Z")

    def remove_container(self, key, v=False):
        del self.containers[self._find(key)["Id"]]

    def containers_list(self, all=False, filters=None):
        label = (filters or {}).get("label")
        return [
            {"Id": c["Id"], "Names": [c["Name"]], "Labels": c["Config"]["Labels"], "State": "running" if c["State"]["Running"] else "exited"}
            for c in self.containers.values()
            if (all or c["State"]["Running"]) and (label is None or label in c["Config"]["Labels"])
        ]


class FakeEngine(Engine):
    name = "fake"
    exposure = contract.ENV_ONLY

    def __init__(self, inventory: Inventory):
        self._inventory = inventory
        self.docker = FakeDocker()
        self.client = self.docker

    async def call(self, method, *args, **kwargs):
        return self.docker("containers_list" if method == "containers" else method, *args, **kwargs)

    async def inventory(self) -> Inventory:
        return self._inventory

    def wiring(self, gpu):
        return docker_wiring(gpu, self.exposure, self._inventory.simulated)

    async def running_servers(self) -> list[RunningServer]:
        found = []
        for c in self.docker.containers_list(all=True, filters={"label": contract.ALLOCATION_LABEL}):
            found.append(RunningServer(contract.allocation_of(c["Labels"]), c["Names"][0].lstrip("/"), c["State"] == "running"))
        return found

    def allocation_of(self, server_object: dict) -> int | None:
        return contract.allocation_of((server_object.get("Config") or {}).get("Labels"))


__all__ = ["APIError", "FakeDocker", "FakeEngine"]
