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
import json
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from datetime import datetime

import numpy as np
from sqlalchemy import Table, delete, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine

from governance.errors import QueryModeNotAllowed
from governance.manifest import Manifest, Member, MemberStatus
from node.context import NodeContext
from node.federation.client import PeerClient, PeerRefused, PeerTimeout
from node.federation.gate import PeerRequest
from node.private.deadline import PrivateDeadlines
from node.private.eval_keys import EvaluationKeyStore
from node.private.matcher import (
    QUERY_MEMORY,
    REMEMBERED_QUERIES,
    GalleryBuild,
    PrivateMatcher,
    UnknownPrivateQuery,
)
from node.private.query_keys import QueryKeyring
from node.records.hits import ProposedHit
from node.records.vault import Vault
from node.storage.models import PrivateBuildRow, PrivateRoundRow
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

__all__ = [
    "PRIVATE_KEY_BODIES",
    "PRIVATE_QUERY_BODIES",
    "PRIVATE_REVEAL_BODIES",
    "PrivateMode",
    "PrivateRounds",
]

LOG = logging.getLogger("watchnet.private")

PRIVATE_KEY_BODIES = {EvaluationKeys.TYPE: EvaluationKeys}
PRIVATE_QUERY_BODIES = {PrivateQuery.TYPE: PrivateQuery}
PRIVATE_REVEAL_BODIES = {RevealRequest.TYPE: RevealRequest}


def _he_params(manifest: Manifest) -> HEParameters:
    he = manifest.policy.query_modes.he
    if he is None:
        raise QueryModeNotAllowed(f"manifest version {manifest.version} does not allow private mode")
    return he


_ROUNDS = PrivateRoundRow.__table__  # type: ignore[attr-defined]
_BUILDS = PrivateBuildRow.__table__  # type: ignore[attr-defined]
ROUND_PURGE_SECONDS = 30.0
SHARED_BUILDS = 4
"""Other workers' build maps a worker keeps in memory for reveals."""


class PrivateRounds:
    """Round-1 state in the database, so a reveal (round 2) may land on any worker of the node.

    A reveal must follow a round 1 of the same member on the same gallery build, and needs that
    build's slot position -> entry id. The map is derived from the gallery (its permutation is
    what keeps positions meaningless to the querier), so it is sealed with the data key; it is
    written once per build, at the build's first round 1, and each round 1 adds (member, query
    id, build). Both rows expire ``QUERY_MEMORY`` after the last round 1 that used them. The
    worker that ran round 1 answers a reveal from its own memory; another reads the rows (the
    database is the truth) and keeps the maps it read, a few builds at most.
    """

    def __init__(
        self, engine: Engine, vault: Vault, matcher: PrivateMatcher, clock: Callable[[], datetime]
    ) -> None:
        self._engine = engine
        self._vault = vault
        self._matcher = matcher
        self._clock = clock
        self._written: OrderedDict[str, None] = OrderedDict()
        self._maps: OrderedDict[str, dict[int, str]] = OrderedDict()
        self._rounds: OrderedDict[tuple[str, str, str], datetime] = OrderedDict()
        self._lock = threading.Lock()
        self._purged_at = 0.0

    def remember(self, member: str, query_id: str, build: GalleryBuild, now: datetime) -> None:
        """Record a round 1 that ran on ``build`` (runs off the event loop: a first map is sealed)."""
        expires = now + QUERY_MEMORY
        sealed = None
        if build.build_id not in self._written:
            positions = sorted(build.keys)
            plain = json.dumps({"positions": positions, "entries": [build.keys[p] for p in positions]})
            sealed = self._vault.seal(plain.encode("utf-8"), binding=f"private-build/{build.build_id}")
        with self._engine.begin() as conn:
            if sealed is not None:
                conn.execute(
                    self._insert(conn, _BUILDS)
                    .values(build_id=build.build_id, expires_at=expires, positions_ct=sealed)
                    .on_conflict_do_update(index_elements=[_BUILDS.c.build_id], set_={"expires_at": expires})
                )
            else:
                conn.execute(
                    _BUILDS.update().where(_BUILDS.c.build_id == build.build_id).values(expires_at=expires)
                )
            key = {"member": member, "query_id": query_id, "build_id": build.build_id}
            conn.execute(
                self._insert(conn, _ROUNDS)
                .values(**key, expires_at=expires)
                .on_conflict_do_update(
                    index_elements=[_ROUNDS.c.member, _ROUNDS.c.query_id, _ROUNDS.c.build_id],
                    set_={"expires_at": expires},
                )
            )
            if time.monotonic() - self._purged_at > ROUND_PURGE_SECONDS:
                self._purged_at = time.monotonic()
                conn.execute(delete(_ROUNDS).where(_ROUNDS.c.expires_at <= now))
                conn.execute(delete(_BUILDS).where(_BUILDS.c.expires_at <= now))
        with self._lock:
            self._written[build.build_id] = None
            while len(self._written) > SHARED_BUILDS:
                self._written.popitem(last=False)

    @staticmethod
    def _insert(conn: Connection, table: Table) -> postgresql.Insert | sqlite.Insert:
        insert: postgresql.Insert | sqlite.Insert = (
            postgresql if conn.dialect.name == "postgresql" else sqlite
        ).insert(table)
        return insert

    def entry_at(self, member: str, query_id: str, build_id: str, position: int) -> str | None:
        """The entry at ``position`` of the build this member's round-1 query ran on, on any worker."""
        try:
            return self._matcher.entry_at(member, query_id, build_id, position)
        except UnknownPrivateQuery:
            pass  # round 1 ran on another worker, or this one's build was replaced since
        return self._shared_map(member, query_id, build_id).get(position)

    def _shared_map(self, member: str, query_id: str, build_id: str) -> dict[int, str]:
        now = self._clock()
        round_key = (member, query_id, build_id)
        with self._lock:
            expires = self._rounds.get(round_key)
            positions = self._maps.get(build_id)
        if expires is None or expires <= now:
            with self._engine.connect() as conn:
                expires = conn.execute(
                    select(_ROUNDS.c.expires_at).where(
                        _ROUNDS.c.member == member,
                        _ROUNDS.c.query_id == query_id,
                        _ROUNDS.c.build_id == build_id,
                    )
                ).scalar_one_or_none()
            if expires is None or expires <= now:
                raise UnknownPrivateQuery(
                    f"no recent private query {query_id} from {member} on build {build_id}; run round 1 again"
                )
        if positions is None:
            with self._engine.connect() as conn:
                sealed = conn.execute(
                    select(_BUILDS.c.positions_ct).where(
                        _BUILDS.c.build_id == build_id, _BUILDS.c.expires_at > now
                    )
                ).scalar_one_or_none()
            if sealed is None:
                raise UnknownPrivateQuery(f"gallery build {build_id} was replaced; run round 1 again")
            data = json.loads(self._vault.open(sealed, binding=f"private-build/{build_id}"))
            positions = dict(zip(data["positions"], data["entries"], strict=True))
        with self._lock:
            self._rounds[round_key] = expires
            while len(self._rounds) > REMEMBERED_QUERIES:
                self._rounds.popitem(last=False)
            self._maps[build_id] = positions
            self._maps.move_to_end(build_id)
            while len(self._maps) > SHARED_BUILDS:
                self._maps.popitem(last=False)
        return positions


