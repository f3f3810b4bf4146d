"""The allocation service: who holds which GPU, the wait lines, and the restart reconcile.

``AllocationService`` is the only writer of allocation state. It owns:

- its worker thread for the allocation store (``db.allocations``: one serialised transaction per
  decision, ``policy.decide`` inside it);
- the GPU wait lines (``waitqueue``: one line per kind of request in the site's order, ``[fairness]``:
  arrival, or fair share from the usage records, ``policy.fairness``; served across kinds in that
  order with a bound on overtaking, ``policy.lineorder``) and their wake-ups: ``capacity_changed`` is
  called by this service on every release, and by the quota and session services on every change
  that can let a waiter in;
- the waiters kept in the database (``db.waiters``), so that a hub restart re-serves them in order;
- the restart reconcile: the first time it is used after the hub starts, live allocations whose
  server the engine still runs are kept, the others freed (``engine.running_servers``).

A start is checked early (``check_start``: 403 before anything is created) and allocated in
``acquire`` (waiting in line, its place written to the start's ``StartProgress``).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from ..config.schema import Settings
from ..db.allocations import AllocationStore
from ..contract import iso
from ..db.records import Allocation, Waiter
from ..db.usage import UsageStore
from ..db.waiters import WaiterStore
from ..engine.base import Engine
from ..inventory.model import Inventory
from ..policy.allocator import Capacity, GpuRequest, Holding, NeverFits, capacity, pool_of
from ..policy.decide import Refused, SiteRules, Start, borrow_refusal, quota_verdict
from ..policy.durations import duration_text
from ..policy.errors import SpawnRefused
from ..policy.fairness import FIFO, Standing, decayed_gpu_hours, priority_of
from ..policy.lineorder import dispatch, draws_on
from ..policy.nodes import held_per_node
from ..policy.quotas import Held
from ..policy.sessions import Session, open_window, usable_devices
from ..worker import Worker
from .database import DatabaseOpener, StoreCalls
from .log import log
from .progress import StartProgress
from .waitestimate import WaitEstimator
from .waitqueue import Listeners, Ticket, WaitQueue, ordinal

RECHECK_SECONDS = 5  # a waiter retries at least this often, even if nothing signalled a change
STANDINGS_SECONDS = 60  # fair share: recent GPU-hours re-read at most this often (unless someone new waits)
HALF_LIVES_READ = 8  # fair share: usage older than this many half-lives (1/256 of its weight) is left out


@dataclass(frozen=True)
class ReconcileReport:
    kept: list[int]
    freed: list[int]
    strays: list[str]  # servers that run with an allocation that is no longer live


class AllocationService:
    def __init__(self, settings: Settings, database: DatabaseOpener, engine: Engine, quotas, sessions, clock: Callable[[], datetime]):
        self.settings = settings
        self.engine = engine
        self.rules = SiteRules(tuple(quotas.settings_rules), settings.gpus.max_shares_per_gpu, settings.accounting.week)
        self.lines = WaitQueue(clock, settings.fairness.policy)
        self.last_reconcile: ReconcileReport | None = None
        worker = Worker("gpuhub-allocation")
        self._run = StoreCalls(database, AllocationStore, worker)
        self._waiters = StoreCalls(database, WaiterStore, worker)
        self._usage = StoreCalls(database, UsageStore, worker)
        self._recent: dict[str, float] = {}  # fair share: person → decayed recent GPU-hours
        self._recent_read_for: set[int] = set()  # the tickets whose person's hours were read since they joined
        self._recent_read_at: datetime | None = None  # by the hub's clock
        self._open_sessions: set[str] = set()  # the classroom sessions open at the last standings (fair share)
        self.estimates = WaitEstimator(settings, self._run, self._usage, quotas, sessions, clock)
        self._quotas = quotas
        self._sessions = sessions
        self._clock = clock
        self._ready = False
        self._ready_lock = asyncio.Lock()
        self.boot = uuid.uuid4().hex  # this hub process, in the kept waiters' rows
        self._round: asyncio.Future | None = None
        self._placing = asyncio.Lock()  # a placement and a release never interleave (``_place``, ``release``)
        self._retry_at = 0.0
        self._held_for_lost: dict[int, str] = {}  # allocation id → the down node its stopped server was on
        self.still_waiting = Listeners()  # told after a round that left someone waiting (``BorrowingService``)
        engine.listen(self.capacity_changed, self.node_back)

    def capacity_changed(self) -> None:
        """A device may have been freed, a quota raised, a reservation moved: every waiter tries again."""
        self.lines.changed()

    async def inventory(self) -> Inventory:
        return await self.engine.inventory()

    async def known_inventory(self) -> Inventory:
        """Every device the hub knows, also on a node that takes no servers now (``Engine``)."""
        return await self.engine.known_inventory()

    async def memory_used(self) -> dict[str, tuple[int, int]] | None:
        """Live memory per device (used, total) where the engine reads it (NVML), else None."""
        return await self.engine.memory_used()

    # --- start-up: once per hub process --------------------------------------------------------------
    async def ready(self) -> None:
        """Read the inventory and reconcile, once per hub process (the first spawner to ask does it)."""
        if self._ready:
            return
        async with self._ready_lock:
            if self._ready:
                return
            inventory = await self.inventory()
            log.info(
                "gpuhub: GPU inventory from %s: %d GPU(s), %d MIG slice(s); engine %s, exposure %s",
                inventory.label(), len(inventory.gpus), len(inventory.slices()), self.engine.name, self.engine.exposure,
            )
            for gpu in inventory.gpus:
                if not gpu.healthy:
                    log.warning("gpuhub: GPU %d %s is unhealthy and is not handed out: %s", gpu.index, gpu.uuid, gpu.health_reason)
            self.last_reconcile = await self.reconcile()
            self._ready = True

    async def reconcile(self) -> ReconcileReport:
        """Keep the live allocations whose server runs; free the rest; report strays."""
        servers = {s.allocation_id: s for s in await self.engine.running_servers()}
        kept, freed = [], []
        live = await self._run("live")
        for a in live:
            server = servers.get(a.id)
            if server is not None and server.running:
                kept.append(a.id)
                log.info("gpuhub reconcile: kept allocation %d of %s:%s (%s) on %s", a.id, a.username, a.server_name, server.name, ",".join(a.uuids))
            else:
                # its usage is closed at the last time the hub saw it running, not now
                await self._run("release", a.id, "reconcile: its container is gone", True)
                freed.append(a.id)
                log.warning("gpuhub reconcile: freed allocation %d of %s:%s (%s): no running container", a.id, a.username, a.server_name, ",".join(a.uuids))
        live_ids = {a.id for a in live}
        strays = [s.name for s in servers.values() if s.running and s.allocation_id not in live_ids]
        for name in strays:
            log.warning("gpuhub reconcile: container %s runs with an allocation that is no longer live", name)
        if freed:
            self.capacity_changed()
        return ReconcileReport(kept, freed, strays)

    # --- a start ------------------------------------------------------------------------------------
    async def check_start(self, start: Start) -> str | None:
        """Refuse (403) at once what the user's quota does not allow, before anything is created: the
        rule the allocation transaction applies again (``policy.decide.quota_verdict``). Returns the
        GPU quota a start that may borrow goes beyond (None: within quota). A batch job's start
        (``waits_for_own``) is checked as if its person held nothing: what they hold frees in time."""
        quota = await self._quotas.effective(start.username, list(start.groups))
        used = await self._quotas.used_this_week(start.username)
        held = [] if start.waits_for_own else await self.held_elsewhere(start.username, start.server_name)
        message, over = quota_verdict(quota, start, held, used, self.rules.week)
        if message:
            raise SpawnRefused(403, message, why="quota")
        return over

    async def acquire(
        self, start: Start, holder: str, progress: StartProgress, session: Session | None = None, options: dict | None = None,
        job: tuple[datetime, float] | None = None,
    ) -> Allocation:
        """Place ``start``'s GPU request, waiting in line while nothing fits. Raises SpawnRefused:
        403 over quota, 409 can never fit (or an admin took it out of the line), 503 nothing became
        free within ``[gpus] queue_timeout``. A start for a ``session`` with reserved devices waits in
        that session's own line. While it waits, the start is kept in the database with its
        ``options``: a hub restart starts it again at the same place (``restore_waiters``). A batch
        ``job`` (``hub.jobs``) gives its own place (when it was submitted) and how long it may wait, in
        seconds; the job service keeps it across restarts itself."""
        timeout = job[1] if job else self.settings.gpus.queue_timeout
        await self.engine.settle()  # a pool short of nodes not heard from yet would refuse what fits
        deadline = time.monotonic() + timeout
        line = f"session {session.name}" if session is not None and session.devices else pool_of(start.request)
        devices = draws_on(start.request, line)
        if start.may_borrow and self.lines.waiting_on(devices) and (over := await self.check_start(start)):
            raise SpawnRefused(403, borrow_refusal(over, "others are waiting for these GPUs"), why="quota")  # a borrower never waits
        if job is None:
            kept = await self._waiters("keep", start.username, start.server_name, start.profile, options or {}, self.boot)
            joined, restored = kept.joined, kept.boot != self.boot
        else:
            joined, restored = job[0], False
        ticket = self.lines.join(
            line, holder, start.profile, since=joined, devices=devices, kept=restored, payload=start, person=start.username,
        )
        if ticket.kept:
            log.info("gpuhub %s: back in line for a GPU at its place from before the hub restarted (joined %s)", holder, joined)
        got, cancelled = None, False
        if self.settings.fairness.policy != FIFO:
            ticket.standing = self._standing_of(ticket)  # its place at once, from the hours read so far
            self.lines.reorder()
        try:
            while True:
                seen = self.lines.wakes  # a change during the awaits below is not missed
                await self._serve_lines()
                if ticket.outcome is None and not ticket.removed_by:
                    ticket.estimate = await self.estimates.for_ticket(ticket, self.lines.ahead_on_its_devices(ticket))
                if isinstance(ticket.outcome, BaseException):
                    raise ticket.outcome
                if isinstance(ticket.outcome, Allocation):
                    got = ticket.outcome
                    borrowed = " (borrowed, beyond the GPU quota)" if got.borrowed else ""
                    log.info("gpuhub %s: allocation %d: %s %s%s", holder, got.id, start.request.mode, ",".join(got.uuids), borrowed)
                    progress.update(50, "GPU assigned; starting your server")
                    return got
                if ticket.removed_by:
                    raise SpawnRefused(
                        409,
                        f"An admin ({ticket.removed_by}) took this start out of the line for a GPU."
                        " Start again, or pick another profile",
                        why="removed",
                    )
                progress.update(10, self.lines.describe(ticket, self._clock()))
                place, total = self.lines.position(ticket)
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise SpawnRefused(
                        503,
                        f"No GPU for profile {start.profile!r} became free within {duration_text(timeout)}"
                        f" ({ticket.reason or 'others were ahead of you'};"
                        f" you were {ordinal(place)} of {total} in line). Try again later, or pick another profile",
                        why="capacity",
                    )
                log.debug("gpuhub %s: %s", holder, self.lines.describe(ticket))
                await self.lines.wait_for_change(min(remaining, RECHECK_SECONDS), seen)
        except asyncio.CancelledError:
            # JupyterHub cancels pending spawns when it stops: the start stays kept for the next hub
            # process. (A user who cancels is stopped next: ``forget_waiter`` from the spawner's stop.)
            cancelled = True
            raise
        finally:
            self.lines.leave(ticket)
            if isinstance(ticket.outcome, Allocation) and got is None:  # placed, but its start is gone
                await self.release(ticket.outcome.id, "its start ended before it took its GPU")
            if not cancelled and job is None:
                await self.forget_waiter(start.username, start.server_name)

    async def forget_waiter(self, username: str, server_name: str) -> None:
        """The server's start no longer waits (it ended, or the server was stopped): not re-served."""
        await self._waiters("forget", username, server_name)

    async def _serve_lines(self) -> None:
        """Let the waiters that may try now try (``policy.lineorder``). One round at a time, in its own
        task: a waiter's cancellation never interrupts a placement half-recorded."""
        if self._round is None or self._round.done():
            self._round = asyncio.ensure_future(self._round_of_placements())
        await asyncio.shield(self._round)

    async def _round_of_placements(self) -> None:
        now = time.monotonic()
        again = now >= self._retry_at  # the safety net: everyone tries again every few seconds
        if again:
            self._retry_at = now + RECHECK_SECONDS
        await self.update_standings()
        while await self._placements_until_a_change(again):
            pass  # something was freed while earlier waiters were tried: all try again, in order
        if any(t.outcome is None and not t.removed_by for t in self.lines.tickets()):
            self.still_waiting()

    async def _placements_until_a_change(self, again: bool) -> bool:
        """Let the waiters try, in order (``policy.lineorder.dispatch``); True if it stopped because
        something changed meanwhile: a waiter that did not fit before a GPU was freed must not see a
        later one take that GPU."""
        generation = self.lines.generation
        waiting = [t for t in self.lines.in_order() if t.outcome is None and not t.removed_by]
        order = dispatch(waiting, self.settings.gpus.overtake_limit)
        inventory = None
        try:
            ticket = next(order)
            while True:
                placed = False
                if again or ticket.tried_at != generation:  # nothing freed since it last tried: it still does not fit
                    inventory = inventory or await self.inventory()
                    async with self._placing:
                        if self.lines.generation != generation:
                            return True
                        ticket.tried_at = generation
                        placed = await self._place(ticket, inventory)
                ticket = order.send(placed)
        except StopIteration:
            return False

    async def update_standings(self) -> None:
        """Fair share: every waiter's priority (``[fairness]``) and its person's decayed recent GPU-hours
        (everyone's usage records re-read every ``STANDINGS_SECONDS``; whoever joins the line has theirs
        read at once, for them alone), then the lines re-sorted. Nothing to do for "fifo"."""
        fairness = self.settings.fairness
        if fairness.policy == FIFO:
            return
        now = self._clock()
        since = now - timedelta(hours=fairness.half_life_hours * HALF_LIVES_READ)
        if self._recent_read_at is None or now >= self._recent_read_at:
            self._recent_read_at = now + timedelta(seconds=STANDINGS_SECONDS)  # before the read: one at a time
            self._recent_read_for = {t.number for t in self.lines.tickets()}
            self._recent = decayed_gpu_hours(await self._usage("records", since, now), now, fairness.half_life_hours)
        joined = [t for t in self.lines.tickets() if t.number not in self._recent_read_for]
        self._recent_read_for.update(t.number for t in joined)
        for person in {t.person for t in joined}:  # their hours now, not as read before they joined
            records = await self._usage("records", since, now, person)
            self._recent[person] = decayed_gpu_hours(records, now, fairness.half_life_hours).get(person, 0.0)
        self._open_sessions = {s.name for s in await self._sessions.all() if open_window(s, now) is not None}
        for ticket in self.lines.tickets():  # read after the awaits: whoever joined meanwhile too
            ticket.standing = self._standing_of(ticket)
        self.lines.reorder()

    def _standing_of(self, ticket: Ticket) -> Standing:
        """Its priority (a classroom session's only while the session's window is open: a start that
        joined in class and still waits after it keeps its groups' only) and its person's recent hours."""
        fairness, start = self.settings.fairness, ticket.payload
        session = start.session if start.session in self._open_sessions or ticket.standing is None else ""
        priority, source = priority_of(start.groups, session, fairness.group_priority, fairness.session_priority)
        return Standing(priority, source, self._recent.get(ticket.person, 0.0))

    async def _place(self, ticket: Ticket, inventory: Inventory) -> bool:
        """Try to allocate ``ticket``'s start; its outcome is set unless it has to wait on."""
        start: Start = ticket.payload
        ticket.own_quota = False
        borrow_now = start.may_borrow and not self.lines.waiting_on(ticket.devices, but=ticket)
        try:
            decision = await self._run("allocate", inventory, start, self.rules, borrow_now)
        except Exception as e:  # the database: that start fails, the others try on
            ticket.outcome = e
            return False
        if isinstance(decision, Allocation):
            ticket.outcome = decision
            return True
        if isinstance(decision, Refused) and start.waits_for_own and await self._within_quota_alone(start):
            ticket.own_quota = True  # a job: it waits for its person's other work to end, holding nobody back
            ticket.reason = f"waiting for your own GPUs to free: {decision.message}"
        elif isinstance(decision, Refused):
            ticket.outcome = SpawnRefused(403, decision.message, why="quota")
        elif isinstance(decision, NeverFits):
            why = decision.reason if inventory.gpus else f"this hub has no GPU: {inventory.label()}"
            ticket.outcome = SpawnRefused(
                409,
                f"Profile {start.profile!r} can never start on this hub: {why}. Pick another profile, or ask an admin to fix this one",
                why="never-fits",
            )
        else:
            ticket.reason = decision.reason
        return False

    async def _within_quota_alone(self, start: Start) -> bool:
        """Whether ``start`` (a batch job's) fits its person's quota once what they hold now is freed."""
        try:
            await self.check_start(start)
        except SpawnRefused:
            return False
        return True

    async def restore_waiters(self, start_server: Callable[[Waiter], Awaitable[tuple[bool, str]]]) -> None:
        """Start again, at their places, the GPU starts an earlier hub process left waiting in line.
        ``start_server`` asks the hub to start one (True, or False and why not)."""
        await self.ready()
        left = await self._waiters("left_behind", self.boot)
        if not left:
            return
        log.info("gpuhub: %d start(s) were waiting for a GPU when the hub stopped: starting them again, in their order", len(left))

        async def restore(waiter: Waiter) -> None:
            name = f"{waiter.username}:{waiter.server_name}"
            started, why = await start_server(waiter)
            if started:
                log.info("gpuhub %s: start re-served after the hub restart (waiting since %s)", name, iso(waiter.joined))
            else:
                await self._waiters("forget", waiter.username, waiter.server_name)
                log.warning("gpuhub %s: the start left waiting by the previous hub was not re-served: %s", name, why)

        await asyncio.gather(*(restore(w) for w in left))

    # --- releases -----------------------------------------------------------------------------------
    async def release(self, allocation_id: int, reason: str) -> bool:
        """Free an allocation, never while a waiter is being placed: a placement under way read the
        devices before this release or after it and the round sees the change before its next one (else
        a later waiter could take the device an earlier one was just refused)."""
        async with self._placing:
            released = await self._run("release", allocation_id, reason)
            if released:
                self.capacity_changed()
        return released

    async def still_held(self, allocation_id: int) -> bool:
        """The hub's poll found the server running: whether its allocation is still live (an admin or
        the weekly GPU-hours may have freed it); if so, its GPU time counts at least to now."""
        return await self._run("seen", allocation_id)

    async def force_free(self, uuid: str, by: str) -> list[Allocation]:
        """An admin frees a stuck device: every live allocation holding it is released. If a server
        still runs, the hub's next poll of it sees its allocation gone and stops it (files kept): the
        device is never used by two."""
        freed = []
        for a in await self.live():
            if uuid in a.uuids and await self.release(a.id, f"force-freed by {by}"):
                log.warning("gpuhub: allocation %d of %s:%s force-freed by %s", a.id, a.username, a.server_name, by)
                freed.append(a)
        return freed

    # --- several hosts: a node lost with servers on it -----------------------------------------------
    def hold_for_lost_node(self, allocation_id: int, node_id: str, holder: str) -> None:
        """A server on a node that is down was stopped: its devices stay held (the node's engine may
        still run its container) until the node is back, which removes it, or leaves the Swarm."""
        self._held_for_lost[allocation_id] = node_id
        log.warning("gpuhub %s: its node %s is down: allocation %d stays held until the node is back or removed", holder, node_id[:10], allocation_id)

    async def node_back(self, node_id: str) -> None:
        """``node_id`` takes servers again (its engine removed the servers the hub stopped while it was
        down), or left the Swarm: what was held for its lost servers is handed back."""
        for allocation_id in [a for a, n in self._held_for_lost.items() if n == node_id]:
            del self._held_for_lost[allocation_id]
            await self.release(allocation_id, "its server's node was lost; the node is back or removed")
            log.info("gpuhub: allocation %d held for lost node %s released", allocation_id, node_id[:10])

    async def held_per_node(self, live: list[Allocation] | None = None) -> dict[str, int]:
        """Node id → how many of its devices live allocations hold (empty on one host); ``live``: the
        live allocations when the caller has just read them."""
        allocations = await self.live() if live is None else live
        return held_per_node((a.uuids for a in allocations), self.engine.node_of)

    # --- what pages show ------------------------------------------------------------------------------
    async def live(self) -> list[Allocation]:
        return await self._run("live")

    async def held_elsewhere(self, username: str, server_name: str) -> list[Held]:
        """What ``username`` holds on servers other than ``server_name`` (what a start of it counts beside)."""
        return await self._run("held_elsewhere", username, server_name)

    async def holdings(self) -> list[Holding]:
        """What every live allocation holds, per device and mode."""
        return await self._run("holdings")

    def waiting(self) -> list[Ticket]:
        """Everyone waiting for a GPU, line by line, in order."""
        return self.lines.tickets()

    def remove_waiting(self, number: int, by: str) -> Ticket | None:
        """An admin takes a start out of its line; its spawn ends with a message. None if no such ticket waits."""
        return self.lines.remove(number, by)

    async def capacities(self, requests: dict[str, GpuRequest]) -> dict[str, tuple[Capacity, int]]:
        """Per name: (what is free now for that kind of request, how many wait in its line), from one
        read of the holdings, off the devices held by classroom sessions open now."""
        holdings = await self._run("holdings")
        sessions = await self._sessions.all()
        inventory = (await self.inventory()).restricted(*usable_devices(sessions, "", self._clock()))
        lines = self.lines.lines()
        max_shares = self.rules.max_shares
        return {
            name: (capacity(inventory, holdings, request, max_shares), len(lines.get(pool_of(request), [])))
            for name, request in requests.items()
        }
