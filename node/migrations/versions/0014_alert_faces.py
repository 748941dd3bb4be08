"""alert faces and sightings: each time and place an alert's person was seen, with the camera's
face crop sealed under the alert's own record key, and when that crop is erased

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-03 06:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    text = sqlmodel.sql.sqltypes.AutoString
    op.create_table(
        "alert_sighting",
        sa.Column("id", text(length=64), nullable=False),
        sa.Column("alert_id", text(length=64), nullable=False),
        sa.Column("seen_at", sa.DateTime(), nullable=False),
        sa.Column("site", text(length=63), nullable=False),
        sa.Column("gate", text(length=63), nullable=False),
        sa.Column("probe_ct", sa.LargeBinary(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_alert_sighting_alert_id", "alert_sighting", ["alert_id"])
    op.create_table(
        "alert_face",
        sa.Column("alert_id", text(length=64), nullable=False),
        sa.Column("erase_after", sa.DateTime(), nullable=False),
        sa.Column("erased_at", sa.DateTime(), nullable=True),
        sa.Column("erased_because", text(length=16), nullable=True),
        sa.PrimaryKeyConstraint("alert_id"),
    )
    op.create_index("ix_alert_face_erase_after", "alert_face", ["erase_after"])


def downgrade() -> None:
    op.drop_index("ix_alert_face_erase_after", table_name="alert_face")
    op.drop_table("alert_face")
    op.drop_index("ix_alert_sighting_alert_id", table_name="alert_sighting")
    op.drop_table("alert_sighting")
