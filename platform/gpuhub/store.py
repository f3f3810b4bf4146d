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
from sqlalchemy import BigInteger, DateTime, ForeignKey, Integer, Unicode, create_engine, event, select, text
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship, sessionmaker

from .allocator import GpuRequest, Holding, NeverFits, NoFitNow, Placement, place
from .clock import utcnow
from .inventory import Inventory

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
    devices: Mapped[list[DeviceRow]] = relationship(back_populates="allocation", cascade="all, delete-orphan")


class DeviceRow(Base):
    __tablename__ = "gpuhub_allocation_devices"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    allocation_id: Mapped[int] = mapped_column(ForeignKey("gpuhub_allocations.id", ondelete="CASCADE"))
    uuid: Mapped[str] = mapped_column(Unicode(96), index=True)
    mode: Mapped[str] = mapped_column(Unicode(16))
    memory_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    allocation: Mapped[AllocationRow] = relationship(back_populates="devices")


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
    )


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
            select(DeviceRow.uuid, DeviceRow.mode, DeviceRow.memory_bytes)
            .join(AllocationRow)
            .where(AllocationRow.released.is_(None))
        )
        return [Holding(uuid, mode, memory) for uuid, mode, memory in rows]

    def allocate(
        self,
        inventory: Inventory,
        request: GpuRequest,
        username: str,
        server_name: str,
        profile: str,
        max_shares: int = 4,
    ) -> Allocation | NoFitNow | NeverFits:
        """Decide and record in one serialised transaction."""
        with self.session.begin() as session:
            self._serialise(session)
            decision = place(inventory, self._holdings(session), request, max_shares)
            if not isinstance(decision, Placement):
                return decision
            row = AllocationRow(
                username=username, server_name=server_name, profile=profile, mode=request.mode, created=self.clock()
            )
            row.devices = [DeviceRow(uuid=u, mode=request.mode, memory_bytes=decision.memory_bytes) for u in decision.uuids]
            session.add(row)
            session.flush()
            return _as_allocation(row)

    def release(self, allocation_id: int, reason: str) -> bool:
        """Mark an allocation released (idempotent); True if this call released it."""
        with self.session.begin() as session:
            row = session.get(AllocationRow, allocation_id)
            if row is None or row.released is not None:
                return False
            row.released = self.clock()
            row.release_reason = reason[:255]
            return True

    def live(self) -> list[Allocation]:
        with self.session() as session:
            rows = session.scalars(select(AllocationRow).where(AllocationRow.released.is_(None)).order_by(AllocationRow.id))
            return [_as_allocation(r) for r in rows]
