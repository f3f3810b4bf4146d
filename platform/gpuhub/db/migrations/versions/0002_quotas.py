"""Quota rules set by admins (they override the settings file's [[quotas]] at the same level).

Revision ID: 0002_quotas
Revises: 0001_allocations
Create Date: 2026-11-21
"""

import sqlalchemy as sa
from alembic import op

revision = "0002_quotas"
down_revision = "0001_allocations"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "gpuhub_quotas",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("scope", sa.Unicode(16), nullable=False),
        sa.Column("name", sa.Unicode(255), nullable=False, server_default=""),
        sa.Column("max_gpus", sa.Integer, nullable=True),
        sa.Column("max_shared_slices", sa.Integer, nullable=True),
        sa.Column("profiles", sa.JSON, nullable=True),
        sa.Column("updated", sa.DateTime, nullable=False),
        sa.UniqueConstraint("scope", "name", name="uq_gpuhub_quotas_scope_name"),
    )


def downgrade() -> None:
    op.drop_table("gpuhub_quotas")
