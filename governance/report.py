"""Transparency reports (R13): what one node did in a period, signed by it, and the group's sum.

A member publishes, per period, how many entries it registered, rejected, corrected and
deleted (by reason), how many queries it sent and answered, the matches, the false-match
verdicts of its staff, the refusals by error code, the third-party provisions (law enforcement)
by legal basis, the data-subject requests by kind and outcome, and the complaints. The node
counts from its own records (``node/reporting/report.py``) and signs the ``TransparencyReport``; the
certified privacy organisation verifies each member's signature against the member's key in
the manifest and adds the members' reports up into one group report (``aggregate``).

Counts only: no entry id, no staff name, no requester, nothing biometric. Every count belongs to
the period in which the event happened (``Period``: ``[start, end)`` in UTC), so a report for a
closed period never changes, and the sum of the monthly reports is the quarterly report.

Nothing here does I/O.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import MISSING, dataclass, field, fields, replace
from datetime import UTC, datetime
from typing import Any, ClassVar, Self, cast

from governance.errors import NotAMember
from governance.manifest import Manifest
from protocol.errors import MalformedError, SignatureError, ThresholdError
from protocol.fields import MAX_SAFE_INT, NODE_ID_RE, Fields, check_wire_time, format_time
from protocol.signed import SPEC_VERSION, Payload, SignedDocument

__all__ = [
    "KEY_RE",
    "Breakdown",
    "ComplaintCounts",
    "EntryCounts",
    "MatchCounts",
    "Period",
    "ProvisionCounts",
    "QueryCounts",
    "RefusalCounts",
    "ReportMismatch",
    "ReportNotFromMember",
    "ReportScope",
    "ReportSignatureError",
    "RequestCounts",
    "Tally",
    "TransparencyReport",
    "aggregate",
    "parse_period",
    "totals",
    "verify_member_report",
]

Tally = dict[str, int]
"""Counts by code, e.g. deletions by reason: ``{"error": 1, "retention-expired": 4}``."""
Breakdown = dict[str, dict[str, int]]
"""Counts by two codes, e.g. data-subject requests by kind, then by outcome."""

KEY_RE = re.compile(r"[a-z0-9][a-z0-9_.:-]{0,63}")
"""A tally key: a reason, purpose, error or outcome code (error codes use underscores)."""
MAX_KEYS = 256
MIN_YEAR, MAX_YEAR = 2000, 2999
_PERIOD_RE = re.compile(r"(\d{4})(?:-(Q[1-4]|\d{2}))?")


class ReportMismatch(MalformedError):
    """Reports that cannot be added up: another group or period, a group report, a member twice."""

    code = "report_mismatch"


class ReportNotFromMember(NotAMember):
    """The report names a node that the manifest does not list as a member."""


class ReportSignatureError(SignatureError):
    """The report is not signed by the key the manifest lists for the node it names."""

    code = "report_signature"


# -- periods ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Period:
    """A reporting period ``[start, end)`` in UTC, named like ``2026-Q4``, ``2026-11`` or ``2026``."""

    label: str
    start: datetime
    end: datetime

    def contains(self, t: datetime) -> bool:
        return self.start <= t < self.end

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.label, "start": format_time(self.start), "end": format_time(self.end)}

    @classmethod
    def from_dict(cls, data: Any) -> Period:
        f = Fields(data, "period")
        period = parse_period(f.text("label", max_len=16))
        start, end = f.time("start"), f.time("end")
        if (start, end) != (period.start, period.end):
            raise MalformedError(
                f"period {period.label}: start/end {format_time(start)}..{format_time(end)} do not match "
                f"the label (expected {format_time(period.start)}..{format_time(period.end)})"
            )
        if f.rest():
            raise MalformedError(f"period: unexpected fields {sorted(f.rest())}")
        return period


def parse_period(text: str) -> Period:
    """``2026`` (a year), ``2026-Q4`` (a quarter) or ``2026-11`` (a month), as ``[start, end)`` in UTC."""
    m = _PERIOD_RE.fullmatch(text) if isinstance(text, str) else None
    if m is None:
        raise MalformedError(f"period: expected 2026, 2026-Q4 or 2026-11, got {text!r:.40}")
    year = int(m.group(1))
    if not MIN_YEAR <= year <= MAX_YEAR:
        raise MalformedError(f"period {text}: year outside [{MIN_YEAR}, {MAX_YEAR}]")
    part = m.group(2)
    if part is None:
        first, months = 1, 12
    elif part.startswith("Q"):
        first, months = 3 * (int(part[1]) - 1) + 1, 3
    else:
        first, months = int(part), 1
        if not 1 <= first <= 12:
            raise MalformedError(f"period {text}: month {first} outside [1, 12]")
    after = first - 1 + months
    start = datetime(year, first, 1, tzinfo=UTC)
    end = datetime(year + after // 12, after % 12 + 1, 1, tzinfo=UTC)
    return Period(text, start, end)


# -- counts -----------------------------------------------------------------------------------


def _count(f: Fields, name: str) -> int:
    return f.integer(name, low=0, high=MAX_SAFE_INT)


def _tally(f: Fields, name: str, what: str) -> Tally:
    return _read_tally(f.obj(name), f"{what}.{name}")


def _read_tally(data: dict[str, Any], what: str) -> Tally:
    if len(data) > MAX_KEYS:
        raise MalformedError(f"{what}: {len(data)} keys, limit {MAX_KEYS}")
    out: Tally = {}
    for key, value in data.items():
        if not KEY_RE.fullmatch(key):
            raise MalformedError(f"{what}: key {key!r:.70} does not match {KEY_RE.pattern}")
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_SAFE_INT:
            raise MalformedError(f"{what}.{key}: expected a count >= 0, got {value!r:.30}")
        out[key] = value
    return out


def _breakdown(f: Fields, name: str, what: str) -> Breakdown:
    data = f.obj(name)
    if len(data) > MAX_KEYS:
        raise MalformedError(f"{what}.{name}: {len(data)} keys, limit {MAX_KEYS}")
    out: Breakdown = {}
    for key, value in data.items():
        if not KEY_RE.fullmatch(key):
            raise MalformedError(f"{what}.{name}: key {key!r:.70} does not match {KEY_RE.pattern}")
        if not isinstance(value, dict):
            raise MalformedError(f"{what}.{name}.{key}: expected an object, got {type(value).__name__}")
        out[key] = _read_tally(value, f"{what}.{name}.{key}")
    return out


def _add(a: Any, b: Any) -> Any:
    """The sum of two counts, tallies or breakdowns (the keys of either side; a missing key is zero)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return {
            k: _add(a[k], b[k]) if k in a and k in b else _copy(a[k] if k in a else b[k])
            for k in sorted(a.keys() | b.keys())
        }
    if isinstance(a, int) and isinstance(b, int) and not isinstance(a, bool) and not isinstance(b, bool):
        return a + b
    raise ReportMismatch(f"cannot add {type(a).__name__} and {type(b).__name__}")


