"""Deterministic builders for every signed format (fixed seeds, salts, nonces and clock).

Each vector holds the test-only key seed, the signed document, the SHA-256 of its canonical
signed bytes and whatever local data opens its commitments, so another implementation can
reproduce the bytes exactly.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any

import numpy as np

from protocol.canonical import b64url_encode, canonical_bytes, sha256_hex
from protocol.commitment import commit
from protocol.complaint import ComplaintAnswer, ComplaintReferral
from protocol.embedding import Embedding
from protocol.entry import Evidence, WatchlistEntry
from protocol.events import EntryEvent, EventKind, EventPayload, EventReason, log_leaf_bytes
from protocol.extraction import ExtractionReport
from protocol.fields import format_time
from protocol.keys import EncryptionKey, SigningKey
from protocol.merkle import MerkleLog, leaf_hash
from protocol.message import PeerMessage, seal
from protocol.provision import ThirdPartyProvision
from protocol.query import QueryMatch, QueryRequest, QueryResponse
from protocol.receipt import DeletionReceipt, ReceiptAction
from protocol.reference import ReferenceFace, ReferenceFaceRequest
from protocol.signed import Payload, SignedDocument
from protocol.subject import ForwardAck, ForwardedRequest, MatchFeedback
from protocol.sync import LogNotice, LogPage, LogRequest, ReceiptAck, ReceiptDelivery
from protocol.treehead import TreeHead

CLOCK = datetime(2026, 11, 1, 9, 0, 0, tzinfo=UTC)
NODE_SEED = bytes([0x11]) * 32
SALT = bytes([0x22]) * 32


def node_key() -> SigningKey:
    return SigningKey(NODE_SEED)


def sample_embedding(dimension: int = 512) -> Embedding:
    """Integer-derived values, normalised with correctly rounded Python arithmetic (portable bits)."""
    values = [float((i * 37) % 101 - 50) for i in range(dimension)]
    norm = math.sqrt(math.fsum(v * v for v in values))
    return Embedding(np.array([v / norm for v in values], dtype="<f4").tobytes())


def signed_vector(
    description: str, signed_payload: Payload, keys: list[tuple[bytes, SigningKey]], **extra: Any
) -> dict[str, Any]:
    doc = SignedDocument(signed_payload)
    for _, key in keys:
        doc.sign(key)
    return {
        "description": description,
        "signer": SIGNERS[keys[0][0]],
        "signer_seeds_hex": [seed.hex() for seed, _ in keys],
        "keyids": [key.keyid for _, key in keys],
        "signed_sha256": sha256_hex(doc.signed_bytes()),
        "document": doc.to_dict(),
        **extra,
    }


def sample_entry() -> WatchlistEntry:
    embedding = sample_embedding()
    return WatchlistEntry(
        entry_id="ent-0000000000000001",
        owner="chain-a",
        version=1,
        category="shoplifting",
        evidence=Evidence("police-report", "TKY-2026-000123"),
        incident_date=date(2026, 10, 30),
        site="shibuya-01",
        model_id="buffalo_s/w600k_mbf",
        embedding_commitment=commit(SALT, embedding.raw),
        registered_at=CLOCK,
        expires_at=CLOCK + timedelta(days=180),
        registrar="acct-registrar-01",
        officer="acct-officer-01",
        embedding=embedding,
        embedding_salt=SALT,
    )


def entry_vector() -> dict[str, Any]:
    entry = sample_entry()
    assert entry.embedding is not None
    return signed_vector(
        "A watchlist entry signed by its owner node. The embedding and its salt are local fields: "
        "they open embedding_commitment and are never sent.",
        entry,
        [(NODE_SEED, node_key())],
        local={"embedding": entry.embedding.to_str(), "embedding_salt": b64url_encode(SALT)},
    )


MEMBER_SEED = bytes([0x33]) * 32
ORG_SEEDS = [bytes([0x50 + i]) * 32 for i in range(3)]
ORG_WITNESS_SEED = b"\x77" * 32
"""The organisation's online witness key (``policy.witness.organisation``), never a manifest key."""
SENDER_BOX_SEED = bytes([0x12]) * 32
RECIPIENT_BOX_SEED = bytes([0x34]) * 32
BOX_NONCE = bytes([0x56]) * 24
VECTOR_KEYS = {
    "chain-a": (NODE_SEED, RECIPIENT_BOX_SEED),
    "chain-b": (MEMBER_SEED, SENDER_BOX_SEED),
}
"""Each member's Ed25519 seed and raw X25519 secret key: the keys the vector manifest lists."""
SIGNERS = {
    NODE_SEED: "chain-a",
    MEMBER_SEED: "chain-b",
    **{seed: "organisation" for seed in ORG_SEEDS},
    ORG_WITNESS_SEED: "organisation-witness",
}
"""Who signs with each seed: a member's node id (its key is in the vector manifest) or the organisation."""


