"""Scale-out: the same hub on one Docker host and on a 3-node Docker Swarm, same image, same run.

    sudo .venv/bin/python benchmarks/swarm.py [--repeats 5] [--students 30] [--requests 200] [--no-write]

It builds one real Swarm on this machine (``tests/swarm/cluster.py``: a manager and three workers,
each its own network namespace and engine, the registry on the manager; root needed) and composes
docker-compose.yml's hub on the manager twice, one after the other, never both at once:

1. ``one host``: ``[engine] kind = "docker"``: every server on the manager's own engine; three
   SIMULATED GPUs there.
2. ``swarm``: ``kind = "swarm"``: servers are Swarm services on the workers, one SIMULATED GPU on
   each worker, reported by each worker's node reporter.

On each: (a) spawn latency: one user starts a 1-GPU server ``--repeats`` times (stopped between
runs), from ``POST /hub/api/users/<u>/server`` until the user model says ready; (b) a class of
``--students`` pressing Start at the same moment (CPU profile, default admission control): time to
ready per student, wall time, failures, servers per node. On the Swarm also (c) ``--requests`` users
asking for 1 GPU at the same moment, with three GPUs: the GPUs held per device from the admin API
(a device held twice is a double assignment), the rest in the wait line; then the line is
emptied and every server stopped: the allocations left (a leak). Figures between the ``swarm``
markers of docs/benchmarks.md. A benchmark report, not a test. All GPUs are SIMULATED.
"""

from __future__ import annotations

import argparse
import datetime
import logging
import os
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "platform"))
sys.path.insert(0, str(REPO))
from benchmarks.report import at_once, percentile, write_section
from benchmarks.spawn_latency import POLL_INTERVAL, READY_TIMEOUT, cell
from tests.swarm.cluster import Cluster
from tests.swarm.swarmhub import SwarmHub, compose_hub, live_allocations, wait_nodes

log = logging.getLogger("swarm-bench")
ONE_HOST = {"manager": (0, 1, 2)}
SWARM = {"worker1": (0,), "worker2": (1,), "worker3": (2,)}


def time_to_ready(hub: SwarmHub, user: str, profile: str) -> float | None:
    """POST a start for ``user``; seconds until their default server is ready, or None on failure."""
    session = requests.Session()  # one per thread
    session.headers["Authorization"] = f"token {hub.token}"
    url = f"{hub.url}/hub/api/users/{user}"
    began = time.monotonic()
    try:
        r = session.post(f"{url}/server", json={"profile": profile}, timeout=120)
        if r.status_code not in (201, 202):
            log.warning("%s: start answered %s %s", user, r.status_code, r.text[:200])
            return None
        while time.monotonic() - began < READY_TIMEOUT:
            server = session.get(url, timeout=60).json()["servers"].get("")
            if server and server["ready"]:
                return time.monotonic() - began
            if not server or not server.get("pending"):
                log.warning("%s: the server is neither starting nor ready: %s", user, server)
                return None
            time.sleep(POLL_INTERVAL)
        log.warning("%s: not ready within %s s", user, READY_TIMEOUT)
    except (requests.RequestException, ValueError) as e:
        log.warning("%s: %s", user, e)
    finally:
        session.close()
    return None


def stop_all(hub: SwarmHub, users: list[str]) -> None:
    for user in users:
        hub.api("DELETE", f"/users/{user}/server", ok=(202, 204, 400, 404))
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        running = [u for u in hub.api("GET", "/users?state=active&limit=500").json() if u["name"] in users]
        if not running:
            return
        time.sleep(1)
    raise RuntimeError(f"servers still running after 180 s: {[u['name'] for u in running]}")


def servers_per_node(hub: SwarmHub) -> dict[str, int]:
    counts = {}
    for node in hub.cluster.nodes:
        found = node.client().api.containers(filters={"label": "org.gpuhub.managed=true"})
        counts[node.name] = len([c for c in found if "org.gpuhub.user" in c["Labels"]])
    return counts


def create_users(hub: SwarmHub, names: list[str]) -> None:
    hub.api("POST", "/users", json={"usernames": names}, ok=(201, 409))


def spawn_latency(hub: SwarmHub, repeats: int) -> list[float | None]:
    create_users(hub, ["single"])
    times = []
    for i in range(repeats):
        times.append(time_to_ready(hub, "single", "gpu-1"))
        log.info("single start %d/%d: %s s", i + 1, repeats, cell(times[-1]))
        stop_all(hub, ["single"])
    return times


def burst(hub: SwarmHub, students: int) -> dict:
    names = [f"student{i:02d}" for i in range(students)]
    create_users(hub, names)
    times, wall = at_once(names, lambda name: time_to_ready(hub, name, "cpu-small"), READY_TIMEOUT + 180)
    placed = servers_per_node(hub)
    log.info("burst of %d done in %.1f s on %s", students, wall, placed)
    stop_all(hub, names)
    return {"times": times, "wall": wall, "placed": {k: v for k, v in placed.items() if v}}


