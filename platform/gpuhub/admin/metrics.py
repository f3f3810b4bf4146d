"""gpuhub's figures on the hub's own ``/metrics`` (JupyterHub serves prometheus_client's default
registry there, behind the ``read:metrics`` scope).

The figures are a snapshot the hub's background task (``gpuhub.watch``) refreshes every
``[accounting] check_interval`` seconds, so a scrape never reads the database on the event loop.
Label cardinality is bounded: ``user`` and ``group`` name at most ``metrics_max_users`` /
``metrics_max_groups`` values, the rest summed under ``(others)``; every other label takes a handful
of values (device kinds and models, states, modes, wait lines).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime

from prometheus_client.core import REGISTRY, CounterMetricFamily, GaugeMetricFamily

from ..accounting import UsageRecord, bounded, gpu_seconds
from ..inventory import Inventory
from ..store import Allocation
from .views import device_rows


@dataclass
class Family:
    kind: str  # "gauge" or "counter"
    help: str
    labels: tuple[str, ...]
    samples: list[tuple[tuple[str, ...], float]] = field(default_factory=list)


def snapshot(
    inventory: Inventory,
    live: list[Allocation],
    lines: dict[str, list[str]],
    closed: list[tuple[str, tuple[str, ...], float]],
    open_records: list[UsageRecord],
    now: datetime,
    max_users: int,
    max_groups: int,
) -> dict[str, Family]:
    """The metric families, from the pool's state (pure)."""
    simulated = "true" if inventory.simulated else "false"
    devices = Counter()
    totals = Counter()
    for row in device_rows(inventory, live, now):
        if row["state"] == "partitioned":
            continue  # counted through its MIG slices
        kind = "gpu" if row["kind"] == "gpu" else f"mig:{row['mig_profile']}"
        totals[(kind, row["model"], simulated)] += 1
        devices[(kind, row["model"], row["state"], simulated)] += 1
    for kind, model, sim in list(totals):
        for state in ("free", "held", "shared", "unhealthy"):
            devices.setdefault((kind, model, state, sim), 0)
    by_user, by_group = defaultdict(float), defaultdict(float)
    for user, groups, seconds in closed:
        by_user[user] += seconds
        for g in groups:
            by_group[g] += seconds
    for r in open_records:
        seconds = gpu_seconds(r, r.start, now)
        by_user[r.username] += seconds
        for g in r.groups:
            by_group[g] += seconds
    modes = Counter(a.mode for a in live)
    return {
        "gpuhub_devices": Family(
            "gauge", "GPUs and MIG slices of the hub's inventory", ("kind", "model", "simulated"),
            [(k, v) for k, v in sorted(totals.items())],
        ),
        "gpuhub_devices_by_state": Family(
            "gauge", "GPUs and MIG slices by state (free, held, shared, unhealthy)", ("kind", "model", "state", "simulated"),
            [(k, v) for k, v in sorted(devices.items())],
        ),
        "gpuhub_queue_length": Family(
            "gauge", "Spawns waiting for a GPU, per wait line", ("pool",),
            [((pool,), len(holders)) for pool, holders in sorted(lines.items())],
        ),
        "gpuhub_allocations": Family(
            "gauge", "Live GPU allocations by mode", ("mode",),
            [((m,), modes.get(m, 0)) for m in ("exclusive", "shared", "mig")],
        ),
        "gpuhub_user_gpu_seconds": Family(
            "counter", "GPU-seconds used per user since accounting began (top users; the rest as (others))", ("user",),
            [((u,), s) for u, s in bounded(dict(by_user), max_users).items()],
        ),
        "gpuhub_group_gpu_seconds": Family(
            "counter", "GPU-seconds used per group since accounting began (top groups; the rest as (others))", ("group",),
            [((g,), s) for g, s in bounded(dict(by_group), max_groups).items()],
        ),
    }


class GpuhubCollector:
    """Serves the latest snapshot; registered once per hub process."""

    def __init__(self, read_snapshot):
        self._read = read_snapshot

    def collect(self):
        for name, fam in (self._read() or {}).items():
            cls = GaugeMetricFamily if fam.kind == "gauge" else CounterMetricFamily
            metric = cls(name, fam.help, labels=list(fam.labels))
            for labels, value in fam.samples:
                metric.add_metric(list(labels), value)
            yield metric


_registered = False


def register(read_snapshot) -> None:
    global _registered
    if not _registered:
        REGISTRY.register(GpuhubCollector(read_snapshot))
        _registered = True