def signed_entry_doc() -> SignedDocument[WatchlistEntry]:
    doc = SignedDocument(sample_entry())
    doc.sign(node_key())
    return doc


def registration_event() -> tuple[EntryEvent, EventPayload]:
    return EntryEvent.create(
        entry=signed_entry_doc(),
        salt=bytes([0x44]) * 32,
        event_id="evt-0000000000000001",
        owner="chain-a",
        kind=EventKind.REGISTERED,
        entry_id="ent-0000000000000001",
        entry_version=1,
        reason=EventReason.REGISTRATION,
        occurred_at=CLOCK,
        actor="acct-officer-01",
    )


def deletion_event() -> tuple[EntryEvent, EventPayload]:
    """The deletion of the registered entry: the second event of chain-a's log."""
    return EntryEvent.create(
        entry=None,
        salt=bytes([0x45]) * 32,
        event_id="evt-0000000000000002",
        owner="chain-a",
        kind=EventKind.DELETED,
        entry_id="ent-0000000000000001",
        entry_version=1,
        reason=EventReason.DATA_SUBJECT_REQUEST,
        occurred_at=CLOCK + timedelta(seconds=1),
        actor="acct-officer-01",
    )


def signed_by_node(payload: Payload) -> SignedDocument[Any]:
    doc: SignedDocument[Any] = SignedDocument(payload)
    doc.sign(node_key())
    return doc


def event_vector() -> dict[str, Any]:
    event, payload = registration_event()
    return signed_vector(
        "A registration event. The payload (salt and signed entry) is erasable; the event commits to it.",
        event,
        [(NODE_SEED, node_key())],
        payload=payload.to_dict(),
    )


def deletion_event_vector() -> dict[str, Any]:
    event, payload = deletion_event()
    return signed_vector(
        "The deletion of that entry (a data-subject request): entry_version is the entry's current "
        "version (a deletion creates none), and the payload's entry is null, so payload_commitment is "
        "SHA-256(salt || JCS(null)) = SHA-256(salt || 'null'); commitment_input_hex is that input.",
        event,
        [(NODE_SEED, node_key())],
        payload=payload.to_dict(),
        commitment_input_hex=(payload.salt + payload.body_bytes()).hex(),
    )


def deletion_receipt() -> DeletionReceipt:
    return DeletionReceipt(
        owner="chain-a",
        member="chain-b",
        event_id="evt-0000000000000002",
        entry_id="ent-0000000000000001",
        kind=EventKind.DELETED,
        tree_size=2,
        root_hash=chain_a_log()[1].root(2),
        applied_at=CLOCK + timedelta(seconds=2),
        action=ReceiptAction.PURGED,
    )


def receipt_vector() -> dict[str, Any]:
    return signed_vector(
        "chain-b confirms it purged what it held of a deleted entry, naming the checkpoint of chain-a's "
        "log it had verified when it applied the deletion: size 2 and the root of the log-page and "
        "tree-head vectors.",
        deletion_receipt(),
        [(MEMBER_SEED, SigningKey(MEMBER_SEED))],
    )


