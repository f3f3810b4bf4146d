"""What a user may hold: quota rules resolved user > group > default, and the check of one request.

Pure policy: rules (from the settings file's ``[[quotas]]`` and from the database) and a user's live
allocations in; an ``EffectiveQuota`` (each value with where it came from) or a refusal message out.
No database, no hub. The hub enforces the result at spawn, inside the same transaction that places
the GPU, so neither the form nor the REST API can get around it.

Resolution, per field (``FIELDS``: ``max_gpus``, ``max_shared_slices``, ``gpu_hours_per_week``,
``max_memory``, ``max_cpus``, ``profiles``; the schema's ``[[quotas]]`` keys, so a new limit is added
there, in the two records below, in ``refusal``, and as a database column):
1. the user's own rule (the database's before the settings file's);
2. else the user's groups: the most generous value any of them sets (largest number; union of profiles);
3. else the default rule (database, then settings file);
4. else no limit.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..config.schema import Quota

FIELDS = Quota.limit_names()  # the settings file's [[quotas]] keys, in the order pages and tables show them
SCOPES = ("user", "group", "default")


@dataclass(frozen=True)
class QuotaRule:
    """One level's values; ``None`` means "not set here, inherit"."""

    scope: str  # "user", "group" or "default"
    name: str  # the username or group name; "" for the default
    max_gpus: int | None = None
    max_shared_slices: int | None = None
    gpu_hours_per_week: float | None = None
    max_memory: int | None = None  # bytes
    max_cpus: float | None = None
    profiles: tuple[str, ...] | None = None
    origin: str = "settings"  # "settings" (the file) or "database"

    def __post_init__(self):
        if self.scope not in SCOPES:
            raise ValueError(f"scope {self.scope!r}: expected one of {', '.join(SCOPES)}")

    def describe(self) -> str:
        where = f"{self.scope} {self.name}" if self.name else "the default"
        return f"{where} ({self.origin})"


def rule_from(scope: str, name: str, values, origin: str) -> QuotaRule:
    """A rule from anything with the quota fields as attributes (a settings ``[[quotas]]`` block, a
    database row)."""
    fields = {f: getattr(values, f) for f in FIELDS}
    if fields["profiles"] is not None:
        fields["profiles"] = tuple(fields["profiles"])
    return QuotaRule(scope, name, origin=origin, **fields)


@dataclass(frozen=True)
class Limit:
    value: int | float | tuple[str, ...] | None  # None: no limit
    source: str  # e.g. "group ml-lab (settings)", "no limit set"


@dataclass(frozen=True)
class EffectiveQuota:
    max_gpus: Limit
    max_shared_slices: Limit
    gpu_hours_per_week: Limit
    max_memory: Limit
    max_cpus: Limit
    profiles: Limit

    def allows_profile(self, name: str) -> bool:
        return self.profiles.value is None or name in self.profiles.value


NO_LIMIT = Limit(None, "no limit set")


def _ordered(rules: list[QuotaRule], scope: str, names: set[str]) -> list[QuotaRule]:
    chosen = [r for r in rules if r.scope == scope and (scope == "default" or r.name in names)]
    return sorted(chosen, key=lambda r: (r.origin != "database", r.name))  # the database's first


def _most_generous(field: str, rules: list[QuotaRule]) -> Limit | None:
    values = [(getattr(r, field), r) for r in rules if getattr(r, field) is not None]
    if not values:
        return None
    if field == "profiles":
        union = tuple(sorted({p for v, _ in values for p in v}))
        return Limit(union, " + ".join(r.describe() for _, r in values))
    value, rule = max(values, key=lambda vr: vr[0])
    return Limit(value, rule.describe())


def resolve(username: str, groups: list[str] | set[str], rules: list[QuotaRule]) -> EffectiveQuota:
    """The quota that applies to ``username`` (a member of ``groups``), each value with its source."""
    limits = {}
    for field in FIELDS:
        limit = None
        for rule in _ordered(rules, "user", {username}):
            if getattr(rule, field) is not None:
                limit = Limit(getattr(rule, field), rule.describe())
                break
        if limit is None:
            # the database's group rules override the file's for the same group
            per_group: dict[str, QuotaRule] = {}
            for rule in _ordered(rules, "group", set(groups)):
                if getattr(rule, field) is not None:
                    per_group.setdefault(rule.name, rule)
            limit = _most_generous(field, list(per_group.values()))
        if limit is None:
            for rule in _ordered(rules, "default", set()):
                if getattr(rule, field) is not None:
                    limit = Limit(getattr(rule, field), rule.describe())
                    break
        limits[field] = limit or NO_LIMIT
    return EffectiveQuota(**limits)


