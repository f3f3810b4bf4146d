"""A class of N students pressing Start together: plain DockerSpawner (all at once) against gpuhub with
admission control, and against gpuhub with the class's servers prewarmed. Same image, same run.

    python benchmarks/burst.py [--students 30] [--slots 4] [--no-write]

Each variant gets its own real JupyterHub (tests/hubprocess.py), one after another, never two at once:

1. ``docker``: plain DockerSpawner; N new users POST their spawn at the same moment.
2. ``admission``: gpuhub's GPUSpawner with ``[admission] max_concurrent_starts = --slots``; the same burst.
3. ``prewarm``: gpuhub; an instructor's session holds the N students (roster import), the
   ``gpuhub-agent`` service prewarms their servers (``POST .../sessions/NAME/prewarm``), then the N
   students press Start at the same moment.

A student's time to ready: from their ``POST /hub/api/users/<u>/server`` until the user model says the
server is ready (a prewarmed server is already running: the POST answers "already running" and the
first poll says ready). It writes its table between the burst markers of docs/benchmarks.md.
A benchmark report, not a test.
"""

from __future__ import annotations

import argparse
import datetime
import logging
import os
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from benchmarks.report import DOC, CpuAccount, at_once, machine, percentile, write_section
from benchmarks.spawn_latency import POLL_INTERVAL, READY_TIMEOUT, cell, stop_and_wait_gone
from gpuhub.contract import iso
from gpuhub.contract import utcnow
from tests.hubprocess import USER_IMAGE, HubError, HubProcess, remove_prefixed

log = logging.getLogger("burst")
CPUS = len(os.sched_getaffinity(0))
PREFIX = "gpuhubbench-burst"
INSTRUCTOR_ROLE = """
c.JupyterHub.load_roles.extend([{"name": "bench-instructor", "scopes": ["custom:gpuhub:admin"], "services": ["gpuhub-harness"]}])
"""


def press_start(hub: HubProcess, name: str, options: dict) -> float | None:
    """One student's Start: seconds until their server is ready, or None on failure."""
    session = requests.Session()  # one per thread
    session.headers["Authorization"] = f"token {hub.token}"
    started = time.monotonic()
    try:
        r = session.post(f"{hub.url}/hub/api/users/{name}/server", json=options, timeout=120)
        if r.status_code not in (201, 202) and not (r.status_code == 400 and "already running" in r.text):
            log.warning("%s: spawn request answered %s %s", name, r.status_code, r.text[:200])
            return None
        hub.wait_ready(name, READY_TIMEOUT, session=session, poll=POLL_INTERVAL)
        return time.monotonic() - started
    except (HubError, requests.RequestException, ValueError) as e:
        log.warning("%s: %s", name, str(e).splitlines()[0])
        return None
    finally:
        session.close()


def open_window() -> dict:
    now = utcnow()
    return {"start": iso(now - datetime.timedelta(minutes=5)), "end": iso(now + datetime.timedelta(hours=2))}


def prewarm(hub: HubProcess, names: list[str]) -> float:
    """The session, its roster, the agent's prewarm: seconds until every server is ready."""
    api = f"{hub.url}/hub/api/gpuhub/v1/sessions/bench"
    r = hub.session.put(api, json={"profile": "cpu-test", "windows": [open_window()]}, timeout=30)
    r.raise_for_status()
    r = hub.session.post(f"{api}/roster", data="\n".join(names).encode(), headers={"Content-Type": "text/csv"}, timeout=60)
    r.raise_for_status()
    began = time.monotonic()
    hub.session.post(f"{api}/prewarm", timeout=30).raise_for_status()
    deadline = began + READY_TIMEOUT * 3
    while time.monotonic() < deadline:
        if re.search(r"session bench: prewarm done in [\d.]+s: (\d+) ready, (\d+) failed", hub.log_path.read_text()):
            break
        time.sleep(1)
    done = re.search(r"session bench: prewarm done in [\d.]+s: (\d+) ready, (\d+) failed", hub.log_path.read_text())
    if not done or done.group(1) != str(len(names)):
        raise HubError(f"the prewarm did not start every server: {done.group(0) if done else 'no report'}")
    return time.monotonic() - began


def peak_starting(hub: HubProcess) -> int:
    turns = [int(n) for n in re.findall(r"start turn taken \((\d+) of at most", hub.log_path.read_text())]
    return max(turns, default=0)


