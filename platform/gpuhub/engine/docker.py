"""Today's engine: one Docker host (``DockerEngine``).

- **Devices**: the host's inventory, ``[gpus] inventory`` (NVML, re-read at most every 30 s for
  health; or a SIMULATED file).
- **Wiring** (``docker_wiring``, pure): exactly the allocation's devices by UUID: Docker
  ``device_requests`` with ``device_ids`` (never ``count``, which gives everyone the same GPU) in the
  ``device_requests`` exposure (the NVIDIA runtime), and in both exposures ``NVIDIA_VISIBLE_DEVICES``
  and ``CUDA_VISIBLE_DEVICES`` naming the same UUIDs, plus labels naming the allocation.
  ``env-only`` (hosts without the runtime: CI, demos) sets only the variables, and says so.
- **Finding servers again**: containers labelled ``org.gpuhub.allocation``.
- **The one async wrapper of Docker calls** (``call``): docker-py's ``APIClient`` on one worker
  thread, as DockerSpawner's own wrapper does. ``GPUSpawner`` routes DockerSpawner's calls here, so a
  test can hand the spawner a fake engine. The client comes from Docker's environment
  (``DOCKER_HOST``, ``DOCKER_TLS_VERIFY``, ``DOCKER_CERT_PATH``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from functools import partial

from .. import contract as c
from ..config.schema import Gpus
from ..inventory.model import Inventory
from ..inventory.nvml import read_memory_used
from ..inventory.source import load_inventory
from ..config.network import GROUP_SUBNET_PREFIX
from ..policy.containers import CPU_ONLY, DeviceWiring, GpuAssignment
from ..policy.network import free_subnet
from ..worker import Worker
from .base import ContainerState, Engine, NoGroupSubnet, RunningServer
from .execstream import ExecStream

log = logging.getLogger(__name__)

NVML_REFRESH_SECONDS = 30  # health (ECC, XID, lost GPUs) is re-read at most this often
CAPABILITIES = [["gpu", "compute", "utility"]]


def docker_wiring(gpu: GpuAssignment | None, exposure: str, simulated: bool) -> DeviceWiring:
    """(host config, environment, labels) giving a container exactly its assigned devices."""
    if gpu is None:
        return CPU_ONLY
    ids = ",".join(gpu.uuids)
    env = {
        c.VISIBLE_DEVICES_ENV: ids,
        c.CUDA_DEVICES_ENV: ids,
        c.DRIVER_CAPABILITIES_ENV: "compute,utility",
        c.GPU_MODE_ENV: gpu.mode,
        c.GPU_EXPOSURE_ENV: exposure,
        c.GPU_SIMULATED_ENV: "true" if simulated else "false",
    }
    if gpu.mode == "shared":
        env[c.GPU_MEMORY_BUDGET_ENV] = str(gpu.memory_bytes)
    if gpu.borrowed:
        env[c.GPU_BORROWED_ENV] = "true"
    labels = {
        c.ALLOCATION_LABEL: str(gpu.allocation_id),
        c.GPUS_LABEL: ids,
        c.GPU_MODE_LABEL: gpu.mode,
        c.GPU_EXPOSURE_LABEL: exposure,
    }
    if simulated:
        labels[c.GPU_SIMULATED_LABEL] = "true"
    host = {}
    if exposure == "device_requests":
        host["device_requests"] = [{"driver": "nvidia", "device_ids": list(gpu.uuids), "capabilities": CAPABILITIES}]
    return DeviceWiring(host, env, labels)


def docker_client():
    import docker
    from docker.utils import kwargs_from_env

    return docker.APIClient(version="auto", **kwargs_from_env())


class DockerEngine(Engine):
    name = "docker"
    runs_jobs = True

    def __init__(
        self,
        gpus: Gpus,
        read_inventory: Callable[[], Inventory] | None = None,
        client_factory: Callable = docker_client,
    ):
        self.exposure = gpus.exposure
        self._read_inventory = read_inventory or partial(load_inventory, gpus.inventory)
        self._inventory: Inventory | None = None
        self._inventory_read_at = 0.0
        self._nvml = Worker("gpuhub-inventory")
        self._docker = Worker("gpuhub-docker")
        self._client_factory = client_factory
        self._client = None

    # --- the Docker API ---------------------------------------------------------------------------
    @property
    def client(self):
        """docker-py's low-level client (created on first use)."""
        if self._client is None:
            self._client = self._client_factory()
        return self._client

    async def call(self, method: str, *args, **kwargs):
        """``client.<method>(*args, **kwargs)`` on the engine's worker thread, awaited."""
        return await self._docker.run(lambda: getattr(self.client, method)(*args, **kwargs))

    # --- the seam ---------------------------------------------------------------------------------
    async def inventory(self) -> Inventory:
        stale = time.monotonic() - self._inventory_read_at > NVML_REFRESH_SECONDS
        if self._inventory is None or (self._inventory.source == "nvml" and stale):
            self._inventory = await self._nvml.run(self._read_inventory)
            self._inventory_read_at = time.monotonic()
        return self._inventory

    async def memory_used(self) -> dict[str, tuple[int, int]] | None:
        if (await self.inventory()).source != "nvml":
            return None
        return await self._nvml.run(read_memory_used)

    @property
    def simulated(self) -> bool:
        return bool(self._inventory and self._inventory.simulated)

    def wiring(self, gpu: GpuAssignment | None) -> DeviceWiring:
        return docker_wiring(gpu, self.exposure, self.simulated)

    async def group_network(self, name: str, pool: str = "") -> str | None:
        from docker.errors import APIError, NotFound

        for _ in range(3):  # a subnet taken meanwhile by another session's new network: pick again
            try:
                network = await self.call("inspect_network", name)
                break
            except NotFound:
                pass
            try:  # internal: it carries the members' traffic to each other, no route out
                await self.call("create_network", name, driver="bridge", internal=True, labels={c.MANAGED_LABEL: "true"}, ipam=await self._group_ipam(pool))
            except APIError as e:
                # 409: made by a start of another member meanwhile; 403 "overlaps": the subnet went to another
                if e.status_code not in (403, 409):
                    raise
        else:
            network = await self.call("inspect_network", name)
        configs = (network.get("IPAM") or {}).get("Config") or []
        return next((cfg["Subnet"] for cfg in configs if ":" not in cfg.get("Subnet", ":")), None)

    async def _group_ipam(self, pool: str):
        """A new group network's addresses: a free /24 of ``pool``; None (the engine's pools) without one."""
        from docker.types import IPAMConfig, IPAMPool

        if not pool:
            return None
        taken = [cfg.get("Subnet", "") for n in await self.call("networks") for cfg in ((n.get("IPAM") or {}).get("Config") or [])]
        subnet = free_subnet(pool, [t for t in taken if t])
        if subnet is None:
            raise NoGroupSubnet(f"[sessions] group_subnets {pool} has no /{GROUP_SUBNET_PREFIX} left that no network uses")
        return IPAMConfig(pool_configs=[IPAMPool(subnet=subnet)])

    async def join_network(self, name: str, container: str, alias: str = "") -> None:
        await self.call("connect_container_to_network", container, name, aliases=[alias] if alias else None)

    async def remove_network(self, name: str) -> None:
        from docker.errors import APIError, NotFound

        try:
            await self.call("remove_network", name)
        except NotFound:
            pass
        except APIError as e:  # a member's server still runs on it: removed after the last one stops
            log.debug("the group network %s is still in use, kept: %s", name, e.explanation or e)

    async def has_image(self, image: str) -> bool:
        from docker.errors import ImageNotFound, NotFound

        try:
            await self.call("inspect_image", image)
            return True
        except (ImageNotFound, NotFound):
            return False

    async def server_container(self, username: str, server_name: str) -> str | None:
        for container in await self.call("containers", filters={"label": f"{c.USER_LABEL}={username}", "status": "running"}):
            if (container.get("Labels") or {}).get(c.SERVER_LABEL, "") == server_name:
                return container["Id"]
        return None

    async def exec_in(self, container: str, command: list[str], tty: bool, environment: dict, user: str, workdir: str) -> ExecStream:
        created = await self.call("exec_create", container, command, stdin=True, tty=tty, environment=environment, user=user, workdir=workdir)
        stream = await self.call("exec_start", created["Id"], socket=True, tty=tty)
        return ExecStream(self, created["Id"], stream, tty, container)

    async def running_servers(self) -> list[RunningServer]:
        found = []
        for container in await self.call("containers", all=True, filters={"label": c.ALLOCATION_LABEL}):
            allocation = c.allocation_of(container.get("Labels"))
            if allocation is not None:
                name = (container.get("Names") or ["?"])[0].lstrip("/")
                found.append(RunningServer(allocation, name, container.get("State") == "running"))
        return found

    def allocation_of(self, server_object: dict) -> int | None:
        return c.allocation_of((server_object.get("Config") or {}).get("Labels"))

    # --- batch jobs -------------------------------------------------------------------------------------
    async def run_job(self, name: str, spec, command: list[str], environment: dict, network: str) -> None:
        host_config = self.client.create_host_config(
            binds=spec.volumes, mem_limit=spec.mem_limit, nano_cpus=int(spec.cpu_limit * 1e9) or None,
            network_mode=network or None, **spec.host_config,
        )
        created = await self.call(
            "create_container", spec.image, command, name=name, environment={**spec.environment, **environment},
            host_config=host_config, healthcheck={"test": ["NONE"]}, **spec.create_kwargs,  # the image's checks a server
        )
        await self.call("start", created["Id"])

    async def container_state(self, name: str) -> ContainerState | None:
        from docker.errors import NotFound

        try:
            state = (await self.call("inspect_container", name))["State"]
        except NotFound:
            return None
        running = bool(state.get("Running"))
        return ContainerState(running, None if running else state.get("ExitCode"), bool(state.get("OOMKilled")))

    async def container_output(self, name: str, most_bytes: int) -> str:
        from docker.errors import NotFound

        try:
            out = await self.call("logs", name, stdout=True, stderr=True, tail=20_000)
        except NotFound:
            return ""
        return out[-most_bytes:].decode("utf-8", "replace")

    async def end_job(self, name: str, grace_seconds: int, remove: bool) -> None:
        from docker.errors import APIError, NotFound

        try:
            await self.call("stop", name, timeout=grace_seconds)
            if remove:
                await self.call("remove_container", name, force=True)
        except NotFound:
            pass
        except APIError as e:
            if e.status_code != 409:  # removal already under way
                raise
