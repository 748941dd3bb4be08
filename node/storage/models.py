"""The node's tables. Biometric columns hold secretbox ciphertext only, and are set to NULL on deletion.

Rows are the node's working state; the authoritative history is the signed event log
(``log_leaf``), whose leaves carry only event headers and commitments. ``entry`` keeps a
tombstone (id, version, status, dates, category) after deletion so late corrections and
receipts still find their target, while the embedding, face crop, evidence reference and the
signed entry itself are erased.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Column, Index, LargeBinary, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

__all__ = [
    "Account",
    "Alert",
    "AlertFace",
    "AlertSighting",
    "ApiToken",
    "AuditRecord",
    "Complaint",
    "EntryRow",
    "EventPayloadRow",
    "LogLeaf",
    "ManifestRow",
    "MatchFeedbackRow",
    "OutboxReceipt",
    "OwedReceipt",
    "OwedReceiptMark",
    "PeerLeaf",
    "PeerState",
    "ProvisionRow",
    "ReceiptRow",
    "ReplayNonce",
    "SubjectRequest",
    "Tombstone",
    "TreeHeadRow",
]


class Account(SQLModel, table=True):
    __tablename__ = "account"

    id: str = Field(primary_key=True, max_length=64)
    username: str = Field(unique=True, index=True, max_length=64)
    role: str = Field(max_length=16)
    password_hash: str = Field(max_length=256)
    disabled: bool = False
    failed_logins: int = 0
    created_at: datetime
    sites: str = Field(default="", max_length=1024)
    """A camera account's sites, comma-separated (it may submit faces for these only); empty for staff."""


class ApiToken(SQLModel, table=True):
    __tablename__ = "api_token"

    token_hash: str = Field(primary_key=True, max_length=64)
    account_id: str = Field(foreign_key="account.id", index=True, max_length=64)
    created_at: datetime
    expires_at: datetime | None = None
    revoked: bool = False


class EntryRow(SQLModel, table=True):
    __tablename__ = "entry"

    entry_id: str = Field(primary_key=True, max_length=64)
    version: int
    status: str = Field(index=True, max_length=16)
    category: str = Field(max_length=48)
    site: str = Field(max_length=63)
    evidence_kind: str = Field(max_length=48)
    evidence_reference: str | None = Field(default=None, max_length=64)
    incident_date: str | None = Field(default=None, max_length=10)
    registrar: str = Field(max_length=64)
    officer: str | None = Field(default=None, max_length=64)
    proposed_at: datetime
    registered_at: datetime | None = None
    expires_at: datetime = Field(index=True)
    closed_at: datetime | None = None
    reason: str | None = Field(default=None, max_length=48)
    signed_entry: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    embedding_ct: bytes | None = Field(default=None, sa_column=Column(LargeBinary, nullable=True))
    salt_ct: bytes | None = Field(default=None, sa_column=Column(LargeBinary, nullable=True))
    crop_ct: bytes | None = Field(default=None, sa_column=Column(LargeBinary, nullable=True))


class LogLeaf(SQLModel, table=True):
    __tablename__ = "log_leaf"

    idx: int = Field(primary_key=True)
    event_id: str = Field(unique=True, max_length=64)
    entry_id: str = Field(index=True, max_length=64)
    kind: str = Field(index=True, max_length=16)
    leaf_hash: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    leaf: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    created_at: datetime


class EventPayloadRow(SQLModel, table=True):
    __tablename__ = "event_payload"

    event_id: str = Field(primary_key=True, max_length=64)
    entry_id: str = Field(index=True, max_length=64)
    payload_ct: bytes | None = Field(default=None, sa_column=Column(LargeBinary, nullable=True))


class AuditRecord(SQLModel, table=True):
    __tablename__ = "audit"

    seq: int = Field(primary_key=True)
    at: datetime
    actor: str = Field(max_length=64)
    action: str = Field(max_length=64)
    target: str = Field(default="", max_length=128)
    outcome: str = Field(max_length=48)
    request_hash: str = Field(default="", max_length=64)
    prev_hash: str = Field(max_length=64)
    record_hash: str = Field(max_length=64)


class TreeHeadRow(SQLModel, table=True):
    __tablename__ = "tree_head"

    tree_size: int = Field(primary_key=True)
    signed: str = Field(sa_column=Column(Text, nullable=False))


class WitnessedLog(SQLModel, table=True):
    """As a witness: the latest checkpoint this node cosigned for another member's log, and the
    note with its cosignature (c2sp.org/tlog-witness keeps only the latest per origin)."""

    __tablename__ = "witnessed_log"

    origin: str = Field(primary_key=True, max_length=160)
    tree_size: int = Field(sa_column=Column(BigInteger, nullable=False))
    root_hash: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    note: str = Field(sa_column=Column(Text, nullable=False))
    cosigned_at: datetime


