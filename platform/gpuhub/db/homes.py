"""Which node each user's home lives on (``HomeStore``), on a Swarm with ``[engine] homes = "node"``:
written when a user's first server starts (the node it landed on), changed only by a home move."""

from __future__ import annotations

from sqlalchemy import select

from .database import Database
from .models import HomeRow
from .records import Home


def _record(row: HomeRow) -> Home:
    return Home(row.username, row.node_id, row.hostname, row.since)


class HomeStore:
    def __init__(self, db: Database):
        self.db = db

    def get(self, username: str) -> Home | None:
        with self.db.read() as session:
            row = session.get(HomeRow, username)
            return _record(row) if row else None

    def settle(self, username: str, node_id: str, hostname: str) -> Home:
        """The home of ``username`` is on ``node_id`` unless it already lives somewhere: the first
        server's node wins, a later call changes nothing (the one that lost keeps to the record)."""
        with self.db.session.begin() as session:
            row = session.get(HomeRow, username)
            if row is None:
                row = HomeRow(username=username, node_id=node_id, hostname=hostname, since=self.db.clock())
                session.add(row)
                session.flush()
            return _record(row)

    def move(self, username: str, node_id: str, hostname: str) -> Home:
        with self.db.session.begin() as session:
            row = session.get(HomeRow, username)
            if row is None:
                row = HomeRow(username=username)
                session.add(row)
            row.node_id, row.hostname, row.since = node_id, hostname, self.db.clock()
            session.flush()
            return _record(row)

    def all(self) -> list[Home]:
        with self.db.read() as session:
            return [_record(r) for r in session.scalars(select(HomeRow).order_by(HomeRow.username))]
