"""Usage records (one per device of an allocation) and the running totals of the closed ones.

A record is opened in the transaction that places its allocation and closed in the one that releases
it (``close_usage``), which also adds its GPU-seconds to ``gpuhub_usage_totals`` (per user, and per
group of the user at the start). The metrics read those totals and the open records only, so their
cost does not grow with the site's history. The arithmetic is ``policy.accounting``.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import and_, bindparam, insert, or_, select, update
from sqlalchemy.orm import Session

from ..policy.accounting import UsageRecord, seconds_held
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


_U, _T = UsageRow.__table__, UsageTotalRow.__table__
_OPEN_OF = select(_U.c.id, _U.c.username, _U.c.groups, _U.c.share, _U.c.start, _U.c.last_seen).where(
    _U.c.allocation_id == bindparam("allocation_id"), _U.c.end.is_(None)
)
_CLOSE = update(_U).where(_U.c.id == bindparam("usage_id")).values(end=bindparam("at"), gpu_seconds=bindparam("seconds"), end_reason=bindparam("reason"))
_ADD_TO_TOTAL = (
    update(_T)
    .where(_T.c.kind == bindparam("total_kind"), _T.c.name == bindparam("total_name"))
    .values(gpu_seconds=_T.c.gpu_seconds + bindparam("seconds"))
)
# a record that overlaps [since, until): the one condition of the hours on every decision's path
# (plain rows, built once) and of the accounting's records
_OVERLAPS = and_(_U.c.start < bindparam("until"), or_(_U.c.end.is_(None), _U.c.end > bindparam("since")))
_USED = select(_U.c.start, _U.c.end, _U.c.share).where(_U.c.username == bindparam("username"), _OVERLAPS)


def close_usage(session: Session, allocation_id: int, reason: str, now: datetime, at_last_seen: bool = False) -> None:
    """Close the allocation's open records (inside the releasing transaction): at ``now``, or
    (``at_last_seen``) at the last time the hub saw its server running; add their GPU-seconds to the
    totals. Plain statements built once: on every release's path."""
    conn, added = session.connection(), {}
    for usage_id, username, groups, share, start, last_seen in conn.execute(_OPEN_OF, {"allocation_id": allocation_id}).all():
        end = max(start, min(last_seen, now) if at_last_seen else now)
        seconds = seconds_held(start, end, share, start, end)
        conn.execute(_CLOSE, {"usage_id": usage_id, "at": end, "seconds": seconds, "reason": reason[:255]})
        for key in [("user", username), *(("group", g) for g in groups or ())]:
            added[key] = added.get(key, 0.0) + seconds
    for (kind, name), seconds in added.items():
        if not conn.execute(_ADD_TO_TOTAL, {"total_kind": kind, "total_name": name, "seconds": seconds}).rowcount:
            conn.execute(insert(_T), {"kind": kind, "name": name, "gpu_seconds": seconds})


def used_seconds_in(session: Session, username: str, since: datetime, now: datetime) -> float:
    """GPU-seconds ``username`` used from ``since`` to ``now`` (open records counted to ``now``)."""
    rows = session.connection().execute(_USED, {"username": username, "since": since, "until": now})
    return sum(seconds_held(start, end, share, since, now) for start, end, share in rows)


class UsageStore:
    def __init__(self, db: Database):
        self.db = db

    def used_seconds(self, username: str, since: datetime) -> float:
        """GPU-seconds ``username`` used from ``since`` to now (open records counted to now)."""
        with self.db.read() as session:
            return used_seconds_in(session, username, since, self.db.clock())

    def records(self, since: datetime, until: datetime, username: str | None = None) -> list[UsageRecord]:
        """Every usage record that overlaps [since, until) (only ``username``'s if given), oldest first."""
        query = select(UsageRow).where(_OVERLAPS)
        if username is not None:
            query = query.where(UsageRow.username == username)
        with self.db.read() as session:
            rows = session.scalars(query.order_by(UsageRow.start, UsageRow.id), {"since": since, "until": until})
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
