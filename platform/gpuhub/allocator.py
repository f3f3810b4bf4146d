"""Where a GPU request goes: pure placement policy over an inventory and what is already held.

No database, no Docker, no hub: ``place(inventory, holdings, request)`` answers with a
``Placement`` (which device UUIDs, and a memory budget for shared slots), ``NoFitNow`` (within what
the pool has, but taken: the request waits in line) or ``NeverFits`` (more than the pool could ever
give: refused at once). The store calls it inside one transaction, so two decisions never see the
same free device.

Rules:
- exclusive: whole, healthy, non-MIG GPUs nobody holds in any mode; for several GPUs, a set whose
  members are all NVLink peers of each other is preferred, then the set with the most NVLink pairs,
  then the lowest indices.
- shared: a healthy non-MIG GPU not held exclusively, with fewer than ``max_shares`` holders and
  enough unbudgeted memory; best fit (the GPU left with the least spare budget), so partly shared
  GPUs fill up before whole GPUs are broken into.
- mig: a free MIG slice of the asked profile (any profile when none is asked) on a healthy GPU.
Unhealthy devices are never chosen.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations

from .inventory import Gpu, Inventory

MODES = ("exclusive", "shared", "mig")


@dataclass(frozen=True)
class GpuRequest:
    mode: str  # "exclusive", "shared" or "mig"
    count: int = 1  # exclusive: whole GPUs; shared and mig: always 1
    memory_bytes: int = 0  # shared: the budget
    mig_profile: str = ""  # mig: e.g. "1g.10gb"; empty = any

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"mode {self.mode!r}: expected one of {', '.join(MODES)}")
        if self.count < 1 or (self.mode != "exclusive" and self.count != 1):
            raise ValueError(f"count {self.count}: exclusive takes 1 or more GPUs, shared and mig exactly 1")
        if self.mode == "shared" and self.memory_bytes <= 0:
            raise ValueError("a shared request needs a memory budget above 0")


@dataclass(frozen=True)
class Holding:
    """A device (GPU or MIG UUID) held by a live allocation, in a mode, with its shared budget."""

    uuid: str
    mode: str
    memory_bytes: int = 0


@dataclass(frozen=True)
class Placement:
    uuids: tuple[str, ...]
    memory_bytes: int = 0  # the shared budget; 0 otherwise


@dataclass(frozen=True)
class NoFitNow:
    reason: str


@dataclass(frozen=True)
class NeverFits:
    reason: str


Decision = Placement | NoFitNow | NeverFits


def place(inventory: Inventory, holdings: list[Holding], request: GpuRequest, max_shares: int = 4) -> Decision:
    if request.mode == "exclusive":
        return _exclusive(inventory, holdings, request)
    if request.mode == "shared":
        return _shared(inventory, holdings, request, max_shares)
    return _mig(inventory, holdings, request)


def _whole(inventory: Inventory) -> list[Gpu]:
    return [g for g in inventory.gpus if not g.mig_enabled]


def _exclusive(inventory: Inventory, holdings: list[Holding], request: GpuRequest) -> Decision:
    whole = _whole(inventory)
    if request.count > len(whole):
        return NeverFits(f"{request.count} whole GPUs asked; this pool has {len(whole)}")
    held = {h.uuid for h in holdings}
    free = [g for g in whole if g.healthy and g.uuid not in held]
    if len(free) < request.count:
        return NoFitNow(f"{len(free)} of {len(whole)} whole GPUs free; {request.count} asked")
    if request.count == 1:
        return Placement((free[0].uuid,))
    best = max(combinations(free, request.count), key=_nvlink_score)
    return Placement(tuple(g.uuid for g in best))


def _nvlink_score(gpus: tuple[Gpu, ...]) -> tuple[int, int, tuple[int, ...]]:
    pairs = sum(1 for a, b in combinations(gpus, 2) if b.uuid in a.nvlink_peers or a.uuid in b.nvlink_peers)
    total = len(gpus) * (len(gpus) - 1) // 2
    # all-connected first, then most links, then lowest indices (negated so max() prefers them)
    return (int(pairs == total), pairs, tuple(-g.index for g in gpus))


def _shared(inventory: Inventory, holdings: list[Holding], request: GpuRequest, max_shares: int) -> Decision:
    whole = _whole(inventory)
    if not any(g.memory_bytes >= request.memory_bytes for g in whole):
        biggest = max((g.memory_bytes for g in whole), default=0)
        return NeverFits(f"a {request.memory_bytes}-byte budget asked; the largest GPU has {biggest} bytes")
    candidates = []
    for g in whole:
        on_gpu = [h for h in holdings if h.uuid == g.uuid]
        if not g.healthy or any(h.mode == "exclusive" for h in on_gpu) or len(on_gpu) >= max_shares:
            continue
        spare = g.memory_bytes - sum(h.memory_bytes for h in on_gpu) - request.memory_bytes
        if spare >= 0:
            candidates.append((spare, g.index, g))
    if not candidates:
        return NoFitNow("no shared GPU has that much unbudgeted memory and a free slot")
    _, _, gpu = min(candidates)
    return Placement((gpu.uuid,), memory_bytes=request.memory_bytes)


def _mig(inventory: Inventory, holdings: list[Holding], request: GpuRequest) -> Decision:
    matching = [(g, s) for g, s in inventory.slices() if not request.mig_profile or s.profile == request.mig_profile]
    if not matching:
        profiles = sorted({s.profile for _, s in inventory.slices()}) or ["none"]
        return NeverFits(f"no MIG slice of profile {request.mig_profile!r}; this pool has: {', '.join(profiles)}")
    held = {h.uuid for h in holdings}
    free = [s for g, s in matching if g.healthy and s.uuid not in held]
    if not free:
        return NoFitNow(f"all {len(matching)} matching MIG slices are held")
    return Placement((free[0].uuid,))
