"""One round of the agent: the sessions, then the GPU-idle reclaim."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime

from ..config.schema import Settings
from .classes import SessionRunner
from .hubapi import HubApi
from .reclaim import Reclaimer

log = logging.getLogger("gpuhub.agent")
PAGE = 200


async def active_users(api: HubApi) -> list[dict]:
    """Every user with a server running or starting (the hub's API pages by ``PAGE``)."""
    users, offset = [], 0
    while True:
        page = await api.get(f"/users?state=active&limit={PAGE}&offset={offset}")
        users += page
        if len(page) < PAGE:
            return users
        offset += PAGE


class Agent:
    def __init__(self, api: HubApi, settings: Settings, read_activity: Callable, clock: Callable[[], datetime]):
        self.api = api
        self.clock = clock
        self.sessions = SessionRunner(api, settings, log)
        self.reclaim = Reclaimer(api, settings.reclaim, read_activity, log)
        self._reclaimed_at: datetime | None = None
        self.reclaim_interval = settings.reclaim.check_interval

    async def round(self) -> dict:
        """Sessions every round; the reclaim every ``[reclaim] check_interval`` (by the agent's clock)."""
        now = self.clock()
        result = {"sessions": await self.sessions.round(now), "reclaim": None}
        if self._reclaimed_at is None or (now - self._reclaimed_at).total_seconds() >= self.reclaim_interval:
            self._reclaimed_at = now
            result["reclaim"] = await self.reclaim.round(now, await active_users(self.api))
        return result
