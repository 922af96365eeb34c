"""ledger checkpoints: the journal's derived state after a transaction, so that a new leader
replays only the transactions after it (issue 16)

Revision ID: 0340
Revises: 0330
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0340"
down_revision = "0330"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ledger_checkpoints",
        sa.Column("seq", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False,
                  autoincrement=False),
        sa.Column("transactions", sa.BigInteger(), nullable=False),
        sa.Column("state", sa.Text(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("seq"),
    )


def downgrade() -> None:
    op.drop_table("ledger_checkpoints")
