"""Drafts of the next manifest version, their signatures, and publishing one.

Admission, suspension, reinstatement and removal of a member never edit the manifest in force:
each starts as a draft of the next version (``governance.description``), kept in ``drafts/``
beside the manifest as the signed document collected so far (``draft-v<N>.json``, the file a key
holder downloads, signs offline with ``watchnet gov sign`` and uploads again) and a record of who
did what (``draft-v<N>.meta.json``). Only one draft is open at a time, since each is "the next
version". An upload is merged only if it signs exactly the draft's payload and each signature
verifies under a key of the draft or of the version in force; anything else is refused, typed.
Publishing checks the draft with the node's own trust rules (``governance.trust.verify_update``:
newer version, a threshold of the version in force's keys and of its own, not expired) and that
it was drafted on the version in force, then writes it over the manifest file atomically, where
``gov serve`` publishes it and members fetch it. Nothing here holds a signing key.
"""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from governance.description import add_member, renew, set_member_status
from governance.manifest import Manifest, Member, MemberStatus
from governance.trust import verify_update
from node.files import write_atomic
from node.records.registry import EntryNotFound, WrongState
from protocol.errors import MalformedError, RollbackError, VerificationError
from protocol.fields import format_time, parse_time
from protocol.signed import SignedDocument, VerificationResult

__all__ = [
    "ACTIONS",
    "Draft",
    "DraftOpen",
    "DraftStale",
    "DraftStore",
    "NoDraft",
    "SignatureMismatch",
    "Upload",
]

ACTIONS = ("admit", "suspend", "reinstate", "remove", "renew")
"""What a draft does: to a member (``admit`` adds one; the next three set its status), or to the
whole manifest (``renew``: a new expiry, counted from now)."""
MAX_RENEWAL = timedelta(days=730)
_STATUS = {
    "suspend": MemberStatus.SUSPENDED,
    "reinstate": MemberStatus.ACTIVE,
    "remove": MemberStatus.REMOVED,
}
_NAME = re.compile(r"draft-v([0-9]{1,9})\.json")
MAX_DRAFT_BYTES = 256 << 10
"""A draft or an uploaded signature file: a manifest of a few hundred members."""


class DraftOpen(WrongState):
    """Another draft is open: the next version can be drafted once, then published or withdrawn."""

    code = "draft_open"


class NoDraft(EntryNotFound):
    code = "no_draft"


class DraftStale(WrongState):
    """The draft was made on a version that is no longer in force."""

    code = "draft_stale"


class SignatureMismatch(VerificationError):
    """An uploaded file signs another manifest than the draft (an older download, another draft)."""

    code = "signature_mismatch"


@dataclass(frozen=True)
class Draft:
    """One draft: the document with the signatures collected so far and its record."""

    document: SignedDocument[Manifest]
    base_version: int
    action: str
    member: str
    drafted_by: str
    drafted_at: datetime
    signers: dict[str, dict[str, str]]
    """Per key id: ``by`` (the account that uploaded it) and ``at`` (when)."""
    state: str = "open"
    """``open``, ``published`` or ``withdrawn``."""
    closed_by: str = ""
    closed_at: datetime | None = None

    @property
    def version(self) -> int:
        return self.document.payload.version

    def signatures(self, in_force: Manifest) -> tuple[VerificationResult, VerificationResult]:
        """Valid signatures by the draft's own keys and by the keys of the version in force."""
        new = self.document.payload
        return (
            self.document.verification_result(new.role_keys(), new.manifest_role.threshold),
            self.document.verification_result(in_force.role_keys(), in_force.manifest_role.threshold),
        )

    def meta(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "base_version": self.base_version,
            "action": self.action,
            "member": self.member,
            "drafted_by": self.drafted_by,
            "drafted_at": format_time(self.drafted_at),
            "signers": self.signers,
            "state": self.state,
            "closed_by": self.closed_by,
            "closed_at": None if self.closed_at is None else format_time(self.closed_at),
        }


