"""``FakeEngine``: gpuhub's real ``DockerEngine`` over an in-memory Docker (``FakeDocker``), for unit
tests of the services and of ``GPUSpawner`` with no engine at all. Its inventory is a (simulated)
inventory file and its devices are wired as the ``env-only`` exposure; its "containers" live in a
dict and answer the part of docker-py's ``APIClient`` that DockerSpawner and the engine call. A test
can make a call fail (``FakeDocker.fail``) or a container stop (``FakeDocker.exit``). Real parts are
tested in the integration tier; this stands in only where a unit test needs no engine at all.
"""

from __future__ import annotations

import itertools
from types import SimpleNamespace

from docker.errors import APIError, ImageNotFound, NotFound

from gpuhub.config.schema import Gpus
from gpuhub.engine.docker import DockerEngine
from gpuhub.inventory.model import Inventory


def _missing(what: str) -> NotFound:
    return NotFound(f"No such container: {what}", response=SimpleNamespace(status_code=404, reason="Not Found", url=""))


class FakeDocker:
    """Containers in memory, by id; what DockerSpawner asks of docker-py's ``APIClient``."""

    def __init__(self, ip: str = "127.0.0.1"):
        self.ip = ip
        self.by_id: dict[str, dict] = {}  # the containers
        self.calls: list[str] = []  # every API call made through the engine, in order
        self.fail: dict[str, Exception] = {}  # method -> the error its next call through the engine raises
        self.missing_images: set[str] = set()  # images this engine does not have (every other one it has)
        self._ids = itertools.count(1)

    def create_host_config(self, **kwargs):
        return kwargs

    def inspect_image(self, image):
        if image in self.missing_images:
            raise ImageNotFound(f"No such image: {image}", response=SimpleNamespace(status_code=404, reason="Not Found", url=""))
        return {"Config": {"Cmd": ["jupyterhub-singleuser"]}}

    def create_container(self, image, name, labels=None, host_config=None, environment=None, **kwargs):
        cid = f"{next(self._ids):064x}"
        self.by_id[cid] = {
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
        for c in self.by_id.values():
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
        del self.by_id[self._find(key)["Id"]]

    def containers(self, all=False, filters=None):
        label = (filters or {}).get("label")
        return [
            {"Id": c["Id"], "Names": [c["Name"]], "Labels": c["Config"]["Labels"], "State": "running" if c["State"]["Running"] else "exited"}
            for c in self.by_id.values()
            if (all or c["State"]["Running"]) and (label is None or label in c["Config"]["Labels"])
        ]


class FakeEngine(DockerEngine):
    """The Docker engine's own code (wiring, finding servers again, the call wrapper) on ``FakeDocker``."""

    def __init__(self, inventory: Inventory):
        super().__init__(Gpus(exposure="env-only"), read_inventory=lambda: inventory, client_factory=FakeDocker)
        self.docker: FakeDocker = self.client

    async def call(self, method: str, *args, **kwargs):
        self.docker.calls.append(method)
        if method in self.docker.fail:
            raise self.docker.fail.pop(method)
        return await super().call(method, *args, **kwargs)


__all__ = ["APIError", "FakeDocker", "FakeEngine"]
