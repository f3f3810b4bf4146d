"""What the hub, the ``gpuhub-agent`` service and the user's container agree on: the only module
the three share (``tests/unit/test_imports.py`` holds that rule). Standard library only, so the
container side imports it without the hub's dependencies.

- **Container labels** the hub writes and reads back after a restart, and the agent reads to map
  GPU processes to allocations.
- **Environment variables** the hub sets in a user's container and the container side reads.
- **Device naming**: how a GPU or MIG slice is named by index (``"0"``, ``"0:1"``), and how NVML's
  answers are walked (strings, MIG children), the same on the hub and in the container.
- **Time**: the one clock (``utcnow``: naive UTC, as the databases store it) and the one text form
  (``iso``/``parse_time``: ISO 8601 with a ``Z``) of every time in the APIs.
- **The hub API paths** the container and the agent call.
"""

from __future__ import annotations

from datetime import datetime, timezone
from urllib.parse import quote

# --- container labels ------------------------------------------------------------------------------
LABEL_PREFIX = "org.gpuhub"
MANAGED_LABEL = f"{LABEL_PREFIX}.managed"
USER_LABEL = f"{LABEL_PREFIX}.user"
SERVER_LABEL = f"{LABEL_PREFIX}.server"  # "" for the default server
PROFILE_LABEL = f"{LABEL_PREFIX}.profile"
HOME_VOLUME_LABEL = f"{LABEL_PREFIX}.home-volume"
SESSION_LABEL = f"{LABEL_PREFIX}.session"
JOB_LABEL = f"{LABEL_PREFIX}.job"  # a batch job's id (``hub.jobs``): not a server
ALLOCATION_LABEL = f"{LABEL_PREFIX}.allocation"  # the live GPU allocation's id: how a server is found again
GPUS_LABEL = f"{LABEL_PREFIX}.gpus"
GPU_MODE_LABEL = f"{LABEL_PREFIX}.gpu-mode"
GPU_EXPOSURE_LABEL = f"{LABEL_PREFIX}.gpu-exposure"
GPU_SIMULATED_LABEL = f"{LABEL_PREFIX}.gpu-simulated"
# [network] isolation: the container's network policy (``policy.network``), which netguard applies
NETWORK_LABEL = f"{LABEL_PREFIX}.network"
HUB_ROLE_LABEL = f"{LABEL_PREFIX}.role"  # "hub" on the hub's own container (docker-compose.yml): netguard finds its address


def allocation_of(labels: dict | None) -> int | None:
    """The allocation id a container's labels name, or None (a CPU server, or not gpuhub's)."""
    value = (labels or {}).get(ALLOCATION_LABEL, "")
    return int(value) if value.isdigit() else None


# --- environment of a user's container -------------------------------------------------------------
VISIBLE_DEVICES_ENV = "NVIDIA_VISIBLE_DEVICES"  # the NVIDIA runtime's: which devices the container gets
CUDA_DEVICES_ENV = "CUDA_VISIBLE_DEVICES"
DRIVER_CAPABILITIES_ENV = "NVIDIA_DRIVER_CAPABILITIES"
NO_DEVICES = "void"  # NVIDIA_VISIBLE_DEVICES of a CPU-only server: no GPU even under the NVIDIA runtime
GPU_MODE_ENV = "GPUHUB_GPU_MODE"  # "exclusive", "shared" or "mig"
GPU_EXPOSURE_ENV = "GPUHUB_GPU_EXPOSURE"  # "device_requests" or "env-only"
GPU_SIMULATED_ENV = "GPUHUB_GPU_SIMULATED"  # "true" where the hub's inventory is a simulated file
GPU_MEMORY_BUDGET_ENV = "GPUHUB_GPU_MEMORY_BUDGET"  # shared GPUs: this server's budget in bytes
GPU_BORROWED_ENV = "GPUHUB_GPU_BORROWED"  # "true": beyond the user's GPU quota, taken back when someone within quota waits
PROFILE_ENV = "GPUHUB_PROFILE"
MEM_LIMIT_ENV = "GPUHUB_MEM_LIMIT"
CPU_LIMIT_ENV = "GPUHUB_CPU_LIMIT"
SESSION_ENV = "GPUHUB_SESSION"
# [network] isolation: the image's start (images/pytorch-cuda/gpuhub-start) waits this many seconds at most
# for RULES_APPLIED_MARKER, which only netguard (root, outside the container) writes, before it runs anything
NETWORK_WAIT_ENV = "GPUHUB_NETWORK_RULES_WAIT"
RULES_APPLIED_MARKER = "/run/gpuhub/network-rules-applied"
RULES_REFUSED_MARKER = "/run/gpuhub/network-rules-refused"  # netguard could not: the reason, and the start fails
ENV_ONLY = "env-only"


