"""How busy each GPU is (the GPU-idle reclaim's input): the data, its JSON form both ways, and the
two readers of one host's devices (``NvmlActivity``; ``read_file``, SIMULATED).

A reading maps a device UUID to its utilisation (percent, or None where NVML has none, e.g. a MIG
slice: counted as busy, never reclaimed on a guess) and the GPU memory held per allocation. The same
JSON is a SIMULATED activity file (``[reclaim] activity = "file:…"``), the ``activity`` of a Swarm
node's report, and the hub's merged answer (``GET /hub/api/gpuhub/v1/activity``):

    {"devices": {"GPU-…": {"utilisation": 0, "memory": {"17": 2147483648}}}}
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from ..contract import ALLOCATION_LABEL, allocation_of, mig_children, nvml_text


@dataclass(frozen=True)
class DeviceActivity:
    utilisation: int | None  # percent over NVML's last sample period; None: unknown
    memory: dict[int, int] = field(default_factory=dict)  # allocation id -> bytes its processes hold


@dataclass(frozen=True)
class Reading:
    devices: dict[str, DeviceActivity]
    simulated: bool
    source: str


class ActivityError(RuntimeError):
    """No reading: the source failed, or its JSON is not a reading (``field`` names the key to blame)."""

    def __init__(self, message: str, field: str = "devices"):
        super().__init__(message)
        self.field = field


def _count(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def devices_from_json(devices) -> dict[str, DeviceActivity]:
    """``{"GPU-…": {"utilisation": 0 | null, "memory": {"<allocation>": bytes}}}``; ActivityError names
    the entry that is not accepted."""
    if not isinstance(devices, dict):
        raise ActivityError('not an object. Accepted: {"GPU-…": {"utilisation": 0..100 or null, "memory": {...}}}')
    found = {}
    for uuid, entry in devices.items():
        where = f"devices.{uuid}"
        utilisation = entry.get("utilisation") if isinstance(entry, dict) else "missing"
        if utilisation is not None and not (_count(utilisation) and utilisation <= 100):
            raise ActivityError(f"{where}.utilisation: {utilisation!r} is not accepted. Accepted: 0..100 or null", f"{where}.utilisation")
        memory = entry.get("memory") or {}
        if not isinstance(memory, dict) or not all(str(k).isdigit() and _count(v) for k, v in memory.items()):
            raise ActivityError(f"{where}.memory: not accepted. Accepted: {{allocation id: bytes}}", f"{where}.memory")
        found[uuid] = DeviceActivity(utilisation, {int(k): v for k, v in memory.items()})
    return found


def devices_json(devices: dict[str, DeviceActivity]) -> dict:
    return {uuid: {"utilisation": d.utilisation, "memory": {str(k): v for k, v in d.memory.items()}} for uuid, d in devices.items()}


def merged(readings: list[Reading], source: str) -> Reading:
    """One reading of several nodes' devices (UUIDs are unique across nodes); SIMULATED if any was."""
    devices: dict[str, DeviceActivity] = {}
    for reading in readings:
        devices.update(reading.devices)
    return Reading(devices, any(r.simulated for r in readings), source)


def read_file(path: str) -> Reading:
    """A SIMULATED reading: ``{"devices": {"GPU-…": {"utilisation": 0, "memory": {"17": 2147483648}}}}``"""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
        devices = devices_from_json(data.get("devices") if isinstance(data, dict) else None)
    except (OSError, ValueError, ActivityError) as e:
        raise ActivityError(f"cannot read the simulated activity file {path}: {e}") from None
    return Reading(devices, True, f"file:{path}")


class NvmlActivity:
    """Utilisation and per-process memory from NVML; PIDs mapped to allocations through the engine
    (``map_processes``; a Swarm node's reporter, which never touches Docker, reads utilisation only)."""

    def __init__(self, nvml=None, docker_client=None, map_processes: bool = True):
        if nvml is None:
            import pynvml as nvml
        self.nvml = nvml
        self.docker = docker_client
        self.map_processes = map_processes
        self._started = False

    def _pids_by_allocation(self) -> dict[int, int]:
        """Host PID -> allocation id of the gpuhub container it runs in."""
        if self.docker is None:
            import docker

            self.docker = docker.from_env()
        found = {}
        for c in self.docker.containers.list(filters={"label": ALLOCATION_LABEL}):
            allocation = allocation_of(c.labels)
            if allocation is None:
                continue
            top = c.top(ps_args="-o pid")
            for row in top.get("Processes") or []:
                found[int(row[0])] = allocation
        return found

    def read(self) -> Reading:
        nv = self.nvml
        try:
            if not self._started:
                nv.nvmlInit()
                self._started = True
            pids = self._pids_by_allocation() if self.map_processes else {}
            devices = {}
            for i in range(nv.nvmlDeviceGetCount()):
                handle = nv.nvmlDeviceGetHandleByIndex(i)
                for h in [handle, *mig_children(nv, handle)]:
                    self._add(devices, h, pids)
        except nv.NVMLError as e:
            raise ActivityError(f"NVML: {e}") from None
        return Reading(devices, False, "nvml")

    def _add(self, devices: dict, handle, pids: dict[int, int]) -> None:
        nv = self.nvml
        uuid = nvml_text(nv.nvmlDeviceGetUUID(handle))
        try:
            utilisation = int(nv.nvmlDeviceGetUtilizationRates(handle).gpu)
        except nv.NVMLError:
            utilisation = None  # MIG slices have no utilisation counter
        memory: dict[int, int] = {}
        try:
            for p in nv.nvmlDeviceGetComputeRunningProcesses(handle):
                allocation = pids.get(p.pid)
                if allocation is not None and p.usedGpuMemory:
                    memory[allocation] = memory.get(allocation, 0) + int(p.usedGpuMemory)
        except nv.NVMLError:
            pass
        devices[uuid] = DeviceActivity(utilisation, memory)
