"""GPU allocations and the devices each one holds.

Revision ID: 0001_allocations
Revises:
Create Date: 2026-11-21
"""

import sqlalchemy as sa
from alembic import op

revision = "0001_allocations"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "gpuhub_allocations",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("username", sa.Unicode(255), nullable=False),
        sa.Column("server_name", sa.Unicode(255), nullable=False, server_default=""),
        sa.Column("profile", sa.Unicode(63), nullable=False),
        sa.Column("mode", sa.Unicode(16), nullable=False),
        sa.Column("created", sa.DateTime, nullable=False),
        sa.Column("released", sa.DateTime, nullable=True),
        sa.Column("release_reason", sa.Unicode(255), nullable=False, server_default=""),
    )
    op.create_index("ix_gpuhub_allocations_live", "gpuhub_allocations", ["released"])
    op.create_table(
        "gpuhub_allocation_devices",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column(
            "allocation_id", sa.Integer, sa.ForeignKey("gpuhub_allocations.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("uuid", sa.Unicode(96), nullable=False),
        sa.Column("mode", sa.Unicode(16), nullable=False),
        sa.Column("memory_bytes", sa.BigInteger, nullable=False, server_default="0"),
    )
    op.create_index("ix_gpuhub_allocation_devices_uuid", "gpuhub_allocation_devices", ["uuid"])


def downgrade() -> None:
    op.drop_table("gpuhub_allocation_devices")
    op.drop_table("gpuhub_allocations")
