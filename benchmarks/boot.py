"""Where a server's start goes: per phase, wall time and the container's CPU-seconds, gpuhub against a
plain ``jupyter lab`` in the same image with the same caps, one run.

    python benchmarks/boot.py [--repeats N] [--no-write]

gpuhub: a real hub (tests/hubprocess.py, GPUSpawner, its default profile ``cpu-test``); each start is
``POST /hub/api/users/<u>/server`` on a new home. Plain: ``docker run`` of the same image with
``jupyter lab`` as uid 1000, the gpuhub container's CPU, memory and shm caps, a new home volume. The
phases, from Docker's events and the container's own timestamped log (one host clock):

- request → created: the hub's work before the container exists (plain: the create call);
- created → started: the engine;
- started → first log line: the entrypoint and Python's imports until the server logs;
- first log line → listening: the server's extensions and its start ("is running at");
- listening → ready: gpuhub, the hub's ready check and the proxy's route; plain, the first answer of ``/api``;
- CPU-seconds: the container's cgroup counter (``cpu.stat`` usage) when ready;
- kernel: from ``POST api/kernels`` until the reply of ``import torch`` in it, and the CPU-seconds it added.

It prints a table and, unless --no-write, puts it between the boot markers of docs/benchmarks.md.
A benchmark report, not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import logging
import secrets
import shutil
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import docker
import requests

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from tests.hubprocess import USER_IMAGE, HubProcess, remove_prefixed
from benchmarks.report import DOC, machine, write_section

log = logging.getLogger("boot")
PREFIX = "gpuhubbench-boot"
READY_TIMEOUT = 180.0
POLL = 0.05
LISTENING = "is running at"
TORCH_CODE = "import time as _t\n_s = _t.perf_counter()\nimport torch\nprint(round(_t.perf_counter() - _s, 3))"
PHASES = [
    ("created", "request → created (s)"),
    ("started", "created → started (s)"),
    ("first_log", "started → first log line (s)"),
    ("listening", "first log line → listening (s)"),
    ("ready", "listening → ready (s)"),
    ("total", "**request → ready (s)**"),
    ("cpu", "**CPU-seconds at ready**"),
    ("kernel", "kernel start + `import torch` (s)"),
    ("torch_import", "of which `import torch` in the kernel (s)"),
    ("kernel_cpu", "CPU-seconds of the kernel and import"),
]


# --- what the engine says -------------------------------------------------------------------------------
class Events:
    """Docker's container events (create, start) for names starting with ``prefix``, timed by the engine."""

    def __init__(self, client: docker.DockerClient, prefix: str):
        self.seen: dict[tuple[str, str], float] = {}
        self._stream = client.api.events(decode=True, filters={"type": "container", "event": ["create", "start"]})
        self._prefix = prefix
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        try:
            for event in self._stream:
                name = event.get("Actor", {}).get("Attributes", {}).get("name", "")
                if name.startswith(self._prefix):
                    self.seen[(name, event["Action"])] = event["timeNano"] / 1e9
        except Exception:  # closed at the end of the run
            pass

    def at(self, name: str, action: str, timeout: float = 10) -> float:
        deadline = time.monotonic() + timeout
        while (name, action) not in self.seen:
            if time.monotonic() > deadline:
                raise RuntimeError(f"no {action} event for {name}")
            time.sleep(0.01)
        return self.seen[(name, action)]

    def close(self) -> None:
        self._stream.close()


def cpu_seconds(container) -> float:
    """The container's CPU time so far: its cgroup's ``cpu.stat`` (v2, either cgroup driver), else the
    engine's stats (the same counter, read through the API)."""
    for path in (f"/sys/fs/cgroup/system.slice/docker-{container.id}.scope/cpu.stat", f"/sys/fs/cgroup/docker/{container.id}/cpu.stat"):
        try:
            for line in open(path):
                if line.startswith("usage_usec "):
                    return int(line.split()[1]) / 1e6
        except OSError:
            continue
    stats = container.client.api.stats(container.id, stream=False, one_shot=True)
    return stats["cpu_stats"]["cpu_usage"]["total_usage"] / 1e9


def log_times(container) -> tuple[float, float]:
    """When the container's first log line and its "is running at" line were written (epoch seconds)."""
    first = listening = None
    for raw in container.logs(timestamps=True).decode(errors="replace").splitlines():
        stamp, _, text = raw.partition(" ")
        when = parse_stamp(stamp)
        first = when if first is None else first
        if LISTENING in text and listening is None:
            listening = when
    if first is None or listening is None:
        raise RuntimeError(f"{container.name}: no log line {LISTENING!r}")
    return first, listening


