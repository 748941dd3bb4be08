"""The node's self-check: does its own store still agree with the log it signed?

A node's database can be edited behind its back (an entry's sealed embedding swapped, an event
row rewritten, a leaf deleted). Peers notice when they next sync the log; the node itself would
go on matching against whatever the tables hold. This module checks the store against the
newest tree head the node signed, whose signature nobody can forge without the node's key:

1. the newest stored tree head is signed by this node's key, for this node's log, and (while the
   node runs) is not smaller than, nor a fork of, the head verified before;
2. every leaf from the last verified size on is present (indexes without a gap), its stored hash
   is the hash of its bytes, it is a log event signed by this node's key, and its ``event_id``,
   ``entry_id`` and ``kind`` columns say what the signed event says;
3. the leaves hash to the signed root (RFC 9162), computed from the verified prefix's right edge
   (``Frontier``: O(log n) subtree hashes) and the new leaves, so a check hashes only the leaves
   appended since the last one; the log as the node serves it (``served``) still has the verified
   root at the verified size and proves the new head consistent with it (when it does not, or the
   head shrank, the check goes on from leaf 0 to name the leaf that changed);
4. every entry agrees with the leaves that commit to it: an active entry's latest event is its
   version; that event's sealed payload opens its commitment; the payload's signed entry is the
   stored signed entry (the same canonical bytes), and its columns; the sealed embedding and salt open the
   signed entry's embedding commitment. A deleted, expired, rejected or proposed entry has the
   events (or none) its status implies and holds nothing the log says was erased. An entry row
   is read every time but checked in depth only when it (or its latest event) changed since it
   last passed.

Leaves beyond the newest head (appended, head not yet signed: a crash between the two) are
checked as in step 2, signature included, and not kept as verified. The verified checkpoint
lives in memory only: one kept in the same database could be edited by the same hand, so a
start recomputes everything from the leaves against the signed head. What this cannot catch
(someone holding the node's signing key; a whole older database put back) is in
``docs/threat-model.md``.

``StoreChecker.check`` returns an ``IntegrityResult``; ``IntegrityState`` holds the verdict the
node acts on (the match index refuses while it is failed, ``IntegrityFailure``, HTTP 503).
"""

from __future__ import annotations

import contextlib
import hashlib
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func
from sqlalchemy import select as columns_of
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from node.records.record_keys import RecordKeyDestroyed
from node.records.vault import Vault
from node.storage.models import EntryRow, EventPayloadRow, LogLeaf, TreeHeadRow
from protocol.canonical import canonical_bytes, parse_json
from protocol.commitment import commit
from protocol.errors import WatchnetError
from protocol.events import CARRIES_ENTRY, EntryEvent, EventPayload
from protocol.fields import format_time
from protocol.keys import PublicSigningKey
from protocol.merkle import EMPTY_ROOT, MerkleLog, leaf_hash, node_hash, verify_consistency
from protocol.provision import ThirdPartyProvision
from protocol.signed import SignedDocument
from protocol.sync import parse_log_event
from protocol.treehead import TreeHead

__all__ = [
    "CHECKING",
    "FAILED",
    "NEXT_STEP",
    "OK",
    "UNCHECKED",
    "Checkpoint",
    "Disagreement",
    "Frontier",
    "IntegrityFailure",
    "IntegrityResult",
    "IntegrityState",
    "LeafFacts",
    "StoreChecker",
    "StoreUnverified",
]

UNCHECKED, CHECKING, OK, FAILED = "unchecked", "checking", "ok", "failed"
"""``unchecked``: no check was ever started in this process (a CLI command); ``checking``: the
first check is running (matching refused until it ends); then ``ok`` or ``failed``."""

PREFIX_HEX = 12
"""How much of a hash a disagreement shows: enough to compare by eye, never a whole value."""
MAX_LISTED = 20
"""Disagreements kept per check; the rest are only counted."""
STREAM = 2000
"""Rows read from the database at a time."""
IN_CHUNK = 500
"""Event payloads read per ``IN (...)`` query."""

NEXT_STEP = (
    "restore the database from a backup taken before the change and restart the node; "
    "'watchnet audit verify --url URL --token AUDITOR_TOKEN' and the console's auditor pages "
    "show what the signed log holds, GET /v1/health this check"
)

