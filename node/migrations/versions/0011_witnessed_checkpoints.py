"""witnessed checkpoints: the latest checkpoint cosigned per witnessed log, and the cosignatures
each witness gave this node's log (c2sp.org/tlog-witness, tlog-cosignature)

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-02 17:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    time = sqlmodel.sql.sqltypes.UTCDateTime
    op.create_table(
        "witnessed_log",
        sa.Column("origin", sqlmodel.sql.sqltypes.AutoString(length=160), nullable=False),
        sa.Column("tree_size", sa.BigInteger(), nullable=False),
        sa.Column("root_hash", sa.LargeBinary(), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("cosigned_at", time(), nullable=False),
        sa.PrimaryKeyConstraint("origin"),
    )
    op.create_table(
        "cosignature",
        sa.Column("witness", sqlmodel.sql.sqltypes.AutoString(length=63), nullable=False),
        sa.Column("tree_size", sa.BigInteger(), nullable=False),
        sa.Column("line", sa.Text(), nullable=False),
        sa.Column("received_at", time(), nullable=False),
        sa.PrimaryKeyConstraint("witness"),
    )
    op.create_index("ix_cosignature_tree_size", "cosignature", ["tree_size"])


def downgrade() -> None:
    op.drop_index("ix_cosignature_tree_size", table_name="cosignature")
    op.drop_table("cosignature")
    op.drop_table("witnessed_log")
