"""gpuhub's custom RBAC scopes, and the check handlers make against them."""

from __future__ import annotations

from tornado import web

READ = "custom:gpuhub:read"
SESSIONS = "custom:gpuhub:sessions"
ADMIN = "custom:gpuhub:admin"
REPORT = "custom:gpuhub:report-nodes"
CUSTOM_SCOPES = {
    READ: {"description": "See gpuhub's GPUs and who holds them, quotas, GPU-hours usage, the wait line and every session."},
    SESSIONS: {"description": "Create classroom sessions; change, prewarm and stop the sessions you are an instructor of."},
    ADMIN: {
        "description": "Change gpuhub quotas, force-free a GPU, take a spawn out of the wait line, manage every session.",
        "subscopes": [READ, SESSIONS],
    },
    REPORT: {"description": "Report a Swarm node's GPUs to the hub (gpuhub's node reporters only)."},
}


def require(handler, scope: str) -> None:
    """JupyterHub's ``needs_scope``, for scopes defined after this module is imported (custom scopes
    are registered at hub start, and ``needs_scope`` checks names when a module is imported)."""
    if handler.current_user is None:
        raise web.HTTPError(403, "Missing or invalid credentials.")
    if scope not in handler.expanded_scopes:
        raise web.HTTPError(403, f"Action is not authorized with current scopes; requires {scope}")
