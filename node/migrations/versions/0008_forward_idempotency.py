"""forwarded data-subject requests: one request per (origin member, origin request id)

A member that forwards the same request again (or two workers racing on one forward) must find
the request the first forward opened, not open another with its own legal deadline. The origin
and its request id become columns with a unique constraint over the pair; requests taken at our
own counter have both NULL, which the constraint allows any number of times.

Rows forwarded before this revision carry the origin only in ``recorded_by`` (``peer:<origin>``)
and never stored the origin's request id: their ``forwarded_origin`` is filled in (so they count
towards the member's daily forward limit), their ``forwarded_request_id`` stays NULL.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-05 09:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

PEER = "peer:"


def upgrade() -> None:
    with op.batch_alter_table("subject_request") as batch_op:
        batch_op.add_column(
            sa.Column("forwarded_origin", sqlmodel.sql.sqltypes.AutoString(length=63), nullable=True)
        )
        batch_op.add_column(
            sa.Column("forwarded_request_id", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True)
        )
        batch_op.create_unique_constraint(
            "uq_subject_request_forward", ["forwarded_origin", "forwarded_request_id"]
        )
    table = sa.table(
        "subject_request",
        sa.column("identity_check", sa.String),
        sa.column("recorded_by", sa.String),
        sa.column("forwarded_origin", sa.String),
    )
    op.execute(
        table.update()
        .where(
            table.c.identity_check.startswith("forwarded-by-"),
            table.c.recorded_by.startswith(PEER),
            sa.func.length(table.c.recorded_by) < 64,  # 64 is recorded_by's width: a longer id was cut
        )
        .values(forwarded_origin=sa.func.substr(table.c.recorded_by, len(PEER) + 1))
    )


def downgrade() -> None:
    with op.batch_alter_table("subject_request") as batch_op:
        batch_op.drop_constraint("uq_subject_request_forward", type_="unique")
        batch_op.drop_column("forwarded_request_id")
        batch_op.drop_column("forwarded_origin")
