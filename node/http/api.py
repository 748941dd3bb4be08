"""What every HTTP handler of the node shares: app keys, staff checks, JSON bodies, error statuses.

Handlers live in ``node.app.server`` (entries, matching, logs), ``node.http.network`` (peers and
the network) and ``node.http.casework`` (requests, complaints, provisions); each reads its
services from the application through the keys defined here.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

import cv2
import numpy as np
from aiohttp import web
from sqlalchemy.engine import Engine

from governance.provision import NoLegalBasis
from governance.requests import RequestRefused
from governance.roles import Action, require_permission
from node.clock import now_utc
from node.context import NodeContext
from node.face.pipeline import MAX_CROP_BYTES, check_crop, decode_crop, decode_image
from node.federation.federation import (
    Federation,
)
from node.federation.gate import PeerRateLimited, PeerRequest
from node.private.eval_keys import UnknownEvalKey
from node.private.matcher import GalleryNotReady, HEBusy
from node.private.mode import PrivateMode
from node.records.accounts import AccountDisabled, AuthenticationFailed, StaffMember, TokenNotFound
from node.records.alert_faces import SAME_PLACE, CropErased
from node.records.auditlog import AuditWriter
from node.records.closures import ClosurePending
from node.records.integrity import IntegrityFailure
from node.records.ratelimit import RateBuckets
from node.records.registry import EntryNotFound, TwoPersonRuleViolation, WrongState
from node.records.restore import Restoring
from node.telemetry import Telemetry
from protocol.canonical import b64url_decode, parse_json
from protocol.embedding import Embedding
from protocol.errors import (
    ConfigurationError,
    FreshnessError,
    MalformedError,
    OversizedError,
    PolicyError,
    ProofError,
    VerificationError,
    WatchnetError,
)
from protocol.fields import MAX_SAFE_INT, Fields
from protocol.message import MAX_SEALED_BYTES
from protocol.query import MAX_QUERY_EMBEDDINGS

T = TypeVar("T")

__all__ = [
    "ACTOR",
    "ALERT_WINDOW",
    "AUDIT_FLUSH_SECONDS",
    "AUDIT_TARGET",
    "AUDIT_WRITER",
    "BODY_SLOT",
    "CLOCK",
    "CONTEXT",
    "FEDERATION",
    "LIMITER",
    "MAX_PAGE",
    "METRICS",
    "PRIVATE",
    "STAFF",
    "STATUS_FOR_ERROR",
    "TELEMETRY",
    "TOKEN_CACHE",
    "TOKEN_CACHE_SECONDS",
    "BodyTimeout",
    "Clock",
    "NodeMetrics",
    "PeerBodiesBusy",
    "Probes",
    "RateLimited",
    "RateLimiter",
    "SharedRateLimiter",
    "admit_peer",
    "answer_peer",
    "audit_later",
    "error_response",
    "face_for_registration",
    "faces_in_frame",
    "image_bytes",
    "int_query",
    "now_utc",
    "probe_faces",
    "read_json",
    "refuse_extra",
    "require_staff",
    "sealed_response",
    "status_for",
]


class RateLimiter:
    """Token bucket per key (an account, an address): ``rate`` requests a minute with bursts of the
    same size. At most ``max_keys`` buckets are held: past that, buckets that have refilled are
    forgotten (a full bucket is the same as none), so a flood of new keys cannot grow it."""

    def __init__(self, per_minute: int, max_keys: int = 65_536) -> None:
        self.rate = per_minute / 60.0
        self.capacity = float(per_minute)
        self.max_keys = max_keys
        self._buckets: dict[str, tuple[float, float]] = {}

    def _tokens(self, key: str, now: float) -> float:
        tokens, last = self._buckets.get(key, (self.capacity, now))
        return min(self.capacity, tokens + (now - last) * self.rate)

    def exhausted(self, key: str, now: float) -> bool:
        """Whether ``key`` has no request left now (nothing is spent)."""
        return self._tokens(key, now) < 1.0

    def allow(self, key: str, now: float) -> bool:
        tokens = self._tokens(key, now)
        if key not in self._buckets and len(self._buckets) >= self.max_keys:
            self._forget_full(now)
        if tokens < 1.0:
            self._buckets[key] = (tokens, now)
            return False
        self._buckets[key] = (tokens - 1.0, now)
        return True

    def _forget_full(self, now: float) -> None:
        for key in [k for k in self._buckets if self._tokens(k, now) >= self.capacity]:
            del self._buckets[key]
        while len(self._buckets) >= self.max_keys:
            del self._buckets[next(iter(self._buckets))]

    @classmethod
    def for_node(cls, engine: Engine, name: str, per_minute: int) -> RateLimiter:
        """The limiter a node's process uses: in memory on SQLite (one process serves the node),
        in the database on PostgreSQL, where every worker of the node must share the buckets."""
        if engine.dialect.name == "postgresql":
            return SharedRateLimiter(RateBuckets(engine, name, per_minute))
        return cls(per_minute)


class SharedRateLimiter(RateLimiter):
    """``RateLimiter`` with its buckets in the database (``RateBuckets``): one upsert a request,
    shared by every worker of the node. The ``now`` callers pass is their process's monotonic
    clock, which another worker cannot compare with, so it is not used: the buckets run on the
    wall clock ``buckets`` was given."""

    def __init__(self, buckets: RateBuckets) -> None:
        super().__init__(int(buckets.capacity), max_keys=buckets.max_keys)
        self.buckets = buckets

    def exhausted(self, key: str, now: float) -> bool:
        return self.buckets.exhausted(key)

    def allow(self, key: str, now: float) -> bool:
        return self.buckets.allow(key)


class NodeMetrics:
    """Counters for requests, refusals, registrations and matches (labels: route, code; never content)."""

    def __init__(self, telemetry: Telemetry) -> None:
        meter = telemetry.meter("watchnet.node")
        self.requests = meter.create_counter("watchnet.http.requests", description="requests answered")
        self.refusals = meter.create_counter(
            "watchnet.http.refusals", description="requests refused, by error code"
        )
        self.registrations = meter.create_counter(
            "watchnet.entries.registered", description="entries approved"
        )
        self.matches = meter.create_counter(
            "watchnet.match.hits", description="matches at or above the threshold"
        )
        self.match_queries = meter.create_counter("watchnet.match.queries", description="faces searched")


CONTEXT = web.AppKey("context", NodeContext)


TELEMETRY = web.AppKey("telemetry", Telemetry)


Clock = Callable[[], datetime]


CLOCK: web.AppKey[Clock] = web.AppKey("clock")


LIMITER = web.AppKey("limiter", RateLimiter)


METRICS = web.AppKey("metrics", NodeMetrics)


AUDIT_WRITER = web.AppKey("audit_writer", AuditWriter)


FEDERATION = web.AppKey("federation", Federation)


PRIVATE = web.AppKey("private", PrivateMode)


TOKEN_CACHE = web.AppKey("token_cache", dict[str, tuple[StaffMember, float]])


TOKEN_CACHE_SECONDS = 10.0
"""How long a verified token is trusted without a database read (a disabled account stops within this)."""


AUDIT_FLUSH_SECONDS = 0.05


ALERT_WINDOW = SAME_PLACE
"""Frames of one pass at one place within this add nothing to an alert; the merging of sightings
and alerts is ``AlertFaces.raise_in`` (``[alerts] merge_window``)."""


STAFF = web.RequestKey("staff", StaffMember)


MAX_PAGE = 1000


ACTOR = web.RequestKey("actor", str)


AUDIT_TARGET = web.RequestKey("audit_target", str)


BODY_SLOT: web.RequestKey[Callable[[], None]] = web.RequestKey("body_slot")
"""Gives back the request's slot among the large peer bodies read at once (idempotent)."""


