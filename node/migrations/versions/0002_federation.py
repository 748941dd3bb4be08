"""federation: trusted manifest history, peer checkpoints and leaves, tombstones, receipts, alert cache

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25 11:59:51.948495
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "manifest",
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("signed", sa.Text(), nullable=False),
        sa.Column("accepted_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("source", sqlmodel.sql.sqltypes.AutoString(length=256), nullable=False),
        sa.PrimaryKeyConstraint("version"),
    )
    op.create_table(
        "peer_leaf",
        sa.Column("peer", sqlmodel.sql.sqltypes.AutoString(length=63), nullable=False),
        sa.Column("idx", sa.Integer(), nullable=False),
        sa.Column("event_id", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("entry_id", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("kind", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("leaf_hash", sa.LargeBinary(), nullable=False),
        sa.Column("leaf", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("peer", "idx"),
    )
    with op.batch_alter_table("peer_leaf", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_peer_leaf_entry_id"), ["entry_id"], unique=False)

    op.create_table(
        "peer_state",
        sa.Column("peer", sqlmodel.sql.sqltypes.AutoString(length=63), nullable=False),
        sa.Column("tree_size", sa.Integer(), nullable=False),
        sa.Column("signed_head", sa.Text(), nullable=True),
        sa.Column("status", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("last_error", sqlmodel.sql.sqltypes.AutoString(length=512), nullable=False),
        sa.Column("last_sync_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("peer"),
    )
    op.create_table(
        "receipt",
        sa.Column("event_id", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("member", sqlmodel.sql.sqltypes.AutoString(length=63), nullable=False),
        sa.Column("signed", sa.Text(), nullable=False),
        sa.Column("applied_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("received_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("event_id", "member"),
    )
    op.create_table(
        "receipt_outbox",
        sa.Column("owner", sqlmodel.sql.sqltypes.AutoString(length=63), nullable=False),
        sa.Column("event_id", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("signed", sa.Text(), nullable=False),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("delivered_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("owner", "event_id"),
    )
    op.create_table(
        "tombstone",
        sa.Column("owner", sqlmodel.sql.sqltypes.AutoString(length=63), nullable=False),
        sa.Column("entry_id", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("event_id", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("kind", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("applied_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("owner", "entry_id"),
    )
    with op.batch_alter_table("alert", schema=None) as batch_op:
        batch_op.add_column(sa.Column("category", sqlmodel.sql.sqltypes.AutoString(length=48), nullable=True))
        batch_op.add_column(sa.Column("signed_entry", sa.Text(), nullable=True))
        batch_op.alter_column("score", existing_type=sa.FLOAT(), nullable=True)


def downgrade() -> None:
    with op.batch_alter_table("alert", schema=None) as batch_op:
        batch_op.alter_column("score", existing_type=sa.FLOAT(), nullable=False)
        batch_op.drop_column("signed_entry")
        batch_op.drop_column("category")

    op.drop_table("tombstone")
    op.drop_table("receipt_outbox")
    op.drop_table("receipt")
    op.drop_table("peer_state")
    with op.batch_alter_table("peer_leaf", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_peer_leaf_entry_id"))

    op.drop_table("peer_leaf")
    op.drop_table("manifest")
