"""agent_log_times: when each agent worker's log reached a size, for `corral logs --timestamps`
on the agent backend (issue 13)

Revision ID: 0370
Revises: 0360 (gateway loads, issue 12)
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0370"
down_revision = "0360"
branch_labels = None
depends_on = None

_BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "agent_log_times",
        sa.Column("id", _BigId, autoincrement=True, nullable=False),
        sa.Column("workload_id", sa.String(length=200), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("worker", sa.Integer(), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_agent_log_times_worker", "agent_log_times",
                    ["workload_id", "attempt", "worker", "size"])


def downgrade() -> None:
    op.drop_index("ix_agent_log_times_worker", table_name="agent_log_times")
    op.drop_table("agent_log_times")
