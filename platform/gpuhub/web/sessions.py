"""The classroom sessions' REST API and page (``/hub/api/gpuhub/v1/sessions``, ``/hub/gpuhub/sessions``).

Scope ``custom:gpuhub:sessions`` (the ``gpuhub-instructor`` role): create sessions, and change,
prewarm and stop those you are an instructor of. ``custom:gpuhub:admin``: every session.
``custom:gpuhub:read``: see every session. Prewarm and stop are carried out by the ``gpuhub-agent``
service (it starts and stops servers through the hub's own API, with bounded concurrency): the API
records the request and answers 202.
"""

from __future__ import annotations

from urllib.parse import quote

from jupyterhub import orm
from tornado import web

from ..contract import iso
from ..policy.containers import group_network_name
from ..policy.sessions import RosterError, Session, device_conflict, import_report, next_window, open_window, parse_roster
from . import payloads
from .base import GpuhubAPIHandler, GpuhubPageHandler
from .payloads import BadRequest
from .scopes import ADMIN, READ, SESSIONS

MAX_ROSTER_BYTES = 4 * 1024 * 1024


def start_link(session: str) -> str:
    """The link that starts a student's server for ``session`` (``policy.form``: a GET that starts)."""
    return f"/hub/spawn?session={quote(session, safe='')}"


def window_fields(session: Session, now) -> dict:
    """Whether ``session`` is open now and until when, and when it opens next, as the API says it."""
    window, upcoming = open_window(session, now), next_window(session, now)
    return {
        "open_now": window is not None,
        "open_until": iso(window.end) if window else None,
        "next_start": iso(upcoming.start) if upcoming else None,
    }


def session_row(session: Session, status: dict, now) -> dict:
    return {
        **session.to_json(),
        **window_fields(session, now),
        "roster_size": status.get("roster", 0),
        "created": iso(status.get("created")),
        "created_by": status.get("created_by", ""),
        "prewarm_requested": iso(status.get("prewarm_requested")),
        "stop_requested": iso(status.get("stop_requested")),
        "start_link": start_link(session.name),
    }


class SessionsAPIHandler(GpuhubAPIHandler):
    def _sees_all(self) -> bool:
        return bool({READ, ADMIN} & set(self.expanded_scopes))

    def _require_any(self) -> None:
        if self.current_user is None:
            raise web.HTTPError(403, "Missing or invalid credentials.")
        if not ({READ, ADMIN, SESSIONS} & set(self.expanded_scopes)):
            raise web.HTTPError(403, f"Action is not authorized with current scopes; requires {SESSIONS}")

    def _require_manager(self, session: Session) -> None:
        """Change ``session``: a GPU admin, or one of its instructors holding the sessions scope."""
        self._require_any()
        scopes = set(self.expanded_scopes)
        if ADMIN in scopes or (SESSIONS in scopes and self.current_user.name in session.instructors):
            return
        raise web.HTTPError(
            403, f"Only the instructors of session {session.name!r} ({', '.join(session.instructors)}) or a GPU admin may change it"
        )

    async def _session(self, name: str) -> Session:
        session = await self.gpuhub.sessions.get(payloads.parse_session_name(name))
        if session is None:
            raise web.HTTPError(404, f"no session {name!r}")
        if not self._sees_all() and self.current_user.name not in session.instructors:
            raise web.HTTPError(404, f"no session {name!r}")  # not one of yours: as if it did not exist
        return session


class SessionListHandler(SessionsAPIHandler):
    async def get(self):
        self._require_any()
        sessions = await self.gpuhub.sessions.all()
        status = await self.gpuhub.sessions.status()
        now = self.now()
        visible = [s for s in sessions if self._sees_all() or self.current_user.name in s.instructors]
        inventory = await self.gpuhub.allocation.known_inventory()
        devices = inventory.device_rows()
        self.write_json(
            {
                "sessions": [session_row(s, status.get(s.name, {}), now) for s in visible],
                "profiles": [{"name": p.name, "title": p.title, "gpu_mode": p.gpu_mode} for p in self.site.profiles],
                "datasets": [d.name for d in self.site.datasets],
                "devices": [
                    {"index": index, "uuid": uuid, "name": gpu.name, "mig": [i for i, _, g, m in devices if g is gpu and m is not None]}
                    for index, uuid, gpu, mig in devices
                    if mig is None
                ],
                "simulated": inventory.simulated,
                "can_create": bool({SESSIONS, ADMIN} & set(self.expanded_scopes)),
            }
        )


