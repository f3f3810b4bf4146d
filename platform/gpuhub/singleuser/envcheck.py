"""One-click check of a user's CUDA environment, run inside their container.

    python -m gpuhub.singleuser.envcheck [--slow]     prints the report as JSON

The server extension runs this module in a subprocess with a timeout (a hung CUDA call cannot hang
the server) and returns its report. Each check is ``{id, title, status, value, expected, hint}``
with status ``pass`` / ``warn`` / ``fail`` / ``skip``. A check that raises becomes ``fail`` with the
error; on a host without a GPU the GPU checks are ``skip`` (no GPU assigned) or ``fail`` with the
reason, never a crash.
"""

from __future__ import annotations

import functools
import json
import os
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone

from ..contract import assigned_devices, env_only
from .cgroups import read_limits

SCHEMA = 1
STATUSES = ("pass", "warn", "fail", "skip")
GiB = 1024**3

# CUDA runtime → (driver of that toolkit release, oldest driver under minor-version compatibility),
# Linux x86_64, from NVIDIA's CUDA Toolkit release notes (table 3 and "minor version compatibility").
MIN_DRIVER = {
    "11.8": ("520.61.05", "450.80.02"),
    "12.1": ("530.30.02", "525.60.13"),
    "12.4": ("550.54.14", "525.60.13"),
    "12.6": ("560.28.03", "525.60.13"),
    "12.8": ("570.26", "525.60.13"),
    "12.9": ("575.51.03", "525.60.13"),
}
# Dense BF16 tensor-core peak (TFLOP/s) by product name fragment, from NVIDIA's data sheets.
NOMINAL_BF16_TFLOPS = {"H200": 989.0, "H100 80GB HBM3": 989.0, "H100 PCIe": 756.0, "A100": 312.0, "L40S": 362.0, "L4": 121.0}


@dataclass
class Check:
    id: str
    title: str
    status: str
    value: str = ""
    expected: str = ""
    hint: str = ""


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in text.split(".") if p.isdigit())


def driver_verdict(driver: str, cuda: str) -> tuple[str, str, str]:
    """(status, expected, hint) for an NVIDIA driver version against the CUDA runtime torch was built with."""
    key = ".".join(cuda.split(".")[:2])
    if key not in MIN_DRIVER:
        return "warn", f"a driver for CUDA {cuda}", f"CUDA {cuda} is not in gpuhub's table; check NVIDIA's release notes"
    full, compat = MIN_DRIVER[key]
    if _version(driver) >= _version(full):
        return "pass", f">= {full}", ""
    if _version(driver) >= _version(compat):
        return "warn", f">= {full}", (
            f"runs under CUDA minor-version compatibility (driver >= {compat}); PTX JIT and some new"
            f" features need {full}: ask your admin to update the driver, or use an image built for an older CUDA"
        )
    return "fail", f">= {full}", f"this driver is too old for CUDA {cuda}: use an image for an older CUDA, or update the driver"


ENV_ONLY_REASON = "env-only exposure: this hub has no NVIDIA runtime, so the container was not given the device"


class Context:
    def __init__(self, environ):
        self.environ = environ
        self.assigned = assigned_devices(environ)
        try:
            import torch
        except ImportError:
            torch = None
        self.torch = torch
        self.cuda = bool(torch is not None and torch.cuda.is_available())

    def no_gpu(self) -> str:
        if not self.assigned:
            return "no GPU assigned to this server (NVIDIA_VISIBLE_DEVICES=void): pick a GPU profile"
        if env_only(self.environ):
            return ENV_ONLY_REASON
        return "CUDA is not available (see the cuda check)"


def check_non_root(ctx):
    uid = os.geteuid()
    return Check("non-root", "Running as a non-root user", "pass" if uid else "fail", f"uid {uid}", "uid != 0")