def measure(variant: str, students: int, slots: int) -> dict:
    remove_prefixed(PREFIX)
    workdir = Path(tempfile.mkdtemp(prefix=f"{PREFIX}-"))
    hub = HubProcess(workdir, prefix=PREFIX, spawner="docker" if variant == "docker" else "gpuhub", extra_config=INSTRUCTOR_ROLE)
    if variant != "docker":
        hub.profiles += f"\n[admission]\nmax_concurrent_starts = {slots}\n\n[culling]\ntimeout = 0\n"
        hub.session_settings = "check_interval = 1\nprewarm_concurrency = 8"
    names = [f"student{i:02d}" for i in range(students)]
    result = {"variant": variant, "prewarm_seconds": None}
    try:
        hub.start()
        for name in names:
            hub.create_user(name)
        if variant == "prewarm":
            result["prewarm_seconds"] = prewarm(hub, names)
            log.info("prewarm: %d servers ready in %.1f s", students, result["prewarm_seconds"])
        options = {"session": "bench"} if variant == "prewarm" else {}
        with CpuAccount() as cpu:
            times, wall = at_once(names, lambda name: press_start(hub, name, options), READY_TIMEOUT + 180)
        result.update(times=times, wall=wall, peak=peak_starting(hub) if variant != "docker" else None, cpu=cpu)
        log.info("%s: burst of %d done in %.1f s: %s", variant, students, wall, [cell(t) for t in times])
        stop_and_wait_gone(hub, names)
    except Exception:
        log.error("%s: hub log tail:\n%s", variant, hub.log_tail(40))
        raise
    finally:
        hub.stop()
        hub.remove_docker_objects()
        shutil.rmtree(workdir, ignore_errors=True)
    return result


def figures(r: dict) -> dict:
    ok = sorted(t for t in r["times"] if t is not None)
    return {
        "p50": percentile(ok, 50),
        "p95": percentile(ok, 95),
        "max": ok[-1] if ok else None,
        "wall": r["wall"],
        "failures": len(r["times"]) - len(ok),
        "peak": r["peak"],
        "prewarm": r["prewarm_seconds"],
        "busy": r["cpu"].busy / r["wall"] / CPUS * 100,
        "cpu": r["cpu"].busy,
        **{f"cpu {part}": seconds for part, seconds in r["cpu"].parts.items()},
    }


def report(args, results: dict[str, dict]) -> str:
    f = {k: figures(v) for k, v in results.items()}
    base = f["docker"]["p95"]

    def ratio(key):
        return f"{f[key]['p95'] / base:.2f}×" if f[key]["p95"] is not None and base else "n/a"

    rows = [
        ("time to ready, p50 (s)", "p50"),
        ("time to ready, p95 (s)", "p95"),
        ("time to ready, max (s)", "max"),
        ("wall time until all ready (s)", "wall"),
        ("failures", "failures"),
        ("most servers starting at once", "peak"),
        ("prewarm of the class before the burst (s)", "prewarm"),
        ("the machine's CPUs busy during the burst (%)", "busy"),
        ("CPU-seconds spent during the burst, all processes", "cpu"),
        ("… by the user servers", "cpu user servers"),
        ("… by the hub (JupyterHub with gpuhub or DockerSpawner)", "cpu the hub"),
        ("… by the proxy", "cpu the proxy"),
        ("… by the engine (dockerd, containerd, runc)", "cpu the engine"),
        ("… by the rest (this script's polling, the kernel, health checks)", "cpu other"),
    ]
    lines = ["| | plain DockerSpawner, all at once | gpuhub, admission control | gpuhub, prewarmed |", "|---|---:|---:|---:|"]
    for title, key in rows:
        lines.append(f"| {title} | " + " | ".join(cell(f[v][key]) for v in ("docker", "admission", "prewarm")) + " |")
    lines.append(f"| **p95 against plain DockerSpawner** | 1.00× | {ratio('admission')} | {ratio('prewarm')} |")
    return f"""## A class of {args.students} pressing Start together

- Date: {datetime.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}; command: `python benchmarks/burst.py --students {args.students} --slots {args.slots}`
- Machine: {machine()}
- Image `{USER_IMAGE}` for all three, 0.5 CPU and 768M each (gpuhub's profile `cpu-test`; DockerSpawner given the same caps).
  Each variant has its own hub, one after another; every student starts from a new home volume.
- Admission control: `[admission] max_concurrent_starts = {args.slots}` (starts beyond it wait in line, shown on the spawn page).
- Prewarmed: the session's roster holds the {args.students} students; the `gpuhub-agent` service started their servers
  (`prewarm_concurrency = 8`, under the same admission control) before they pressed Start. The prewarm's own time is
  the last row: it is what `prewarm_minutes` must cover before class.
- Time to ready: from the student's `POST /hub/api/users/<u>/server` until `servers[""]["ready"]`, polled every
  {POLL_INTERVAL} s; not ready after {READY_TIMEOUT:.0f} s is a failure. The goal of the issue: p95 at most 0.5× plain DockerSpawner.

{chr(10).join(lines)}
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--students", type=int, default=30)
    parser.add_argument("--slots", type=int, default=4, help="[admission] max_concurrent_starts (default 4)")
    parser.add_argument("--no-write", action="store_true", help=f"print only; leave {DOC.relative_to(REPO)} alone")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    results = {v: measure(v, args.students, args.slots) for v in ("docker", "admission", "prewarm")}
    text = report(args, results)
    print(text)
    if not args.no_write:
        write_section("burst", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
