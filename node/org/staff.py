"""The organisation's own staff accounts and audit log: one SQLite database beside the manifest.

The organisation runs no member node, but its console needs what a node's console has: staff
accounts with argon2id passwords and sign-in throttling, a hash-chained audit log of every
console action. Rather than a second implementation, the organisation keeps them in the same
tables a node does (``node.records.accounts``, ``node.records.auditlog``), in ``org.db`` beside
the manifest (mode 0600, migrated by the node's Alembic scripts), with the organisation's roles
(``governance.roles.ORG_ROLES``): secretariat, key holder, auditor, admin. The first admin is
made on the command line (``watchnet gov user add NAME --role admin --password-stdin``).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy.engine import Engine

from governance.roles import ORG_ROLES
from node.records.accounts import StaffAccounts
from node.storage.engine import make_engine
from node.storage.migrate import upgrade

__all__ = ["DATABASE_FILE", "OrgStaff", "database_url"]

DATABASE_FILE = "org.db"


def database_url(directory: Path) -> str:
    """The organisation's database: ``org.db`` in the directory that holds its manifest."""
    return f"sqlite:///{directory.resolve() / DATABASE_FILE}"


@dataclass
class OrgStaff:
    """The organisation's accounts (its roles only) and the lock its audit records are written under."""

    engine: Engine
    accounts: StaffAccounts = field(init=False)
    write_lock: threading.RLock = field(default_factory=threading.RLock)

    def __post_init__(self) -> None:
        self.accounts = StaffAccounts(self.engine, roles=ORG_ROLES)

    @classmethod
    def open(cls, url: str) -> OrgStaff:
        """Open (creating and migrating when new or behind) the organisation's database at ``url``."""
        engine = make_engine(url)
        upgrade(engine)
        return cls(engine)

    def close(self) -> None:
        self.engine.dispose()
