"""The inventory file: GPUs a host may not have, for CI and demos; everything fed from it is
labelled SIMULATED. Its tables load like the settings file's (``config.sections``), so errors read the
same.

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

from traitlets import Bool, Instance, List, TraitError, Unicode, validate

from ..config.sections import Section, SettingsError, Size, parse_toml
from .model import Gpu, Inventory, MigSlice

UUID = re.compile(r"^(GPU|MIG)-[0-9a-fA-F-]{8,}$")


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
    memory = Size(allow_none=True, default_value=None, help='Its memory. Example: ``"10G"``.').tag(
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
    memory = Size(allow_none=True, default_value=None, help='Its memory. Example: ``"80G"``.').tag(
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
    entries = parse_toml(InventoryFile, text, source).gpus
    try:
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
