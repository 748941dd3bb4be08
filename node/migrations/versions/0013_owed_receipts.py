"""owed receipts: one row per change a confirming member has not yet confirmed, and how far the
rows are made, so who is missing is read from the open rows instead of every change ever made

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-02 23:10:00
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    text = sqlmodel.sql.sqltypes.AutoString
    op.create_table(
        "owed_receipt",
        sa.Column("event_id", text(length=64), nullable=False),
        sa.Column("member", text(length=63), nullable=False),
        sa.Column("idx", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("event_id", "member"),
    )
    op.create_index("ix_owed_receipt_member", "owed_receipt", ["member"])
    op.create_table(
        "owed_receipt_mark",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("through", sa.Integer(), nullable=False),
        sa.Column("members", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )


def downgrade() -> None:
    op.drop_table("owed_receipt_mark")
    op.drop_index("ix_owed_receipt_member", table_name="owed_receipt")
    op.drop_table("owed_receipt")