def query_request() -> QueryRequest:
    return QueryRequest(
        query_id="qry-0000000000000001", model_id="buffalo_s/w600k_mbf", embeddings=[sample_embedding()]
    )


def query_request_vector() -> dict[str, Any]:
    return signed_vector(
        "A plain-mode query (carried inside a sealed peer message; signed here only to pin its bytes).",
        query_request(),
        [(MEMBER_SEED, SigningKey(MEMBER_SEED))],
    )


def query_response_vector() -> dict[str, Any]:
    response = QueryResponse(
        query_id="qry-0000000000000001",
        responder="chain-a",
        threshold=0.45,
        matches=[QueryMatch(query_index=0, band="strong", entry=signed_entry_doc())],
    )
    return signed_vector(
        "An answer naming one entry above the threshold, with the owner's signed entry.",
        response,
        [(NODE_SEED, node_key())],
    )


def peer_message() -> PeerMessage:
    return PeerMessage(
        sender="chain-b",
        recipient="chain-a",
        manifest_version=1,
        purpose="crime-prevention",
        issued_at=CLOCK,
        nonce=bytes([0x77]) * 16,
        body_type="query-request",
        body=query_request().to_dict(),
    )


def peer_message_vector() -> dict[str, Any]:
    vector = signed_vector(
        "A signed peer message from chain-b to chain-a, and the same message sealed with crypto_box.",
        peer_message(),
        [(MEMBER_SEED, SigningKey(MEMBER_SEED))],
    )
    doc = SignedDocument(peer_message())
    doc.sign(SigningKey(MEMBER_SEED))
    sealed = seal(
        doc, EncryptionKey(SENDER_BOX_SEED), EncryptionKey(RECIPIENT_BOX_SEED).public, nonce=BOX_NONCE
    )
    vector["sealed"] = sealed.to_dict()
    vector["sender_box_seed_hex"] = SENDER_BOX_SEED.hex()
    vector["recipient_box_seed_hex"] = RECIPIENT_BOX_SEED.hex()
    return vector


AUDIT_GENESIS = "0" * 64


def audit_records() -> list[dict[str, Any]]:
    """chain-a's audit chain up to the deletion: proposal, approval (the registration), deletion."""
    steps = [
        (CLOCK - timedelta(minutes=5), "acct-registrar-01", "entry.propose"),
        (CLOCK, "acct-officer-01", "entry.approve"),
        (CLOCK + timedelta(seconds=1), "acct-officer-01", "entry.deleted"),
    ]
    records: list[dict[str, Any]] = []
    previous = AUDIT_GENESIS
    for seq, (at, actor, action) in enumerate(steps):
        record = {
            "seq": seq,
            "at": format_time(at),
            "actor": actor,
            "action": action,
            "target": "ent-0000000000000001",
            "outcome": "ok",
            "request_hash": "",
            "prev_hash": previous,
        }
        record["record_hash"] = previous = sha256_hex(canonical_bytes(record))
        records.append(record)
    return records


def chain_a_log() -> tuple[list[SignedDocument[Any]], MerkleLog]:
    """chain-a's log: the registration and its deletion, the leaves of both the page and the head."""
    events = [signed_by_node(registration_event()[0]), signed_by_node(deletion_event()[0])]
    log = MerkleLog()
    for event in events:
        log.append(log_leaf_bytes(event))
    return events, log


def tree_head_vector() -> dict[str, Any]:
    _, log = chain_a_log()
    records = audit_records()
    head = TreeHead(
        log_id="chain-a",
        tree_size=log.size,
        root_hash=log.root(),
        timestamp=CLOCK + timedelta(seconds=1),
        audit_head=bytes.fromhex(records[-1]["record_hash"]),
    )
    return signed_vector(
        "chain-a's published head (GET /v1/log/head) after its two events: the root is the log-page "
        "vector's (same leaves, same size, so the same root), and audit_head is the record_hash of the "
        "newest audit record when the head was signed, here the deletion's (the records are listed, "
        "as GET /v1/audit serves them).",
        head,
        [(NODE_SEED, node_key())],
        audit_records=records,
    )


