"""Classroom sessions and their rosters; the session an allocation was made for.

Revision ID: 0004_sessions
Revises: 0003_usage
Create Date: 2026-11-21
"""

import sqlalchemy as sa
from alembic import op

revision = "0004_sessions"
down_revision = "0003_usage"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "gpuhub_sessions",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.Unicode(63), nullable=False, unique=True),
        sa.Column("spec", sa.JSON, nullable=False),
        sa.Column("created", sa.DateTime, nullable=False),
        sa.Column("created_by", sa.Unicode(255), nullable=False, server_default=""),
        sa.Column("updated", sa.DateTime, nullable=False),
        sa.Column("prewarm_requested", sa.DateTime, nullable=True),
        sa.Column("stop_requested", sa.DateTime, nullable=True),
    )
    op.create_table(
        "gpuhub_roster",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("session_id", sa.Integer, sa.ForeignKey("gpuhub_sessions.id", ondelete="CASCADE"), nullable=False),
        sa.Column("username", sa.Unicode(255), nullable=False, index=True),
        sa.Column("name", sa.Unicode(200), nullable=False, server_default=""),
        sa.Column("email", sa.Unicode(254), nullable=False, server_default=""),
        sa.Column("added", sa.DateTime, nullable=False),
        sa.UniqueConstraint("session_id", "username", name="uq_gpuhub_roster_session_user"),
    )
    with op.batch_alter_table("gpuhub_allocations") as batch:
        batch.add_column(sa.Column("session", sa.Unicode(63), nullable=False, server_default=""))


def downgrade() -> None:
    with op.batch_alter_table("gpuhub_allocations") as batch:
        batch.drop_column("session")
    op.drop_table("gpuhub_roster")
    op.drop_table("gpuhub_sessions")