def check_home(ctx):
    home = os.path.expanduser("~")
    try:
        with tempfile.NamedTemporaryFile(dir=home, prefix=".gpuhub-envcheck-"):
            pass
    except OSError as e:
        return Check("home", "Home is writable and persistent", "fail", home, "writable", f"cannot write: {e.strerror}")
    with open("/proc/self/mountinfo", encoding="utf-8") as f:
        mounted = any(line.split()[4] == home for line in f)
    if not mounted:
        return Check("home", "Home is writable and persistent", "warn", home, "its own volume",
                     "home is not a separate mount: files written here may be lost when the server stops")
    return Check("home", "Home is writable and persistent", "pass", f"{home} (a volume)", "its own volume")


def check_limits(ctx):
    limits = read_limits()
    memory = f"{limits.memory_limit / GiB:.2f} GiB" if limits.memory_limit else "no limit"
    cpu = f"{limits.cpu_limit:g} CPUs" if limits.cpu_limit else "no limit"
    return Check("limits", "Memory and CPU limits", "pass", f"memory {memory}, CPU {cpu} (cgroup {limits.version})")


def check_shm(ctx):
    st = os.statvfs("/dev/shm")
    size = st.f_blocks * st.f_frsize
    status = "pass" if size >= GiB else "warn"
    return Check("shm", "Shared memory for DataLoader workers", status, f"{size / GiB:.2f} GiB", ">= 1 GiB",
                 "" if status == "pass" else "PyTorch DataLoader workers pass batches through /dev/shm; use num_workers=0 or a profile with more shm")


def check_torch(ctx):
    if ctx.torch is None:
        return Check("torch", "PyTorch importable", "fail", "not installed", "torch", "use a gpuhub/pytorch-cuda image")
    t = ctx.torch
    return Check("torch", "PyTorch importable", "pass", f"torch {t.__version__}, built for CUDA {t.version.cuda or 'none (CPU build)'}")


def check_cuda(ctx):
    if ctx.torch is None:
        return Check("cuda", "torch.cuda.is_available()", "skip", hint="no torch")
    if ctx.cuda:
        return Check("cuda", "torch.cuda.is_available()", "pass", "True")
    if ctx.torch.version.cuda is None:
        why = "this torch is a CPU build (torch.version.cuda is None)"
        return Check("cuda", "torch.cuda.is_available()", "skip" if not ctx.assigned else "fail", "False", "True", why)
    if not ctx.assigned:
        return Check("cuda", "torch.cuda.is_available()", "skip", "False", "True", ctx.no_gpu())
    why = ENV_ONLY_REASON if env_only(ctx.environ) else "the driver is not reachable from the container (libcuda missing?)"
    return Check("cuda", "torch.cuda.is_available()", "fail", "False", "True", why)


def _needs_gpu(fn):
    @functools.wraps(fn)
    def wrapper(ctx):
        if not ctx.cuda:
            return Check(fn.__name__.removeprefix("check_").replace("_", "-"), fn.__doc__ or "", "skip", hint=ctx.no_gpu())
        return fn(ctx)

    return wrapper


@_needs_gpu
def check_driver(ctx):
    """Driver vs the CUDA runtime torch was built with"""
    import pynvml

    pynvml.nvmlInit()
    driver = pynvml.nvmlSystemGetDriverVersion()
    driver = driver.decode() if isinstance(driver, bytes) else driver
    status, expected, hint = driver_verdict(driver, ctx.torch.version.cuda)
    return Check("driver", check_driver.__doc__, status, f"driver {driver}, CUDA {ctx.torch.version.cuda}", expected, hint)


@_needs_gpu
def check_devices(ctx):
    """Visible devices are the assigned ones"""
    t = ctx.torch
    seen = []
    for i in range(t.cuda.device_count()):
        p = t.cuda.get_device_properties(i)
        seen.append(f"{p.name} (cc {p.major}.{p.minor}, {p.total_memory / GiB:.0f} GiB, GPU-{p.uuid})")
    status = "pass" if len(seen) == len(ctx.assigned) else "fail"
    return Check("devices", check_devices.__doc__, status, "; ".join(seen), f"{len(ctx.assigned)} assigned: {','.join(ctx.assigned)}",
                 "" if status == "pass" else "the container sees other devices than gpuhub assigned: tell your admin")


