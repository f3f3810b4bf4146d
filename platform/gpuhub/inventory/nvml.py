"""The NVML source of the GPU inventory: nvidia-ml-py, never nvidia-smi.

``NvmlSource(nvml)`` is the one seam to NVIDIA's library: ``nvml`` is the ``pynvml`` module in
production and a replay of recorded NVML answers in the unit tests. ``read()`` returns an
``Inventory`` with, per GPU: index, UUID, name, memory, compute capability, MIG instances (UUID,
profile, memory), NVLink peers, and health from NVML's own signals:

- the GPU answers at all (``NVML_ERROR_GPU_IS_LOST``: it fell off the bus, XID 79);
- uncorrected ECC errors since the driver loaded (volatile counter);
- a row-remapping failure (the memory cannot repair itself any more);
- critical XID events seen since the hub started (an event set registered once, drained each read).

A GPU failing any of them is ``healthy = False`` with the reason, and the allocator never hands it out.
"""

from __future__ import annotations

import re
import threading
from dataclasses import replace

from ..contract import mig_children, nvml_text as text
from .model import Gpu, Inventory, MigSlice, NvmlUnavailable

# XIDs after which a GPU should not get new work until an admin looks at it (NVIDIA's XID catalogue:
# double-bit ECC, internal micro-controller halt, fell off the bus, NVLink error, uncontained ECC, GSP errors).
FATAL_XIDS = frozenset({48, 61, 62, 74, 79, 94, 95, 119, 120})
MIG_NAME = re.compile(r"MIG (\S+)$")


def _bus_id(value) -> str:
    """NVML spells PCI bus ids with 8 or 4 domain digits and either case; compare them as one form."""
    parts = text(value).lower().split(":")
    domain = parts[-3] if len(parts) >= 3 else "0"
    return f"{int(domain, 16):04x}:{parts[-2]}:{parts[-1]}" if len(parts) >= 2 else text(value).lower()