def concurrent_requests(hub: SwarmHub, n: int) -> dict:
    """``n`` users ask for one GPU at the same moment; three GPUs exist."""
    names = [f"req{i:03d}" for i in range(n)]
    create_users(hub, names)

    def ask(name: str) -> float | None:
        r = requests.post(f"{hub.url}/hub/api/users/{name}/server", json={"profile": "gpu-1"},
                          headers={"Authorization": f"token {hub.token}"}, timeout=300)
        return float(r.status_code)

    answers, wall = at_once(names, ask, 600)
    deadline = time.monotonic() + READY_TIMEOUT
    ready = []
    while time.monotonic() < deadline:
        users = hub.api("GET", "/users?state=active&limit=500").json()
        ready = [u["name"] for u in users if u["name"] in names and (u["servers"].get("") or {}).get("ready")]
        if len(ready) >= 3:
            break
        time.sleep(1)
    held = live_allocations(hub)
    per_device = Counter(device for device, _ in held)
    waiting = hub.gpuhub("GET", "/queue").json()["waiting"]
    for ticket in waiting:
        hub.gpuhub("DELETE", f"/queue/{ticket['ticket']}", ok=(200, 204, 404))
    stop_all(hub, names)
    leaked = live_allocations(hub)
    return {
        "answers": Counter(int(a) for a in answers if a is not None),
        "wall": wall,
        "ready": len(ready),
        "held": len(held),
        "double": sum(1 for c in per_device.values() if c > 1),
        "waiting": len(waiting),
        "leaked": len(leaked),
    }


def measure(cluster: Cluster, user_image: str, kind: str, args) -> dict:
    node_gpus = SWARM if kind == "swarm" else ONE_HOST
    with compose_hub(cluster, user_image, kind=kind, node_gpus=node_gpus) as hub:
        if kind == "swarm":
            wait_nodes(hub, lambda ns: len(ns) == 4 and all(n["takes_servers"] for n in ns), timeout=120)
        result = {"single": spawn_latency(hub, args.repeats), "burst": burst(hub, args.students)}
        if kind == "swarm" and args.requests:
            result["requests"] = concurrent_requests(hub, args.requests)
        return result


def stats(values: list[float | None]) -> dict:
    ok = [v for v in values if v is not None]
    return {
        "p50": statistics.median(ok) if ok else None,
        "p95": percentile(ok, 95),
        "max": max(ok) if ok else None,
        "failed": len(values) - len(ok),
    }


def report(one: dict, swarm: dict, args, cluster: Cluster) -> str:
    s1, s2 = stats(one["single"]), stats(swarm["single"])
    b1, b2 = stats(one["burst"]["times"]), stats(swarm["burst"]["times"])

    def ratio(a, b):
        return f"{b / a:.2f}" if a and b is not None else "n/a"

    when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        f"Run {when} on this machine (no GPU; every GPU SIMULATED, env-only exposure): one Swarm of a manager and"
        f" 3 workers, each its own network namespace and Docker Engine on the same {len(os.sched_getaffinity(0))}"
        f" CPUs (so the Swarm adds its overheads without adding hardware). Swarm set-up {cluster.timings.get('setup_total', 'n/a')} s.",
        "",
        "| | one host (kind = \"docker\") | 3-node Swarm (kind = \"swarm\") | ratio Swarm / one host |",
        "|---|---:|---:|---:|",
        f"| 1-GPU start, p50 of {args.repeats} (s) | {cell(s1['p50'])} | {cell(s2['p50'])} | **{ratio(s1['p50'], s2['p50'])}** (goal ≤ 1.2) |",
        f"| 1-GPU start, max (s) | {cell(s1['max'])} | {cell(s2['max'])} | {ratio(s1['max'], s2['max'])} |",
        f"| {args.students} students at once: p50 to ready (s) | {cell(b1['p50'])} | {cell(b2['p50'])} | {ratio(b1['p50'], b2['p50'])} |",
        f"| {args.students} students at once: p95 to ready (s) | {cell(b1['p95'])} | {cell(b2['p95'])} | {ratio(b1['p95'], b2['p95'])} |",
        f"| {args.students} students at once: wall (s) | {cell(one['burst']['wall'])} | {cell(swarm['burst']['wall'])} |"
        f" {ratio(one['burst']['wall'], swarm['burst']['wall'])} |",
        f"| failures (starts, burst) | {s1['failed']}, {b1['failed']} | {s2['failed']}, {b2['failed']} | |",
        f"| servers per node in the burst | {one['burst']['placed']} | {swarm['burst']['placed']} | |",
    ]
    req = swarm.get("requests")
    if req:
        lines += [
            "",
            f"{args.requests} users asking for 1 GPU at the same moment on the Swarm (3 SIMULATED GPUs, one per worker):"
            f" answers {dict(req['answers'])} in {req['wall']:.1f} s; {req['ready']} servers ready, {req['held']} GPUs held,"
            f" **{req['double']} double assignments**, {req['waiting']} in the wait line; after the line was emptied and"
            f" every server stopped: **{req['leaked']} allocations left**.",
        ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--students", type=int, default=30)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    cluster = Cluster.start(workers=3, log=log.info)
    try:
        user_image = cluster.push("gpuhub/pytorch-cuda:cpu")
        cluster.pull(user_image, cluster.nodes)  # the one-host variant runs servers on the manager
        cluster.load("gpuhub/hub:latest")
        one = measure(cluster, user_image, "docker", args)
        swarm = measure(cluster, user_image, "swarm", args)
    finally:
        left = cluster.stop()
        if left:
            log.warning("the cluster left things behind: %s", left)
    section = report(one, swarm, args, cluster)
    print(section)
    if not args.no_write:
        write_section("swarm", section, "## Scale-out on Docker Swarm (`benchmarks/swarm.py`)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
