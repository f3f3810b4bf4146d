"""Who is ahead in a GPU line: arrival order (``[fairness] policy = "fifo"``) or fair share (``"fair-share"``).

Fair share puts a waiter ahead of another by, in this order:

1. **priority**: the highest ``[fairness] group_priority`` of the waiter's groups, or
   ``session_priority`` for a start in a classroom session (during its window); higher first;
2. **one person counts once**: a person's second waiting start goes behind everybody's first, their
   third behind every second, however many times they press Start (named servers);
3. **recent GPU-hours**, decayed: a GPU-hour used ``age`` ago counts ``0.5 ** (age / half_life)``
   (``decayed_gpu_hours``), so last month's heavy user is not held back forever; fewer first;
4. **arrival**: who joined first (the "fifo" order, which is this step alone).

Pure: standings come from the caller (the allocation service reads the usage records).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from ..config.fairness import FAIR_SHARE, FIFO, POLICIES
from .accounting import UsageRecord

__all__ = ["FAIR_SHARE", "FIFO", "POLICIES", "Standing", "decayed_gpu_hours", "order_key", "priority_of", "reason"]


@dataclass(frozen=True)
class Standing:
    """What fair share knows of a waiting start: its priority (and where it comes from), and its
    person's decayed recent GPU-hours."""

    priority: int = 0
    priority_source: str = ""  # "group ml-lab", "session cs101", "" (none)
    recent_gpu_hours: float = 0.0


def decayed_gpu_hours(records: Iterable[UsageRecord], now: datetime, half_life_hours: float) -> dict[str, float]:
    """Per user: GPU-hours held, each moment weighted ``0.5 ** (age / half_life)`` (the integral, not a
    sample: a record from ``s`` to ``e`` of share ``w`` counts ``w · h/ln2 · (2^-(now-e)/h - 2^-(now-s)/h)``).
    An open record counts to ``now``; what lies after ``now`` counts nothing."""
    if half_life_hours <= 0:
        raise ValueError("half_life_hours must be positive")
    h = half_life_hours * 3600.0
    per_user: dict[str, float] = {}
    for r in records:
        end = min(r.end or now, now)
        if end <= r.start:
            continue
        age_end, age_start = (now - end).total_seconds(), (now - r.start).total_seconds()
        seconds = r.share * h / math.log(2) * (2 ** (-age_end / h) - 2 ** (-age_start / h))
        per_user[r.username] = per_user.get(r.username, 0.0) + seconds / 3600.0
    return per_user


def priority_of(groups: Iterable[str], session: str, group_priority: dict[str, int], session_priority: int) -> tuple[int, str]:
    """(priority, where it comes from): the highest of the waiter's groups' and, for a session's start,
    ``session_priority``; ties go to the session, then to the group that sorts first."""
    best = (0, "")
    for group in sorted(groups):
        if group in group_priority and group_priority[group] > best[0]:
            best = (group_priority[group], f"group {group}")
    if session and session_priority > 0 and session_priority >= best[0]:
        best = (session_priority, f"session {session}")
    return best


def order_key(policy: str, since: datetime, number: int, standing: Standing | None, nth: int) -> tuple:
    """The sort key of a waiting start: ``nth`` is its rank among its person's waiting starts (0 for
    their first); no ``standing`` yet (it has just joined) counts as none. "fifo": arrival alone."""
    if policy == FIFO:
        return (since, number)
    standing = standing or Standing()
    return (-standing.priority, nth, round(standing.recent_gpu_hours, 6), since, number)


def reason(policy: str, standing: Standing | None, nth: int) -> str:
    """Why a waiter stands where it does, for the admin's queue view."""
    if policy == FIFO:
        return "arrival order"
    standing = standing or Standing()
    parts = [f"priority {standing.priority} ({standing.priority_source})" if standing.priority else "priority 0"]
    if nth:
        parts.append(f"their start no. {nth + 1} in line: behind everyone's no. {nth}")
    parts.append(f"{standing.recent_gpu_hours:.1f} recent GPU-hours")
    return "; ".join(parts)
