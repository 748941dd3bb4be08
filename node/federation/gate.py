"""The door every peer message comes through: the checks, in a fixed order, before any work is done.

1. size, form, addressee, known sender, decryption and the sender's signature (``open_sealed``);
2. the sender is a member of the trusted manifest (active, for queries; active or suspended for
   log sync, so a suspended member still learns of deletions) and names the current manifest
   version or the previous one within the grace period;
3. for queries, the trusted manifest has not expired and the purpose is one of the group's; log
   traffic uses the reserved sync purpose and keeps flowing under an expired manifest, so
   deletions still propagate;
4. the body parses and, for a query, was made with the pinned model;
5. ``issued_at`` is inside the replay window and the nonce is unseen;
6. the member is within its request rate.

Each refusal is a typed error the service audits and answers with a stable code. Answers go back
signed and sealed to the sender the same way (``reply``).
"""

from __future__ import annotations

import contextlib
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime

from governance.errors import PurposeNotAllowed
from governance.manifest import Manifest, Member, MemberStatus
from governance.policy import require_member, require_model, require_purpose, require_query_mode
from node.federation.nonces import ReplayCheck
from node.records.manifests import ManifestStore
from node.records.ratelimit import RateBuckets
from protocol.errors import ClockSkewError, ExpiredError, PolicyError
from protocol.fields import format_time
from protocol.keys import EncryptionKey, SigningKey
from protocol.message import (
    MAX_SEALED_BYTES,
    BoxCache,
    PeerKeys,
    PeerMessage,
    compose_sealed,
    decode_body,
    open_sealed,
)
from protocol.mirror import MirrorRequest
from protocol.private_query import EvaluationKeys, PrivateQuery, RevealRequest
from protocol.query import QueryRequest
from protocol.reference import ReferenceFaceRequest
from protocol.replay import ReplayGuard
from protocol.signed import Payload
from protocol.subject import ForwardedRequest, MatchFeedback
from protocol.sync import SYNC_PURPOSE, LogNotice, LogRequest, ReceiptDelivery

__all__ = ["PeerGate", "PeerRateLimited", "PeerRequest", "refuse_if_expired"]


_SENDER_RE = re.compile(rb'"sender":\s*"([a-z0-9][a-z0-9.-]{1,62})"')


class PeerRateLimited(PolicyError):
    code = "rate_limited"


class _MemberBuckets:
    """Token bucket per member: ``per_minute`` messages a minute with bursts of the same size."""

    def __init__(self, per_minute: int) -> None:
        self.per_minute = per_minute
        self._rate = per_minute / 60.0
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def take(self, member: str, now: float) -> bool:
        with self._lock:
            tokens, last = self._buckets.get(member, (float(self.per_minute), now))
            tokens = min(float(self.per_minute), tokens + (now - last) * self._rate)
            allowed = tokens >= 1.0
            self._buckets[member] = (tokens - 1.0 if allowed else tokens, now)
            return allowed


PURPOSE_OF_BODY: dict[type[Payload], str] = {
    LogRequest: SYNC_PURPOSE,
    LogNotice: SYNC_PURPOSE,
    ReceiptDelivery: SYNC_PURPOSE,
    MirrorRequest: SYNC_PURPOSE,
    ForwardedRequest: "data-subject-request",
    MatchFeedback: "crime-prevention",
    ReferenceFaceRequest: "crime-prevention",
}
"""Bodies bound to one purpose; a query may carry any of the group's purposes (never the sync one)."""


def refuse_if_expired(manifest: Manifest, now: datetime) -> None:
    """Queries need a current joint-use notice; deletions keep propagating under an expired one."""
    if manifest.is_expired(now):
        raise ExpiredError(
            f"the trusted manifest version {manifest.version} expired at {format_time(manifest.expires)}; "
            "no queries until the organisation publishes a renewed one"
        )


@dataclass(frozen=True)
class PeerRequest:
    """A message that passed every check: who sent it, under which manifest, and its parsed body."""

    message: PeerMessage
    member: Member
    manifest: Manifest
    body: Payload


