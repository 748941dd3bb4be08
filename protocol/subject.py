"""Messages about one entry from the member that used it to the member that owns it.

Forwarded data-subject requests, and staff feedback on a match (``MatchFeedback``).

A data-subject request forwarded to the member that owns the entry it concerns.

A person asks at any member's counter. When the disclosure search finds an entry owned by another
member, a correction, deletion or cease-of-use request about it is forwarded to that owner, whose
officer decides (only the owner can sign a new version or a deletion). The forward names the
entry and the kind of request, never the person's photo or embedding; it travels in a signed,
sealed peer message under the purpose ``data-subject-request``, and the owner answers with a
``ForwardAck`` naming the request it opened.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Self

from protocol.errors import MalformedError
from protocol.fields import CODE_RE, ID_RE, NODE_ID_RE
from protocol.signed import SPEC_VERSION, Payload

__all__ = ["FEEDBACK_OUTCOMES", "FORWARDABLE_KINDS", "ForwardAck", "ForwardedRequest", "MatchFeedback"]

FORWARDABLE_KINDS = frozenset({"correction", "deletion", "cease-of-use"})
FEEDBACK_OUTCOMES = frozenset({"false-match", "confirmed"})


@dataclass(kw_only=True)
class ForwardedRequest(Payload):
    """Request ``request_id`` at member ``origin`` asks ``kind`` about the owner's entry ``entry_id``."""

    TYPE = "subject-request-forward"

    origin: str
    request_id: str
    kind: str
    entry_id: str
    entry_version: int
    identity_check: str
    spec_version: str = SPEC_VERSION
    unrecognized_fields: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in FORWARDABLE_KINDS:
            raise MalformedError(
                f"subject-request-forward.kind: {self.kind!r:.40} is not one of {sorted(FORWARDABLE_KINDS)}"
            )
        if not NODE_ID_RE.fullmatch(self.origin):
            raise MalformedError(f"subject-request-forward.origin: {self.origin!r:.70} is not a node id")
        for name in ("request_id", "entry_id"):
            if not ID_RE.fullmatch(getattr(self, name)):
                raise MalformedError(f"subject-request-forward.{name}: not an id")
        if not CODE_RE.fullmatch(self.identity_check):
            raise MalformedError("subject-request-forward.identity_check: not a code")
        if self.entry_version < 1:
            raise MalformedError("subject-request-forward.entry_version: expected >= 1")

    def to_dict(self) -> dict[str, Any]:
        return self._with_unrecognized(
            {
                **self._header(),
                "origin": self.origin,
                "request_id": self.request_id,
                "kind": self.kind,
                "entry_id": self.entry_id,
                "entry_version": self.entry_version,
                "identity_check": self.identity_check,
            }
        )

    @classmethod
    def from_dict(cls, data: Any) -> Self:
        f, spec_version = cls._read_header(data)
        return cls(
            origin=f.text("origin", max_len=63, pattern=NODE_ID_RE),
            request_id=f.text("request_id", max_len=64, pattern=ID_RE),
            kind=f.text("kind", max_len=16, pattern=CODE_RE),
            entry_id=f.text("entry_id", max_len=64, pattern=ID_RE),
            entry_version=f.integer("entry_version", low=1),
            identity_check=f.text("identity_check", max_len=48, pattern=CODE_RE),
            spec_version=spec_version,
            unrecognized_fields=f.rest(),
        )


@dataclass(kw_only=True)
class ForwardAck(Payload):
    """The owner opened request ``owner_request_id`` for the forwarded request ``request_id``."""

    TYPE = "subject-request-ack"

    request_id: str
    owner_request_id: str
    spec_version: str = SPEC_VERSION
    unrecognized_fields: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("request_id", "owner_request_id"):
            if not ID_RE.fullmatch(getattr(self, name)):
                raise MalformedError(f"subject-request-ack.{name}: not an id")

    def to_dict(self) -> dict[str, Any]:
        return self._with_unrecognized(
            {**self._header(), "request_id": self.request_id, "owner_request_id": self.owner_request_id}
        )

    @classmethod
    def from_dict(cls, data: Any) -> Self:
        f, spec_version = cls._read_header(data)
        return cls(
            request_id=f.text("request_id", max_len=64, pattern=ID_RE),
            owner_request_id=f.text("owner_request_id", max_len=64, pattern=ID_RE),
            spec_version=spec_version,
            unrecognized_fields=f.rest(),
        )


@dataclass(kw_only=True)
class MatchFeedback(Payload):
    """Staff at ``origin`` judged an alert on the owner's entry: a false match, or confirmed.

    A false match is what the owner most needs to hear: its entry (or the group threshold) made a
    passer-by look like a registered person. The owner counts these per entry for its officer and
    in its transparency report. No face or score of the passer-by travels.
    """

    TYPE = "match-feedback"

    origin: str
    alert_id: str
    entry_id: str
    entry_version: int
    outcome: str
    spec_version: str = SPEC_VERSION
    unrecognized_fields: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.outcome not in FEEDBACK_OUTCOMES:
            raise MalformedError(f"match-feedback.outcome: {self.outcome!r:.40} is not one of {sorted(FEEDBACK_OUTCOMES)}")
        if not NODE_ID_RE.fullmatch(self.origin):
            raise MalformedError("match-feedback.origin: not a node id")
        for name in ("alert_id", "entry_id"):
            if not ID_RE.fullmatch(getattr(self, name)):
                raise MalformedError(f"match-feedback.{name}: not an id")
        if self.entry_version < 1:
            raise MalformedError("match-feedback.entry_version: expected >= 1")

    def to_dict(self) -> dict[str, Any]:
        return self._with_unrecognized(
            {
                **self._header(),
                "origin": self.origin,
                "alert_id": self.alert_id,
                "entry_id": self.entry_id,
                "entry_version": self.entry_version,
                "outcome": self.outcome,
            }
        )

    @classmethod
    def from_dict(cls, data: Any) -> Self:
        f, spec_version = cls._read_header(data)
        return cls(
            origin=f.text("origin", max_len=63, pattern=NODE_ID_RE),
            alert_id=f.text("alert_id", max_len=64, pattern=ID_RE),
            entry_id=f.text("entry_id", max_len=64, pattern=ID_RE),
            entry_version=f.integer("entry_version", low=1),
            outcome=f.text("outcome", max_len=16, pattern=CODE_RE),
            spec_version=spec_version,
            unrecognized_fields=f.rest(),
        )
