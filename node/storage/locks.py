"""Locks shared by every worker of a node on PostgreSQL: advisory locks with fixed keys.

The node keeps two hash chains, the event log (``log_leaf``) and the audit log (``audit``), and
every signed tree head commits to both. Each append reads the chain's last record and writes the
next, so two workers appending at once would pick the same number. ``lock_chains`` takes one
transaction-scoped advisory lock for both chains: the holder reads the last record, appends and
commits; the lock is released with the transaction (commit or rollback), never left behind.

It is taken before the transaction's own changes are flushed, so it comes before the row locks
those changes take; one key for both chains means no two chain locks can be taken in opposite
orders. Taking it again in the same transaction is free (advisory locks stack per session).

On SQLite it does nothing: a node on SQLite runs one process, whose ``Registry.write_lock``
serialises the appends.
"""

from __future__ import annotations

from sqlalchemy import text
from sqlmodel import Session

__all__ = ["CHAINS_LOCK", "lock_chains"]

CHAINS_LOCK = int.from_bytes(b"wn:chain", "big")
"""The advisory lock key of this node's chains (a 64-bit constant; other locks use other keys)."""


def lock_chains(session: Session) -> None:
    """Hold this node's chain lock until ``session``'s transaction ends (no-op on SQLite)."""
    if session.get_bind().dialect.name != "postgresql":
        return
    session.connection().execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": CHAINS_LOCK})