class RateLimited(PolicyError):
    code = "rate_limited"


class BodyTimeout(MalformedError):
    """The body did not arrive within ``connections.body_timeout`` (408)."""

    code = "body_timeout"


class PeerBodiesBusy(PolicyError):
    """Too many large peer messages are being read now; the sender retries (503, Retry-After)."""

    code = "busy"


STATUS_FOR_ERROR: list[tuple[type[WatchnetError], int]] = [
    (ClosurePending, 202),
    (OversizedError, 413),
    (IntegrityFailure, 503),
    (Restoring, 503),
    (BodyTimeout, 408),
    (PeerBodiesBusy, 503),
    (MalformedError, 400),
    (AuthenticationFailed, 401),
    (AccountDisabled, 401),
    (EntryNotFound, 404),
    (CropErased, 404),
    (TokenNotFound, 404),
    (WrongState, 409),
    (TwoPersonRuleViolation, 403),
    (RateLimited, 429),
    (RequestRefused, 409),
    (NoLegalBasis, 403),
    (PeerRateLimited, 429),
    (HEBusy, 503),
    (GalleryNotReady, 503),
    (UnknownEvalKey, 404),
    (PolicyError, 403),
    (FreshnessError, 409),
    (ProofError, 400),
    (VerificationError, 401),
    (ConfigurationError, 500),
]


