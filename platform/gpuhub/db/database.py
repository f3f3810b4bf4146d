"""The connection to the hub's database and its transactions (``Database``).

Every decision over GPUs (an allocation, a release) runs in one transaction that no other decision
can interleave with (``Database.serialised``): ``BEGIN IMMEDIATE`` on SQLite, a transaction-scoped
advisory lock on PostgreSQL. Inside it the live holdings are read, the policy decides, and the
result is written, so concurrent spawns never share an exclusive GPU or overfill a shared one. The
schema is created and upgraded by alembic (``migrations/``), with its own version table.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime

from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from ..contract import utcnow

ADVISORY_LOCK_KEY = 0x67707568  # "gpuh": serialises placement decisions on PostgreSQL
READ_ONLY = "gpuhub_read_only"  # the execution option of Database.read's connections


def make_engine(db_url: str) -> Engine:
    """An engine whose transactions can serialise placement decisions (see the module docstring)."""
    if db_url.startswith("sqlite"):
        engine = create_engine(db_url, connect_args={"timeout": 60, "check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _autocommit_driver(dbapi_connection, _record):
            dbapi_connection.isolation_level = None  # SQLAlchemy emits BEGIN itself (below)
            # write-ahead log: a commit appends to one file and syncs it once (the rollback journal
            # created, synced and deleted a file per commit), and reads do not block the writer.
            # FULL: every commit is on disk before it returns, as with the rollback journal
            dbapi_connection.execute("PRAGMA journal_mode=WAL")
            dbapi_connection.execute("PRAGMA synchronous=FULL")

        @event.listens_for(engine, "begin")
        def _begin(conn):
            # a transaction that may write takes the write lock first (before reading holdings); a read
            # (Database.read) does not, so reads on the services' threads never queue behind each other
            conn.exec_driver_sql("BEGIN" if conn.get_execution_options().get(READ_ONLY) else "BEGIN IMMEDIATE")

        return engine
    return create_engine(db_url, pool_pre_ping=True)


MIGRATIONS = os.path.join(os.path.dirname(__file__), "migrations")


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Create or upgrade gpuhub's tables to the newest migration (or to ``revision``: the upgrade
    tests start databases at every earlier one)."""
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", MIGRATIONS)
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)


class Database:
    """gpuhub's tables through one SQLAlchemy engine, and the clock every record's time comes from."""

    def __init__(self, engine: Engine, clock: Callable[[], datetime] = utcnow):
        self.engine = engine
        self.clock = clock
        self.session = sessionmaker(engine, expire_on_commit=False)  # ``with db.session.begin()``: a change
        self._reads = sessionmaker(engine.execution_options(**{READ_ONLY: True}), expire_on_commit=False)

    @classmethod
    def open(cls, db_url: str, clock: Callable[[], datetime] = utcnow) -> Database:
        """Connect and bring the schema to the newest migration (blocking: call it off the event loop)."""
        engine = make_engine(db_url)
        upgrade(engine)
        return cls(engine, clock)

    @contextmanager
    def read(self) -> Iterator[Session]:
        """A transaction that only reads (on SQLite: no write lock)."""
        with self._reads() as session:
            yield session

    @contextmanager
    def serialised(self) -> Iterator[Session]:
        """A transaction no other serialised one interleaves with (committed at the end)."""
        with self.session.begin() as session:
            if self.engine.dialect.name == "postgresql":
                session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": ADVISORY_LOCK_KEY})
            # SQLite: every transaction began with BEGIN IMMEDIATE
            yield session
