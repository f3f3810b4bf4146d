"""The hub's GPU pool: inventory + store + wait lines + restart reconcile, for the spawners to call.

One ``GpuPool`` per hub process (``GpuPool.for_settings``). It is glue, not policy: placement is
``allocator``, quotas are ``quotas``, persistence is ``store``, the lines are ``waitqueue``. Blocking
database and NVML calls run on one worker thread, off the hub's event loop; decisions are also
serialised in the database itself (see ``store``).

Restart safety: every container of a GPU server carries the label ``org.gpuhub.allocation=<id>``,
and the spawner keeps the id in its state. The first time the pool is used after the hub starts (at
the latest when the hub polls the servers it found running), ``reconcile`` compares the live
allocations with the labelled containers: it keeps those whose container runs, frees the others,
and logs both.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial

from .accounting import week_start, week_text
from .allocator import Capacity, GpuRequest, NeverFits, capacity, pool_of
from .clock import utcnow
from .errors import SpawnRefused
from .hublog import log
from .inventory import Inventory, load_inventory
from .quotas import Ask, EffectiveQuota, Held, QuotaRule, WeekUsed, refusal, resolve, rule_from
from .sessions import Session, closed_message, usable_devices
from .sessionstore import SessionStore, device_limits
from .settings import Profile, Settings
from .store import Allocation, Refused, Store
from .waitqueue import Ticket, WaitQueue, ordinal
from .watch import Watch

ALLOCATION_LABEL = "org.gpuhub.allocation"
NVML_REFRESH_SECONDS = 30  # health (ECC, XID, lost GPUs) is re-read at most this often
RECHECK_SECONDS = 5  # a waiter retries at least this often, even if nothing signalled a change



ListContainers = Callable[[], Awaitable[list[dict]]]


@dataclass(frozen=True)
class ReconcileReport:
    kept: list[int]
    freed: list[int]
    strays: list[str]  # containers that run with an allocation that is no longer live


def settings_rules(settings: Settings) -> list[QuotaRule]:
    return [rule_from(*q.scope, q, origin="settings") for q in settings.quotas]


def admission(
    quota: EffectiveQuota, profile: Profile, request: GpuRequest | None, week: str
) -> Callable[[list[Held], float], str | None]:
    """What a start of ``profile`` is checked against: given what the user holds on their other servers
    and the GPU-seconds they used this ``week``, the 403 message of their quota, or None. One rule for
    the early check and the allocation transaction."""
    mode, count = (request.mode, request.count) if request else ("none", 0)
    ask = Ask(profile.name, mode, count, profile.mem_limit, profile.cpu_limit)
    return lambda held, used_seconds: refusal(quota, held, ask, WeekUsed(used_seconds / 3600, week_text(week)))


def _human_seconds(seconds: int) -> str:
    return f"{seconds // 60} minutes" if seconds >= 120 and seconds % 60 == 0 else f"{seconds} seconds"


class GpuPool:
    _process_pool: GpuPool | None = None

    @classmethod
    def for_settings(cls, settings: Settings) -> GpuPool:
        """The hub process's one pool, created from the first spawner's settings. (Not keyed by the
        settings object: traitlets gives every spawner its own deep copy of its config, and one pool
        per spawner would mean one wait line and one reconcile per spawner.)"""
        if cls._process_pool is None:
            cls._process_pool = cls(settings)
        return cls._process_pool

    def __init__(
        self,
        settings: Settings,
        store: Store | None = None,
        read_inventory: Callable[[], Inventory] | None = None,
    ):
        self.settings = settings
        self.queue = WaitQueue(store.clock if store is not None else utcnow)
        self._store = store
        self._read_inventory = read_inventory or partial(load_inventory, settings.gpus.inventory)
        self._inventory: Inventory | None = None
        self._inventory_read_at = 0.0
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="gpuhub-pool")
        self._ready_lock = asyncio.Lock()
        self._open_lock = asyncio.Lock()
        self._ready = False
        self._sessions: SessionStore | None = None
        self.last_reconcile: ReconcileReport | None = None
        self.watch = Watch(self)

    async def run(self, fn, *args, **kwargs):
        """``fn(*args, **kwargs)`` on the pool's one worker thread (database and NVML calls), awaited."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, partial(fn, *args, **kwargs))

    # --- start-up ---------------------------------------------------------------------------------
    async def open(self) -> None:
        """Open the store and read the inventory (what the admin pages need; no reconcile)."""
        if self._store is None:
            async with self._open_lock:
                if self._store is None:
                    self._store = await self.run(Store.from_url, self.settings.hub.db_url)
        if self._sessions is None:
            self._sessions = SessionStore(self._store)

    async def ready(self, list_containers: ListContainers) -> None:
        """Open the store, read the inventory and reconcile, once per hub process."""
        if self._ready:
            return
        async with self._ready_lock:
            if self._ready:
                return
            await self.open()
            inventory = await self.inventory()
            log.info(
                "gpuhub: GPU inventory from %s: %d GPU(s), %d MIG slice(s); exposure %s",
                inventory.label(),
                len(inventory.gpus),
                len(inventory.slices()),
                self.settings.gpus.exposure,
            )
            for gpu in inventory.gpus:
                if not gpu.healthy:
                    log.warning("gpuhub: GPU %d %s is unhealthy and is not handed out: %s", gpu.index, gpu.uuid, gpu.health_reason)
            self.last_reconcile = await self.reconcile(await list_containers())
            self._ready = True

    @property
    def store(self) -> Store:
        if self._store is None:
            raise RuntimeError("GpuPool.ready() has not run")
        return self._store

    @property
    def sessions(self) -> SessionStore:
        if self._sessions is None:
            raise RuntimeError("GpuPool.open() has not run")
        return self._sessions

    async def inventory(self) -> Inventory:
        stale = time.monotonic() - self._inventory_read_at > NVML_REFRESH_SECONDS
        if self._inventory is None or (self._inventory.source == "nvml" and stale):
            self._inventory = await self.run(self._read_inventory)
            self._inventory_read_at = time.monotonic()
        return self._inventory

    async def reconcile(self, containers: list[dict]) -> ReconcileReport:
        """Keep the live allocations whose container runs; free the rest; report strays."""
        running = {}
        for c in containers:
            label = (c.get("Labels") or {}).get(ALLOCATION_LABEL, "")
            if label.isdigit():
                running[int(label)] = (c.get("State") == "running", (c.get("Names") or ["?"])[0].lstrip("/"))
        kept, freed = [], []
        live = await self.run(self.store.live)
        for a in live:
            is_running, name = running.get(a.id, (False, ""))
            if is_running:
                kept.append(a.id)
                log.info("gpuhub reconcile: kept allocation %d of %s:%s (%s) on %s", a.id, a.username, a.server_name, name, ",".join(a.uuids))
            else:
                # its usage is closed at the last time the hub saw it running, not now
                await self.run(self.store.release, a.id, "reconcile: its container is gone", True)
                freed.append(a.id)
                log.warning("gpuhub reconcile: freed allocation %d of %s:%s (%s): no running container", a.id, a.username, a.server_name, ",".join(a.uuids))
        live_ids = {a.id for a in live}
        strays = [name for aid, (is_running, name) in running.items() if is_running and aid not in live_ids]
        for name in strays:
            log.warning("gpuhub reconcile: container %s runs with an allocation that is no longer live", name)
        if freed:
            self.queue.changed()
        return ReconcileReport(kept, freed, strays)

    # --- classroom sessions -----------------------------------------------------------------------
    async def session_for_start(self, username: str, name: str) -> Session:
        """The session ``username`` asks to start, if they may now: on its roster (or an instructor of
        it) and inside one of its windows. Otherwise a refusal saying why (and when it opens next)."""
        session = await self.run(self.sessions.get, name)
        if session is None:
            raise SpawnRefused(400, f"No such session: {name!r}. Your instructor's start link names it", why="session")
        label = session.title or session.name
        if username not in session.instructors and not await self.run(self.sessions.on_roster, name, username):
            teachers = ", ".join(session.instructors) or "its instructor"
            raise SpawnRefused(
                403,
                f"You are not on the roster of session {label!r}, so you cannot start its server."
                f" Ask {teachers} to add {username!r} to the roster",
                why="roster",
            )
        message = closed_message(session, self.store.clock())
        if message:
            raise SpawnRefused(403, message, why="window")
        return session

    # --- quotas -----------------------------------------------------------------------------------
    async def quota_rules(self) -> list[QuotaRule]:
        """Every quota rule: the settings file's, then the database's."""
        return settings_rules(self.settings) + await self.run(self.store.quota_rules)

    async def quota_for(self, username: str, groups: list[str]) -> EffectiveQuota:
        return resolve(username, groups, await self.quota_rules())

    async def used_this_week(self, username: str) -> float:
        """GPU-seconds ``username`` used in the current ``[accounting] week``."""
        since = week_start(self.store.clock(), self.settings.accounting.week)
        return await self.run(self.store.used_seconds, username, since)

    async def check_quota(
        self, username: str, server_name: str, groups: list[str], profile: Profile, request: GpuRequest | None
    ) -> None:
        """Refuse (403) at once what the user's quota does not allow, before anything is created."""
        week = self.settings.accounting.week
        admit = admission(await self.quota_for(username, groups), profile, request, week)
        used = await self.used_this_week(username)
        message = admit(await self.run(self.store.held_elsewhere, username, server_name), used)
        if message:
            raise SpawnRefused(403, message, why="quota")

    # --- allocation -------------------------------------------------------------------------------
    async def acquire(
        self,
        *,
        holder: str,
        username: str,
        server_name: str,
        groups: list[str],
        profile: Profile,
        request: GpuRequest,
        on_ticket: Callable[[Ticket | None], None] = lambda t: None,
        session: Session | None = None,
    ) -> Allocation:
        """Place ``request`` for this server, waiting in line while nothing fits. Raises SpawnRefused:
        403 over quota, 409 can never fit, 503 nothing became free within ``gpus.queue_timeout``.
        A start for a ``session`` with reserved devices waits in that session's own line."""
        timeout = self.settings.gpus.queue_timeout
        deadline = time.monotonic() + timeout
        line = f"session {session.name}" if session is not None and session.devices else pool_of(request)
        ticket = self.queue.join(line, holder, profile.name)
        on_ticket(ticket)
        try:
            while True:
                if ticket.removed_by:
                    raise SpawnRefused(
                        409,
                        f"An admin ({ticket.removed_by}) took this start out of the line for a GPU."
                        " Start again, or pick another profile",
                        why="removed",
                    )
                if self.queue.is_first(ticket):
                    decision = await self._decide(username, server_name, groups, profile, request, session)
                    if isinstance(decision, Allocation):
                        log.info("gpuhub %s: allocation %d: %s %s", holder, decision.id, request.mode, ",".join(decision.uuids))
                        return decision
                    if isinstance(decision, Refused):
                        raise SpawnRefused(403, decision.message, why="quota")
                    if isinstance(decision, NeverFits):
                        inventory = await self.inventory()
                        why = decision.reason if inventory.gpus else f"this hub has no GPU: {inventory.label()}"
                        raise SpawnRefused(
                            409,
                            f"Profile {profile.name!r} can never start on this hub: {why}."
                            " Pick another profile, or ask an admin to fix this one",
                            why="never-fits",
                        )
                    reason = decision.reason
                place, total = self.queue.position(ticket)
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise SpawnRefused(
                        503,
                        f"No GPU for profile {profile.name!r} became free within {_human_seconds(timeout)}"
                        f" ({reason if self.queue.is_first(ticket) else 'others were ahead of you'};"
                        f" you were {ordinal(place)} of {total} in line). Try again later, or pick another profile",
                        why="capacity",
                    )
                log.debug("gpuhub %s: %s", holder, self.queue.describe(ticket))
                await self.queue.wait_for_change(min(remaining, RECHECK_SECONDS))
        finally:
            self.queue.leave(ticket)
            on_ticket(None)

    async def _decide(self, username, server_name, groups, profile, request, session):
        session_name = session.name if session is not None else ""
        inventory = await self.inventory()
        week = self.settings.accounting.week
        admit = admission(await self.quota_for(username, groups), profile, request, week)
        return await self.run(
            self.store.allocate,
            inventory,
            request,
            username,
            server_name,
            profile.name,
            self.settings.gpus.max_shares_per_gpu,
            admit,
            tuple(groups),
            week_start(self.store.clock(), week),
            session_name,
            device_limits(session_name),
        )

    async def release(self, allocation_id: int, reason: str) -> bool:
        released = await self.run(self.store.release, allocation_id, reason)
        if released:
            self.queue.changed()
        return released

    async def still_held(self, allocation_id: int) -> bool:
        """The hub's poll found the server running: whether its allocation is still live (an admin or
        the weekly GPU-hours may have freed it); if so, its GPU time counts at least to now."""
        return await self.run(self.store.seen, allocation_id)

    async def force_free(self, allocation_id: int, by: str) -> bool:
        """An admin frees a stuck GPU. If its server still runs, the hub's next poll of it sees the
        allocation gone and stops the server (files kept): the device is never used by two."""
        released = await self.release(allocation_id, f"force-freed by {by}")
        if released:
            log.warning("gpuhub: allocation %d force-freed by %s", allocation_id, by)
        return released

    async def capacities(self, requests: dict[str, GpuRequest]) -> dict[str, tuple[Capacity, int]]:
        """Per name: (what is free now for that kind of request, how many wait in its line), from one
        read of the holdings, off the devices held by classroom sessions open now."""
        holdings = await self.run(self.store.holdings)
        sessions = await self.run(self.sessions.sessions)
        inventory = (await self.inventory()).restricted(*usable_devices(sessions, "", self.store.clock()))
        lines = self.queue.lines()
        max_shares = self.settings.gpus.max_shares_per_gpu
        return {
            name: (capacity(inventory, holdings, request, max_shares), len(lines.get(pool_of(request), [])))
            for name, request in requests.items()
        }
