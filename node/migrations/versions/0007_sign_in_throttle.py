"""sign-in throttle: failed sign-ins per account and source address, temporary locks

Wrong passwords no longer disable an account. ``account.failed_logins`` stays but is no longer
used: it is reset to 0 on enabled accounts, and kept on disabled ones so an admin can tell an
account the old lockout disabled (5 or more) from one an admin disabled (0).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03 09:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sign_in_throttle",
        sa.Column("account_id", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("source", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("window_start", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("last_failure_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("locked_until", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(["account_id"], ["account.id"]),
        sa.PrimaryKeyConstraint("account_id", "source"),
    )
    op.create_index("ix_sign_in_throttle_last_failure_at", "sign_in_throttle", ["last_failure_at"])
    account = sa.table("account", sa.column("failed_logins", sa.Integer), sa.column("disabled", sa.Boolean))
    op.execute(account.update().where(account.c.disabled == sa.false()).values(failed_logins=0))


def downgrade() -> None:
    op.drop_index("ix_sign_in_throttle_last_failure_at", "sign_in_throttle")
    op.drop_table("sign_in_throttle")