def manifest_vector() -> dict[str, Any]:
    import tomllib
    from pathlib import Path

    from governance.description import manifest_from_description

    description = tomllib.loads(
        (Path(__file__).resolve().parents[2] / "docs" / "examples" / "group.toml").read_text("utf-8")
    )
    for member in description["joint_use"]["members"]:
        signing_seed, box_secret = VECTOR_KEYS[member["node_id"]]
        member["signing_key"] = SigningKey(signing_seed).public.to_str()
        member["encryption_key"] = EncryptionKey(box_secret).public.to_str()
    description["policy"]["witness"] = {  # the example's commented [policy.witness]
        "required": 1,
        "organisation": {"key": SigningKey(ORG_WITNESS_SEED).public.to_str(), "endpoint": "https://org.example/"},
    }
    org = [SigningKey(seed) for seed in ORG_SEEDS]
    manifest = manifest_from_description(description, [k.public for k in org], 2, CLOCK)
    return signed_vector(
        "Version 1 of the example group's manifest (docs/examples/group.toml with the members' keys "
        "replaced by the vector keys: chain-a signs with seed 11..11 and opens boxes with 34..34, "
        "chain-b signs with 33..33 and opens boxes with 12..12, and its commented policy.witness set: "
        "one cosignature required on a member's checkpoint, the organisation's witness cosigning with "
        "seed 77..77 besides the members), signed by two of the "
        "organisation's three keys. Every other vector verifies under the key this manifest gives its signer.",
        manifest,
        [(ORG_SEEDS[0], org[0]), (ORG_SEEDS[2], org[2])],
    )


def log_request_vector() -> dict[str, Any]:
    return signed_vector(
        "chain-b asks chain-a for its events from index 0 on (carried inside a sealed peer message "
        "under purpose log-sync; signed here only to pin its bytes).",
        LogRequest(after=0, limit=500),
        [(MEMBER_SEED, SigningKey(MEMBER_SEED))],
    )


def log_page() -> tuple[LogPage, list[bytes]]:
    """chain-a's answer: its two events and the head it signs for exactly their end (signed per page,
    without ``audit_head``, as ``node.federation`` does)."""
    events, log = chain_a_log()
    head = TreeHead(
        log_id="chain-a", tree_size=log.size, root_hash=log.root(), timestamp=CLOCK + timedelta(seconds=1)
    )
    page = LogPage(first=0, events=events, head=signed_by_node(head), latest_size=log.size)
    return page, [leaf_hash(log_leaf_bytes(event)) for event in events]


def log_page_vector() -> dict[str, Any]:
    page, hashes = log_page()
    return signed_vector(
        "chain-a's page of events 0..2 (a registration and its deletion) with its signed head for size 2; "
        "the head's root_hash is the RFC 9162 root over the leaves (the canonical signed events), "
        "whose leaf hashes are listed.",
        page,
        [(NODE_SEED, node_key())],
        leaf_hashes_hex=[h.hex() for h in hashes],
    )


def log_notice_vector() -> dict[str, Any]:
    return signed_vector(
        "chain-a tells a follower its log now has 2 events (a hint to pull now; it proves nothing).",
        LogNotice(tree_size=2),
        [(NODE_SEED, node_key())],
    )


def receipt_delivery_vector() -> dict[str, Any]:
    receipt: SignedDocument[DeletionReceipt] = SignedDocument(deletion_receipt())
    receipt.sign(SigningKey(MEMBER_SEED))
    return signed_vector(
        "chain-b delivers to chain-a its signed receipt for the deletion event.",
        ReceiptDelivery(receipts=[receipt]),
        [(MEMBER_SEED, SigningKey(MEMBER_SEED))],
    )


