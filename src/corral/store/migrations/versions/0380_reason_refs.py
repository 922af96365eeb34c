"""reason_refs and reservations: a pending sentence completed at read time (issue 16)

`workloads.reason_refs`: what the API adds to the stored sentence (the queues it names,
whether it waits behind reservations), written with it, so the view reads structure, not the
sentence's words. `reservations`: the last applied plan's, with their holders and ends, which
the sentences no longer name (naming them rewrote every waiting big job's row when a
reservation was made or passed on).

Revision ID: 0380
Revises: 0370 (agent log times)
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0380"
down_revision = "0370"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("workloads",
                  sa.Column("reason_refs", sa.Text(), nullable=False, server_default=""))
    op.create_table(
        "reservations",
        sa.Column("workload_id", sa.String(length=80), nullable=False),
        sa.Column("node_ids", sa.JSON(), nullable=False),
        sa.Column("held_until", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("workload_id"),
    )


def downgrade() -> None:
    op.drop_table("reservations")
    with op.batch_alter_table("workloads") as batch:
        batch.drop_column("reason_refs")
