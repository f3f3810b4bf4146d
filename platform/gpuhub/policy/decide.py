"""One start's allocation decision, pure: quota, classroom reservations, then placement.

The allocation transaction (``db.allocations.AllocationStore.allocate``) reads a ``Snapshot`` of what
the decision depends on (live holdings, the user's other allocations and GPU-hours this week, the
database's quota rules, the classroom sessions) and calls ``decide``; the early check before anything
is created (``quota_refusal``) applies the same quota rule to a snapshot read outside it. No
database, no hub.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from ..inventory.model import Inventory
from .accounting import week_text
from .allocator import GpuRequest, Holding, NeverFits, NoFitNow, Placement, place
from .quotas import Ask, EffectiveQuota, Held, QuotaRule, WeekUsed, refusal, resolve
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


def quota_refusal(quota: EffectiveQuota, start: Start, held: list[Held], used_seconds: float | None, week: str) -> str | None:
    """The 403 message of ``start`` under ``quota``, or None: one rule for the early check and the
    allocation transaction (``used_seconds`` None: no rule limits GPU-hours)."""
    used = None if used_seconds is None else WeekUsed(used_seconds / 3600, week_text(week))
    return refusal(quota, held, start.ask(), used)


def decide(inventory: Inventory, start: Start, rules: SiteRules, snapshot: Snapshot) -> Decision:
    """Where ``start``'s GPU request (not None) goes (or why not). A start bound to a node (its home's)
    is placed only there. A start for a session with reserved devices uses only those; every other start stays off the devices sessions open now hold, and waits
    (``NoFitNow``) rather than being refused when only a reservation is in its way."""
    quota = resolve(start.username, start.groups, [*rules.quota_rules, *snapshot.database_rules])
    message = quota_refusal(quota, start, snapshot.held_elsewhere, snapshot.used_seconds, rules.week)
    if message:
        return Refused(message)
    usable = inventory.restricted(*usable_devices(snapshot.sessions, start.session, snapshot.now))
    if start.node:
        usable = usable.on_node(start.node)
    decision = place(usable, snapshot.holdings, start.request, rules.max_shares)
    if isinstance(decision, NeverFits) and start.node:
        if start.node not in inventory.nodes():
            return NoFitNow(f"node {start.node}, where your home is, takes no new servers now")
        return NeverFits(f"{decision.reason} on node {start.node}, where your home is (an admin can move your home to a node that has them)")
    if isinstance(decision, NeverFits) and usable is not inventory:
        if start.session:  # the session's own devices can never hold its profile: the session is wrong
            return NeverFits(f"{decision.reason} (among the devices reserved for session {start.session!r})")
        if not isinstance(place(inventory, snapshot.holdings, start.request, rules.max_shares), NeverFits):
            return NoFitNow("the devices it needs are reserved for a classroom session now")
    return decision
