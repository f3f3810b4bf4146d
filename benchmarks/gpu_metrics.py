"""GPU metrics endpoint: latency and the CPU cost of one polling client; NVML vs nvidia-smi.

    python benchmarks/gpu_metrics.py [--requests 300] [--no-write]

1. Endpoint: a user container (the user image, as the hub starts it) runs jupyter_server with gpuhub's
   extension; this script GETs ``/gpuhub/api/v1/gpus`` N times in a row and, in the same server, the
   plain Jupyter endpoint ``/api/status`` as the baseline. p50/p99 latency, and the server's CPU time per
   request (the container's cgroup CPU counter, idle baseline subtracted), turned into the CPU share of
   one browser tab polling every 5 s (the JupyterLab extension's interval). Scenarios: a CPU-only
   server (``NVIDIA_VISIBLE_DEVICES=void``), a server a demo hub gave a simulated GPU (env-only: NVML
   cannot load) and, with ``--gpu`` on a host with the NVIDIA runtime, a server given all GPUs.
2. Reader: where NVML loads on this host, ``GpuReader.read()`` against an ``nvidia-smi`` subprocess
   asking for the same fields, side by side (goal: p50 ≤ 2 ms and ≥ 20× faster). Where it does not
   (no GPU), says so and measures nothing.
Figures go between the gpu_metrics markers of docs/benchmarks.md unless --no-write. A report, not a test.
"""

from __future__ import annotations

import argparse
import datetime
import secrets
import shutil
import subprocess
import sys
import time
from pathlib import Path

import docker
import requests

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "platform"))
sys.path.insert(0, str(REPO))
from benchmarks.report import machine, percentile, write_section
from tests.hubprocess import USER_IMAGE, answers_within, free_port, remove_prefixed

PREFIX = "gpuhubbench-m"
POLL_INTERVAL_S = 5.0  # platform/jupyterlab-gpuhub/src/model.ts POLL_INTERVAL_MS
SMI_FIELDS = "uuid,name,memory.used,memory.total,utilization.gpu,temperature.gpu"


def cpu_ns(container) -> int:
    return container.stats(stream=False)["cpu_stats"]["cpu_usage"]["total_usage"]


def measure_endpoint(session: requests.Session, url: str, n: int, container) -> dict:
    for _ in range(10):  # warm: NVML handles, imports
        session.get(url, timeout=10).raise_for_status()
    cpu_before, latencies = cpu_ns(container), []
    for _ in range(n):
        started = time.perf_counter()
        session.get(url, timeout=10).raise_for_status()
        latencies.append((time.perf_counter() - started) * 1000)
    return {"p50": percentile(latencies, 50), "p99": percentile(latencies, 99), "cpu_ns": cpu_ns(container) - cpu_before}


def endpoint_scenario(client, name: str, environment: dict, n: int, gpus: bool) -> dict:
    port, token = free_port(), secrets.token_hex(16)
    kwargs = {"device_requests": [docker.types.DeviceRequest(count=-1, capabilities=[["gpu"]])]} if gpus else {}
    container = client.containers.run(
        USER_IMAGE, ["jupyter", "server", f"--ServerApp.token={token}", "--ServerApp.ip=0.0.0.0", "--no-browser"],
        name=f"{PREFIX}-{secrets.token_hex(4)}", detach=True, environment=environment, ports={"8888/tcp": ("127.0.0.1", port)},
        mem_limit="1g", nano_cpus=1_000_000_000, **kwargs,
    )
    try:
        session = requests.Session()
        session.headers["Authorization"] = f"token {token}"
        base = f"http://127.0.0.1:{port}"
        if not answers_within(f"{base}/api/status", 60, session):
            raise SystemExit(f"the server did not answer in 60 s:\n{container.logs(tail=40).decode()}")
        time.sleep(3)
        idle_before = cpu_ns(container)
        time.sleep(10)
        idle_ns_per_s = (cpu_ns(container) - idle_before) / 10
        state = session.get(f"{base}/gpuhub/api/v1/gpus", timeout=10).json()["state"]
        figures = {}
        for label, path in (("gpuhub", "/gpuhub/api/v1/gpus"), ("baseline", "/api/status")):
            started = time.monotonic()
            r = measure_endpoint(session, base + path, n, container)
            r["cpu_ms_per_request"] = max(0.0, (r["cpu_ns"] - idle_ns_per_s * (time.monotonic() - started)) / n / 1e6)
            figures[label] = r
        return {"name": name, "state": state, **figures}
    finally:
        container.remove(force=True)


