"""an index on ledger_transactions.workload (issue 16, review of 4fe6624)

Since settled holds leave the journal's memory, a settled hold is read back from its stored
transactions by workload (`journal_sql.load_of_workloads`: `Journal.hold`, the API's list of
holds); without an index each read was a scan of every transaction ever posted.

Revision ID: 0390
Revises: 0380 (reason_refs and reservations)
"""

from __future__ import annotations

from alembic import op

revision = "0390"
down_revision = "0380"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_ledger_transactions_workload", "ledger_transactions", ["workload"])


def downgrade() -> None:
    op.drop_index("ix_ledger_transactions_workload", table_name="ledger_transactions")
