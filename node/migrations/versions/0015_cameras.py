"""cameras: a camera account's sites, the camera and gate an alert was raised at, and the
alerts owed to each webhook and e-mail target

Revision ID: 0015
Revises: 0013
Create Date: 2026-12-03 06:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    text = sqlmodel.sql.sqltypes.AutoString
    with op.batch_alter_table("account") as batch:
        batch.add_column(sa.Column("sites", text(length=1024), nullable=False, server_default=""))
    with op.batch_alter_table("alert") as batch:
        batch.add_column(sa.Column("camera", text(length=63), nullable=False, server_default=""))
        batch.add_column(sa.Column("gate", text(length=63), nullable=False, server_default=""))
    op.create_table(
        "alert_delivery",
        sa.Column("alert_id", text(length=64), nullable=False),
        sa.Column("target", text(length=63), nullable=False),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("delivered_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.Column("last_error", text(length=64), nullable=False),
        sa.PrimaryKeyConstraint("alert_id", "target"),
    )
    op.create_index("ix_alert_delivery_next_at", "alert_delivery", ["next_at"])
    op.create_index("ix_alert_created_at", "alert", ["created_at"])


def downgrade() -> None:
    op.drop_index("ix_alert_created_at", table_name="alert")
    op.drop_index("ix_alert_delivery_next_at", table_name="alert_delivery")
    op.drop_table("alert_delivery")
    with op.batch_alter_table("alert") as batch:
        batch.drop_column("gate")
        batch.drop_column("camera")
    with op.batch_alter_table("account") as batch:
        batch.drop_column("sites")
