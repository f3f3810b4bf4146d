"""GPU-seconds per user and per group of every closed usage record, kept at release (the metrics read
these instead of the whole history); filled from the records closed so far.

Revision ID: 0005_usage_totals
Revises: 0004_sessions
Create Date: 2026-12-02
"""

from collections import defaultdict

import sqlalchemy as sa
from alembic import op

revision = "0005_usage_totals"
down_revision = "0004_sessions"
branch_labels = None
depends_on = None


def upgrade() -> None:
    totals = op.create_table(
        "gpuhub_usage_totals",
        sa.Column("kind", sa.Unicode(8), primary_key=True),
        sa.Column("name", sa.Unicode(255), primary_key=True),
        sa.Column("gpu_seconds", sa.Float, nullable=False, server_default="0"),
    )
    usage = sa.table("gpuhub_usage", sa.column("username"), sa.column("groups", sa.JSON), sa.column("gpu_seconds"), sa.column("end"))
    sums = defaultdict(float)
    rows = op.get_bind().execute(sa.select(usage.c.username, usage.c.groups, usage.c.gpu_seconds).where(usage.c.end.is_not(None)))
    for username, groups, seconds in rows:
        sums[("user", username)] += float(seconds or 0)
        for group in groups or ():
            sums[("group", group)] += float(seconds or 0)
    if sums:
        op.bulk_insert(totals, [{"kind": k, "name": n, "gpu_seconds": s} for (k, n), s in sums.items()])


def downgrade() -> None:
    op.drop_table("gpuhub_usage_totals")
