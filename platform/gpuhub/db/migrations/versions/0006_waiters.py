"""GPU starts waiting in line, kept across hub restarts.

Revision ID: 0006_waiters
Revises: 0005_usage_totals
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "0006_waiters"
down_revision = "0005_usage_totals"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "gpuhub_waiters",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("username", sa.Unicode(255), nullable=False),
        sa.Column("server_name", sa.Unicode(255), nullable=False, server_default=""),
        sa.Column("profile", sa.Unicode(63), nullable=False),
        sa.Column("options", sa.JSON, nullable=False),
        sa.Column("joined", sa.DateTime, nullable=False),
        sa.Column("boot", sa.Unicode(32), nullable=False),
        sa.UniqueConstraint("username", "server_name", name="uq_gpuhub_waiters_server"),
    )


def downgrade() -> None:
    op.drop_table("gpuhub_waiters")
