"""GPU starts waiting in line, kept so that a hub restart does not drop them (``WaiterStore``).

A start writes its row when it joins a GPU line (``keep``) and removes it when it leaves the line for
any reason but the hub stopping (``forget``). The rows still there when a hub starts are the starts
its previous process left waiting: the allocation service starts them again, oldest first
(``left_behind``), and each takes over its row (``keep`` with the same server: the time it first
joined stays, so its place in line does too).
"""

from __future__ import annotations

from sqlalchemy import delete, select

from .database import Database
from .models import WaiterRow
from .records import Waiter


def _record(row: WaiterRow) -> Waiter:
    return Waiter(row.id, row.username, row.server_name, row.profile, dict(row.options or {}), row.joined, row.boot)


class WaiterStore:
    def __init__(self, db: Database):
        self.db = db

    def keep(self, username: str, server_name: str, profile: str, options: dict, boot: str) -> Waiter:
        """This process's start of ``username:server_name`` waits in line. A row a previous process
        left for the same server is taken over (its ``joined`` kept); else one is written, joined now.
        The record names the process that kept it before (``boot``: this one's, for a new row)."""
        with self.db.session.begin() as session:
            row = session.scalars(
                select(WaiterRow).where(WaiterRow.username == username, WaiterRow.server_name == server_name)
            ).first()
            if row is None:
                row = WaiterRow(username=username, server_name=server_name, joined=self.db.clock(), boot=boot)
                session.add(row)
            before = _record(row) if row.id else None
            row.profile, row.options, row.boot = profile, options, boot
            session.flush()
            return before or _record(row)

    def forget(self, username: str, server_name: str) -> bool:
        with self.db.session.begin() as session:
            result = session.execute(
                delete(WaiterRow).where(WaiterRow.username == username, WaiterRow.server_name == server_name)
            )
            return result.rowcount > 0

    def left_behind(self, boot: str) -> list[Waiter]:
        """The starts other hub processes left waiting, oldest first."""
        with self.db.read() as session:
            rows = session.scalars(select(WaiterRow).where(WaiterRow.boot != boot).order_by(WaiterRow.joined, WaiterRow.id))
            return [_record(r) for r in rows]
