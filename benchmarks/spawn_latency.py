"""Spawn latency: gpuhub's GPUSpawner against plain DockerSpawner, same image, one run.

    python benchmarks/spawn_latency.py [--repeats N] [--burst 10] [--no-write]

For each spawner in turn (never both at once) this starts a real JupyterHub (tests/hubprocess.py) and
measures the time from ``POST /hub/api/users/<u>/server`` until the user model says the server is ready:
(1) one user, N times, stopping the server and waiting for its container to go between runs;
(2) a burst of users posting at once from threads. It prints a table and, unless --no-write, puts it
between the spawn_latency markers of docs/benchmarks.md. A benchmark report, not a test.
"""

from __future__ import annotations

import argparse
import datetime
import logging
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from tests.hubprocess import USER_IMAGE, HubError, HubProcess, remove_prefixed
from benchmarks.report import DOC, at_once, machine, percentile, write_section

log = logging.getLogger("spawn_latency")
SPAWNERS = {"gpuhub": ("GPUSpawner", "gpuhubbench-g"), "docker": ("DockerSpawner", "gpuhubbench-d")}
READY_TIMEOUT = 180.0  # a spawn not ready by then counts as a failure
GONE_TIMEOUT = 60.0
POLL_INTERVAL = 0.2  # resolution of every figure; also keeps the poll load on the hub low in a burst


def time_to_ready(hub: HubProcess, name: str) -> float | None:
    """POST a spawn for ``name``; seconds until its default server is ready, or None on failure."""
    session = requests.Session()  # one per thread: requests.Session is not thread-safe
    session.headers["Authorization"] = f"token {hub.token}"
    user_url = f"{hub.url}/hub/api/users/{requests.utils.quote(name, safe='')}"
    started = time.monotonic()
    try:
        r = session.post(f"{user_url}/server", json={}, timeout=60)
        if r.status_code not in (201, 202):
            log.warning("%s: spawn request answered %s %s", name, r.status_code, r.text[:200])
            return None
        hub.wait_ready(name, READY_TIMEOUT - (time.monotonic() - started), session=session, poll=POLL_INTERVAL)
        return time.monotonic() - started
    except HubError as e:
        log.warning("%s: %s", name, str(e).splitlines()[0])
    except (requests.RequestException, ValueError) as e:
        log.warning("%s: %s", name, e)
    finally:
        session.close()
    return None


def stop_and_wait_gone(hub: HubProcess, names: list[str]) -> None:
    """Stop the users' servers; wait until the hub and Docker both show them gone; drop their homes."""
    for name in names:
        try:
            hub.stop_server(name, timeout=GONE_TIMEOUT)
        except HubError as e:  # a failed spawn has no server to stop
            log.debug("stopping %s: %s", name, e)
    deadline = time.monotonic() + GONE_TIMEOUT
    while hub.containers() and time.monotonic() < deadline:
        time.sleep(POLL_INTERVAL)
    hub.remove_docker_objects()  # leftovers and home volumes: every spawn starts from a new home


GPU_INVENTORY = "".join(
    f'[[gpus]]\nuuid = "GPU-00000000-0000-0000-0000-{i:012d}"\nname = "simulated H100"\nmemory = "80G"\n\n' for i in range(32)
)


def gpu_profiles(inventory_path: Path) -> str:
    """--gpu: GPUSpawner's default profile takes 1 exclusive GPU from a SIMULATED 32-GPU inventory
    (env-only exposure: allocation, wait-line check, quota check and device wiring all run; no GPU is used),
    with the same caps as the plain DockerSpawner side."""
    return f'''
[gpus]
inventory = "file:{inventory_path}"
exposure = "env-only"

[[profiles]]
name = "gpu-test"
image = "{USER_IMAGE}"
mem_limit = "768M"
cpu_limit = 0.5
shm_size = "256M"
gpus = 1
gpu_mode = "exclusive"
default = true
'''


def measure(spawner: str, repeats: int, burst: int, gpu: bool = False) -> dict:
    label, prefix = SPAWNERS[spawner]
    remove_prefixed(prefix)  # leftovers of a crashed run
    workdir = Path(tempfile.mkdtemp(prefix=f"{prefix}-"))
    extra = {}
    if gpu and spawner == "gpuhub":
        (workdir / "inventory.toml").write_text(GPU_INVENTORY)
        extra["profiles"] = gpu_profiles(workdir / "inventory.toml")
    hub = HubProcess(workdir, prefix=prefix, spawner=spawner, **extra)
    failed = False
    try:
        hub.start()
        log.info("%s: hub at %s, workdir %s", label, hub.url, workdir)
        hub.create_user("single")
        singles: list[float | None] = []
        for i in range(repeats):
            singles.append(time_to_ready(hub, "single"))
            log.info("%s: single spawn %d/%d: %s s", label, i + 1, repeats, cell(singles[-1]))
            stop_and_wait_gone(hub, ["single"])

        names = [f"burst{i}" for i in range(burst)]
        for name in names:
            hub.create_user(name)
        times, burst_wall = at_once(names, lambda name: time_to_ready(hub, name), READY_TIMEOUT + 120)
        results = dict(zip(names, times))
        log.info("%s: burst of %d done in %.1f s: %s", label, burst, burst_wall, {n: cell(v) for n, v in results.items()})
        stop_and_wait_gone(hub, names)
    except Exception:
        failed = True
        log.error("%s: hub log tail:\n%s", label, hub.log_tail(40))
        raise
    finally:
        hub.stop()
        hub.remove_docker_objects()
        if failed:
            log.error("%s: kept %s for the hub log", label, workdir)
        else:
            shutil.rmtree(workdir, ignore_errors=True)

    return {"singles": singles, "burst": list(results.values()) + [None] * (burst - len(results)), "walls": [burst_wall]}


