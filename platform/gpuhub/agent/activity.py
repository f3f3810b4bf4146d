"""How busy each GPU is, for the reclaim: one reading per round from NVML (the host's devices) or
from a file (SIMULATED, for CI and demos; every message built from it says so).

A reading maps a device UUID to its utilisation (percent, or None where NVML has none, e.g. a MIG
slice: counted as busy, never reclaimed on a guess) and the GPU memory held per allocation (through
the engine: ``docker top`` of each gpuhub container gives the host PIDs NVML reports).
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
    pass


def read_file(path: str) -> Reading:
    """``{"devices": {"GPU-…": {"utilisation": 0, "memory": {"17": 2147483648}}}}``"""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
        devices = {
            uuid: DeviceActivity(
                None if d.get("utilisation") is None else int(d["utilisation"]),
                {int(k): int(v) for k, v in (d.get("memory") or {}).items()},
            )
            for uuid, d in data["devices"].items()
        }
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise ActivityError(f"cannot read the simulated activity file {path}: {e}") from None
    return Reading(devices, True, f"file:{path}")


class NvmlActivity:
    """Utilisation and per-process memory from NVML; PIDs mapped to allocations through the engine."""

    def __init__(self, nvml=None, docker_client=None):
        if nvml is None:
            import pynvml as nvml
        self.nvml = nvml
        self.docker = docker_client
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
            pids = self._pids_by_allocation()
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


def source_for(spec: str):
    """The reader the ``[reclaim] activity`` setting names: a callable returning a ``Reading``."""
    if spec.startswith("file:"):
        path = spec[len("file:"):]
        return lambda: read_file(path)
    return NvmlActivity().read