class Cosignature(SQLModel, table=True):
    """As a log: each witness's latest cosignature of this node's checkpoint (one note line)."""

    __tablename__ = "cosignature"

    witness: str = Field(primary_key=True, max_length=63)
    tree_size: int = Field(sa_column=Column(BigInteger, nullable=False, index=True))
    line: str = Field(sa_column=Column(Text, nullable=False))
    received_at: datetime


class Alert(SQLModel, table=True):
    """A match for staff review: which entry (owner, id, version) and how close; never the probe's embedding.

    Where and when the person was seen, and the camera's face crop of each sighting (sealed, for
    the review window only), are ``alert_sighting`` and ``alert_face`` (``node.records.alert_faces``).

    For a peer's entry the owner's signed entry is cached (``signed_entry``) so staff can see
    who registered what. When the owner deletes the entry the alert stays as a record that it
    was raised, with ``status = "withdrawn"`` and the score, category and cached copy erased.
    """

    __tablename__ = "alert"

    id: str = Field(primary_key=True, max_length=64)
    owner: str = Field(max_length=63)
    entry_id: str = Field(index=True, max_length=64)
    entry_version: int
    score: float | None = None
    """Exact scores are no longer kept (rows from before the score disclosure rule may hold one)."""
    band: str | None = Field(default=None, max_length=16)
    """What the answer disclosed: ``match`` or ``strong`` (the manifest's score disclosure rule)."""
    site: str = Field(default="", max_length=63)
    camera: str = Field(default="", max_length=63)
    """The camera whose worker submitted the face (``[[cameras]] id``); empty for other matches."""
    gate: str = Field(default="", max_length=63)
    operator: str = Field(max_length=64)
    status: str = Field(default="open", max_length=16)
    created_at: datetime = Field(index=True)
    """Indexed: the delivery duty reads the alerts of the last minutes every second."""
    category: str | None = Field(default=None, max_length=48)
    signed_entry: str | None = Field(default=None, sa_column=Column(Text, nullable=True))


class AlertSighting(SQLModel, table=True):
    """One time and place an alert's person was seen (``node.records.alert_faces``).

    Seeing the same person (owner and entry) again within ``[alerts] merge_window`` of the alert's
    last sighting, at another gate or site, adds a sighting instead of raising a new alert.
    ``probe_ct`` is the camera's aligned face crop (JPEG), sealed under the alert's own record key
    (``alr-...`` in the key store), NULL when the probe was an embedding or once it was erased.
    """

    __tablename__ = "alert_sighting"

    id: str = Field(primary_key=True, max_length=64)
    alert_id: str = Field(index=True, max_length=64)
    seen_at: datetime
    site: str = Field(default="", max_length=63)
    gate: str = Field(default="", max_length=63)
    probe_ct: bytes | None = Field(default=None, sa_column=Column(LargeBinary, nullable=True))


class AlertFace(SQLModel, table=True):
    """The lifetime of an alert's camera crops: kept until ``erase_after`` (the review window),
    then the alert's record key is destroyed and every ``probe_ct`` of its sightings set to NULL.
    ``erased_at`` and ``erased_because`` (``window``, ``false-match``, ``withdrawn``,
    ``entry-closed``) record when and why; the erasure is also in the audit log."""

    __tablename__ = "alert_face"

    alert_id: str = Field(primary_key=True, max_length=64)
    erase_after: datetime = Field(index=True)
    erased_at: datetime | None = None
    erased_because: str | None = Field(default=None, max_length=16)


class AlertDelivery(SQLModel, table=True):
    """One alert owed to one delivery target (a ``[[webhooks]]`` or ``[[email]]`` id): made when
    the delivery duty first sees the alert, retried with backoff until the target takes it."""

    __tablename__ = "alert_delivery"

    alert_id: str = Field(primary_key=True, max_length=64)
    target: str = Field(primary_key=True, max_length=63)
    created_at: datetime
    attempts: int = 0
    next_at: datetime = Field(index=True)
    delivered_at: datetime | None = None
    last_error: str = Field(default="", max_length=64)


class ManifestRow(SQLModel, table=True):
    """Every manifest version this node has trusted, and when: the grace period and the audit need it."""

    __tablename__ = "manifest"

    version: int = Field(primary_key=True)
    signed: str = Field(sa_column=Column(Text, nullable=False))
    accepted_at: datetime
    source: str = Field(default="", max_length=256)