@dataclass(frozen=True)
class Held:
    """What one live allocation counts against a quota."""

    mode: str  # "exclusive", "shared" or "mig"
    devices: int


@dataclass(frozen=True)
class Ask:
    """What a start asks for, as a quota sees it."""

    profile: str
    mode: str  # "none", "exclusive", "shared" or "mig"
    count: int  # devices
    mem_limit: int  # bytes
    cpu_limit: float


@dataclass(frozen=True)
class WeekUsed:
    """GPU-hours the user used in the quota's week, and how that week reads ("in the last 7 days")."""

    hours: float
    window: str


def _size(n: int) -> str:
    return f"{n / 1024**3:g}G" if n % 1024**2 == 0 else f"{n} bytes"


def count_refusal(quota: EffectiveQuota, held: list[Held], ask: Ask) -> str | None:
    """Why ``ask`` would hold more GPUs (or shared/MIG slices) than ``quota`` allows beside ``held``,
    or None: the one limit a start may go beyond on a borrowed GPU (``policy.borrowing``)."""
    if ask.mode == "exclusive":
        holding = sum(h.devices for h in held if h.mode == "exclusive")
        limit, what, field = quota.max_gpus, "GPU(s)", "max_gpus"
    elif ask.mode in ("shared", "mig"):
        holding = sum(h.devices for h in held if h.mode in ("shared", "mig"))
        limit, what, field = quota.max_shared_slices, "shared or MIG slice(s)", "max_shared_slices"
    else:
        return None
    if limit.value is not None and holding + ask.count > limit.value:
        return (
            f"GPU quota reached: {field} = {limit.value} (set by {limit.source}). You hold {holding} {what};"
            f" profile {ask.profile!r} asks for {ask.count} more. Stop another server first, or ask an admin"
        )
    return None


def refusal(quota: EffectiveQuota, held: list[Held], ask: Ask, used: WeekUsed | None = None, may_borrow: bool = False) -> str | None:
    """Why ``ask`` exceeds ``quota`` (given the user's live ``held`` allocations on other servers and
    the GPU-hours ``used`` this week), or None if it fits. ``may_borrow``: the number of GPUs held is
    not a refusal (the start borrows beyond it, ``count_refusal``); every other limit still is."""
    if not quota.allows_profile(ask.profile):
        allowed = ", ".join(quota.profiles.value) or "none"
        return f"Profile {ask.profile!r} is not in your allowed profiles ({allowed}; set by {quota.profiles.source})"
    limit = quota.max_memory
    if limit.value is not None and ask.mem_limit > limit.value:
        return (
            f"Profile {ask.profile!r} asks for {_size(ask.mem_limit)} of memory, above your ceiling max_memory ="
            f" {_size(limit.value)} (set by {limit.source}). Pick a smaller profile, or ask an admin"
        )
    limit = quota.max_cpus
    if limit.value is not None and ask.cpu_limit > limit.value:
        return (
            f"Profile {ask.profile!r} asks for {ask.cpu_limit:g} CPUs, above your ceiling max_cpus ="
            f" {limit.value:g} (set by {limit.source}). Pick a smaller profile, or ask an admin"
        )
    if ask.mode == "none":
        return None
    if not may_borrow and (message := count_refusal(quota, held, ask)):
        return message
    limit = quota.gpu_hours_per_week
    if limit.value is not None and used is not None and used.hours >= limit.value:
        return (
            f"Weekly GPU-hours used up: you used {used.hours:.2f} of {limit.value:g} GPU-hours {used.window}"
            f" (gpu_hours_per_week, set by {limit.source}); {max(0.0, limit.value - used.hours):.2f} remain."
            " CPU-only profiles still start; ask an admin for more hours"
        )
    return None
