"""The accounting service: usage records for reports, running servers against the weekly GPU-hours,
the utilisation readings (held against busy, who holds GPUs without using them), and the figures
behind the hub's ``/metrics``. It owns the hub's background loop (``run``).

Every ``[accounting] check_interval`` seconds (``check_running``): each user holding GPUs, their
GPU-hours this week against their ``gpu_hours_per_week`` (``policy.accounting.running_verdict``): a
notice their JupyterLab shows (and the hub log) ahead of the end and at it, and with
``running_servers = "stop"`` the release of their allocations once the hours are used up: the hub's
next poll of each server then stops it (files kept), as for an admin's force-free.

Every 15 seconds (or every ``check_interval``, if shorter; ``refresh_metrics``): a ``MetricsInputs``
snapshot for ``web.metrics``, so a scrape never reads the database. It reads the running totals of
closed usage (kept at release, ``db.usage``) and the open records only: its cost does not grow with
the site's history (``benchmarks/metrics_refresh.py``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from ..config.schema import Settings
from ..db.records import Allocation
from ..db.usage import UsageStore
from ..inventory.model import Inventory
from ..policy.accounting import WEEK, UsageRecord, held_now, running_verdict, week_start, weekly
from ..policy.efficiency import IdleHolder
from ..worker import Worker
from .database import DatabaseOpener, StoreCalls
from .log import log
from .notices import HUB_SOURCE, NoticeService

METRICS_SECONDS = 15  # the Prometheus figures are at most this old


@dataclass(frozen=True)
class MetricsInputs:
    """What the hub's figures are computed from at a scrape (``web.metrics``)."""

    inventory: Inventory
    live: list[Allocation]
    lines: dict[str, list[str]]
    closed_totals: dict[str, dict[str, float]]  # {"user": {name: GPU-seconds}, "group": {...}}
    open_records: list[UsageRecord]
    now: datetime
    max_users: int
    max_groups: int
    nodes: tuple = ()  # a Swarm's nodes (``policy.nodes.NodeStatus``); () on one host
    held_per_node: dict | None = None  # node id → devices held there
    closed_activity: dict | None = None  # {"user": {name: (measured, busy) GPU-seconds}, "group": ...}
    readings_simulated: bool | None = None  # the latest utilisation readings' kind (None: none yet)


