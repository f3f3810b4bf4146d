"""gpuhub's database: GPU allocations and the devices they hold, beside JupyterHub's own tables.

Every placement decision runs in one transaction that no other decision can interleave with:
``BEGIN IMMEDIATE`` on SQLite, a transaction-scoped advisory lock on PostgreSQL. Inside it the live
holdings are read, ``allocator.place`` decides, and the allocation is written, so concurrent spawns
never share an exclusive GPU or overfill a shared one. The schema is created and upgraded by
alembic (``gpuhub/migrations``), with its own version table.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    Unicode,
    UniqueConstraint,
    create_engine,
    delete,
    event,
    func,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship, sessionmaker

from .accounting import UsageRecord, device_share, gpu_seconds
from .allocator import GpuRequest, Holding, NeverFits, NoFitNow, Placement, place
from .clock import utcnow
from .inventory import Inventory
from .quotas import Held, QuotaRule, rule_from

VERSION_TABLE = "gpuhub_alembic_version"
ADVISORY_LOCK_KEY = 0x67707568  # "gpuh": serialises placement decisions on PostgreSQL


class Base(DeclarativeBase):
    pass


class AllocationRow(Base):
    __tablename__ = "gpuhub_allocations"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(Unicode(255))
    server_name: Mapped[str] = mapped_column(Unicode(255), default="")
    profile: Mapped[str] = mapped_column(Unicode(63))
    mode: Mapped[str] = mapped_column(Unicode(16))
    created: Mapped[datetime] = mapped_column(DateTime)
    released: Mapped[datetime | None] = mapped_column(DateTime, nullable=True, index=True)
    release_reason: Mapped[str] = mapped_column(Unicode(255), default="")
    session: Mapped[str] = mapped_column(Unicode(63), default="")  # the classroom session it was made for
    devices: Mapped[list[DeviceRow]] = relationship(back_populates="allocation", cascade="all, delete-orphan")


class DeviceRow(Base):
    __tablename__ = "gpuhub_allocation_devices"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    allocation_id: Mapped[int] = mapped_column(ForeignKey("gpuhub_allocations.id", ondelete="CASCADE"))
    uuid: Mapped[str] = mapped_column(Unicode(96), index=True)
    mode: Mapped[str] = mapped_column(Unicode(16))
    memory_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    allocation: Mapped[AllocationRow] = relationship(back_populates="devices")


class QuotaRow(Base):
    __tablename__ = "gpuhub_quotas"
    __table_args__ = (UniqueConstraint("scope", "name", name="uq_gpuhub_quotas_scope_name"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    scope: Mapped[str] = mapped_column(Unicode(16))
    name: Mapped[str] = mapped_column(Unicode(255), default="")
    max_gpus: Mapped[int | None] = mapped_column(Integer, nullable=True)
    max_shared_slices: Mapped[int | None] = mapped_column(Integer, nullable=True)
    gpu_hours_per_week: Mapped[float | None] = mapped_column(Float, nullable=True)
    max_memory: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    max_cpus: Mapped[float | None] = mapped_column(Float, nullable=True)
    profiles: Mapped[list | None] = mapped_column(JSON, nullable=True)
    updated: Mapped[datetime] = mapped_column(DateTime)


class UsageRow(Base):
    """One device of one allocation, for accounting (see ``gpuhub.accounting``)."""

    __tablename__ = "gpuhub_usage"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    allocation_id: Mapped[int] = mapped_column(ForeignKey("gpuhub_allocations.id", ondelete="CASCADE"), index=True)
    username: Mapped[str] = mapped_column(Unicode(255), index=True)
    groups: Mapped[list] = mapped_column(JSON)
    server_name: Mapped[str] = mapped_column(Unicode(255), default="")
    profile: Mapped[str] = mapped_column(Unicode(63))
    device: Mapped[str] = mapped_column(Unicode(96))
    share: Mapped[float] = mapped_column(Float)
    start: Mapped[datetime] = mapped_column(DateTime, index=True)
    end: Mapped[datetime | None] = mapped_column(DateTime, nullable=True, index=True)
    last_seen: Mapped[datetime] = mapped_column(DateTime)
    gpu_seconds: Mapped[float | None] = mapped_column(Float, nullable=True)
    end_reason: Mapped[str] = mapped_column(Unicode(255), default="")


def _as_record(row: UsageRow) -> UsageRecord:
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


DeviceLimits = tuple[frozenset[str] | None, frozenset[str]]  # (only these, if not None; never these)


@dataclass(frozen=True)
class Refused:
    """The request is within what the pool has, but over the user's quota (``message`` says which)."""

    message: str


@dataclass(frozen=True)
class Allocation:
    id: int
    username: str
    server_name: str
    profile: str
    mode: str
    uuids: tuple[str, ...]
    memory_bytes: int
    created: datetime
    session: str = ""

    def as_held(self) -> Held:
        """What it counts against its user's quota."""
        return Held(self.mode, len(self.uuids))


def _as_allocation(row: AllocationRow) -> Allocation:
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
    return [_as_allocation(r).as_held() for r in rows if r.server_name != server_name]


