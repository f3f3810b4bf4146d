"""The public keys people registered for SSH into their own servers ([ssh]).

Revision ID: 0011_ssh_keys
Revises: 0010_activity
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op

revision = "0011_ssh_keys"
down_revision = "0010_activity"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "gpuhub_ssh_keys",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("username", sa.Unicode(255), nullable=False, index=True),
        sa.Column("fingerprint", sa.Unicode(64), nullable=False, unique=True),
        sa.Column("algorithm", sa.Unicode(64), nullable=False),
        sa.Column("data", sa.Unicode(4096), nullable=False),
        sa.Column("comment", sa.Unicode(255), nullable=False, server_default=""),
        sa.Column("added", sa.DateTime, nullable=False),
        sa.Column("last_used", sa.DateTime, nullable=True),
    )


def downgrade() -> None:
    op.drop_table("gpuhub_ssh_keys")
