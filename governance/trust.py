"""Deciding whether to trust a manifest: pinned roots, thresholds, rotation, rollback, expiry.

A node is configured out of band with the organisation's root key ids and never trusts a manifest
on first sight: the first one must carry a threshold of signatures by pinned keys. After that,
every update follows TUF's root rotation: the new version must be strictly greater, signed by a
threshold of the *old* manifest's keys (so a stolen minority cannot take over) and by a
threshold of its *own* keys (so the new key holders accept the role), and not expired.
``verify_*`` raise; ``assess`` returns the same findings as a report for people and auditors.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from governance.manifest import Manifest
from protocol.errors import ExpiredError, RollbackError, ThresholdError, WatchnetError
from protocol.fields import format_time
from protocol.signed import SignedDocument, VerificationResult

__all__ = ["TrustReport", "assess", "verify_initial", "verify_update"]


def _check_expiry(manifest: Manifest, now: datetime) -> None:
    if manifest.is_expired(now):
        raise ExpiredError(
            f"manifest version {manifest.version} expired at {format_time(manifest.expires)} "
            f"(now {format_time(now)}); ask the organisation for a renewed manifest"
        )


def verify_initial(doc: SignedDocument[Manifest], pinned_keyids: Iterable[str], now: datetime) -> Manifest:
    """Trust a first manifest only if a threshold of its role keys that are also pinned signed it."""
    manifest = doc.payload
    pinned = set(pinned_keyids)
    role = manifest.manifest_role
    keys = {k: v for k, v in manifest.role_keys().items() if k in pinned}
    if not keys:
        raise ThresholdError(
            f"manifest version {manifest.version}: none of its {len(role.keyids)} signing keys is among "
            f"the {len(pinned)} pinned root key ids"
        )
    doc.verify(keys, role.threshold)
    _check_expiry(manifest, now)
    return manifest


def verify_update(trusted: Manifest, doc: SignedDocument[Manifest], now: datetime) -> Manifest:
    """Trust ``doc`` as the successor of ``trusted`` (TUF root rotation rules)."""
    new = doc.payload
    if new.group_id != trusted.group_id:
        raise ThresholdError(f"manifest is for group {new.group_id!r}, we trust group {trusted.group_id!r}")
    if new.version <= trusted.version:
        raise RollbackError(
            f"manifest version {new.version} is not newer than the trusted version {trusted.version}"
        )
    try:
        doc.verify(trusted.role_keys(), trusted.manifest_role.threshold)
    except ThresholdError as e:
        raise ThresholdError(f"not authorised by the keys of trusted version {trusted.version}: {e}") from e
    doc.verify(new.role_keys(), new.manifest_role.threshold)
    _check_expiry(new, now)
    return new


@dataclass(frozen=True)
class TrustReport:
    """Everything ``verify_*`` would check, without raising."""

    version: int
    accepted: bool
    signatures: VerificationResult
    previous_signatures: VerificationResult | None = None
    problems: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        lines = [f"manifest version {self.version}: {'ACCEPTED' if self.accepted else 'REFUSED'}"]
        lines.append(f"  {self.signatures}")
        if self.previous_signatures is not None:
            lines.append(f"  by the trusted version's keys: {self.previous_signatures}")
        lines.extend(f"  - {p}" for p in self.problems)
        return "\n".join(lines)


def assess(
    doc: SignedDocument[Manifest],
    *,
    now: datetime,
    pinned_keyids: Iterable[str] | None = None,
    trusted: Manifest | None = None,
) -> TrustReport:
    """Report on a manifest for a person: signature counts and every problem found."""
    manifest = doc.payload
    pinned = set(pinned_keyids or ())
    keys = (
        manifest.role_keys() if not pinned else {k: v for k, v in manifest.role_keys().items() if k in pinned}
    )
    signatures = doc.verification_result(keys, manifest.manifest_role.threshold)
    previous = (
        doc.verification_result(trusted.role_keys(), trusted.manifest_role.threshold)
        if trusted is not None
        else None
    )
    problems: list[str] = []
    try:
        if trusted is not None:
            verify_update(trusted, doc, now)
        else:
            verify_initial(doc, pinned or set(manifest.manifest_role.keyids), now)
    except WatchnetError as e:
        problems.append(f"{e.code}: {e}")
    return TrustReport(manifest.version, not problems, signatures, previous, problems)
