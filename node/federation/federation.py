"""The node as a member of the network: peer endpoints, queries out, log following, receipts, manifests.

Synapse keeps its event formats pure and its federation I/O apart; so does watchnet: the formats
are in ``protocol``, the decisions in ``governance`` and ``node.federation.sync``, and this module only moves
messages and schedules work. Background tasks (one per concern) follow every peer's log on a
schedule and at once when a peer notifies us, deliver our receipts until the owner acknowledges
them, re-notify members that have not confirmed our changes (with backoff), and poll the
organisation and the peers for a newer manifest.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

import aiohttp
from sqlmodel import Session, col, select

from governance.errors import NotAMember, QueryModeNotAllowed
from governance.manifest import Manifest, Member, MemberStatus
from governance.policy import FACE_IMAGE_ITEM, query_mode_for, require_item_shared
from node.context import NodeContext
from node.federation.breaker import Breakers
from node.federation.client import PeerClient, PeerRefused, PeerTimeout, PeerUnreachable, read_limited
from node.federation.gate import PeerGate, PeerRequest, refuse_if_expired
from node.federation.mirror import mirror_page, restore_loop
from node.federation.nonces import NonceStore
from node.federation.owed import members_owing
from node.federation.peerlog import PeerLog
from node.federation.sync import (
    ForkDetected,
    PageResult,
    apply_clearance,
    apply_page,
    fork_evidence,
    forked_peers,
    is_tombstoned,
    mark_delivered,
    pending_receipts,
    record_failure,
    record_receipts,
    refuse_clearance,
    signed_root,
    verified_head,
)
from node.federation.witnessing import WITNESS_PASS, witness_loop
from node.records.alert_faces import AlertHit, Seen
from node.records.auditlog import record_audit
from node.records.eventlog import leaf_count
from node.records.hits import HIT_WINDOW, HitBudgetExceeded, ProposedHit
from node.records.ratelimit import RateBuckets
from node.records.restore import RestoreGate
from node.records.witnessing import Checkpoints, Witness
from node.storage.models import LogLeaf, PeerState
from node.storage.notify import PULL, Feed, notify, shared
from node.telemetry import Telemetry
from protocol.canonical import parse_json
from protocol.embedding import Embedding
from protocol.entry import WatchlistEntry
from protocol.errors import MalformedError, OversizedError, PolicyError, RollbackError, WatchnetError
from protocol.extraction import ExtractionReport
from protocol.fields import format_time
from protocol.mirror import MirrorPage, MirrorRequest
from protocol.query import QueryMatch, QueryRequest, QueryResponse
from protocol.reference import ReferenceFace, ReferenceFaceRequest
from protocol.signed import SignedDocument
from protocol.subject import ForwardAck, ForwardedRequest, MatchFeedback
from protocol.sync import (
    SYNC_PURPOSE,
    LogNotice,
    LogPage,
    LogRequest,
    ReceiptAck,
    ReceiptDelivery,
    parse_log_event,
)
from protocol.treehead import TreeHead

__all__ = ["DutyRecorder", "Federation", "NoRecentMatch", "PeerOutcome", "PrivateAsking"]

LOG = logging.getLogger("watchnet.federation")

QUERY_BODIES = {QueryRequest.TYPE: QueryRequest}
LOG_BODIES = {LogRequest.TYPE: LogRequest}
NOTICE_BODIES = {LogNotice.TYPE: LogNotice}
RECEIPT_BODIES = {ReceiptDelivery.TYPE: ReceiptDelivery}
SUBJECT_BODIES = {ForwardedRequest.TYPE: ForwardedRequest}
FEEDBACK_BODIES = {MatchFeedback.TYPE: MatchFeedback}
MIRROR_BODIES = {MirrorRequest.TYPE: MirrorRequest}
REFERENCE_BODIES = {ReferenceFaceRequest.TYPE: ReferenceFaceRequest}
RETRY_FIRST = timedelta(seconds=1)
NOT_READY_CODES = frozenset({"not_ready", "busy"})
"""A peer's refusals that mean "cannot score right now": asked again once within the deadline."""
NOT_READY_PAUSE = 0.5
"""Seconds before asking a not-ready peer again (only when the deadline leaves room)."""
SKEW_WARNING_SHARE = 3
"""A peer's clock is flagged when it is off by more than the replay window divided by this."""
PULL_BACKOFF = 8
"""A follower whose pulls keep finding nothing new waits twice as long each time, up to this many
``sync_interval``s: changes arrive by notice, so an idle group's pulls (and the log reads they
put in every peer's audit log) fall eightfold. A notice, a change found or a failure starts it
over at ``sync_interval``."""
NOTIFY_PASS = timedelta(seconds=1)
"""How often the notifier looks for members owed a notice (sooner when the log grows)."""
MAX_MANIFEST_BYTES = 4 << 20
MAX_CLEARANCE_BYTES = 64 << 10
"""A fork clearance with a proof from each of 100 reported heads is about 40 KB."""


class NoRecentMatch(PolicyError):
    """A member asked for the face of an entry we did not name to it in an answer within 24 hours."""

    code = "no_recent_match"


@dataclass
class PeerOutcome:
    """One member's part in a fan-out query.

    ``status`` is ``ok`` only when the member searched its watchlist and answered; ``timeout``,
    ``unreachable``, ``refused`` and ``invalid_answer`` mean its answer is unknown, and a result
    with any of them is incomplete: never to be shown as "no match".
    """

    node_id: str
    status: str
    matches: list[QueryMatch] = field(default_factory=list)
    error: str = ""
    reason: str = ""
    mode: str = "plain"
    unconfirmed: int = 0
    """Private mode: positions the peer's encrypted answer called a match that its reveal did not confirm."""

    @property
    def answered(self) -> bool:
        return self.status == "ok"

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "node_id": self.node_id,
            "status": self.status,
            "mode": self.mode,
            "matches": len(self.matches),
        }
        if self.error:
            d["error"], d["reason"] = self.error, self.reason
        if self.unconfirmed:
            d["unconfirmed"] = self.unconfirmed
        return d


