"""Database engines: SQLite (file, WAL) by default, PostgreSQL in production.

SQLite runs with ``secure_delete`` so erased biometric ciphertext is overwritten in the file, not
left in free pages, and with foreign keys and a busy timeout. ``erase_checkpoint`` truncates the
WAL after an erasure so old page images do not linger there either. The database file is
created 0600 before SQLite opens it, so its ``-wal`` and ``-shm`` files (which SQLite creates
with the database file's mode) are the owner's alone too, whatever the process umask.
"""

from __future__ import annotations

import os
import weakref
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine, make_url
from sqlmodel import create_engine, text

from node.files import PRIVATE_FILE
from protocol.errors import ConfigurationError

__all__ = ["dispose_engines", "erase_checkpoint", "make_engine"]

_ENGINES: weakref.WeakSet[Engine] = weakref.WeakSet()


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA secure_delete=ON")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()


def _create_private(url: str) -> None:
    """Create a SQLite database file 0600 if it does not exist yet (an existing one keeps its mode)."""
    database = make_url(url).database
    if not database or database == ":memory:" or database.startswith("file:"):
        return
    path = Path(database)
    if path.parent.is_dir():
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT, PRIVATE_FILE))


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite:"):
        _create_private(url)
        engine = create_engine(url, connect_args={"check_same_thread": False})
        event.listen(engine, "connect", _sqlite_pragmas)
        _ENGINES.add(engine)
        return engine
    if url.startswith("postgresql"):
        engine = create_engine(url, pool_pre_ping=True)
        _ENGINES.add(engine)
        return engine
    raise ConfigurationError(
        f"database url {url.split(':', 1)[0]!r}: use sqlite:///PATH or postgresql+psycopg://..."
    )


def dispose_engines() -> None:
    """Close every pooled connection this process opened (a CLI command ends; a node may be serving).

    A connection left open in a short-lived command run in-process (tests, ``watchnet demo``) would
    keep the SQLite file's WAL index mapped while the node's own process writes it.
    """
    for engine in list(_ENGINES):
        engine.dispose()


def erase_checkpoint(engine: Engine) -> None:
    """After an erasure on SQLite, fold the WAL into the file and truncate it."""
    if engine.dialect.name == "sqlite":
        with engine.connect() as conn:
            conn.execute(text("PRAGMA wal_checkpoint(TRUNCATE)"))