# entry statuses, as node.records.registry writes them (it imports this module, not the reverse)
_ACTIVE, _PROPOSED, _REJECTED, _DELETED, _EXPIRED = "active", "proposed", "rejected", "deleted", "expired"
_LOST = "lost"
_CLOSING_KINDS = frozenset({"deleted", "expired"})
_ENTRY_KINDS = frozenset(k.value for k in CARRIES_ENTRY)


class IntegrityFailure(WatchnetError):
    """This node's own store disagrees with the log it signed: it answers no query until restored.

    The node's fault, not the asker's: mapped to HTTP 503 in ``node.http.api``.
    """

    code = "store_tampered"


class StoreUnverified(IntegrityFailure):
    """The first check of the store since the node started has not finished yet."""

    code = "store_unverified"


def _short(value: bytes | str | None) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, bytes):
        return value.hex()[:PREFIX_HEX]
    return value if len(value) <= 60 else value[:57] + "..."


@dataclass(frozen=True)
class Disagreement:
    """One thing the store holds that the signed log does not back: where, what, expected, found."""

    where: str
    what: str
    expected: bytes | str | None = None
    found: bytes | str | None = None
    entry_id: str | None = None

    def public(self) -> str:
        """The disagreement without the entry id (for ``/v1/health``, which anyone may read)."""
        text = f"{self.where}: {self.what}"
        if self.expected is not None or self.found is not None:
            text += f" (expected {_short(self.expected)}, found {_short(self.found)})"
        return text

    def __str__(self) -> str:
        if self.entry_id is None:
            return self.public()
        where = f"{self.where} (entry {self.entry_id})"
        return Disagreement(where, self.what, self.expected, self.found).public()


class Frontier:
    """The right edge of an RFC 9162 tree: the roots of its perfect subtrees, largest first.

    Appending a leaf merges equal-width subtrees; the root folds them from the right. This is
    the whole state needed to extend a verified tree without reading its leaves again.
    """

    def __init__(self, subtrees: Iterable[tuple[int, bytes]] = ()) -> None:
        self._subtrees = list(subtrees)
        self.size = sum(width for width, _ in self._subtrees)

    def copy(self) -> Frontier:
        return Frontier(self._subtrees)

    def append(self, digest: bytes) -> None:
        """Add the next leaf by its leaf hash."""
        width, value = 1, digest
        while self._subtrees and self._subtrees[-1][0] == width:
            _, left = self._subtrees.pop()
            width, value = width * 2, node_hash(left, value)
        self._subtrees.append((width, value))
        self.size += 1

    def root(self) -> bytes:
        if not self._subtrees:
            return EMPTY_ROOT
        value = self._subtrees[-1][1]
        for _, left in reversed(self._subtrees[:-1]):
            value = node_hash(left, value)
        return value


@dataclass(frozen=True)
class LeafFacts:
    """What a verified entry-event leaf says about its entry: the latest such leaf is authoritative."""

    index: int
    event_id: str
    kind: str
    version: int
    payload_commitment: bytes


@dataclass(frozen=True)
class Checkpoint:
    """A verified prefix of the log: ``size`` leaves hashing to ``root`` (a head this node signed)."""

    size: int
    root: bytes
    frontier: Frontier = field(repr=False)
    latest: dict[str, LeafFacts] = field(repr=False)
    """Per entry, the facts of its latest event among the verified leaves."""


@dataclass(frozen=True)
class IntegrityResult:
    """One check's outcome, and what it cost."""

    problems: tuple[Disagreement, ...]
    unlisted: int
    """Disagreements found beyond the ``MAX_LISTED`` kept."""
    head_size: int
    """The newest signed head's tree size (0 when there is none)."""
    checked_size: int
    """Leaves verified against a signed head (the checkpoint after this check)."""
    stored_size: int
    leaves_hashed: int
    entries_checked: int
    """Entries checked in depth (opened and compared with their commitments)."""
    entries_unchanged: int
    """Entries read and found unchanged since they last passed."""
    full: bool
    seconds: float
    prefix_changed: bool = False
    """An incremental check found the newest head or the verified prefix changed."""

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        if self.ok:
            return f"{self.checked_size} leaves and {self.entries_checked + self.entries_unchanged} entries agree"
        more = len(self.problems) - 1 + self.unlisted
        return f"{self.problems[0]}" + (f" (and {more} more)" if more else "")


