"""gpuhub's figures on the hub's own ``/metrics`` (JupyterHub serves prometheus_client's default
registry there, behind the ``read:metrics`` scope).

The figures are computed at a scrape from the inputs the accounting service refreshes every 15
seconds (``hub.accounting.MetricsInputs``), so a scrape never reads the database. Label cardinality
is bounded: ``user`` and ``group`` name at most ``metrics_max_users`` / ``metrics_max_groups``
values, the rest summed under ``(others)``; every other label takes a handful of values (device
kinds and models, states, modes, wait lines).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field

from prometheus_client.core import REGISTRY, CounterMetricFamily, GaugeMetricFamily

from ..hub.accounting import MetricsInputs
from ..policy.accounting import bounded, gpu_seconds
from .views import device_rows


@dataclass
class Family:
    kind: str  # "gauge" or "counter"
    help: str
    labels: tuple[str, ...]
    samples: list[tuple[tuple[str, ...], float]] = field(default_factory=list)


def snapshot(inputs: MetricsInputs) -> dict[str, Family]:
    """The metric families (pure)."""
    inventory, live, lines, now = inputs.inventory, inputs.live, inputs.lines, inputs.now
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
    by_user = defaultdict(float, inputs.closed_totals.get("user", {}))
    by_group = defaultdict(float, inputs.closed_totals.get("group", {}))
    for r in inputs.open_records:
        seconds = gpu_seconds(r, r.start, now)
        by_user[r.username] += seconds
        for g in r.groups:
            by_group[g] += seconds
    measured = {kind: defaultdict(float, {k: v[0] for k, v in (inputs.closed_activity or {}).get(kind, {}).items()}) for kind in ("user", "group")}
    busy = {kind: defaultdict(float, {k: v[1] for k, v in (inputs.closed_activity or {}).get(kind, {}).items()}) for kind in ("user", "group")}
    for r in inputs.open_records:
        for kind, names in (("user", (r.username,)), ("group", r.groups)):
            for name in names:
                measured[kind][name] += r.observed_seconds
                busy[kind][name] += r.busy_seconds
    readings = {None: "none", True: "true", False: "false"}[inputs.readings_simulated]
    modes = Counter(a.mode for a in live)
    held = inputs.held_per_node or {}
    return {
        "gpuhub_node_takes_servers": Family(
            "gauge", "A Swarm node takes new servers (1) or not (0: down, drained, paused, or silent)", ("node", "state", "availability"),
            [((n.hostname, n.state, n.availability), int(n.schedulable)) for n in inputs.nodes],
        ),
        "gpuhub_node_devices": Family(
            "gauge", "GPUs (and MIG slices) a Swarm node reports, and how many of them live allocations hold", ("node", "what", "simulated"),
            [
                ((n.hostname, what, "true" if n.simulated else "false"), value)
                for n in inputs.nodes
                for what, value in (("gpus", n.gpus), ("mig_slices", n.mig_slices), ("held", held.get(n.id, 0)))
            ],
        ),
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
            [((u,), s) for u, s in bounded(dict(by_user), inputs.max_users).items()],
        ),
        **{
            f"gpuhub_{kind}_gpu_{what}_seconds": Family(
                "counter",
                f"GPU-seconds {text} per {kind}, from the utilisation readings ([reclaim] busy_utilisation; simulated: from a"
                f" SIMULATED file); busy over measured is how much of the held GPU time was used",
                (kind, "simulated"),
                [((k, readings), v) for k, v in bounded(dict(figures[kind]), limit).items()],
            )
            for kind, limit in (("user", inputs.max_users), ("group", inputs.max_groups))
            for what, text, figures in (("measured", "held while readings were taken", measured), ("busy", "busy", busy))
        },
        "gpuhub_group_gpu_seconds": Family(
            "counter", "GPU-seconds used per group since accounting began (top groups; the rest as (others))", ("group",),
            [((g,), s) for g, s in bounded(dict(by_group), inputs.max_groups).items()],
        ),
    }


class GpuhubCollector:
    """Serves the figures of the latest inputs; registered once per hub process."""

    def __init__(self, read_inputs):
        self._read = read_inputs

    def collect(self):
        inputs = self._read()
        for name, fam in (snapshot(inputs) if inputs is not None else {}).items():
            cls = GaugeMetricFamily if fam.kind == "gauge" else CounterMetricFamily
            metric = cls(name, fam.help, labels=list(fam.labels))
            for labels, value in fam.samples:
                metric.add_metric(list(labels), value)
            yield metric


_registered = False


def register(read_inputs) -> None:
    global _registered
    if not _registered:
        REGISTRY.register(GpuhubCollector(read_inputs))
        _registered = True
