"""score disclosure: bands on alerts, hits per asker and entry

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02 01:20:00
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("alert") as batch_op:
        batch_op.add_column(sa.Column("band", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=True))
    op.create_table(
        "query_hit",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("asker", sqlmodel.sql.sqltypes.AutoString(length=80), nullable=False),
        sa.Column("entry_id", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("sketch", sa.BigInteger(), nullable=False),
        sa.Column("band", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("repeat", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_query_hit_asker", "query_hit", ["asker"])
    op.create_index("ix_query_hit_at", "query_hit", ["at"])


def downgrade() -> None:
    op.drop_index("ix_query_hit_at", "query_hit")
    op.drop_index("ix_query_hit_asker", "query_hit")
    op.drop_table("query_hit")
    with op.batch_alter_table("alert") as batch_op:
        batch_op.drop_column("band")
