"""The hub's background task: running GPU servers against the weekly GPU-hours, and the metrics.

Every ``[accounting] check_interval`` seconds: for each user holding GPUs, their GPU-hours this week
against their ``gpu_hours_per_week`` (``accounting.running_verdict``): a warning (a notice the user's
JupyterLab shows, and the hub log) ahead of the end and at it, and with ``running_servers = "stop"``
the release of their allocations once the hours are used up: the hub's next poll of each server
then stops it (files kept), as for an admin's force-free. The Prometheus snapshot is refreshed every
15 seconds (or every ``check_interval``, if shorter).
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime

from .accounting import running_verdict
from .admin import metrics
from .hublog import log
from .quotas import resolve


METRICS_SECONDS = 15  # the Prometheus snapshot is at most this old


@dataclass(frozen=True)
class Notice:
    level: str  # "warn" or "stop"
    message: str
    since: datetime


class Watch:
    def __init__(self, pool):
        self.pool = pool
        self.notices: dict[str, Notice] = {}  # per username: the weekly GPU-hours
        self.posted: dict[tuple[str, str], Notice] = {}  # per (username, source): from services (reclaim)
        self.snapshot: dict | None = None
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        """Start the loop once per hub process (idempotent)."""
        if self._task is None:
            metrics.register(lambda: self.snapshot)
            self._task = asyncio.ensure_future(self._forever())

    async def _forever(self) -> None:
        await self.pool.open()
        interval = self.pool.settings.accounting.check_interval
        rounds = 0
        while True:
            try:
                if rounds % max(1, round(interval / METRICS_SECONDS)) == 0:
                    await self.check_running()
                await self.refresh_metrics()
            except Exception:  # one failed round (the database away, say) must not end the loop
                log.exception("gpuhub watch: a check of running servers failed; trying again")
            rounds += 1
            await asyncio.sleep(min(interval, METRICS_SECONDS))

    def post(self, username: str, source: str, level: str, message: str) -> None:
        now = self.pool.store.clock()
        old = self.posted.get((username, source))
        self.posted[(username, source)] = Notice(level, message, old.since if old and old.message == message else now)

    def clear(self, username: str, source: str) -> None:
        self.posted.pop((username, source), None)

    def notices_of(self, username: str) -> list[tuple[str, Notice]]:
        """(source, notice) for ``username``: the weekly GPU-hours first, then the services'."""
        found = [("gpu-hours", self.notices[username])] if username in self.notices else []
        return found + sorted(((source, n) for (user, source), n in self.posted.items() if user == username), key=lambda e: e[0])

    async def check_once(self) -> None:
        await self.check_running()
        await self.refresh_metrics()

    async def check_running(self) -> None:
        pool, acc = self.pool, self.pool.settings.accounting
        store = pool.store
        now = store.clock()
        rules = await pool.quota_rules()  # once per round, for every user
        per_user: dict[str, dict] = defaultdict(lambda: {"rate": 0.0, "groups": set(), "allocations": set()})
        for record in await pool.run(store.open_usage):
            entry = per_user[record.username]
            entry["rate"] += record.share
            entry["groups"].update(record.groups)
            entry["allocations"].add(record.allocation_id)
        for username in list(self.notices):
            if username not in per_user:
                del self.notices[username]  # nothing running any more
        for username, entry in per_user.items():
            limit = resolve(username, sorted(entry["groups"]), rules).gpu_hours_per_week.value
            used = 0.0
            if limit is not None:
                used = await pool.used_this_week(username) / 3600
            verdict = running_verdict(used, limit, entry["rate"], acc.warn_before, acc.running_servers, acc.week)
            if verdict is None:
                self.notices.pop(username, None)
                continue
            level, message = verdict
            if self.notices.get(username, Notice("", "", now)).message != message:
                log.warning("gpuhub watch: %s: %s", username, message)
            self.notices[username] = Notice(level, message, now)
            if level == "stop":
                for allocation_id in sorted(entry["allocations"]):
                    if await pool.release(allocation_id, "weekly GPU-hours used up"):
                        log.warning("gpuhub watch: %s: released allocation %d (weekly GPU-hours used up); the next poll stops its server", username, allocation_id)

    async def refresh_metrics(self) -> None:
        pool = self.pool
        store = pool.store
        inventory = await pool.inventory()
        live = await pool.run(store.live)
        closed = await pool.run(store.closed_seconds)
        open_records = await pool.run(store.open_usage)
        acc = pool.settings.accounting
        self.snapshot = metrics.snapshot(
            inventory, live, pool.queue.lines(), closed, open_records, store.clock(), acc.metrics_max_users, acc.metrics_max_groups
        )
