"""The public keys people registered for SSH into their own servers (``SshKeyStore``)."""

from __future__ import annotations

from sqlalchemy import func, select, update

from ..policy.sshkeys import PublicKey
from .database import Database
from .models import SshKeyRow
from .records import SshKey


def _record(row: SshKeyRow) -> SshKey:
    return SshKey(row.id, row.username, PublicKey(row.algorithm, row.data, row.comment, row.fingerprint), row.added, row.last_used)


class SshKeyStore:
    def __init__(self, db: Database):
        self.db = db

    def of(self, username: str) -> list[SshKey]:
        with self.db.read() as session:
            rows = session.scalars(select(SshKeyRow).where(SshKeyRow.username == username).order_by(SshKeyRow.id))
            return [_record(r) for r in rows]

    def add(self, username: str, key: PublicKey, most: int) -> SshKey | str:
        """Register ``key`` for ``username`` (one transaction): the record, or why not ("registered":
        this person has it already; "taken": someone else has; "full": ``most`` keys already)."""
        with self.db.serialised() as session:
            owner = session.scalar(select(SshKeyRow.username).where(SshKeyRow.fingerprint == key.fingerprint))
            if owner is not None:
                return "registered" if owner == username else "taken"
            if session.scalar(select(func.count()).select_from(SshKeyRow).where(SshKeyRow.username == username)) >= most:
                return "full"
            row = SshKeyRow(
                username=username, fingerprint=key.fingerprint, algorithm=key.algorithm, data=key.data,
                comment=key.comment, added=self.db.clock(),
            )
            session.add(row)
            session.flush()
            return _record(row)

    def remove(self, username: str, key_id: int) -> SshKey | None:
        """Remove ``username``'s key ``key_id``: the record removed, or None (no such key of theirs)."""
        with self.db.serialised() as session:
            row = session.get(SshKeyRow, key_id)
            if row is None or row.username != username:
                return None
            removed = _record(row)
            session.delete(row)
            return removed

    def used(self, key_id: int) -> None:
        """An SSH login was made with this key now."""
        with self.db.session.begin() as session:
            session.execute(update(SshKeyRow).where(SshKeyRow.id == key_id).values(last_used=self.db.clock()))
