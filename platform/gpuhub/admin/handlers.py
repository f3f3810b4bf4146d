"""The admin REST API and page, inside the hub process, under JupyterHub's RBAC (see
docs/architecture.md for why not a service). Thin glue: validation is ``payloads``, rows are
``views``, state is the ``GpuPool``.

Scopes: ``custom:gpuhub:read`` (GPUs, quotas, usage, queue) and ``custom:gpuhub:admin`` (also change
quotas, force-free a GPU, take a spawn out of the line). Errors are JSON:
``{"status": 400, "error": "bad-request", "field": "max_gpus", "message": "..."}``.
"""

from __future__ import annotations

import json
import os

from jupyterhub import orm
from jupyterhub.apihandlers.base import APIHandler
from jupyterhub.handlers.base import BaseHandler
from jupyterhub.scopes import check_scope_filter
from tornado import web

from .. import accounting
from ..allocations import GpuPool
from ..settings import Settings
from . import payloads, views
from .payloads import BadRequest

READ = "custom:gpuhub:read"
SESSIONS = "custom:gpuhub:sessions"
ADMIN = "custom:gpuhub:admin"
CUSTOM_SCOPES = {
    READ: {"description": "See gpuhub's GPUs and who holds them, quotas, GPU-hours usage, the wait line and every session."},
    SESSIONS: {"description": "Create classroom sessions; change, prewarm and stop the sessions you are an instructor of."},
    ADMIN: {
        "description": "Change gpuhub quotas, force-free a GPU, take a spawn out of the wait line, manage every session.",
        "subscopes": [READ, SESSIONS],
    },
}
API = "/api/gpuhub/v1"
STATIC = os.path.join(os.path.dirname(__file__), "static")
POSTED_SOURCES = ("reclaim", "session")  # notices services may post (the weekly GPU-hours are the hub's own)
ERRORS = {400: "bad-request", 403: "forbidden", 404: "not-found", 405: "method-not-allowed", 409: "conflict"}


def _require(handler: BaseHandler, scope: str) -> None:
    """JupyterHub's ``needs_scope``, for scopes defined after this module is imported (custom scopes)."""
    if handler.current_user is None:
        raise web.HTTPError(403, "Missing or invalid credentials.")
    if scope not in handler.expanded_scopes:
        raise web.HTTPError(403, f"Action is not authorized with current scopes; requires {scope}")


class GpuhubAPIHandler(APIHandler):
    def initialize(self, settings: Settings):
        self.site = settings

    @property
    def pool(self) -> GpuPool:
        return GpuPool.for_settings(self.site)

    async def prepare(self):
        await super().prepare()
        await self.pool.open()

    def write_error(self, status_code, **kwargs):
        exc = kwargs.get("exc_info", (None, None, None))[1]
        field = None
        if isinstance(exc, BadRequest):
            status_code, field, message = 400, exc.field, str(exc)
        elif isinstance(exc, web.HTTPError) and exc.log_message:
            message = exc.log_message % exc.args if exc.args else exc.log_message
        else:
            message = self._reason
        if status_code >= 500:
            message = "gpuhub: internal error; the hub log has the details"
        self.set_status(status_code)
        self.set_header("Content-Type", "application/json")
        self.finish(
            json.dumps(
                {"status": status_code, "error": ERRORS.get(status_code, "error"), "field": field, "message": message}
            )
        )

    def log_exception(self, typ, value, tb):
        if isinstance(value, BadRequest):  # the client's mistake, answered with 400: not a hub error
            self.log.warning("gpuhub API %s %s: 400 %s", self.request.method, self.request.path, value)
            return
        super().log_exception(typ, value, tb)

    def write_json(self, data) -> None:
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(data))

    def _now(self):
        return self.pool.store.clock()

    def _profile_names(self) -> list[str]:
        return [p.name for p in self.site.profiles]


class GpusHandler(GpuhubAPIHandler):
    async def get(self):
        _require(self, READ)
        pool = self.pool
        inventory = await pool.inventory()
        memory = None
        if inventory.source == "nvml":
            from ..nvml import read_memory_used

            memory = await pool.run(read_memory_used)
        live = await pool.run(pool.store.live)
        self.write_json(
            {
                "source": inventory.label(),
                "simulated": inventory.simulated,
                "live_memory": memory is not None,
                "devices": views.device_rows(inventory, live, self._now(), memory),
            }
        )


