"""The metrics round against the site's history: its cost with 200 and with 200,000 closed usage records.

    python benchmarks/metrics_refresh.py [--small 200] [--large 200000] [--users 100] [--rounds 30] [--no-write]

For each size, a fresh SQLite database at gpuhub's migration 0004 gets that many closed usage records
(one per allocation, spread over ``--users`` users in 20 groups: the same site, a longer history) and 50 open ones, then is upgraded
to the newest migration (0005 fills the running totals from the records, as on a site that
upgrades). Measured, ``--rounds`` times each, in the same run:

- **now**: the accounting service's metrics round (``AccountingService.refresh_metrics``: the running
  totals, the open records, the live allocations) plus computing the figures a scrape serves
  (``web.metrics.snapshot``);
- **before** (for comparison): what the round read until this change, every closed record
  (``SELECT username, groups, gpu_seconds ... WHERE end IS NOT NULL``) summed per user and group.

The figures go between the ``metrics_refresh`` markers of docs/benchmarks.md. A report, not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "platform"))
sys.path.insert(0, str(REPO))
from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy import select, text

from benchmarks.report import percentile, write_section
from gpuhub.config.schema import parse_settings
from gpuhub.db.database import Database, make_engine, upgrade
from gpuhub.db.models import UsageRow
from gpuhub.hub.services import Services
from gpuhub.inventory.file import parse_inventory
from gpuhub.web.metrics import snapshot
from tests.fakeengine import FakeEngine

T0 = datetime.datetime(2026, 1, 1)
OPEN = 50
INVENTORY = "".join(f'[[gpus]]\nuuid = "GPU-00000000-0000-0000-0000-{i:012d}"\nname = "simulated H100"\nmemory = "80G"\n' for i in range(64))
SETTINGS = """
[[profiles]]
name = "gpu-1"
image = "gpuhub/pytorch-cuda:cpu"
gpus = 1
gpu_mode = "exclusive"
"""


def database_with(path: str, closed: int, users: int) -> tuple[Database, float]:
    """A database at the newest migration whose history holds ``closed`` closed records, and the
    seconds migration 0005 took on it."""
    engine = make_engine(f"sqlite:///{path}")
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(REPO / "platform" / "gpuhub" / "db" / "migrations"))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0004_sessions")  # the schema before the running totals
    with engine.begin() as conn:
        allocations, usage = [], []
        for i in range(closed + OPEN):
            user = f"user{i % users:05d}"
            start = T0 + datetime.timedelta(minutes=10 * i)
            end = None if i >= closed else start + datetime.timedelta(hours=1)
            allocations.append({"id": i + 1, "username": user, "server_name": "", "profile": "gpu-1", "mode": "exclusive",
                                "created": start, "released": end, "release_reason": "", "session": ""})
            usage.append({"allocation_id": i + 1, "username": user, "groups": f'["group{i % 20:02d}"]', "server_name": "",
                          "profile": "gpu-1", "device": f"GPU-00000000-0000-0000-0000-{i % 64:012d}", "share": 1.0,
                          "start": start, "end": end, "last_seen": end or start, "gpu_seconds": 3600.0 if end else None, "end_reason": ""})
        conn.execute(text("INSERT INTO gpuhub_allocations (id, username, server_name, profile, mode, created, released, release_reason, session)"
                          " VALUES (:id, :username, :server_name, :profile, :mode, :created, :released, :release_reason, :session)"), allocations)
        conn.execute(text('INSERT INTO gpuhub_usage (allocation_id, username, groups, server_name, profile, device, share, start, "end", last_seen, gpu_seconds, end_reason)'
                          ' VALUES (:allocation_id, :username, :groups, :server_name, :profile, :device, :share, :start, :end, :last_seen, :gpu_seconds, :end_reason)'), usage)
    started = time.perf_counter()
    upgrade(engine)  # 0005: the running totals, filled from the history
    migrated = time.perf_counter() - started
    return Database(engine, lambda: T0 + datetime.timedelta(days=3650)), migrated


def read_every_closed_record(db: Database) -> dict:
    """The round before this change: every closed record, summed per user and per group."""
    by_user, by_group = defaultdict(float), defaultdict(float)
    with db.read() as session:
        for user, groups, seconds in session.execute(
            select(UsageRow.username, UsageRow.groups, UsageRow.gpu_seconds).where(UsageRow.end.is_not(None))
        ):
            by_user[user] += seconds or 0.0
            for g in groups or ():
                by_group[g] += seconds or 0.0
    return {"user": by_user, "group": by_group}


async def measure(db: Database, rounds: int) -> tuple[list[float], list[float], dict]:
    settings = parse_settings(SETTINGS)
    services = Services(settings, engine=FakeEngine(parse_inventory(INVENTORY, "file:simulated")), database=db, clock=db.clock)
    now_ms, before_ms = [], []
    for _ in range(rounds):
        started = time.perf_counter()
        await services.accounting.refresh_metrics()
        snapshot(services.accounting.metrics)
        now_ms.append((time.perf_counter() - started) * 1000)
        started = time.perf_counter()
        before = read_every_closed_record(db)
        before_ms.append((time.perf_counter() - started) * 1000)
    totals = services.accounting.metrics.closed_totals
    assert abs(sum(totals["user"].values()) - sum(before["user"].values())) < 1e-6, "the totals must equal the history's sum"
    return now_ms, before_ms, totals


def run(args) -> list[dict]:
    results = []
    for closed in (args.small, args.large):
        workdir = tempfile.mkdtemp(prefix="gpuhub-metrics-bench-")
        db, migrated = database_with(f"{workdir}/hub.sqlite", closed, args.users)
        now_ms, before_ms, totals = asyncio.run(measure(db, args.rounds))
        results.append({
            "closed": closed, "users": len(totals["user"]), "migration_s": migrated,
            "now_p50": statistics.median(now_ms), "now_p95": percentile(now_ms, 95),
            "before_p50": statistics.median(before_ms), "before_p95": percentile(before_ms, 95),
        })
        print(results[-1], flush=True)
    return results


def table(results: list[dict], args) -> str:
    small, large = results
    when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    rows = [
        f"- Date: {when}; command: `python benchmarks/metrics_refresh.py --small {args.small} --large {args.large} --users {args.users} --rounds {args.rounds}`",
        f"- SQLite on this machine's disk; {args.users} users in 20 groups, {OPEN} open records, 64 simulated GPUs (no GPU was used).",
        "- *now*: the accounting service's metrics round (running totals + open records + live allocations) and the figures a scrape"
        " computes from them; *before*: reading every closed record, as the round did until the running totals.",
        "",
        "| closed usage records | now p50 (ms) | now p95 (ms) | before p50 (ms) | before p95 (ms) | migration 0005 (s) |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        rows.append(f"| {r['closed']:,} | {r['now_p50']:.1f} | {r['now_p95']:.1f} | {r['before_p50']:.1f} | {r['before_p95']:.1f} | {r['migration_s']:.2f} |")
    rows += [
        "",
        f"Ratio {large['closed']:,} / {small['closed']:,} records: now {large['now_p50'] / small['now_p50']:.2f}× (p50),"
        f" before {large['before_p50'] / small['before_p50']:.0f}×.",
    ]
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--small", type=int, default=200)
    parser.add_argument("--large", type=int, default=200_000)
    parser.add_argument("--users", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    text = table(run(args), args)
    print(text)
    if not args.no_write:
        write_section("metrics_refresh", text, "## Metrics refresh against the site's history (`benchmarks/metrics_refresh.py`)")


if __name__ == "__main__":
    main()