class PeerState(SQLModel, table=True):
    """Our checkpoint in one peer's event log: the last signed head we verified, and its health."""

    __tablename__ = "peer_state"

    peer: str = Field(primary_key=True, max_length=63)
    tree_size: int = 0
    signed_head: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    frontier: bytes | None = Field(default=None, sa_column=Column(LargeBinary, nullable=True))
    """The compact range of the ``tree_size`` leaves held (``protocol.merkle.CompactRange``)."""
    status: str = Field(default="ok", max_length=16)
    last_error: str = Field(default="", max_length=512)
    last_sync_at: datetime | None = None
    failures: int = 0


class PeerLeaf(SQLModel, table=True):
    """A verified copy of one peer's log leaf (a signed event header; nothing biometric)."""

    __tablename__ = "peer_leaf"

    peer: str = Field(primary_key=True, max_length=63)
    idx: int = Field(primary_key=True)
    event_id: str = Field(max_length=64)
    entry_id: str = Field(index=True, max_length=64)
    kind: str = Field(max_length=16)
    leaf_hash: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    leaf: bytes = Field(sa_column=Column(LargeBinary, nullable=False))


class Tombstone(SQLModel, table=True):
    """A peer's entry that was deleted or expired: a late or replayed copy is never re-admitted."""

    __tablename__ = "tombstone"

    owner: str = Field(primary_key=True, max_length=63)
    entry_id: str = Field(primary_key=True, max_length=64)
    event_id: str = Field(max_length=64)
    kind: str = Field(max_length=16)
    applied_at: datetime


class OutboxReceipt(SQLModel, table=True):
    """A receipt we signed for a peer's event, kept until the owner acknowledges it."""

    __tablename__ = "receipt_outbox"

    owner: str = Field(primary_key=True, max_length=63)
    event_id: str = Field(primary_key=True, max_length=64)
    signed: str = Field(sa_column=Column(Text, nullable=False))
    created_at: datetime
    delivered_at: datetime | None = None
    attempts: int = 0


class ReceiptRow(SQLModel, table=True):
    """A member's signed receipt for one of our events (the owner's proof that a change arrived)."""

    __tablename__ = "receipt"

    event_id: str = Field(primary_key=True, max_length=64)
    member: str = Field(primary_key=True, max_length=63)
    signed: str = Field(sa_column=Column(Text, nullable=False))
    applied_at: datetime
    received_at: datetime


class OwedReceipt(SQLModel, table=True):
    """A receipt a confirming member still owes us for one of our changes: made when the change is
    logged (``node.federation.owed``), gone when the receipt arrives, so who is missing is read
    from the few rows still open, never from every deletion ever made."""

    __tablename__ = "owed_receipt"

    event_id: str = Field(primary_key=True, max_length=64)
    member: str = Field(primary_key=True, max_length=63, index=True)
    idx: int


class OwedReceiptMark(SQLModel, table=True):
    """How far ``owed_receipt`` is made: every change below log index ``through``, for ``members``
    (the confirming members, sorted, comma-joined; a different set remakes the table once)."""

    __tablename__ = "owed_receipt_mark"

    id: int = Field(default=1, primary_key=True)
    through: int = 0
    members: str = Field(default="", sa_column=Column(Text, nullable=False))


class SubjectRequest(SQLModel, table=True):
    """A data-subject request (Art. 33-35) from the counter to its closing, with its deadline.

    The photo taken at the counter and its embedding are encrypted and erased when the request
    closes; the report keeps only what was disclosed (owners, entry ids, categories, dates).

    A request a member forwarded names that member and its own request id
    (``forwarded_origin``, ``forwarded_request_id``): the pair is unique, so a forward repeated
    (or raced by two workers) finds the request it opened instead of opening another. Both are
    NULL for a request taken at our counter; rows forwarded before revision 0008 have only the
    origin.
    """

    __tablename__ = "subject_request"
    __table_args__ = (
        UniqueConstraint("forwarded_origin", "forwarded_request_id", name="uq_subject_request_forward"),
    )

    id: str = Field(primary_key=True, max_length=64)
    kind: str = Field(max_length=16)
    status: str = Field(default="open", index=True, max_length=16)
    identity_check: str = Field(max_length=48)
    received_at: datetime
    deadline: datetime
    recorded_by: str = Field(max_length=64)
    photo_ct: bytes | None = Field(default=None, sa_column=Column(LargeBinary, nullable=True))
    embedding_ct: bytes | None = Field(default=None, sa_column=Column(LargeBinary, nullable=True))
    report: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    searched_at: datetime | None = None
    outcome: str | None = Field(default=None, max_length=16)
    ground: str | None = Field(default=None, max_length=32)
    closed_at: datetime | None = None
    closed_by: str | None = Field(default=None, max_length=64)
    receipts: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    forwarded_origin: str | None = Field(default=None, max_length=63)
    forwarded_request_id: str | None = Field(default=None, max_length=64)


