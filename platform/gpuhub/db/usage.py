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
from ..policy.efficiency import sampled
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
        observed_seconds=row.observed_seconds or 0.0,
        busy_seconds=row.busy_seconds or 0.0,
        activity_simulated=bool(row.activity_simulated),
    )


_U, _T = UsageRow.__table__, UsageTotalRow.__table__
_OPEN_OF = select(
    _U.c.id, _U.c.username, _U.c.groups, _U.c.share, _U.c.start, _U.c.last_seen, _U.c.observed_seconds, _U.c.busy_seconds
).where(
    _U.c.allocation_id == bindparam("allocation_id"), _U.c.end.is_(None)
)
_CLOSE = update(_U).where(_U.c.id == bindparam("usage_id")).values(end=bindparam("at"), gpu_seconds=bindparam("seconds"), end_reason=bindparam("reason"))
_ADD_TO_TOTAL = (
    update(_T)
    .where(_T.c.kind == bindparam("total_kind"), _T.c.name == bindparam("total_name"))
    .values(
        gpu_seconds=_T.c.gpu_seconds + bindparam("seconds"),
        observed_seconds=_T.c.observed_seconds + bindparam("observed"),
        busy_seconds=_T.c.busy_seconds + bindparam("busy"),
    )
)
_SAMPLED_OF = select(_U.c.id, _U.c.start, _U.c.share, _U.c.sampled_at).where(
    _U.c.allocation_id == bindparam("allocation_id"), _U.c.device == bindparam("device"), _U.c.end.is_(None)
)
_SAMPLE = (
    update(_U)
    .where(_U.c.id == bindparam("usage_id"))
    .values(
        observed_seconds=_U.c.observed_seconds + bindparam("observed"),
        busy_seconds=_U.c.busy_seconds + bindparam("busy"),
        sampled_at=bindparam("at"),
        activity_simulated=bindparam("simulated"),
    )
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
    rows = conn.execute(_OPEN_OF, {"allocation_id": allocation_id}).all()
    for usage_id, username, groups, share, start, last_seen, observed, busy in rows:
        end = max(start, min(last_seen, now) if at_last_seen else now)
        seconds = seconds_held(start, end, share, start, end)
        conn.execute(_CLOSE, {"usage_id": usage_id, "at": end, "seconds": seconds, "reason": reason[:255]})
        for key in [("user", username), *(("group", g) for g in groups or ())]:
            total = added.setdefault(key, [0.0, 0.0, 0.0])
            total[0], total[1], total[2] = total[0] + seconds, total[1] + (observed or 0.0), total[2] + (busy or 0.0)
    for (kind, name), (seconds, observed, busy) in added.items():
        values = {"seconds": seconds, "observed": observed, "busy": busy}
        if not conn.execute(_ADD_TO_TOTAL, {"total_kind": kind, "total_name": name, **values}).rowcount:
            conn.execute(insert(_T), {"kind": kind, "name": name, "gpu_seconds": seconds, "observed_seconds": observed, "busy_seconds": busy})


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

    def record_activity(self, samples: list[tuple[int, str, bool]], simulated: bool, max_gap: float) -> int:
        """One reading of the held devices, ``(allocation id, device UUID, busy)`` each: the time since
        each open record's previous reading (at most ``max_gap`` seconds) counted as measured, and as
        busy where it was, times its share (``policy.efficiency``); in one transaction. How many
        records it reached."""
        reached = 0
        with self.db.session.begin() as session:
            conn, now = session.connection(), self.db.clock()
            for allocation_id, device, busy in samples:
                for usage_id, start, share, last in conn.execute(_SAMPLED_OF, {"allocation_id": allocation_id, "device": device}).all():
                    seconds = sampled(last or start, now, max_gap) * share
                    values = {"observed": seconds, "busy": seconds if busy else 0.0, "at": now, "simulated": simulated}
                    conn.execute(_SAMPLE, {"usage_id": usage_id, **values})
                    reached += 1
        return reached

    def closed_activity(self) -> dict[str, dict[str, tuple[float, float]]]:
        """Measured and busy GPU-seconds of every closed record: ``{"user": {name: (measured, busy)}, "group": ...}``."""
        activity: dict[str, dict[str, tuple[float, float]]] = {"user": {}, "group": {}}
        with self.db.read() as session:
            for row in session.scalars(select(UsageTotalRow)):
                activity.setdefault(row.kind, {})[row.name] = (row.observed_seconds or 0.0, row.busy_seconds or 0.0)
        return activity

    def closed_totals(self) -> dict[str, dict[str, float]]:
        """GPU-seconds of every closed record: ``{"user": {name: s}, "group": {name: s}}``."""
        totals: dict[str, dict[str, float]] = {"user": {}, "group": {}}
        with self.db.read() as session:
            for row in session.scalars(select(UsageTotalRow)):
                totals.setdefault(row.kind, {})[row.name] = row.gpu_seconds
        return totals
