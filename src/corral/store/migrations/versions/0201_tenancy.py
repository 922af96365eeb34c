"""tenancy: per-queue member roles, token names/expiry/rate limits, audit log, idempotency keys

Revision ID: 0201
Revises: 0102
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0201"
down_revision = "0102"
branch_labels = None
depends_on = None

_BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    # Existing members keep what they could do before: submit, cancel and read their queue.
    with op.batch_alter_table("memberships") as batch:
        batch.add_column(sa.Column("role", sa.String(length=16), nullable=False,
                                   server_default="member"))
    with op.batch_alter_table("api_tokens") as batch:
        batch.add_column(sa.Column("name", sa.String(length=63), nullable=False,
                                   server_default=""))
        batch.add_column(sa.Column("expires_at", sa.Float(), nullable=True))
        batch.add_column(sa.Column("rate_per_s", sa.Float(), nullable=True))
        batch.add_column(sa.Column("burst", sa.Integer(), nullable=True))
    op.create_table(
        "audit_log",
        sa.Column("id", _BigId, autoincrement=True, nullable=False),
        sa.Column("at", sa.Float(), nullable=False),
        sa.Column("actor", sa.String(length=63), nullable=False),
        sa.Column("action", sa.String(length=32), nullable=False),
        sa.Column("target", sa.String(length=200), nullable=False),
        sa.Column("queue", sa.String(length=63), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_audit_log_actor", "audit_log", ["actor"])
    op.create_table(
        "idempotency_keys",
        sa.Column("user", sa.String(length=63), nullable=False),
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("body_hash", sa.String(length=64), nullable=False),
        sa.Column("group_id", sa.String(length=80), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("user", "key"),
    )


def downgrade() -> None:
    op.drop_table("idempotency_keys")
    op.drop_index("ix_audit_log_actor", table_name="audit_log")
    op.drop_table("audit_log")
    with op.batch_alter_table("api_tokens") as batch:
        for column in ("burst", "rate_per_s", "expires_at", "name"):
            batch.drop_column(column)
    with op.batch_alter_table("memberships") as batch:
        batch.drop_column("role")
