"""Usage records (one per device of an allocation) and the running totals of the closed ones.

A record is opened in the transaction that places its allocation and closed in the one that releases
it (``close_usage``), which also adds its GPU-seconds to ``gpuhub_usage_totals`` (per user, and per
group of the user at the start). The metrics read those totals and the open records only, so their
cost does not grow with the site's history. The arithmetic is ``policy.accounting``.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from ..policy.accounting import UsageRecord, gpu_seconds
from .database import Database
from .models import UsageRow, UsageTotalRow


def as_record(row: UsageRow) -> UsageRecord:
    return UsageRecord(
        id=row.id,
        allocation_id=row.allocation_id,
        username=row.username,
        groups=tuple(row.groups or ()),
        server_name=row.server_name,
        profile=row.profile,
        device=row.device,
        share=row.share,
        start=row.start,
        end=row.end,
        end_reason=row.end_reason,
    )


def close_usage(session: Session, allocation_id: int, reason: str, now: datetime, at_last_seen: bool = False) -> None:
    """Close the allocation's open records (inside the releasing transaction): at ``now``, or
    (``at_last_seen``) at the last time the hub saw its server running; add their GPU-seconds to the
    totals."""
    added: dict[tuple[str, str], float] = {}
    for usage in session.scalars(select(UsageRow).where(UsageRow.allocation_id == allocation_id, UsageRow.end.is_(None))):
        usage.end = max(usage.start, min(usage.last_seen, now) if at_last_seen else now)
        usage.gpu_seconds = gpu_seconds(as_record(usage), usage.start, usage.end)
        usage.end_reason = reason[:255]
        for key in [("user", usage.username), *(("group", g) for g in usage.groups or ())]:
            added[key] = added.get(key, 0.0) + usage.gpu_seconds
    for (kind, name), seconds in added.items():
        total = session.get(UsageTotalRow, (kind, name))
        if total is None:
            session.add(UsageTotalRow(kind=kind, name=name, gpu_seconds=seconds))
        else:
            total.gpu_seconds += seconds


def _overlapping(since: datetime, until: datetime):
    return select(UsageRow).where(UsageRow.start < until, or_(UsageRow.end.is_(None), UsageRow.end > since))


def used_seconds_in(session: Session, username: str, since: datetime, now: datetime) -> float:
    """GPU-seconds ``username`` used from ``since`` to ``now`` (open records counted to ``now``)."""
    rows = session.scalars(_overlapping(since, now).where(UsageRow.username == username))
    return sum(gpu_seconds(as_record(r), since, now) for r in rows)


class UsageStore:
    def __init__(self, db: Database):
        self.db = db

    def used_seconds(self, username: str, since: datetime) -> float:
        """GPU-seconds ``username`` used from ``since`` to now (open records counted to now)."""
        with self.db.read() as session:
            return used_seconds_in(session, username, since, self.db.clock())

    def records(self, since: datetime, until: datetime) -> list[UsageRecord]:
        """Every usage record that overlaps [since, until), oldest first."""
        with self.db.read() as session:
            rows = session.scalars(_overlapping(since, until).order_by(UsageRow.start, UsageRow.id))
            return [as_record(r) for r in rows]

    def open_records(self) -> list[UsageRecord]:
        with self.db.read() as session:
            return [as_record(r) for r in session.scalars(select(UsageRow).where(UsageRow.end.is_(None)))]

    def closed_totals(self) -> dict[str, dict[str, float]]:
        """GPU-seconds of every closed record: ``{"user": {name: s}, "group": {name: s}}``."""
        totals: dict[str, dict[str, float]] = {"user": {}, "group": {}}
        with self.db.read() as session:
            for row in session.scalars(select(UsageTotalRow)):
                totals.setdefault(row.kind, {})[row.name] = row.gpu_seconds
        return totals
