"""The GPU admin REST API (``/hub/api/gpuhub/v1/...``) and page (``/hub/gpuhub/admin``), inside the
hub process (see docs/architecture.md for why not a service). Thin glue: validation is ``payloads``,
rows are ``views``, state and its changes are the hub's services.

Scopes: ``custom:gpuhub:read`` (GPUs, quotas, usage, queue) and ``custom:gpuhub:admin`` (also change
quotas, force-free a GPU, take a spawn out of the line, post notices).
"""

from __future__ import annotations

from jupyterhub import orm
from tornado import web

from ..contract import iso
from ..hub.notices import POSTED_SOURCES
from ..policy import accounting, efficiency, usagecsv
from ..policy.quotas import FIELDS
from . import payloads, views
from .base import GpuhubAPIHandler, GpuhubPageHandler
from .payloads import BadRequest
from .scopes import ADMIN, READ, require


class GpusHandler(GpuhubAPIHandler):
    async def get(self):
        require(self, READ)
        allocation = self.gpuhub.allocation
        inventory = await allocation.known_inventory()  # a lost node's held GPUs too
        memory = await allocation.memory_used()
        self.write_json(
            {
                "source": inventory.label(),
                "simulated": inventory.simulated,
                "live_memory": memory is not None,
                "devices": views.device_rows(inventory, await allocation.live(), self.now(), memory),
            }
        )


class FreeHandler(GpuhubAPIHandler):
    async def post(self, device: str):
        require(self, ADMIN)
        allocation = self.gpuhub.allocation
        uuid = (await allocation.known_inventory()).find(device)
        if uuid is None:
            raise BadRequest("device", f"{device!r} is not a GPU or MIG slice of this hub. Accepted: a UUID or an index such as 0 or 0:1")
        freed = await allocation.force_free(uuid, self.current_user.name)
        self.write_json({"device": uuid, "freed": [views.holder(a, self.now()) for a in freed]})


class QuotasHandler(GpuhubAPIHandler):
    async def get(self):
        require(self, READ)
        rules = await self.gpuhub.quotas.rules()
        self.write_json(
            {
                "rules": [views.rule_row(r) for r in rules],
                "fields": list(FIELDS),
                "profiles": [p.name for p in self.site.profiles],
                "week": self.site.accounting.week,
            }
        )


class QuotaHandler(GpuhubAPIHandler):
    def _target(self, scope: str, name: str | None) -> tuple[str, str]:
        scope, name = payloads.parse_target(scope, name)
        if scope == "user" and self.find_user(name) is None:
            raise BadRequest("name", f"no user {name!r} on this hub. Accepted: an existing username")
        if scope == "group" and orm.Group.find(self.db, name) is None:
            raise BadRequest("name", f"no group {name!r} on this hub. Accepted: an existing group name")
        return scope, name

    async def put(self, scope: str, name: str | None = None):
        require(self, ADMIN)
        scope, name = self._target(scope, name)
        rule = payloads.parse_quota(scope, name, payloads.parse_json_object(self.request.body), [p.name for p in self.site.profiles])
        await self.gpuhub.quotas.set(rule, self.current_user.name)
        self.write_json(views.rule_row(rule))

    async def delete(self, scope: str, name: str | None = None):
        require(self, ADMIN)
        scope, name = payloads.parse_target(scope, name)
        if not await self.gpuhub.quotas.unset(scope, name, self.current_user.name):
            raise web.HTTPError(404, f"no quota set through the API for {scope} {name!r} (the settings file's stay)")
        self.set_status(204)
        self.finish()


class EffectiveQuotaHandler(GpuhubAPIHandler):
    async def get(self, name: str):
        require(self, READ)
        user = self.find_user(payloads.parse_name("user", name))
        if user is None:
            raise BadRequest("user", f"no user {name!r} on this hub. Accepted: an existing username")
        self.write_json(await self.effective_quota_row(user))


class UsageHandler(GpuhubAPIHandler):
    """``?since=2026-11-01&until=2026-11-08&by=user|group&format=json|csv&records=true``"""

    async def get(self):
        require(self, READ)
        since, until = payloads.parse_range(self.get_argument("since", None), self.get_argument("until", None), self.now())
        by = payloads.parse_choice("by", self.get_argument("by", "user"), ("user", "group"))
        fmt = payloads.parse_choice("format", self.get_argument("format", "json"), ("json", "csv"))
        records_only = payloads.parse_choice("records", self.get_argument("records", "false"), ("true", "false")) == "true"
        records = await self.gpuhub.accounting.records(since, until)
        sums = efficiency.efficiency(records, by, since, until)
        if fmt == "csv":
            name = f"gpuhub-usage-{'records' if records_only else by}-{since.date()}-{until.date()}.csv"
            self.set_header("Content-Type", "text/csv; charset=utf-8")
            self.set_header("Content-Disposition", f'attachment; filename="{name}"')
            self.finish(usagecsv.records_csv(records, since, until) if records_only else usagecsv.totals_csv(sums, by))
            return
        self.write_json(
            {
                "since": iso(since),
                "until": iso(until),
                "by": by,
                "totals": [{by: k, "gpu_seconds": round(e.held, 1), **e.as_json()} for k, e in sums.items()],
                "readings": efficiency.readings(records),
                "daily_gpu_hours": accounting.daily(records, by, since, until) if (until - since).days <= 366 else None,
                "records": len(records),
            }
        )


