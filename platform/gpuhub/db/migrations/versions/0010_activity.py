"""Utilisation readings in the usage records and their totals: GPU-seconds measured and busy.

Revision ID: 0010_activity
Revises: 0009_borrowed
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op

revision = "0010_activity"
down_revision = "0009_borrowed"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("gpuhub_usage") as batch:
        batch.add_column(sa.Column("observed_seconds", sa.Float, nullable=False, server_default="0"))
        batch.add_column(sa.Column("busy_seconds", sa.Float, nullable=False, server_default="0"))
        batch.add_column(sa.Column("sampled_at", sa.DateTime, nullable=True))
        batch.add_column(sa.Column("activity_simulated", sa.Boolean, nullable=False, server_default=sa.false()))
    with op.batch_alter_table("gpuhub_usage_totals") as batch:
        batch.add_column(sa.Column("observed_seconds", sa.Float, nullable=False, server_default="0"))
        batch.add_column(sa.Column("busy_seconds", sa.Float, nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("gpuhub_usage_totals") as batch:
        batch.drop_column("busy_seconds")
        batch.drop_column("observed_seconds")
    with op.batch_alter_table("gpuhub_usage") as batch:
        batch.drop_column("activity_simulated")
        batch.drop_column("sampled_at")
        batch.drop_column("busy_seconds")
        batch.drop_column("observed_seconds")
