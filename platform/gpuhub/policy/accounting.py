"""GPU-hours accounting: the arithmetic over usage records. Pure: records and times in, figures out.

A usage record is one device of one allocation: who (user, their groups at the start, server,
profile), which device, what share of it, from when to when. Its GPU-seconds are its length times
its share:

- a whole GPU (``exclusive``) counts 1 per second;
- a MIG slice counts its memory over its parent GPU's memory (``1g.10gb`` of an 80 GB H100: 0.125);
- a shared-GPU budget counts the budget over the GPU's memory (20 GB of 80 GB: 0.25).

A record is opened in the transaction that places the allocation and closed in the one that
releases it. After a hub restart, a record whose container is gone is closed at the last time the
hub saw the server running (``last_seen``, refreshed by every poll), not at the restart: the time
the hub was down is not charged to anybody it cannot prove still held the GPU.

Group totals count each record once for every group its user was in when it started: a user in two
groups appears in both, so group totals may add up to more than the users' total.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from ..inventory.model import Inventory

WEEK = timedelta(days=7)
OTHERS = "(others)"


@dataclass(frozen=True)
class UsageRecord:
    id: int
    allocation_id: int
    username: str
    groups: tuple[str, ...]
    server_name: str
    profile: str
    device: str  # GPU or MIG UUID
    share: float  # of one whole GPU
    start: datetime
    end: datetime | None  # None: still held
    end_reason: str = ""
    observed_seconds: float = 0.0  # GPU-seconds with utilisation readings (``policy.efficiency``)
    busy_seconds: float = 0.0  # of those, busy
    activity_simulated: bool = False  # the readings came from a SIMULATED file


def device_share(inventory: Inventory, uuid: str, mode: str, memory_bytes: int) -> float:
    """What one second of ``uuid`` in ``mode`` counts, in GPU-seconds (see the module docstring)."""
    if mode == "exclusive":
        return 1.0
    for gpu, mig in inventory.slices():
        if mig.uuid == uuid:
            return round(mig.memory_bytes / gpu.memory_bytes, 6) if gpu.memory_bytes else 1.0
    gpu = inventory.by_uuid.get(uuid)
    if mode == "shared" and gpu is not None and gpu.memory_bytes:
        return round(min(1.0, memory_bytes / gpu.memory_bytes), 6)
    return 1.0


def week_start(now: datetime, week: str) -> datetime:
    """Where the quota week that contains ``now`` starts: ``rolling`` 7 days back, ``calendar`` the
    last Monday 00:00 (UTC, as every time here)."""
    if week == "calendar":
        monday = now - timedelta(days=now.weekday())
        return monday.replace(hour=0, minute=0, second=0, microsecond=0)
    return now - WEEK


def week_text(week: str) -> str:
    return "since Monday 00:00 UTC" if week == "calendar" else "in the last 7 days"


def gpu_seconds(record: UsageRecord, since: datetime, until: datetime) -> float:
    """The record's GPU-seconds inside [since, until); an open record runs to ``until``."""
    return seconds_held(record.start, record.end, record.share, since, until)


def seconds_held(start: datetime, end: datetime | None, share: float, since: datetime, until: datetime) -> float:
    """GPU-seconds of a device share held from ``start`` to ``end`` (None: still held), inside [since, until)."""
    start = max(start, since)
    end = min(end or until, until)
    return max(0.0, (end - start).total_seconds()) * share


def record_keys(record: UsageRecord, by: str) -> tuple[str, ...]:
    return record.groups if by == "group" else (record.username,)


def totals(records: list[UsageRecord], by: str, since: datetime, until: datetime) -> dict[str, float]:
    """GPU-seconds per user (``by="user"``) or per group (``by="group"``) inside [since, until), largest first."""
    sums: dict[str, float] = defaultdict(float)
    for record in records:
        seconds = gpu_seconds(record, since, until)
        for key in record_keys(record, by):
            sums[key] += seconds
    return dict(sorted(sums.items(), key=lambda kv: (-kv[1], kv[0])))


