"""The organisation server's supervised loops: one shape for each duty that runs on a timer or
when staff wake it, so that no exception ends one and each failure is logged and backed off."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from typing import Any

import aiohttp

__all__ = ["running", "wakeable_loop"]

MAX_BACKOFF = 60.0


async def wakeable_loop(
    wake: asyncio.Event,
    interval: float,
    work: Callable[[], Awaitable[Any]],
    *,
    doing: str,
    log: logging.Logger,
    failed: Callable[[BaseException], None] = lambda _: None,
) -> None:
    """Run ``work`` every ``interval`` seconds, or at once when ``wake`` is set; a failure is
    handed to ``failed`` (to count it), logged as "``doing`` failed", and retried after a delay
    doubling from 1 s to ``MAX_BACKOFF``. Only cancellation ends it."""
    delay = 1.0
    while True:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(wake.wait(), interval)
        wake.clear()
        try:
            await work()
            delay = 1.0
        except asyncio.CancelledError:
            raise
        except Exception as e:  # noqa: BLE001 (a supervised duty: log, count, back off, go on)
            failed(e)
            log.warning("%s failed (%s); again in %.0f s", doing, type(e).__name__, delay)
            await asyncio.sleep(delay)
            delay = min(MAX_BACKOFF, delay * 2)


@contextlib.asynccontextmanager
async def running(
    run: Callable[[], Coroutine[Any, Any, None]],
    name: str,
    session: Callable[[aiohttp.ClientSession | None], None],
) -> AsyncIterator[None]:
    """A duty's life inside an aiohttp ``cleanup_ctx``: one client session handed to it through
    ``session``, the loop ``run`` as a task named ``name``, both ended with the server."""
    client = aiohttp.ClientSession()
    session(client)
    task = asyncio.create_task(run(), name=name)
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        session(None)
        await client.close()