class UsageReadingsHandler(GpuhubAPIHandler):
    """The agent's utilisation reading of the held devices, every ``[reclaim] check_interval``
    (``{"simulated": false, "devices": [{"allocation": 3, "uuid": "GPU-...", "busy": true}]}``)."""

    async def post(self):
        require(self, ADMIN)
        simulated, samples = payloads.parse_readings(payloads.parse_json_object(self.request.body, payloads.MAX_READINGS_BODY))
        reached = await self.gpuhub.accounting.record_activity(samples, simulated)
        self.write_json({"records": reached})


class IdleHoldersHandler(GpuhubAPIHandler):
    """Servers holding GPUs that were idle at their latest reading, the longest idle first."""

    async def get(self):
        require(self, READ)
        now, accounting_service = self.now(), self.gpuhub.accounting
        holders = await accounting_service.idle_holders()
        self.write_json({
            "readings": None if accounting_service.readings_simulated is None else ("simulated" if accounting_service.readings_simulated else "nvml"),
            "threshold": self.site.reclaim.busy_utilisation,
            "idle": [h.as_json(now) for h in holders],
        })


class QueueHandler(GpuhubAPIHandler):
    async def get(self):
        require(self, READ)
        lines = self.gpuhub.allocation.lines
        self.write_json({"policy": lines.policy, "waiting": views.queue_rows(lines, self.now())})


class QueueEntryHandler(GpuhubAPIHandler):
    async def delete(self, number: str):
        require(self, ADMIN)
        ticket = self.gpuhub.allocation.remove_waiting(int(number), self.current_user.name)
        if ticket is None:
            raise web.HTTPError(404, f"no spawn {number} waits in line (it got a GPU, gave up, or was removed)")
        self.log.warning("gpuhub admin %s: took %s (ticket %s) out of the %s line", self.current_user.name, ticket.holder, number, ticket.pool)
        self.set_status(204)
        self.finish()


class NoticesHandler(GpuhubAPIHandler):
    """A user's notices (weekly GPU-hours running out, an idle GPU about to be reclaimed): for their
    servers' JupyterLab. Anyone who may post activity for the user (the user, their servers' tokens)
    may read them; the ``gpuhub-agent`` service (``custom:gpuhub:admin``) posts and clears its own:
    ``POST {"source": "reclaim", "level": "warn", "message": "..."}``, ``DELETE ?source=reclaim``."""

    async def get(self, name: str):
        user = self.user_allowed(name, "users:activity")
        self.write_json({"notices": views.notice_rows(self.gpuhub.notices.of(user.name))})

    async def post(self, name: str):
        require(self, ADMIN)
        name = payloads.parse_name("user", name)
        data = payloads.parse_json_object(self.request.body)
        source = payloads.parse_choice("source", data.get("source"), POSTED_SOURCES)
        level = payloads.parse_choice("level", data.get("level"), ("info", "warn", "stop"))
        message = data.get("message")
        if not isinstance(message, str) or not 0 < len(message) <= 1000:
            raise BadRequest("message", "Accepted: text of 1 to 1000 characters")
        self.gpuhub.notices.post(name, source, level, message)
        self.set_status(204)
        self.finish()

    async def delete(self, name: str):
        require(self, ADMIN)
        name = payloads.parse_name("user", name)
        source = payloads.parse_choice("source", self.get_argument("source", ""), POSTED_SOURCES)
        self.gpuhub.notices.clear(name, source)
        self.set_status(204)
        self.finish()


class AdminPageHandler(GpuhubPageHandler):
    @web.authenticated
    async def get(self):
        require(self, READ)
        self.require_person("GPU admin page", "/hub/api/gpuhub/v1")
        html = await self.render_template(
            "gpuhub-admin.html",
            can_change=ADMIN in self.expanded_scopes,
            profiles=[p.name for p in self.site.profiles],
            quota_fields=views.quota_fields(),
            week=accounting.week_text(self.site.accounting.week),
            swarm=self.site.engine.kind == "swarm",
        )
        self.finish(html)
