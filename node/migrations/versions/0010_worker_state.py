"""worker state: console sessions, rate buckets, HE evaluation keys and private-query rounds

A node may run as several ``watchnet serve`` workers on one PostgreSQL database, and a request
may land on any of them: a console session signed in through one worker must be valid on the
next, a staff token's rate limit must count every worker's requests, and round 2 of a private
query (the reveal) must find the evaluation keys and the round-1 state wherever round 1 ran.
Each worker kept these in its own memory; they move to five tables.

On PostgreSQL the tables are UNLOGGED: they skip the write-ahead log and crash recovery empties
them. Nothing in them outlives a crash of the database server usefully: a rate bucket starts
full (as when a node restarted), a console session ends (staff sign in again, as after a node's
restart), a member told ``unknown_eval_key`` sends its keys again, and a private query is asked
again. Sessions are UNLOGGED by choice, not need: they could survive, but then the registrar's
sealed photo under check and a ``last_seen`` write every few seconds per session would go through
the write-ahead log, its archives and any standby, which are more copies of biometric data to
erase for no gain. UNLOGGED tables are not replicated to standbys either. On SQLite the tables
are plain ones.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-09 09:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def _text(length: int) -> sqlmodel.sql.sqltypes.AutoString:
    return sqlmodel.sql.sqltypes.AutoString(length=length)


def upgrade() -> None:
    unlogged = ["UNLOGGED"] if op.get_bind().dialect.name == "postgresql" else []
    time = sqlmodel.sql.sqltypes.UTCDateTime
    op.create_table(
        "console_session",
        sa.Column("key", _text(64), nullable=False),
        sa.Column("csrf", _text(64), nullable=False),
        sa.Column("created_at", time(), nullable=False),
        sa.Column("last_seen", time(), nullable=False),
        sa.Column("staff_id", _text(64), nullable=True),
        sa.Column("staff_username", _text(64), nullable=True),
        sa.Column("staff_role", _text(16), nullable=True),
        sa.Column("checked_at", time(), nullable=True),
        sa.Column("notices", sa.Text(), nullable=False),
        sa.Column("preview_ct", sa.LargeBinary(), nullable=True),
        sa.PrimaryKeyConstraint("key"),
        prefixes=unlogged,
    )
    op.create_index("ix_console_session_created_at", "console_session", ["created_at"])
    op.create_index("ix_console_session_last_seen", "console_session", ["last_seen"])
    op.create_table(
        "rate_bucket",
        sa.Column("key", _text(200), nullable=False),
        sa.Column("tokens", sa.Float(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.Column("full_at", sa.Float(), nullable=False),
        sa.Column("allowed", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("key"),
        prefixes=unlogged,
    )
    op.create_index("ix_rate_bucket_full_at", "rate_bucket", ["full_at"])
    op.create_table(
        "he_eval_key",
        sa.Column("owner", _text(63), nullable=False),
        sa.Column("key_id", _text(64), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("params", sa.Text(), nullable=False),
        sa.Column("not_after", time(), nullable=False),
        sa.Column("received_at", time(), nullable=False),
        sa.Column("galois_keys", sa.LargeBinary(), nullable=False),
        sa.Column("relin_keys", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("owner", "key_id"),
        prefixes=unlogged,
    )
    op.create_index("ix_he_eval_key_not_after", "he_eval_key", ["not_after"])
    op.create_table(
        "private_build",
        sa.Column("build_id", _text(64), nullable=False),
        sa.Column("expires_at", time(), nullable=False),
        sa.Column("positions_ct", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("build_id"),
        prefixes=unlogged,
    )
    op.create_index("ix_private_build_expires_at", "private_build", ["expires_at"])
    op.create_table(
        "private_round",
        sa.Column("member", _text(63), nullable=False),
        sa.Column("query_id", _text(64), nullable=False),
        sa.Column("build_id", _text(64), nullable=False),
        sa.Column("expires_at", time(), nullable=False),
        sa.PrimaryKeyConstraint("member", "query_id", "build_id"),
        prefixes=unlogged,
    )
    op.create_index("ix_private_round_expires_at", "private_round", ["expires_at"])


def downgrade() -> None:
    for table, column in (
        ("private_round", "expires_at"),
        ("private_build", "expires_at"),
        ("he_eval_key", "not_after"),
        ("rate_bucket", "full_at"),
    ):
        op.drop_index(f"ix_{table}_{column}", table)
        op.drop_table(table)
    op.drop_index("ix_console_session_last_seen", "console_session")
    op.drop_index("ix_console_session_created_at", "console_session")
    op.drop_table("console_session")
