"""agents: join tokens, registered hosts, assigned workers and their shipped logs

Revision ID: 0310
Revises: 0201
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0310"
down_revision = "0201"
branch_labels = None
depends_on = None

_BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "agent_join_tokens",
        sa.Column("id", _BigId, autoincrement=True, nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("hint", sa.String(length=8), nullable=False),
        sa.Column("name", sa.String(length=63), nullable=False),
        sa.Column("created_by", sa.String(length=63), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("expires_at", sa.Float(), nullable=True),
        sa.Column("uses_left", sa.Integer(), nullable=False),
        sa.Column("revoked", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("token_hash"),
    )
    op.create_table(
        "agent_nodes",
        sa.Column("node_id", sa.String(length=200), nullable=False),
        sa.Column("credential_hash", sa.String(length=64), nullable=False),
        sa.Column("token_id", sa.Integer(), nullable=False),
        sa.Column("instance_id", sa.String(length=200), nullable=False),
        sa.Column("facts", sa.JSON(), nullable=False),
        sa.Column("joined_at", sa.Float(), nullable=False),
        sa.Column("last_seen", sa.Float(), nullable=False),
        sa.Column("lost_at", sa.Float(), nullable=True),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("node_id"),
        sa.UniqueConstraint("credential_hash"),
    )
    op.create_table(
        "agent_workers",
        sa.Column("workload_id", sa.String(length=200), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("worker", sa.Integer(), nullable=False),
        sa.Column("node_id", sa.String(length=200), nullable=False),
        sa.Column("spec", sa.JSON(), nullable=False),
        sa.Column("master_addr", sa.String(length=255), nullable=False),
        sa.Column("master_port", sa.Integer(), nullable=False),
        sa.Column("assigned_at", sa.Float(), nullable=False),
        sa.Column("stop_deadline", sa.Float(), nullable=True),
        sa.Column("stop_reason", sa.Text(), nullable=False),
        sa.Column("fenced", sa.Boolean(), nullable=False),
        sa.Column("released", sa.Boolean(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.String(length=32), nullable=False),
        sa.Column("exit_code", sa.Integer(), nullable=True),
        sa.Column("finished_at", sa.Float(), nullable=True),
        sa.Column("message", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("workload_id", "attempt", "worker"),
    )
    op.create_index("ix_agent_workers_node_id", "agent_workers", ["node_id"])
    op.create_table(
        "agent_logs",
        sa.Column("id", _BigId, autoincrement=True, nullable=False),
        sa.Column("workload_id", sa.String(length=200), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("worker", sa.Integer(), nullable=False),
        sa.Column("offset", sa.BigInteger(), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_agent_logs_worker", "agent_logs",
                    ["workload_id", "attempt", "worker", "offset"])


def downgrade() -> None:
    op.drop_index("ix_agent_logs_worker", table_name="agent_logs")
    op.drop_table("agent_logs")
    op.drop_index("ix_agent_workers_node_id", table_name="agent_workers")
    op.drop_table("agent_workers")
    op.drop_table("agent_nodes")
    op.drop_table("agent_join_tokens")
