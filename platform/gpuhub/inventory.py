"""What GPUs a host has: whole devices, their MIG slices, health and NVLink peers.

One model, several sources. This module holds the model and the inventory-file source; an inventory
read from a file describes GPUs the host may not have (CI, demos), so it is always marked
``simulated`` and everything fed from it says so. The NVML source (nvidia-ml-py, never nvidia-smi)
fills the same model on hosts with NVIDIA GPUs.

An inventory file (TOML)::

    [[gpus]]
    uuid = "GPU-00000000-0000-0000-0000-000000000000"
    name = "NVIDIA H100 80GB HBM3"
    memory = "80G"
    compute_capability = "9.0"
    nvlink_peers = ["GPU-00000000-0000-0000-0000-000000000001"]
    # healthy = false; health_reason = "XID 79: fell off the bus"

    [[gpus.mig]]
    uuid = "MIG-00000000-0000-0000-0000-000000000000"
    profile = "1g.10gb"
    memory = "10G"
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field

from jupyterhub.traitlets import ByteSpecification
from traitlets import HasTraits, TraitError

from .settings import SettingsError

UUID = re.compile(r"^(GPU|MIG)-[0-9a-fA-F-]{8,}$")


@dataclass(frozen=True)
class MigSlice:
    uuid: str
    profile: str  # e.g. "1g.10gb", "3g.40gb"
    memory_bytes: int


@dataclass(frozen=True)
class Gpu:
    index: int
    uuid: str
    name: str
    memory_bytes: int
    compute_capability: tuple[int, int]
    healthy: bool = True
    health_reason: str = ""
    nvlink_peers: frozenset[str] = frozenset()
    mig: tuple[MigSlice, ...] = ()

    @property
    def mig_enabled(self) -> bool:
        return bool(self.mig)


@dataclass(frozen=True)
class Inventory:
    gpus: tuple[Gpu, ...]
    source: str  # "nvml" or "file:<path>"
    simulated: bool
    by_uuid: dict = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        object.__setattr__(self, "by_uuid", {g.uuid: g for g in self.gpus})

    def slices(self) -> list[tuple[Gpu, MigSlice]]:
        return [(g, s) for g in self.gpus for s in g.mig]


class _Sizes(HasTraits):
    """Parses sizes ("80G", "10240M", or bytes) the way the settings file does."""

    size = ByteSpecification(allow_none=False, default_value=0)


def _size(value, where: str) -> int:
    if value is None:
        raise SettingsError(f"{where}: missing. Accepted: a size, e.g. \"80G\"")
    holder = _Sizes()
    try:
        holder.size = value
    except TraitError:
        raise SettingsError(f"{where} = {value!r} is not accepted. Accepted: a size, e.g. \"80G\"") from None
    if not holder.size or holder.size <= 0:
        raise SettingsError(f"{where} = {value!r} is not accepted. Accepted: a size above 0, e.g. \"80G\"")
    return holder.size


def _uuid(value, prefix: str, where: str) -> str:
    if not isinstance(value, str) or not UUID.match(value) or not value.startswith(prefix):
        raise SettingsError(f"{where} = {value!r} is not accepted. Accepted: a {prefix}-... UUID")
    return value


def _capability(value, where: str) -> tuple[int, int]:
    m = re.match(r"^(\d+)\.(\d+)$", str(value))
    if not m:
        raise SettingsError(f"{where} = {value!r} is not accepted. Accepted: \"major.minor\", e.g. \"9.0\"")
    return int(m.group(1)), int(m.group(2))


GPU_KEYS = {"uuid", "name", "memory", "compute_capability", "healthy", "health_reason", "nvlink_peers", "mig"}
MIG_KEYS = {"uuid", "profile", "memory"}


def _check_keys(table, accepted: set[str], where: str) -> None:
    if not isinstance(table, dict):
        raise SettingsError(f"{where}: expected a table, got {table!r}")
    unknown = sorted(set(table) - accepted)
    if unknown:
        raise SettingsError(f"{where}.{unknown[0]}: unknown key. Accepted keys: {', '.join(sorted(accepted))}")


def parse_inventory(text: str, source: str) -> Inventory:
    """An inventory file's text → ``Inventory`` (simulated); SettingsError naming the key otherwise."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise SettingsError(f"{source}: not valid TOML: {e}") from None
    _check_keys(data, {"gpus"}, source)
    gpus = []
    for i, table in enumerate(data.get("gpus", [])):
        where = f"{source}: gpus[{i}]"
        _check_keys(table, GPU_KEYS, where)
        slices = []
        for j, mig in enumerate(table.get("mig", [])):
            mwhere = f"{where}.mig[{j}]"
            _check_keys(mig, MIG_KEYS, mwhere)
            slices.append(
                MigSlice(
                    uuid=_uuid(mig.get("uuid"), "MIG", f"{mwhere}.uuid"),
                    profile=str(mig.get("profile", "")) or "unknown",
                    memory_bytes=_size(mig.get("memory"), f"{mwhere}.memory"),
                )
            )
        peers = table.get("nvlink_peers", [])
        if not isinstance(peers, list):
            raise SettingsError(f"{where}.nvlink_peers = {peers!r} is not accepted. Accepted: a list of GPU UUIDs")
        healthy = table.get("healthy", True)
        if not isinstance(healthy, bool):
            raise SettingsError(f"{where}.healthy = {healthy!r} is not accepted. Accepted: true or false")
        gpus.append(
            Gpu(
                index=i,
                uuid=_uuid(table.get("uuid"), "GPU", f"{where}.uuid"),
                name=str(table.get("name", "simulated GPU")),
                memory_bytes=_size(table.get("memory"), f"{where}.memory"),
                compute_capability=_capability(table.get("compute_capability", "0.0"), f"{where}.compute_capability"),
                healthy=healthy,
                health_reason=str(table.get("health_reason", "")),
                nvlink_peers=frozenset(_uuid(p, "GPU", f"{where}.nvlink_peers") for p in peers),
                mig=tuple(slices),
            )
        )
    uuids = [g.uuid for g in gpus] + [s.uuid for g in gpus for s in g.mig]
    if len(set(uuids)) != len(uuids):
        raise SettingsError(f"{source}: a UUID appears twice; every GPU and MIG slice needs its own")
    known = {g.uuid for g in gpus}
    for g in gpus:
        stray = sorted(g.nvlink_peers - known)
        if stray:
            raise SettingsError(f"{source}: gpus[{g.index}].nvlink_peers names {stray[0]!r}, which is not in the file")
    return Inventory(gpus=tuple(gpus), source=source, simulated=True)


def read_inventory_file(path: str) -> Inventory:
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        raise SettingsError(f"{path}: cannot read the inventory file ({e.strerror})") from None
    return parse_inventory(text, f"file:{path}")