class PrivateAsking(Protocol):
    """Private mode as federation uses it (``node.private.mode.PrivateMode``): built on this
    package's peer client, so it is handed in rather than imported."""

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def ask(
        self,
        client: PeerClient,
        member: Member,
        request: QueryRequest,
        purpose: str,
        manifest: Manifest,
        now: datetime,
        timeout: float,
    ) -> tuple[QueryResponse, int]: ...


class DutyRecorder(Protocol):
    """What a background duty reports each pass to (``node.app.leader.DutyState``): handed in,
    as the leader lease lives above this package."""

    def ok(self) -> None: ...

    def failed(self, error: BaseException) -> None: ...


@dataclass
class _Backoff:
    delay: timedelta = RETRY_FIRST
    due: datetime | None = None


class Federation:
    """Owns the peer gate, the HTTP client session and the background federation tasks."""

    def __init__(
        self,
        context: NodeContext,
        clock: Callable[[], datetime],
        telemetry: Telemetry,
        private: PrivateAsking | None = None,
    ) -> None:
        self.context = context
        self.clock = clock
        config = context.config
        self.gate = PeerGate(
            node_id=config.node_id,
            signing_key=context.signing_key,
            encryption_key=context.encryption_key,
            manifests=context.manifests,
            replay=NonceStore(context.engine, config.limits.replay_window),
            per_minute=config.limits.peer_requests_per_minute,
            shared_rate=RateBuckets(context.engine, "peer", config.limits.peer_requests_per_minute)
            if context.engine.dialect.name == "postgresql"
            else None,
        )
        self.timeout = config.federation.peer_timeout.total_seconds()
        self.tracer = telemetry.tracer("watchnet.federation")
        self._session: aiohttp.ClientSession | None = None
        self._wake_pull: dict[str, asyncio.Event] = {}
        self._wake_notify = asyncio.Event()
        self._wake_manifest = asyncio.Event()
        self._backoff: dict[str, _Backoff] = {}
        self._pull_locks: dict[str, asyncio.Lock] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._log_size = 0
        self.private = private
        self._extraction_reported: dict[tuple[str, str, str], datetime] = {}
        self._background: set[asyncio.Future[Any]] = set()
        self.breakers = Breakers()
        self.peer_log = PeerLog(LOG)
        self.skews: dict[str, float] = {}
        """Each peer's clock minus ours at its last answer (``PeerClient`` records it)."""
        self._wake_notify_peer: dict[str, asyncio.Event] = {}
        self._missing: tuple[float, set[str]] = (float("-inf"), set())
        self._missing_lock = asyncio.Lock()
        self.last_contact: dict[str, datetime] = {}
        """When each peer last answered one of our sync messages (in memory: reachability, not history)."""
        self.witness = Witness(context.engine, config.node_id, context.signing_key)
        """This node as a witness of the other members' logs (c2sp.org/tlog-witness)."""
        self.checkpoints = Checkpoints(
            context.engine, context.registry.log, config.node_id, context.signing_key
        )
        """This node's log as cosigned checkpoints."""
        self._wake_witness = asyncio.Event()
        self.restore_gate = RestoreGate(config.directory)
        """Whether this node is being restored from a backup (``node.records.restore``)."""
        self.leading: Callable[[], bool] = lambda: True
        """Whether this worker runs the node's duties (the application hands in its leader lease's
        state); the others relay members' notices to it."""

    @property
    def node_id(self) -> str:
        return self.context.config.node_id

    @property
    def client(self) -> PeerClient:
        assert self._session is not None, "federation not started"
        return PeerClient(self.gate, self.context.encryption_key, self._session, self.skews)

    def peers(self, manifest: Manifest | None = None, *, include_suspended: bool = True) -> list[Member]:
        """The other members to talk to; none while this node is not itself listed (an outsider)."""
        manifest = manifest or self.context.manifest
        own = manifest.member(self.node_id)
        if own is None or own.status is MemberStatus.REMOVED:
            return []
        allowed = (
            {MemberStatus.ACTIVE, MemberStatus.SUSPENDED} if include_suspended else {MemberStatus.ACTIVE}
        )
        return [m for m in manifest.joint_use.members if m.node_id != self.node_id and m.status in allowed]

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._log_size = await asyncio.to_thread(lambda: self.context.registry.log.size)
        server = self.context.config.server
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=server.client_ssl(self.context.config.directory))
        )
        self.context.registry.listeners.append(self._on_local_event)
        # changes committed by the node's other workers: the leader notifies peers of them too
        self.context.registry.index_listeners.append(self._on_local_event)
        if self.private is not None:
            await self.private.start()

    def duties(self) -> dict[str, tuple[Callable[[DutyRecorder], Awaitable[None]], timedelta]]:
        """The background duties and how often each passes, run by the node's leader only
        (``node.app.leader`` starts, supervises and cancels them); ``start`` (every worker) serves
        peers and sends queries.

        ``follow`` follows every peer's log and delivers our deletion receipts to their owners,
        ``notify`` tells peers of our changes until they confirm, ``manifest`` polls for a newer
        manifest, ``witness`` gets every other member's cosignature on our latest checkpoint. Each loops until cancelled and reports each pass to its recorder."""
        interval = self.context.config.federation
        return {
            "follow": (lambda duty: self._follow_loop(interval.sync_interval, duty), interval.sync_interval),
            "notify": (self._notify_loop, NOTIFY_PASS),
            "manifest": (
                lambda duty: self._manifest_loop(interval.manifest_poll, duty),
                interval.manifest_poll,
            ),
            "witness": (
                lambda duty: witness_loop(
                    lambda: self._session,
                    self.checkpoints,
                    lambda: self.context.manifest,
                    lambda: self.peers(include_suspended=False),
                    self._wake_witness,
                    self.clock,
                    self.timeout,
                    duty,
                ),
                WITNESS_PASS,
            ),
            "restore": (
                lambda duty: restore_loop(self, self.restore_gate, interval.sync_interval, duty),
                interval.sync_interval,
            ),
        }

    async def stop(self) -> None:
        if self._on_local_event in self.context.registry.listeners:
            self.context.registry.listeners.remove(self._on_local_event)
        if self._on_local_event in self.context.registry.index_listeners:
            self.context.registry.index_listeners.remove(self._on_local_event)
        if self.private is not None:
            await self.private.close()
        if self._session is not None:
            await self._session.close()

    def peer_facts(self) -> dict[str, dict[str, object]]:
        """What this worker knows of each peer now (not stored): for metrics and ``/v1/peers``."""
        window = self.context.config.limits.replay_window.total_seconds()
        facts: dict[str, dict[str, object]] = {}
        peers = set(self.last_contact) | set(self.skews) | set(self.gate.skews) | set(self.breakers.by_peer)
        for peer in sorted(peers):
            fact: dict[str, object] = {}
            if peer in self.last_contact:
                fact["last_contact"] = format_time(self.last_contact[peer].replace(microsecond=0))
            skew = self.skews.get(peer, self.gate.skews.get(peer))
            if skew is not None:
                fact["clock_skew_seconds"] = round(skew)
                fact["clock_warning"] = abs(skew) > window / SKEW_WARNING_SHARE
            breaker = self.breakers.by_peer.get(peer)
            if breaker is not None:
                fact["circuit"] = breaker.state
                fact["consecutive_failures"] = breaker.failures
                if breaker.state == "open":
                    fact["next_probe_seconds"] = round(breaker.retry_in(), 1)
            facts[peer] = fact
        return facts

    def _on_local_event(self, tree_size: int) -> None:
        """Called from the registry's thread after an event committed: notify peers now."""
        self._log_size = max(self._log_size, tree_size)
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._notify_all_now)

    def _notify_all_now(self) -> None:
        for member in self.peers():
            self._backoff[member.node_id] = _Backoff(due=None)
            self._wake_notify_peer.setdefault(member.node_id, asyncio.Event()).set()
        self._wake_notify.set()
        self._wake_witness.set()

    # ----- answering peers -------------------------------------------------------------------

    def answer_query(self, request: PeerRequest) -> tuple[QueryResponse, int]:
        """Plain-mode answer, fenced at the moment of answering: the asker must still be active in
        the manifest the database holds (another worker may have just suspended it), and the index
        reports only entries active in the database (``Registry.fence``)."""
        body = request.body
        assert isinstance(body, QueryRequest)
        self.context.manifests.require_active(request.member.node_id)
        policy = request.manifest.policy
        threshold = policy.match_threshold
        hits = self.context.registry.index.search(body.embeddings, threshold)
        answered: list[tuple[int, float, SignedDocument[WatchlistEntry]]] = []
        for hit in hits:
            try:
                answered.append((hit.query_index, hit.score, self.context.registry.signed_entry(hit.key)))
            except WatchnetError:
                continue
        bands = self.admit_hits(
            request.member.node_id,
            [
                ProposedHit(e.payload.entry_id, body.embeddings[qi].vector, policy.disclosure.band(score))
                for qi, score, e in answered
            ],
            request.manifest,
        )
        matches = [
            QueryMatch(query_index=qi, band=band, entry=e)
            for (qi, _, e), band in zip(answered, bands, strict=True)
        ]
        response = QueryResponse(
            query_id=body.query_id, responder=self.node_id, threshold=threshold, matches=matches
        )
        return response, len(body.embeddings)

    def answer_reference(self, request: PeerRequest) -> ReferenceFace:
        """A member's operator reviews an alert on one of our entries and asks for the face we
        registered. Refused unless the member is active now, the manifest in force lists
        ``face-image`` among the jointly used items, we named the entry to this member in an
        answer within ``HIT_WINDOW`` (24 h), and the entry is live: the face goes only to a member
        that saw a match on it, never to one that merely knows the entry id from our log, and
        nothing is decrypted before those checks pass."""
        body = request.body
        assert isinstance(body, ReferenceFaceRequest)
        asker = request.member.node_id
        self.context.manifests.require_active(asker)
        require_item_shared(self.context.manifest, FACE_IMAGE_ITEM)
        if not self.context.hits.named_recently(asker, body.entry_id, self.clock()):
            raise NoRecentMatch(
                f"{body.entry_id} was not named to {asker} in an answer within the last "
                f"{HIT_WINDOW.total_seconds() / 3600:.0f} h; its face is shown only for a match"
            )
        version, crop = self.context.registry.live_face_crop(body.entry_id)
        return ReferenceFace(entry_id=body.entry_id, entry_version=version, face_image_jpeg=crop)

    async def fetch_reference(self, *, owner: str, alert_id: str, entry_id: str, entry_version: int) -> bytes:
        """The owner's registered face crop for our alert on its entry, sealed to us on the way;
        held in memory for one answer only (the caller sends it ``no-store`` and keeps nothing)."""
        manifest = self.context.manifest
        require_item_shared(manifest, FACE_IMAGE_ITEM)
        member = manifest.member(owner)
        if member is None or member.status is MemberStatus.REMOVED:
            raise NotAMember(f"{owner!r} is not a member of the group any more; its faces are not asked for")
        answer = await self.client.exchange(
            member,
            "/v1/peer/reference-face",
            "crime-prevention",
            ReferenceFaceRequest(alert_id=alert_id, entry_id=entry_id, entry_version=entry_version),
            ReferenceFace,
            now=self.clock(),
            manifest_version=manifest.version,
            timeout=self.timeout,
        )
        if answer.entry_id != entry_id:
            raise MalformedError(f"{owner} answered with the face of {answer.entry_id}, not of {entry_id}")
        return answer.face_image_jpeg

    def admit_hits(self, asker: str, hits: list[ProposedHit], manifest: Manifest) -> list[str]:
        """The bands a member may be told for these hits (``HitLedger``); a refusal is reported to
        the organisation (once per suspect, entry and reason a day) before it is raised."""
        try:
            return self.context.hits.admit(asker, hits, manifest.policy.disclosure, self.clock(), member=True)
        except HitBudgetExceeded as e:
            self._report_extraction(e)
            raise

    def _report_extraction(self, error: HitBudgetExceeded) -> None:
        now = self.clock()
        key = (error.asker, error.entry_id, error.code)
        last = self._extraction_reported.get(key)
        if last is not None and now - last < timedelta(days=1):
            return
        self._extraction_reported[key] = now
        report = SignedDocument(
            ExtractionReport(
                reporter=self.node_id,
                suspect=error.asker,
                reason=error.code,
                entry_id=error.entry_id,
                observed_at=now.replace(microsecond=0),
            )
        )
        report.sign(self.context.signing_key)
        LOG.warning(
            "suspected template extraction by %s (%s): reported to the organisation", error.asker, error.code
        )
        if self._loop is not None:
            self._loop.call_soon_threadsafe(lambda: self._spawn(self._send_report(report.to_bytes())))

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.ensure_future(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _send_report(self, body: bytes) -> None:
        url = self.context.config.manifest_url
        if not url or self._session is None:
            return
        try:
            async with self._session.post(
                url.rstrip("/") + "/v1/reports",
                data=body,
                headers={"Content-Type": "application/json"},
                timeout=aiohttp.ClientTimeout(total=self.timeout),
            ) as response:
                outcome = f"ok:{response.status}" if response.status < 300 else f"refused:{response.status}"
        except (aiohttp.ClientError, TimeoutError) as e:
            outcome = f"unreachable:{type(e).__name__}"
        await asyncio.to_thread(self._audit, "report.extraction", "organisation", outcome, self.node_id)

    def log_page(self, request: LogRequest) -> LogPage:
        self.restore_gate.require_serving()  # our log is shorter than what members verified until replayed
        with Session(self.context.engine) as session:
            size = leaf_count(session)
            if request.after > size:
                raise MalformedError(f"log-request.after {request.after} is beyond our log of {size} events")
            rows = session.exec(
                select(LogLeaf)
                .where(col(LogLeaf.idx) >= request.after)
                .order_by(col(LogLeaf.idx))
                .limit(request.limit)
            ).all()
            events = [parse_log_event(parse_json(r.leaf)) for r in rows]
            end = request.after + len(events)
            root = signed_root(session, self.node_id, end)  # a page mostly ends at a head we signed
        head = TreeHead(
            log_id=self.node_id,
            tree_size=end,
            root_hash=self.context.registry.log.root(end) if root is None else root,
            timestamp=self.clock().replace(microsecond=0),
        )
        signed = SignedDocument(head)
        signed.sign(self.context.signing_key)
        return LogPage(first=request.after, events=events, head=signed, latest_size=max(size, end))

    def mirror(self, request: PeerRequest) -> MirrorPage:
        """The asker's own log as we verified it, for its restore (``node.federation.mirror``)."""
        body = request.body
        assert isinstance(body, MirrorRequest)
        return mirror_page(
            self.context.engine,
            owner=request.member.node_id,
            group_id=request.manifest.group_id,
            request=body,
        )

    def accept_receipts(self, request: PeerRequest) -> ReceiptAck:
        body = request.body
        assert isinstance(body, ReceiptDelivery)
        with self.context.registry.write_lock:
            confirmed = record_receipts(
                self.context.engine,
                node_id=self.node_id,
                member=request.member,
                delivery=body,
                now=self.clock(),
            )
        state = self._backoff.get(request.member.node_id)
        if state is not None:
            state.delay = RETRY_FIRST
        return ReceiptAck(member=request.member.node_id, event_ids=confirmed)

    async def noticed(self, request: PeerRequest) -> LogNotice:
        """A member says its log grew: pull from it now. Only the leader follows logs, so a worker
        that is not the leader relays the notice (``watchnet_pull`` on PostgreSQL) and the
        leader's database follower wakes its pull; a relay that is lost (the leader's follower
        reconnecting, leadership changing hands) costs at most one ``sync_interval``."""
        peer = request.member.node_id
        if self.leading() or not shared(self.context.engine):
            self.wake_pull(peer)
        else:
            await asyncio.to_thread(self._relay_pull, peer)
        return LogNotice(tree_size=self._log_size)

    def _relay_pull(self, peer: str) -> None:
        with Session(self.context.engine) as session:
            notify(session, PULL, peer)
            session.commit()

    def pull_feed(self) -> Feed:
        """What a worker does on ``watchnet_pull``: wake its pull of each member named (only the
        leader's follow duty waits on it; elsewhere it changes nothing). There is nothing to
        reconcile: the duty pulls every ``sync_interval`` anyway."""
        return Feed(PULL, self._on_pull_relayed, lambda: None)

    def _on_pull_relayed(self, peers: list[str]) -> None:
        """Called from the database follower's thread."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        for peer in peers:
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: the worker is stopping
                loop.call_soon_threadsafe(self.wake_pull, peer)

    def wake_pull(self, peer: str) -> None:
        self._wake_pull.setdefault(peer, asyncio.Event()).set()

    def wake_manifest(self) -> None:
        self._wake_manifest.set()

    # ----- querying peers --------------------------------------------------------------------

    async def query(
        self, embeddings: list[Embedding], purpose: str, mode: str = "plain"
    ) -> tuple[QueryRequest, list[PeerOutcome]]:
        """Ask every active member in parallel, with a deadline, each in the mode the manifest settles."""
        self.context.registry.require_serving()  # no alerts into a store that disagrees with its log (or restoring)
        manifest = self.context.manifest
        refuse_if_expired(manifest, self.clock())
        own = manifest.member(self.node_id)
        if own is None or own.status is MemberStatus.REMOVED:
            raise NotAMember(
                f"this node ({self.node_id}) is not a joint user in manifest version {manifest.version}; "
                "nothing was sent"
            )
        request = QueryRequest(
            query_id=f"qry-{secrets.token_hex(10)}",
            model_id=manifest.policy.model.model_id,
            embeddings=embeddings,
        )
        members = self.peers(manifest, include_suspended=False)
        now = self.clock()
        outcomes = await asyncio.gather(
            *(
                self._ask(member, request, purpose, manifest, now, query_mode_for(manifest, member, mode))
                for member in members
            )
        )
        return request, list(outcomes)

    async def _ask(
        self,
        member: Member,
        request: QueryRequest,
        purpose: str,
        manifest: Manifest,
        now: datetime,
        mode: str,
    ) -> PeerOutcome:
        breaker = self.breakers.of(member.node_id)
        if not breaker.allow():
            return PeerOutcome(
                member.node_id,
                "unreachable",
                error="circuit_open",
                reason=f"{member.node_id} failed {breaker.failures} exchanges in a row; not asked, "
                f"next try in {breaker.retry_in():.0f} s",
                mode=mode,
            )
        started = time.monotonic()
        outcome = await self._ask_once(member, request, purpose, manifest, now, mode)
        if outcome.status == "not_ready" and time.monotonic() - started + NOT_READY_PAUSE < self.timeout / 2:
            await asyncio.sleep(NOT_READY_PAUSE)
            outcome = await self._ask_once(member, request, purpose, manifest, self.clock(), mode)
        if outcome.status in ("timeout", "unreachable"):
            breaker.failed()
        else:
            breaker.succeeded()
        return outcome

    async def _ask_once(
        self,
        member: Member,
        request: QueryRequest,
        purpose: str,
        manifest: Manifest,
        now: datetime,
        mode: str,
    ) -> PeerOutcome:
        with self.tracer.start_as_current_span("peer query") as span:
            span.set_attribute("watchnet.peer", member.node_id)
            span.set_attribute("watchnet.query_mode", mode)
            try:
                unconfirmed = 0
                if mode == "private":
                    if self.private is None:
                        raise QueryModeNotAllowed(
                            f"{self.node_id} runs without private mode; ask in plain mode"
                        )
                    response, unconfirmed = await self.private.ask(
                        self.client, member, request, purpose, manifest, now, self.timeout
                    )
                else:
                    response = await self.client.exchange(
                        member,
                        "/v1/peer/query",
                        purpose,
                        request,
                        QueryResponse,
                        now=now,
                        manifest_version=manifest.version,
                        timeout=self.timeout,
                    )
                response.check_against(request)
                if response.responder != member.node_id:
                    raise MalformedError(
                        f"answer from {member.node_id} names responder {response.responder!r}"
                    )
                accepted = []
                for match in response.matches:
                    match.entry.verify([member.signing_key], threshold=1)
                    entry = match.entry.payload
                    if is_tombstoned(self.context.engine, entry.owner, entry.entry_id):
                        continue
                    accepted.append(match)
                return PeerOutcome(member.node_id, "ok", accepted, mode=mode, unconfirmed=unconfirmed)
            except PeerRefused as e:
                if e.peer_code == "manifest_version":
                    self.wake_manifest()
                status = "not_ready" if e.peer_code in NOT_READY_CODES else "refused"
                return PeerOutcome(member.node_id, status, error=e.peer_code, reason=str(e), mode=mode)
            except PeerTimeout as e:
                return PeerOutcome(member.node_id, "timeout", error=e.code, reason=str(e), mode=mode)
            except PeerUnreachable as e:
                return PeerOutcome(member.node_id, "unreachable", error=e.code, reason=str(e), mode=mode)
            except WatchnetError as e:
                return PeerOutcome(member.node_id, "invalid_answer", error=e.code, reason=str(e), mode=mode)

    def store_alerts(
        self,
        outcomes: Iterable[PeerOutcome],
        *,
        site: str,
        operator: str,
        now: datetime,
        gate: str = "",
        camera: str = "",
        crop_of: Callable[[int], bytes | None] = lambda _: None,
    ) -> list[dict[str, Any]]:
        """An alert per hit, referencing the owner's signed entry version; the same person seen
        again within the merge window is a sighting of the alert it already raised
        (``AlertFaces.raise_in``). ``crop_of(query_index)`` is the camera's crop of that face (JPEG),
        kept sealed for the review window."""
        out: list[dict[str, Any]] = []
        alerts = self.context.alerts
        with alerts.write_lock, Session(self.context.engine) as session:
            for outcome in outcomes:
                for match in outcome.matches:
                    entry = match.entry.payload
                    alert, _ = alerts.raise_in(
                        session,
                        AlertHit(
                            owner=entry.owner,
                            entry_id=entry.entry_id,
                            entry_version=entry.version,
                            band=match.band,
                            category=entry.category,
                            signed_entry=match.entry.to_bytes().decode("utf-8"),
                        ),
                        Seen(site=site, gate=gate, camera=camera, at=now, crop=crop_of(match.query_index)),
                        operator=operator,
                    )
                    session.flush()
                    out.append(
                        {
                            "query_index": match.query_index,
                            "owner": entry.owner,
                            "entry_id": entry.entry_id,
                            "version": entry.version,
                            "category": entry.category,
                            "band": match.band,
                            "alert_id": alert.id,
                        }
                    )
            session.commit()
        return out

    async def forward_request(self, owner: str, body: ForwardedRequest) -> ForwardAck:
        """Hand a data-subject request about ``owner``'s entry to ``owner`` (its officer decides)."""
        manifest = self.context.manifest
        member = manifest.member(owner)
        if member is None or member.status is MemberStatus.REMOVED:
            raise MalformedError(f"{owner!r} is not a member of the group any more; contact it directly")
        return await self.client.exchange(
            member,
            "/v1/peer/subject-request",
            "data-subject-request",
            body,
            ForwardAck,
            now=self.clock(),
            manifest_version=manifest.version,
            timeout=self.timeout,
        )

    async def send_feedback(self, owner: str, body: MatchFeedback) -> None:
        """Tell ``owner`` what our staff judged of an alert on its entry; its signed echo confirms it."""
        manifest = self.context.manifest
        member = manifest.member(owner)
        if member is None or member.status is MemberStatus.REMOVED:
            raise MalformedError(f"{owner!r} is not a member of the group any more")
        echo = await self.client.exchange(
            member,
            "/v1/peer/feedback",
            "crime-prevention",
            body,
            MatchFeedback,
            now=self.clock(),
            manifest_version=manifest.version,
            timeout=self.timeout,
        )
        if echo.alert_id != body.alert_id or echo.outcome != body.outcome:
            raise MalformedError(f"{owner} confirmed feedback on {echo.alert_id}, not on {body.alert_id}")

    # ----- following peers' logs -------------------------------------------------------------

    async def pull(self, member: Member) -> int:
        """Follow ``member``'s log up to its current head; return the events applied."""
        lock = self._pull_locks.setdefault(member.node_id, asyncio.Lock())
        applied = 0
        async with lock:
            engine = self.context.engine
            while True:
                after, root = await asyncio.to_thread(verified_head, engine, member.node_id)
                manifest = self.context.manifest
                page = await self.client.exchange(
                    member,
                    "/v1/peer/log",
                    SYNC_PURPOSE,
                    LogRequest(after=after),
                    LogPage,
                    now=self.clock(),
                    manifest_version=manifest.version,
                    timeout=self.timeout,
                )
                self.last_contact[member.node_id] = self.clock()
                if (
                    not page.events
                    and page.head.payload.tree_size == after
                    and page.head.payload.root_hash == root
                ):
                    break
                result = await asyncio.to_thread(self._apply_locked, member, page, after)
                applied += result.applied
                if page.latest_size <= result.tree_size or not page.events:
                    break
        if applied:
            await self.deliver_receipts(member)
        return applied

    def _apply_locked(self, member: Member, page: LogPage, after: int) -> PageResult:
        with self.context.registry.write_lock:
            return apply_page(
                self.context.engine,
                node_id=self.node_id,
                signing_key=self.context.signing_key,
                member=member,
                page=page,
                after=after,
                now=self.clock().replace(microsecond=0),
            )

    async def deliver_receipts(self, owner: Member) -> int:
        receipts = await asyncio.to_thread(
            pending_receipts, self.context.engine, owner.node_id, self.context.signing_key
        )
        if not receipts:
            return 0
        ack = await self.client.exchange(
            owner,
            "/v1/peer/receipts",
            SYNC_PURPOSE,
            ReceiptDelivery(receipts=receipts),
            ReceiptAck,
            now=self.clock(),
            manifest_version=self.context.manifest.version,
            timeout=self.timeout,
        )
        await asyncio.to_thread(
            mark_delivered, self.context.engine, owner.node_id, ack.event_ids, self.clock()
        )
        return len(ack.event_ids)

    async def sync_peer(self, member: Member) -> int | None:
        """Pull, then deliver anything still owed; record failures without raising. Returns the
        events applied, or None when the exchange failed."""
        with self.tracer.start_as_current_span("log sync") as span:
            span.set_attribute("watchnet.peer", member.node_id)
            try:
                applied = await self.pull(member)
                await self.deliver_receipts(member)
                self.breakers.of(member.node_id).succeeded()
                self.peer_log.succeeded(member.node_id, "sync")
                return applied
            except WatchnetError as e:
                span.set_attribute("watchnet.error", e.code)
                if isinstance(e, PeerUnreachable):
                    self.breakers.of(member.node_id).failed()
                if isinstance(e, ForkDetected):
                    await self._report_fork(member, e)
                if isinstance(e, PeerRefused) and e.peer_code == "manifest_version":
                    self.wake_manifest()
                self.peer_log.failed(
                    member.node_id, "sync", e.code, unreachable=isinstance(e, PeerUnreachable | PeerTimeout)
                )
                refused = not isinstance(e, PeerRefused | PeerUnreachable | ForkDetected)
                error = f"{e.code}: {e}"
                audit_as = f"refused:{e.code}" if refused else None
                await asyncio.to_thread(self._record_failure, member.node_id, error, audit_as)
                return None

    def _record_failure(self, peer: str, error: str, audit_as: str | None) -> None:
        with self.context.registry.write_lock:
            record_failure(self.context.engine, peer, error, self.clock(), audit_as=audit_as)

    async def _follow_loop(self, interval: timedelta, duty: DutyRecorder) -> None:
        """One follower task per peer; new members (from a new manifest) get theirs within ``interval``."""
        followers: dict[str, asyncio.Task[None]] = {}
        try:
            while True:
                peers = self.peers()
                for member in peers:
                    task = followers.get(member.node_id)
                    if task is None or task.done():
                        followers[member.node_id] = asyncio.create_task(
                            self._follow_one(member.node_id, interval, duty)
                        )
                if not peers:
                    duty.ok()
                await asyncio.sleep(interval.total_seconds())
        finally:
            for task in followers.values():
                task.cancel()
            for task in followers.values():
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    async def _follow_one(self, peer: str, interval: timedelta, duty: DutyRecorder) -> None:
        event = self._wake_pull.setdefault(peer, asyncio.Event())
        base = interval.total_seconds()
        wait, woken = base, False
        while True:
            member = self.context.manifest.member(peer)
            if member is None or member.status is MemberStatus.REMOVED or peer == self.node_id:
                return
            applied: int | None = None
            try:
                if await self._is_forked(peer):
                    return
                applied = await self.sync_peer(member)  # a peer's failures are recorded there, not raised
                duty.ok()
            except Exception as e:  # the database or a bug: logged, counted, retried next interval
                duty.failed(e)
                LOG.exception("following %s failed; retrying in %ss", peer, base)
            wait = min(wait * 2, base * PULL_BACKOFF) if applied == 0 and not woken else base
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), wait)
            woken = event.is_set()
            event.clear()

    async def _is_forked(self, peer: str) -> bool:
        def read() -> bool:
            with Session(self.context.engine) as session:
                state = session.get(PeerState, peer)
                return state is not None and state.status == "forked"

        return await asyncio.to_thread(read)

    async def _notify_loop(self, duty: DutyRecorder) -> None:
        """One notifier per member, so a member that hangs delays nobody else's notices (new
        members from a new manifest get theirs within one pass)."""
        notifiers: dict[str, asyncio.Task[None]] = {}
        try:
            while True:
                for member in self.peers():
                    task = notifiers.get(member.node_id)
                    if task is None or task.done():
                        notifiers[member.node_id] = asyncio.create_task(
                            self._notify_one(member.node_id, duty), name=f"notify {member.node_id}"
                        )
                duty.ok()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake_notify.wait(), NOTIFY_PASS.total_seconds())
                self._wake_notify.clear()
        finally:
            for task in notifiers.values():
                task.cancel()
            for task in notifiers.values():
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    async def _members_missing(self, manifest: Manifest) -> set[str]:
        """The members owing us a receipt, read at most once a pass for all the notifiers."""
        async with self._missing_lock:
            read_at, missing = self._missing
            if time.monotonic() - read_at >= NOTIFY_PASS.total_seconds():
                missing = await asyncio.to_thread(members_owing, self.context.engine, manifest, self.node_id)
                self._missing = (time.monotonic(), missing)
            return missing

    async def _notify_one(self, peer: str, duty: DutyRecorder) -> None:
        """Tell ``peer`` of our changes; keep telling it, with backoff, until it has confirmed them."""
        retry_max = self.context.config.federation.retry_max
        event = self._wake_notify_peer.setdefault(peer, asyncio.Event())
        while True:
            manifest = self.context.manifest
            member = next((m for m in self.peers(manifest) if m.node_id == peer), None)
            if member is None:
                return
            try:
                state = self._backoff.setdefault(peer, _Backoff())
                forced = state.due is None
                if forced or (state.due is not None and state.due <= self.clock()):
                    if forced or peer in await self._members_missing(manifest):
                        await self._notify(member, state, retry_max, manifest)
                duty.ok()
            except Exception as e:  # the database or a bug: logged, counted, tried again next pass
                duty.failed(e)
                LOG.exception("notifying %s failed; retrying", peer)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), NOTIFY_PASS.total_seconds())
            event.clear()

    async def _notify(
        self, member: Member, state: _Backoff, retry_max: timedelta, manifest: Manifest
    ) -> None:
        try:
            await self.client.exchange(
                member,
                "/v1/peer/notify",
                SYNC_PURPOSE,
                LogNotice(tree_size=self._log_size),
                LogNotice,
                now=self.clock(),
                manifest_version=manifest.version,
                timeout=self.timeout,
            )
            self.breakers.of(member.node_id).succeeded()
        except WatchnetError as e:
            if isinstance(e, PeerUnreachable):
                self.breakers.of(member.node_id).failed()
            LOG.info(
                "notify %s failed (%s); retrying in %ss", member.node_id, e.code, state.delay.total_seconds()
            )
        state.due = self.clock() + state.delay
        state.delay = min(retry_max, state.delay * 2)

    # ----- manifests -------------------------------------------------------------------------

    async def _manifest_loop(self, interval: timedelta, duty: DutyRecorder) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake_manifest.wait(), interval.total_seconds())
            self._wake_manifest.clear()
            await self.refresh_manifest()
            await self.check_fork_clearances()
            duty.ok()

    def manifest_sources(self) -> list[str]:
        urls = []
        if self.context.config.manifest_url:
            urls.append(self.context.config.manifest_url.rstrip("/") + "/v1/manifest")
        urls.extend(m.endpoint.rstrip("/") + "/v1/manifest" for m in self.peers())
        return urls

    async def refresh_manifest(self) -> list[dict[str, Any]]:
        """Fetch the manifest from the organisation and every peer; trust the newest valid successor.

        A peer still serving an older version is only behind ("older"), not an attack: its copy is
        ignored. The organisation never publishes an older version, so one from it is a refused
        rollback, audited like a same-numbered version with other content from anyone.
        """
        org_url = (self.context.config.manifest_url or "").rstrip("/") + "/v1/manifest"
        results = []
        for url in self.manifest_sources():
            try:
                assert self._session is not None
                async with self._session.get(
                    url, timeout=aiohttp.ClientTimeout(total=self.timeout)
                ) as response:
                    if response.status != 200:
                        continue
                    data = await read_limited(response, MAX_MANIFEST_BYTES)
                document = SignedDocument.from_bytes(data, Manifest)
                if document.payload.version < self.context.manifest.version and url != org_url:
                    results.append({"source": url, "version": document.payload.version, "outcome": "older"})
                    continue
                if document.payload.version < self.context.manifest.version:
                    raise RollbackError(
                        f"{url} serves manifest version {document.payload.version}, "
                        f"older than the trusted {self.context.manifest.version}"
                    )
                offer = await asyncio.to_thread(self.context.manifests.offer, document, self.clock(), url)
                if offer.outcome == "accepted":
                    self._audit("manifest.accept", f"v{offer.version}", "ok", url)
                    LOG.info("trusting manifest version %s from %s", offer.version, url)
                results.append({"source": url, "version": offer.version, "outcome": offer.outcome})
            except (aiohttp.ClientError, TimeoutError):
                results.append({"source": url, "outcome": "unreachable"})
            except WatchnetError as e:
                self._audit("manifest.offer", url[:128], f"refused:{e.code}", url)
                results.append({"source": url, "outcome": f"refused:{e.code}", "reason": str(e)})
        return results

    def _audit(self, action: str, target: str, outcome: str, actor: str) -> None:
        record_audit(
            self.context.engine,
            self.context.registry.write_lock,
            actor=actor[:64],
            action=action,
            target=target,
            outcome=outcome,
            now=self.clock(),
        )

    async def check_fork_clearances(self) -> dict[str, str]:
        """Ask the organisation for a ``fork-clearance`` of every peer we flagged for a forked log
        (``GET <manifest_url>/v1/fork-clearances/<peer>``, in the manifest duty, which already talks
        to it) and resume following each one it validly clears (``sync.apply_clearance``).

        Returns the outcome per flagged peer: ``cleared:<digest>``, ``none`` (404), ``unreachable``,
        ``http:<status>`` or ``refused:<code>`` (audited once per code by ``apply_clearance``)."""
        url = self.context.config.manifest_url
        if not url or self._session is None:
            return {}
        outcomes: dict[str, str] = {}
        for peer in await asyncio.to_thread(forked_peers, self.context.engine):
            member = self.context.manifest.member(peer)
            if member is None:
                continue
            try:
                async with self._session.get(
                    f"{url.rstrip('/')}/v1/fork-clearances/{peer}",
                    timeout=aiohttp.ClientTimeout(total=self.timeout),
                ) as response:
                    if response.status != 200:
                        outcomes[peer] = "none" if response.status == 404 else f"http:{response.status}"
                        continue
                    data = await read_limited(response, MAX_CLEARANCE_BYTES)
            except OversizedError as e:
                await asyncio.to_thread(self._refuse_clearance, peer, e.code)
                outcomes[peer] = f"refused:{e.code}"
                continue
            except (aiohttp.ClientError, TimeoutError):
                outcomes[peer] = "unreachable"
                continue
            try:
                digest = await asyncio.to_thread(self._apply_clearance, member, data)
            except WatchnetError as e:
                LOG.warning("fork clearance of %s refused: %s", peer, e.code, extra={"detail": str(e)})
                outcomes[peer] = f"refused:{e.code}"
                continue
            if digest is not None:
                LOG.warning(
                    "fork flag on %s cleared by the organisation (%s); following it again", peer, digest
                )
                outcomes[peer] = f"cleared:{digest}"
                self._wake_pull.setdefault(peer, asyncio.Event()).set()
        return outcomes

    def _refuse_clearance(self, peer: str, code: str) -> None:
        with self.context.registry.write_lock:
            refuse_clearance(self.context.engine, peer, code, self.clock().replace(microsecond=0))

    def _apply_clearance(self, member: Member, data: bytes) -> str | None:
        with self.context.registry.write_lock:
            return apply_clearance(
                self.context.engine,
                member=member,
                manifest=self.context.manifest,
                data=data,
                now=self.clock().replace(microsecond=0),
            )

    async def _report_fork(self, member: Member, error: ForkDetected) -> None:
        """Send the organisation a proof it can check with the manifest alone (``fork-report`` in
        docs/protocol.md): the peer's signed head we verified and one it signed for the same size
        with a different root. When the conflicting head is larger, the peer is asked for its head
        at our verified size (a one-event log page ends exactly there); if that root is the one we
        verified, the page was bad rather than the history rewritten, and nothing is reported. A
        peer already flagged (no new conflicting head) is not reported again."""
        url = self.context.config.manifest_url
        if not url or error.conflicting_head is None or self._session is None:
            return
        evidence = await asyncio.to_thread(fork_evidence, self.context.engine, member.node_id)
        if evidence is None:
            return
        verified = evidence["verified_head"]
        conflicting: dict[str, Any] | None = error.conflicting_head
        try:
            ours = SignedDocument.from_dict(verified, TreeHead).payload
            theirs = SignedDocument.from_dict(conflicting, TreeHead).payload
            if theirs.tree_size != ours.tree_size and ours.tree_size > 0:
                page = await self.client.exchange(
                    member,
                    "/v1/peer/log",
                    SYNC_PURPOSE,
                    LogRequest(after=ours.tree_size - 1, limit=1),
                    LogPage,
                    now=self.clock(),
                    manifest_version=self.context.manifest.version,
                    timeout=self.timeout,
                )
                page.head.verify([member.signing_key], threshold=1)
                theirs, conflicting = page.head.payload, page.head.to_dict()
        except (WatchnetError, aiohttp.ClientError, TimeoutError) as e:
            LOG.warning("fork of %s not reported: %s", member.node_id, type(e).__name__)
            return
        if theirs.tree_size != ours.tree_size or theirs.root_hash == ours.root_hash:
            LOG.warning(
                "fork of %s not reported: no two roots for one size (heads of %d and %d events)",
                member.node_id,
                ours.tree_size,
                theirs.tree_size,
            )
            return
        try:
            async with self._session.post(
                url.rstrip("/") + "/v1/reports",
                json={
                    "type": "fork-report",
                    "peer": member.node_id,
                    "reporter": self.node_id,
                    "verified_head": verified,
                    "conflicting_head": conflicting,
                },
                timeout=aiohttp.ClientTimeout(total=self.timeout),
            ) as response:
                outcome = f"ok:{response.status}" if response.status < 300 else f"refused:{response.status}"
        except (aiohttp.ClientError, TimeoutError) as e:
            outcome = f"unreachable:{type(e).__name__}"
        await asyncio.to_thread(self._audit, "report.fork", "organisation", outcome, self.node_id)
