"""The interface every engine gives the hub: ``Engine``.

The hub's services never talk to Docker (or Swarm, or Kubernetes) themselves. They ask the engine
three things:

1. **Which devices** there are: ``inventory()`` (GPUs and MIG slices, with health and NVLink
   peers; where they are, for an engine of several nodes, is the engine's to remember).
2. **How a server gets its devices**: ``wiring(assignment)`` turns an allocation into what the
   container is created with (``policy.containers.DeviceWiring``: host config, environment,
   labels). The labels name the allocation, so that:
3. **A server is found again** after a hub restart: ``running_servers()`` lists what runs with an
   allocation label (the restart reconcile keeps those allocations and frees the others), and
   ``allocation_of(server_object)`` reads one server's label (a start the hub did not see finish).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from ..inventory.model import Inventory
from ..policy.containers import DeviceWiring, GpuAssignment


class ExecUnavailable(RuntimeError):
    """The engine cannot run a process in a server (``exec_in``): the SSH gateway says so to the client."""


@dataclass(frozen=True)
class ContainerState:
    """A container as the engine sees it: a batch job's (``hub.jobs``), a starting server's (the spawner)."""

    running: bool
    exit_code: int | None  # once it ended
    oom_killed: bool = False


@dataclass(frozen=True)
class RunningServer:
    """A server the engine runs (or ran) with an allocation label."""

    allocation_id: int
    name: str  # the container's (or service's, pod's) name, for logs
    running: bool


class NoGroupSubnet(RuntimeError):
    """``[sessions] group_subnets`` has no /24 left that no network of the engine uses."""


class Engine(ABC):
    name = ""  # "docker", for logs and the admin API
    exposure = ""  # how devices are handed to containers ("device_requests", "env-only", ...)
    runs_jobs = False  # batch jobs (``run_job`` and the rest below)

    @abstractmethod
    async def inventory(self) -> Inventory:
        """The devices servers can be given now (re-read as often as the source needs)."""

    async def known_inventory(self) -> Inventory:
        """Every device the hub knows, also those servers cannot be given now (a Swarm node down or
        drained): what the admin pages show and an admin may free or reserve. One host: ``inventory``."""
        return await self.inventory()

    async def memory_used(self) -> dict[str, tuple[int, int]] | None:
        """Live memory per device UUID (used, total), where the engine can read it; None otherwise."""
        return None

    @abstractmethod
    def wiring(self, gpu: GpuAssignment | None) -> DeviceWiring:
        """What a container is created with to get exactly ``gpu``'s devices (None: no GPU at all)."""

    @abstractmethod
    async def has_image(self, image: str) -> bool:
        """Whether servers can be started from ``image`` here without fetching it."""

    @abstractmethod
    async def running_servers(self) -> list[RunningServer]:
        """Every server carrying an allocation label, running or not (the restart reconcile)."""

    @abstractmethod
    def allocation_of(self, server_object: dict) -> int | None:
        """The allocation one server's object (as the engine describes it) is labelled with."""

    # --- a shell in a server (the SSH gateway, ``hub.ssh``) ------------------------------------------------
    async def server_container(self, username: str, server_name: str) -> str | None:
        """The running container of ``username``'s server ``server_name`` ("": the default one), or None."""
        raise ExecUnavailable(f"SSH into servers is not available on the {self.name!r} engine")

    async def exec_in(self, container: str, command: list[str], tty: bool, environment: dict, user: str, workdir: str):
        """``command`` run in ``container`` as ``user``, its standard streams open (``engine.execstream.ExecStream``)."""
        raise ExecUnavailable(f"SSH into servers is not available on the {self.name!r} engine")

    # --- several hosts (``engine.swarm``); one host has none of this -------------------------------------
    async def nodes(self) -> list:
        """The hosts servers run on, with their states (``policy.nodes.NodeStatus``); [] on one host."""
        return []

    def node_of(self, uuid: str) -> str | None:
        """The node a device is in; None on one host."""
        return None

    def hostname_of(self, node_id: str) -> str:
        """A node's name for people (its hostname)."""
        return node_id

    def listen(self, capacity_changed: Callable[[], None], node_back: Callable[[str], Awaitable[None]]) -> None:
        """Whom to tell when the pool may have grown (a node joined, came back, reported more GPUs),
        and when a node that was down is back or removed (what was held for it can be handed back).
        One host: its pool changes only with its inventory, which the services read themselves."""
        return None

    async def settle(self) -> None:
        """Wait, once after hub start, until the inventory is whole (every node has reported); one host: at once."""
        return None

    async def run(self) -> None:
        """The engine's own wake-ups (the node list's poll), run by ``Services.start``; one host has none."""
        return None

    # --- a classroom session's group work ([network] isolation) ------------------------------------
    async def group_network(self, name: str, pool: str = "") -> str | None:
        """The network ``name`` of a session's group work, made if missing (its subnet a free /24 of
        ``pool`` when one is given, ``[sessions] group_subnets``): its subnet (CIDR), or None where the
        engine has none (a Swarm refuses group work). ``NoGroupSubnet`` when ``pool`` has no free one."""
        return None

    async def join_network(self, name: str, container: str, alias: str = "") -> None:
        """Attach ``container`` (created, not started) to the network ``name`` too, known there as ``alias``."""
        return None

    async def remove_network(self, name: str) -> None:
        """Remove the network ``name`` if it is there and nothing is attached to it (else keep it)."""
        return None

    # --- batch jobs (``hub.jobs``): a container of their own, watched to its end -----------------------
    async def run_job(self, name: str, spec, command: list[str], environment: dict, network: str) -> None:
        """Create and start the job's container ``name`` from ``spec`` (``policy.containers.ContainerSpec``)."""
        raise ExecUnavailable(f"Batch jobs are not available on the {self.name!r} engine")

    async def container_state(self, name: str) -> ContainerState | None:
        """The container ``name`` now (None: there is none, or the engine cannot say: a Swarm's tasks)."""
        return None

    async def container_output(self, name: str, most_bytes: int) -> str:
        """The end of the container's output (its stdout and stderr), at most ``most_bytes``."""
        return ""

    async def end_job(self, name: str, grace_seconds: int, remove: bool) -> None:
        """Stop the job's container (SIGTERM, SIGKILL after ``grace_seconds``); ``remove``: remove it too."""
        raise ExecUnavailable(f"Batch jobs are not available on the {self.name!r} engine")
