"""Where a GPU request goes: pure placement policy over an inventory and what is already held.

No database, no Docker, no hub: ``place(inventory, holdings, request)`` answers with a
``Placement`` (which device UUIDs, and a memory budget for shared slots), ``NoFitNow`` (within what
the pool has, but taken: the request waits in line) or ``NeverFits`` (more than the pool could ever
give: refused at once). The store calls it inside one transaction, so two decisions never see the
same free device.

Rules:
- exclusive: whole, healthy, non-MIG GPUs nobody holds in any mode, all on one node (an engine of
  several hosts: a server's GPUs are in the machine it runs on); the node with the fewest free GPUs
  that still fit (best fit, so nodes with many free GPUs stay whole for multi-GPU requests); within
  it, for several GPUs, a set whose members are all NVLink peers of each other is preferred, then the
  set with the most NVLink pairs, then the lowest indices.
- shared: a healthy non-MIG GPU not held exclusively, with fewer than ``max_shares`` holders and
  enough unbudgeted memory; best fit (the GPU left with the least spare budget), so partly shared
  GPUs fill up before whole GPUs are broken into.
- mig: a free MIG slice of the asked profile (any profile when none is asked) on a healthy GPU.
Unhealthy devices are never chosen.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations

from ..inventory.model import Gpu, Inventory

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
    """A device (GPU or MIG UUID) held in a mode: by ``holders`` live allocations, with their shared
    budgets summed in ``memory_bytes`` (the store reads them grouped per device and mode)."""

    uuid: str
    mode: str
    memory_bytes: int = 0
    holders: int = 1


@dataclass(frozen=True)
class Placement:
    uuids: tuple[str, ...]
    memory_bytes: int = 0  # the shared budget; 0 otherwise
    borrowed: bool = False  # beyond its user's GPU quota, on a GPU nobody waited for (``policy.decide``)


def change_holdings(held: dict[tuple[str, str], Holding], devices, sign: int) -> None:
    """``held`` (per (UUID, mode)) with ``devices`` ((UUID, mode, budget) each) added (``sign`` 1) or
    taken away (-1)."""
    for uuid, mode, memory_bytes in devices:
        old = held.get((uuid, mode)) or Holding(uuid, mode, 0, 0)
        if old.holders + sign:
            held[(uuid, mode)] = Holding(uuid, mode, old.memory_bytes + sign * memory_bytes, old.holders + sign)
        else:
            del held[(uuid, mode)]


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


def _loads(holdings: list[Holding]) -> tuple[set[str], dict[str, int], dict[str, int]]:
    """(the devices held exclusively, holders per held device, budgeted bytes per held device), in
    one pass over the holdings."""
    exclusive, holders, budgeted = set(), {}, {}
    for h in holdings:
        if h.mode == "exclusive":
            exclusive.add(h.uuid)
        holders[h.uuid] = holders.get(h.uuid, 0) + h.holders
        budgeted[h.uuid] = budgeted.get(h.uuid, 0) + h.memory_bytes
    return exclusive, holders, budgeted


def _exclusive(inventory: Inventory, holdings: list[Holding], request: GpuRequest) -> Decision:
    whole = inventory.whole
    per_node: dict[str, list[Gpu]] = {}
    for g in whole:
        per_node.setdefault(g.node, []).append(g)
    largest = max((len(gpus) for gpus in per_node.values()), default=0)
    if request.count > largest:
        if len(per_node) > 1:
            return NeverFits(f"{_gpus(request.count)} asked; the largest node has {largest} (a server's GPUs are all in one machine)")
        return NeverFits(f"{_gpus(request.count)} asked; this pool has {len(whole)}")
    held = {h.uuid for h in holdings}
    free_per_node = {node: [g for g in gpus if g.healthy and g.uuid not in held] for node, gpus in per_node.items()}
    fitting = [(len(free), i, free) for i, free in enumerate(free_per_node.values()) if len(free) >= request.count]
    if not fitting:
        free_total = sum(len(free) for free in free_per_node.values())
        text = f"{free_total} of {len(whole)} whole GPUs free; {request.count} asked"
        if free_total >= request.count:
            text += ", but no node has that many free together"
        return NoFitNow(text)
    _, _, free = min(fitting)  # best fit: the node left with the fewest free GPUs
    if request.count == 1:
        return Placement((free[0].uuid,))
    best = max(combinations(free, request.count), key=_nvlink_score)
    return Placement(tuple(g.uuid for g in best))


def _gpus(n: int) -> str:
    return f"{n} whole GPU{'' if n == 1 else 's'}"


def _nvlink_score(gpus: tuple[Gpu, ...]) -> tuple[int, int, tuple[int, ...]]:
    pairs = sum(1 for a, b in combinations(gpus, 2) if b.uuid in a.nvlink_peers or a.uuid in b.nvlink_peers)
    total = len(gpus) * (len(gpus) - 1) // 2
    # all-connected first, then most links, then lowest indices (negated so max() prefers them)
    return (int(pairs == total), pairs, tuple(-g.index for g in gpus))


def _shared(inventory: Inventory, holdings: list[Holding], request: GpuRequest, max_shares: int) -> Decision:
    whole = inventory.whole
    if not any(g.memory_bytes >= request.memory_bytes for g in whole):
        biggest = max((g.memory_bytes for g in whole), default=0)
        return NeverFits(f"a {request.memory_bytes}-byte budget asked; the largest GPU has {biggest} bytes")
    exclusive, holders, budgeted = _loads(holdings)
    best = None
    for position, g in enumerate(whole):
        if not g.healthy or g.uuid in exclusive or holders.get(g.uuid, 0) >= max_shares:
            continue
        spare = g.memory_bytes - budgeted.get(g.uuid, 0) - request.memory_bytes
        # the least spare budget, then the lowest index, then inventory order (nodes repeat indices)
        if spare >= 0 and (best is None or (spare, g.index, position) < best[0]):
            best = ((spare, g.index, position), g)
    if best is None:
        return NoFitNow("no shared GPU has that much unbudgeted memory and a free slot")
    return Placement((best[1].uuid,), memory_bytes=request.memory_bytes)


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


def pool_of(request: GpuRequest) -> str:
    """The wait line a request joins: requests that compete for the same kind of device.
    "exclusive×2", "shared", "mig:1g.10gb" (or "mig:any")."""
    if request.mode == "exclusive":
        return f"exclusive×{request.count}"
    if request.mode == "mig":
        return f"mig:{request.mig_profile or 'any'}"
    return "shared"


@dataclass(frozen=True)
class Capacity:
    free: int  # how many more such requests fit now (exclusive: whole GPUs free)
    total: int  # of how many (exclusive: whole GPUs; shared: slots; mig: matching slices)
    text: str  # what the spawn form shows, e.g. "2 of 8 NVIDIA H100 80GB HBM3 free"


def _model_names(gpus) -> str:
    names = sorted({g.name for g in gpus})
    return names[0] if len(names) == 1 else "GPUs"


def capacity(inventory: Inventory, holdings: list[Holding], request: GpuRequest, max_shares: int = 4) -> Capacity:
    """What is free now for ``request``'s kind of device, in words a user reads on the spawn form."""
    exclusive, held, budgeted = _loads(holdings)  # held: holders per held device
    if request.mode == "exclusive":
        whole = inventory.whole
        free = [g for g in whole if g.healthy and g.uuid not in held]
        text = f"{len(free)} of {len(whole)} {_model_names(whole)} free"
        if request.count > 1:
            text += f" ({request.count} needed)"
        return Capacity(len(free), len(whole), text if whole else "no whole GPU on this host")
    if request.mode == "shared":
        slots = 0
        for g in inventory.whole:
            if not g.healthy or g.uuid in exclusive:
                continue
            spare = g.memory_bytes - budgeted.get(g.uuid, 0)
            slots += max(0, min(max_shares - held.get(g.uuid, 0), spare // request.memory_bytes))
        total = sum(min(max_shares, g.memory_bytes // request.memory_bytes) for g in inventory.whole)
        return Capacity(slots, total, f"shared: {slots} slice{'s' if slots != 1 else ''} free" if total else "no GPU to share on this host")
    matching = [(g, s) for g, s in inventory.slices() if not request.mig_profile or s.profile == request.mig_profile]
    free = [s for g, s in matching if g.healthy and s.uuid not in held]
    label = request.mig_profile or "MIG"
    return Capacity(
        len(free), len(matching), f"{label}: {len(free)} of {len(matching)} slices free" if matching else f"no {label} slice on this host"
    )
