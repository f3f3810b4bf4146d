"""Classroom sessions and their rosters (``SessionStore``; tables ``gpuhub_sessions``,
``gpuhub_roster``). A session's settings are kept as one JSON document (``Session.to_json``); the
roster as rows, one per student, so an import of 10,000 names is one transaction and a re-import adds
only who is new."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session as DbSession

from ..policy.sessions import RosterEntry, Session
from .database import Database
from .models import RosterRow, SessionRow


_ALL_SPECS = select(SessionRow.__table__.c.spec).order_by(SessionRow.__table__.c.name)  # built once: on every decision's path


def all_sessions(db: DbSession) -> list[Session]:
    """Every session (inside a caller's transaction: ``AllocationStore.allocate`` reads the reservations here)."""
    return [Session.from_json(spec) for spec in db.connection().scalars(_ALL_SPECS)]


class SessionStore:
    """The sessions' queries and changes; one short transaction each."""

    def __init__(self, database: Database):
        self.database = database
        self.clock = database.clock

    def _row(self, db: DbSession, name: str) -> SessionRow | None:
        return db.scalars(select(SessionRow).where(SessionRow.name == name)).first()

    def sessions(self) -> list[Session]:
        with self.database.read() as db:
            return all_sessions(db)

    def get(self, name: str) -> Session | None:
        with self.database.read() as db:
            row = self._row(db, name)
            return Session.from_json(row.spec) if row else None

    def status(self) -> dict[str, dict]:
        """Per session: who made it, when, its roster size and pending prewarm/stop requests."""
        with self.database.read() as db:
            counts = dict(db.execute(select(RosterRow.session_id, func.count()).group_by(RosterRow.session_id)).all())
            return {
                r.name: {
                    "created": r.created,
                    "created_by": r.created_by,
                    "roster": counts.get(r.id, 0),
                    "prewarm_requested": r.prewarm_requested,
                    "stop_requested": r.stop_requested,
                }
                for r in db.scalars(select(SessionRow))
            }

    def save(self, session: Session, by: str) -> bool:
        """Create or replace ``session`` (its roster stays); True if it was created."""
        with self.database.session.begin() as db:
            now = self.clock()
            row = self._row(db, session.name)
            created = row is None
            if created:
                row = SessionRow(name=session.name, created=now, created_by=by)
                db.add(row)
            row.spec, row.updated = session.to_json(), now
            return created

    def delete(self, name: str) -> bool:
        with self.database.session.begin() as db:
            row = self._row(db, name)
            if row is None:
                return False
            db.execute(delete(RosterRow).where(RosterRow.session_id == row.id))
            db.delete(row)
            return True

    def import_roster(self, name: str, entries: list[RosterEntry]) -> tuple[list[str], list[str]] | None:
        """Add ``entries`` to the roster in one transaction: (added, already present) usernames in file
        order, or None if there is no such session. A present student's name and email are updated
        when the file gives them."""
        with self.database.session.begin() as db:
            row = self._row(db, name)
            if row is None:
                return None
            existing = {r.username: r for r in db.scalars(select(RosterRow).where(RosterRow.session_id == row.id))}
            added, present, now = [], [], self.clock()
            for e in entries:
                old = existing.get(e.username)
                if old is None:
                    db.add(RosterRow(session_id=row.id, username=e.username, name=e.name, email=e.email, added=now))
                    added.append(e.username)
                else:
                    old.name, old.email = e.name or old.name, e.email or old.email
                    present.append(e.username)
            return added, present

    def roster(self, name: str) -> list[dict] | None:
        with self.database.read() as db:
            row = self._row(db, name)
            if row is None:
                return None
            rows = db.scalars(select(RosterRow).where(RosterRow.session_id == row.id).order_by(RosterRow.username))
            return [{"username": r.username, "name": r.name, "email": r.email, "added": r.added} for r in rows]

    def remove_student(self, name: str, username: str) -> bool:
        with self.database.session.begin() as db:
            row = self._row(db, name)
            if row is None:
                return False
            result = db.execute(delete(RosterRow).where(RosterRow.session_id == row.id, RosterRow.username == username))
            return result.rowcount > 0

    def on_roster(self, name: str, username: str) -> bool:
        with self.database.read() as db:
            found = db.execute(
                select(RosterRow.id).join(SessionRow, SessionRow.id == RosterRow.session_id).where(
                    SessionRow.name == name, RosterRow.username == username
                )
            ).first()
            return found is not None

    def sessions_of(self, username: str) -> list[Session]:
        """The sessions ``username`` is on the roster or an instructor of."""
        with self.database.read() as db:
            rostered = set(
                db.scalars(
                    select(SessionRow.name).join(RosterRow, RosterRow.session_id == SessionRow.id).where(RosterRow.username == username)
                )
            )
            return [s for s in all_sessions(db) if s.name in rostered or username in s.instructors]

    def request(self, name: str, action: str) -> bool:
        """Ask the agent to ``"prewarm"`` or ``"stop"`` the session's servers now."""
        column = {"prewarm": SessionRow.prewarm_requested, "stop": SessionRow.stop_requested}[action]
        with self.database.session.begin() as db:
            # whole seconds: the agent hands the time back as ISO text to say which request it carried out
            asked = self.clock().replace(microsecond=0)
            result = db.execute(update(SessionRow).where(SessionRow.name == name).values({column: asked}))
            return result.rowcount > 0

    def done(self, name: str, action: str, requested: datetime) -> None:
        """The agent carried out the request made at ``requested`` (a newer one stays pending)."""
        column = {"prewarm": SessionRow.prewarm_requested, "stop": SessionRow.stop_requested}[action]
        with self.database.session.begin() as db:
            db.execute(update(SessionRow).where(SessionRow.name == name, column == requested).values({column: None}))