def parse_stamp(stamp: str) -> float:
    """Docker's RFC 3339 timestamp with nanoseconds, as epoch seconds."""
    whole, _, fraction = stamp.rstrip("Z").partition(".")
    seconds = datetime.datetime.fromisoformat(whole).replace(tzinfo=datetime.timezone.utc).timestamp()
    return seconds + float(f"0.{fraction or '0'}")


# --- a kernel and `import torch` ------------------------------------------------------------------------
async def kernel_and_torch(base: str, headers: dict) -> tuple[float, float]:
    """Start a kernel at ``base`` (a Jupyter server's URL), run ``import torch`` in it: (seconds from the
    kernel request to the reply, seconds the import took in the kernel)."""
    import aiohttp

    began = time.monotonic()
    async with aiohttp.ClientSession(headers=headers) as http:
        async with http.post(f"{base}/api/kernels", json={"name": "python3"}) as r:
            r.raise_for_status()
            kernel = (await r.json())["id"]
        async with http.ws_connect(f"{base.replace('http', 'ws', 1)}/api/kernels/{kernel}/channels") as ws:
            msg_id = uuid.uuid4().hex
            await ws.send_str(json.dumps({
                "header": {"msg_id": msg_id, "username": "bench", "session": uuid.uuid4().hex, "msg_type": "execute_request", "version": "5.3"},
                "parent_header": {}, "metadata": {}, "channel": "shell", "buffers": [],
                "content": {"code": TORCH_CODE, "silent": False, "store_history": False, "user_expressions": {}, "allow_stdin": False},
            }))
            status = output = None
            while status is None or output is None:
                msg = json.loads((await ws.receive(timeout=READY_TIMEOUT)).data)
                if msg.get("parent_header", {}).get("msg_id") != msg_id:
                    continue
                if msg["msg_type"] == "execute_reply":
                    status = msg["content"]["status"]
                elif msg["msg_type"] == "stream":
                    output = msg["content"]["text"]
                elif msg["msg_type"] == "error":
                    raise RuntimeError(f"import torch failed in the kernel: {msg['content']['evalue']}")
        took = time.monotonic() - began
        await (await http.delete(f"{base}/api/kernels/{kernel}")).release()
    return took, float(output.strip())


def with_kernel(sample: dict, container, base: str, headers: dict) -> dict:
    before = cpu_seconds(container)
    sample["kernel"], sample["torch_import"] = asyncio.run(kernel_and_torch(base, headers))
    sample["kernel_cpu"] = cpu_seconds(container) - before
    return sample


def phases(requested: float, created: float, started: float, first: float, listening: float, ready: float) -> dict:
    return {
        "created": created - requested, "started": started - created, "first_log": first - started,
        "listening": listening - first, "ready": ready - listening, "total": ready - requested,
    }


# --- gpuhub: a real hub ---------------------------------------------------------------------------------
def gpuhub_samples(repeats: int, client: docker.DockerClient) -> tuple[list[dict], dict]:
    prefix = f"{PREFIX}-g"
    remove_prefixed(prefix)
    workdir = Path(tempfile.mkdtemp(prefix=f"{prefix}-"))
    hub = HubProcess(workdir, prefix=prefix)
    events = Events(client, prefix)
    samples, caps = [], {}
    try:
        hub.start()
        hub.create_user("boot")
        for i in range(repeats):
            requested = time.time()
            r = hub.api("POST", "/users/boot/server", {})
            if r.status_code not in (201, 202):
                raise RuntimeError(f"spawn: {r.status_code} {r.text[:200]}")
            hub.wait_ready("boot", READY_TIMEOUT, poll=POLL)
            ready = time.time()
            container = hub.containers()[0]
            first, listening = log_times(container)
            sample = phases(requested, events.at(container.name, "create"), events.at(container.name, "start"), first, listening, ready)
            sample["cpu"] = cpu_seconds(container)
            headers = {"Authorization": f"token {hub.token}"}
            samples.append(with_kernel(sample, container, f"{hub.url}/user/boot", headers))
            host = container.attrs["HostConfig"]
            caps = {"mem_limit": host["Memory"], "shm_size": host["ShmSize"]}  # the CPU cap as DockerSpawner sets it:
            caps.update({"nano_cpus": host["NanoCpus"]} if host["NanoCpus"] else {"cpu_quota": host["CpuQuota"], "cpu_period": host["CpuPeriod"]})
            log.info("gpuhub %d/%d: %s", i + 1, repeats, {k: round(v, 2) for k, v in sample.items()})
            hub.stop_server("boot", timeout=60)
            hub.remove_docker_objects()  # a new home each time
    finally:
        events.close()
        hub.stop()
        hub.remove_docker_objects()
        shutil.rmtree(workdir, ignore_errors=True)
    return samples, caps