def summarise(rounds: list[dict]) -> dict:
    """Pool the raw samples of every round of one spawner into the reported figures."""
    singles = [s for r in rounds for s in r["singles"]]
    burst = [b for r in rounds for b in r["burst"]]
    walls = [w for r in rounds for w in r["walls"]]
    ok_singles = [s for s in singles if s is not None]
    ok_burst = sorted(v for v in burst if v is not None)
    return {
        "single_median": statistics.median(ok_singles) if ok_singles else None,
        "single_min": min(ok_singles, default=None),
        "single_max": max(ok_singles, default=None),
        "single_failures": len(singles) - len(ok_singles),
        "burst_p50": percentile(ok_burst, 50),
        "burst_p95": percentile(ok_burst, 95),
        "burst_max": ok_burst[-1] if ok_burst else None,
        "burst_wall": statistics.median(walls),  # until the last one was ready or given up on
        "burst_failures": len(burst) - len(ok_burst),
    }



ROWS = [
    ("single_median", "single spawn, median (s)", True),
    ("single_min", "single spawn, min (s)", False),
    ("single_max", "single spawn, max (s)", False),
    ("single_failures", "single spawn, failures", False),
    ("burst_p50", "burst, p50 (s)", False),
    ("burst_p95", "burst, p95 (s)", True),
    ("burst_max", "burst, max (s)", False),
    ("burst_wall", "burst, wall time for all (s)", True),
    ("burst_failures", "burst, failures", False),
]


def cell(value) -> str:
    if value is None:
        return "n/a"
    return str(value) if isinstance(value, int) else f"{value:.2f}"


def table(g: dict, d: dict) -> str:
    lines = ["| | GPUSpawner | DockerSpawner | ratio GPUSpawner/DockerSpawner |", "|---|---:|---:|---:|"]
    for key, title, with_ratio in ROWS:
        ratio = ""
        if with_ratio:
            ratio = f"{g[key] / d[key]:.2f}" if g[key] is not None and d[key] else "n/a"
        lines.append(f"| {title} | {cell(g[key])} | {cell(d[key])} | {ratio} |")
    return "\n".join(lines)




def report(args, g: dict, d: dict) -> str:
    if args.gpu:
        title, what = "Spawn latency with GPU allocation", (
            "- GPUSpawner's default profile takes 1 exclusive GPU from a **simulated** 32-GPU inventory in the\n"
            "  `env-only` exposure: the allocation transaction, quota check, wait-line check and device wiring run\n"
            "  for every spawn; no GPU exists or is used. Plain DockerSpawner does no GPU bookkeeping at all.\n"
            "- Image: `" + USER_IMAGE + "` for both, 0.5 CPU and 768M for both. Every spawn starts from a new home volume."
        )
    else:
        title, what = "Spawn latency", (
            "- These are CPU-only spawns on this machine (no GPU).\n"
            "- Image: `" + USER_IMAGE + "` for both; user options `{}` for both (GPUSpawner uses its default profile `cpu-test`:\n"
            "  0.5 CPU, 768M; plain DockerSpawner is given the same caps). Every spawn starts from a new home volume."
        )
    return f"""## {title}

- Date: {datetime.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}; command: `python benchmarks/spawn_latency.py --repeats {args.repeats} --burst {args.burst} --rounds {args.rounds}{' --gpu' if args.gpu else ''}`
- Machine: {machine()}
{what}
- Time: from `POST /hub/api/users/<u>/server` until the user model's `servers[""]["ready"]` is true,
  polled every {POLL_INTERVAL} s; a spawn not ready after {READY_TIMEOUT:.0f} s is a failure.
- Rounds: {args.rounds}, the order alternating (GPUSpawner first in odd rounds, DockerSpawner first in even
  ones); samples are pooled over the rounds, and the burst wall time is the median of the rounds'.
- Single spawn: N = {args.repeats} per round, one user, server stopped and its container gone between runs.
- Burst: {args.burst} new users POST at once; p50/p95 interpolate linearly; wall is until the last is ready.

{table(g, d)}
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="single spawns per spawner (default 5)")
    parser.add_argument("--burst", type=int, default=10, help="users in the burst (default 10)")
    parser.add_argument(
        "--rounds", type=int, default=2,
        help="rounds per spawner; the order alternates each round so neither always goes first (default 2)",
    )
    parser.add_argument(
        "--gpu", action="store_true",
        help="GPUSpawner spawns a 1-GPU exclusive profile from a SIMULATED inventory (allocation overhead)",
    )
    parser.add_argument("--no-write", action="store_true", help=f"print only; leave {DOC.relative_to(REPO)} alone")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    if args.repeats < 1 or args.burst < 1 or args.rounds < 1:
        parser.error("--repeats, --burst and --rounds must be at least 1")

    raw: dict[str, list[dict]] = {spawner: [] for spawner in SPAWNERS}
    order = list(SPAWNERS)
    for round_no in range(args.rounds):
        for spawner in order if round_no % 2 == 0 else reversed(order):
            log.info("round %d/%d: %s", round_no + 1, args.rounds, spawner)
            raw[spawner].append(measure(spawner, args.repeats, args.burst, args.gpu))
    figures = {spawner: summarise(rounds) for spawner, rounds in raw.items()}
    section = report(args, figures["gpuhub"], figures["docker"])
    print(section)
    if not args.no_write:
        write_section("spawn_latency_gpu" if args.gpu else "spawn_latency", section)
        log.info("wrote %s", DOC)
    return 0


if __name__ == "__main__":
    sys.exit(main())
