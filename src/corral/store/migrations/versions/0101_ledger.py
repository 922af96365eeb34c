"""ledger: journal (transactions, postings with a unique idempotency key), prices, usage

Revision ID: 0101
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0101"
down_revision = "0001"
branch_labels = None
depends_on = None

_BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "ledger_transactions",
        sa.Column("seq", _BigId, autoincrement=True, nullable=False),
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("at", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("queue", sa.String(length=63), nullable=False),
        sa.Column("amount", sa.String(length=64), nullable=False),
        sa.Column("workload", sa.String(length=160), nullable=False),
        sa.Column("counterparty", sa.String(length=63), nullable=False),
        sa.Column("expires_at", sa.String(length=64), nullable=True),
        sa.Column("memo", sa.Text(), nullable=False),
        sa.Column("opens", sa.JSON(), nullable=False),
        sa.Column("at_s", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("seq"),
        sa.UniqueConstraint("key"),
    )
    op.create_index("ix_ledger_transactions_queue", "ledger_transactions", ["queue"])
    op.create_table(
        "ledger_postings",
        sa.Column("tx_seq", _BigId, nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("account_kind", sa.String(length=16), nullable=False),
        sa.Column("queue", sa.String(length=63), nullable=False),
        sa.Column("ref", sa.String(length=255), nullable=False),
        sa.Column("amount", sa.String(length=64), nullable=False),
        sa.Column("amount_units", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["tx_seq"], ["ledger_transactions.seq"]),
        sa.PrimaryKeyConstraint("tx_seq", "position"),
    )
    op.create_index("ix_ledger_postings_queue_kind", "ledger_postings", ["queue", "account_kind"])
    op.create_table(
        "ledger_prices",
        sa.Column("id", _BigId, autoincrement=True, nullable=False),
        sa.Column("provider", sa.String(length=63), nullable=False),
        sa.Column("region", sa.String(length=63), nullable=False),
        sa.Column("gpu_model", sa.String(length=63), nullable=False),
        sa.Column("capacity_kind", sa.String(length=16), nullable=False),
        sa.Column("price_per_gpu_hour", sa.String(length=64), nullable=False),
        sa.Column("valid_from", sa.String(length=64), nullable=True),
        sa.Column("valid_until", sa.String(length=64), nullable=True),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "ledger_usage",
        sa.Column("workload_id", sa.String(length=80), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("worker", sa.Integer(), nullable=False),
        sa.Column("queue", sa.String(length=63), nullable=False),
        sa.Column("user", sa.String(length=63), nullable=False),
        sa.Column("provider", sa.String(length=63), nullable=False),
        sa.Column("region", sa.String(length=63), nullable=False),
        sa.Column("node", sa.String(length=200), nullable=False),
        sa.Column("gpu_model", sa.String(length=63), nullable=False),
        sa.Column("capacity_kind", sa.String(length=16), nullable=False),
        sa.Column("milli", sa.Integer(), nullable=False),
        sa.Column("start", sa.String(length=64), nullable=False),
        sa.Column("end", sa.String(length=64), nullable=True),
        sa.Column("end_reason", sa.String(length=16), nullable=False),
        sa.Column("start_s", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("workload_id", "attempt", "worker"),
    )
    op.create_index("ix_ledger_usage_queue", "ledger_usage", ["queue"])
    op.create_index("ix_ledger_usage_start_s", "ledger_usage", ["start_s"])


def downgrade() -> None:
    op.drop_index("ix_ledger_usage_start_s", table_name="ledger_usage")
    op.drop_index("ix_ledger_usage_queue", table_name="ledger_usage")
    op.drop_table("ledger_usage")
    op.drop_table("ledger_prices")
    op.drop_index("ix_ledger_postings_queue_kind", table_name="ledger_postings")
    op.drop_table("ledger_postings")
    op.drop_index("ix_ledger_transactions_queue", table_name="ledger_transactions")
    op.drop_table("ledger_transactions")
