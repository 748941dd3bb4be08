"""data-subject requests

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25 12:29:18.526269
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "subject_request",
        sa.Column("id", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("kind", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("status", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("identity_check", sqlmodel.sql.sqltypes.AutoString(length=48), nullable=False),
        sa.Column("received_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("deadline", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("recorded_by", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("photo_ct", sa.LargeBinary(), nullable=True),
        sa.Column("embedding_ct", sa.LargeBinary(), nullable=True),
        sa.Column("report", sa.Text(), nullable=True),
        sa.Column("searched_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.Column("outcome", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=True),
        sa.Column("ground", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True),
        sa.Column("closed_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.Column("closed_by", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
        sa.Column("receipts", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("subject_request", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_subject_request_status"), ["status"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("subject_request", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_subject_request_status"))

    op.drop_table("subject_request")
