"""Live alerts for the operator's page: one reader per node, pushed to every open page when they change.

Alerts change in several places: a query to the group or a local match stores one, syncing an
owner's log withdraws one, a review closes one, deleting one of our entries removes its alerts,
and some of these writers run in other processes (the command line). Rather than hook each of
them, one task reads the newest alerts (``alert_items``, what ``GET /v1/alerts`` returns) every
``POLL_SECONDS`` while at least one page listens, and hands each listener the list only when it
differs from the last one; with nobody listening nothing is read. The number of listeners is
bounded (``MAX_STREAMS``). At shutdown every stream is ended first (``close``), so that
``watchnet serve`` stops at once instead of waiting for open pages to go away.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterator
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from node.http.api import RateLimited

__all__ = ["MAX_STREAMS", "POLL_SECONDS", "AlertFeed", "Listener", "Snapshot"]

LOG = logging.getLogger("watchnet.console")

POLL_SECONDS = 0.5
"""How often the alerts are read while a page listens: a new alert or a withdrawal shows within this."""
MAX_STREAMS = 32
"""Hard limit on live alert pages open at once on one node; one more is refused (429)."""

Snapshot = list[dict[str, Any]]


class Listener:
    """One open page: the newest list it has not sent yet (a newer list replaces an unsent one)."""

    def __init__(self) -> None:
        self._latest: Snapshot | None = None
        self._changed = asyncio.Event()
        self.ended = False

    def offer(self, snapshot: Snapshot) -> None:
        self._latest = snapshot
        self._changed.set()

    def end(self) -> None:
        self.ended = True
        self._changed.set()

    async def next(self, timeout: float) -> Snapshot | None:
        """The newest list not yet taken; ``None`` when ``timeout`` seconds pass without one or it ended."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._changed.wait(), timeout)
        self._changed.clear()
        snapshot, self._latest = self._latest, None
        return None if self.ended else snapshot


class AlertFeed:
    """Reads ``load()`` while anyone listens and offers each changed result to every listener."""

    def __init__(
        self,
        load: Callable[[], Snapshot],
        *,
        interval: float = POLL_SECONDS,
        max_streams: int = MAX_STREAMS,
    ) -> None:
        self._load = load
        self.interval = interval
        self.max_streams = max_streams
        self._listeners: set[Listener] = set()
        self._last: Snapshot | None = None
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    def __len__(self) -> int:
        return len(self._listeners)

    @contextlib.contextmanager
    def listen(self) -> Iterator[Listener]:
        """A listener for the duration of one stream; refused when ``max_streams`` are open or at shutdown."""
        if self._closed:
            raise RateLimited("the node is shutting down; reload the page in a moment")
        if len(self._listeners) >= self.max_streams:
            raise RateLimited(
                f"{len(self._listeners)} live alert pages are open, the limit is {self.max_streams}; "
                "close one, or reload this page without live updates"
            )
        listener = Listener()
        if self._last is not None:
            listener.offer(self._last)
        self._listeners.add(listener)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._poll(), name="console-alert-feed")
        try:
            yield listener
        finally:
            self._listeners.discard(listener)

    async def _poll(self) -> None:
        while self._listeners:
            try:
                snapshot = await asyncio.to_thread(self._load)
            except SQLAlchemyError as e:
                LOG.warning("live alerts: reading the alert table failed, retrying: %s", e)
            else:
                if snapshot != self._last:
                    self._last = snapshot
                    for listener in list(self._listeners):
                        listener.offer(snapshot)
            await asyncio.sleep(self.interval)
        self._last = None  # nobody listens: the next listener starts from a fresh read

    async def close(self) -> None:
        """End every stream and stop reading (at shutdown, before aiohttp waits for open requests)."""
        self._closed = True
        for listener in list(self._listeners):
            listener.end()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
