"""The estimate of a waiting start's wait (``policy.estimate``), from the hub's own state: the live
allocations, their sessions, the server age limit, the weekly GPU-hours and the recent holds.

Owned by the allocation service; the holds are gathered at most every ``HOLDS_SECONDS`` and the
typical hold lengths every ``TYPICAL_SECONDS``, by one waiter at a time (the others wait for that read
and use it), so the spawn pages of many waiters cost one read.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import datetime, timedelta

from ..config.schema import Settings
from ..db.records import Allocation
from ..policy.accounting import held_now, seconds_until_used_up
from ..policy.estimate import TYPICAL_WINDOW, Estimate, Hold, estimate, typical_holds
from ..policy.lineorder import MIG_SLICES, WHOLE_GPUS
from ..policy.sessions import open_window
from .waitqueue import Ticket

HOLDS_SECONDS = 10
TYPICAL_SECONDS = 300


def waits_on(allocation: Allocation, reserved: bool, devices: str) -> bool:
    """Whether ``allocation`` frees something a line drawing on ``devices`` (``lineorder.draws_on``)
    can use; ``reserved``: it holds devices a classroom session keeps for its roster."""
    if devices.startswith("session "):
        return allocation.session == devices.removeprefix("session ")
    if reserved or devices not in (MIG_SLICES, WHOLE_GPUS):
        return False
    return (allocation.mode == "mig") == (devices == MIG_SLICES)


def units_of(mode: str, count: int) -> int:
    """Devices a start or an allocation needs or frees: whole GPUs for exclusive, one slot or slice otherwise."""
    return count if mode == "exclusive" else 1


class WaitEstimator:
    def __init__(self, settings: Settings, allocations, usage, quotas, sessions, clock: Callable[[], datetime]):
        self.settings = settings
        self._allocations = allocations  # StoreCalls of AllocationStore
        self._usage = usage  # StoreCalls of UsageStore
        self._quotas = quotas
        self._sessions = sessions
        self._clock = clock
        self._holds: list[tuple[Allocation, bool, Hold]] = []
        self._holds_at = 0.0
        self._typical: dict[str, timedelta] = {}
        self._typical_at = 0.0
        self._reading = asyncio.Lock()
        self.taken_back: Callable[[], dict[int, datetime]] = dict  # borrowed servers being stopped: when (``BorrowingService``)

    def forget(self) -> None:
        """Read the holds again at the next estimate (a borrowed GPU is being taken back, or no longer)."""
        self._holds_at = 0.0

    async def for_ticket(self, ticket: Ticket, ahead: list[Ticket]) -> Estimate:
        """When ``ticket`` is expected to get its devices, behind the waiters ``ahead`` of it in its line."""
        now = self._clock()
        async with self._reading:
            current = await self._current_holds(now)
            typical = await self._typical_holds(now)
        holds = [hold for allocation, reserved, hold in current if waits_on(allocation, reserved, ticket.devices)]
        return estimate(holds, typical, now, _units(ticket), sum(_units(t) for t in ahead))

    async def _current_holds(self, now: datetime) -> list[tuple[Allocation, bool, Hold]]:
        if time.monotonic() < self._holds_at:
            return self._holds
        live = await self._allocations("live")
        sessions = {s.name: s for s in await self._sessions.all()}
        out_of_hours = await self._hours_run_out(now)
        taken_back = self.taken_back()
        culling = self.settings.culling
        max_age = culling.max_age if culling.timeout else 0  # without the culler nothing enforces it
        holds = []
        for a in live:
            limits = []
            session = sessions.get(a.session)
            window = open_window(session, now) if session is not None and session.stop_at_end else None
            if window is not None:
                limits.append((window.end, f"session {session.name}'s window ends"))
            if max_age:
                limits.append((a.created + timedelta(seconds=max_age), "servers are stopped at their maximum age"))
            if a.id in taken_back:
                limits.append((taken_back[a.id], "a borrowed GPU is taken back"))
            if a.username in out_of_hours:
                limits.append((out_of_hours[a.username], "a holder's weekly GPU-hours run out"))
            reserved = session is not None and bool(session.devices)
            holds.append((a, reserved, Hold(a.created, units_of(a.mode, len(a.uuids)), a.profile, tuple(limits))))
        self._holds, self._holds_at = holds, time.monotonic() + HOLDS_SECONDS
        return holds

    async def _hours_run_out(self, now: datetime) -> dict[str, datetime]:
        """Per person whose servers are stopped when their weekly GPU-hours are used: when, at today's rate."""
        if self.settings.accounting.running_servers != "stop":
            return {}
        holders = held_now(await self._usage("open_records"))
        ends = {}
        for username, (limit, used) in (await self._quotas.weekly_hours_of(holders)).items():
            left = seconds_until_used_up(used, limit, holders[username].rate)
            if left is not None:
                ends[username] = now + timedelta(seconds=left)
        return ends

    async def _typical_holds(self, now: datetime) -> dict[str, timedelta]:
        if time.monotonic() >= self._typical_at:
            self._typical = typical_holds(await self._usage("records", now - TYPICAL_WINDOW, now), now)
            self._typical_at = time.monotonic() + TYPICAL_SECONDS
        return self._typical


def _units(ticket: Ticket) -> int:
    request = ticket.payload.request
    return units_of(request.mode, request.count)