def status_for(error: WatchnetError) -> int:
    return next((status for kind, status in STATUS_FOR_ERROR if isinstance(error, kind)), 400)


def error_response(error: WatchnetError) -> web.Response:
    message = "the node is misconfigured" if isinstance(error, ConfigurationError) else str(error)
    response = web.json_response({"error": error.code, "message": message}, status=status_for(error))
    if isinstance(error, Restoring):
        response.headers["Retry-After"] = str(error.retry_after)
    return response


async def audit_later(request: web.Request, outcome: str) -> None:
    """Queue this request's audit record in the group-commit writer, which keeps it until it can be
    written, instead of the synchronous write the access middleware makes after a changing request.

    For an answer given while the disk may be full (a held deletion): the caller then raises its
    answer (an ``HTTPException``, which the middleware passes on unaudited), so a record the disk
    refuses now is written later instead of turning the answer into a 500.
    """
    resource = request.match_info.route.resource
    body = await request.read()
    request.app[AUDIT_WRITER].add(
        actor=request.get(ACTOR, "anonymous")[:64],
        action=f"{request.method} {resource.canonical if resource else request.path}",
        target=request.match_info.get("entry_id", "")[:128],
        outcome=outcome,
        request_hash=hashlib.sha256(body).hexdigest() if body else "",
        now=request.app[CLOCK](),
    )


def require_staff(request: web.Request, action: Action) -> StaffMember:
    staff = request[STAFF]
    require_permission(staff.role, action)
    return staff


async def read_json(request: web.Request) -> Fields:
    body = await request.read()
    return Fields(parse_json(body, max_bytes=request.app[CONTEXT].config.limits.max_body_bytes), "request")


def refuse_extra(f: Fields) -> None:
    if f.rest():
        raise MalformedError(f"request: unknown fields {sorted(f.rest())}; free text is not accepted")


def int_query(request: web.Request, name: str, default: int | None = None, low: int = 0) -> int:
    text = request.query.get(name)
    if text is None:
        if default is None:
            raise MalformedError(f"query parameter {name!r} is required")
        return default
    if not (text.isascii() and text.isdigit() and len(text) <= 16 and low <= int(text) <= MAX_SAFE_INT):
        raise MalformedError(
            f"query parameter {name!r}: expected an integer in [{low}, {MAX_SAFE_INT}], got {text!r:.20}"
        )
    return int(text)