def assigned_devices(environ) -> list[str]:
    """The device UUIDs the hub gave this container (``NVIDIA_VISIBLE_DEVICES``); [] for none."""
    value = environ.get(VISIBLE_DEVICES_ENV, "")
    return [] if value in ("", NO_DEVICES, "none") else [v for v in value.split(",") if v]


def env_only(environ) -> bool:
    """The hub wired this container's GPUs as variables only (``[gpus] exposure = "env-only"``)."""
    return environ.get(GPU_EXPOSURE_ENV) == ENV_ONLY


# --- device naming ---------------------------------------------------------------------------------
def device_index(gpu_index: int, mig_index: int | None = None) -> str:
    """How people name a device: ``"0"`` for GPU 0, ``"0:1"`` for GPU 0's second MIG slice."""
    return str(gpu_index) if mig_index is None else f"{gpu_index}:{mig_index}"


def nvml_text(value) -> str:
    """NVML strings: bytes from older nvidia-ml-py, str from newer."""
    return value.decode() if isinstance(value, bytes) else str(value)


def mig_children(nvml, handle) -> list:
    """The MIG device handles of a GPU through ``nvml`` (the pynvml module): empty when MIG is off or
    not supported (indices left empty by the admin's partitioning are skipped)."""
    try:
        current, _pending = nvml.nvmlDeviceGetMigMode(handle)
    except nvml.NVMLError:
        return []
    if current != nvml.NVML_DEVICE_MIG_ENABLE:
        return []
    children = []
    for j in range(nvml.nvmlDeviceGetMaxMigDeviceCount(handle)):
        try:
            children.append(nvml.nvmlDeviceGetMigDeviceHandleByIndex(handle, j))
        except nvml.NVMLError_NotFound:
            continue
    return children


# --- time ------------------------------------------------------------------------------------------
def utcnow() -> datetime:
    """The one clock: naive UTC, as JupyterHub's and gpuhub's tables store times. Components take a
    ``clock`` callable (default this) that tests replace."""
    return datetime.now(timezone.utc).replace(tzinfo=None)


def iso(t: datetime | None) -> str | None:
    """Naive UTC to ISO 8601 with a ``Z`` (whole seconds); None stays None."""
    return t.isoformat(timespec="seconds") + "Z" if t else None


TIME_ACCEPTED = "2026-11-02 or 2026-11-02T09:00:00Z (UTC), years 1970 to 2999"


def parse_time(text: str) -> datetime:
    """``2026-11-02`` or ``2026-11-02T09:00[:00][Z|+00:00]`` to naive UTC; ValueError otherwise."""
    try:
        t = datetime.fromisoformat(text.replace("Z", "+00:00"))
        if not 1970 <= t.year <= 2999:
            raise ValueError("out of range")
        if t.tzinfo is not None:
            t = (t - t.utcoffset()).replace(tzinfo=None)
    except (ValueError, OverflowError, AttributeError, TypeError):
        raise ValueError(f"{text!r} is not a date. Accepted: {TIME_ACCEPTED}") from None
    return t


# --- the hub's REST API, as the container and the agent call it (under JUPYTERHUB_API_URL) ------------
API_PREFIX = "/gpuhub/v1"


def notices_path(username: str) -> str:
    return f"{API_PREFIX}/notices/{quote(username, safe='')}"