class SessionHandler(SessionsAPIHandler):
    async def get(self, name: str):
        self._require_any()
        session = await self._session(name)
        status = (await self.gpuhub.sessions.status()).get(session.name, {})
        roster = await self.gpuhub.sessions.roster(session.name) or []
        servers = self._servers([r["username"] for r in roster])
        for r in roster:
            r["added"] = iso(r["added"])
            r["server"] = servers.get(r["username"], {"running": False, "session": False})
        self.write_json({**session_row(session, status, self.now()), "roster": roster})

    def _servers(self, usernames: list[str]) -> dict[str, dict]:
        """Each student's default server: running? for which session? (one query per 500)"""
        found = {}
        for i in range(0, len(usernames), 500):
            chunk = usernames[i : i + 500]
            rows = (
                self.db.query(orm.User.name, orm.Spawner.server_id, orm.Spawner.user_options)
                .join(orm.Spawner, orm.Spawner.user_id == orm.User.id)
                .filter(orm.User.name.in_(chunk), orm.Spawner.name == "")
            )
            for username, server_id, options in rows:
                # the options of the last start request, stored by the hub before they were checked (a
                # refused one too): they say which session a server runs for only while it runs
                running = server_id is not None
                session = options.get("session") if running and isinstance(options, dict) else None
                found[username] = {"running": running, "session": session if isinstance(session, str) else None}
        return found

    async def put(self, name: str):
        sessions = self.gpuhub.sessions
        name = payloads.parse_session_name(name)
        existing = await sessions.get(name)
        self._require_any()
        if existing is not None:
            self._require_manager(existing)
        elif not ({SESSIONS, ADMIN} & set(self.expanded_scopes)):
            raise web.HTTPError(403, f"Action is not authorized with current scopes; requires {SESSIONS}")
        data = payloads.parse_json_object(self.request.body)
        session = payloads.parse_session(name, data, self.site, await self.gpuhub.allocation.known_inventory(), self.current_user.name)
        conflict = device_conflict(session, await sessions.all())
        if conflict:
            raise web.HTTPError(409, f"devices: {conflict}. Pick other devices or other times")
        self._ensure_group(session.group)
        created = await sessions.save(session, self.current_user.name)
        self.log.info("gpuhub sessions %s: %s session %s: %s", self.current_user.name, "created" if created else "changed", name, session.to_json())
        status = (await sessions.status()).get(name, {})
        self.set_status(201 if created else 200)
        self.write_json(session_row(session, status, self.now()))

    def _ensure_group(self, group: str) -> orm.Group:
        found = orm.Group.find(self.db, group)
        if found is None:
            found = orm.Group(name=group)
            self.db.add(found)
            self.db.commit()
        return found

    async def delete(self, name: str):
        session = await self._session(name)
        self._require_manager(session)
        await self.gpuhub.sessions.delete(session.name)
        network = group_network_name(self.site, session)
        if network:
            await self.gpuhub.engine.remove_network(network)
        self.log.info("gpuhub sessions %s: deleted session %s (its group %s and its students' files stay)", self.current_user.name, session.name, session.group)
        self.set_status(204)
        self.finish()


