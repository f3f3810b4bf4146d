"""Classroom sessions' servers: prewarm in the ``prewarm_minutes`` before a window (and when an
instructor asks during a window), stop when
asked or at the end of a window (``stop_at_end``). Through the hub's API, at most
``[sessions] prewarm_concurrency`` requests at a time; each start also waits its turn under
``[admission]`` in the hub. A student's default server is the session's server; a student already
running something is left alone (reported as such)."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timedelta

from ..config.schema import Settings
from ..contract import API_PREFIX
from ..policy.sessions import Session, open_window
from .hubapi import HubApiError, q

END_GRACE = timedelta(hours=1)  # a window that ended longer ago than this (agent down) is not acted on


class SessionRunner:
    def __init__(self, api, settings: Settings, log):
        self.api = api
        self.settings = settings
        self.log = log
        self.prewarmed: set[tuple[str, datetime]] = set()
        self.ended: set[tuple[str, datetime]] = set()

    async def round(self, now: datetime) -> list[dict]:
        """One look at every session; the reports of what it started or stopped."""
        reports = []
        for row in (await self.api.get(f"{API_PREFIX}/sessions"))["sessions"]:
            session = Session.from_json(row)
            window = open_window(session, now)
            requested = row.get("prewarm_requested")
            # scheduled: in the lead before the window (an agent restarted mid-class restarts nobody)
            due = window is not None and session.prewarm_minutes and now < window.start and (session.name, window.start) not in self.prewarmed
            if window is not None and (due or requested):
                self.prewarmed.add((session.name, window.start))
                reports.append(await self.prewarm(session, "requested by an instructor" if requested else "scheduled"))
            if requested:
                await self.api.call("POST", f"{API_PREFIX}/sessions/{q(session.name)}/done", {"action": "prewarm", "requested": requested})
            if row.get("stop_requested"):
                reports.append(await self.stop_all(session, "requested by an instructor"))
                await self.api.call("POST", f"{API_PREFIX}/sessions/{q(session.name)}/done", {"action": "stop", "requested": row["stop_requested"]})
            if session.stop_at_end and window is None:
                for w in session.windows:
                    if w.end <= now < w.end + END_GRACE and (session.name, w.end) not in self.ended:
                        self.ended.add((session.name, w.end))
                        reports.append(await self.stop_all(session, f"its window ended at {w.end:%H:%M} UTC"))
        return reports

    async def _each(self, usernames: list[str], act, done: list[str], failed: dict[str, str]) -> None:
        """``act(username)`` for each, ``[sessions] prewarm_concurrency`` at a time: who it worked for,
        and why it failed for the others."""
        limit = asyncio.Semaphore(self.settings.sessions.prewarm_concurrency)

        async def one(username: str) -> None:
            async with limit:
                try:
                    await act(username)
                    done.append(username)
                except (HubApiError, TimeoutError) as e:
                    failed[username] = str(e)

        await asyncio.gather(*(one(u) for u in usernames))

    async def _roster(self, session: Session) -> list[dict]:
        return (await self.api.get(f"{API_PREFIX}/sessions/{q(session.name)}"))["roster"]

    async def prewarm(self, session: Session, why: str) -> dict:
        """Start every roster student's server; wait until each is ready or failed."""
        started = time.monotonic()
        roster = await self._roster(session)
        todo = [r["username"] for r in roster if not r["server"]["running"]]
        report = {"session": session.name, "action": "prewarm", "why": why, "ready": [], "failed": {}, "already_running": len(roster) - len(todo)}
        timeout = self.settings.spawner.start_timeout + self.settings.admission.queue_timeout + self.settings.gpus.queue_timeout

        async def one(username: str) -> None:
            await self.api.call("POST", f"/users/{q(username)}/server", {"session": session.name})
            await self._wait_ready(username, timeout)

        self.log.info(
            "gpuhub-agent session %s: prewarm (%s): starting %d server(s), %d already running", session.name, why, len(todo), report["already_running"]
        )
        await self._each(todo, one, report["ready"], report["failed"])
        report["seconds"] = round(time.monotonic() - started, 1)
        self.log.info(
            "gpuhub-agent session %s: prewarm done in %.1fs: %d ready, %d failed%s",
            session.name, report["seconds"], len(report["ready"]), len(report["failed"]),
            "".join(f"; {u}: {m}" for u, m in sorted(report["failed"].items())[:5]),
        )
        return report

    async def _wait_ready(self, username: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            model = await self.api.get(f"/users/{q(username)}")
            server = (model.get("servers") or {}).get("")
            if not server:
                raise HubApiError(500, "the server stopped while starting (the hub log says why)")
            if server.get("ready"):
                return
            await asyncio.sleep(1)
        raise TimeoutError(f"not ready after {timeout:.0f}s")

    async def stop_all(self, session: Session, why: str) -> dict:
        """Stop the servers started for this session (their files stay); other servers are left."""
        roster = await self._roster(session)
        mine = [r["username"] for r in roster if r["server"]["running"] and r["server"].get("session") == session.name]
        report = {"session": session.name, "action": "stop", "why": why, "stopped": [], "failed": {}}

        async def one(username: str) -> None:
            await self.api.call("DELETE", f"/users/{q(username)}/server")

        await self._each(mine, one, report["stopped"], report["failed"])
        self.log.info("gpuhub-agent session %s: stop all (%s): %d stopped, %d failed", session.name, why, len(report["stopped"]), len(report["failed"]))
        return report

