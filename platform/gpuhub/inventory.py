"""What GPUs a host has: whole devices, their MIG slices, health and NVLink peers.

One model, several sources, chosen by ``[gpus] inventory`` (``load_inventory``): NVML through
nvidia-ml-py (``gpuhub.nvml``, never nvidia-smi) on hosts with NVIDIA GPUs, or an inventory file
describing GPUs the host may not have (CI, demos). An inventory from a file is always marked
``simulated``, and everything fed from it says so.

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
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from jupyterhub.traitlets import ByteSpecification
from traitlets import Bool, Instance, List, TraitError, Unicode, validate

from .settings import Section, SettingsError

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
    source: str  # "nvml", "file:<path>" or "none"
    simulated: bool
    note: str = ""  # why there are no GPUs ("auto": NVML did not load), shown to admins and on the form
    by_uuid: dict = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        object.__setattr__(self, "by_uuid", {g.uuid: g for g in self.gpus})

    def slices(self) -> list[tuple[Gpu, MigSlice]]:
        return [(g, s) for g in self.gpus for s in g.mig]

    def restricted(self, only: frozenset[str] | None = None, exclude: frozenset[str] = frozenset()) -> Inventory:
        """The devices a placement may use: those in ``only`` (a GPU's UUID also brings its MIG slices;
        None: all), less those in ``exclude`` (classroom reservations)."""
        if only is None and not exclude:
            return self
        gpus = []
        for g in self.gpus:
            whole = (only is None or g.uuid in only) and g.uuid not in exclude
            mig = tuple(
                s for s in g.mig if (only is None or g.uuid in only or s.uuid in only) and s.uuid not in exclude and g.uuid not in exclude
            )
            if g.mig:  # a partitioned GPU is only ever handed out as its slices
                if mig:
                    gpus.append(replace(g, mig=mig))
            elif whole:
                gpus.append(g)
        return replace(self, gpus=tuple(gpus))

    def label(self) -> str:
        """How pages name where the devices come from: "simulated (file:...)", "NVML", "no GPU"."""
        if self.simulated:
            return f"simulated ({self.source})"
        return "NVML" if self.gpus else f"no GPU ({self.note})" if self.note else "no GPU"



def _check_uuid(value: str, prefix: str) -> str:
    if not UUID.match(value) or not value.startswith(prefix):
        raise TraitError(f"not a {prefix}-... UUID")
    return value


class InventoryMig(Section):
    section_help = "A MIG instance of the GPU above it, as NVML reports it."

    uuid = Unicode(help='The MIG device UUID. Example: ``"MIG-1f2e3d4c-0000-0000-0000-000000000000"``.').tag(
        accepted="a MIG-... UUID"
    )
    profile = Unicode(help='Its MIG profile. Example: ``"1g.10gb"``.').tag(accepted='a MIG profile, e.g. "1g.10gb"')
    memory = ByteSpecification(allow_none=True, default_value=None, help='Its memory. Example: ``"10G"``.').tag(
        accepted='a size above 0, e.g. "10G"'
    )

    @validate("uuid")
    def _validate_uuid(self, proposal):
        return _check_uuid(proposal["value"], "MIG")


class InventoryGpu(Section):
    section_help = "A GPU of the simulated host, in index order."

    uuid = Unicode(help='The GPU UUID. Example: ``"GPU-00000000-0000-0000-0000-000000000000"``.').tag(
        accepted="a GPU-... UUID"
    )
    name = Unicode("simulated GPU", help='Its product name. Example: ``"NVIDIA H100 80GB HBM3"``.').tag(
        accepted="text"
    )
    memory = ByteSpecification(allow_none=True, default_value=None, help='Its memory. Example: ``"80G"``.').tag(
        accepted='a size above 0, e.g. "80G"'
    )
    compute_capability = Unicode("0.0", help='Its CUDA compute capability. Example: ``"9.0"``.').tag(
        accepted='"major.minor", e.g. "9.0"'
    )
    healthy = Bool(True, help="false marks the GPU unhealthy: it is never handed out.").tag(accepted="true or false")
    health_reason = Unicode("", help='Why it is unhealthy. Example: ``"XID 79: fell off the bus"``.').tag(
        accepted="text"
    )
    nvlink_peers = List(Unicode(), help="UUIDs of the GPUs it has NVLink to.").tag(accepted="a list of GPU UUIDs")
    mig = List(Instance(InventoryMig), help="``[[gpus.mig]]`` blocks: its MIG instances, if MIG is on.").tag(
        section=[InventoryMig], accepted="[[gpus.mig]] blocks"
    )

    @validate("uuid")
    def _validate_uuid(self, proposal):
        return _check_uuid(proposal["value"], "GPU")

    @validate("nvlink_peers")
    def _validate_peers(self, proposal):
        for peer in proposal["value"]:
            _check_uuid(peer, "GPU")
        return proposal["value"]

    @validate("compute_capability")
    def _validate_capability(self, proposal):
        if not re.match(r"^\d+\.\d+$", proposal["value"]):
            raise TraitError("not major.minor")
        return proposal["value"]


class InventoryFile(Section):
    section_help = "An inventory file (TOML): GPUs and MIG slices of a simulated host."

    gpus = List(Instance(InventoryGpu), help="``[[gpus]]`` blocks, one per GPU.").tag(
        section=[InventoryGpu], accepted="[[gpus]] blocks"
    )


def _required_size(value, where: str) -> int:
    if not value:
        raise SettingsError(f'{where}: missing. Accepted: a size above 0, e.g. "80G"')
    return value


def _as_gpu(index: int, entry: InventoryGpu, where: str) -> Gpu:
    if not entry.uuid:
        raise SettingsError(f"{where}.uuid: missing. Accepted: a GPU-... UUID")
    slices = []
    for j, mig in enumerate(entry.mig):
        if not mig.uuid:
            raise SettingsError(f"{where}.mig[{j}].uuid: missing. Accepted: a MIG-... UUID")
        slices.append(MigSlice(mig.uuid, mig.profile or "unknown", _required_size(mig.memory, f"{where}.mig[{j}].memory")))
    major, minor = entry.compute_capability.split(".")
    return Gpu(
        index=index,
        uuid=entry.uuid,
        name=entry.name,
        memory_bytes=_required_size(entry.memory, f"{where}.memory"),
        compute_capability=(int(major), int(minor)),
        healthy=entry.healthy,
        health_reason=entry.health_reason,
        nvlink_peers=frozenset(entry.nvlink_peers),
        mig=tuple(slices),
    )


def parse_inventory(text: str, source: str) -> Inventory:
    """An inventory file's text → ``Inventory`` (simulated); SettingsError naming the key otherwise."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise SettingsError(f"{source}: not valid TOML: {e}") from None
    try:
        entries = InventoryFile.from_dict(data, "").gpus
        gpus = [_as_gpu(i, entry, f"gpus[{i}]") for i, entry in enumerate(entries)]
    except SettingsError as e:
        raise SettingsError(f"{source}: {e}") from None
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


def load_inventory(spec: str, read_nvml: Callable[[], Inventory] | None = None) -> Inventory:
    """The inventory ``[gpus] inventory`` names. ``read_nvml`` is the NVML seam (default: ``gpuhub.nvml``).
    "nvml" raises SettingsError when NVML cannot be read; "auto" falls back to no GPU with the reason."""
    if spec == "none":
        return Inventory(gpus=(), source="none", simulated=False)
    if spec.startswith("file:"):
        return read_inventory_file(spec[len("file:"):])
    if read_nvml is None:
        from .nvml import read_inventory as read_nvml
    try:
        return read_nvml()
    except NvmlUnavailable as e:
        if spec == "nvml":
            raise SettingsError(f"gpus.inventory = \"nvml\": {e}. Use \"auto\" or \"none\" on hosts without NVIDIA GPUs") from None
        return Inventory(gpus=(), source="none", simulated=False, note=f"NVML: {e}")


class NvmlUnavailable(RuntimeError):
    """NVML could not be loaded or initialised (no driver, no GPU, no library)."""