def make_engine(db_url: str) -> Engine:
    """An engine whose transactions can serialise placement decisions (see the module docstring)."""
    if db_url.startswith("sqlite"):
        engine = create_engine(db_url, connect_args={"timeout": 60, "check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _autocommit_driver(dbapi_connection, _record):
            dbapi_connection.isolation_level = None  # SQLAlchemy emits BEGIN itself (below)

        @event.listens_for(engine, "begin")
        def _begin_immediate(conn):
            conn.exec_driver_sql("BEGIN IMMEDIATE")  # take the write lock before reading holdings

        return engine
    return create_engine(db_url, pool_pre_ping=True)


def upgrade(engine: Engine) -> None:
    """Create or upgrade gpuhub's tables to the newest migration."""
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", os.path.join(os.path.dirname(__file__), "migrations"))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")


class Store:
    def __init__(self, engine: Engine, clock: Callable[[], datetime] = utcnow):
        self.engine = engine
        self.clock = clock
        self.session = sessionmaker(engine, expire_on_commit=False)

    @classmethod
    def from_url(cls, db_url: str, clock: Callable[[], datetime] = utcnow) -> Store:
        engine = make_engine(db_url)
        upgrade(engine)
        return cls(engine, clock)

    def _serialise(self, session: Session) -> None:
        if self.engine.dialect.name == "postgresql":
            session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": ADVISORY_LOCK_KEY})
        # SQLite: the transaction began with BEGIN IMMEDIATE

    @staticmethod
    def _holdings(session: Session) -> list[Holding]:
        rows = session.execute(
            select(DeviceRow.uuid, DeviceRow.mode, func.sum(DeviceRow.memory_bytes), func.count())
            .join(AllocationRow)
            .where(AllocationRow.released.is_(None))
            .group_by(DeviceRow.uuid, DeviceRow.mode)
        )
        return [Holding(uuid, mode, int(memory or 0), holders) for uuid, mode, memory, holders in rows]

    @staticmethod
    def _live_of(session: Session, username: str) -> list[AllocationRow]:
        return session.scalars(
            select(AllocationRow).where(AllocationRow.username == username, AllocationRow.released.is_(None))
        ).all()

    def held_elsewhere(self, username: str, server_name: str) -> list[Held]:
        """What ``username`` holds on servers other than ``server_name``: what a start of that server
        is checked against (the same rule ``allocate`` applies inside its transaction)."""
        with self.session() as session:
            return _held_on_other_servers(self._live_of(session, username), server_name)

    def holdings(self) -> list[Holding]:
        with self.session() as session:
            return self._holdings(session)

    def allocate(
        self,
        inventory: Inventory,
        request: GpuRequest,
        username: str,
        server_name: str,
        profile: str,
        max_shares: int = 4,
        admit: Callable[[list[Held], float], str | None] | None = None,
        groups: tuple[str, ...] = (),
        usage_since: datetime | None = None,
        session_name: str = "",
        devices_for: Callable[[Session, datetime], DeviceLimits] | None = None,
    ) -> Allocation | NoFitNow | NeverFits | Refused:
        """Decide and record in one serialised transaction, with a usage record per device.

        ``admit`` gets what the user holds on their other servers (``quotas.Held``) and the
        GPU-seconds they used since ``usage_since``, and returns a refusal message or None: the
        quota is checked against the same snapshot the placement uses. ``devices_for`` reads, in the
        same transaction, which devices this start may use (classroom reservations; see
        ``sessionstore.device_limits``). A live allocation of the same server (a leftover) is released
        first: a server holds one."""
        with self.session.begin() as session:
            self._serialise(session)
            now = self.clock()
            mine = self._live_of(session, username)
            for row in mine:
                if row.server_name == server_name:
                    self._close(session, row, "superseded by a new start of the server", now)
            session.flush()
            if admit is not None:
                used = self._used_seconds(session, username, usage_since or now, now)
                message = admit(_held_on_other_servers(mine, server_name), used)
                if message:
                    return Refused(message)
            holdings = self._holdings(session)
            usable = inventory.restricted(*devices_for(session, now)) if devices_for is not None else inventory
            decision = place(usable, holdings, request, max_shares)
            if isinstance(decision, NeverFits) and usable is not inventory:
                if session_name:  # the session's own devices can never hold its profile: the session is wrong
                    return NeverFits(f"{decision.reason} (among the devices reserved for session {session_name!r})")
                if not isinstance(place(inventory, holdings, request, max_shares), NeverFits):
                    return NoFitNow("the devices it needs are reserved for a classroom session now")
            if not isinstance(decision, Placement):
                return decision
            inventory = usable
            row = AllocationRow(
                username=username,
                server_name=server_name,
                profile=profile,
                mode=request.mode,
                created=now,
                session=session_name,
            )
            row.devices = [DeviceRow(uuid=u, mode=request.mode, memory_bytes=decision.memory_bytes) for u in decision.uuids]
            session.add(row)
            session.flush()
            for uuid in decision.uuids:
                session.add(
                    UsageRow(
                        allocation_id=row.id,
                        username=username,
                        groups=sorted(groups),
                        server_name=server_name,
                        profile=profile,
                        device=uuid,
                        share=device_share(inventory, uuid, request.mode, decision.memory_bytes),
                        start=now,
                        last_seen=now,
                    )
                )
            return _as_allocation(row)

    @staticmethod
    def _close(session: Session, row: AllocationRow, reason: str, now: datetime, at_last_seen: bool = False) -> None:
        """Release an allocation and close its usage records: at ``now``, or (``at_last_seen``) at the
        last time the hub saw its server running."""
        row.released, row.release_reason = now, reason[:255]
        for usage in session.scalars(select(UsageRow).where(UsageRow.allocation_id == row.id, UsageRow.end.is_(None))):
            usage.end = max(usage.start, min(usage.last_seen, now) if at_last_seen else now)
            usage.gpu_seconds = gpu_seconds(_as_record(usage), usage.start, usage.end)
            usage.end_reason = reason[:255]

    def release(self, allocation_id: int, reason: str, at_last_seen: bool = False) -> bool:
        """Mark an allocation released and close its usage (idempotent); True if this call released it."""
        with self.session.begin() as session:
            row = session.get(AllocationRow, allocation_id)
            if row is None or row.released is not None:
                return False
            self._close(session, row, reason, self.clock(), at_last_seen)
            return True

    def seen(self, allocation_id: int) -> bool:
        """The hub saw this allocation's server running now: True, and its usage counts at least to
        here, if the allocation is live; False if it was released (one transaction per poll)."""
        with self.session.begin() as session:
            row = session.get(AllocationRow, allocation_id)
            if row is None or row.released is not None:
                return False
            session.execute(
                update(UsageRow)
                .where(UsageRow.allocation_id == allocation_id, UsageRow.end.is_(None))
                .values(last_seen=self.clock())
            )
            return True

    def live(self) -> list[Allocation]:
        with self.session() as session:
            rows = session.scalars(select(AllocationRow).where(AllocationRow.released.is_(None)).order_by(AllocationRow.id))
            return [_as_allocation(r) for r in rows]

    # --- usage records (accounting) -------------------------------------------------------------
    @staticmethod
    def _overlapping(since: datetime, until: datetime):
        return select(UsageRow).where(UsageRow.start < until, or_(UsageRow.end.is_(None), UsageRow.end > since))

    def _used_seconds(self, session: Session, username: str, since: datetime, now: datetime) -> float:
        rows = session.scalars(self._overlapping(since, now).where(UsageRow.username == username))
        return sum(gpu_seconds(_as_record(r), since, now) for r in rows)

    def used_seconds(self, username: str, since: datetime) -> float:
        """GPU-seconds ``username`` used from ``since`` to now (open records counted to now)."""
        with self.session() as session:
            return self._used_seconds(session, username, since, self.clock())

    def usage(self, since: datetime, until: datetime) -> list[UsageRecord]:
        """Every usage record that overlaps [since, until), oldest first."""
        with self.session() as session:
            rows = session.scalars(self._overlapping(since, until).order_by(UsageRow.start, UsageRow.id))
            return [_as_record(r) for r in rows]

    def open_usage(self) -> list[UsageRecord]:
        with self.session() as session:
            return [_as_record(r) for r in session.scalars(select(UsageRow).where(UsageRow.end.is_(None)))]

    def closed_seconds(self) -> list[tuple[str, tuple[str, ...], float]]:
        """(user, groups, GPU-seconds) of every closed record (the Prometheus counters' history)."""
        with self.session() as session:
            rows = session.execute(
                select(UsageRow.username, UsageRow.groups, UsageRow.gpu_seconds).where(UsageRow.end.is_not(None))
            )
            return [(u, tuple(g or ()), float(s or 0)) for u, g, s in rows]

    # --- quota rules set by admins (the internal API the admin pages and CLI build on) ------------
    def quota_rules(self) -> list[QuotaRule]:
        with self.session() as session:
            rows = session.scalars(select(QuotaRow).order_by(QuotaRow.scope, QuotaRow.name))
            return [rule_from(r.scope, r.name, r, origin="database") for r in rows]

    def set_quota(self, rule: QuotaRule) -> None:
        """Create or replace the database rule for ``rule.scope``/``rule.name``."""
        with self.session.begin() as session:
            row = session.scalars(select(QuotaRow).where(QuotaRow.scope == rule.scope, QuotaRow.name == rule.name)).first()
            if row is None:
                row = QuotaRow(scope=rule.scope, name=rule.name)
                session.add(row)
            row.max_gpus, row.max_shared_slices = rule.max_gpus, rule.max_shared_slices
            row.gpu_hours_per_week, row.max_memory, row.max_cpus = rule.gpu_hours_per_week, rule.max_memory, rule.max_cpus
            row.profiles = list(rule.profiles) if rule.profiles is not None else None
            row.updated = self.clock()

    def unset_quota(self, scope: str, name: str) -> bool:
        """Remove the database rule (the settings file's applies again); True if there was one."""
        with self.session.begin() as session:
            result = session.execute(delete(QuotaRow).where(QuotaRow.scope == scope, QuotaRow.name == name))
            return result.rowcount > 0