def reader_vs_smi(n: int) -> dict:
    """The reader against nvidia-smi, or ``{"skipped": why}`` where NVML does not load."""
    from gpuhub.singleuser.gpus import GpuReader

    reader = GpuReader(environ={"NVIDIA_VISIBLE_DEVICES": "all"})
    body = reader.read()
    if body["state"] != "ok" or not body["gpus"]:
        return {"skipped": body.get("message", body["state"])}
    smi = shutil.which("nvidia-smi")
    reader_ms = []
    for _ in range(n):
        started = time.perf_counter()
        reader.read()
        reader_ms.append((time.perf_counter() - started) * 1000)
    smi_ms = []
    if smi:
        for _ in range(max(10, n // 10)):
            started = time.perf_counter()
            subprocess.run([smi, f"--query-gpu={SMI_FIELDS}", "--format=csv,noheader,nounits"], check=True, capture_output=True)
            smi_ms.append((time.perf_counter() - started) * 1000)
    return {
        "gpus": ", ".join(g["name"] for g in body["gpus"]),
        "reader_p50": percentile(reader_ms, 50), "reader_p99": percentile(reader_ms, 99),
        "smi_p50": percentile(smi_ms, 50), "smi_p99": percentile(smi_ms, 99), "smi": smi,
    }


def report(args, scenarios: list[dict], side: dict) -> str:
    lines = [
        "## GPU metrics endpoint (`benchmarks/gpu_metrics.py`)",
        "",
        f"- Date: {datetime.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}; command: `python benchmarks/gpu_metrics.py --requests {args.requests}{' --gpu' if args.gpu else ''}`",
        f"- Machine: {machine()}; image `{USER_IMAGE}`; the server container capped at 1 CPU, 1 GiB.",
        f"- {args.requests} sequential GETs per endpoint over loopback after 10 warm-up ones; the server's CPU is the",
        "  container's cgroup counter, the idle rate (10 s before) subtracted. CPU share of one polling tab =",
        f"  CPU per request / {POLL_INTERVAL_S:g} s (the extension polls every {POLL_INTERVAL_S:g} s while the tab is visible, not at all while hidden).",
        "",
        "| server | endpoint | state | p50 (ms) | p99 (ms) | server CPU per request (ms) | one polling tab (% of a CPU) |",
        "|---|---|---|---:|---:|---:|---:|",
    ]
    for s in scenarios:
        for label, path in (("gpuhub", "`/gpuhub/api/v1/gpus`"), ("baseline", "`/api/status` (Jupyter's own, baseline)")):
            r = s[label]
            share = r["cpu_ms_per_request"] / (POLL_INTERVAL_S * 1000) * 100
            lines.append(
                f"| {s['name']} | {path} | {s['state'] if label == 'gpuhub' else ''} | {r['p50']:.2f} | {r['p99']:.2f}"
                f" | {r['cpu_ms_per_request']:.2f} | {share:.3f} |"
            )
    lines.append("")
    if "skipped" in side:
        lines.append(
            "NVML reader vs `nvidia-smi`: **not measured in this run**: NVML does not load on this machine"
            f" ({side['skipped']}). Run it on a GPU host (docs/gpu-validation.md)."
        )
    else:
        ratio = side["smi_p50"] / side["reader_p50"] if side["smi_p50"] and side["reader_p50"] else None
        lines += [
            f"NVML reader vs `nvidia-smi --query-gpu={SMI_FIELDS}` on {side['gpus']} (real GPUs):",
            "",
            "| reader | p50 (ms) | p99 (ms) |",
            "|---|---:|---:|",
            f"| `GpuReader.read()` (NVML, handles cached) | {side['reader_p50']:.3f} | {side['reader_p99']:.3f} |",
            f"| `nvidia-smi` subprocess | {side['smi_p50'] or float('nan'):.1f} | {side['smi_p99'] or float('nan'):.1f} |",
            "",
            f"Ratio at p50: {ratio:.0f}× (goal ≥ 20×; reader p50 goal ≤ 2 ms)." if ratio else "nvidia-smi not found: no ratio.",
        ]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=300, help="GETs per endpoint (default 300)")
    parser.add_argument("--gpu", action="store_true", help="also a server given all GPUs (needs the NVIDIA runtime)")
    parser.add_argument("--no-write", action="store_true", help="print only; leave docs/benchmarks.md alone")
    args = parser.parse_args()
    if args.requests < 10:
        parser.error("--requests must be at least 10")
    client = docker.from_env()
    remove_prefixed(PREFIX)
    try:
        scenarios = [
            endpoint_scenario(client, "cpu-only", {"NVIDIA_VISIBLE_DEVICES": "void"}, args.requests, False),
            # a GPU assigned by a demo hub (simulated inventory, env-only): NVML cannot load in the container
            endpoint_scenario(client, "simulated GPU, env-only", {
                "NVIDIA_VISIBLE_DEVICES": "GPU-00000000-0000-0000-0000-000000000000", "GPUHUB_GPU_EXPOSURE": "env-only",
                "GPUHUB_GPU_SIMULATED": "true"}, args.requests, False),
        ]
        if args.gpu:
            scenarios.append(endpoint_scenario(client, "all-gpus", {"NVIDIA_VISIBLE_DEVICES": "all"}, args.requests, True))
    finally:
        remove_prefixed(PREFIX)
    text = report(args, scenarios, reader_vs_smi(args.requests))
    print(text)
    if not args.no_write:
        write_section("gpu_metrics", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
