"""gateway_loads: each standby gateway's per-service load, for the leader's autoscaler (issue 12)

Revision ID: 0360
Revises: 0350 (webhooks, issue 13)
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0360"
down_revision = "0350"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "gateway_loads",
        sa.Column("gateway", sa.String(length=200), nullable=False),
        sa.Column("service_id", sa.String(length=80), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("written_at", sa.Float(), nullable=False),
        sa.Column("in_flight", sa.Integer(), nullable=False),
        sa.Column("running", sa.Integer(), nullable=False),
        sa.Column("arrivals", sa.Float(), nullable=False),
        sa.Column("buckets", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("gateway", "service_id"),
    )


def downgrade() -> None:
    op.drop_table("gateway_loads")