def _plus(a: Any, b: Any) -> Any:
    """``_add``, where an optional tally one side lacks counts as empty (and two lacking stay absent)."""
    if a is None or b is None:
        return None if a is None and b is None else _copy(b if a is None else a)
    return _add(a, b)


def _copy(value: Any) -> Any:
    return {k: _copy(v) for k, v in value.items()} if isinstance(value, dict) else value


class _Counts:
    """A section of counts: every field is a count, a ``Tally`` or a ``Breakdown``.

    Every field is required (a count a node does not know is not zero). Unknown fields of a
    newer node are kept, so its signature still verifies; they are left out of a group sum.
    """

    WHAT: ClassVar[str]
    BREAKDOWNS: ClassVar[frozenset[str]] = frozenset()
    OPTIONAL: ClassVar[frozenset[str]] = frozenset()
    """Tallies added after the first reports: absent (``None``) in a report of an older node, and
    then left out of its bytes again, so its signature still verifies."""
    unrecognized_fields: dict[str, Any]

    @classmethod
    def _names(cls) -> list[str]:
        return [f.name for f in fields(cast(Any, cls)) if f.name != "unrecognized_fields"]

    @classmethod
    def zero(cls) -> Self:
        return cls()

    def to_dict(self) -> dict[str, Any]:
        out = dict(self.unrecognized_fields)
        for name in self._names():
            if getattr(self, name) is not None:
                out[name] = _copy(getattr(self, name))
        return out

    @classmethod
    def from_dict(cls, data: Any) -> Self:
        f = Fields(data, cls.WHAT)
        values: dict[str, Any] = {}
        for spec in fields(cast(Any, cls)):
            if spec.name == "unrecognized_fields":
                continue
            if spec.name in cls.OPTIONAL:
                values[spec.name] = _tally(f, spec.name, cls.WHAT) if f.has(spec.name) else None
            elif spec.name in cls.BREAKDOWNS:
                values[spec.name] = _breakdown(f, spec.name, cls.WHAT)
            elif spec.default_factory is not MISSING:
                values[spec.name] = _tally(f, spec.name, cls.WHAT)
            else:
                values[spec.name] = _count(f, spec.name)
        values["unrecognized_fields"] = f.rest()
        return cls(**values)

    def plus(self, other: Self) -> Self:
        sums = {name: _plus(getattr(self, name), getattr(other, name)) for name in self._names()}
        total: Self = replace(cast(Any, self), **sums, unrecognized_fields={})
        return total