# --- plain jupyter lab in the same image ----------------------------------------------------------------
def plain_samples(repeats: int, client: docker.DockerClient, caps: dict) -> list[dict]:
    prefix = f"{PREFIX}-p"
    remove_prefixed(prefix)
    events = Events(client, prefix)
    samples = []
    try:
        for i in range(repeats):
            name, token = f"{prefix}-{i}", secrets.token_hex(16)
            requested = time.time()
            container = client.containers.run(
                USER_IMAGE, ["jupyter", "lab", "--ip=0.0.0.0", "--port=8888", "--no-browser", f"--ServerApp.token={token}"],
                name=name, detach=True, user="1000:1000", volumes={f"{name}-home": {"bind": "/home/jovyan", "mode": "rw"}},
                network="bridge", **caps,
            )
            container.reload()
            ip = container.attrs["NetworkSettings"]["IPAddress"]
            base, headers = f"http://{ip}:8888", {"Authorization": f"token {token}"}
            deadline = time.monotonic() + READY_TIMEOUT
            while True:
                try:
                    if requests.get(f"{base}/api", headers=headers, timeout=2).ok:
                        break
                except requests.RequestException:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{name}: no answer within {READY_TIMEOUT} s")
                time.sleep(POLL)
            ready = time.time()
            first, listening = log_times(container)
            sample = phases(requested, events.at(name, "create"), events.at(name, "start"), first, listening, ready)
            sample["cpu"] = cpu_seconds(container)
            samples.append(with_kernel(sample, container, base, headers))
            log.info("plain %d/%d: %s", i + 1, repeats, {k: round(v, 2) for k, v in sample.items()})
            container.remove(force=True, v=True)
            client.volumes.get(f"{name}-home").remove(force=True)
    finally:
        events.close()
        remove_prefixed(prefix)
    return samples


def median(samples: list[dict], key: str) -> float:
    return statistics.median(s[key] for s in samples)


def table(g: list[dict], p: list[dict]) -> str:
    lines = ["| phase (median) | gpuhub | plain `jupyter lab` | ratio |", "|---|---:|---:|---:|"]
    for key, title in PHASES:
        a, b = median(g, key), median(p, key)
        lines.append(f"| {title} | {a:.2f} | {b:.2f} | {a / b:.2f} |" if b > 0.005 else f"| {title} | {a:.2f} | {b:.2f} | |")
    return "\n".join(lines)


def cpus(caps: dict) -> float:
    return caps["nano_cpus"] / 1e9 if caps.get("nano_cpus") else caps["cpu_quota"] / caps["cpu_period"]


def report(args, g: list[dict], p: list[dict], caps: dict) -> str:
    return f"""## Where a start goes (boot phases)

- Date: {datetime.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}; command: `python benchmarks/boot.py --repeats {args.repeats}`
- Machine: {machine()}; CPU-only (no GPU): `import torch` is the CPU build's
- Image `{USER_IMAGE}` for both, {cpus(caps):g} CPU, {caps['mem_limit'] / 2**20:.0f} MiB memory, a new home each start;
  gpuhub: GPUSpawner's default profile through a real hub; plain: `docker run ... jupyter lab` as uid 1000.
- {args.repeats} starts each, one after the other; medians. Phases from Docker's events and the container's
  timestamped log; CPU-seconds from the container's cgroup (`cpu.stat` usage).

{table(g, p)}
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="starts of each (default 5)")
    parser.add_argument("--no-write", action="store_true", help=f"print only; leave {DOC.relative_to(REPO)} alone")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    client = docker.from_env()
    g, caps = gpuhub_samples(args.repeats, client)
    p = plain_samples(args.repeats, client, caps)
    section = report(args, g, p, caps)
    print(section)
    if not args.no_write:
        write_section("boot", section)
        log.info("wrote %s", DOC)
    return 0


if __name__ == "__main__":
    sys.exit(main())