class _Problems:
    def __init__(self) -> None:
        self.listed: list[Disagreement] = []
        self.unlisted = 0

    def add(self, problem: Disagreement) -> None:
        if len(self.listed) < MAX_LISTED:
            self.listed.append(problem)
        else:
            self.unlisted += 1

    def __len__(self) -> int:
        return len(self.listed) + self.unlisted


def _second(t: datetime | None) -> str | None:
    """A stored or signed time at the wire's precision (stored times may be naive UTC)."""
    if t is None:
        return None
    return format_time(t if t.tzinfo is not None else t.replace(tzinfo=UTC))


def _fingerprint(values: Iterable[Any]) -> bytes:
    digest = hashlib.sha256()
    for value in values:
        data = value if isinstance(value, bytes) else repr(value).encode("utf-8")
        digest.update(len(data).to_bytes(8, "big"))
        digest.update(data)
    return digest.digest()


_ENTRY_COLUMNS = (
    col(EntryRow.entry_id),
    col(EntryRow.version),
    col(EntryRow.status),
    col(EntryRow.category),
    col(EntryRow.site),
    col(EntryRow.evidence_kind),
    col(EntryRow.evidence_reference),
    col(EntryRow.incident_date),
    col(EntryRow.registrar),
    col(EntryRow.officer),
    col(EntryRow.registered_at),
    col(EntryRow.expires_at),
    col(EntryRow.signed_entry),
    col(EntryRow.embedding_ct),
    col(EntryRow.salt_ct),
)


