"""GPU-hours accounting: one usage record per device of an allocation; the quotas' new fields.

Revision ID: 0003_usage
Revises: 0002_quotas
Create Date: 2026-11-21
"""

import sqlalchemy as sa
from alembic import op

revision = "0003_usage"
down_revision = "0002_quotas"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "gpuhub_usage",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("allocation_id", sa.Integer, sa.ForeignKey("gpuhub_allocations.id", ondelete="CASCADE"), nullable=False, index=True),
        sa.Column("username", sa.Unicode(255), nullable=False, index=True),
        sa.Column("groups", sa.JSON, nullable=False),
        sa.Column("server_name", sa.Unicode(255), nullable=False, server_default=""),
        sa.Column("profile", sa.Unicode(63), nullable=False),
        sa.Column("device", sa.Unicode(96), nullable=False),
        sa.Column("share", sa.Float, nullable=False),
        sa.Column("start", sa.DateTime, nullable=False, index=True),
        sa.Column("end", sa.DateTime, nullable=True, index=True),
        sa.Column("last_seen", sa.DateTime, nullable=False),
        sa.Column("gpu_seconds", sa.Float, nullable=True),
        sa.Column("end_reason", sa.Unicode(255), nullable=False, server_default=""),
    )
    with op.batch_alter_table("gpuhub_quotas") as batch:
        batch.add_column(sa.Column("gpu_hours_per_week", sa.Float, nullable=True))
        batch.add_column(sa.Column("max_memory", sa.BigInteger, nullable=True))
        batch.add_column(sa.Column("max_cpus", sa.Float, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("gpuhub_quotas") as batch:
        batch.drop_column("max_cpus")
        batch.drop_column("max_memory")
        batch.drop_column("gpu_hours_per_week")
    op.drop_table("gpuhub_usage")
