"""What the stores hand back: plain, frozen records (no ORM object leaves ``gpuhub.db``)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from ..policy.containers import GpuAssignment
from ..policy.quotas import Held
from ..policy.sshkeys import PublicKey


@dataclass(frozen=True)
class Allocation:
    id: int
    username: str
    server_name: str
    profile: str
    mode: str
    uuids: tuple[str, ...]
    memory_bytes: int
    created: datetime
    session: str = ""
    borrowed: bool = False  # beyond its user's GPU quota, on a GPU lent while nobody waited for it

    def as_held(self) -> Held:
        """What it counts against its user's quota."""
        return Held(self.mode, len(self.uuids))

    def assignment(self) -> GpuAssignment:
        """What the engine wires into the server's container."""
        return GpuAssignment(self.id, self.mode, self.uuids, self.memory_bytes, self.borrowed)


@dataclass(frozen=True)
class Waiter:
    """A GPU start waiting in line, as kept in the database (``waiters.WaiterStore``)."""

    id: int
    username: str
    server_name: str
    profile: str
    options: dict
    joined: datetime
    boot: str


@dataclass(frozen=True)
class Home:
    """The node a user's home lives on (Swarm, homes on the nodes)."""

    username: str
    node_id: str
    hostname: str
    since: datetime


@dataclass(frozen=True)
class SshKey:
    """A public key registered by ``username`` for SSH into their own server."""

    id: int
    username: str
    key: PublicKey
    added: datetime
    last_used: datetime | None = None


@dataclass(frozen=True)
class Job:
    """A batch job as the store has it (``policy.jobs`` for its states)."""

    id: int
    username: str
    name: str
    profile: str
    command: tuple[str, ...]
    workdir: str
    wall_time: int
    groups: tuple[str, ...]
    state: str
    reason: str
    submitted: datetime
    submitted_by: str
    started: datetime | None = None
    ended: datetime | None = None
    exit_code: int | None = None
    allocation_id: int | None = None
    gpus: tuple[str, ...] = ()
    gpu_seconds: float | None = None
    container: str = ""

    @property
    def server_name(self) -> str:
        """What its allocation is held under: never a JupyterHub server's name (those have no '/')."""
        return f"job/{self.id}"
