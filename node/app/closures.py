"""Deletions that fail closed, kept writing until they land, and the disk reserve (#16).

A deletion or an expiry whose write failed is held by the registry (``node.records.closures``),
its entry suppressed. The ``closures`` duty runs in every worker (only the worker that decided a
deletion holds it): it writes the held closures, 0.5 s after one is held and then with a backoff
doubling to 2 s (with jitter), so one lands within about 2 s of the disk having room again; the
usual propagation follows its write. While nothing is held it takes the disk reserve back once
there is room for it and the free-space margin (``DiskReserve.restore_if_room``).

Readiness names both: ``deletions`` while any closure is held, ``disk_reserve`` while the reserve
is released.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import AsyncIterator, Callable
from datetime import datetime, timedelta
from typing import Any

from node.app.leader import DutyLoop, DutyState
from node.app.readiness import Check
from node.records.registry import Registry
from node.storage.reserve import DiskReserve

__all__ = [
    "IDLE_SECONDS",
    "INTERVAL",
    "RETRY_FIRST",
    "RETRY_MAX",
    "closure_duty",
    "closures_check",
    "reserve_check",
    "reserve_cleanup_ctx",
    "take_reserve",
]

LOG = logging.getLogger("watchnet.node.closures")

RETRY_FIRST = 0.5
"""Seconds from a closure being held to its first retry."""
RETRY_MAX = 2.0
"""The longest wait between two retries of the held closures."""
IDLE_SECONDS = 2.0
"""A pass while nothing is held (the reserve is checked); the duty's interval for readiness."""
INTERVAL = timedelta(seconds=IDLE_SECONDS)


def closure_duty(registry: Registry, reserve: DiskReserve, clock: Callable[[], datetime]) -> DutyLoop:
    """The ``closures`` duty: see the module docstring."""

    async def loop(duty: DutyState) -> None:
        wake = asyncio.Event()
        running = asyncio.get_running_loop()

        def held() -> None:  # called from the registry's thread
            running.call_soon_threadsafe(wake.set)

        registry.pending_listeners.append(held)
        try:
            delay = RETRY_FIRST
            while True:
                if registry.pending:
                    landed = await asyncio.to_thread(registry.land_pending, clock())
                    delay = RETRY_FIRST if not registry.pending else min(delay * 2, RETRY_MAX)
                    if landed:
                        LOG.warning(
                            "%d held deletion(s) written; %d still held", landed, len(registry.pending)
                        )
                elif reserve.enabled and not reserve.held:
                    if await asyncio.to_thread(reserve.restore_if_room):
                        LOG.warning("disk reserve taken back: %d MiB at %s", reserve.size >> 20, reserve.path)
                duty.ok()
                wait = delay * random.uniform(0.8, 1.2) if registry.pending else IDLE_SECONDS  # noqa: S311
                wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wake.wait(), wait)
                if wake.is_set():  # one was just held (its request already tried it once)
                    delay = RETRY_FIRST
                    await asyncio.sleep(RETRY_FIRST)
        finally:
            registry.pending_listeners.remove(held)

    return loop


async def take_reserve(reserve: DiskReserve) -> None:
    """At start: hold the reserve if it is not held and there is room; say so when there is not."""
    if not reserve.enabled or reserve.held:
        return
    started = time.monotonic()
    if await asyncio.to_thread(reserve.restore_if_room):
        LOG.info("disk reserve written in %.2f s", time.monotonic() - started)
        return
    state = reserve.state()
    LOG.error(
        "no room for the %d MiB disk reserve under %s (%s MiB free, the reserve and [health] "
        "disk_free_min_mb needed): deletions and expiries have no space kept for them",
        state.size_mb,
        reserve.directory,
        "?" if state.free_mb is None else state.free_mb,
    )


def reserve_cleanup_ctx(reserve: DiskReserve) -> Callable[[Any], AsyncIterator[None]]:
    """For ``web.Application.cleanup_ctx``: take the reserve before the node serves."""

    async def ctx(_app: Any) -> AsyncIterator[None]:
        await take_reserve(reserve)
        yield

    return ctx


def closures_check(registry: Registry, clock: Callable[[], datetime]) -> Callable[[], Check]:
    """Readiness ``deletions``: red while a decided deletion or expiry is not written yet."""

    def check() -> Check:
        held = registry.pending.all()
        facts: dict[str, Any] = {"pending": len(held), "landed_later": registry.pending.landed}
        if not held:
            return Check("deletions", True, "none held", facts)
        oldest = held[0]
        age = max(0, int((clock() - oldest.decided_at).total_seconds()))
        disk_full = any(p.disk_full for p in held)
        facts.update(oldest_seconds=age, disk_full=disk_full, last_error=oldest.last_error)
        cause = "the disk is full" if disk_full else f"last error {oldest.last_error}"
        return Check(
            "deletions",
            False,
            f"{len(held)} deletion(s) or expiries decided and no longer matching, not yet written "
            f"(oldest {age} s, {cause}); retried every {RETRY_MAX:.0f} s: free space on the node's "
            "disk (or 'watchnet node release-reserve') or bring the database back",
            facts,
        )

    return check


def reserve_check(reserve: DiskReserve) -> Callable[[], Check]:
    """Readiness ``disk_reserve``: red while the reserve is released (or could not be taken)."""

    def check() -> Check:
        state = reserve.state()
        facts = state.to_dict()
        if state.state == "off":
            return Check("disk_reserve", True, "off ([storage] reserve_mb = 0)", facts)
        if state.state == "held":
            return Check("disk_reserve", True, f"{state.size_mb} MiB held", facts)
        return Check(
            "disk_reserve",
            False,
            f"the {state.size_mb} MiB disk reserve is released"
            f"{' (a write found the disk full)' if state.released_by_node else ''}; free space: the node "
            f"takes it back once {state.size_mb} MiB and [health] disk_free_min_mb are free "
            "(or 'watchnet node restore-reserve')",
            facts,
        )

    return check
