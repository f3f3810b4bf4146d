"""What a user may hold: quota rules resolved user > group > default, and the check of one request.

Pure policy: rules (from the settings file's ``[[quotas]]`` and from the database) and a user's live
allocations in; an ``EffectiveQuota`` (each value with where it came from) or a refusal message out.
No database, no hub. The hub enforces the result at spawn, inside the same transaction that places
the GPU, so neither the form nor the REST API can get around it.

Resolution, per field (``max_gpus``, ``max_shared_slices``, ``profiles``):
1. the user's own rule (the database's before the settings file's);
2. else the user's groups: the most generous value any of them sets (largest number; union of profiles);
3. else the default rule (database, then settings file);
4. else no limit.
"""

from __future__ import annotations

from dataclasses import dataclass

FIELDS = ("max_gpus", "max_shared_slices", "profiles")
SCOPES = ("user", "group", "default")


@dataclass(frozen=True)
class QuotaRule:
    """One level's values; ``None`` means "not set here, inherit"."""

    scope: str  # "user", "group" or "default"
    name: str  # the username or group name; "" for the default
    max_gpus: int | None = None
    max_shared_slices: int | None = None
    profiles: tuple[str, ...] | None = None
    origin: str = "settings"  # "settings" (the file) or "database"

    def __post_init__(self):
        if self.scope not in SCOPES:
            raise ValueError(f"scope {self.scope!r}: expected one of {', '.join(SCOPES)}")

    def describe(self) -> str:
        where = f"{self.scope} {self.name}" if self.name else "the default"
        return f"{where} ({self.origin})"


@dataclass(frozen=True)
class Limit:
    value: int | tuple[str, ...] | None  # None: no limit
    source: str  # e.g. "group ml-lab (settings)", "no limit set"


@dataclass(frozen=True)
class EffectiveQuota:
    max_gpus: Limit
    max_shared_slices: Limit
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


def refusal(quota: EffectiveQuota, held: list[Held], profile: str, mode: str, count: int) -> str | None:
    """Why a request for ``profile`` (``count`` devices in ``mode``) exceeds ``quota``, or None if it fits."""
    if not quota.allows_profile(profile):
        allowed = ", ".join(quota.profiles.value) or "none"
        return f"Profile {profile!r} is not in your allowed profiles ({allowed}; set by {quota.profiles.source})"
    if mode == "exclusive":
        holding = sum(h.devices for h in held if h.mode == "exclusive")
        limit, what = quota.max_gpus, "GPU(s)"
    elif mode in ("shared", "mig"):
        holding = sum(h.devices for h in held if h.mode in ("shared", "mig"))
        limit, what = quota.max_shared_slices, "shared or MIG slice(s)"
    else:
        return None
    if limit.value is not None and holding + count > limit.value:
        field = "max_gpus" if mode == "exclusive" else "max_shared_slices"
        return (
            f"GPU quota reached: {field} = {limit.value} (set by {limit.source}). You hold {holding} {what};"
            f" profile {profile!r} asks for {count} more. Stop another server first, or ask an admin"
        )
    return None