def daily(records: list[UsageRecord], by: str, since: datetime, until: datetime) -> dict[str, dict[str, float]]:
    """GPU-hours per day (``YYYY-MM-DD``, UTC) per user or group: the usage chart's bars."""
    days: dict[str, dict[str, float]] = {}
    day = since.replace(hour=0, minute=0, second=0, microsecond=0)
    while day < until:
        nxt = day + timedelta(days=1)
        lo, hi = max(day, since), min(nxt, until)
        hours = {k: v / 3600 for k, v in totals(records, by, lo, hi).items() if v > 0}
        days[day.date().isoformat()] = hours
        day = nxt
    return days


def weekly(records: Iterable[UsageRecord], now: datetime, week: str, weeks: int) -> list[tuple[datetime, float]]:
    """GPU-hours of ``records`` in each of the last ``weeks`` quota weeks (``[accounting] week``), the
    current one (to ``now``) last: ``[(week start, hours), ...]``."""
    starts = [week_start(now, week)]
    for _ in range(weeks - 1):
        starts.insert(0, starts[0] - WEEK)
    ends = [*starts[1:], now]
    records = list(records)
    return [(start, sum(gpu_seconds(r, start, end) for r in records) / 3600) for start, end in zip(starts, ends)]


def bounded(sums: dict[str, float], limit: int) -> dict[str, float]:
    """At most ``limit`` names (the largest) and the rest summed under ``(others)``: a metric label
    whose cardinality does not grow with the number of accounts."""
    ordered = sorted(sums.items(), key=lambda kv: (-kv[1], kv[0]))
    kept = dict(ordered[:limit])
    rest = ordered[limit:]
    if rest:
        kept[OTHERS] = kept.get(OTHERS, 0.0) + sum(v for _, v in rest)
    return kept


@dataclass
class HeldNow:
    """What one person holds now, from the open usage records: GPUs (in shares), their groups, the allocations."""

    rate: float = 0.0
    groups: set[str] = field(default_factory=set)
    allocations: set[int] = field(default_factory=set)


def held_now(open_records: Iterable[UsageRecord]) -> dict[str, HeldNow]:
    """Per person: what their open usage records hold."""
    per_user: dict[str, HeldNow] = defaultdict(HeldNow)
    for record in open_records:
        entry = per_user[record.username]
        entry.rate += record.share
        entry.groups.update(record.groups)
        entry.allocations.add(record.allocation_id)
    return dict(per_user)


def seconds_until_used_up(used_hours: float, limit_hours: float, gpus_held: float) -> float | None:
    """At the rate of ``gpus_held`` GPUs (in shares), seconds until ``limit_hours`` is used; None if never."""
    if used_hours >= limit_hours:
        return 0.0
    if gpus_held <= 0:
        return None
    return (limit_hours - used_hours) * 3600 / gpus_held


def hours_text(hours: float) -> str:
    """GPU-hours for a person: two decimals, more when it is small (0.0021, not 0.00)."""
    return f"{hours:.2f}" if hours >= 0.1 or hours == 0 else f"{hours:.4f}"


def running_verdict(
    used_hours: float, limit_hours: float | None, gpus_held: float, warn_before: int, policy: str, week: str
) -> tuple[str, str] | None:
    """What happens to a user's running GPU servers: ``("stop", why)``, ``("warn", why)`` or None.

    ``policy`` is ``[accounting] running_servers``: "off" (nothing), "warn", or "stop" (warn first,
    stop once the hours are used up)."""
    if policy == "off" or limit_hours is None or gpus_held <= 0:
        return None
    left = seconds_until_used_up(used_hours, limit_hours, gpus_held)
    then = "it will be stopped then (your files are kept)" if policy == "stop" else "new GPU starts will be refused"
    if left == 0:
        if policy == "stop":
            return ("stop", f"Weekly GPU-hours used up ({hours_text(used_hours)} of {limit_hours:g} {week_text(week)}):"
                            " your GPU server was stopped and its GPU freed; your files are kept")
        return ("warn", f"Weekly GPU-hours used up ({hours_text(used_hours)} of {limit_hours:g} {week_text(week)});"
                        " new GPU starts are refused until hours come back")
    if left is not None and left <= warn_before:
        return ("warn", f"Weekly GPU-hours run out in about {max(1, round(left / 60))} minutes at this rate"
                        f" ({hours_text(used_hours)} of {limit_hours:g} used {week_text(week)}); {then}")
    return None