class StoreChecker:
    """Checks one node's store against its signed log; remembers the verified prefix in memory.

    ``check()`` verifies only what was appended since the previous check (plus the cheap prefix
    checks of step 3 and the entry rows); ``check(full=True)`` starts again from leaf 0 and still
    compares with the prefix verified before. ``lock`` (the registry's write lock) is held for
    the check, so the leaves, heads and entries read belong to one state of the store.
    """

    def __init__(
        self,
        *,
        engine: Engine,
        node_id: str,
        key: PublicSigningKey,
        vault: Vault,
        served: MerkleLog | None = None,
        lock: threading.RLock | None = None,
    ) -> None:
        self._engine = engine
        self._node_id = node_id
        self._key = key
        self._vault = vault
        self._served = served
        self._lock = lock
        self._checkpoint: Checkpoint | None = None
        self._passed: dict[str, bytes] = {}
        """Per entry, the fingerprint of the row (and its latest event) when it last passed."""

    @property
    def checkpoint(self) -> Checkpoint | None:
        return self._checkpoint

    def check(self, *, full: bool = False) -> IntegrityResult:
        """Check the store; an incremental check that finds the head or the verified prefix
        changed goes on with a full one, which names the leaf that changed."""
        started = time.perf_counter()
        with self._lock if self._lock is not None else contextlib.nullcontext():
            result = self._check(full, started)
            if not full and result.prefix_changed:
                result = self._check(True, started)
        return result

    def _check(self, full: bool, started: float) -> IntegrityResult:
        problems = _Problems()
        previous = self._checkpoint
        if full:
            self._passed = {}
        base = None if full else previous
        head = self._read_head(problems)
        with Session(self._engine) as session:
            stored = int(session.exec(select(func.count()).select_from(LogLeaf)).one())
        if head is not None:
            self._compare_heads(previous, head, problems)
            if stored < head.tree_size:
                problems.add(
                    Disagreement(
                        f"tree head of size {head.tree_size}",
                        "leaf rows are missing",
                        expected=f"{head.tree_size} leaves",
                        found=f"{stored} stored",
                    )
                )
        if base is not None and base.size and self._served is not None and not problems:
            self._check_served(base, head, problems)
        prefix_changed = base is not None and len(problems) > 0
        checkpoint, latest, hashed = self._scan_leaves(base, previous, head, problems)
        if checkpoint is not None and not problems:
            self._checkpoint = checkpoint
        deep, unchanged = self._check_entries(latest, problems)
        return IntegrityResult(
            problems=tuple(problems.listed),
            unlisted=problems.unlisted,
            head_size=0 if head is None else head.tree_size,
            checked_size=0 if self._checkpoint is None else self._checkpoint.size,
            stored_size=stored,
            leaves_hashed=hashed,
            entries_checked=deep,
            entries_unchanged=unchanged,
            full=full or previous is None,
            seconds=time.perf_counter() - started,
            prefix_changed=prefix_changed,
        )

    # -- steps 1 and 3: the signed head, the verified prefix --------------------------------------

    def _read_head(self, problems: _Problems) -> TreeHead | None:
        with Session(self._engine) as session:
            row = session.exec(
                select(TreeHeadRow).order_by(col(TreeHeadRow.tree_size).desc()).limit(1)
            ).first()
        if row is None:
            return None
        where = f"tree head of size {row.tree_size}"
        try:
            doc = SignedDocument.from_dict(parse_json(row.signed), TreeHead)
            doc.verify([self._key])
        except WatchnetError as e:
            problems.add(Disagreement(where, f"not a tree head signed by this node's key ({e.code})"))
            return None
        head = doc.payload
        if head.log_id != self._node_id or head.tree_size != row.tree_size:
            problems.add(
                Disagreement(
                    where,
                    "the signed head is of another log or size",
                    expected=f"{self._node_id} size {row.tree_size}",
                    found=f"{head.log_id} size {head.tree_size}",
                )
            )
            return None
        return head

    def _compare_heads(self, previous: Checkpoint | None, head: TreeHead, problems: _Problems) -> None:
        if previous is None:
            return
        if head.tree_size < previous.size:
            problems.add(
                Disagreement(
                    "tree heads",
                    "the newest signed head is older than the one verified before (heads or leaves were removed)",
                    expected=f"size >= {previous.size}",
                    found=f"size {head.tree_size}",
                )
            )
        elif head.tree_size == previous.size and head.root_hash != previous.root:
            problems.add(
                Disagreement(
                    f"tree head of size {head.tree_size}",
                    "signed root differs from the root verified before",
                    expected=previous.root,
                    found=head.root_hash,
                )
            )

    def _check_served(self, base: Checkpoint, head: TreeHead | None, problems: _Problems) -> None:
        """The log as the node serves it (proofs to peers) keeps the verified prefix and extends it."""
        assert self._served is not None
        where = f"served log at size {base.size}"
        try:
            root = self._served.root(base.size)
            if root != base.root:
                problems.add(Disagreement(where, "root differs from the verified root", base.root, root))
                return
            if head is not None and head.tree_size > base.size:
                proof = self._served.consistency_proof(base.size, head.tree_size)
                verify_consistency(base.size, head.tree_size, base.root, head.root_hash, proof)
        except (WatchnetError, IndexError, ValueError) as e:
            problems.add(Disagreement(where, f"does not prove the signed head extends it ({e})"))

    # -- steps 2 and 3: the leaves ------------------------------------------------------------------

    def _scan_leaves(
        self,
        base: Checkpoint | None,
        previous: Checkpoint | None,
        head: TreeHead | None,
        problems: _Problems,
    ) -> tuple[Checkpoint | None, dict[str, LeafFacts], int]:
        start = 0 if base is None else base.size
        frontier = Frontier() if base is None else base.frontier.copy()
        latest = {} if base is None else dict(base.latest)
        tail: dict[str, LeafFacts] = {}
        head_size = 0 if head is None else head.tree_size
        expected, hashed = start, 0
        with Session(self._engine) as session:
            rows = session.connection().execute(
                columns_of(
                    col(LogLeaf.idx),
                    col(LogLeaf.event_id),
                    col(LogLeaf.entry_id),
                    col(LogLeaf.kind),
                    col(LogLeaf.leaf_hash),
                    col(LogLeaf.leaf),
                )
                .where(col(LogLeaf.idx) >= start)
                .order_by(col(LogLeaf.idx))
                .execution_options(yield_per=STREAM)
            )
            for index, event_id, entry_id, kind, stored_hash, leaf in rows:
                if index != expected:
                    problems.add(
                        Disagreement(
                            f"leaf {expected}",
                            "missing from the stored log",
                            expected="present",
                            found=f"leaf {index} next",
                        )
                    )
                    break
                expected += 1
                digest = leaf_hash(leaf)
                hashed += 1
                if digest != stored_hash:
                    problems.add(
                        Disagreement(
                            f"leaf {index}",
                            "stored leaf hash is not the hash of its bytes",
                            digest,
                            stored_hash,
                        )
                    )
                facts = self._check_leaf(index, (event_id, entry_id, kind), leaf, problems)
                if index < head_size:
                    frontier.append(digest)
                    if previous is not None and base is None and frontier.size == previous.size:
                        if frontier.root() != previous.root:
                            problems.add(
                                Disagreement(
                                    f"leaves 0-{previous.size - 1}",
                                    "no longer hash to the root verified before",
                                    previous.root,
                                    frontier.root(),
                                )
                            )
                    if facts is not None:
                        latest[facts[0]] = facts[1]
                elif facts is not None:
                    tail[facts[0]] = facts[1]
        checkpoint = None
        if head is not None and frontier.size == head_size:
            root = frontier.root()
            if root != head.root_hash:
                problems.add(
                    Disagreement(
                        f"tree head of size {head_size}",
                        "the stored leaves do not hash to the signed root",
                        head.root_hash,
                        root,
                    )
                )
            else:
                checkpoint = Checkpoint(head_size, root, frontier, latest)
        return checkpoint, {**latest, **tail}, hashed

    def _check_leaf(
        self, index: int, columns: tuple[str, str, str], leaf: bytes, problems: _Problems
    ) -> tuple[str, LeafFacts] | None:
        where = f"leaf {index}"
        try:
            doc = parse_log_event(parse_json(leaf))
            doc.verify([self._key])
        except WatchnetError as e:
            problems.add(Disagreement(where, f"not a log event signed by this node's key ({e.code})"))
            return None
        event = doc.payload
        if event.owner != self._node_id:
            problems.add(Disagreement(where, "the event is another node's", self._node_id, event.owner))
            return None
        if isinstance(event, EntryEvent):
            says = (event.event_id, event.entry_id, event.kind.value)
        elif isinstance(event, ThirdPartyProvision):
            says = (event.record_id, event.record_id, "provision")
        else:  # pragma: no cover  (parse_log_event knows only these two)
            problems.add(Disagreement(where, f"unexpected event type {type(event).__name__}"))
            return None
        differ = [
            name for name, a, b in zip(("event_id", "entry_id", "kind"), columns, says, strict=True) if a != b
        ]
        if differ:
            problems.add(Disagreement(where, f"column {', '.join(differ)} differs from the signed event"))
            return None
        if not isinstance(event, EntryEvent):
            return None
        return event.entry_id, LeafFacts(
            index, event.event_id, event.kind.value, event.entry_version, event.payload_commitment
        )

    # -- step 4: the entries ----------------------------------------------------------------------

    def _check_entries(self, latest: dict[str, LeafFacts], problems: _Problems) -> tuple[int, int]:
        with Session(self._engine) as session:
            rows = session.connection().execute(columns_of(*_ENTRY_COLUMNS)).all()
            wanted = [
                latest[r.entry_id].event_id for r in rows if r.status == _ACTIVE and r.entry_id in latest
            ]
            payloads: dict[str, bytes | None] = {}
            for i in range(0, len(wanted), IN_CHUNK):
                chunk = wanted[i : i + IN_CHUNK]
                payloads.update(
                    session.exec(
                        select(EventPayloadRow.event_id, EventPayloadRow.payload_ct).where(
                            col(EventPayloadRow.event_id).in_(chunk)
                        )
                    ).all()
                )
        held = {r.entry_id for r in rows}
        for entry_id, facts in latest.items():
            if entry_id not in held:
                problems.add(
                    Disagreement(
                        f"entry at leaf {facts.index}",
                        "the log records the entry, the entry table does not hold it",
                        expected=f"{facts.kind} v{facts.version}",
                        found="no row",
                        entry_id=entry_id,
                    )
                )
        deep = unchanged = 0
        for row in rows:
            found = latest.get(row.entry_id)
            payload_ct = None if found is None else payloads.get(found.event_id)
            fingerprint = _fingerprint([*row, found, payload_ct])
            if self._passed.get(row.entry_id) == fingerprint:
                unchanged += 1
                continue
            deep += 1
            before = len(problems)
            self._check_entry(row, found, payload_ct, problems)
            if len(problems) == before:
                self._passed[row.entry_id] = fingerprint
            else:
                self._passed.pop(row.entry_id, None)
        return deep, unchanged

    def _check_entry(
        self, row: Any, facts: LeafFacts | None, payload_ct: bytes | None, problems: _Problems
    ) -> None:
        entry_id, status = row.entry_id, row.status
        where = "entry" if facts is None else f"entry at leaf {facts.index}"

        def add(what: str, expected: bytes | str | None = None, found: bytes | str | None = None) -> None:
            problems.add(Disagreement(where, what, expected, found, entry_id=entry_id))

        if status in (_PROPOSED, _REJECTED):
            if facts is not None:
                add(
                    f"the entry is {status}, the log has an event for it",
                    "no event",
                    f"{facts.kind} v{facts.version}",
                )
            elif status == _REJECTED and (row.embedding_ct or row.salt_ct or row.signed_entry):
                add("a rejected entry still holds data erased at rejection")
            return
        if status in (_DELETED, _EXPIRED):
            if facts is None or facts.kind not in _CLOSING_KINDS:
                add(f"the entry is {status}, the log's latest event for it is not", status, _kind(facts))
            elif row.embedding_ct or row.salt_ct or row.signed_entry:
                add(f"the entry is {facts.kind} in the log but still holds its embedding or signed entry")
            return
        if status == _LOST:  # a restore could not recover its signed version (node.records.restore)
            if facts is None:
                add("the entry is lost, the log has no event for it", "an event", None)
            elif row.embedding_ct or row.salt_ct or row.signed_entry:
                add("a lost entry still holds its embedding or signed entry")
            return
        if status != _ACTIVE:
            add("unknown entry status", "active, proposed, rejected, deleted, expired or lost", status)
            return
        if facts is None or facts.kind not in _ENTRY_KINDS or facts.version != row.version:
            add(
                "the entry is active, the log's latest event for it is not its version",
                f"v{row.version}",
                _kind(facts),
            )
            return
        if payload_ct is None:
            add("the sealed payload of its latest event is missing", facts.payload_commitment, None)
            return
        try:
            payload = EventPayload.from_dict(
                parse_json(self._vault.open_record(entry_id, payload_ct, field=f"payload/{facts.event_id}"))
            )
        except RecordKeyDestroyed:
            return  # a closure decided, its write not landed yet: the entry is suppressed, not edited
        except WatchnetError as e:
            add(f"the sealed payload of its latest event does not open ({e.code})")
            return
        opened = payload.commitment()
        if opened != facts.payload_commitment or payload.entry is None:
            add("the event payload does not open the leaf's commitment", facts.payload_commitment, opened)
            return
        committed = hashlib.sha256(payload.body_bytes()).digest()
        try:
            stored = (
                None
                if row.signed_entry is None
                else hashlib.sha256(canonical_bytes(parse_json(row.signed_entry))).digest()
            )
        except WatchnetError:
            stored = hashlib.sha256(row.signed_entry.encode("utf-8")).digest()
        if stored != committed:
            add(
                "the stored signed entry is not the one its leaf committed to (hash of the signed entry)",
                committed,
                stored,
            )
            return
        entry = payload.entry.payload
        for name, found, expected in (
            ("version", row.version, entry.version),
            ("category", row.category, entry.category),
            ("site", row.site, entry.site),
            ("evidence_kind", row.evidence_kind, entry.evidence.kind),
            ("evidence_reference", row.evidence_reference or "", entry.evidence.reference),
            ("incident_date", row.incident_date, entry.incident_date.isoformat()),
            ("registrar", row.registrar, entry.registrar),
            ("officer", row.officer, entry.officer),
            ("registered_at", _second(row.registered_at), _second(entry.registered_at)),
            ("expires_at", _second(row.expires_at), _second(entry.expires_at)),
        ):
            if found != expected:
                add(f"column {name} differs from the signed entry", str(expected), str(found))
                return
        if row.embedding_ct is None or row.salt_ct is None:
            add("the active entry holds no sealed embedding", entry.embedding_commitment, None)
            return
        try:
            embedding = self._vault.open_record(entry_id, row.embedding_ct, field="embedding")
            salt = self._vault.open_record(entry_id, row.salt_ct, field="salt")
            opened = commit(salt, embedding)
        except (WatchnetError, ValueError) as e:
            add(f"the sealed embedding or salt does not open ({getattr(e, 'code', 'malformed')})")
            return
        if opened != entry.embedding_commitment:
            add(
                "the stored embedding does not open the signed entry's commitment",
                entry.embedding_commitment,
                opened,
            )