class PeerGate:
    """Opens, authenticates and admits peer messages; seals our answers."""

    def __init__(
        self,
        *,
        node_id: str,
        signing_key: SigningKey,
        encryption_key: EncryptionKey,
        manifests: ManifestStore,
        replay: ReplayCheck,
        per_minute: int,
        shared_rate: RateBuckets | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.node_id = node_id
        self._signing_key = signing_key
        self._encryption_key = encryption_key
        self._manifests = manifests
        self._replay = replay
        self.skews: dict[str, float] = {}
        """Each sender's clock minus ours (seconds) at its last message that reached the replay
        check: what ``/v1/peers`` and the metrics show, well before a refusal."""
        self._replay_lock: contextlib.AbstractContextManager[object] = (
            threading.Lock() if isinstance(replay, ReplayGuard) else contextlib.nullcontext()
        )
        """``ReplayGuard`` is one process's memory and needs this lock; the database's store does not."""
        self._buckets = _MemberBuckets(per_minute)
        self._shared_rate = shared_rate
        """The node's workers' common buckets (PostgreSQL), when there may be several workers."""
        self._monotonic = monotonic
        self.boxes = BoxCache(encryption_key)

    def _keys(self, node_id: str) -> PeerKeys | None:
        member = self._manifests.current.member(node_id)
        return None if member is None else PeerKeys(member.signing_key, member.encryption_key)

    def sender_of(self, raw: bytes) -> str:
        """The sender named on the outside of a sealed message (unverified: for the audit only)."""
        found = _SENDER_RE.search(raw)
        return found.group(1).decode("ascii") if found else ""

    def admit(
        self,
        raw: bytes,
        now: datetime,
        body_types: Mapping[str, type[Payload]],
        *,
        max_bytes: int = MAX_SEALED_BYTES,
    ) -> PeerRequest:
        """Run the checks in order and return the admitted request, or raise the first failure."""
        signed = open_sealed(
            raw,
            recipient_id=self.node_id,
            recipient_key=self._encryption_key,
            lookup_sender=self._keys,
            box_for=self.boxes,
            max_bytes=max_bytes,
        )
        message = signed.payload
        manifest = self._manifests.current
        sync = message.purpose == SYNC_PURPOSE
        member = manifest.member(message.sender)
        if member is None or not (sync and member.status is MemberStatus.SUSPENDED):
            member = require_member(manifest, message.sender)
        self._manifests.check_named_version(message.manifest_version, now)
        if not sync:
            refuse_if_expired(manifest, now)
            require_purpose(manifest, message.purpose)
        body = decode_body(message, body_types)
        required = PURPOSE_OF_BODY.get(type(body))
        if (required is None and sync) or (required is not None and message.purpose != required):
            raise PurposeNotAllowed(
                f"purpose {message.purpose!r} does not fit a {message.body_type!r} message"
            )
        if isinstance(body, QueryRequest):
            require_query_mode(manifest, manifest.member(self.node_id), "plain")
            require_model(manifest, body.model_id)
            body.check_dimension(manifest.policy.model.dimension)
        if isinstance(body, PrivateQuery | RevealRequest | EvaluationKeys):
            require_query_mode(manifest, manifest.member(self.node_id), "private")
        if isinstance(body, PrivateQuery | RevealRequest):
            require_model(manifest, body.model_id)
        self.skews[message.sender] = (message.issued_at - now).total_seconds()
        with self._replay_lock:
            try:
                self._replay.check(message.sender, message.nonce, message.issued_at, now)
            except ClockSkewError as e:
                raise ClockSkewError(
                    skew_message(message.sender, self.node_id, message.issued_at, now, e)
                ) from e
        allowed = (
            self._shared_rate.allow(message.sender)
            if self._shared_rate is not None
            else self._buckets.take(message.sender, self._monotonic())
        )
        if not allowed:
            raise PeerRateLimited(
                f"{message.sender!r} sent more than {self._buckets.per_minute} messages a minute; slow down"
            )
        return PeerRequest(message, member, manifest, body)

    def reply(
        self, request: PeerRequest, body: Payload, now: datetime, *, max_bytes: int = MAX_SEALED_BYTES
    ) -> bytes:
        """Our answer to ``request``, signed by us and sealed to its sender."""
        return self.seal_to(
            request.member, request.message.purpose, body, now, request.manifest.version, max_bytes=max_bytes
        )

    def seal_to(
        self,
        member: Member,
        purpose: str,
        body: Payload,
        now: datetime,
        manifest_version: int,
        *,
        max_bytes: int = MAX_SEALED_BYTES,
    ) -> bytes:
        """A new signed, sealed message from us to ``member``."""
        return compose_sealed(
            sender=self.node_id,
            recipient=member.node_id,
            manifest_version=manifest_version,
            purpose=purpose,
            body=body,
            issued_at=now,
            signing_key=self._signing_key,
            sender_key=self._encryption_key,
            recipient_key=member.encryption_key,
            box=self.boxes.box(member.node_id, member.encryption_key),
            max_bytes=max_bytes,
        )


def skew_message(sender: str, recipient: str, issued_at: datetime, now: datetime, error: Exception) -> str:
    """A clock refusal that says whose clock is off and by how much, and what to do."""
    gap = (issued_at - now).total_seconds()
    if abs(gap) < 1:
        return f"{error}; {recipient}'s clock stepped back since it saw later messages: check its NTP"
    side = "ahead of" if gap > 0 else "behind"
    return f"{sender}'s clock is {abs(gap):.0f} s {side} {recipient}'s ({error}); check NTP on both nodes"
