"""GPU allocations and the devices they hold (``AllocationStore``).

``allocate`` is the one serialised decision (see ``database``): it reads a ``policy.decide.Snapshot``
(the live holdings, the user's allocations and GPU-hours this week, the database's quota rules and
the classroom sessions), lets ``policy.decide`` place the request, and writes the allocation with a
usage record per device, all in one transaction. ``release`` closes both in one transaction.
"""

from __future__ import annotations

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from ..inventory.model import Inventory
from ..policy.accounting import device_share, week_start
from ..policy.allocator import Holding, Placement
from ..policy.decide import Decision, SiteRules, Snapshot, Start, decide
from ..policy.quotas import Held
from .database import Database
from .models import AllocationRow, DeviceRow, UsageRow
from .quotas import rules_in
from .records import Allocation
from .sessions import all_sessions
from .usage import close_usage, used_seconds_in


def as_allocation(row: AllocationRow) -> Allocation:
    return Allocation(
        id=row.id,
        username=row.username,
        server_name=row.server_name,
        profile=row.profile,
        mode=row.mode,
        uuids=tuple(d.uuid for d in row.devices),
        memory_bytes=max((d.memory_bytes for d in row.devices), default=0),
        created=row.created,
        session=row.session or "",
    )


def _held_on_other_servers(rows: list[AllocationRow], server_name: str) -> list[Held]:
    return [as_allocation(r).as_held() for r in rows if r.server_name != server_name]


def _holdings(session: Session) -> list[Holding]:
    rows = session.execute(
        select(DeviceRow.uuid, DeviceRow.mode, func.sum(DeviceRow.memory_bytes), func.count())
        .join(AllocationRow)
        .where(AllocationRow.released.is_(None))
        .group_by(DeviceRow.uuid, DeviceRow.mode)
    )
    return [Holding(uuid, mode, int(memory or 0), holders) for uuid, mode, memory, holders in rows]


def _live_of(session: Session, username: str) -> list[AllocationRow]:
    return session.scalars(
        select(AllocationRow).where(AllocationRow.username == username, AllocationRow.released.is_(None))
    ).all()


def _close(session: Session, row: AllocationRow, reason: str, now, at_last_seen: bool = False) -> None:
    row.released, row.release_reason = now, reason[:255]
    close_usage(session, row.id, reason, now, at_last_seen)


class AllocationStore:
    def __init__(self, db: Database):
        self.db = db

    def allocate(self, inventory: Inventory, start: Start, rules: SiteRules) -> Allocation | Decision:
        """Decide and record ``start``'s GPUs in one serialised transaction: the ``Allocation``, or
        the decision that placed nothing (``NoFitNow``, ``NeverFits``, ``Refused``). A live
        allocation of the same server (a leftover) is released first: a server holds one."""
        with self.db.serialised() as session:
            now = self.db.clock()
            mine = _live_of(session, start.username)
            for row in mine:
                if row.server_name == start.server_name:
                    _close(session, row, "superseded by a new start of the server", now)
            session.flush()
            snapshot = Snapshot(
                now=now,
                holdings=_holdings(session),
                held_elsewhere=_held_on_other_servers(mine, start.server_name),
                used_seconds=used_seconds_in(session, start.username, week_start(now, rules.week), now),
                database_rules=rules_in(session),
                sessions=all_sessions(session),
            )
            decision = decide(inventory, start, rules, snapshot)
            if not isinstance(decision, Placement):
                return decision
            row = AllocationRow(
                username=start.username,
                server_name=start.server_name,
                profile=start.profile,
                mode=start.request.mode,
                created=now,
                session=start.session,
            )
            row.devices = [DeviceRow(uuid=u, mode=start.request.mode, memory_bytes=decision.memory_bytes) for u in decision.uuids]
            session.add(row)
            session.flush()
            for uuid in decision.uuids:
                session.add(
                    UsageRow(
                        allocation_id=row.id,
                        username=start.username,
                        groups=sorted(start.groups),
                        server_name=start.server_name,
                        profile=start.profile,
                        device=uuid,
                        share=device_share(inventory, uuid, start.request.mode, decision.memory_bytes),
                        start=now,
                        last_seen=now,
                    )
                )
            return as_allocation(row)

    def release(self, allocation_id: int, reason: str, at_last_seen: bool = False) -> bool:
        """Mark an allocation released and close its usage (idempotent); True if this call released it.
        ``at_last_seen``: its usage ends when the hub last saw the server running (a restart found it gone)."""
        with self.db.serialised() as session:
            row = session.get(AllocationRow, allocation_id)
            if row is None or row.released is not None:
                return False
            _close(session, row, reason, self.db.clock(), at_last_seen)
            return True

    def seen(self, allocation_id: int) -> bool:
        """The hub saw this allocation's server running now: True, and its usage counts at least to
        here, if the allocation is live; False if it was released (one transaction per poll)."""
        with self.db.session.begin() as session:
            row = session.get(AllocationRow, allocation_id)
            if row is None or row.released is not None:
                return False
            session.execute(
                update(UsageRow)
                .where(UsageRow.allocation_id == allocation_id, UsageRow.end.is_(None))
                .values(last_seen=self.db.clock())
            )
            return True

    def live(self) -> list[Allocation]:
        with self.db.read() as session:
            rows = session.scalars(select(AllocationRow).where(AllocationRow.released.is_(None)).order_by(AllocationRow.id))
            return [as_allocation(r) for r in rows]

    def holdings(self) -> list[Holding]:
        with self.db.read() as session:
            return _holdings(session)

    def held_elsewhere(self, username: str, server_name: str) -> list[Held]:
        """What ``username`` holds on servers other than ``server_name``: what a start of that server
        is checked against (the rule ``allocate`` applies inside its transaction)."""
        with self.db.read() as session:
            return _held_on_other_servers(_live_of(session, username), server_name)
