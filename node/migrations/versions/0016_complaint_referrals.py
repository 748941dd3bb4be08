"""complaint referrals: a complaint the organisation referred to this member (its signed
complaint-referral and answer deadline), and this member's signed answer with its delivery state

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-03 12:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    text = sqlmodel.sql.sqltypes.AutoString
    when = sqlmodel.sql.sqltypes.UTCDateTime
    with op.batch_alter_table("complaint") as batch:
        batch.add_column(sa.Column("referral", sa.Text(), nullable=True))
        batch.add_column(sa.Column("answer_by", when(), nullable=True))
        batch.add_column(sa.Column("answer", sa.Text(), nullable=True))
        batch.add_column(sa.Column("answer_attempts", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("answer_tried_at", when(), nullable=True))
        batch.add_column(sa.Column("answer_error", text(length=64), nullable=True))
        batch.add_column(sa.Column("answer_delivered_at", when(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("complaint") as batch:
        for column in (
            "answer_delivered_at",
            "answer_error",
            "answer_tried_at",
            "answer_attempts",
            "answer",
            "answer_by",
            "referral",
        ):
            batch.drop_column(column)
