"""``DatabaseOpener``: the hub's connection to gpuhub's tables, opened (and migrated) once, on first
use, off the event loop. ``StoreCalls``: how a service calls one of the stores (``db/``) on its own
worker thread."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime

from ..contract import utcnow
from ..db.database import Database
from ..worker import Worker


class DatabaseOpener:
    def __init__(self, db_url: str, database: Database | None = None, clock: Callable[[], datetime] = utcnow):
        self.db_url = db_url
        self.clock = clock
        self._database = database
        self._lock = asyncio.Lock()

    async def get(self) -> Database:
        if self._database is None:
            async with self._lock:
                if self._database is None:
                    self._database = await Worker("gpuhub-migrate").run(Database.open, self.db_url, self.clock)
        return self._database


class StoreCalls:
    """``await calls("method", *args)``: ``store_class(database).method(*args)`` on ``worker``, the
    store made once, when first called. A service holds one per store it uses, all on its own worker."""

    def __init__(self, database: DatabaseOpener, store_class, worker: Worker):
        self._database = database
        self._store_class = store_class
        self._worker = worker
        self._store = None

    async def __call__(self, method: str, *args):
        if self._store is None:
            self._store = self._store_class(await self._database.get())
        return await self._worker.run(getattr(self._store, method), *args)
