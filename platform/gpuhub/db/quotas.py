"""Quota rules set by admins through the API (``QuotaStore``); the settings file's are the
``[[quotas]]`` blocks. One column per ``policy.quotas.FIELDS``."""

from __future__ import annotations

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from ..policy.quotas import FIELDS, QuotaRule, rule_from
from .database import Database
from .models import QuotaRow


_RULES = select(QuotaRow.__table__).order_by(QuotaRow.scope, QuotaRow.name)


def rules_in(session: Session) -> list[QuotaRule]:
    """The database's rules (inside a caller's transaction: the allocation decision reads them there,
    as plain rows: it is on every decision's path)."""
    return [rule_from(r.scope, r.name, r, origin="database") for r in session.connection().execute(_RULES)]


class QuotaStore:
    def __init__(self, db: Database):
        self.db = db

    def rules(self) -> list[QuotaRule]:
        with self.db.read() as session:
            return rules_in(session)

    def set(self, rule: QuotaRule) -> None:
        """Create or replace the database rule for ``rule.scope``/``rule.name``."""
        with self.db.session.begin() as session:
            row = session.scalars(select(QuotaRow).where(QuotaRow.scope == rule.scope, QuotaRow.name == rule.name)).first()
            if row is None:
                row = QuotaRow(scope=rule.scope, name=rule.name)
                session.add(row)
            for field in FIELDS:
                value = getattr(rule, field)
                setattr(row, field, list(value) if isinstance(value, tuple) else value)
            row.updated = self.db.clock()

    def unset(self, scope: str, name: str) -> bool:
        """Remove the database rule (the settings file's applies again); True if there was one."""
        with self.db.session.begin() as session:
            result = session.execute(delete(QuotaRow).where(QuotaRow.scope == scope, QuotaRow.name == name))
            return result.rowcount > 0