@dataclass(kw_only=True)
class EntryCounts(_Counts):
    """Watchlist entries, from the signed event log (and the rejected proposals)."""

    WHAT = "entries"

    proposed: int = 0
    """Proposals made by registrars in the period."""
    approved: int = 0
    """Proposals approved by an officer: a signed ``registered`` event."""
    rejected: Tally = field(default_factory=dict)
    """Proposals rejected, by the officer's reason code."""
    corrected: Tally = field(default_factory=dict)
    """Signed corrections (new versions), by reason."""
    deleted: Tally = field(default_factory=dict)
    """Signed deletions by reason; expiry at the end of the retention period is ``retention-expired``."""
    active_at_end: int = 0
    """Entries registered and not deleted or expired by the end of the period (so far, if it has not ended)."""
    owed_receipts: Tally | None = None
    """Receipts each member still owed this node for its deletions and corrections when the
    report was generated, by member (absent in reports of nodes before it was added). Summed
    over the group, it is what each member owes the others: the organisation's member list."""
    OPTIONAL = frozenset({"owed_receipts"})
    unrecognized_fields: dict[str, Any] = field(default_factory=dict)


@dataclass(kw_only=True)
class QueryCounts(_Counts):
    """Queries to the other members (sent) and from them (answered or refused), by purpose."""

    WHAT = "queries"

    sent: Tally = field(default_factory=dict)
    """Queries this node sent to the group, by purpose (network queries and data-subject searches)."""
    faces_sent: int = 0
    answered: Tally = field(default_factory=dict)
    """Members' queries answered, by purpose."""
    faces_answered: int = 0
    refused: Tally = field(default_factory=dict)
    """Members' (or outsiders') queries refused, by error code: a part of ``refusals.requests``."""
    unrecognized_fields: dict[str, Any] = field(default_factory=dict)


@dataclass(kw_only=True)
class MatchCounts(_Counts):
    """Matches at or above the group's threshold, and the staff's verdicts on the alerts."""

    WHAT = "matches"

    local_searches: int = 0
    """Camera frames (or batches of faces) searched against this node's own entries."""
    local_hits: int = 0
    network_hits: int = 0
    """Hits the members returned for this node's queries (each verified against the owner's signature)."""
    answered_hits: int = 0
    """Hits this node returned to members' queries."""
    reviews: Tally = field(default_factory=dict)
    """Verdicts of this node's staff on alerts: ``false-match`` or ``confirmed``."""
    feedback_received: Tally = field(default_factory=dict)
    """Members' staff's verdicts on alerts raised by this node's entries."""
    unrecognized_fields: dict[str, Any] = field(default_factory=dict)


@dataclass(kw_only=True)
class RefusalCounts(_Counts):
    """Everything the node refused, by error code, each refusal counted once."""

    WHAT = "refusals"

    requests: Tally = field(default_factory=dict)
    """Requests to the node's API refused (staff, public and members' sealed messages)."""
    peer_data: Tally = field(default_factory=dict)
    """Data the node fetched from members or the organisation and refused (log pages, manifests)."""
    unrecognized_fields: dict[str, Any] = field(default_factory=dict)


@dataclass(kw_only=True)
class ProvisionCounts(_Counts):
    """Requests from third parties such as the police (Art. 27-1), and what was provided."""

    WHAT = "provisions"

    received: Tally = field(default_factory=dict)
    """Requests recorded, by requester kind (police, prosecutor, court, ...)."""
    provided: Tally = field(default_factory=dict)
    """Requests answered with data, by legal basis."""
    refused: Tally = field(default_factory=dict)
    """Requests refused, by the legal basis claimed (``none`` when none was)."""
    entries_provided: int = 0
    unrecognized_fields: dict[str, Any] = field(default_factory=dict)


@dataclass(kw_only=True)
class RequestCounts(_Counts):
    """Data-subject requests (Art. 33-35) taken at this node, and those forwarded to it by members."""

    WHAT = "subject_requests"
    BREAKDOWNS = frozenset({"closed"})

    received: Tally = field(default_factory=dict)
    """Requests taken at this node's counter, by kind."""
    closed: Breakdown = field(default_factory=dict)
    """Those closed in the period: kind, then outcome."""
    refusal_grounds: Tally = field(default_factory=dict)
    """Refusals among them, by legal ground."""
    closed_late: int = 0
    """Closed after their deadline."""
    open_at_end: int = 0
    overdue_at_end: int = 0
    forwarded_in: Tally = field(default_factory=dict)
    """Requests a member forwarded about this node's entries, by kind (counted at the origin too)."""
    forwarded_closed: Tally = field(default_factory=dict)
    """Forwarded requests closed here, by outcome."""
    unrecognized_fields: dict[str, Any] = field(default_factory=dict)