class MatchFeedbackRow(SQLModel, table=True):
    """Staff feedback on a match with one of our entries: ours, or a member's (``origin``)."""

    __tablename__ = "match_feedback"

    id: str = Field(primary_key=True, max_length=64)
    origin: str = Field(max_length=63)
    alert_id: str = Field(max_length=64)
    entry_id: str = Field(index=True, max_length=64)
    entry_version: int
    outcome: str = Field(max_length=16)
    received_at: datetime


class Complaint(SQLModel, table=True):
    """A complaint about how personal data is handled (Art. 40), from intake to its outcome."""

    __tablename__ = "complaint"

    id: str = Field(primary_key=True, max_length=64)
    channel: str = Field(max_length=16)
    category: str = Field(max_length=48)
    summary: str = Field(sa_column=Column(Text, nullable=False))
    contact: str | None = Field(default=None, max_length=200)
    received_at: datetime
    recorded_by: str = Field(max_length=64)
    status: str = Field(default="open", index=True, max_length=16)
    outcome: str | None = Field(default=None, max_length=16)
    note: str | None = Field(default=None, max_length=500)
    closed_at: datetime | None = None
    closed_by: str | None = Field(default=None, max_length=64)
    referral: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    """The organisation's signed ``complaint-referral`` (channel ``organisation``), as received."""
    answer_by: datetime | None = None
    """The organisation's answer deadline, from the referral."""
    answer: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    """Our signed ``complaint-answer`` to the organisation, kept until (and after) it is delivered."""
    answer_attempts: int = 0
    answer_tried_at: datetime | None = None
    answer_error: str | None = Field(default=None, max_length=64)
    answer_delivered_at: datetime | None = None


class ProvisionRow(SQLModel, table=True):
    """A request from a third party (police, a court, ...) and what was provided, with its legal basis.

    ``outcome`` is ``provided`` (a signed ``third-party-provision`` event is in the log, index
    ``log_index``) or ``refused``. ``details`` (requester, reference, entries, items) stays here;
    the log leaf holds only a salted commitment to it.
    """

    __tablename__ = "provision"

    id: str = Field(primary_key=True, max_length=64)
    legal_basis: str = Field(max_length=48)
    requester_kind: str = Field(max_length=32)
    received_at: datetime
    outcome: str = Field(max_length=16)
    recorded_by: str = Field(max_length=64)
    entry_count: int = 0
    log_index: int | None = None
    details: str | None = Field(default=None, sa_column=Column(Text, nullable=True))


class QueryHit(SQLModel, table=True):
    """One answer that named an entry, for the hit budget and the probe-burst check.

    ``asker`` is the querying member's node id, or ``staff:<username>`` for a local match.
    ``sketch`` is a 64-bit random-hyperplane hash of the probe (per-node hyperplanes), enough to
    tell near-identical probes apart from different photos, never enough to rebuild the face.
    Rows older than the budget's window are deleted as new hits arrive.
    """

    __tablename__ = "query_hit"

    id: int | None = Field(default=None, primary_key=True)
    asker: str = Field(max_length=80, index=True)
    entry_id: str = Field(max_length=64)
    at: datetime = Field(index=True)
    sketch: int = Field(sa_column=Column(BigInteger, nullable=False))
    band: str = Field(max_length=16)
    repeat: bool = False
    """Near-identical to an earlier hit of the same asker on the entry within the burst window: it
    was answered with that hit's band and does not count against the budget."""


class SignInThrottle(SQLModel, table=True):
    """Failed sign-ins of one account from one source address, for the delay and the temporary lock.

    ``source`` is the client address (an IPv6 address as its /64). ``failures`` counts wrong
    passwords since ``window_start``; ``locked_until`` is set when they reach the lock limit and
    the lock ends by itself then. A row never disables the account, never touches its API tokens
    and never applies to another source. A successful sign-in or an admin's unlock deletes it.
    """

    __tablename__ = "sign_in_throttle"

    account_id: str = Field(primary_key=True, foreign_key="account.id", max_length=64)
    source: str = Field(primary_key=True, max_length=64)
    failures: int = 0
    window_start: datetime
    last_failure_at: datetime = Field(index=True)
    locked_until: datetime | None = None


