"""nominations: room a plan freed for a moved workload, held for it for a bounded time (issue 10)

Revision ID: 0330
Revises: 0320 (0310 before the secrets table; chained by the lead so the tree has one head)
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0330"
down_revision = "0320"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "nominations",
        sa.Column("workload_id", sa.String(length=80), nullable=False),
        sa.Column("assignments", sa.JSON(), nullable=False),
        sa.Column("cpu_milli", sa.Integer(), nullable=False),
        sa.Column("memory_mib", sa.BigInteger(), nullable=False),
        sa.Column("made_at", sa.Float(), nullable=False),
        sa.Column("held_until", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("workload_id"),
    )


def downgrade() -> None:
    op.drop_table("nominations")
