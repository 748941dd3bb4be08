"""replay nonces in the database: one (sender, nonce) per peer message, seen by every worker

Each worker of a node kept the nonces of the peer messages it admitted in its own memory, so a
sealed message admitted by one worker was admitted again by the next. ``replay_nonce`` holds
them for all workers: the primary key (sender, nonce) refuses the second insert, ``expires_at``
(issued_at plus the replay window) says when a row is worthless, and the insert path deletes
such rows a batch at a time.

On PostgreSQL the table is UNLOGGED: it skips the write-ahead log (the insert is on every peer
message's path) and is emptied by crash recovery. That is the whole cost: a nonce older than
the replay window is worthless, since its message fails the time check anyway, so a crash loses
at most the nonces of the last window, and only a crash of the database server itself (a clean
restart keeps the table, and a worker that dies loses nothing). UNLOGGED tables are not
replicated to standbys either, so a failover to a standby starts with an empty table too. On
SQLite it is a plain table.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-08 09:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    unlogged = ["UNLOGGED"] if op.get_bind().dialect.name == "postgresql" else []
    op.create_table(
        "replay_nonce",
        sa.Column("sender", sqlmodel.sql.sqltypes.AutoString(length=63), nullable=False),
        sa.Column("nonce", sa.LargeBinary(), nullable=False),
        sa.Column("expires_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("sender", "nonce"),
        prefixes=unlogged,
    )
    op.create_index("ix_replay_nonce_expires_at", "replay_nonce", ["expires_at"])
    op.create_index("ix_replay_nonce_sender_expires_at", "replay_nonce", ["sender", "expires_at"])


def downgrade() -> None:
    op.drop_index("ix_replay_nonce_sender_expires_at", "replay_nonce")
    op.drop_index("ix_replay_nonce_expires_at", "replay_nonce")
    op.drop_table("replay_nonce")
