"""The classroom-session service: sessions and rosters (``db.sessions``), who may start a session now
(``for_start``), and the wake-ups reservations need.

A session's reserved devices are usable by its students, and kept from everyone else, from its
prewarm lead before each window to the window's end. So any change of a session (saved, deleted)
and every window boundary can let a waiter in: ``save``/``delete`` call the listeners given to
``changed`` themselves, and ``run`` (started with the hub) calls them at each boundary.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime

from ..db.sessions import SessionStore
from ..policy.errors import SpawnRefused
from ..policy.sessions import RosterEntry, Session, closed_message
from ..worker import Worker
from .database import DatabaseOpener, StoreCalls
from .log import log
from .waitqueue import Listeners

MAX_SLEEP_SECONDS = 60  # a boundary is never noticed later than this (the clock may be moved in tests)


def boundaries(sessions: list[Session]) -> list[datetime]:
    """Every moment a reservation starts or ends: each window's start less its prewarm lead, and its end."""
    return sorted({t for s in sessions for w in s.windows for t in (w.start - s.lead, w.end)})


class SessionService:
    def __init__(self, database: DatabaseOpener, clock: Callable[[], datetime]):
        self._run = StoreCalls(database, SessionStore, Worker("gpuhub-sessions"))
        self._clock = clock
        self.changed = Listeners()  # called after every change (Services wires the GPU lines' wake-up)

    # --- reads ---------------------------------------------------------------------------------------
    async def all(self) -> list[Session]:
        return await self._run("sessions")

    async def get(self, name: str) -> Session | None:
        return await self._run("get", name)

    async def status(self) -> dict[str, dict]:
        return await self._run("status")

    async def roster(self, name: str) -> list[dict] | None:
        return await self._run("roster", name)

    async def sessions_of(self, username: str) -> list[Session]:
        return await self._run("sessions_of", username)

    async def for_start(self, username: str, name: str) -> Session:
        """The session ``username`` asks to start, if they may now: on its roster (or an instructor of
        it) and inside one of its windows. Otherwise a refusal saying why (and when it opens next)."""
        session = await self.get(name)
        if session is None:
            raise SpawnRefused(400, f"No such session: {name!r}. Your instructor's start link names it", why="session")
        label = session.title or session.name
        if username not in session.instructors and not await self._run("on_roster", name, username):
            teachers = ", ".join(session.instructors) or "its instructor"
            raise SpawnRefused(
                403,
                f"You are not on the roster of session {label!r}, so you cannot start its server."
                f" Ask {teachers} to add {username!r} to the roster",
                why="roster",
            )
        message = closed_message(session, self._clock())
        if message:
            raise SpawnRefused(403, message, why="window")
        return session

    # --- changes -------------------------------------------------------------------------------------
    async def save(self, session: Session, by: str) -> bool:
        """Create or replace ``session`` (its roster stays); True if it was created."""
        created = await self._run("save", session, by)
        self.changed()  # a reservation may have moved
        return created

    async def delete(self, name: str) -> bool:
        deleted = await self._run("delete", name)
        if deleted:
            self.changed()
        return deleted

    async def import_roster(self, name: str, entries: list[RosterEntry]):
        return await self._run("import_roster", name, entries)

    async def remove_student(self, name: str, username: str) -> bool:
        return await self._run("remove_student", name, username)

    async def request(self, name: str, action: str) -> bool:
        """Ask the agent to ``"prewarm"`` or ``"stop"`` the session's servers."""
        return await self._run("request", name, action)

    async def done(self, name: str, action: str, requested: datetime) -> None:
        await self._run("done", name, action, requested)

    # --- the boundaries of windows -----------------------------------------------------------------
    async def run(self) -> None:
        """Forever: wake the listeners at each window boundary (a reservation starts or ends)."""
        while True:
            try:
                now = self._clock()
                upcoming = [t for t in boundaries(await self.all()) if t > now]
                wait = (upcoming[0] - now).total_seconds() if upcoming else MAX_SLEEP_SECONDS
                await asyncio.sleep(min(max(wait, 0.5), MAX_SLEEP_SECONDS))
                if upcoming and self._clock() >= upcoming[0]:
                    log.info("gpuhub sessions: a window boundary passed (%s): the GPU lines try again", upcoming[0])
                    self.changed()
            except Exception:  # the database away, say: try again next round
                log.exception("gpuhub sessions: reading the windows failed; trying again")
                await asyncio.sleep(MAX_SLEEP_SECONDS)
