"""Live GPU figures for the user's own container: the devices gpuhub assigned, through NVML.

``GpuReader(nvml, environ)``: ``nvml`` is the pynvml module (or recorded answers in tests). Only the
devices named by ``NVIDIA_VISIBLE_DEVICES`` are reported (a MIG UUID selects that slice), with
memory used/total, utilisation, temperature and the processes using them. NVML is initialised once
and its handles cached; each read is a few NVML calls, made off the event loop by the caller.

States: ``ok``; ``no-gpu`` (CPU-only server: ``NVIDIA_VISIBLE_DEVICES=void``); ``unavailable``
(devices assigned but NVML cannot be read here, e.g. the ``env-only`` exposure of a demo hub).
"""

from __future__ import annotations

import os
import re
import threading

from .. import contract as c
from ..contract import assigned_devices, env_only, mig_children, nvml_text as text
from .envcheck import ENV_ONLY_REASON

KERNEL_FILE = re.compile(r"kernel-([0-9a-f-]{36})\.json")


def kernel_of(pid: int, proc: str = "/proc") -> str | None:
    """The Jupyter kernel id a process runs (from its ``-f .../kernel-<id>.json`` argument), if any."""
    try:
        with open(f"{proc}/{pid}/cmdline", "rb") as f:
            args = f.read().decode(errors="replace").split("\0")
    except OSError:
        return None
    for arg in args:
        m = KERNEL_FILE.search(arg)
        if m:
            return m.group(1)
    return None


class GpuReader:
    def __init__(self, nvml=None, environ=None, proc: str = "/proc"):
        self._nvml = nvml
        self.environ = os.environ if environ is None else environ
        self.proc = proc
        self._handles: list[tuple[str, object, object]] | None = None  # (uuid, handle, parent handle)
        self._lock = threading.Lock()

    def _load(self):
        if self._nvml is None:
            import pynvml

            self._nvml = pynvml
        nvml = self._nvml
        nvml.nvmlInit()
        wanted = set(assigned_devices(self.environ))
        handles = []
        for i in range(nvml.nvmlDeviceGetCount()):
            h = nvml.nvmlDeviceGetHandleByIndex(i)
            uuid = text(nvml.nvmlDeviceGetUUID(h))
            children = mig_children(nvml, h)
            if children:
                for child in children:
                    child_uuid = text(nvml.nvmlDeviceGetUUID(child))
                    if child_uuid in wanted or not any(w.startswith("MIG-") for w in wanted):
                        handles.append((child_uuid, child, h))
            elif uuid in wanted or not any(w.startswith("GPU-") for w in wanted):
                # named by UUID, or by index / "all": the NVIDIA runtime already limits what this container sees
                handles.append((uuid, h, h))
        return handles

    def assignment(self) -> dict:
        """What the hub assigned, from the container's environment (``engine.docker.docker_wiring``)."""
        budget = self.environ.get(c.GPU_MEMORY_BUDGET_ENV, "")
        return {
            "mode": self.environ.get(c.GPU_MODE_ENV, ""),
            "exposure": self.environ.get(c.GPU_EXPOSURE_ENV, ""),
            "simulated": self.environ.get(c.GPU_SIMULATED_ENV) == "true",
            "memory_budget": int(budget) if budget.isdigit() else None,  # shared GPUs: this server's share
            "borrowed": self.environ.get(c.GPU_BORROWED_ENV) == "true",  # beyond the user's GPU quota
        }

    def read(self) -> dict:
        assigned = assigned_devices(self.environ)
        if not assigned:
            return {"state": "no-gpu", "message": "no GPU assigned to this server", "gpus": []}
        with self._lock:
            try:
                if self._handles is None:
                    self._handles = self._load()
                return {"state": "ok", **self.assignment(), "gpus": [self._device(*entry) for entry in self._handles]}
            except Exception as e:  # NVML missing or failing: say so, keep serving
                self._handles = None
                why = ENV_ONLY_REASON if env_only(self.environ) else str(e)
                return {"state": "unavailable", "message": f"GPU figures unavailable: {why}", **self.assignment(),
                        "assigned": assigned, "gpus": []}

    def _device(self, uuid, handle, parent) -> dict:
        nvml = self._nvml
        memory = nvml.nvmlDeviceGetMemoryInfo(handle)
        try:
            utilisation = nvml.nvmlDeviceGetUtilizationRates(handle).gpu
        except nvml.NVMLError:  # not reported for MIG slices
            utilisation = None
        try:
            temperature = nvml.nvmlDeviceGetTemperature(parent, nvml.NVML_TEMPERATURE_GPU)
        except nvml.NVMLError:
            temperature = None
        try:
            running = nvml.nvmlDeviceGetComputeRunningProcesses(handle)
        except nvml.NVMLError:
            running = []
        processes = [
            {"pid": p.pid, "memory_used": p.usedGpuMemory, "kernel_id": kernel_of(p.pid, self.proc)} for p in running
        ]
        return {
            "uuid": uuid,
            "name": text(nvml.nvmlDeviceGetName(handle)),
            "memory_used": int(memory.used),
            "memory_total": int(memory.total),
            "utilization": utilisation,
            "temperature": temperature,
            "processes": processes,
        }