@dataclass(kw_only=True)
class ComplaintCounts(_Counts):
    """Complaints (Art. 40) taken from the public and by staff."""

    WHAT = "complaints"

    received: Tally = field(default_factory=dict)
    """By category."""
    channels: Tally = field(default_factory=dict)
    """The same complaints by channel (public form, counter, phone, mail, organisation)."""
    closed: Tally = field(default_factory=dict)
    """Closed in the period, by outcome."""
    open_at_end: int = 0
    unrecognized_fields: dict[str, Any] = field(default_factory=dict)


_SECTIONS: dict[str, type[_Counts]] = {
    "entries": EntryCounts,
    "queries": QueryCounts,
    "matches": MatchCounts,
    "refusals": RefusalCounts,
    "provisions": ProvisionCounts,
    "subject_requests": RequestCounts,
    "complaints": ComplaintCounts,
}


# -- the report -------------------------------------------------------------------------------


class ReportScope(enum.StrEnum):
    NODE = "node"
    """One member's own report, signed by the member's node."""
    GROUP = "group"
    """The sum of members' reports, made (and optionally signed) by the organisation."""


@dataclass(kw_only=True)
class TransparencyReport(Payload):
    """What ``issuer`` (a node, or the group) did in ``period``; ``members`` are the nodes counted."""

    TYPE = "transparency-report"

    scope: ReportScope
    issuer: str
    group_id: str
    period: Period
    generated_at: datetime
    manifest_version: int
    members: tuple[str, ...]
    entries: EntryCounts
    queries: QueryCounts
    matches: MatchCounts
    refusals: RefusalCounts
    provisions: ProvisionCounts
    subject_requests: RequestCounts
    complaints: ComplaintCounts
    spec_version: str = SPEC_VERSION
    unrecognized_fields: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name, value in (
            ("issuer", self.issuer),
            ("group_id", self.group_id),
            *(("members", m) for m in self.members),
        ):
            if not NODE_ID_RE.fullmatch(value):
                raise MalformedError(f"transparency-report.{name}: {value!r:.70} is not a node or group id")
        if not self.members:
            raise MalformedError("transparency-report.members: empty; a report counts at least one node")
        if list(self.members) != sorted(set(self.members)):
            raise MalformedError("transparency-report.members: expected distinct node ids in sorted order")
        if self.scope is ReportScope.NODE and self.members != (self.issuer,):
            raise MalformedError(
                f"transparency-report: a node report counts only its issuer {self.issuer!r}, got members {list(self.members)}"
            )
        if self.scope is ReportScope.GROUP and self.issuer != self.group_id:
            raise MalformedError(
                f"transparency-report: a group report is issued by the group {self.group_id!r}, not {self.issuer!r}"
            )
        if self.manifest_version < 1:
            raise MalformedError(
                f"transparency-report.manifest_version: expected >= 1, got {self.manifest_version}"
            )
        check_wire_time(self.generated_at, "transparency-report.generated_at")

    @property
    def complete(self) -> bool:
        """Whether the period had ended when the report was made (otherwise the counts are so far)."""
        return self.generated_at >= self.period.end

    def sections(self) -> dict[str, _Counts]:
        return {name: getattr(self, name) for name in _SECTIONS}

    def to_dict(self) -> dict[str, Any]:
        return self._with_unrecognized(
            {
                **self._header(),
                "scope": self.scope.value,
                "issuer": self.issuer,
                "group_id": self.group_id,
                "period": self.period.to_dict(),
                "generated_at": format_time(self.generated_at),
                "manifest_version": self.manifest_version,
                "members": list(self.members),
                **{name: section.to_dict() for name, section in self.sections().items()},
            }
        )

    @classmethod
    def from_dict(cls, data: Any) -> Self:
        f, spec_version = cls._read_header(data)
        scope = f.enum("scope", ReportScope)
        issuer = f.text("issuer", max_len=63, pattern=NODE_ID_RE)
        group_id = f.text("group_id", max_len=63, pattern=NODE_ID_RE)
        period = Period.from_dict(f.obj("period"))
        generated_at = f.time("generated_at")
        manifest_version = f.integer("manifest_version", low=1)
        members = tuple(f.texts("members", max_items=512, max_len=63, pattern=NODE_ID_RE))
        sections = {name: kind.from_dict(f.obj(name)) for name, kind in _SECTIONS.items()}
        return cls(
            scope=scope,
            issuer=issuer,
            group_id=group_id,
            period=period,
            generated_at=generated_at,
            manifest_version=manifest_version,
            members=members,
            spec_version=spec_version,
            unrecognized_fields=f.rest(),
            **cast(Any, sections),
        )

    @classmethod
    def empty(
        cls,
        *,
        scope: ReportScope,
        issuer: str,
        group_id: str,
        period: Period,
        generated_at: datetime,
        manifest_version: int,
        members: Iterable[str],
    ) -> TransparencyReport:
        """A report with every count zero (the start of a count, or a period with nothing in it)."""
        return cls(
            scope=scope,
            issuer=issuer,
            group_id=group_id,
            period=period,
            generated_at=generated_at,
            manifest_version=manifest_version,
            members=tuple(sorted(set(members))),
            **cast(Any, {name: kind.zero() for name, kind in _SECTIONS.items()}),
        )


