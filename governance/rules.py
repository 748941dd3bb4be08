"""A node's written registration rules (社内ルール) in machine-checked form.

APPI Art. 22 and the PPC's Q&A (Q1-13-2) expect a business to register a face only when
necessary, on objective evidence, under written internal rules, and to keep it no longer than
needed. These rules narrow the group's policy for one node (never widen it), and
``check_entry`` applies both to an entry before it can become active, listing every violation
with the value received and the limit. Special-care data (Art. 20-2: arrest, prosecution,
conviction) has no field to live in, and any field the format does not define is refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from governance.errors import InvalidManifestError, RegistrationRefused
from governance.findings import Finding
from governance.manifest import Manifest
from protocol.entry import WatchlistEntry
from protocol.errors import MalformedError
from protocol.fields import CODE_RE, Fields

__all__ = ["FaceQuality", "RegistrationRules", "check_entry", "check_registration"]


@dataclass(frozen=True)
class FaceQuality:
    """Minimum quality of a face used for registration (checked by the face pipeline)."""

    min_detection_score: float = 0.6
    min_face_pixels: int = 80
    max_yaw_degrees: float = 30.0
    min_sharpness: float = 50.0

    @classmethod
    def from_dict(cls, data: Any) -> FaceQuality:
        f = Fields(data, "rules.face_quality")
        d = cls()
        quality = cls(
            min_detection_score=f.optional(
                "min_detection_score", d.min_detection_score, lambda n: f.number(n, low=0.0, high=1.0)
            ),
            min_face_pixels=f.optional(
                "min_face_pixels", d.min_face_pixels, lambda n: f.integer(n, low=16, high=4096)
            ),
            max_yaw_degrees=f.optional(
                "max_yaw_degrees", d.max_yaw_degrees, lambda n: f.number(n, low=0.0, high=90.0)
            ),
            min_sharpness=f.optional(
                "min_sharpness", d.min_sharpness, lambda n: f.number(n, low=0.0, high=1e6)
            ),
        )
        f.finish()
        return quality


@dataclass(frozen=True)
class RegistrationRules:
    """What this node registers: categories, evidence, retention, face quality."""

    categories: tuple[str, ...]
    evidence_kinds: tuple[str, ...]
    retention_days: int
    face_quality: FaceQuality = FaceQuality()

    @classmethod
    def from_dict(cls, data: Any) -> RegistrationRules:
        f = Fields(data, "rules")
        rules = cls(
            categories=tuple(f.texts("categories", max_items=64, max_len=48, pattern=CODE_RE)),
            evidence_kinds=tuple(f.texts("evidence_kinds", max_items=32, max_len=48, pattern=CODE_RE)),
            retention_days=f.integer("retention_days", low=1, high=3650),
            face_quality=FaceQuality.from_dict(f.obj("face_quality"))
            if f.has("face_quality")
            else FaceQuality(),
        )
        if f.rest():
            raise MalformedError(f"rules: unknown settings {sorted(f.rest())}")
        if not rules.categories or not rules.evidence_kinds:
            raise MalformedError("rules: categories and evidence_kinds must each list at least one code")
        return rules

    def check_against(self, manifest: Manifest) -> None:
        """Rules may only narrow the group's policy."""
        policy = manifest.policy
        extra = sorted(set(self.categories) - set(policy.incident_categories))
        if extra:
            raise InvalidManifestError(f"rules allow categories the group does not: {extra}")
        extra = sorted(set(self.evidence_kinds) - set(policy.required_evidence))
        if extra:
            raise InvalidManifestError(f"rules accept evidence kinds the group does not: {extra}")
        if self.retention_days > policy.max_retention_days:
            raise InvalidManifestError(
                f"rules keep entries {self.retention_days} days, the group allows at most {policy.max_retention_days}"
            )


def check_registration(
    manifest: Manifest,
    rules: RegistrationRules,
    *,
    category: str,
    evidence_kind: str,
    incident_date: date,
    registered_at: datetime,
    expires_at: datetime,
    model_id: str,
    now: datetime,
) -> None:
    """Raise ``RegistrationRefused`` listing every rule these registration facts break."""
    policy = manifest.policy
    violations: list[Finding] = []
    if category not in policy.incident_categories:
        violations.append(
            Finding(
                "category_not_in_group",
                "category {category!r} is not one of the group's {categories}",
                category=category,
                categories=tuple(policy.incident_categories),
            )
        )
    elif category not in rules.categories:
        violations.append(
            Finding(
                "category_not_registered_here",
                "category {category!r} is not one this node registers {categories}",
                category=category,
                categories=tuple(rules.categories),
            )
        )
    if evidence_kind not in policy.required_evidence or evidence_kind not in rules.evidence_kinds:
        accepted = tuple(sorted(set(policy.required_evidence) & set(rules.evidence_kinds)))
        violations.append(
            Finding(
                "evidence_not_accepted",
                "evidence kind {evidence!r} is not accepted (accepted: {accepted})",
                evidence=evidence_kind,
                accepted=accepted,
            )
        )
    retention_days = (expires_at - registered_at).total_seconds() / 86400
    limit = min(rules.retention_days, policy.max_retention_days)
    if retention_days > limit:
        violations.append(
            Finding(
                "retention_too_long",
                "retention {days:.1f} days exceeds the limit of {limit} days",
                days=retention_days,
                limit=limit,
            )
        )
    if expires_at <= now:
        violations.append(Finding("already_expired", "the entry has already expired"))
    if incident_date > registered_at.date():
        violations.append(
            Finding(
                "incident_after_registration",
                "incident date {date} is after the registration date",
                date=incident_date.isoformat(),
            )
        )
    if model_id != policy.model.model_id:
        violations.append(
            Finding(
                "model_not_pinned",
                "model {model!r} is not the pinned model {pinned!r}",
                model=model_id,
                pinned=policy.model.model_id,
            )
        )
    if violations:
        raise RegistrationRefused(violations)


def check_entry(manifest: Manifest, rules: RegistrationRules, entry: WatchlistEntry, now: datetime) -> None:
    """Raise ``RegistrationRefused`` listing every rule ``entry`` breaks."""
    violations: list[str] = []
    try:
        check_registration(
            manifest,
            rules,
            category=entry.category,
            evidence_kind=entry.evidence.kind,
            incident_date=entry.incident_date,
            registered_at=entry.registered_at,
            expires_at=entry.expires_at,
            model_id=entry.model_id,
            now=now,
        )
    except RegistrationRefused as e:
        violations.extend(e.violations)
    if entry.unrecognized_fields:
        violations.append(
            Finding(
                "unknown_entry_fields",
                "fields {fields} are not part of an entry; free text is not allowed",
                fields=tuple(sorted(entry.unrecognized_fields)),
            )
        )
    if violations:
        raise RegistrationRefused(violations)