class ReplayNonce(SQLModel, table=True):
    """A peer message's (sender, nonce), seen by one worker of this node, refused on every worker.

    ``expires_at`` is the message's ``issued_at`` plus the replay window: after it the message
    fails the time check anyway, so the row may go (``node.federation.nonces``). The table is
    UNLOGGED on PostgreSQL (migration 0009), so it is empty after a crash of the database server
    (not after a clean restart, nor when a worker dies).
    """

    __tablename__ = "replay_nonce"
    __table_args__ = (Index("ix_replay_nonce_sender_expires_at", "sender", "expires_at"),)

    sender: str = Field(primary_key=True, max_length=63)
    nonce: bytes = Field(sa_column=Column(LargeBinary, primary_key=True))
    expires_at: datetime = Field(index=True)


class ConsoleSessionRow(SQLModel, table=True):
    """A staff console session, seen by every worker of the node (``node.console.session``).

    ``key`` is the SHA-256 of the cookie's random id, never the id itself. ``staff_*`` are NULL
    before sign-in. ``notices`` is a JSON list of message keys shown once. ``preview_ct`` is the
    registrar's photo being checked (face crop and embedding), sealed with the node's data key and
    bound to the row, NULL when there is none. UNLOGGED on PostgreSQL (migration 0010): a crash of
    the database server ends every session (staff sign in again), and neither the sealed preview
    nor the once-every-few-seconds ``last_seen`` writes go through the write-ahead log.
    """

    __tablename__ = "console_session"

    key: str = Field(primary_key=True, max_length=64)
    csrf: str = Field(max_length=64)
    created_at: datetime = Field(index=True)
    last_seen: datetime = Field(index=True)
    staff_id: str | None = Field(default=None, max_length=64)
    staff_username: str | None = Field(default=None, max_length=64)
    staff_role: str | None = Field(default=None, max_length=16)
    checked_at: datetime | None = None
    notices: str = Field(default="[]", sa_column=Column(Text, nullable=False))
    preview_ct: bytes | None = Field(default=None, sa_column=Column(LargeBinary, nullable=True))


class RateBucket(SQLModel, table=True):
    """One token bucket of a rate limit shared by a node's workers (``node.records.ratelimit``).

    Times are seconds since the epoch on the workers' wall clocks. ``allowed`` is whether the
    last request took a token; ``full_at`` is when the bucket will have refilled, after which the
    row is worth nothing (a full bucket is the same as none) and is deleted. UNLOGGED on
    PostgreSQL: after a crash of the database server every bucket starts full.
    """

    __tablename__ = "rate_bucket"

    key: str = Field(primary_key=True, max_length=200)
    tokens: float
    updated_at: float
    full_at: float = Field(index=True)
    allowed: bool = True


class EvalKeyRow(SQLModel, table=True):
    """A member's HE evaluation keys, held for its private queries by every worker.

    Public material (they compute on the member's ciphertexts, never decrypt them), bound to the
    member, to the CKKS parameters (``params``, JSON) and to the key's epoch (``not_after``). At
    most two per member; ``version`` changes whenever the row is written, so a worker's cached
    copy of the megabytes is known current without reading them. UNLOGGED on PostgreSQL: after a
    crash of the database server the member is told ``unknown_eval_key`` and sends them again.
    """

    __tablename__ = "he_eval_key"

    owner: str = Field(primary_key=True, max_length=63)
    key_id: str = Field(primary_key=True, max_length=64)
    version: int = 1
    params: str = Field(sa_column=Column(Text, nullable=False))
    not_after: datetime = Field(index=True)
    received_at: datetime
    galois_keys: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    relin_keys: bytes = Field(sa_column=Column(LargeBinary, nullable=False))


class PrivateBuildRow(SQLModel, table=True):
    """A private-mode gallery build that answered a round 1: slot position -> entry id, sealed with
    the data key (the permutation is what keeps positions meaningless to the querier), so round 2
    may land on another worker. Kept until ``expires_at``, a few minutes after its last round 1."""

    __tablename__ = "private_build"

    build_id: str = Field(primary_key=True, max_length=64)
    expires_at: datetime = Field(index=True)
    positions_ct: bytes = Field(sa_column=Column(LargeBinary, nullable=False))


class PrivateRoundRow(SQLModel, table=True):
    """A round-1 private query of a member, on a build: what a reveal (round 2) must follow."""

    __tablename__ = "private_round"

    member: str = Field(primary_key=True, max_length=63)
    query_id: str = Field(primary_key=True, max_length=64)
    build_id: str = Field(primary_key=True, max_length=64)
    expires_at: datetime = Field(index=True)
