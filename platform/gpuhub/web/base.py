"""What every gpuhub handler shares: the hub's services, one JSON error shape
(``{"status": 400, "error": "bad-request", "field": "max_gpus", "message": "..."}``), and pages for
people only."""

from __future__ import annotations

import json

from jupyterhub.apihandlers.base import APIHandler
from jupyterhub.handlers.base import BaseHandler
from jupyterhub.scopes import check_scope_filter
from tornado import web

from ..config.schema import Settings
from ..contract import API_PREFIX
from ..hub.services import Services
from ..policy.errors import SpawnRefused
from .payloads import BadRequest, parse_name
from . import views
from .scopes import ADMIN, READ

API = "/api" + API_PREFIX  # /hub/api/gpuhub/v1
ERRORS = {400: "bad-request", 403: "forbidden", 404: "not-found", 405: "method-not-allowed", 409: "conflict"}


class GpuhubAPIHandler(APIHandler):
    def initialize(self, settings: Settings):
        self.site = settings
        self.gpuhub = Services.for_settings(settings)  # (JupyterHub's handlers have their own ``services``)

    def write_error(self, status_code, **kwargs):
        exc = kwargs.get("exc_info", (None, None, None))[1]
        field = None
        if isinstance(exc, BadRequest):
            status_code, field, message = 400, exc.field, str(exc)
        elif isinstance(exc, web.HTTPError) and exc.log_message:
            message = exc.log_message % exc.args if exc.args else exc.log_message
        else:
            message = self._reason
        if status_code >= 500 and not isinstance(exc, SpawnRefused):  # a refusal's words are for people
            message = "gpuhub: internal error; the hub log has the details"
        self.set_status(status_code)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"status": status_code, "error": ERRORS.get(status_code, "error"), "field": field, "message": message}))

    def log_exception(self, typ, value, tb):
        if isinstance(value, BadRequest):  # the client's mistake, answered with 400: not a hub error
            self.log.warning("gpuhub API %s %s: 400 %s", self.request.method, self.request.path, value)
            return
        super().log_exception(typ, value, tb)

    def write_json(self, data) -> None:
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(data))

    async def effective_quota_row(self, user) -> dict:
        """``user``'s effective quota, each limit with its source, and their GPU-hours this week (``views.effective_row``)."""
        groups = [g.name for g in user.groups]
        quota = await self.gpuhub.quotas.effective(user.name, groups)
        used = await self.gpuhub.quotas.used_this_week(user.name) / 3600
        return views.effective_row(user.name, groups, quota, used, self.site.accounting.week)

    def own_or_viewer(self, name: str):
        """The hub user ``name`` when the request is that person's own (their session or a token of
        theirs holding ``read:servers`` for them) or a GPU viewer's or admin's (``custom:gpuhub:read``);
        else 403. Services that hold ``read:servers`` for everyone (the idle culler) do not see people's
        quotas and usage this way."""
        if self.current_user is None:
            raise web.HTTPError(403, "Missing or invalid credentials.")
        if READ in self.expanded_scopes:
            user = self.find_user(parse_name("user", name))
            if user is None:
                raise BadRequest("user", f"no user {name!r} on this hub. Accepted: an existing username")
            return user
        if getattr(self.current_user, "kind", "") == "user" and self.current_user.name == name:
            return self.user_allowed(name, "read:servers")
        raise web.HTTPError(403, f"Only {name} themselves, a GPU viewer or a GPU admin ({READ}) may read this")

    def own_or_admin(self, name: str, what: str):
        """The hub user ``name`` when the request is theirs with ``servers`` for them (what they change
        reaches their servers: SSH keys, jobs), or a GPU admin's; else 403 naming ``what``."""
        if self.current_user is None:
            raise web.HTTPError(403, "Missing or invalid credentials.")
        if ADMIN in self.expanded_scopes:
            return self.own_or_viewer(name)
        if getattr(self.current_user, "kind", "") == "user" and self.current_user.name == name:
            return self.user_allowed(name, "servers")
        raise web.HTTPError(403, f"Only {name} themselves or a GPU admin ({ADMIN}) may change {name}'s {what}")

    def user_allowed(self, name: str, scope: str):
        """The hub user ``name`` if the request's token or session holds ``scope`` for them (JupyterHub's
        own scopes: e.g. ``users:activity``, which the person and their servers' tokens hold), else 403."""
        if self.current_user is None:
            raise web.HTTPError(403, "Missing or invalid credentials.")
        user = self.find_user(parse_name("user", name))
        filters = self.parsed_scopes.get(scope)
        if user is None or filters is None or not check_scope_filter(filters, user.orm_user, "user"):
            raise web.HTTPError(403, f"Action is not authorized with current scopes; requires {scope} for {name}")
        return user

    def now(self):
        return self.gpuhub.clock()


class GpuhubPageHandler(BaseHandler):
    """A gpuhub page: for people (services use the API), fetched with a cookie or a token."""

    _accept_token_auth = True  # scripts and tests may fetch the page with a token, as /hub/metrics

    def initialize(self, settings: Settings):
        self.site = settings

    def require_person(self, page: str, api: str) -> None:
        if self.current_user.kind != "user":  # JupyterHub's pages are for people; services use the API
            raise web.HTTPError(403, f"The {page} is for people; services use {api}")
