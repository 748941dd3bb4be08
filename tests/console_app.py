"""The node's console application in this process, for the tests that read its pages over HTTP.

``loaded_node`` makes a node directory with ``watchnet init`` and the test staff accounts
(``NodeProcess.create``) and loads its ``NodeContext``, for ``build_app`` to serve with a
``Clock`` the test can move; ``Page`` is one response as such a test's browser received it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from node.context import NodeContext
from tests.nodeproc import NodeProcess

CSRF_RE = re.compile(r'name="csrf" value="([^"]+)"')


class Clock:
    """The node's clock, fixed unless the test moves it."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC).replace(microsecond=0)

    def __call__(self) -> datetime:
        return self.now


@dataclass(frozen=True)
class Page:
    status: int
    text: str
    headers: Any


@dataclass
class Node:
    """The node under test: its directory, API tokens and loaded context."""

    directory: Path
    tokens: dict[str, str]
    context: NodeContext


@contextmanager
def loaded_node(root: Path) -> Iterator[Node]:
    """A new node made under ``root``, loaded in this process; its database engine closed after."""
    made = NodeProcess.create(root)
    context = NodeContext.load(made.directory)
    try:
        yield Node(made.directory, made.tokens, context)
    finally:
        context.engine.dispose()
