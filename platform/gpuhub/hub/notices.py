"""The notice service: what a user's JupyterLab shows in its status bar (weekly GPU-hours running
out, an idle GPU about to be reclaimed). In the hub's memory: notices describe the present, and are
posted again by whoever owns them (the accounting watch, the ``gpuhub-agent`` service) each round."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

HUB_SOURCE = "gpu-hours"  # the hub's own notices (the weekly GPU-hours); services post under theirs
POSTED_SOURCES = ("reclaim", "session")  # sources services may post through the API


@dataclass(frozen=True)
class Notice:
    level: str  # "info", "warn" or "stop"
    message: str
    since: datetime


class NoticeService:
    def __init__(self, clock: Callable[[], datetime]):
        self._clock = clock
        self._notices: dict[tuple[str, str], Notice] = {}  # (username, source) -> notice

    def post(self, username: str, source: str, level: str, message: str) -> bool:
        """Show ``message`` to ``username``; True if it is new (not the same message again). A message
        posted again keeps its first ``since``."""
        old = self._notices.get((username, source))
        same = old is not None and old.message == message
        self._notices[(username, source)] = Notice(level, message, old.since if same else self._clock())
        return not same

    def clear(self, username: str, source: str) -> None:
        self._notices.pop((username, source), None)

    def users_with(self, source: str) -> list[str]:
        return [user for user, s in self._notices if s == source]

    def of(self, username: str) -> list[tuple[str, Notice]]:
        """(source, notice) for ``username``: the hub's weekly GPU-hours first, then the services'."""
        mine = [(s, n) for (user, s), n in self._notices.items() if user == username]
        return sorted(mine, key=lambda e: (e[0] != HUB_SOURCE, e[0]))
