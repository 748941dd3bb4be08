"""A test's direct look into a node's database, on whichever engine the node is configured with.

The group tests run on SQLite locally and on PostgreSQL in CI (``WATCHNET_DEMO_DATABASE_SERVER``),
so a test that reads or tampers with a node's rows goes through the node's own configured URL
(``NodeConfig.effective_database_url``), never through a path to ``watchnet.db``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection, CursorResult

from node.config import NodeConfig
from node.storage.engine import make_engine

__all__ = ["NodeSQL", "node_sql"]


class NodeSQL:
    """Plain SQL with named parameters (``:name``) in one transaction, committed on success."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection

    @property
    def dialect(self) -> str:
        return self.connection.dialect.name

    def execute(self, statement: str, params: dict[str, Any] | None = None) -> CursorResult[Any]:
        return self.connection.execute(text(statement), params or {})

    def rows(self, statement: str, params: dict[str, Any] | None = None) -> list[tuple[Any, ...]]:
        return [tuple(row) for row in self.execute(statement, params)]

    def tables(self) -> list[str]:
        return list(inspect(self.connection).get_table_names())


@contextlib.contextmanager
def node_sql(directory: Path) -> Iterator[NodeSQL]:
    """A short-lived connection to the node's database, committed and closed (never left open:
    an open SQLite reader would pin the WAL the node's process writes)."""
    engine = make_engine(NodeConfig.load(directory).effective_database_url)
    try:
        with engine.begin() as connection:
            yield NodeSQL(connection)
    finally:
        engine.dispose()


def as_bytes(value: Any) -> bytes | None:
    """A column value as bytes if it is binary (PostgreSQL's driver may hand out a memoryview)."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, memoryview):
        return value.tobytes()
    return None
