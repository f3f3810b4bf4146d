"""Borrowed allocations: held beyond their user's GPU quota while the GPUs sat free ([borrowing]).

Revision ID: 0009_borrowed
Revises: 0008_allocation_lookups
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op

revision = "0009_borrowed"
down_revision = "0008_allocation_lookups"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("gpuhub_allocations") as batch:
        batch.add_column(sa.Column("borrowed", sa.Boolean, nullable=False, server_default=sa.false()))


def downgrade() -> None:
    with op.batch_alter_table("gpuhub_allocations") as batch:
        batch.drop_column("borrowed")
