"""One start's allocation decision, pure: quota, classroom reservations, then placement.

The allocation transaction (``db.allocations.AllocationStore.allocate``) reads a ``Snapshot`` of what
the decision depends on (live holdings, the user's other allocations and GPU-hours this week, the
database's quota rules, the classroom sessions) and calls ``decide``; the early check before anything
is created (``quota_verdict``) applies the same quota rule to a snapshot read outside it. No
database, no hub.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime

from ..inventory.model import Inventory
from .accounting import week_text
from .allocator import GpuRequest, Holding, NeverFits, NoFitNow, Placement, place
from .quotas import Ask, EffectiveQuota, Held, QuotaRule, WeekUsed, count_refusal, refusal, resolve
from .sessions import Session, usable_devices


@dataclass(frozen=True)
class Start:
    """A server start, as quotas and the allocator see it."""

    username: str
    server_name: str
    groups: tuple[str, ...]
    profile: str
    request: GpuRequest | None  # None: a CPU-only profile
    mem_limit: int
    cpu_limit: float
    session: str = ""  # the classroom session it starts for
    node: str = ""  # only on this node (a Swarm with homes on the nodes: the home's), by hostname
    may_borrow: bool = False  # beyond the GPU count quota, on a free GPU ([borrowing], ``policy.borrowing``)
    waits_for_own: bool = False  # a batch job: beyond its count quota only while its person's other work holds it, it waits

    def ask(self) -> Ask:
        mode, count = (self.request.mode, self.request.count) if self.request else ("none", 0)
        return Ask(self.profile, mode, count, self.mem_limit, self.cpu_limit)


@dataclass(frozen=True)
class SiteRules:
    """What the site settings say about every decision."""

    quota_rules: tuple[QuotaRule, ...]  # the settings file's [[quotas]] (the database's are read each time)
    max_shares: int  # [gpus] max_shares_per_gpu
    week: str  # [accounting] week: "rolling" or "calendar"


@dataclass(frozen=True)
class Snapshot:
    """What a decision reads, inside its transaction."""

    now: datetime
    holdings: list[Holding]
    held_elsewhere: list[Held]  # the user's allocations on their other servers
    used_seconds: float | None  # the user's GPU-seconds in the quota week; None: not read (no rule limits GPU-hours)
    database_rules: list[QuotaRule]
    sessions: list[Session]


@dataclass(frozen=True)
class Refused:
    """The request is within what the pool has, but over the user's quota (``message`` says which)."""

    message: str


Decision = Placement | NoFitNow | NeverFits | Refused


def limits_hours(rules: list[QuotaRule]) -> bool:
    """Whether any of ``rules`` limits GPU-hours: if none does, the week's usage need not be read."""
    return any(rule.gpu_hours_per_week is not None for rule in rules)


def quota_verdict(quota: EffectiveQuota, start: Start, held: list[Held], used_seconds: float | None, week: str) -> tuple[str | None, str | None]:
    """(the 403 message of ``start`` under ``quota`` or None, why it borrows or None): one rule for the
    early check and the allocation transaction (``used_seconds`` None: no rule limits GPU-hours). A
    start that may borrow (``Start.may_borrow``) is not refused for the number of GPUs held: it
    borrows, and the second value is the quota message it goes beyond."""
    used = None if used_seconds is None else WeekUsed(used_seconds / 3600, week_text(week))
    over = count_refusal(quota, held, start.ask()) if start.may_borrow else None
    return refusal(quota, held, start.ask(), used, may_borrow=over is not None), over


def borrow_refusal(over: str, why: str) -> str:
    """The 403 of a start beyond its GPU quota that may borrow, when no GPU can be lent now (``why``)."""
    return f"{over}. No GPU can be borrowed beyond it now: {why}. Try again later"


def usable_for(inventory: Inventory, start: Start, sessions: list[Session], now: datetime) -> Inventory:
    """The devices ``start`` may be placed on: a session's start on its reserved devices, any other off
    the devices sessions open now hold; a start bound to a node (its home's) on that node only."""
    usable = inventory.restricted(*usable_devices(sessions, start.session, now))
    return usable.on_node(start.node) if start.node else usable


def decide(inventory: Inventory, start: Start, rules: SiteRules, snapshot: Snapshot, borrow_now: bool = False) -> Decision:
    """Where ``start``'s GPU request (not None) goes (or why not), on the devices it may use
    (``usable_for``); it waits (``NoFitNow``) rather than being refused when only a reservation is in
    its way. A start beyond its GPU count quota that may borrow is placed on a free GPU as borrowed
    only when ``borrow_now`` (nobody else waits for those devices), and never waits: refused instead."""
    quota = resolve(start.username, start.groups, [*rules.quota_rules, *snapshot.database_rules])
    message, over = quota_verdict(quota, start, snapshot.held_elsewhere, snapshot.used_seconds, rules.week)
    if message:
        return Refused(message)
    if over and not borrow_now:
        return Refused(borrow_refusal(over, "others are waiting for these GPUs"))
    usable = usable_for(inventory, start, snapshot.sessions, snapshot.now)
    decision = place(usable, snapshot.holdings, start.request, rules.max_shares)
    if isinstance(decision, NeverFits) and start.node:
        if start.node not in inventory.nodes():
            decision = NoFitNow(f"node {start.node}, where your home is, takes no new servers now")
        else:
            return NeverFits(f"{decision.reason} on node {start.node}, where your home is (an admin can move your home to a node that has them)")
    if isinstance(decision, NeverFits) and usable is not inventory:
        if start.session:  # the session's own devices can never hold its profile: the session is wrong
            return NeverFits(f"{decision.reason} (among the devices reserved for session {start.session!r})")
        if not isinstance(place(inventory, snapshot.holdings, start.request, rules.max_shares), NeverFits):
            decision = NoFitNow("the devices it needs are reserved for a classroom session now")
    if over and isinstance(decision, NoFitNow):
        return Refused(borrow_refusal(over, decision.reason))
    if over and isinstance(decision, Placement):
        return replace(decision, borrowed=True)
    return decision
