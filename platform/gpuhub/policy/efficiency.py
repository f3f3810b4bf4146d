"""How busy held GPUs were: GPU-hours held against GPU-hours busy, per user or group. Pure.

The hub is sent, every ``[reclaim] check_interval``, whether each held device was busy (utilisation
above ``[reclaim] busy_utilisation``: the reading the GPU-idle reclaim takes, NVML or a SIMULATED
file) and adds the time since the record's previous reading (``sampled``: at most ``max_gap``, so a
pause in readings is not guessed at) to the record's *measured* seconds, and to its *busy* seconds
when it was busy, each times the record's share of a GPU.

A record's busy share (busy over measured) applied to its GPU-seconds inside a range gives its busy
GPU-seconds there (``efficiency``): the readings are not kept one by one. A record never measured
(its server ran without readings) counts as held, not as measured: efficiency is over what was
measured. Every figure built from simulated readings says so (``readings``).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from ..contract import iso
from .accounting import UsageRecord, gpu_seconds, record_keys


@dataclass(frozen=True)
class Efficiency:
    held: float  # GPU-seconds held in the range
    measured: float  # of those, in records with readings
    busy: float  # busy GPU-seconds (the records' busy shares)

    @property
    def busy_share(self) -> float | None:
        """Busy over measured; None where nothing was measured."""
        return self.busy / self.measured if self.measured > 0 else None

    def as_json(self) -> dict:
        share = self.busy_share
        return {
            "gpu_hours": round(self.held / 3600, 4),
            "measured_gpu_hours": round(self.measured / 3600, 4),
            "busy_gpu_hours": round(self.busy / 3600, 4),
            "busy_share": None if share is None else round(share, 4),
        }


def sampled(last: datetime, now: datetime, max_gap: float) -> float:
    """Seconds a reading at ``now`` stands for, after the previous one (or the record's start) at ``last``."""
    return min(max(0.0, (now - last).total_seconds()), max_gap)


def record_busy(record: UsageRecord, since: datetime, until: datetime) -> tuple[float, float, float]:
    """(held, measured, busy) GPU-seconds of ``record`` inside [since, until)."""
    held = gpu_seconds(record, since, until)
    if record.observed_seconds <= 0:
        return held, 0.0, 0.0
    return held, held, held * min(1.0, record.busy_seconds / record.observed_seconds)


def efficiency(records: Iterable[UsageRecord], by: str, since: datetime, until: datetime) -> dict[str, Efficiency]:
    """Per user (``by="user"``) or group: held, measured and busy GPU-seconds inside [since, until),
    the most held first (the order of ``accounting.totals``)."""
    sums: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0, 0.0])
    for record in records:
        figures = record_busy(record, since, until)
        for key in record_keys(record, by):
            for i, value in enumerate(figures):
                sums[key][i] += value
    ordered = sorted(sums.items(), key=lambda kv: (-kv[1][0], kv[0]))
    return {key: Efficiency(*values) for key, values in ordered}


def readings(records: Iterable[UsageRecord]) -> str:
    """Where the busy figures come from: "nvml", "simulated", "mixed", or "none" (nothing measured)."""
    kinds = {"simulated" if r.activity_simulated else "nvml" for r in records if r.observed_seconds > 0}
    return "none" if not kinds else kinds.pop() if len(kinds) == 1 else "mixed"


@dataclass(frozen=True)
class IdleHolder:
    """A server holding GPUs none of which was busy at the latest readings, since ``idle_since``."""

    allocation: int
    user: str
    server: str
    profile: str
    uuids: tuple[str, ...]
    held_since: datetime
    idle_since: datetime
    simulated: bool

    def as_json(self, now: datetime) -> dict:
        return {
            "allocation": self.allocation, "user": self.user, "server": self.server, "profile": self.profile,
            "gpus": list(self.uuids), "held_since": iso(self.held_since), "idle_since": iso(self.idle_since),
            "idle_seconds": int((now - self.idle_since).total_seconds()), "simulated": self.simulated,
        }
