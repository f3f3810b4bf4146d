"""What the admin pages and the REST API show: pure functions from the pool's state to JSON-ready rows."""

from __future__ import annotations

from datetime import datetime

from ..inventory import Inventory
from ..quotas import FIELDS, EffectiveQuota, QuotaRule
from ..store import Allocation
from ..waitqueue import Ticket


def iso(t: datetime | None) -> str | None:
    """Naive UTC (as stored) to ISO 8601 with a Z."""
    return t.isoformat(timespec="seconds") + "Z" if t else None


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
    for gpu in inventory.gpus:
        entries = [(str(gpu.index), gpu.uuid, gpu.name, "gpu", gpu.memory_bytes, "", None)]
        entries += [
            (f"{gpu.index}:{j}", s.uuid, f"{gpu.name} MIG {s.profile}", "mig", s.memory_bytes, gpu.uuid, s.profile)
            for j, s in enumerate(gpu.mig)
        ]
        for index, uuid, name, kind, total, parent, mig_profile in entries:
            holders = by_device.get(uuid, [])
            if not gpu.healthy:
                state = "unhealthy"
            elif kind == "gpu" and gpu.mig:
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
                    "name": name,
                    "model": gpu.name,
                    "kind": kind,
                    "mig_profile": mig_profile,
                    "parent": parent or None,
                    "state": state,
                    "health": gpu.health_reason or None,
                    "simulated": inventory.simulated,
                    "memory_total": total,
                    "memory_used": used[0] if used else None,
                    "holders": holders,
                }
            )
    return rows


def find_device(inventory: Inventory, key: str) -> str | None:
    """The UUID of a device named by UUID or by index ("0", or "0:1" for GPU 0's second MIG slice)."""
    for gpu in inventory.gpus:
        if key in (gpu.uuid, str(gpu.index)):
            return gpu.uuid
        for j, s in enumerate(gpu.mig):
            if key in (s.uuid, f"{gpu.index}:{j}"):
                return s.uuid
    return None


def queue_rows(tickets: list[Ticket], lines: dict[str, list[str]], now: datetime) -> list[dict]:
    rows = []
    for t in tickets:
        line = lines.get(t.pool, [])
        rows.append(
            {
                "ticket": t.number,
                "pool": t.pool,
                "holder": t.holder,
                "profile": t.profile,
                "since": iso(t.since),
                "waiting_seconds": int((now - t.since).total_seconds()) if t.since else None,
                "position": line.index(t.holder) + 1 if t.holder in line else None,
                "in_line": len(line),
            }
        )
    return rows


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