# -- verification and the group sum -----------------------------------------------------------


def verify_member_report(
    document: SignedDocument[TransparencyReport], manifest: Manifest, *, period: str | None = None
) -> TransparencyReport:
    """Return the report if a member of ``manifest`` signed it; raise a typed error otherwise.

    1. It is a node's own report (``ReportMismatch`` for a group report).
    2. It is for the manifest's group and, when given, for ``period`` (``ReportMismatch``).
    3. Its issuer is listed in the manifest, whatever its status now (``ReportNotFromMember``):
       a member suspended since still reports the period it took part in.
    4. It carries a valid signature by that member's signing key (``ReportSignatureError``).
    """
    report = document.payload
    if report.scope is not ReportScope.NODE:
        raise ReportMismatch(
            f"report by {report.issuer!r} is a {report.scope.value} report, expected a node's own"
        )
    if report.group_id != manifest.group_id:
        raise ReportMismatch(
            f"report by {report.issuer!r} is for group {report.group_id!r}, the manifest is for {manifest.group_id!r}"
        )
    if period is not None and report.period.label != period:
        raise ReportMismatch(
            f"report by {report.issuer!r} is for period {report.period.label}, expected {period}"
        )
    member = manifest.member(report.issuer)
    if member is None:
        listed = ", ".join(m.node_id for m in manifest.joint_use.members)
        raise ReportNotFromMember(
            f"report by {report.issuer!r}: not a member in manifest version {manifest.version} (members: {listed})"
        )
    try:
        document.verify([member.signing_key], threshold=1)
    except ThresholdError as e:
        result = document.verification_result([member.signing_key], 1)
        raise ReportSignatureError(
            f"report by {report.issuer!r} is not signed by its key {member.signing_key.keyid[:16]} "
            f"in manifest version {manifest.version} ({result})"
        ) from e
    return report


def aggregate(reports: Sequence[TransparencyReport], *, manifest_version: int) -> TransparencyReport:
    """The group report: every count summed over members' node reports of one group and period.

    The reports must be node reports (verify them first with ``verify_member_report``), all of
    the same group and period, and from distinct members. The group report's ``generated_at``
    is the earliest of the members' (its counts are complete only if every member's are).
    """
    if not reports:
        raise ReportMismatch("no member report to add up")
    first = reports[0]
    seen: dict[str, int] = {}
    for i, report in enumerate(reports):
        if report.scope is not ReportScope.NODE:
            raise ReportMismatch(f"report {i} by {report.issuer!r} is a {report.scope.value} report")
        if (report.group_id, report.period.label) != (first.group_id, first.period.label):
            raise ReportMismatch(
                f"report {i} by {report.issuer!r} is for {report.group_id}/{report.period.label}, "
                f"report 0 for {first.group_id}/{first.period.label}"
            )
        if report.issuer in seen:
            raise ReportMismatch(f"reports {seen[report.issuer]} and {i} are both by {report.issuer!r}")
        seen[report.issuer] = i
    total = TransparencyReport.empty(
        scope=ReportScope.GROUP,
        issuer=first.group_id,
        group_id=first.group_id,
        period=first.period,
        generated_at=min(r.generated_at for r in reports),
        manifest_version=manifest_version,
        members=seen,
    )
    sums: dict[str, _Counts] = total.sections()
    for report in reports:
        sums = {name: section.plus(report.sections()[name]) for name, section in sums.items()}
    return replace(total, **cast(Any, sums))


def totals(tally: Mapping[str, int]) -> int:
    """The sum of a tally (e.g. all deletions whatever their reason)."""
    return sum(tally.values())