class FreeHandler(GpuhubAPIHandler):
    async def post(self, device: str):
        _require(self, ADMIN)
        pool = self.pool
        uuid = views.find_device(await pool.inventory(), device)
        if uuid is None:
            raise BadRequest("device", f"{device!r} is not a GPU or MIG slice of this hub. Accepted: a UUID or an index such as 0 or 0:1")
        by = self.current_user.name
        freed = []
        for a in await pool.run(pool.store.live):
            if uuid in a.uuids and await pool.force_free(a.id, by):
                freed.append(views.holder(a, self._now()))
        self.write_json({"device": uuid, "freed": freed})


class QuotasHandler(GpuhubAPIHandler):
    async def get(self):
        _require(self, READ)
        rules = await self.pool.quota_rules()
        self.write_json(
            {"rules": [views.rule_row(r) for r in rules], "profiles": self._profile_names(), "week": self.site.accounting.week}
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
        _require(self, ADMIN)
        scope, name = self._target(scope, name)
        rule = payloads.parse_quota(scope, name, payloads.parse_json_object(self.request.body), self._profile_names())
        await self.pool.run(self.pool.store.set_quota, rule)
        self.log.info("gpuhub admin %s: set the %s quota %r: %s", self.current_user.name, scope, name, views.rule_row(rule))
        self.pool.queue.changed()  # a waiter's quota may have changed
        self.write_json(views.rule_row(rule))

    async def delete(self, scope: str, name: str | None = None):
        _require(self, ADMIN)
        scope, name = payloads.parse_target(scope, name)
        if not await self.pool.run(self.pool.store.unset_quota, scope, name):
            raise web.HTTPError(404, f"no quota set through the API for {scope} {name!r} (the settings file's stay)")
        self.log.info("gpuhub admin %s: removed the %s quota %r", self.current_user.name, scope, name)
        self.set_status(204)
        self.finish()


class EffectiveQuotaHandler(GpuhubAPIHandler):
    async def get(self, name: str):
        _require(self, READ)
        user = self.find_user(payloads.parse_name("user", name))
        if user is None:
            raise BadRequest("user", f"no user {name!r} on this hub. Accepted: an existing username")
        groups = [g.name for g in user.groups]
        quota = await self.pool.quota_for(user.name, groups)
        used = await self.pool.used_this_week(user.name) / 3600
        self.write_json(views.effective_row(user.name, groups, quota, used, self.site.accounting.week))


class UsageHandler(GpuhubAPIHandler):
    """``?since=2026-11-01&until=2026-11-08&by=user|group&format=json|csv&records=true``"""

    async def get(self):
        _require(self, READ)
        since, until = payloads.parse_range(self.get_argument("since", None), self.get_argument("until", None), self._now())
        by = payloads.parse_choice("by", self.get_argument("by", "user"), ("user", "group"))
        fmt = payloads.parse_choice("format", self.get_argument("format", "json"), ("json", "csv"))
        records_only = payloads.parse_choice("records", self.get_argument("records", "false"), ("true", "false")) == "true"
        records = await self.pool.run(self.pool.store.usage, since, until)
        if fmt == "csv":
            name = f"gpuhub-usage-{'records' if records_only else by}-{since.date()}-{until.date()}.csv"
            self.set_header("Content-Type", "text/csv; charset=utf-8")
            self.set_header("Content-Disposition", f'attachment; filename="{name}"')
            if records_only:
                self.finish(accounting.records_csv(records, since, until))
            else:
                self.finish(accounting.totals_csv(accounting.totals(records, by, since, until), by))
            return
        totals = accounting.totals(records, by, since, until)
        self.write_json(
            {
                "since": views.iso(since),
                "until": views.iso(until),
                "by": by,
                "totals": [{by: k, "gpu_seconds": round(v, 1), "gpu_hours": round(v / 3600, 4)} for k, v in totals.items()],
                "daily_gpu_hours": accounting.daily(records, by, since, until) if (until - since).days <= 366 else None,
                "records": len(records),
            }
        )


class QueueHandler(GpuhubAPIHandler):
    async def get(self):
        _require(self, READ)
        queue = self.pool.queue
        self.write_json({"waiting": views.queue_rows(queue.tickets(), queue.lines(), self._now())})


class QueueEntryHandler(GpuhubAPIHandler):
    async def delete(self, number: str):
        _require(self, ADMIN)
        ticket = self.pool.queue.remove(int(number), self.current_user.name)
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
        if self.current_user is None:
            raise web.HTTPError(403, "Missing or invalid credentials.")
        user = self.find_user(payloads.parse_name("user", name))
        filters = self.parsed_scopes.get("users:activity")
        if user is None or filters is None or not check_scope_filter(filters, user.orm_user, "user"):
            raise web.HTTPError(403, f"Action is not authorized with current scopes; requires users:activity for {name}")
        self.write_json(
            {
                "notices": [
                    {"level": n.level, "message": n.message, "since": views.iso(n.since), "source": source}
                    for source, n in self.pool.watch.notices_of(user.name)
                ]
            }
        )

    async def post(self, name: str):
        _require(self, ADMIN)
        name = payloads.parse_name("user", name)
        data = payloads.parse_json_object(self.request.body)
        source = payloads.parse_choice("source", data.get("source"), POSTED_SOURCES)
        level = payloads.parse_choice("level", data.get("level"), ("info", "warn", "stop"))
        message = data.get("message")
        if not isinstance(message, str) or not 0 < len(message) <= 1000:
            raise BadRequest("message", "Accepted: text of 1 to 1000 characters")
        self.pool.watch.post(name, source, level, message)
        self.set_status(204)
        self.finish()

    async def delete(self, name: str):
        _require(self, ADMIN)
        name = payloads.parse_name("user", name)
        source = payloads.parse_choice("source", self.get_argument("source", ""), POSTED_SOURCES)
        self.pool.watch.clear(name, source)
        self.set_status(204)
        self.finish()


class GpuhubPageHandler(BaseHandler):
    """A gpuhub page: for people (services use the API), fetched with a cookie or a token."""

    _accept_token_auth = True  # scripts and tests may fetch the page with a token, as /hub/metrics

    def initialize(self, settings: Settings):
        self.site = settings

    def _require_person(self, page: str, api: str) -> None:
        if self.current_user.kind != "user":  # JupyterHub's pages are for people; services use the API
            raise web.HTTPError(403, f"The {page} is for people; services use {api}")


class AdminPageHandler(GpuhubPageHandler):
    @web.authenticated
    async def get(self):
        _require(self, READ)
        self._require_person("GPU admin page", "/hub/api/gpuhub/v1")
        html = await self.render_template(
            "gpuhub-admin.html",
            can_change=ADMIN in self.expanded_scopes,
            profiles=[p.name for p in self.site.profiles],
            week=accounting.week_text(self.site.accounting.week),
        )
        self.finish(html)


def handlers(settings: Settings) -> list[tuple]:
    """The routes, for ``JupyterHub.extra_handlers`` (under the hub's prefix, ``/hub/``)."""
    from .sessionapi import routes as session_routes

    kw = {"settings": settings}
    return session_routes(settings) + [
        (rf"{API}/gpus", GpusHandler, kw),
        (rf"{API}/gpus/([^/]+)/free", FreeHandler, kw),
        (rf"{API}/quotas", QuotasHandler, kw),
        (rf"{API}/quotas/([^/]+)(?:/([^/]+))?", QuotaHandler, kw),
        (rf"{API}/users/([^/]+)/quota", EffectiveQuotaHandler, kw),
        (rf"{API}/usage", UsageHandler, kw),
        (rf"{API}/queue", QueueHandler, kw),
        (rf"{API}/queue/(\d+)", QueueEntryHandler, kw),
        (rf"{API}/notices/([^/]+)", NoticesHandler, kw),
        (r"/gpuhub/admin", AdminPageHandler, kw),
        (r"/gpuhub/static/(.*)", web.StaticFileHandler, {"path": STATIC}),
    ]