class NvmlSource:
    """Reads the host's GPUs through ``nvml`` (the pynvml module, or a recorded replay of it)."""

    def __init__(self, nvml=None):
        if nvml is None:
            try:
                import pynvml as nvml
            except ImportError as e:  # nvidia-ml-py not installed
                raise NvmlUnavailable(f"nvidia-ml-py is not installed ({e})") from None
        self.nvml = nvml
        self._lock = threading.Lock()
        self._initialised = False
        self._events = None
        self.xids: dict[str, list[int]] = {}  # critical XIDs seen, per GPU UUID

    def _init(self) -> None:
        if self._initialised:
            return
        try:
            self.nvml.nvmlInit()
        except self.nvml.NVMLError as e:
            raise NvmlUnavailable(f"NVML did not initialise: {e}") from None
        self._initialised = True

    def read(self) -> Inventory:
        with self._lock:
            self._init()
            nvml = self.nvml
            count = nvml.nvmlDeviceGetCount()
            handles, lost = [], {}
            for i in range(count):
                try:
                    handles.append(nvml.nvmlDeviceGetHandleByIndex(i))
                except nvml.NVMLError as e:
                    handles.append(None)
                    lost[i] = str(e)
            self._watch_xids(handles)
            by_bus = {}
            for i, h in enumerate(handles):
                if h is not None:
                    try:
                        by_bus[_bus_id(nvml.nvmlDeviceGetPciInfo(h).busId)] = i
                    except nvml.NVMLError:
                        pass
            gpus = [self._gpu(i, h, lost.get(i, ""), handles, by_bus) for i, h in enumerate(handles)]
            return Inventory(gpus=tuple(_with_switch_peers(gpus, self._switched)), source="nvml", simulated=False)

    def memory_used(self) -> dict[str, tuple[int, int]]:
        """Per device UUID (GPUs and MIG slices): (memory used, memory total) in bytes, now."""
        with self._lock:
            self._init()
            nvml, out = self.nvml, {}
            for i in range(nvml.nvmlDeviceGetCount()):
                try:
                    handle = nvml.nvmlDeviceGetHandleByIndex(i)
                    for h in [handle, *mig_children(nvml, handle)]:
                        info = nvml.nvmlDeviceGetMemoryInfo(h)
                        out[text(nvml.nvmlDeviceGetUUID(h))] = (int(info.used), int(info.total))
                except nvml.NVMLError:
                    continue  # a lost GPU: the inventory already marks it unhealthy
            return out

    # --- one device ------------------------------------------------------------------------------
    def _gpu(self, index, handle, lost_reason, handles, by_bus) -> Gpu:
        nvml = self.nvml
        if handle is None:
            return _lost(index, lost_reason)
        try:
            uuid = text(nvml.nvmlDeviceGetUUID(handle))
            name = text(nvml.nvmlDeviceGetName(handle))
            memory = int(nvml.nvmlDeviceGetMemoryInfo(handle).total)
            major, minor = nvml.nvmlDeviceGetCudaComputeCapability(handle)
        except nvml.NVMLError as e:
            return _lost(index, str(e))
        problems = self._health_problems(handle, uuid)
        return Gpu(
            index=index,
            uuid=uuid,
            name=name,
            memory_bytes=memory,
            compute_capability=(int(major), int(minor)),
            healthy=not problems,
            health_reason="; ".join(problems),
            nvlink_peers=frozenset(self._nvlink_peers(index, handle, handles, by_bus)),
            mig=tuple(self._mig_slices(handle)),
        )

    def _optional(self, call, *args, default=None):
        """An NVML query some GPUs do not support (consumer cards, MIG children): default then."""
        try:
            return call(*args)
        except (self.nvml.NVMLError_NotSupported, self.nvml.NVMLError_NotFound):
            return default

    def _health_problems(self, handle, uuid) -> list[str]:
        nvml = self.nvml
        problems = []
        ecc = self._optional(
            nvml.nvmlDeviceGetTotalEccErrors, handle, nvml.NVML_MEMORY_ERROR_TYPE_UNCORRECTED, nvml.NVML_VOLATILE_ECC
        )
        if ecc:
            problems.append(f"{ecc} uncorrected ECC error(s) since the driver loaded")
        rows = self._optional(nvml.nvmlDeviceGetRemappedRows, handle)
        if rows and rows[3]:
            problems.append("row remapping failed: GPU memory can no longer repair itself")
        xids = self.xids.get(uuid)
        if xids:
            problems.append("critical XID " + ", ".join(str(x) for x in sorted(set(xids))))
        return problems

    def _nvlink_peers(self, index, handle, handles, by_bus) -> set[str]:
        nvml = self.nvml
        peers = set()
        for link in range(nvml.NVML_NVLINK_MAX_LINKS):
            try:
                if nvml.nvmlDeviceGetNvLinkState(handle, link) != nvml.NVML_FEATURE_ENABLED:
                    continue
                remote = _bus_id(nvml.nvmlDeviceGetNvLinkRemotePciInfo_v2(handle, link).busId)
            except nvml.NVMLError:  # no NVLink on this GPU, or this link index does not exist
                if link == 0:
                    break
                continue
            other = by_bus.get(remote)
            if other is None:  # the far end is an NVSwitch: every GPU on the switches is a peer
                self._switched.add(index)
            elif other != index and handles[other] is not None:
                peers.add(text(nvml.nvmlDeviceGetUUID(handles[other])))
        return peers

    def _mig_slices(self, handle) -> list[MigSlice]:
        nvml = self.nvml
        slices = []
        for child in mig_children(nvml, handle):
            name = text(nvml.nvmlDeviceGetName(child))
            m = MIG_NAME.search(name)
            slices.append(
                MigSlice(
                    uuid=text(nvml.nvmlDeviceGetUUID(child)),
                    profile=m.group(1) if m else "unknown",
                    memory_bytes=int(nvml.nvmlDeviceGetMemoryInfo(child).total),
                )
            )
        return slices

    # --- XID events ---------------------------------------------------------------------------
    def _watch_xids(self, handles) -> None:
        """Register for critical XID events once; drain what arrived since the last read."""
        nvml = self.nvml
        self._switched = set()
        if self._events is None:
            try:
                self._events = nvml.nvmlEventSetCreate()
                for h in handles:
                    if h is not None:
                        self._optional(nvml.nvmlDeviceRegisterEvents, h, nvml.nvmlEventTypeXidCriticalError, self._events)
            except nvml.NVMLError:
                self._events = False  # not supported here: ECC and lost-GPU checks still apply
        if not self._events:
            return
        while True:
            try:
                event = nvml.nvmlEventSetWait_v2(self._events, 0)
            except nvml.NVMLError_Timeout:
                return
            except nvml.NVMLError:
                return
            if event.eventData in FATAL_XIDS:
                uuid = text(nvml.nvmlDeviceGetUUID(event.device))
                self.xids.setdefault(uuid, []).append(int(event.eventData))


def _lost(index: int, reason: str) -> Gpu:
    return Gpu(
        index=index,
        uuid=f"GPU-unreadable-index-{index}",
        name="unreadable GPU",
        memory_bytes=0,
        compute_capability=(0, 0),
        healthy=False,
        health_reason=f"NVML cannot read it ({reason}); it may have fallen off the bus",
    )


def _with_switch_peers(gpus: list[Gpu], switched: set[int]) -> list[Gpu]:
    """GPUs whose NVLinks end at NVSwitches (HGX boards) all reach each other over NVLink."""
    on_switch = {gpus[i].uuid for i in switched}
    if len(on_switch) < 2:
        return gpus
    out = []
    for g in gpus:
        if g.uuid in on_switch:
            g = replace(g, nvlink_peers=g.nvlink_peers | (on_switch - {g.uuid}))
        out.append(g)
    return out


_default_source: NvmlSource | None = None


def default_source() -> NvmlSource:
    """The process's one NvmlSource (so XID events accumulate)."""
    global _default_source
    if _default_source is None:
        _default_source = NvmlSource()
    return _default_source


def read_inventory() -> Inventory:
    """The host's GPUs through pynvml."""
    return default_source().read()


def read_memory_used() -> dict[str, tuple[int, int]]:
    """Live memory per device UUID through pynvml (the admin GPU page)."""
    return default_source().memory_used()