def image_bytes(f: Fields, name: str, context: NodeContext) -> bytes:
    limit = context.config.limits.max_body_bytes
    return b64url_decode(f.text(name, max_len=limit * 4 // 3 + 4), field=f"request.{name}")


def face_for_registration(context: NodeContext, image: bytes) -> tuple[Embedding, bytes]:
    """The best face of a registration photo, checked against the node's written quality rules."""
    face, embedding = context.faces.best_face(decode_image(image), context.rules.face_quality)
    ok, jpeg = cv2.imencode(".jpg", face.crop)
    if not ok:
        raise MalformedError("the face crop could not be encoded")
    return embedding, jpeg.tobytes()


def faces_in_frame(context: NodeContext, image: bytes) -> Probes:
    faces = context.faces.detect(decode_image(image))[:MAX_QUERY_EMBEDDINGS]
    crops = [face.crop for face in faces]
    return Probes(context.faces.embed_crops(crops), crops)


@dataclass(frozen=True)
class Probes:
    """The faces to search for, and the camera's aligned crop of each when they came from an image.

    A crop stays in memory: only a face that raised an alert is encoded (``crop_jpeg``) and kept,
    sealed, for the review window (``node.records.alert_faces``); the others are dropped."""

    embeddings: list[Embedding]
    crops: list[np.ndarray] | None = None
    sent_crops: list[bytes] | None = None
    """The JPEG of each face's aligned crop as a camera worker sent it beside its embeddings
    (header-checked only: decoded, and encoded again by us, only for a face that matched)."""

    def crop_jpeg(self, index: int) -> bytes | None:
        if self.sent_crops is not None:
            try:
                crop = decode_crop(self.sent_crops[index], f"request.crops[{index}]")
            except WatchnetError:  # its header passed, its pixels did not: the alert stands, without a face
                return None
        elif self.crops is not None:
            crop = self.crops[index]
        else:
            return None
        ok, jpeg = cv2.imencode(".jpg", crop, [cv2.IMWRITE_JPEG_QUALITY, 90])
        return jpeg.tobytes() if ok else None


async def probe_faces(f: Fields, context: NodeContext) -> Probes:
    """The faces to search for: detected in ``image`` (a photo or camera frame), or given as ``embeddings``."""
    if f.has("image") == f.has("embeddings"):
        raise MalformedError("request: give exactly one of 'image' (a photo or camera frame) or 'embeddings'")
    if f.has("image"):
        image = image_bytes(f, "image", context)
        return await asyncio.to_thread(faces_in_frame, context, image)
    raw = f.array("embeddings", max_items=MAX_QUERY_EMBEDDINGS)
    if not raw:
        raise MalformedError("request.embeddings is empty")
    dimension = context.manifest.policy.model.dimension
    embeddings = [
        Embedding.from_str(e, dimension=dimension, field=f"request.embeddings[{i}]")
        for i, e in enumerate(raw)
    ]
    sent_crops = None
    if f.has("crops"):  # a camera's aligned crop of each face, for the operator to decide by sight
        texts = f.array("crops", max_items=MAX_QUERY_EMBEDDINGS)
        if len(texts) != len(embeddings):
            raise MalformedError(f"request.crops: {len(texts)} crops for {len(embeddings)} embeddings")
        sent_crops = []
        for i, text in enumerate(texts):
            if not isinstance(text, str) or len(text) > MAX_CROP_BYTES * 4 // 3 + 4:
                raise MalformedError(f"request.crops[{i}]: expected base64url of an aligned crop's JPEG")
            data = b64url_decode(text, field=f"request.crops[{i}]")
            check_crop(data, f"request.crops[{i}]")
            sent_crops.append(data)
    return Probes(embeddings, sent_crops=sent_crops)


async def admit_peer(request: web.Request, bodies: Any, *, max_bytes: int = MAX_SEALED_BYTES) -> PeerRequest:
    """Admit a sealed peer message (the checks of ``PeerGate``, in order); the audit names the sender."""
    admitted, _ = await answer_peer(request, bodies, lambda _: None, max_bytes=max_bytes)
    return admitted


async def answer_peer(
    request: web.Request,
    bodies: Any,
    work: Callable[[PeerRequest], T],
    *,
    max_bytes: int = MAX_SEALED_BYTES,
) -> tuple[PeerRequest, T]:
    """Admit a sealed peer message and do ``work`` with it in the same worker thread: one hand-off
    from the event loop per request instead of one per step (each costs a thread wake-up, which a
    busy machine makes milliseconds). The audit names the sender even when ``work`` fails."""
    federation = request.app[FEDERATION]
    raw = await request.read()
    admitted: list[PeerRequest] = []

    def run() -> T:
        admitted.append(federation.gate.admit(raw, request.app[CLOCK](), bodies, max_bytes=max_bytes))
        return work(admitted[0])

    try:
        result = await asyncio.to_thread(run)
    finally:
        request.get(BODY_SLOT, _nothing)()
        if admitted:
            request[ACTOR] = f"peer:{admitted[0].member.node_id}"
    return admitted[0], result


def _nothing() -> None:
    """No slot to give back: the body was small enough to be read without one."""


def sealed_response(data: bytes) -> web.Response:
    return web.Response(body=data, content_type="application/json")
