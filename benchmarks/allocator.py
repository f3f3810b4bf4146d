"""Allocator throughput: allocate + release latency on a real SQLite file at scale.

    python benchmarks/allocator.py [--gpus 1000] [--users 10000] [--ops 3000] [--nodes 1] [--db sqlite|postgresql] [--no-write]

A simulated inventory of ``--gpus`` whole GPUs (NVLinked in pairs), on one host or spread evenly over
``--nodes`` Swarm nodes (``--nodes 125``: 8 GPUs per node, placed as the Swarm engine's pool is). The pool is first filled to a
realistic load: half the GPUs held exclusively and the other half shared by up to 4 users each,
spread over ``--users`` users. Then ``--ops`` times: a live allocation is released, and a random user
allocates the same kind (1 exclusive GPU or a 20 GB shared slice, with the quota check in the same
transaction, as the hub does) and releases it at once. Each allocate and each release is timed separately (one transaction each,
committed to disk); the figures go between the ``allocator`` markers of docs/benchmarks.md.
A benchmark report, not a test.
"""

from __future__ import annotations

import argparse
import datetime
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "platform"))
sys.path.insert(0, str(REPO))
from gpuhub.db.allocations import AllocationStore
from gpuhub.db.database import Database
from gpuhub.db.records import Allocation
from gpuhub.inventory.file import parse_inventory
from gpuhub.policy.allocator import GpuRequest
from gpuhub.policy.decide import SiteRules, Start
from gpuhub.policy.quotas import QuotaRule
from benchmarks.report import percentile, write_section

GiB = 1024**3


def inventory_text(n: int) -> str:
    parts = []
    for i in range(n):
        peer = i + 1 if i % 2 == 0 else i - 1
        parts.append(
            f'[[gpus]]\nuuid = "GPU-00000000-0000-0000-0000-{i:012d}"\nname = "simulated H100"\nmemory = "80G"\n'
            f'nvlink_peers = ["GPU-00000000-0000-0000-0000-{peer:012d}"]\n'
        )
    return "\n".join(parts)



def on_nodes(inventory, nodes: int):
    """The same GPUs spread evenly over ``nodes`` nodes (consecutive GPUs together: pairs stay linked)."""
    from dataclasses import replace

    per_node = -(-len(inventory.gpus) // nodes)
    return replace(inventory, gpus=tuple(replace(g, node=f"node{i // per_node:03d}") for i, g in enumerate(inventory.gpus)))


def run(args) -> dict:
    inventory = parse_inventory(inventory_text(args.gpus), "file:simulated")
    if args.nodes > 1:
        inventory = on_nodes(inventory, args.nodes)
    workdir = tempfile.mkdtemp(prefix="gpuhub-allocator-bench-")
    if args.db == "postgresql":
        from tests.pgserver import PostgresServer

        pg = PostgresServer()
        pg.start()
        url = pg.create_database("bench")
    else:
        pg, url = None, f"sqlite:///{workdir}/hub.sqlite"
    try:
        store = AllocationStore(Database.open(url))
        rng = random.Random(7)
        users = [f"user{i:05d}" for i in range(args.users)]
        # the quota is checked inside the placing transaction, as the hub does
        rules = SiteRules((QuotaRule("default", "", max_gpus=4, max_shared_slices=2),), 4, "rolling")

        def allocate(request, user, profile):
            return store.allocate(inventory, Start(user, "", (), profile, request, GiB, 1.0), rules)

        # fill: half the GPUs exclusive, the rest shared by 4 users each
        filler = iter(users)
        for _ in range(args.gpus // 2):
            allocate(GpuRequest("exclusive"), next(filler), "gpu-1")
        for _ in range((args.gpus - args.gpus // 2) * 4):
            allocate(GpuRequest("shared", memory_bytes=20 * GiB), next(filler), "shared-20")
        held = len(store.live())
        # the measured operations: a slot is freed first, so every allocate finds room
        requests = [GpuRequest("exclusive"), GpuRequest("shared", memory_bytes=20 * GiB)]
        allocate_ms, release_ms = [], []
        live = store.live()
        for i in range(args.ops):
            victim = live.pop(rng.randrange(len(live)))
            store.release(victim.id, "bench")
            request = requests[0] if victim.mode == "exclusive" else requests[1]  # the freed kind: always placeable
            user = rng.choice(users)
            started = time.perf_counter()
            result = allocate(request, user, "bench")
            allocate_ms.append((time.perf_counter() - started) * 1000)
            if not isinstance(result, Allocation):
                raise SystemExit(f"operation {i}: expected a placement, got {result}")
            started = time.perf_counter()
            store.release(result.id, "bench")
            release_ms.append((time.perf_counter() - started) * 1000)
            live.append(allocate(request, victim.username, "refill"))
        both = [a + r for a, r in zip(allocate_ms, release_ms)]
        return {
            "db": args.db,
            "nodes": args.nodes,
            "gpus": args.gpus,
            "users": args.users,
            "held": held,
            "ops": args.ops,
            "allocate_p50": statistics.median(allocate_ms),
            "allocate_p99": percentile(allocate_ms, 99),
            "release_p99": percentile(release_ms, 99),
            "both_p50": statistics.median(both),
            "both_p99": percentile(both, 99),
        }
    finally:
        if pg:
            pg.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def table(r: dict) -> str:
    when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return "\n".join(
        [
            f"Run {when} on this machine (no GPU; a simulated inventory): {r['gpus']} simulated GPUs"
            f"{' on ' + str(r['nodes']) + ' simulated nodes' if r['nodes'] > 1 else ''}, "
            f"{r['users']} users, {r['held']} live allocations before measuring, {r['ops']} operations, {r['db']}.",
            "",
            "| figure | ms |",
            "|---|---|",
            f"| allocate p50 | {r['allocate_p50']:.2f} |",
            f"| allocate p99 | {r['allocate_p99']:.2f} |",
            f"| release p99 | {r['release_p99']:.2f} |",
            f"| allocate + release p50 | {r['both_p50']:.2f} |",
            f"| **allocate + release p99** (goal ≤ 5 ms on SQLite) | **{r['both_p99']:.2f}** |",
        ]
    )




def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gpus", type=int, default=1000)
    parser.add_argument("--users", type=int, default=10000)
    parser.add_argument("--ops", type=int, default=3000)
    parser.add_argument("--nodes", type=int, default=1, help="spread the GPUs over this many Swarm nodes")
    parser.add_argument("--db", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    text = table(run(args))
    print(text)
    if args.no_write:
        return
    if args.nodes > 1:
        write_section("allocator-nodes", text, "## Allocator across Swarm nodes (`benchmarks/allocator.py --nodes 125`)")
    else:
        write_section("allocator", text, "## Allocator: allocate + release at scale (`benchmarks/allocator.py`)")


if __name__ == "__main__":
    main()
