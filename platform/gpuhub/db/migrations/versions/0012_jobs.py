"""Batch jobs ([jobs]): queued in the GPU lines, run in their own containers, their ends recorded.

Revision ID: 0012_jobs
Revises: 0011_ssh_keys
Create Date: 2026-12-05
"""

import sqlalchemy as sa
from alembic import op

revision = "0012_jobs"
down_revision = "0011_ssh_keys"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "gpuhub_jobs",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("username", sa.Unicode(255), nullable=False),
        sa.Column("name", sa.Unicode(255), nullable=False, server_default=""),
        sa.Column("profile", sa.Unicode(63), nullable=False),
        sa.Column("command", sa.JSON, nullable=False),
        sa.Column("workdir", sa.Unicode(1024), nullable=False, server_default=""),
        sa.Column("wall_time", sa.Integer, nullable=False),
        sa.Column("groups", sa.JSON, nullable=False),
        sa.Column("state", sa.Unicode(16), nullable=False, index=True),
        sa.Column("reason", sa.Unicode(1024), nullable=False, server_default=""),
        sa.Column("submitted", sa.DateTime, nullable=False),
        sa.Column("submitted_by", sa.Unicode(255), nullable=False),
        sa.Column("started", sa.DateTime, nullable=True),
        sa.Column("ended", sa.DateTime, nullable=True),
        sa.Column("exit_code", sa.Integer, nullable=True),
        sa.Column("allocation_id", sa.Integer, nullable=True),
        sa.Column("gpus", sa.Unicode(1024), nullable=False, server_default=""),
        sa.Column("gpu_seconds", sa.Float, nullable=True),
        sa.Column("container", sa.Unicode(255), nullable=False, server_default=""),
        sa.Column("output_tail", sa.Unicode(262144), nullable=False, server_default=""),
    )
    op.create_index("ix_gpuhub_jobs_user_state", "gpuhub_jobs", ["username", "state"])


def downgrade() -> None:
    op.drop_index("ix_gpuhub_jobs_user_state", "gpuhub_jobs")
    op.drop_table("gpuhub_jobs")
