"""The routes of gpuhub's pages and API (under ``/hub/``), served in the hub process by the authenticator (``gpuhub.hub.auth.GPUHubPages``)."""

from __future__ import annotations

import os

from tornado import web

from ..config.schema import Settings
from . import admin, jobs, nodes, sessions, ssh, user
from .base import API

STATIC = os.path.join(os.path.dirname(__file__), "static")


def handlers(settings: Settings) -> list[tuple]:
    kw = {"settings": settings}
    return [
        (rf"{API}/sessions", sessions.SessionListHandler, kw),
        (rf"{API}/sessions/([^/]+)", sessions.SessionHandler, kw),
        (rf"{API}/sessions/([^/]+)/roster", sessions.RosterHandler, kw),
        (rf"{API}/sessions/([^/]+)/roster/([^/]+)", sessions.RosterEntryHandler, kw),
        (rf"{API}/sessions/([^/]+)/(prewarm|stop)", sessions.SessionActionHandler, kw),
        (rf"{API}/sessions/([^/]+)/done", sessions.SessionDoneHandler, kw),
        (r"/gpuhub/sessions", sessions.SessionsPageHandler, kw),
        (rf"{API}/gpus", admin.GpusHandler, kw),
        (rf"{API}/gpus/([^/]+)/free", admin.FreeHandler, kw),
        (rf"{API}/quotas", admin.QuotasHandler, kw),
        (rf"{API}/quotas/([^/]+)(?:/([^/]+))?", admin.QuotaHandler, kw),
        (rf"{API}/users/([^/]+)/quota", admin.EffectiveQuotaHandler, kw),
        (rf"{API}/users/([^/]+)/wait", user.WaitHandler, kw),
        (rf"{API}/users/([^/]+)/overview", user.OverviewHandler, kw),
        (rf"{API}/users/([^/]+)/ssh-keys", ssh.SshKeysHandler, kw),
        (rf"{API}/users/([^/]+)/ssh-keys/(\d{{1,12}})", ssh.SshKeyHandler, kw),
        (rf"{API}/users/([^/]+)/jobs", jobs.JobsHandler, kw),
        (rf"{API}/users/([^/]+)/jobs/(\d{{1,12}})", jobs.JobHandler, kw),
        (rf"{API}/users/([^/]+)/jobs/(\d{{1,12}})/output", jobs.JobOutputHandler, kw),
        (rf"{API}/jobs", jobs.AllJobsHandler, kw),
        (rf"{API}/usage", admin.UsageHandler, kw),
        (rf"{API}/usage/readings", admin.UsageReadingsHandler, kw),
        (rf"{API}/usage/idle", admin.IdleHoldersHandler, kw),
        (rf"{API}/queue", admin.QueueHandler, kw),
        (rf"{API}/queue/(\d+)", admin.QueueEntryHandler, kw),
        (rf"{API}/notices/([^/]+)", admin.NoticesHandler, kw),
        (rf"{API}/nodes", nodes.NodesHandler, kw),
        (rf"{API}/activity", nodes.ActivityHandler, kw),
        (rf"{API}/nodes/([^/]+)/report", nodes.NodeReportHandler, kw),
        (rf"{API}/homes", nodes.HomesHandler, kw),
        (rf"{API}/homes/([^/]+)/move", nodes.HomeMoveHandler, kw),
        (r"/gpuhub/admin", admin.AdminPageHandler, kw),
        (r"/gpuhub/static/(.*)", web.StaticFileHandler, {"path": STATIC}),
    ]
