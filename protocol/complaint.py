"""A complaint the organisation refers to the member it is about, and the member's answer (Art. 40).

The certified organisation takes complaints about its members (``watchnet gov serve``); the
member that holds the data is the one that can look into it. ``complaint-referral`` is what the
organisation sends that member: which complaint, what it is about, the complainant's words (or
the secretariat's summary of them; never the complainant's contact) and by when it wants an
answer. It is signed with the organisation's online key that the manifest names
(``policy.witness.organisation.key``), so a member checks it with the manifest alone.

``complaint-answer`` is the member's reply: the outcome and what it did, signed with its node's
signing key in the manifest. Both name the group and the member, so neither can be taken to
another group or put in another member's mouth.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Self

from protocol.errors import MalformedError
from protocol.fields import CODE_RE, ID_RE, NODE_ID_RE, format_time
from protocol.signed import SPEC_VERSION, Payload

__all__ = ["MAX_COMPLAINT_TEXT", "ComplaintAnswer", "ComplaintReferral"]

MAX_COMPLAINT_TEXT = 2000
"""A complaint's summary and an answer: at most this many characters (the registers' own bound)."""


def _check_common(what: str, group_id: str, complaint_id: str, member: str, text: str, name: str) -> None:
    if not NODE_ID_RE.fullmatch(group_id):
        raise MalformedError(f"{what}.group_id: not a group id")
    if not complaint_id.startswith("cmp-") or not ID_RE.fullmatch(complaint_id):
        raise MalformedError(f"{what}.complaint_id: {complaint_id!r:.40} is not a complaint id")
    if not NODE_ID_RE.fullmatch(member):
        raise MalformedError(f"{what}.member: not a node id")
    if not text.strip() or len(text) > MAX_COMPLAINT_TEXT:
        raise MalformedError(f"{what}.{name}: 1..{MAX_COMPLAINT_TEXT} characters")


@dataclass(kw_only=True)
class ComplaintReferral(Payload):
    TYPE = "complaint-referral"

    group_id: str
    complaint_id: str
    member: str
    category: str
    summary: str
    received_at: datetime
    answer_by: datetime
    referred_at: datetime
    manifest_version: int
    spec_version: str = SPEC_VERSION
    unrecognized_fields: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check_common(self.TYPE, self.group_id, self.complaint_id, self.member, self.summary, "summary")
        if not CODE_RE.fullmatch(self.category):
            raise MalformedError(f"{self.TYPE}.category: not a code")
        if self.answer_by <= self.referred_at:
            raise MalformedError(f"{self.TYPE}.answer_by: not after referred_at")
        if self.manifest_version < 1:
            raise MalformedError(f"{self.TYPE}.manifest_version: at least 1")

    def to_dict(self) -> dict[str, Any]:
        return self._with_unrecognized(
            {
                **self._header(),
                "group_id": self.group_id,
                "complaint_id": self.complaint_id,
                "member": self.member,
                "category": self.category,
                "summary": self.summary,
                "received_at": format_time(self.received_at),
                "answer_by": format_time(self.answer_by),
                "referred_at": format_time(self.referred_at),
                "manifest_version": self.manifest_version,
            }
        )

    @classmethod
    def from_dict(cls, data: Any) -> Self:
        f, spec_version = cls._read_header(data)
        return cls(
            group_id=f.text("group_id", max_len=63, pattern=NODE_ID_RE),
            complaint_id=f.text("complaint_id", max_len=64, pattern=ID_RE),
            member=f.text("member", max_len=63, pattern=NODE_ID_RE),
            category=f.text("category", max_len=48, pattern=CODE_RE),
            summary=f.text("summary", max_len=MAX_COMPLAINT_TEXT),
            received_at=f.time("received_at"),
            answer_by=f.time("answer_by"),
            referred_at=f.time("referred_at"),
            manifest_version=f.integer("manifest_version", low=1),
            spec_version=spec_version,
            unrecognized_fields=f.rest(),
        )


@dataclass(kw_only=True)
class ComplaintAnswer(Payload):
    TYPE = "complaint-answer"

    group_id: str
    complaint_id: str
    member: str
    outcome: str
    answer: str
    answered_at: datetime
    spec_version: str = SPEC_VERSION
    unrecognized_fields: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check_common(self.TYPE, self.group_id, self.complaint_id, self.member, self.answer, "answer")
        if not CODE_RE.fullmatch(self.outcome):
            raise MalformedError(f"{self.TYPE}.outcome: not a code")

    def to_dict(self) -> dict[str, Any]:
        return self._with_unrecognized(
            {
                **self._header(),
                "group_id": self.group_id,
                "complaint_id": self.complaint_id,
                "member": self.member,
                "outcome": self.outcome,
                "answer": self.answer,
                "answered_at": format_time(self.answered_at),
            }
        )

    @classmethod
    def from_dict(cls, data: Any) -> Self:
        f, spec_version = cls._read_header(data)
        return cls(
            group_id=f.text("group_id", max_len=63, pattern=NODE_ID_RE),
            complaint_id=f.text("complaint_id", max_len=64, pattern=ID_RE),
            member=f.text("member", max_len=63, pattern=NODE_ID_RE),
            outcome=f.text("outcome", max_len=48, pattern=CODE_RE),
            answer=f.text("answer", max_len=MAX_COMPLAINT_TEXT),
            answered_at=f.time("answered_at"),
            spec_version=spec_version,
            unrecognized_fields=f.rest(),
        )