def _kind(facts: LeafFacts | None) -> str:
    return "no event" if facts is None else f"{facts.kind} v{facts.version}"


class IntegrityState:
    """The verdict the node acts on, shared by the scheduled check, the match index and health.

    ``require_intact`` is the chokepoint: the match index, private mode and the peer query path
    call it before answering, and it raises ``IntegrityFailure`` while the store is failed
    (``StoreUnverified`` while the first check runs).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.state = UNCHECKED
        self.result: IntegrityResult | None = None
        self.checked_at: datetime | None = None
        """When the last check ran to the end (the scheduled loop's last success)."""
        self.last_ok_at: datetime | None = None
        """When the store was last found to agree with the log."""
        self.failed_at: datetime | None = None
        self.check_errors = 0
        self.last_check_error: str | None = None
        self.running = False

    def begin(self) -> None:
        with self._lock:
            self.running = True
            if self.state == UNCHECKED:
                self.state = CHECKING

    def record(self, result: IntegrityResult, now: datetime) -> str | None:
        """Take a check's result; return ``failed``, ``changed`` (still failed, a new first
        disagreement), ``recovered`` or ``None`` (nothing to report)."""
        with self._lock:
            before, earlier = self.state, self.result
            self.running = False
            self.result, self.checked_at = result, now
            if result.ok:
                self.state, self.last_ok_at = OK, now
                return "recovered" if before == FAILED else None
            self.state = FAILED
            if before != FAILED:
                self.failed_at = now
                return "failed"
            if earlier is not None and earlier.problems[:1] != result.problems[:1]:
                return "changed"
            return None

    def record_error(self, error: BaseException) -> None:
        """A check that could not run to the end (the database unreachable, say): no verdict."""
        with self._lock:
            self.running = False
            self.check_errors += 1
            self.last_check_error = type(error).__name__

    def require_intact(self) -> None:
        state, result = self.state, self.result
        if state == FAILED and result is not None:
            found = format_time(self.failed_at) if self.failed_at else "?"
            raise IntegrityFailure(
                f"this node's store disagrees with the log it signed, found {found}: {result.summary()}. "
                f"It answers no query until that is put right: {NEXT_STEP}"
            )
        if state == CHECKING:
            raise StoreUnverified(
                "this node is checking its store against the log it signed since it started; "
                "it answers queries once that is done (GET /v1/health shows the check); retry shortly"
            )

    def to_dict(self) -> dict[str, Any]:
        """For ``/v1/health`` (public): the state, sizes, times and what disagreed, without entry ids."""
        with self._lock:
            result = self.result
            out: dict[str, Any] = {
                "state": self.state,
                "running": self.running,
                "checked_size": 0 if result is None else result.checked_size,
                "checked_at": None if self.checked_at is None else format_time(self.checked_at),
                "last_ok_at": None if self.last_ok_at is None else format_time(self.last_ok_at),
                "error": None,
                "check_errors": self.check_errors,
            }
            if result is not None:
                out["seconds"] = round(result.seconds, 3)
                if not result.ok:
                    out["error"] = result.problems[0].public()
                    out["disagreements"] = len(result.problems) + result.unlisted
                    out["next_step"] = NEXT_STEP
            if self.last_check_error is not None:
                out["last_check_error"] = self.last_check_error
            return out
