"""The node's self-check as a background duty: at start, then every ``interval``.

The check itself is ``node.records.integrity.StoreChecker``; this module runs it off the event
loop, hands its verdict to ``registry.integrity`` (which the match index, private mode and the
peer query path consult before answering), audits each change of verdict and keeps the loop
alive. The start check runs before the node serves; if it takes longer than ``START_WAIT`` the
node serves anyway with the state ``checking`` and refuses queries until the verdict (health,
the log and the audit trail answer meanwhile). A check that raises (the database unreachable)
is logged, counted and retried with backoff; it never ends the loop and gives no verdict.

Scheduled checks are incremental (the leaves appended since, the prefix's consistency, every
entry row by fingerprint); every ``FULL_EVERY``-th one starts again from leaf 0, so an edit to
an old leaf that the prefix checks cannot see (its bytes, not its hash) is found within
``FULL_EVERY`` intervals. The interval is ``DEFAULT_INTERVAL``; the application may override
it under ``INTEGRITY_INTERVAL`` before it starts, and the ``WATCHNET_INTEGRITY_INTERVAL``
environment variable (a duration such as ``"300s"``) overrides it for a node process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator

from aiohttp import web

from node.http.api import CLOCK, CONTEXT, PRIVATE, TELEMETRY
from node.records.auditlog import record_audit
from node.records.integrity import IntegrityResult, StoreChecker
from protocol.errors import MalformedError
from protocol.fields import parse_duration

__all__ = [
    "DEFAULT_INTERVAL",
    "FULL_EVERY",
    "INTEGRITY_INTERVAL",
    "INTERVAL_ENV",
    "START_WAIT",
    "integrity_check",
]

LOG = logging.getLogger("watchnet.node.integrity")

DEFAULT_INTERVAL = 300.0
"""Seconds between scheduled checks."""
FULL_EVERY = 12
"""Every this many scheduled checks, one recomputes from leaf 0 (hourly at the default interval)."""
START_WAIT = 20.0
"""Seconds the start waits for the first verdict before serving with the state ``checking``."""
RETRY_FIRST = 5.0
"""Seconds before retrying a check that raised; doubled per failure, up to the interval."""
INTERVAL_ENV = "WATCHNET_INTEGRITY_INTERVAL"
INTEGRITY_INTERVAL = web.AppKey("integrity_interval", float)
"""Seconds between scheduled checks for this application (set before it starts)."""
AUDIT_ACTION = "integrity.check"


def _interval(app: web.Application) -> float:
    text = os.environ.get(INTERVAL_ENV)
    if text:
        try:
            return max(0.1, parse_duration(text, field=INTERVAL_ENV).total_seconds())
        except MalformedError:
            LOG.error(
                "%s=%r is not a duration like '300s'; using %.0f s", INTERVAL_ENV, text, DEFAULT_INTERVAL
            )
    return app.get(INTEGRITY_INTERVAL, DEFAULT_INTERVAL)


async def integrity_check(app: web.Application) -> AsyncIterator[None]:
    """``cleanup_ctx``: check at start (before serving, up to ``START_WAIT``), then on a schedule."""
    context = app[CONTEXT]
    registry = context.registry
    state = registry.integrity
    checker = StoreChecker(
        engine=context.engine,
        node_id=context.config.node_id,
        key=context.signing_key.public,
        vault=registry.vault,
        served=registry.log,
        lock=registry.write_lock,
    )
    interval = _interval(app)
    meter = app[TELEMETRY].meter("watchnet.node")
    errors = meter.create_counter(
        "watchnet.integrity.check_errors", description="self-checks that raised instead of giving a verdict"
    )
    failures = meter.create_counter(
        "watchnet.integrity.failures", description="self-checks that found the store disagreeing with its log"
    )

    def audit(outcome: str, target: str) -> None:
        record_audit(
            context.engine,
            registry.write_lock,
            actor="system",
            action=AUDIT_ACTION,
            target=target[:128],
            outcome=outcome,
            now=app[CLOCK](),
        )

    async def act_on(result: IntegrityResult) -> None:
        change = state.record(result, app[CLOCK]())
        if not result.ok:
            failures.add(1)
        if change in ("failed", "changed"):
            LOG.error(
                "store self-check FAILED, queries refused: %s; %d disagreement(s): %s",
                result.summary(),
                len(result.problems) + result.unlisted,
                "; ".join(str(p) for p in result.problems),
            )
            await asyncio.to_thread(audit, "failed:store_tampered", result.problems[0].public())
        elif change == "recovered":
            LOG.warning("store self-check passes again (%s); queries answered again", result.summary())
            await asyncio.to_thread(registry.rebuild_index)
            app[PRIVATE].matcher.mark_dirty()
            await asyncio.to_thread(audit, "ok:recovered", f"size={result.checked_size}")
        else:
            LOG.debug(
                "store self-check: %s in %.3f s (%d leaves hashed, %d entries opened, %d unchanged)",
                result.summary(),
                result.seconds,
                result.leaves_hashed,
                result.entries_checked,
                result.entries_unchanged,
            )

    async def run_once(full: bool) -> bool:
        """One supervised check: True when it gave a verdict (whatever the verdict)."""
        state.begin()
        try:
            result = await asyncio.to_thread(checker.check, full=full)
            await act_on(result)
        except Exception as e:  # logged, counted, retried: the duty never dies
            state.record_error(e)
            errors.add(1, {"error.type": type(e).__name__})
            LOG.exception("store self-check could not run; retrying")
            return False
        return True

    async def loop(first: asyncio.Task[bool]) -> None:
        ran = await first
        delay, runs = RETRY_FIRST, 0
        while True:
            await asyncio.sleep(interval if ran else delay)
            delay = RETRY_FIRST if ran else min(delay * 2, max(interval, RETRY_FIRST))
            runs += 1
            ran = await run_once(full=runs % FULL_EVERY == 0)

    first = asyncio.create_task(run_once(full=True))
    await asyncio.wait({first}, timeout=START_WAIT)
    task = asyncio.create_task(loop(first))
    yield
    task.cancel()
    first.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