class PrivateMode:
    def __init__(self, context: NodeContext, clock: Callable[[], datetime]) -> None:
        self.context = context
        self.clock = clock
        settings = context.config.federation
        self.matcher = PrivateMatcher(
            context.registry.index, reshuffle=settings.gallery_reshuffle, processes=settings.he_processes
        )
        self.keys = EvaluationKeyStore(context.engine)
        self.rounds = PrivateRounds(context.engine, context.registry.vault, self.matcher, clock)
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
        self.context.registry.index_listeners.append(self._on_change)  # another worker's change
        self._refresh()

    async def close(self) -> None:
        if self._on_change in self.context.registry.listeners:
            self.context.registry.listeners.remove(self._on_change)
        if self._on_change in self.context.registry.index_listeners:
            self.context.registry.index_listeners.remove(self._on_change)
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
        self.context.registry.require_serving()  # the gallery came from the store it checks (not restoring)
        params = _he_params(request.manifest)
        sender = request.member.node_id
        await asyncio.to_thread(self.context.manifests.require_active, sender)  # not suspended since
        held = await asyncio.to_thread(self.keys.lookup, sender, body.key_id, params, self.clock())
        build, results = await self.matcher.evaluate(
            sender,
            body.query_id,
            held.key_id,
            (held.data, held.relin),
            body.ciphertexts,
            request.manifest.policy.match_threshold,
            params,
        )
        await asyncio.to_thread(self.rounds.remember, sender, body.query_id, build, self.clock())
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
        self.context.manifests.require_active(request.member.node_id)
        policy = request.manifest.policy
        threshold = policy.match_threshold
        registry = self.context.registry
        found: list[tuple[int, float, np.ndarray, SignedDocument[WatchlistEntry]]] = []
        seen: set[tuple[int, str]] = set()
        named = [
            self.rounds.entry_at(request.member.node_id, body.query_id, body.build_id, c.position)
            for c in body.candidates
        ]
        # the fence: the gallery may predate another worker's deletion; the database does not
        active = registry.active_versions(e for e in named if e is not None)
        for candidate, entry_id in zip(body.candidates, named, strict=True):
            if entry_id is None or entry_id not in active or (candidate.query_index, entry_id) in seen:
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
