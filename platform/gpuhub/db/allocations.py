"""GPU allocations and the devices they hold (``AllocationStore``).

``allocate`` is the one serialised decision (see ``database``): it reads a ``policy.decide.Snapshot``
(the live holdings, the user's allocations and GPU-hours this week, the database's quota rules and
the classroom sessions), lets ``policy.decide`` place the request, and writes the allocation with a
usage record per device, all in one transaction. ``release`` closes both in one transaction.

The live holdings (one row per device and mode) are what every decision reads. The store keeps them
between its transactions, with the number of ``gpuhub_allocation_version`` they were read at: each
transaction that changes which allocations are live raises that number (under the serialising lock),
so a decision reads the holdings again only when another store, or another process, changed them.
Every change to live allocations goes through this store.
"""

from __future__ import annotations

from sqlalchemy import bindparam, func, insert, select, update
from sqlalchemy.orm import Session, selectinload

from ..inventory.model import Inventory
from ..policy.accounting import device_share, week_start
from ..policy.allocator import Holding, Placement, change_holdings
from ..policy.decide import Decision, SiteRules, Snapshot, Start, decide, limits_hours
from ..policy.quotas import Held
from .database import Database
from .models import AllocationRow, AllocationVersionRow, DeviceRow, UsageRow
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
        borrowed=bool(row.borrowed),
    )


# The statements on every decision's path, built once: building one costs SQLAlchemy more than
# SQLite takes to run it. Plain rows, no ORM objects: the decision reads them and writes new rows.
_A, _D, _V = AllocationRow.__table__, DeviceRow.__table__, AllocationVersionRow.__table__
_HOLDINGS = (
    select(_D.c.uuid, _D.c.mode, func.sum(_D.c.memory_bytes), func.count())
    .select_from(_A.join(_D))
    .where(_A.c.released.is_(None))
    .group_by(_D.c.uuid, _D.c.mode)
)
_LIVE_OF = (
    select(_A.c.id, _A.c.server_name, _A.c.mode, func.count(_D.c.id))
    .select_from(_A.outerjoin(_D))
    .where(_A.c.username == bindparam("username"), _A.c.released.is_(None))
    .group_by(_A.c.id)
    .order_by(_A.c.id)
)
_DEVICES_OF = select(_D.c.uuid, _D.c.mode, _D.c.memory_bytes).where(_D.c.allocation_id == bindparam("allocation_id"))
_RELEASED = select(_A.c.released).where(_A.c.id == bindparam("allocation_id"))
_RELEASE = update(_A).where(_A.c.id == bindparam("allocation_id")).values(released=bindparam("at"), release_reason=bindparam("reason"))
_READ_VERSION = select(_V.c.version).where(_V.c.id == 1)
_RAISE_VERSION = update(_V).where(_V.c.id == 1).values(version=_V.c.version + 1)

Holdings = dict[tuple[str, str], Holding]  # (device UUID, mode) → its holding


def _held(session: Session) -> Holdings:
    rows = session.connection().execute(_HOLDINGS)
    return {(uuid, mode): Holding(uuid, mode, int(memory or 0), holders) for uuid, mode, memory, holders in rows}


def _devices_of(session: Session, allocation_id: int) -> list[tuple[str, str, int]]:
    """(UUID, mode, budget) of each device the allocation holds."""
    return [tuple(r) for r in session.connection().execute(_DEVICES_OF, {"allocation_id": allocation_id})]


def _version(session: Session) -> int | None:
    return session.connection().scalar(_READ_VERSION)  # None: no version row, nothing is kept


def _live_of(session: Session, username: str) -> list[tuple[int, str, Held]]:
    """(id, server name, what it counts against the quota) of each of ``username``'s live allocations."""
    rows = session.connection().execute(_LIVE_OF, {"username": username})
    return [(allocation_id, server, Held(mode, devices)) for allocation_id, server, mode, devices in rows]


def _held_on_other_servers(mine: list[tuple[int, str, Held]], server_name: str) -> list[Held]:
    return [held for _, server, held in mine if server != server_name]


def _close(session: Session, allocation_id: int, reason: str, now, at_last_seen: bool = False) -> None:
    session.connection().execute(_RELEASE, {"allocation_id": allocation_id, "at": now, "reason": reason[:255]})
    close_usage(session, allocation_id, reason, now, at_last_seen)