class RosterHandler(SessionsAPIHandler):
    """``POST`` a CSV (``username[,name[,email]]``, optional header) as ``text/csv``, or as
    ``{"csv": "..."}`` (what the page sends): the import report. Students new
    to the hub are created as users; every student on the roster is put in the session's group."""

    async def post(self, name: str):
        session = await self._session(name)
        self._require_manager(session)
        body = self.request.body
        if self.request.headers.get("Content-Type", "").startswith("application/json"):
            # the page's upload: JupyterHub refuses a cookie-authenticated POST of text/csv (CSRF)
            text = payloads.parse_json_object(body, MAX_ROSTER_BYTES * 2).get("csv")
            if not isinstance(text, str):
                raise BadRequest("csv", "missing. Accepted: {\"csv\": \"username,name,email\\n...\"}, or the CSV itself as text/csv")
            body = text.encode("utf-8")
        if len(body) > MAX_ROSTER_BYTES:
            raise BadRequest("roster", f"larger than {MAX_ROSTER_BYTES // 1024**2} MiB. Accepted: a smaller CSV file")
        try:
            parsed = parse_roster(body, self._normalise_username, self.site.sessions.max_roster_rows)
        except RosterError as e:
            raise BadRequest("roster", str(e)) from None
        result = await self.gpuhub.sessions.import_roster(session.name, parsed.entries)
        if result is None:
            raise web.HTTPError(404, f"no session {name!r}")
        added, present = result
        self._enrol([e.username for e in parsed.entries], session.group)
        report = import_report(parsed, added, present)
        self.log.info(
            "gpuhub sessions %s: roster of %s: %d added, %d already present, %d duplicate, %d invalid rows",
            self.current_user.name, session.name, report["added"], report["already_present"], report["duplicates"], report["invalid"],
        )
        self.write_json(report)

    def _normalise_username(self, raw: str) -> str:
        try:
            payloads.parse_name("username", raw)
        except BadRequest as e:
            raise ValueError(e.message) from None
        name = self.authenticator.normalize_username(raw)
        if not self.authenticator.validate_username(name):
            raise ValueError("not a valid username on this hub")
        return name

    def _enrol(self, usernames: list[str], group_name: str) -> None:
        """Create the users the hub does not know yet and put everyone in the course group: one commit."""
        group = orm.Group.find(self.db, group_name) or orm.Group(name=group_name)
        existing = {}
        for i in range(0, len(usernames), 500):
            for u in self.db.query(orm.User).filter(orm.User.name.in_(usernames[i : i + 500])):
                existing[u.name] = u
        user_role = orm.Role.find(self.db, "user")
        members = set(u.name for u in group.users)
        for username in usernames:
            user = existing.get(username)
            if user is None:
                user = orm.User(name=username)
                user.roles.append(user_role)  # what JupyterHub's own user creation gives a user
                self.db.add(user)
            if username not in members:
                group.users.append(user)
                members.add(username)
        self.db.add(group)
        self.db.commit()


class RosterEntryHandler(SessionsAPIHandler):
    async def delete(self, name: str, username: str):
        session = await self._session(name)
        self._require_manager(session)
        if not await self.gpuhub.sessions.remove_student(session.name, username):
            raise web.HTTPError(404, f"{username!r} is not on the roster of {session.name!r}")
        self.set_status(204)
        self.finish()


class SessionActionHandler(SessionsAPIHandler):
    """``POST .../prewarm`` or ``.../stop``: the agent starts (or stops, files kept) every roster
    student's server within ``[sessions] check_interval`` seconds; 202 with when it was asked."""

    async def post(self, name: str, action: str):
        session = await self._session(name)
        self._require_manager(session)
        if action == "prewarm" and open_window(session, self.now()) is None:
            upcoming = next_window(session, self.now())
            raise web.HTTPError(
                409,
                f"session {session.name!r} is not open now"
                + (f"; its servers can be prewarmed from {iso(upcoming.start - session.lead)}" if upcoming else " and has no window left"),
            )
        await self.gpuhub.sessions.request(session.name, action)
        self.log.info("gpuhub sessions %s: asked the agent to %s the servers of session %s", self.current_user.name, action, session.name)
        self.set_status(202)
        self.write_json({"session": session.name, "action": action, "requested": iso(self.now())})


class SessionDoneHandler(SessionsAPIHandler):
    """The agent reports a request carried out: ``{"action": "prewarm", "requested": "...Z"}``."""

    async def post(self, name: str):
        session = await self._session(name)
        if ADMIN not in self.expanded_scopes:
            raise web.HTTPError(403, f"Action is not authorized with current scopes; requires {ADMIN}")
        data = payloads.parse_json_object(self.request.body)
        action = payloads.parse_choice("action", data.get("action"), ("prewarm", "stop"))
        requested = payloads.parse_time("requested", str(data.get("requested")))
        await self.gpuhub.sessions.done(session.name, action, requested)
        self.set_status(204)
        self.finish()


class SessionsPageHandler(GpuhubPageHandler):
    @web.authenticated
    async def get(self):
        scopes = set(self.expanded_scopes)
        if not ({READ, SESSIONS} & scopes):
            raise web.HTTPError(403, f"The sessions page is for instructors and GPU admins; requires {SESSIONS}")
        self.require_person("sessions page", "/hub/api/gpuhub/v1/sessions")
        self.finish(await self.render_template("gpuhub-sessions.html", can_create=SESSIONS in scopes))