def receipt_ack_vector() -> dict[str, Any]:
    return signed_vector(
        "chain-a acknowledges that it now holds chain-b's receipt for the deletion event.",
        ReceiptAck(member="chain-b", event_ids=["evt-0000000000000002"]),
        [(NODE_SEED, node_key())],
    )


def subject_forward_vector() -> dict[str, Any]:
    return signed_vector(
        "chain-b forwards a person's deletion request about chain-a's entry to chain-a (purpose "
        "data-subject-request); no photo or embedding travels, only the entry and the request.",
        ForwardedRequest(
            origin="chain-b",
            request_id="req-0000000000000001",
            kind="deletion",
            entry_id="ent-0000000000000001",
            entry_version=1,
            identity_check="drivers-licence",
        ),
        [(MEMBER_SEED, SigningKey(MEMBER_SEED))],
    )


def subject_ack_vector() -> dict[str, Any]:
    return signed_vector(
        "chain-a opened request req-0000000000000002 for its officer from chain-b's forward.",
        ForwardAck(request_id="req-0000000000000001", owner_request_id="req-0000000000000002"),
        [(NODE_SEED, node_key())],
    )


def match_feedback_vector() -> dict[str, Any]:
    return signed_vector(
        "chain-b's operator judged an alert on chain-a's entry a false match; chain-b tells chain-a "
        "(purpose crime-prevention). The owner answers with the same body signed by itself.",
        MatchFeedback(
            origin="chain-b",
            alert_id="alr-0000000000000001",
            entry_id="ent-0000000000000001",
            entry_version=1,
            outcome="false-match",
        ),
        [(MEMBER_SEED, SigningKey(MEMBER_SEED))],
    )


def reference_request_vector() -> dict[str, Any]:
    return signed_vector(
        "chain-b's operator opened alert alr-0000000000000001 on chain-a's entry: chain-b asks chain-a for "
        "the registered face crop (POST /v1/peer/reference-face, purpose crime-prevention).",
        ReferenceFaceRequest(alert_id="alr-0000000000000001", entry_id="ent-0000000000000001", entry_version=1),
        [(MEMBER_SEED, SigningKey(MEMBER_SEED))],
    )


REFERENCE_JPEG = bytes.fromhex("ffd8ffe000104a46494600010100000100010000ffd9")
"""A JPEG's first and last markers with nothing between: stands in for the 112x112 face crop."""


def reference_face_vector() -> dict[str, Any]:
    return signed_vector(
        "chain-a's answer: the registered face crop (JPEG bytes, base64url) of its live entry, signed by "
        "chain-a and sealed to chain-b; the manifest lists face-image among the jointly used items.",
        ReferenceFace(entry_id="ent-0000000000000001", entry_version=1, face_image_jpeg=REFERENCE_JPEG),
        [(NODE_SEED, node_key())],
    )


def extraction_report_vector() -> dict[str, Any]:
    return signed_vector(
        "chain-a refused a query from chain-b that would have named its entry more often than the group "
        "allows in 24 hours, and tells the organisation (POST /v1/reports on gov serve).",
        ExtractionReport(
            reporter="chain-a",
            suspect="chain-b",
            reason="hit_budget_exceeded",
            entry_id="ent-0000000000000001",
            observed_at=CLOCK,
        ),
        [(NODE_SEED, node_key())],
    )


VECTOR_GROUP = "jp-retail-watch"
"""The example group's id (docs/examples/group.toml), which the manifest vector carries."""


