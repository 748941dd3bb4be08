"""Private mode, both sides: answering members' encrypted queries and asking peers privately.

Answering: keys are checked and held per member (``EvaluationKeyStore``); round 1 runs in the
HE workers (``PrivateMatcher``); round 2 recomputes the score of the face the querier reveals
against the entry at the named position and returns the signed entry only at or above the
group threshold. This node never holds a secret key of anyone else's, so the queries it
computes on are opaque to it.

Asking: encrypt each face once under this epoch's key, send the evaluation keys to a peer the
first time (or when it says it lost them), decrypt the masked scores, and reveal only the
positions whose value is positive.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from datetime import datetime

import numpy as np

from governance.errors import QueryModeNotAllowed
from governance.manifest import Manifest, Member, MemberStatus
from node.context import NodeContext
from node.federation.client import PeerClient, PeerRefused, PeerTimeout
from node.federation.gate import PeerRequest
from node.private.deadline import PrivateDeadlines
from node.private.eval_keys import EvaluationKeyStore
from node.private.matcher import PrivateMatcher
from node.private.query_keys import QueryKeyring
from node.records.hits import ProposedHit
from protocol.entry import WatchlistEntry
from protocol.errors import MalformedError, WatchnetError
from protocol.he_params import HEParameters
from protocol.message import MAX_BULK_SEALED_BYTES
from protocol.private_query import (
    MAX_PRIVATE_QUERIES,
    MAX_REVEAL_CANDIDATES,
    Candidate,
    EvaluationKeys,
    EvaluationKeysAck,
    PrivateQuery,
    PrivateScores,
    RevealRequest,
)
from protocol.query import QueryMatch, QueryRequest, QueryResponse
from protocol.signed import SignedDocument

__all__ = ["PRIVATE_KEY_BODIES", "PRIVATE_QUERY_BODIES", "PRIVATE_REVEAL_BODIES", "PrivateMode"]

LOG = logging.getLogger("watchnet.private")

PRIVATE_KEY_BODIES = {EvaluationKeys.TYPE: EvaluationKeys}
PRIVATE_QUERY_BODIES = {PrivateQuery.TYPE: PrivateQuery}
PRIVATE_REVEAL_BODIES = {RevealRequest.TYPE: RevealRequest}


def _he_params(manifest: Manifest) -> HEParameters:
    he = manifest.policy.query_modes.he
    if he is None:
        raise QueryModeNotAllowed(f"manifest version {manifest.version} does not allow private mode")
    return he


class PrivateMode:
    def __init__(self, context: NodeContext, clock: Callable[[], datetime]) -> None:
        self.context = context
        self.clock = clock
        settings = context.config.federation
        self.matcher = PrivateMatcher(context.registry.index, reshuffle=settings.gallery_reshuffle)
        self.keys = EvaluationKeyStore()
        self.keyring = QueryKeyring(
            context.config.path(context.config.signing_key_file).parent,
            context.config.node_id,
            settings.he_key_epoch,
        )
        self._loop: asyncio.AbstractEventLoop | None = None
        self._refresh_task: asyncio.Task[None] | None = None
        self.deadlines = PrivateDeadlines(
            base=settings.peer_timeout.total_seconds(),
            cap=settings.private_deadline_cap.total_seconds(),
            max_faces=MAX_PRIVATE_QUERIES,
        )

    # ----- keeping the gallery current ----------------------------------------------------------

    async def start(self) -> None:
        """Build the gallery now and after every change to the watchlist, so a deleted entry
        leaves the workers at once and the first private query does not wait for a worker."""
        self._loop = asyncio.get_running_loop()
        self.context.registry.listeners.append(self._on_change)
        self._refresh()

    async def close(self) -> None:
        if self._on_change in self.context.registry.listeners:
            self.context.registry.listeners.remove(self._on_change)
        if self._refresh_task is not None:
            self._refresh_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._refresh_task
        await self.matcher.close()

    def _on_change(self, tree_size: int) -> None:
        """Called from the registry's thread after an event committed."""
        self.matcher.mark_dirty()
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._refresh)

    def _refresh(self) -> None:
        """One refresh at a time; it loops while entries keep changing, so none is missed."""
        if self._refresh_task is None or self._refresh_task.done():
            self._refresh_task = asyncio.create_task(self._keep_current())

    def _answers_peers(self) -> bool:
        own = self.context.manifest.member(self.context.config.node_id)
        return own is not None and own.status is not MemberStatus.REMOVED

    async def _keep_current(self) -> None:
        if not self._answers_peers():
            return
        try:
            await self.matcher.refresh(self.context.manifest.policy.query_modes.he)
        except Exception:  # a failed build is retried by the next change or query
            LOG.exception("private-mode gallery build failed; the next private query retries it")

    def readiness(self) -> dict[str, object]:
        """The gallery's state for ``/v1/health``: ready only when the loaded build holds exactly
        the active entries."""
        if not self._answers_peers():
            return {"state": "off"}
        return self.matcher.readiness(self.context.manifest.policy.query_modes.he)

    # ----- answering ---------------------------------------------------------------------------

    def accept_keys(self, request: PeerRequest) -> EvaluationKeysAck:
        body = request.body
        assert isinstance(body, EvaluationKeys)
        held = self.keys.accept(
            request.member.node_id, body, request.manifest.policy.query_modes.he, self.clock()
        )
        return EvaluationKeysAck(key_id=held.key_id, not_after=held.not_after)

    async def answer(self, request: PeerRequest) -> tuple[PrivateScores, int]:
        body = request.body
        assert isinstance(body, PrivateQuery)
        self.context.registry.integrity.require_intact()  # the gallery came from the store it checks
        params = _he_params(request.manifest)
        sender = request.member.node_id
        held = self.keys.lookup(sender, body.key_id, params, self.clock())
        build, results = await self.matcher.evaluate(
            sender,
            body.query_id,
            held.key_id,
            (held.data, held.relin),
            body.ciphertexts,
            request.manifest.policy.match_threshold,
            params,
        )
        scores = PrivateScores(
            query_id=body.query_id,
            responder=self.context.config.node_id,
            build_id=build.build_id,
            results=results,
        )
        return scores, len(body.ciphertexts)

    def reveal(
        self, request: PeerRequest, admit_hits: Callable[[str, list[ProposedHit], Manifest], list[str]]
    ) -> tuple[QueryResponse, int]:
        """Round 2: the signed entry and band for each revealed face that truly scores at or above
        the threshold, once ``admit_hits`` (the asker's hit budget) allows it."""
        body = request.body
        assert isinstance(body, RevealRequest)
        policy = request.manifest.policy
        threshold = policy.match_threshold
        registry = self.context.registry
        found: list[tuple[int, float, np.ndarray, SignedDocument[WatchlistEntry]]] = []
        seen: set[tuple[int, str]] = set()
        for candidate in body.candidates:
            entry_id = self.matcher.entry_at(
                request.member.node_id, body.query_id, body.build_id, candidate.position
            )
            if entry_id is None or (candidate.query_index, entry_id) in seen:
                continue
            vector = registry.index.vector(entry_id)
            if vector is None:
                continue
            score = float(np.dot(candidate.embedding.vector.astype(np.float64), vector.astype(np.float64)))
            if score < threshold:
                continue
            try:
                entry = registry.signed_entry(entry_id)
            except WatchnetError:
                continue
            seen.add((candidate.query_index, entry_id))
            found.append((candidate.query_index, score, candidate.embedding.vector, entry))
        bands = admit_hits(
            request.member.node_id,
            [ProposedHit(e.payload.entry_id, v, policy.disclosure.band(sc)) for _, sc, v, e in found],
            request.manifest,
        )
        matches = [
            QueryMatch(query_index=qi, band=band, entry=e)
            for (qi, _, _, e), band in zip(found, bands, strict=True)
        ]
        response = QueryResponse(
            query_id=body.query_id,
            responder=self.context.config.node_id,
            threshold=threshold,
            matches=matches,
        )
        return response, len(body.candidates)

    # ----- asking ------------------------------------------------------------------------------

    async def ask(
        self,
        client: PeerClient,
        member: Member,
        request: QueryRequest,
        purpose: str,
        manifest: Manifest,
        now: datetime,
        timeout: float,
    ) -> tuple[QueryResponse, int]:
        """Both rounds with one peer; the answer has the same form and checks as a plain one.

        Round-1 messages hold as many faces as fit under the deadline cap, and each waits as long
        as its faces cost at this peer (``PrivateDeadlines``); ``timeout`` bounds the cheap steps.

        Also returns how many positions the peer's round 1 called a match that its round 2 did not
        confirm: a peer that inflates matches to make us reveal faces shows up there.
        """
        params = _he_params(manifest)
        keys, _ = await asyncio.to_thread(self.keyring.current, params, now)
        vectors = [e.vector for e in request.embeddings]
        ciphertexts = await asyncio.to_thread(lambda: [keys.encrypt(v) for v in vectors])
        if self.keyring.sent.get(member.node_id) != keys.key_id:
            await self._send_keys(client, member, purpose, manifest, now, timeout)
        results: list[list[bytes]] = []
        build_id = ""
        first = 0
        while first < len(ciphertexts):
            step = self.deadlines.faces_per_message(member.node_id)
            query = PrivateQuery(
                query_id=request.query_id,
                model_id=request.model_id,
                key_id=keys.key_id,
                ciphertexts=ciphertexts[first : first + step],
            )
            first += len(query.ciphertexts)
            try:
                scores = await self._round1(client, member, query, purpose, manifest, now, timeout)
            except PeerRefused as e:
                if e.peer_code not in ("unknown_eval_key", "stale_eval_key"):
                    raise
                await self._send_keys(client, member, purpose, manifest, now, timeout)
                scores = await self._round1(client, member, query, purpose, manifest, now, timeout)
            if scores.query_id != request.query_id or scores.responder != member.node_id:
                raise MalformedError(f"private answer from {member.node_id} names another query or responder")
            if len(scores.results) != len(query.ciphertexts) or (build_id and scores.build_id != build_id):
                raise MalformedError(
                    f"private answer from {member.node_id} does not fit the query it answers"
                )
            build_id = scores.build_id
            results += scores.results
        values = await asyncio.to_thread(lambda: [keys.decrypt(r) for r in results])
        candidates = [
            Candidate(query_index=qi, position=int(p), embedding=request.embeddings[qi])
            for qi, v in enumerate(values)
            for p in np.argsort(-v.real)[:MAX_REVEAL_CANDIDATES]
            if v.real[p] > 0
        ][:MAX_REVEAL_CANDIDATES]
        if not candidates:
            empty = QueryResponse(
                query_id=request.query_id,
                responder=member.node_id,
                threshold=manifest.policy.match_threshold,
                matches=[],
            )
            return empty, 0
        reveal = RevealRequest(
            query_id=request.query_id,
            build_id=scores.build_id,
            model_id=request.model_id,
            candidates=candidates,
        )
        answer = await client.exchange(
            member,
            "/v1/peer/private/reveal",
            purpose,
            reveal,
            QueryResponse,
            now=now,
            manifest_version=manifest.version,
            timeout=timeout,
        )
        return answer, max(0, len(candidates) - len(answer.matches))

    async def _send_keys(
        self,
        client: PeerClient,
        member: Member,
        purpose: str,
        manifest: Manifest,
        now: datetime,
        timeout: float,
    ) -> None:
        timeout = max(timeout, self.deadlines.bulk())
        bundle = await asyncio.to_thread(self.keyring.bundle, _he_params(manifest), now)
        ack = await client.exchange(
            member,
            "/v1/peer/private/keys",
            purpose,
            bundle,
            EvaluationKeysAck,
            now=now,
            manifest_version=manifest.version,
            timeout=timeout,
            max_bytes=MAX_BULK_SEALED_BYTES,
        )
        if ack.key_id != bundle.key_id:
            raise MalformedError(f"{member.node_id} acknowledged keys {ack.key_id[:16]}, not ours")
        self.keyring.sent[member.node_id] = bundle.key_id

    async def _round1(
        self,
        client: PeerClient,
        member: Member,
        query: PrivateQuery,
        purpose: str,
        manifest: Manifest,
        now: datetime,
        timeout: float,
    ) -> PrivateScores:
        faces = len(query.ciphertexts)
        deadline = max(timeout, self.deadlines.round1(member.node_id, faces))
        started = time.monotonic()
        try:
            scores = await client.exchange(
                member,
                "/v1/peer/private/query",
                purpose,
                query,
                PrivateScores,
                now=now,
                manifest_version=manifest.version,
                timeout=deadline,
                max_bytes=MAX_BULK_SEALED_BYTES,
            )
        except PeerTimeout:
            self.deadlines.timed_out(member.node_id, faces, time.monotonic() - started)
            raise
        self.deadlines.measured(member.node_id, faces, time.monotonic() - started)
        return scores
