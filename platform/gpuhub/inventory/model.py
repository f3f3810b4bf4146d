"""The GPU model every part of the hub shares: ``Gpu`` (index, UUID, memory, compute capability,
health, NVLink peers, MIG slices), ``MigSlice`` and ``Inventory`` (a host's GPUs, where they came
from, and whether they are SIMULATED). Pure data; the sources are ``nvml`` (the host's GPUs) and
``file`` (a simulated inventory file), chosen by ``source.load_inventory``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from ..contract import device_index


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
    node: str = ""  # the host it is in, on an engine of several (a Swarm node's hostname); "" on one host

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
    whole: tuple[Gpu, ...] = field(init=False, repr=False, compare=False)  # the GPUs not partitioned into MIG slices

    def __post_init__(self):
        object.__setattr__(self, "by_uuid", {g.uuid: g for g in self.gpus})
        object.__setattr__(self, "whole", tuple(g for g in self.gpus if not g.mig_enabled))

    def nodes(self) -> list[str]:
        """The hosts the devices are in, in inventory order ([""] on one host)."""
        return list(dict.fromkeys(g.node for g in self.gpus))

    def with_node(self, node: str) -> Inventory:
        """The same devices, each marked as in ``node`` (a node reporter's inventory of its node)."""
        return replace(self, gpus=tuple(replace(g, node=node) for g in self.gpus))

    def on_node(self, node: str) -> Inventory:
        """Only the devices of ``node`` (a home that lives on one node keeps its servers there)."""
        return replace(self, gpus=tuple(g for g in self.gpus if g.node == node))

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

    def device_rows(self) -> list[tuple[str, str, Gpu, MigSlice | None]]:
        """(index name, UUID, GPU, slice or None) of every GPU and MIG slice: ``("0", "GPU-…", gpu,
        None)``, ``("0:1", "MIG-…", gpu, slice)``; on several nodes the name starts with the node's:
        ``("gpu-3/0", …)``."""
        rows = []
        for g in self.gpus:
            at = f"{g.node}/" if g.node else ""  # several nodes: "gpu-3/0", "gpu-3/0:1"
            rows.append((at + device_index(g.index), g.uuid, g, None))
            rows += [(at + device_index(g.index, j), s.uuid, g, s) for j, s in enumerate(g.mig)]
        return rows

    def find(self, key: str) -> str | None:
        """The UUID of a device named by UUID or by index ("0", or "0:1" for GPU 0's second MIG slice)."""
        return next((uuid for index, uuid, _, _ in self.device_rows() if key in (index, uuid)), None)

    def label(self) -> str:
        """How pages name where the devices come from: "simulated (file:...)", "NVML", "no GPU"."""
        if self.simulated:
            return f"simulated ({self.source})"
        return "NVML" if self.gpus else f"no GPU ({self.note})" if self.note else "no GPU"


class NvmlUnavailable(RuntimeError):
    """NVML could not be loaded or initialised (no driver, no GPU, no library)."""
