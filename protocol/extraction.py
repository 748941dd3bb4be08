"""Suspected template extraction, reported by the answering member to the organisation.

A member whose answers would name one entry to another member more often than the group allows
(``hit_budget_exceeded``), or to a burst of near-identical probes (``probe_burst``), refuses and
tells the organisation, which polices the group (APPI Art. 27-5-3: the joint users' rules).
The report names the suspect, the reason, the answering member's own entry id (an opaque id:
no face, no score) and when; signed by the reporter, so the organisation can verify it
against the manifest and no one can report in another member's name.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Self

from protocol.errors import MalformedError
from protocol.fields import ID_RE, NODE_ID_RE, format_time, parse_time
from protocol.signed import SPEC_VERSION, Payload

__all__ = ["EXTRACTION_REASONS", "ExtractionReport"]

EXTRACTION_REASONS = frozenset({"hit_budget_exceeded", "probe_burst"})


@dataclass(kw_only=True)
class ExtractionReport(Payload):
    TYPE = "extraction-report"

    reporter: str
    suspect: str
    reason: str
    entry_id: str
    observed_at: datetime
    spec_version: str = SPEC_VERSION
    unrecognized_fields: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.reason not in EXTRACTION_REASONS:
            raise MalformedError(
                f"extraction-report.reason: {self.reason!r:.40} is not one of {sorted(EXTRACTION_REASONS)}"
            )
        for name in ("reporter", "suspect"):
            if not NODE_ID_RE.fullmatch(getattr(self, name)):
                raise MalformedError(f"extraction-report.{name}: not a node id")
        if self.reporter == self.suspect:
            raise MalformedError("extraction-report: a member cannot report itself")
        if not ID_RE.fullmatch(self.entry_id):
            raise MalformedError("extraction-report.entry_id: not an id")

    def to_dict(self) -> dict[str, Any]:
        return self._with_unrecognized(
            {
                **self._header(),
                "reporter": self.reporter,
                "suspect": self.suspect,
                "reason": self.reason,
                "entry_id": self.entry_id,
                "observed_at": format_time(self.observed_at),
            }
        )

    @classmethod
    def from_dict(cls, data: Any) -> Self:
        f, spec_version = cls._read_header(data)
        return cls(
            reporter=f.text("reporter", max_len=63, pattern=NODE_ID_RE),
            suspect=f.text("suspect", max_len=63, pattern=NODE_ID_RE),
            reason=f.text("reason", max_len=32),
            entry_id=f.text("entry_id", max_len=64, pattern=ID_RE),
            observed_at=parse_time(f.text("observed_at", max_len=32), field="extraction-report.observed_at"),
            spec_version=spec_version,
            unrecognized_fields=f.rest(),
        )
