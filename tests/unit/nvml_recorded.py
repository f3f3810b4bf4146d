"""A replay of recorded NVML answers: the ``nvml`` seam of ``gpuhub.inventory.nvml.NvmlSource`` for hosts
without a GPU. Each device is a dict of what NVML answered for it (values as nvidia-ml-py returns
them); a missing answer raises NVML's own "not supported" error, an ``Exception`` value is raised.
Constants and error classes are nvidia-ml-py's own, so the reader is tested against the real API."""

from __future__ import annotations

from types import SimpleNamespace

import pynvml

_CONSTANTS = {name: getattr(pynvml, name) for name in dir(pynvml) if name.startswith(("NVML", "nvmlEventType"))}


class RecordedNvml:
    def __init__(self, devices: list[dict], init_error: Exception | None = None, xid_events=()):
        self.__dict__.update(_CONSTANTS)
        self.devices = devices
        self.init_error = init_error
        self.events = list(xid_events)  # (device index, xid)
        self.calls: list[str] = []

    def _answer(self, handle, key, *args):
        self.calls.append(key)
        value = handle.get(key, pynvml.NVMLError_NotSupported)
        if isinstance(value, type) and issubclass(value, Exception):
            raise value(pynvml.NVML_ERROR_NOT_SUPPORTED)
        if isinstance(value, Exception):
            raise value
        return value(*args) if callable(value) else value

    # --- the functions gpuhub.inventory.nvml calls ---
    def nvmlInit(self):
        if self.init_error:
            raise self.init_error

    def nvmlDeviceGetCount(self):
        return len(self.devices)

    def nvmlDeviceGetHandleByIndex(self, i):
        d = self.devices[i]
        if isinstance(d.get("handle"), Exception):
            raise d["handle"]
        return d

    def nvmlDeviceGetUUID(self, h):
        return self._answer(h, "uuid")

    def nvmlDeviceGetName(self, h):
        return self._answer(h, "name")

    def nvmlDeviceGetCudaComputeCapability(self, h):
        return self._answer(h, "cc")

    def nvmlDeviceGetPciInfo(self, h):
        return SimpleNamespace(busId=self._answer(h, "bus"))

    def nvmlDeviceGetTotalEccErrors(self, h, error_type, counter):
        assert (error_type, counter) == (pynvml.NVML_MEMORY_ERROR_TYPE_UNCORRECTED, pynvml.NVML_VOLATILE_ECC)
        return self._answer(h, "ecc_uncorrected")

    def nvmlDeviceGetRemappedRows(self, h):
        return self._answer(h, "remapped_rows")

    def nvmlDeviceGetNvLinkState(self, h, link):
        links = h.get("nvlinks")
        if links is None:
            raise pynvml.NVMLError_NotSupported(pynvml.NVML_ERROR_NOT_SUPPORTED)
        if link >= len(links):
            raise pynvml.NVMLError_InvalidArgument(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        return pynvml.NVML_FEATURE_ENABLED if links[link] else pynvml.NVML_FEATURE_DISABLED

    def nvmlDeviceGetNvLinkRemotePciInfo_v2(self, h, link):
        return SimpleNamespace(busId=h["nvlinks"][link])

    def nvmlDeviceGetMigMode(self, h):
        return self._answer(h, "mig_mode")

    def nvmlDeviceGetMaxMigDeviceCount(self, h):
        return len(h.get("mig", []))

    def nvmlDeviceGetMigDeviceHandleByIndex(self, h, j):
        child = h["mig"][j]
        if child is None:
            raise pynvml.NVMLError_NotFound(pynvml.NVML_ERROR_NOT_FOUND)
        return child

    def nvmlDeviceGetMemoryInfo(self, h):
        return SimpleNamespace(total=self._answer(h, "memory"), used=h.get("memory_used", 0))

    def nvmlDeviceGetUtilizationRates(self, h):
        return SimpleNamespace(gpu=self._answer(h, "utilization"))

    def nvmlDeviceGetTemperature(self, h, sensor):
        assert sensor == pynvml.NVML_TEMPERATURE_GPU
        return self._answer(h, "temperature")

    def nvmlDeviceGetComputeRunningProcesses(self, h):
        return [SimpleNamespace(pid=pid, usedGpuMemory=used) for pid, used in h.get("processes", [])]

    def nvmlEventSetCreate(self):
        return "event-set"

    def nvmlDeviceRegisterEvents(self, h, types, event_set):
        assert types == pynvml.nvmlEventTypeXidCriticalError

    def nvmlEventSetWait_v2(self, event_set, timeout_ms):
        if not self.events:
            raise pynvml.NVMLError_Timeout(pynvml.NVML_ERROR_TIMEOUT)
        index, xid = self.events.pop(0)
        return SimpleNamespace(device=self.devices[index], eventData=xid)

    NVMLError = pynvml.NVMLError
    NVMLError_NotSupported = pynvml.NVMLError_NotSupported
    NVMLError_NotFound = pynvml.NVMLError_NotFound
    NVMLError_Timeout = pynvml.NVMLError_Timeout


GiB = 1024**3


def h100(i: int, **extra) -> dict:
    """What NVML answers for an H100 SXM (values as recorded on such a device)."""
    return {
        "uuid": f"GPU-7f3a0000-0000-0000-0000-00000000000{i}",
        "name": "NVIDIA H100 80GB HBM3",
        "memory": 85520809984,
        "cc": (9, 0),
        "bus": f"00000000:{0x18 + i:02X}:00.0",
        "ecc_uncorrected": 0,
        "remapped_rows": (0, 0, 0, 0),
        "mig_mode": (0, 0),
        **extra,
    }