def complaint_referral_vector() -> dict[str, Any]:
    return signed_vector(
        "The organisation refers a public complaint about chain-b to chain-b (POST "
        "/v1/org/complaint-referral on chain-b's node), asking for an answer within 14 days; signed "
        "with its online witness key (seed 77..77), the key policy.witness.organisation of the "
        "manifest vector names. The complainant's contact is not sent.",
        ComplaintReferral(
            group_id=VECTOR_GROUP,
            complaint_id="cmp-0123456789abcdef0123",
            member="chain-b",
            category="misidentification",
            summary="I was stopped at the entrance of your store and told I was on a list; I have never stolen anything.",
            received_at=CLOCK,
            answer_by=CLOCK + timedelta(days=15),
            referred_at=CLOCK + timedelta(days=1),
            manifest_version=1,
        ),
        [(ORG_WITNESS_SEED, SigningKey(ORG_WITNESS_SEED))],
    )


def complaint_answer_vector() -> dict[str, Any]:
    return signed_vector(
        "chain-b answers the referred complaint (POST /v1/complaint-answers on gov serve): it found the "
        "alert was a false match, deleted nothing of the complainant's and apologised; signed by "
        "chain-b's signing key (seed 33..33) in the manifest vector.",
        ComplaintAnswer(
            group_id=VECTOR_GROUP,
            complaint_id="cmp-0123456789abcdef0123",
            member="chain-b",
            outcome="resolved",
            answer="The alert was judged a false match the same day; the store manager apologised by phone.",
            answered_at=CLOCK + timedelta(days=3),
        ),
        [(MEMBER_SEED, SigningKey(MEMBER_SEED))],
    )


def transparency_report_vector() -> dict[str, Any]:
    from governance.report import ReportScope, TransparencyReport, parse_period

    report = TransparencyReport.empty(
        scope=ReportScope.NODE,
        issuer="chain-b",
        group_id=VECTOR_GROUP,
        period=parse_period("2026-Q4"),
        generated_at=datetime(2027, 1, 2, 9, 0, tzinfo=UTC),
        manifest_version=1,
        members=["chain-b"],
    )
    report.entries.proposed, report.entries.approved, report.entries.active_at_end = 3, 2, 2
    report.entries.deleted = {"error": 1}
    report.entries.owed_receipts = {"chain-a": 1}
    report.queries.sent = {"crime-prevention": 40}
    report.queries.faces_sent = 52
    report.complaints.received = {"misidentification": 1}
    report.complaints.channels = {"organisation": 1}
    report.complaints.closed = {"resolved": 1}
    return signed_vector(
        "chain-b's transparency report for 2026-Q4, made after the quarter ended (so complete) and "
        "uploaded to the organisation's console: 3 proposals, 2 registered, one deleted as an error "
        "whose receipt chain-a still owed when the report was made (entries.owed_receipts, by member; "
        "absent in reports of nodes older than the field), 40 queries to the group, one complaint "
        "referred by the organisation and resolved. Signed by chain-b's key (seed 33..33).",
        report,
        [(MEMBER_SEED, SigningKey(MEMBER_SEED))],
    )


def fork_clearance_vector() -> dict[str, Any]:
    from governance.forkclear import ConsistencyStep, ForkClearance

    _, log = chain_a_log()
    return signed_vector(
        "The organisation clears chain-a's fork flag: chain-b had verified chain-a's head of size 1 "
        "(its registration) and reported a second root for that size (fork report "
        "0123456789abcdef0123456789abcdef); chain-a restored honestly and its head of size 2 (the "
        "tree-head vector's root) extends that history, as the consistency proof from size 1 shows. "
        "Signed by two of the three organisation keys of the vector manifest (its threshold).",
        ForkClearance(
            member="chain-a",
            tree_size=log.size,
            root_hash=log.root(),
            reports=("0123456789abcdef0123456789abcdef",),
            consistency=(ConsistencyStep(1, log.root(1), tuple(log.consistency_proof(1, 2))),),
            decided_at=CLOCK + timedelta(days=1),
            expires=CLOCK + timedelta(days=31),
            manifest_version=1,
        ),
        [(ORG_SEEDS[0], SigningKey(ORG_SEEDS[0])), (ORG_SEEDS[1], SigningKey(ORG_SEEDS[1]))],
    )


