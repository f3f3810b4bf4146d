"""What the admin pages and the REST API show: pure functions from the services' state to JSON-ready rows."""

from __future__ import annotations

from datetime import datetime

from traitlets import List

from ..config.schema import Quota
from ..config.sections import Size
from ..contract import iso
from ..db.records import Allocation
from ..hub.waitqueue import WaitQueue
from ..inventory.model import Inventory
from ..policy.quotas import FIELDS, EffectiveQuota, QuotaRule


def holder(a: Allocation, now: datetime) -> dict:
    return {
        "allocation": a.id,
        "user": a.username,
        "server": a.server_name,
        "profile": a.profile,
        "mode": a.mode,
        "since": iso(a.created),
        "held_seconds": int((now - a.created).total_seconds()),
        "memory_budget": a.memory_bytes or None,
        "session": a.session or None,
        "borrowed": a.borrowed,
    }


def device_rows(
    inventory: Inventory, live: list[Allocation], now: datetime, memory: dict[str, tuple[int, int]] | None = None
) -> list[dict]:
    """Every GPU and MIG slice with its state (free / held / shared / partitioned / unhealthy), who holds
    it since when, and live memory where NVML gave it (``memory``: uuid → (used, total))."""
    by_device: dict[str, list[dict]] = {}
    for a in live:
        for uuid in a.uuids:
            by_device.setdefault(uuid, []).append(holder(a, now))
    rows = []
    for index, uuid, gpu, mig in inventory.device_rows():
        holders = by_device.get(uuid, [])
        if not gpu.healthy:
            state = "unhealthy"
        elif mig is None and gpu.mig:
            state = "partitioned"  # its MIG slices are handed out, not the GPU
        elif not holders:
            state = "free"
        else:
            state = "shared" if holders[0]["mode"] == "shared" else "held"
        used = (memory or {}).get(uuid)
        rows.append(
            {
                "index": index,
                "uuid": uuid,
                "name": gpu.name if mig is None else f"{gpu.name} MIG {mig.profile}",
                "model": gpu.name,
                "kind": "gpu" if mig is None else "mig",
                "mig_profile": None if mig is None else mig.profile,
                "parent": None if mig is None else gpu.uuid,
                "state": state,
                "health": gpu.health_reason or None,
                "simulated": inventory.simulated,
                "memory_total": gpu.memory_bytes if mig is None else mig.memory_bytes,
                "memory_used": used[0] if used else None,
                "holders": holders,
            }
        )
    return rows


def queue_rows(queue: WaitQueue, now: datetime) -> list[dict]:
    """Everyone waiting, line by line in the lines' order, with their place and why they stand there."""
    rows = []
    for t in queue.tickets():
        place, in_line = queue.position(t)
        rows.append(
            {
                "ticket": t.number,
                "pool": t.pool,
                "holder": t.holder,
                "profile": t.profile,
                "since": iso(t.since),
                "waiting_seconds": int((now - t.since).total_seconds()) if t.since else None,
                "position": place or None,
                "in_line": in_line,
                "order": queue.why_here(t),
            }
        )
    return rows


def notice_rows(notices) -> list[dict]:
    """A person's notices (``hub.notices``: (source, notice) pairs) for the API."""
    return [{"level": n.level, "message": n.message, "since": iso(n.since), "source": source} for source, n in notices]


def rule_row(rule: QuotaRule) -> dict:
    return {
        "scope": rule.scope,
        "name": rule.name,
        "origin": rule.origin,
        **{f: (list(getattr(rule, f)) if f == "profiles" and getattr(rule, f) is not None else getattr(rule, f)) for f in FIELDS},
    }


def effective_row(username: str, groups: list[str], quota: EffectiveQuota, used_hours: float, week: str) -> dict:
    """A user's effective quota, each value with where it comes from, and their GPU-hours this week."""
    limits = {}
    for f in FIELDS:
        limit = getattr(quota, f)
        value = list(limit.value) if isinstance(limit.value, tuple) else limit.value
        limits[f] = {"value": value, "source": limit.source}
    hours = quota.gpu_hours_per_week.value
    return {
        "user": username,
        "groups": sorted(groups),
        "limits": limits,
        "gpu_hours_used": round(used_hours, 4),
        "gpu_hours_remaining": None if hours is None else round(max(0.0, hours - used_hours), 4),
        "week": week,
    }


def quota_fields() -> list[dict]:
    """The quota form's fields, from the settings schema (``[[quotas]]``): name, label, placeholder,
    and kind (``"size"``, ``"list"`` or ``"number"``: how the page shows and sends a value)."""
    traits = Quota.class_traits()
    return [
        {
            "name": f,
            "label": traits[f].metadata.get("label", f),
            "placeholder": traits[f].metadata.get("placeholder", ""),
            "kind": "size" if isinstance(traits[f], Size) else "list" if isinstance(traits[f], List) else "number",
        }
        for f in FIELDS
    ]
