"""peer frontier: the compact range of each followed peer's log, so a page is checked without
reading every leaf held; an index on log_leaf.kind for the counts of deletions owed receipts

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-02 23:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("peer_state") as batch:
        batch.add_column(sa.Column("frontier", sa.LargeBinary(), nullable=True))
    op.create_index("ix_log_leaf_kind", "log_leaf", ["kind"])


def downgrade() -> None:
    op.drop_index("ix_log_leaf_kind", table_name="log_leaf")
    with op.batch_alter_table("peer_state") as batch:
        batch.drop_column("frontier")