def provision_vector() -> dict[str, Any]:
    details = {
        "entry_ids": ["ent-0000000000000001"],
        "items": ["incident-category", "registration-period"],
        "reference": "SHIBUYA-2026-0456",
        "requester": "Shibuya Police Station",
    }
    salt = bytes([0x46]) * 32
    record = ThirdPartyProvision(
        record_id="prv-0000000000000001",
        owner="chain-a",
        legal_basis="ccp-197-2-inquiry",
        requester_kind="police",
        occurred_at=CLOCK,
        actor="acct-officer-01",
        entry_count=1,
        items=["incident-category", "registration-period"],
        details_commitment=commit(salt, canonical_bytes(details)),
    )
    vector = signed_vector(
        "chain-a provided one entry's category and dates to the police under an inquiry (Code of Criminal "
        "Procedure Art. 197-2). The log leaf commits to the details, which stay with chain-a.",
        record,
        [(NODE_SEED, node_key())],
    )
    vector["local"] = {"details": details, "salt": b64url_encode(salt)}
    return vector


def _blob(label: str, size: int) -> bytes:
    """Deterministic stand-in bytes: format vectors pin the envelope, not SEAL's own encoding."""
    import hashlib

    out = b""
    while len(out) < size:
        out += hashlib.sha256(f"{label}{len(out)}".encode()).digest()
    return out[:size]


def evaluation_keys_vector() -> dict[str, Any]:
    from protocol.he_params import HEParameters, key_id_of
    from protocol.private_query import EvaluationKeys

    galois = _blob("galois", 96)
    keys = EvaluationKeys(
        owner="chain-b",
        key_id=key_id_of(galois),
        params=HEParameters(),
        not_after=CLOCK + timedelta(days=1),
        galois_keys=galois,
    )
    return signed_vector(
        "A member's CKKS evaluation (Galois) keys for one epoch; key_id is the SHA-256 of the keys "
        "(real keys are about 790 KB of SEAL's serialisation).",
        keys,
        [(MEMBER_SEED, SigningKey(MEMBER_SEED))],
    )


def evaluation_keys_ack_vector() -> dict[str, Any]:
    from protocol.he_params import key_id_of
    from protocol.private_query import EvaluationKeysAck

    ack = EvaluationKeysAck(key_id=key_id_of(_blob("galois", 96)), not_after=CLOCK + timedelta(days=1))
    return signed_vector("The peer holds the keys until not_after.", ack, [(NODE_SEED, node_key())])


def private_query_vector() -> dict[str, Any]:
    from protocol.he_params import key_id_of
    from protocol.private_query import PrivateQuery

    query = PrivateQuery(
        query_id="qry-0000000000000002",
        model_id="buffalo_s/w600k_mbf",
        key_id=key_id_of(_blob("galois", 96)),
        ciphertexts=[_blob("query", 64)],
    )
    return signed_vector(
        "Round 1 of a private query: one CKKS ciphertext per face (about 66 KB each in practice).",
        query,
        [(MEMBER_SEED, SigningKey(MEMBER_SEED))],
    )


def private_scores_vector() -> dict[str, Any]:
    from protocol.private_query import PrivateScores

    scores = PrivateScores(
        query_id="qry-0000000000000002",
        responder="chain-a",
        build_id="bld-00000000000000aa",
        results=[[_blob("scores", 64)]],
    )
    return signed_vector(
        "Round 1's answer: per face, masked encrypted scores for every slot of the shuffled gallery.",
        scores,
        [(NODE_SEED, node_key())],
    )


def private_reveal_vector() -> dict[str, Any]:
    from protocol.private_query import Candidate, RevealRequest

    reveal = RevealRequest(
        query_id="qry-0000000000000002",
        build_id="bld-00000000000000aa",
        model_id="buffalo_s/w600k_mbf",
        candidates=[Candidate(query_index=0, position=1234, embedding=sample_embedding())],
    )
    return signed_vector(
        "Round 2: the face whose decrypted value said match, revealed for the peer to check and answer.",
        reveal,
        [(MEMBER_SEED, SigningKey(MEMBER_SEED))],
    )


