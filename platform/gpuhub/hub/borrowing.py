"""The borrowing service: borrowed GPUs taken back when someone within their quota waits.

Which borrowers are taken back for which waiters is ``policy.borrowing.to_take_back``; this service
applies it every ``REVIEW_SECONDS`` (and at once when the GPU lines say someone still waits, ``changed``):

- a newly chosen borrower gets a notice (its JupyterLab shows it) with the time its server stops,
  ``[borrowing] grace_period`` from now; the waiter's spawn page counts that time in its estimate
  (``stop_times``);
- at that time the server is stopped through the hub's own API (``stopper``: JupyterHub's stop, so
  the container is gone before its allocation is released and the waiter placed: a GPU is never used by
  two); its files are kept, and a notice says why (``STOPPED_NOTICE_SECONDS``, on the home page too);
- a borrower no longer chosen (the waiter left, or got a GPU otherwise) keeps its server: the warning is
  withdrawn.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from ..config.schema import Settings
from ..db.records import Allocation
from ..policy.borrowing import Borrower, Wanting, stopped, to_take_back, warning
from .log import log
from .notices import NoticeService

SOURCE = "borrowing"  # the notices' source
REVIEW_SECONDS = 5
STOPPED_NOTICE_SECONDS = 3600  # how long "your borrowed server was stopped" stays shown


@dataclass
class TakingBack:
    borrower: Borrower
    waiter: int  # the ticket number it is taken back for
    warned: datetime
    stop_at: datetime
    stopping: bool = False  # the stop was asked for


def borrower_of(allocation: Allocation) -> Borrower:
    return Borrower(
        allocation.id, allocation.username, allocation.server_name, allocation.mode, allocation.uuids,
        allocation.memory_bytes, allocation.created, allocation.session,
    )


class BorrowingService:
    def __init__(self, settings: Settings, allocation, sessions, notices: NoticeService, clock: Callable[[], datetime]):
        self.settings = settings
        self._allocation = allocation
        self._sessions = sessions
        self._notices = notices
        self._clock = clock
        self.taking: dict[int, TakingBack] = {}  # allocation id → its taking back, while it runs
        self._stopped_shown: dict[str, datetime] = {}  # user → when "stopped" was posted
        self._wake = asyncio.Event()
        # how a server is stopped: the hub's own API once the hub runs (``Services.start``); without it
        # (tests of the services alone) the allocation is released and the hub's next poll stops it
        self.stopper: Callable[[str, str], Awaitable[tuple[bool, str]]] | None = None

    @property
    def enabled(self) -> bool:
        return bool(self.settings.borrowing.profiles)

    def stop_times(self) -> dict[int, datetime]:
        """Allocation id → when its borrowed server is stopped (the wait estimate counts them)."""
        return {allocation_id: t.stop_at for allocation_id, t in self.taking.items()}

    def changed(self) -> None:
        """Someone waits for a GPU: review now rather than at the next round."""
        self._wake.set()

    async def run(self) -> None:
        while True:
            try:
                await self.review()
            except Exception:
                log.exception("gpuhub borrowing: a review failed; trying again")
            try:
                await asyncio.wait_for(self._wake.wait(), REVIEW_SECONDS)
            except TimeoutError:
                pass
            self._wake.clear()

    async def review(self) -> None:
        """One pass: warn who is newly taken back, stop who is due, withdraw who no longer needs to go."""
        if not self.enabled:
            return
        now = self._clock()
        self._expire_stopped(now)
        waiting = [t for t in self._allocation.lines.in_order() if t.competing]
        if not waiting and not self.taking:
            return
        live = await self._allocation.live()
        live_ids = {a.id for a in live}
        for allocation_id in [a for a in self.taking if a not in live_ids]:
            self._finished(self.taking.pop(allocation_id), now)
        borrowers = [borrower_of(a) for a in live if a.borrowed]
        chosen: dict[int, int] = {}
        if waiting and borrowers:
            chosen = to_take_back(
                await self._allocation.inventory(),
                await self._allocation.holdings(),
                borrowers,
                [Wanting(t.number, t.payload) for t in waiting],
                await self._sessions.all(),
                now,
                self._allocation.rules.max_shares,
                frozenset(self.taking),
            )
        for allocation_id in [a for a in self.taking if a not in chosen]:
            self._withdraw(self.taking.pop(allocation_id))
        by_id = {b.allocation: b for b in borrowers}
        for allocation_id, waiter in chosen.items():
            taking = self.taking.get(allocation_id)
            if taking is None:
                taking = self._warn(by_id[allocation_id], waiter, now)
            if now >= taking.stop_at and not taking.stopping:
                await self._stop(taking, now)

    def _name(self, borrower: Borrower) -> str:
        return f"{borrower.user}:{borrower.server or '(default)'}"

    def _warn(self, borrower: Borrower, waiter: int, now: datetime) -> TakingBack:
        stop_at = now + timedelta(seconds=self.settings.borrowing.grace_period)
        taking = self.taking[borrower.allocation] = TakingBack(borrower, waiter, now, stop_at)
        self._stopped_shown.pop(borrower.user, None)
        self._notices.post(borrower.user, SOURCE, "warn", warning(borrower, stop_at, now))
        self._allocation.estimates.forget()  # the waiter's estimate now knows when this GPU frees
        log.warning(
            "gpuhub borrowing %s (allocation %d): taken back for waiting start #%d: stops at %s",
            self._name(borrower), borrower.allocation, waiter, f"{stop_at:%H:%M:%S}",
        )
        return taking

    async def _stop(self, taking: TakingBack, now: datetime) -> None:
        borrower = taking.borrower
        log.warning("gpuhub borrowing %s (allocation %d): grace period over: stopping the server (files kept)", self._name(borrower), borrower.allocation)
        if self.stopper is None:
            stopped_now = await self._allocation.release(borrower.allocation, "borrowed GPU taken back for a waiter within quota")
            why = "" if stopped_now else "already released"
        else:
            stopped_now, why = await self.stopper(borrower.user, borrower.server)
        if not stopped_now:
            log.warning("gpuhub borrowing %s: the stop did not go through (%s); trying again", self._name(borrower), why)
            return
        taking.stopping = True
        self._notices.post(borrower.user, SOURCE, "stop", stopped(borrower, now))
        self._stopped_shown[borrower.user] = now

    def _finished(self, taking: TakingBack, now: datetime) -> None:
        """Its allocation is gone (stopped by us, or by its user in the grace period)."""
        if not taking.stopping and taking.borrower.user not in self._stopped_shown:
            self._notices.clear(taking.borrower.user, SOURCE)
        log.info("gpuhub borrowing %s: allocation %d released", self._name(taking.borrower), taking.borrower.allocation)

    def _withdraw(self, taking: TakingBack) -> None:
        borrower = taking.borrower
        if not any(t.borrower.user == borrower.user for t in self.taking.values()):
            self._notices.clear(borrower.user, SOURCE)
        self._allocation.estimates.forget()
        log.info("gpuhub borrowing %s (allocation %d): no longer needed by a waiter: it keeps its GPU", self._name(borrower), borrower.allocation)

    def _expire_stopped(self, now: datetime) -> None:
        for user, at in list(self._stopped_shown.items()):
            if now - at >= timedelta(seconds=STOPPED_NOTICE_SECONDS):
                del self._stopped_shown[user]
                if not any(t.borrower.user == user for t in self.taking.values()):
                    self._notices.clear(user, SOURCE)
