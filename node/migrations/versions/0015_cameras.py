"""cameras: a camera account's sites, and the camera and gate an alert was raised at

Revision ID: 0015
Revises: 0013
Create Date: 2026-12-03 06:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0015"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    text = sqlmodel.sql.sqltypes.AutoString
    with op.batch_alter_table("account") as batch:
        batch.add_column(sa.Column("sites", text(length=1024), nullable=False, server_default=""))
    with op.batch_alter_table("alert") as batch:
        batch.add_column(sa.Column("camera", text(length=63), nullable=False, server_default=""))
        batch.add_column(sa.Column("gate", text(length=63), nullable=False, server_default=""))


def downgrade() -> None:
    with op.batch_alter_table("alert") as batch:
        batch.drop_column("gate")
        batch.drop_column("camera")
    with op.batch_alter_table("account") as batch:
        batch.drop_column("sites")