class AccountingService:
    def __init__(self, settings: Settings, database: DatabaseOpener, allocation, quotas, notices: NoticeService, clock: Callable[[], datetime]):
        self.settings = settings
        self.metrics: MetricsInputs | None = None
        self._run = StoreCalls(database, UsageStore, Worker("gpuhub-accounting"))
        self._allocation = allocation
        self._quotas = quotas
        self._notices = notices
        self._clock = clock
        # the latest utilisation readings (``record_activity``): per allocation, when first read and last busy
        self._first_read: dict[int, datetime] = {}
        self._last_busy: dict[int, datetime] = {}
        self._read_at: dict[int, datetime] = {}
        self.readings_simulated: bool | None = None

    async def records(self, since: datetime, until: datetime, username: str | None = None) -> list[UsageRecord]:
        """Every usage record that overlaps [since, until) (the usage reports), or ``username``'s only."""
        return await self._run("records", since, until, username)

    async def weekly_hours(self, username: str, weeks: int) -> list[tuple[datetime, float]]:
        """``username``'s GPU-hours in each of the last ``weeks`` quota weeks, this one last."""
        now, week = self._clock(), self.settings.accounting.week
        since = week_start(now, week) - (weeks - 1) * WEEK
        return weekly(await self.records(since, now, username), now, week, weeks)

    # --- utilisation readings: held against busy ----------------------------------------------------------
    async def record_activity(self, samples: list[tuple[int, str, bool]], simulated: bool) -> int:
        """One reading of the held devices (the agent's, every ``[reclaim] check_interval``):
        ``(allocation, device, busy)`` each, into the usage records (``db.usage.record_activity``) and
        the list of servers holding GPUs without using them (``idle_holders``). How many records it reached."""
        now, interval = self._clock(), self.settings.reclaim.check_interval
        reached = await self._run("record_activity", samples, simulated, 2.0 * interval)
        self.readings_simulated = simulated
        busy: dict[int, bool] = {}
        for allocation, _, device_busy in samples:
            busy[allocation] = busy.get(allocation, False) or device_busy
        for allocation, any_busy in busy.items():
            self._first_read.setdefault(allocation, now)
            self._read_at[allocation] = now
            if any_busy:
                self._last_busy[allocation] = now
        for allocation in [a for a, at in self._read_at.items() if (now - at).total_seconds() > 3 * interval]:
            for kept in (self._first_read, self._last_busy, self._read_at):
                kept.pop(allocation, None)  # released, or no longer read
        return reached

    async def idle_holders(self) -> list[IdleHolder]:
        """Servers holding GPUs none of which was busy at their latest reading, the longest idle first."""
        interval = self.settings.reclaim.check_interval
        now, idle = self._clock(), []
        for a in await self._allocation.live():
            read_at = self._read_at.get(a.id)
            if read_at is None or (now - read_at).total_seconds() > 2 * interval or self._last_busy.get(a.id) == read_at:
                continue  # not read lately, or busy at the latest reading
            since = self._last_busy.get(a.id) or max(a.created, self._first_read[a.id])
            idle.append(IdleHolder(a.id, a.username, a.server_name, a.profile, a.uuids, a.created, since, bool(self.readings_simulated)))
        return sorted(idle, key=lambda h: (h.idle_since, h.allocation))

    # --- the loop -----------------------------------------------------------------------------------
    async def run(self) -> None:
        """Forever: the weekly GPU-hours of running servers and the metrics, each round (a failed round,
        the database away say, is logged and the next one tries again)."""
        interval = self.settings.accounting.check_interval
        rounds = 0
        while True:
            try:
                if rounds % max(1, round(interval / METRICS_SECONDS)) == 0:
                    await self.check_running()
                await self.refresh_metrics()
            except Exception:
                log.exception("gpuhub accounting: a round failed; trying again")
            rounds += 1
            await asyncio.sleep(min(interval, METRICS_SECONDS))

    async def check_running(self) -> None:
        acc = self.settings.accounting
        per_user = held_now(await self._run("open_records"))
        hours = await self._quotas.weekly_hours_of(per_user)
        for username in self._notices.users_with(HUB_SOURCE):
            if username not in per_user:
                self._notices.clear(username, HUB_SOURCE)  # nothing running any more
        for username, entry in per_user.items():
            limit, used = hours.get(username, (None, 0.0))
            verdict = running_verdict(used, limit, entry.rate, acc.warn_before, acc.running_servers, acc.week)
            if verdict is None:
                self._notices.clear(username, HUB_SOURCE)
                continue
            level, message = verdict
            if self._notices.post(username, HUB_SOURCE, level, message):
                log.warning("gpuhub accounting: %s: %s", username, message)
            if level == "stop":
                for allocation_id in sorted(entry.allocations):
                    if await self._allocation.release(allocation_id, "weekly GPU-hours used up"):
                        log.warning(
                            "gpuhub accounting: %s: released allocation %d (weekly GPU-hours used up); the next poll stops its server",
                            username, allocation_id,
                        )

    async def refresh_metrics(self) -> None:
        acc = self.settings.accounting
        live = await self._allocation.live()
        self.metrics = MetricsInputs(
            inventory=await self._allocation.inventory(),
            live=live,
            lines=self._allocation.lines.lines(),
            closed_totals=await self._run("closed_totals"),
            open_records=await self._run("open_records"),
            now=self._clock(),
            max_users=acc.metrics_max_users,
            max_groups=acc.metrics_max_groups,
            nodes=tuple(await self._allocation.engine.nodes()),
            held_per_node=await self._allocation.held_per_node(live),
            closed_activity=await self._run("closed_activity"),
            readings_simulated=self.readings_simulated,
        )
