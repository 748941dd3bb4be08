"""The certified organisation as a witness of every member's log (c2sp.org/tlog-witness).

The members witness each other, but a group of two or three stores is small, and members could
collude. ``watchnet gov serve --witness-key FILE`` makes the organisation one more witness, with
an online key of its own that the manifest names (``policy.witness.organisation``): never one of
the offline keys that sign the manifest. It keeps only the latest checkpoint it cosigned per
log, one file per log (written atomically), and cosigns a newer one only with a consistency
proof from it, so it never cosigns two histories of one log.

The same key signs the organisation's ``complaint-referral`` documents (``node.org.complaints``):
it is the one online key of the organisation the manifest names, so a member verifies a referral
with the manifest alone. A cosignature signs a note (text starting ``cosignature/v1``), a
referral the RFC 8785 bytes of a JSON object (starting ``{``), so neither can pass for the other.
"""

from __future__ import annotations

import hashlib
import json
import threading
from datetime import datetime
from pathlib import Path

from governance.manifest import ORGANISATION_WITNESS, Manifest, MemberStatus
from node.files import PRIVATE_FILE, write_atomic
from node.records.witnessing import log_verifier, witness_name
from protocol.canonical import b64url_decode, b64url_encode
from protocol.checkpoint import Checkpoint
from protocol.errors import ConfigurationError
from protocol.keys import SigningKey
from protocol.note import COSIGNATURE, NoteSigner, NoteVerifier
from protocol.signed import P, SignedDocument
from protocol.witness import AddCheckpoint, WitnessedHead, accept_checkpoint

__all__ = ["OrganisationWitness"]


class OrganisationWitness:
    """Cosigns the members' checkpoints; state in ``directory`` (one JSON file per log)."""

    def __init__(self, directory: Path, key: SigningKey) -> None:
        self.directory = Path(directory)
        self._key = key
        self._lock = threading.Lock()

    def check_key(self, manifest: Manifest) -> None:
        """Refuse to serve with a key the manifest does not name as the organisation's witness."""
        named = manifest.policy.witness.organisation
        if named is None:
            raise ConfigurationError(
                "the manifest names no organisation witness; add policy.witness.organisation "
                f"(key {self._key.public.to_str()}) to the next manifest version"
            )
        if self._key.public in manifest.keys.values():
            raise ConfigurationError(
                "--witness-key is one of the keys that sign the manifest; the witness needs an online "
                "key of its own ('watchnet gov keygen --out witness.key')"
            )
        if named.key != self._key.public:
            raise ConfigurationError(
                f"--witness-key holds {self._key.public.to_str()}, the manifest's organisation witness "
                f"is {named.key.to_str()}"
            )

    def sign_document(self, payload: P) -> SignedDocument[P]:
        """A signed document of the organisation (a ``complaint-referral``), signed with this key."""
        document = SignedDocument(payload)
        document.sign(self._key)
        return document

    def _path(self, origin: str) -> Path:
        return self.directory / f"{hashlib.sha256(origin.encode('utf-8')).hexdigest()}.json"

    def _logs(self, manifest: Manifest) -> dict[str, list[NoteVerifier]]:
        logs: dict[str, list[NoteVerifier]] = {}
        for member in manifest.joint_use.members:
            if member.status is not MemberStatus.REMOVED:
                verifier = log_verifier(manifest, member.node_id)
                if verifier is not None:
                    logs[verifier.name] = [verifier]
        return logs

    def _held(self, origin: str) -> dict[str, object] | None:
        try:
            data = json.loads(self._path(origin).read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        return data if isinstance(data, dict) and data.get("origin") == origin else None

    def add_checkpoint(self, body: bytes, manifest: Manifest, now: datetime) -> str:
        """Decide an add-checkpoint request; return the cosignature line (the spec's 200 body)."""
        request = AddCheckpoint.from_bytes(body)
        origin = Checkpoint.from_text(request.note.text).origin
        logs = self._logs(manifest)
        with self._lock:
            held = self._held(origin) if origin in logs else None
            latest = (
                None
                if held is None
                else WitnessedHead(int(str(held["size"])), b64url_decode(str(held["root"]), field="root"))
            )
            checkpoint = accept_checkpoint(request, logs, latest)
            signer = NoteSigner(witness_name(manifest.group_id, ORGANISATION_WITNESS), self._key, COSIGNATURE)
            line = signer.sign(request.note.text, timestamp=int(now.timestamp()))
            record = {
                "origin": origin,
                "size": checkpoint.size,
                "root": b64url_encode(checkpoint.root_hash),
                "note": request.note.with_signature(line).to_text(),
                "cosigned_at": now.isoformat(),
            }
            self.directory.mkdir(parents=True, exist_ok=True)
            write_atomic(
                self._path(origin), json.dumps(record, sort_keys=True).encode("utf-8"), mode=PRIVATE_FILE
            )
        return line.line()

    def latest(self, origin: str) -> str | None:
        """The note of the latest checkpoint cosigned here for ``origin``: the log's signature and ours."""
        held = self._held(origin)
        return None if held is None else str(held["note"])
