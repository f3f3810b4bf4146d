"""What a person may see of their own place in gpuhub: their waiting starts with their place and the
estimate of their wait (``GET /hub/api/gpuhub/v1/users/NAME/wait``), and their overview for the home
page (``GET .../users/NAME/overview``: servers with their GPUs, notices, quota with where each limit
comes from, class windows, GPU-hours of the last weeks). The person themselves may read them (their
session, or a token of theirs with ``read:servers``), and GPU viewers and admins (``custom:gpuhub:read``)."""

from __future__ import annotations

from ..contract import iso
from ..policy import accounting
from . import views
from .base import GpuhubAPIHandler
from .sessions import start_link, window_fields

WEEKS_SHOWN = 8


class WaitHandler(GpuhubAPIHandler):
    async def get(self, name: str):
        user = self.own_or_viewer(name)
        allocation, now = self.gpuhub.allocation, self.now()
        waiting = []
        for ticket in allocation.waiting():
            if ticket.person != user.name:
                continue
            place, in_line = allocation.lines.position(ticket)
            estimate = ticket.estimate
            waiting.append({
                "server": ticket.payload.server_name,
                "line": ticket.pool,
                "profile": ticket.profile,
                "since": iso(ticket.since),
                "place": place or None,
                "in_line": in_line,
                "estimate_seconds": estimate.seconds(now) if estimate else None,
                "estimate_basis": estimate.basis if estimate and estimate.at else "",
            })
        self.write_json({"waiting": waiting})


class OverviewHandler(GpuhubAPIHandler):
    async def get(self, name: str):
        user = self.own_or_viewer(name)
        gpuhub, now = self.gpuhub, self.now()
        live = [a for a in await gpuhub.allocation.live() if a.username == user.name]
        inventory = await gpuhub.allocation.known_inventory()
        names = {row["uuid"]: row["name"] for row in views.device_rows(inventory, [], now)}
        engine = gpuhub.allocation.engine
        taking = gpuhub.borrowing.stop_times()
        servers = []
        for server_name, spawner in sorted(user.spawners.items()):
            if not (spawner.active or spawner.pending):
                continue
            held = next((a for a in live if a.server_name == server_name), None)
            orm = spawner.orm_spawner
            servers.append({
                "name": server_name,
                "ready": spawner.ready,
                "pending": spawner.pending,
                "profile": (spawner.user_options or {}).get("profile") or (held.profile if held else None),
                "started": iso(orm.started),
                "last_activity": iso(orm.last_activity),
                "idle_seconds": int((now - orm.last_activity).total_seconds()) if orm.last_activity else None,
                "gpus": [
                    {"uuid": uuid, "model": names.get(uuid, uuid), "mode": held.mode,
                     "node": engine.hostname_of(node) if (node := engine.node_of(uuid)) else None}
                    for uuid in (held.uuids if held else ())
                ],
                "session": held.session if held and held.session else None,
                "borrowed": bool(held and held.borrowed),
                "taken_back_at": iso(stop_at) if held and (stop_at := taking.get(held.id)) else None,
            })
        classes = []
        for session in await gpuhub.sessions.sessions_of(user.name):
            when = window_fields(session, now)
            if when["open_until"] or when["next_start"]:
                classes.append({
                    "session": session.name, "title": session.title or session.name,
                    "open_until": when["open_until"], "next_start": when["next_start"],
                    "start_link": start_link(session.name),
                })
        weeks = await gpuhub.accounting.weekly_hours(user.name, WEEKS_SHOWN)
        self.write_json({
            "user": user.name,
            "simulated": inventory.simulated,
            "servers": servers,
            "notices": views.notice_rows(gpuhub.notices.of(user.name)),
            "quota": await self.effective_quota_row(user),
            "week_text": accounting.week_text(self.site.accounting.week),
            "gpus_held": sum(len(a.uuids) for a in live if a.mode == "exclusive"),
            "shared_held": sum(1 for a in live if a.mode != "exclusive"),
            "classes": sorted(classes, key=lambda c: (c["open_until"] is None, c["open_until"] or c["next_start"])),
            "gpu_hours_by_week": [{"week_start": iso(start), "gpu_hours": round(hours, 4)} for start, hours in weeks],
        })
