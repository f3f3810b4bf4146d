"""``DatabaseOpener``: the hub's connection to gpuhub's tables, opened (and migrated) once, on first
use, off the event loop. Every service asks it for the ``db.database.Database``."""

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
