"""The leader's witnessing duty: ask every other member to cosign this node's latest checkpoint.

Each pass (and at once after an event commits) the node reads its latest checkpoint and, for each
active member whose cosignature is older, sends ``add-checkpoint`` with a consistency proof from
the size that member last cosigned. A 409 names the size the witness holds; the node retries
once from it. A witness that holds a size beyond this node's log has seen a history this node no
longer has (a restore from an old copy, or a fork): that is logged as an error and never
papered over by asking again from zero.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Protocol

import aiohttp

from governance.manifest import ORGANISATION_WITNESS, Member
from node.records.witnessing import Checkpoints, OwnCheckpoint, witness_verifier
from protocol.errors import WatchnetError
from protocol.witness import AddCheckpoint

if TYPE_CHECKING:
    from governance.manifest import Manifest

__all__ = ["WITNESS_PASS", "witness_loop"]

LOG = logging.getLogger("watchnet.federation")
WITNESS_PASS = timedelta(seconds=2)
MIN_GAP = 0.5
"""Seconds at least between two passes: a burst of events is one request to each witness."""
MAX_ANSWER = 16 * 1024


class DutyRecorder(Protocol):
    def ok(self) -> None: ...

    def failed(self, error: BaseException) -> None: ...


class WitnessAhead(WatchnetError):
    code = "witness_ahead"


async def _post(session: aiohttp.ClientSession, url: str, body: bytes, timeout: float) -> tuple[int, str]:
    async with session.post(
        url,
        data=body,
        headers={"Content-Type": "text/plain; charset=utf-8"},
        timeout=aiohttp.ClientTimeout(total=timeout),
    ) as response:
        data = await response.content.read(MAX_ANSWER + 1)
        if len(data) > MAX_ANSWER:
            raise WatchnetError(f"the witness answered more than {MAX_ANSWER} bytes")
        return response.status, data.decode("utf-8", "replace")


async def ask_witness(
    session: aiohttp.ClientSession,
    checkpoints: Checkpoints,
    manifest: Manifest,
    witness: str,
    own: OwnCheckpoint,
    now: Callable[[], datetime],
    timeout: float,
    old: int,
    prepared: AddCheckpoint | None = None,
) -> bool:
    """One witness's cosignature of ``own`` (a member, or the organisation); True when recorded.

    ``old`` is the size the witness last cosigned as recorded here, ``prepared`` the request from
    it when the pass built one (shared with the other witnesses at that size)."""
    verifier = witness_verifier(manifest, witness)
    endpoint = manifest.witness_endpoint(witness)
    if verifier is None or endpoint is None:
        return False
    url = endpoint.rstrip("/") + "/v1/witness/add-checkpoint"
    request = prepared if prepared is not None and prepared.old_size == old else None
    for _ in range(2):
        if old > own.checkpoint.size:
            raise WitnessAhead(
                f"{witness} last cosigned size {old} of this node's log, which has {own.checkpoint.size}: "
                "it has seen a history this node no longer holds (restored from an old copy?)"
            )
        if request is None:
            request = await asyncio.to_thread(checkpoints.request_for, own, old)
        status, text = await _post(session, url, request.to_bytes(), timeout)
        if status == 200:
            await asyncio.to_thread(checkpoints.record, witness, own, text, verifier, now())
            return True
        if status == 409 and text.strip().isdigit():
            old, request = int(text.strip()), None
            continue
        raise WatchnetError(
            f"{witness} refused to cosign size {own.checkpoint.size}: {status} {text[:200]}"
        )
    return False


def _prepare(
    checkpoints: Checkpoints, own: OwnCheckpoint, witnesses: list[str]
) -> tuple[dict[str, int], dict[int, AddCheckpoint]]:
    """A pass's reads in one hand-off: the size each witness last cosigned, and one request per
    size among them (a witness ahead of the log gets none: ``ask_witness`` refuses it)."""
    if not witnesses:
        return {}, {}
    held = checkpoints.cosigned_sizes()
    olds = {w: held.get(w, 0) for w in witnesses}
    sizes = [o for o in olds.values() if o <= own.checkpoint.size]
    return olds, checkpoints.requests_for(own, sizes)


async def witness_loop(
    session_of: Callable[[], aiohttp.ClientSession | None],
    checkpoints: Checkpoints,
    manifest_of: Callable[[], Manifest],
    peers_of: Callable[[], list[Member]],
    wake: asyncio.Event,
    now: Callable[[], datetime],
    timeout: float,
    duty: DutyRecorder,
) -> None:
    """Until cancelled: keep every witness's cosignature (each reachable active member's, and the
    organisation's when the policy names it) on this node's latest checkpoint."""
    said: dict[str, str] = {}
    while True:
        try:
            manifest = manifest_of()
            own = await asyncio.to_thread(checkpoints.current, manifest)
            session = session_of()
            if own is not None and session is not None:
                reachable = {m.node_id for m in peers_of()}
                missing = [
                    w
                    for w in manifest.witnesses_of(checkpoints.node_id)
                    if w not in own.cosigned_by and (w in reachable or w == ORGANISATION_WITNESS)
                ]
                olds, prepared = await asyncio.to_thread(_prepare, checkpoints, own, missing)
                results = await asyncio.gather(
                    *(
                        ask_witness(
                            session,
                            checkpoints,
                            manifest,
                            w,
                            own,
                            now,
                            timeout,
                            olds[w],
                            prepared.get(olds[w]),
                        )
                        for w in missing
                    ),
                    return_exceptions=True,
                )
                for witness, result in zip(missing, results, strict=True):
                    if isinstance(result, BaseException) and not isinstance(result, asyncio.CancelledError):
                        message = f"{type(result).__name__}: {result}"
                        if said.get(witness) != message:  # once per distinct failure
                            level = logging.ERROR if isinstance(result, WitnessAhead) else logging.WARNING
                            LOG.log(level, "witness %s: %s", witness, message)
                            said[witness] = message
                    else:
                        said.pop(witness, None)
            duty.ok()
        except Exception as e:  # the database or a bug: counted, retried next pass
            duty.failed(e)
            LOG.exception("the witnessing pass failed; retrying")
        await asyncio.sleep(MIN_GAP)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(wake.wait(), WITNESS_PASS.total_seconds() - MIN_GAP)
        wake.clear()
