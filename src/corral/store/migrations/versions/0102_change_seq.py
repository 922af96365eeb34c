"""change feed: workloads and nodes carry the sequence number of their last change

Revision ID: 0102
Revises: 0101

The control loop keeps the cluster in memory and reads only rows whose `change_seq` is above the
last one it saw (`corral.store.changes`). Rows that exist before this migration get 0: the loop
reads everything once when it starts or takes over, so they are seen then.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0102"
down_revision = "0101"
branch_labels = None
depends_on = None


def upgrade() -> None:
    for table in ("workloads", "nodes"):
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("change_seq", sa.BigInteger(), nullable=False,
                                       server_default="0"))
        op.create_index(f"ix_{table}_change_seq", table, ["change_seq"])


def downgrade() -> None:
    for table in ("workloads", "nodes"):
        op.drop_index(f"ix_{table}_change_seq", table)
        with op.batch_alter_table(table) as batch:
            batch.drop_column("change_seq")
