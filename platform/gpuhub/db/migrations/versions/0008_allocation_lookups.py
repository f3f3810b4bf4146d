"""Allocation lookups without scans: a user's live allocations, an allocation's devices, and the
version row that tells the store whether the live holdings it keeps are still current.

Revision ID: 0008_allocation_lookups
Revises: 0007_homes
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

revision = "0008_allocation_lookups"
down_revision = "0007_homes"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_gpuhub_allocations_user_live", "gpuhub_allocations", ["username", "released"])
    op.create_index("ix_gpuhub_allocation_devices_allocation_id", "gpuhub_allocation_devices", ["allocation_id"])
    version = op.create_table(
        "gpuhub_allocation_version",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("version", sa.BigInteger, nullable=False, server_default="0"),
    )
    op.bulk_insert(version, [{"id": 1, "version": 0}])


def downgrade() -> None:
    op.drop_table("gpuhub_allocation_version")
    op.drop_index("ix_gpuhub_allocation_devices_allocation_id", "gpuhub_allocation_devices")
    op.drop_index("ix_gpuhub_allocations_user_live", "gpuhub_allocations")