@dataclass(frozen=True)
class Upload:
    """What an uploaded signature file added: key ids newly collected, and those already held."""

    added: tuple[str, ...]
    already: tuple[str, ...]


def _pretty(document: dict[str, Any]) -> bytes:
    return (json.dumps(document, indent=2, ensure_ascii=False, sort_keys=True) + "\n").encode("utf-8")


class DraftStore:
    """``drafts/`` beside the manifest; the manifest file itself is written only by ``publish``."""

    def __init__(self, manifest_path: Path, directory: Path | None = None) -> None:
        self.manifest_path = manifest_path
        self.directory = directory or manifest_path.parent / "drafts"
        self._lock = threading.Lock()

    def _paths(self, version: int) -> tuple[Path, Path]:
        return self.directory / f"draft-v{version}.json", self.directory / f"draft-v{version}.meta.json"

    def _write(self, draft: Draft) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        document, meta = self._paths(draft.version)
        write_atomic(document, _pretty(draft.document.to_dict()))
        write_atomic(meta, _pretty(draft.meta()))

    def get(self, version: int) -> Draft:
        document_path, meta_path = self._paths(version)
        try:
            document = SignedDocument.from_bytes(document_path.read_bytes(), Manifest)
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except FileNotFoundError as e:
            raise NoDraft(f"no draft of manifest version {version}") from e
        closed = meta.get("closed_at")
        return Draft(
            document=document,
            base_version=int(meta["base_version"]),
            action=str(meta["action"]),
            member=str(meta["member"]),
            drafted_by=str(meta["drafted_by"]),
            drafted_at=parse_time(meta["drafted_at"], field="drafted_at"),
            signers=dict(meta.get("signers", {})),
            state=str(meta.get("state", "open")),
            closed_by=str(meta.get("closed_by", "")),
            closed_at=None if not closed else parse_time(closed, field="closed_at"),
        )

    def all(self) -> list[Draft]:
        """Every draft, newest version first."""
        if not self.directory.exists():
            return []
        versions = sorted(
            (int(m.group(1)) for p in self.directory.iterdir() if (m := _NAME.fullmatch(p.name))),
            reverse=True,
        )
        return [self.get(v) for v in versions]

    def open_draft(self) -> Draft | None:
        return next((d for d in self.all() if d.state == "open"), None)

    def create(
        self,
        in_force: Manifest,
        action: str,
        *,
        member: Member | None = None,
        node_id: str = "",
        valid_for: timedelta | None = None,
        by: str,
        now: datetime,
    ) -> Draft:
        """The next version of ``in_force`` with one membership change, unsigned.

        ``admit`` needs ``member``; ``renew`` needs ``valid_for`` (at most ``MAX_RENEWAL``); the other
        actions name an existing member by ``node_id``.
        Refused while another draft is open (``DraftOpen``) and for a change that changes nothing.
        """
        if action not in ACTIONS:
            raise MalformedError(f"draft action {action!r:.30}: expected one of {', '.join(ACTIONS)}")
        with self._lock:
            current = self.open_draft()
            if current is not None:
                raise DraftOpen(
                    f"draft of version {current.version} ({current.action} {current.member}) is open; "
                    "publish or withdraw it first"
                )
            if action == "renew":
                if valid_for is None or not timedelta(days=1) <= valid_for <= MAX_RENEWAL:
                    raise MalformedError(f"a renewal runs 1..{MAX_RENEWAL.days} days from now")
                manifest = renew(in_force, now, valid_for)
                node_id = ""
            elif action == "admit":
                if member is None:
                    raise MalformedError("an admission needs the new member's details")
                manifest = add_member(in_force, member)
                node_id = member.node_id
            else:
                existing = in_force.member(node_id)
                status = _STATUS[action]
                if existing is not None and existing.status is status:
                    raise MalformedError(f"{node_id} is already {status.value} in version {in_force.version}")
                manifest = set_member_status(in_force, node_id, status)
            draft = Draft(
                document=SignedDocument(manifest),
                base_version=in_force.version,
                action=action,
                member=node_id,
                drafted_by=by,
                drafted_at=now,
                signers={},
            )
            self._write(draft)
            return draft

    def add_signatures(
        self, version: int, data: bytes, in_force: Manifest, *, by: str, now: datetime
    ) -> Upload:
        """Merge the valid signatures of an uploaded signed copy of draft ``version``.

        The upload must carry the draft's payload byte for byte (canonically); its signatures are
        checked against the draft's keys and the version in force's, and only valid ones are kept.
        """
        if len(data) > MAX_DRAFT_BYTES:
            raise MalformedError(f"signature file of {len(data)} bytes, limit {MAX_DRAFT_BYTES}")
        uploaded = SignedDocument.from_bytes(data, Manifest)
        with self._lock:
            draft = self.get(version)
            if draft.state != "open":
                raise NoDraft(f"the draft of version {version} is {draft.state}, no longer signed")
            if uploaded.payload.canonical() != draft.document.payload.canonical():
                raise SignatureMismatch(
                    f"the file signs manifest version {uploaded.payload.version} with other contents than "
                    f"draft version {version}; download the draft again and sign that file"
                )
            keys = {**in_force.role_keys(), **draft.document.payload.role_keys()}
            result = uploaded.verification_result(keys, 1)
            if result.invalid and not result.signed:
                raise VerificationError(
                    f"{len(result.invalid)} signature(s) in the file do not verify over draft version {version}"
                )
            if not result.signed:
                raise VerificationError(
                    f"the file holds no signature by one of the {len(keys)} organisation keys "
                    f"({len(result.unknown)} by unknown keys)"
                )
            added = tuple(sorted(k for k in result.signed if k not in draft.document.signatures))
            already = tuple(sorted(k for k in result.signed if k in draft.document.signatures))
            signatures = dict(draft.document.signatures)
            signers = dict(draft.signers)
            for keyid in added:
                signatures[keyid] = uploaded.signatures[keyid]
                signers[keyid] = {"by": by, "at": format_time(now)}
            if added:
                document = SignedDocument(
                    draft.document.payload, signatures, draft.document.unrecognized_fields
                )
                self._write(replace(draft, document=document, signers=signers))
            return Upload(added, already)

    def check_publishable(self, draft: Draft, in_force: Manifest, now: datetime) -> None:
        """Raise, typed, unless ``draft`` may replace ``in_force`` now (the rules every node applies)."""
        if draft.state != "open":
            raise NoDraft(f"the draft of version {draft.version} is {draft.state}")
        if draft.base_version != in_force.version:
            raise DraftStale(
                f"draft version {draft.version} was made on version {draft.base_version}; "
                f"version {in_force.version} is in force now: withdraw it and draft again"
            )
        verify_update(in_force, draft.document, now)

    def publish(self, version: int, in_force: Manifest, *, by: str, now: datetime) -> Draft:
        """Write draft ``version`` over the manifest file, once ``check_publishable`` passes."""
        with self._lock:
            draft = self.get(version)
            self.check_publishable(draft, in_force, now)
            try:
                on_disk = SignedDocument.from_bytes(self.manifest_path.read_bytes(), Manifest).payload.version
            except (OSError, MalformedError):
                on_disk = in_force.version
            if on_disk >= draft.version:
                raise RollbackError(
                    f"{self.manifest_path} already holds version {on_disk}; draft {draft.version} is not newer"
                )
            write_atomic(self.manifest_path, draft.document.to_bytes() + b"\n")
            closed = replace(draft, state="published", closed_by=by, closed_at=now)
            self._write(closed)
            return closed

    def withdraw(self, version: int, *, by: str, now: datetime) -> Draft:
        with self._lock:
            draft = self.get(version)
            if draft.state != "open":
                raise NoDraft(f"the draft of version {version} is {draft.state}")
            closed = replace(draft, state="withdrawn", closed_by=by, closed_at=now)
            self._write(closed)
            return closed