def _record(session: Session, inventory: Inventory, start: Start, placement: Placement, now) -> Allocation:
    """Write a placement: the allocation, its devices, and a usage record per device (plain inserts,
    on every placement's path: nothing in the transaction reads them back)."""
    conn, mode, budget = session.connection(), start.request.mode, placement.memory_bytes
    server = {"username": start.username, "server_name": start.server_name, "profile": start.profile}
    row = {**server, "mode": mode, "created": now, "session": start.session, "borrowed": placement.borrowed}
    allocation_id = conn.execute(insert(_A), row).inserted_primary_key[0]
    conn.execute(insert(_D), [{"allocation_id": allocation_id, "uuid": u, "mode": mode, "memory_bytes": budget} for u in placement.uuids])
    conn.execute(
        insert(UsageRow.__table__),
        [
            {
                **server,
                "allocation_id": allocation_id,
                "groups": sorted(start.groups),
                "device": u,
                "share": device_share(inventory, u, mode, budget),
                "start": now,
                "last_seen": now,
            }
            for u in placement.uuids
        ],
    )
    return Allocation(
        allocation_id, **server, mode=mode, uuids=placement.uuids, memory_bytes=budget, created=now, session=start.session,
        borrowed=placement.borrowed,
    )


class AllocationStore:
    def __init__(self, db: Database):
        self.db = db
        self._kept: tuple[int, Holdings] | None = None  # the live holdings at a version (module docstring)

    def _take_holdings(self, session: Session, version: int | None) -> Holdings:
        """The live holdings, for a serialised transaction that may change them: the kept ones if
        still current (none are kept until ``_keep`` hands them back), else read."""
        kept, self._kept = self._kept, None
        current = kept is not None and version is not None and kept[0] == version
        return kept[1] if current else _held(session)

    def _keep(self, version: int | None, held: Holdings) -> None:
        """Once committed: ``held`` is what the database holds at ``version``."""
        if version is not None:
            self._kept = (version, held)

    def allocate(self, inventory: Inventory, start: Start, rules: SiteRules, borrow_now: bool = False) -> Allocation | Decision:
        """Decide and record ``start``'s GPUs in one serialised transaction: the ``Allocation``, or
        the decision that placed nothing (``NoFitNow``, ``NeverFits``, ``Refused``). A live
        allocation of the same server (a leftover) is released first: a server holds one.
        ``borrow_now``: nobody else waits for its devices (``policy.decide.decide``)."""
        with self.db.serialised() as session:
            now, version = self.db.clock(), _version(session)
            held = self._take_holdings(session, version)
            mine = _live_of(session, start.username)
            superseded = [allocation_id for allocation_id, server, _ in mine if server == start.server_name]
            for allocation_id in superseded:
                _close(session, allocation_id, "superseded by a new start of the server", now)
                change_holdings(held, _devices_of(session, allocation_id), -1)
            session.flush()
            database_rules = rules_in(session)
            hours_limited = limits_hours([*rules.quota_rules, *database_rules])
            snapshot = Snapshot(
                now=now,
                holdings=list(held.values()),
                held_elsewhere=_held_on_other_servers(mine, start.server_name),
                used_seconds=used_seconds_in(session, start.username, week_start(now, rules.week), now) if hours_limited else None,
                database_rules=database_rules,
                sessions=all_sessions(session),
            )
            decision = decide(inventory, start, rules, snapshot, borrow_now)
            if superseded or isinstance(decision, Placement):
                session.connection().execute(_RAISE_VERSION)
                version = None if version is None else version + 1
            if isinstance(decision, Placement):
                decision = _record(session, inventory, start, decision, now)
                change_holdings(held, [(uuid, decision.mode, decision.memory_bytes) for uuid in decision.uuids], 1)
        self._keep(version, held)
        return decision

    def release(self, allocation_id: int, reason: str, at_last_seen: bool = False) -> bool:
        """Mark an allocation released and close its usage (idempotent); True if this call released it.
        ``at_last_seen``: its usage ends when the hub last saw the server running (a restart found it gone)."""
        with self.db.serialised() as session:
            version = _version(session)
            row = session.connection().execute(_RELEASED, {"allocation_id": allocation_id}).first()
            if row is None or row.released is not None:
                return False
            held = self._take_holdings(session, version)
            _close(session, allocation_id, reason, self.db.clock(), at_last_seen)
            change_holdings(held, _devices_of(session, allocation_id), -1)
            session.connection().execute(_RAISE_VERSION)
        self._keep(None if version is None else version + 1, held)
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
            live = select(AllocationRow).where(AllocationRow.released.is_(None)).order_by(AllocationRow.id)
            live = live.options(selectinload(AllocationRow.devices))  # the devices in one more query, not one per allocation
            return [as_allocation(r) for r in session.scalars(live)]

    def holdings(self) -> list[Holding]:
        with self.db.read() as session:
            return list(_held(session).values())

    def held_elsewhere(self, username: str, server_name: str) -> list[Held]:
        """What ``username`` holds on servers other than ``server_name``: what a start of that server
        is checked against (the rule ``allocate`` applies inside its transaction)."""
        with self.db.read() as session:
            return _held_on_other_servers(_live_of(session, username), server_name)
