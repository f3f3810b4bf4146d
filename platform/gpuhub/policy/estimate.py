"""How long until a waiting start gets its GPU: an estimate from what bounds each holder's time.

Every live allocation on the devices a line draws on (``Hold``) ends, at the latest, at the earliest
of the limits the hub enforces on it (``Hold.limits``, each with its reason):

- its classroom session's window ends, where the session stops its servers then (``stop_at_end``);
- the server reaches ``[culling] max_age``;
- its person's weekly GPU-hours run out at the rate they hold GPUs now, where ``[accounting]
  running_servers = "stop"``.

Besides, a hold usually lasts about as long as this profile's holds lately: the median of its
closed holds in the last four weeks, at least ``MIN_SAMPLES`` of them (``typical_holds``), counted
from the hold's start, while that moment is still ahead. Its expected end is the earliest of these;
with none, its end is unknown.

The waiter that needs ``units`` devices, behind waiters needing ``ahead`` more, gets its GPU when
``ahead + units`` devices have freed: at the ``(ahead + units)``-th expected end (``estimate``).
Unknown when fewer holders have an expected end. It is an estimate: a holder who stops early
makes it shorter, and GPU-idle reclaim and inactivity culling, which depend on what people do, are
not counted.

Pure: the allocation service gathers the holds from the database, the sessions and the settings.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from .accounting import UsageRecord
from .durations import duration_text

TYPICAL_WINDOW = timedelta(days=28)
MIN_SAMPLES = 3


@dataclass(frozen=True)
class Hold:
    """One live allocation a line waits on: when it started, how many devices it frees, its profile,
    and the limits the hub enforces on it (when, why)."""

    started: datetime
    units: int
    profile: str
    limits: tuple[tuple[datetime, str], ...] = ()


@dataclass(frozen=True)
class Estimate:
    """When a GPU is expected to free for a waiter (None: unknown), and on what the estimate rests."""

    at: datetime | None
    basis: str = ""

    def seconds(self, now: datetime) -> int | None:
        return None if self.at is None else max(0, round((self.at - now).total_seconds()))

    def text(self, now: datetime) -> str:
        """For the spawn page: "a GPU likely frees in about 25 minutes (a session's window ends)"."""
        if self.at is None:
            return "no estimate yet (the GPUs' holders have no known end)"
        seconds = self.seconds(now)
        if seconds < 60:
            return f"a GPU likely frees within a minute ({self.basis})"
        minutes = round(seconds / 60)
        when = f"about {minutes} minutes" if minutes < 120 else f"about {minutes / 60:.1f} hours"
        return f"a GPU likely frees in {when} ({self.basis})"


def typical_holds(records: Iterable[UsageRecord], now: datetime) -> dict[str, timedelta]:
    """Per profile: the median length of its holds that closed in the last ``TYPICAL_WINDOW`` (one per
    allocation, however many devices it held), where there are at least ``MIN_SAMPLES``."""
    lengths: dict[str, dict[int, timedelta]] = {}
    for r in records:
        if r.end is not None and now - TYPICAL_WINDOW <= r.end <= now:
            lengths.setdefault(r.profile, {})[r.allocation_id] = r.end - r.start
    return {
        profile: statistics.median(by_allocation.values())
        for profile, by_allocation in lengths.items()
        if len(by_allocation) >= MIN_SAMPLES
    }


def expected_end(hold: Hold, typical: dict[str, timedelta], now: datetime) -> tuple[datetime, str] | None:
    """The earliest of the hold's limits (one already past counts as now) and its typical end (while
    still ahead); None if there is neither."""
    candidates = [(max(at, now), why) for at, why in hold.limits]
    usual = typical.get(hold.profile)
    if usual is not None and hold.started + usual > now:
        candidates.append((hold.started + usual, f"{hold.profile} is usually held {duration_text(usual.total_seconds())}"))
    return min(candidates, key=lambda c: c[0]) if candidates else None


def estimate(holds: Iterable[Hold], typical: dict[str, timedelta], now: datetime, units: int, ahead: int) -> Estimate:
    """When ``ahead + units`` devices will have freed, from the holds' expected ends."""
    ends = sorted(
        ((end, why) for hold in holds if (known := expected_end(hold, typical, now)) for end, why in [known] * hold.units),
        key=lambda e: e[0],
    )
    needed = ahead + units
    if needed <= 0 or needed > len(ends):
        return Estimate(None)
    return Estimate(*ends[needed - 1])
