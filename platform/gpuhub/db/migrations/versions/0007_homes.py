"""Where each user's home lives on a Swarm with homes on the nodes.

Revision ID: 0007_homes
Revises: 0006_waiters
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

revision = "0007_homes"
down_revision = "0006_waiters"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "gpuhub_homes",
        sa.Column("username", sa.Unicode(255), primary_key=True),
        sa.Column("node_id", sa.Unicode(64), nullable=False),
        sa.Column("hostname", sa.Unicode(255), nullable=False),
        sa.Column("since", sa.DateTime, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("gpuhub_homes")