@_needs_gpu
def check_precision(ctx):
    """bf16 / TF32 / FP8 support"""
    major, minor = ctx.torch.cuda.get_device_capability(0)
    cc = major + minor / 10
    value = f"bf16 {'yes' if cc >= 8 else 'no'}, TF32 {'yes' if cc >= 8 else 'no'}, FP8 {'yes' if cc >= 8.9 else 'no'} (cc {major}.{minor})"
    return Check("precision", check_precision.__doc__, "pass", value)


@_needs_gpu
def check_cudnn(ctx):
    """cuDNN version and enabled"""
    b = ctx.torch.backends.cudnn
    ok = b.is_available() and b.enabled
    return Check("cudnn", check_cudnn.__doc__, "pass" if ok else "fail", f"cuDNN {b.version()}, enabled {b.enabled}")


@_needs_gpu
def check_nccl(ctx):
    """NCCL version"""
    version = ctx.torch.cuda.nccl.version()
    return Check("nccl", check_nccl.__doc__, "pass", ".".join(map(str, version)) if isinstance(version, tuple) else str(version))


@_needs_gpu
def check_alloc(ctx):
    """A small CUDA allocation and free"""
    t = ctx.torch
    x = t.empty(64 * 1024 * 1024, dtype=t.uint8, device="cuda")
    del x
    t.cuda.synchronize()
    return Check("alloc", check_alloc.__doc__, "pass", "64 MiB allocated and freed")


@_needs_gpu
def check_matmul(ctx):
    """Timed bf16 matmul against the device's nominal peak"""
    t = ctx.torch
    n = 8192
    a, b = t.randn(n, n, device="cuda", dtype=t.bfloat16), t.randn(n, n, device="cuda", dtype=t.bfloat16)
    for _ in range(3):
        a @ b
    t.cuda.synchronize()
    runs, start = 20, time.perf_counter()
    for _ in range(runs):
        a @ b
    t.cuda.synchronize()
    tflops = 2 * n**3 * runs / (time.perf_counter() - start) / 1e12
    name = t.cuda.get_device_name(0)
    peak = next((v for k, v in NOMINAL_BF16_TFLOPS.items() if k in name), None)
    if peak is None:
        return Check("matmul", check_matmul.__doc__, "pass", f"{tflops:.0f} TFLOP/s bf16", "no nominal figure for this device")
    share = tflops / peak
    status = "pass" if share >= 0.5 else "warn"
    return Check("matmul", check_matmul.__doc__, status, f"{tflops:.0f} TFLOP/s bf16 ({share:.0%} of nominal)", f"~{peak:.0f} TFLOP/s nominal",
                 "" if status == "pass" else "far below nominal: another process may share this GPU, or it is throttled")


@_needs_gpu
def check_compile(ctx):
    """torch.compile smoke test (slow)"""
    t = ctx.torch
    fn = t.compile(lambda x: (x * 2).sin().sum())
    value = float(fn(t.ones(16, device="cuda")))
    return Check("compile", check_compile.__doc__, "pass", f"compiled and ran ({value:.3f})")


CHECKS = [check_non_root, check_home, check_limits, check_shm, check_torch, check_cuda, check_driver, check_devices,
          check_precision, check_cudnn, check_nccl, check_alloc, check_matmul]
SLOW_CHECKS = [check_compile]


def run(environ=None, slow: bool = False) -> dict:
    environ = os.environ if environ is None else environ
    started = time.perf_counter()
    ctx = Context(environ)
    checks = []
    for fn in CHECKS + (SLOW_CHECKS if slow else []):
        try:
            checks.append(fn(ctx))
        except Exception as e:  # a broken check is a finding, not a crash
            checks.append(Check(fn.__name__.removeprefix("check_"), fn.__doc__ or fn.__name__, "fail", hint=f"{type(e).__name__}: {e}"))
    return {
        "schema": SCHEMA,
        "generated": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "duration_s": round(time.perf_counter() - started, 3),
        "summary": {s: sum(c.status == s for c in checks) for s in STATUSES},
        "checks": [asdict(c) for c in checks],
    }


def main(argv=None) -> int:
    args = sys.argv[1:] if argv is None else argv
    print(json.dumps(run(slow="--slow" in args)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