def _payload_types() -> dict[str, type[Payload]]:
    from governance.manifest import Manifest

    return {
        "he-evaluation-keys": _private_types()["he-evaluation-keys"],
        "he-evaluation-keys-ack": _private_types()["he-evaluation-keys-ack"],
        "private-query-request": _private_types()["private-query-request"],
        "private-query-response": _private_types()["private-query-response"],
        "private-reveal-request": _private_types()["private-reveal-request"],
        "watchlist-entry": WatchlistEntry,
        "entry-event": EntryEvent,
        "entry-event-deletion": EntryEvent,
        "deletion-receipt": DeletionReceipt,
        "query-request": QueryRequest,
        "query-response": QueryResponse,
        "peer-message": PeerMessage,
        "tree-head": TreeHead,
        "governance-manifest": Manifest,
        "log-request": LogRequest,
        "log-page": LogPage,
        "log-notice": LogNotice,
        "receipt-delivery": ReceiptDelivery,
        "receipt-ack": ReceiptAck,
        "subject-request-forward": ForwardedRequest,
        "subject-request-ack": ForwardAck,
        "match-feedback": MatchFeedback,
        "reference-face-request": ReferenceFaceRequest,
        "reference-face": ReferenceFace,
        "third-party-provision": ThirdPartyProvision,
        "extraction-report": ExtractionReport,
        "complaint-referral": ComplaintReferral,
        "complaint-answer": ComplaintAnswer,
        "fork-clearance": _fork_clearance_type(),
        "transparency-report": _report_type(),
    }


def _report_type() -> type[Payload]:
    from governance.report import TransparencyReport

    return TransparencyReport


def _fork_clearance_type() -> type[Payload]:
    from governance.forkclear import ForkClearance

    return ForkClearance


VECTORS: dict[str, Callable[[], Any]] = {
    "watchlist-entry": entry_vector,
    "entry-event": event_vector,
    "entry-event-deletion": deletion_event_vector,
    "deletion-receipt": receipt_vector,
    "query-request": query_request_vector,
    "query-response": query_response_vector,
    "peer-message": peer_message_vector,
    "tree-head": tree_head_vector,
    "governance-manifest": manifest_vector,
    "log-request": log_request_vector,
    "log-page": log_page_vector,
    "log-notice": log_notice_vector,
    "receipt-delivery": receipt_delivery_vector,
    "receipt-ack": receipt_ack_vector,
    "subject-request-forward": subject_forward_vector,
    "subject-request-ack": subject_ack_vector,
    "match-feedback": match_feedback_vector,
    "reference-face-request": reference_request_vector,
    "reference-face": reference_face_vector,
    "extraction-report": extraction_report_vector,
    "complaint-referral": complaint_referral_vector,
    "complaint-answer": complaint_answer_vector,
    "fork-clearance": fork_clearance_vector,
    "transparency-report": transparency_report_vector,
    "third-party-provision": provision_vector,
    "he-evaluation-keys": evaluation_keys_vector,
    "he-evaluation-keys-ack": evaluation_keys_ack_vector,
    "private-query-request": private_query_vector,
    "private-query-response": private_scores_vector,
    "private-reveal-request": private_reveal_vector,
}


def _private_types() -> dict[str, type[Payload]]:
    from protocol.private_query import (
        EvaluationKeys,
        EvaluationKeysAck,
        PrivateQuery,
        PrivateScores,
        RevealRequest,
    )

    return {
        p.TYPE: p for p in (EvaluationKeys, EvaluationKeysAck, PrivateQuery, PrivateScores, RevealRequest)
    }


PAYLOAD_TYPES: dict[str, type[Payload]] = _payload_types()
