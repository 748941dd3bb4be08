"""Count what this node did in a period, from its own records, into a signed ``TransparencyReport``.

Every count comes from a record that does not change once written, so the report of a closed
period is the same whenever it is made: the signed event log (registrations, corrections,
deletions and expiries, at the time signed into the event), the hash-chained audit log (queries,
matches, verdicts, refusals), and the registers kept to closure (rejected proposals, data-subject
requests, complaints, members' feedback, third-party provisions). Alert rows are not used: an
alert on an entry is erased with the entry, so they undercount the past.

An event counts in the period ``[start, end)`` that contains the time it happened:

================================  ==============================================================
entries.proposed                  ``entry.proposed_at``
entries.approved                  ``registered`` events (``occurred_at`` in the signed leaf)
entries.rejected (by reason)      rejected proposals, ``entry.closed_at``
entries.corrected / deleted       ``corrected``, ``deleted`` and ``expired`` events, by their reason
entries.active_at_end             ``registered`` minus ``deleted``/``expired`` leaves before the end
queries.sent (by purpose)         audit ``POST /v1/query`` answered 200 with at least one face, and
                                  ``POST /v1/requests/{id}/search`` answered 200 (data-subject-request)
queries.answered / refused        audit ``POST /v1/peer/query``: 200, or ``refused:<code>``
matches.local_hits                the ``hits=K`` of each local match (``POST /v1/match``)
matches.network_hits              the ``hits=K`` of each query sent (hits members returned to us)
matches.answered_hits             the ``hits=K`` of each member's query this node answered, in the
                                  clear (``POST /v1/peer/query``) or privately (``.../private/reveal``)
matches.reviews                   audit ``alert.review`` (one per alert: only an open alert is reviewed)
matches.feedback_received         ``match_feedback`` from other members, ``received_at``
refusals.requests                 audit records of API requests (``METHOD /path``) ``refused:<code>``
                                  (a coalesced record, target ``repeats=N``, counts N), except a
                                  ``GET``/``HEAD`` refused ``unauthenticated``: a page, favicon or URL
                                  loaded before sign-in, with no credentials to refuse (``anonymous_reads``)
refusals.peer_data                audit ``peer.*`` / ``manifest.*`` records ``refused:<code>``
provisions                        ``provision.received_at``
subject_requests                  ``received_at`` (received), ``closed_at`` (closed, grounds, late)
subject_requests.forwards         audit ``POST /v1/peer/subject-request``: ``ok:200`` by its
                                  ``forward=opened|merged|repeated``, or ``refused:forward_rate_limited``
                                  / ``refused:forward_conflict``
complaints                        ``received_at`` (received, channels), ``closed_at`` (closed)
================================  ==============================================================

A refusal inside the registry is audited twice (the domain action and the HTTP request that
carried it); only the HTTP record is counted. "At the end" means the end of the period; for a
period not yet ended that is everything so far, except that "overdue" is judged now. Reads that
the node audits in batches (matches, peer queries) reach the audit log within a fraction of a
second, so a report made at that moment may not count the last one yet.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from datetime import datetime, timedelta

from sqlalchemy import func
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, or_, select

from governance.report import (
    KEY_RE,
    ComplaintCounts,
    EntryCounts,
    MatchCounts,
    Period,
    ProvisionCounts,
    QueryCounts,
    RefusalCounts,
    ReportScope,
    RequestCounts,
    Tally,
    TransparencyReport,
)
from governance.requests import (
    COMPLAINT_CATEGORIES,
    COMPLAINT_OUTCOMES,
    RefusalGround,
    RequestKind,
    RequestOutcome,
)
from node.records.auditlog import REPEATS_PREFIX
from node.storage.models import (
    AuditRecord,
    Complaint,
    EntryRow,
    LogLeaf,
    MatchFeedbackRow,
    OwedReceipt,
    ProvisionRow,
    SubjectRequest,
)
from protocol.events import ALLOWED_REASONS, EntryEvent, EventKind
from protocol.keys import SigningKey
from protocol.signed import SignedDocument

__all__ = [
    "build_report",
    "count_audit",
    "count_complaints",
    "count_entries",
    "count_forwards",
    "count_provisions",
    "count_subject_requests",
    "signed_report",
]

QUERY_ACTION = "POST /v1/query"
PEER_QUERY_ACTION = "POST /v1/peer/query"
MATCH_ACTION = "POST /v1/match"
REVEAL_ACTION = "POST /v1/peer/private/reveal"
SEARCH_ACTION = "POST /v1/requests/{request_id}/search"
REVIEW_ACTION = "alert.review"
OK = "ok:200"
REFUSED = "refused:"
FORWARDED = "forwarded-by-"
FORWARDS = "forwards"
"""``subject_requests.forwards``: carried as a field ``RequestCounts`` does not declare yet, so it is
signed and kept by any reader and left out of a group's sum; declaring it there makes it a count."""
FORWARD_ACTION = "POST /v1/peer/subject-request"
FORWARD_RESULTS = {
    "opened": "opened",
    "merged": "merged",
    "repeated": "repeated",
    "refused:forward_rate_limited": "rate_limited",
    "refused:forward_conflict": "conflict",
}
"""What a member's forward did (its audit ``forward=...``, or the refusal) -> its key in ``forwards``."""
UNAUTHENTICATED = "unauthenticated"
READS = ("GET ", "HEAD ")
"""A read refused ``unauthenticated`` is a browser or crawler loading a URL before sign-in (the root,
a favicon, a bookmarked API link): nothing was attempted, so it is not a refusal of a request."""
PEER_DATA_PREFIXES = ("peer.", "manifest.")
"""Non-request audit actions whose refusals are the node's own (of data it fetched), not echoes."""
_HTTP_RE = re.compile(r"(GET|HEAD|POST|PUT|PATCH|DELETE) /")
_PURPOSE_RE = re.compile(r"(?:^|\s)purpose=(\S+)")
_FACES_RE = re.compile(r"(?:^|\s)faces=(\d+)")
_HITS_RE = re.compile(r"(?:^|\s)hits=(\d+)")
_REPEATS_RE = re.compile(rf"^{REPEATS_PREFIX}(\d+)$")
"""A coalesced refusal record stands for that many refusals (``RefusalTally``)."""
_FORWARD_RE = re.compile(r"^forward=(\S+)")
OTHER = "other"
"""The key for a stored code that is not a valid tally key (never expected; counted, not dropped)."""


def _key(code: str | None) -> str:
    return code if code is not None and KEY_RE.fullmatch(code) else OTHER


def _tally(counter: Counter[str], known: Iterable[str] = ()) -> Tally:
    """A tally with every ``known`` code (zero when nothing happened) and whatever else was counted."""
    out = {code: 0 for code in known}
    out.update(counter)
    return dict(sorted(out.items()))


def _int(pattern: re.Pattern[str], text: str) -> int:
    m = pattern.search(text)
    return int(m.group(1)) if m else 0


def _overdue_at(period: Period, now: datetime) -> datetime:
    """When "overdue at the end" is judged: the end of the period, or now if it has not ended."""
    return min(period.end, now)


# -- entries ----------------------------------------------------------------------------------

_DELETION_REASONS = sorted(
    r.value for r in ALLOWED_REASONS[EventKind.DELETED] | ALLOWED_REASONS[EventKind.EXPIRED]
)
_CORRECTION_REASONS = sorted(r.value for r in ALLOWED_REASONS[EventKind.CORRECTED])
_EVENT_KINDS = [k.value for k in EventKind]
LEAF_MARGIN = timedelta(minutes=1)
"""Leaves read around the period: the signed ``occurred_at`` decides, the row's time only narrows the read."""


def _leaves_before(session: Session, kinds: list[EventKind], t: datetime) -> int:
    """Events of ``kinds`` that happened before ``t`` (a whole second: the leaf is written in the
    second its signed ``occurred_at`` names, so comparing the row's time is the same test)."""
    return int(
        session.exec(
            select(func.count())
            .select_from(LogLeaf)
            .where(col(LogLeaf.kind).in_([k.value for k in kinds]), col(LogLeaf.created_at) < t)
        ).one()
    )


def count_entries(session: Session, period: Period) -> EntryCounts:
    """Proposals, approvals, rejections, corrections and deletions, each at the time it happened."""
    proposed = session.exec(
        select(EntryRow.entry_id).where(
            col(EntryRow.proposed_at) >= period.start, col(EntryRow.proposed_at) < period.end
        )
    ).all()
    rejected: Counter[str] = Counter(
        _key(reason)
        for reason in session.exec(
            select(EntryRow.reason).where(
                EntryRow.status == "rejected",
                col(EntryRow.closed_at) >= period.start,
                col(EntryRow.closed_at) < period.end,
            )
        ).all()
    )
    approved = 0
    corrected: Counter[str] = Counter()
    deleted: Counter[str] = Counter()
    leaves = session.exec(
        select(LogLeaf.leaf)
        .where(col(LogLeaf.kind).in_(_EVENT_KINDS))
        .where(
            col(LogLeaf.created_at) >= period.start - LEAF_MARGIN,
            col(LogLeaf.created_at) < period.end + LEAF_MARGIN,
        )
        .order_by(col(LogLeaf.idx))
    ).all()
    for leaf in leaves:
        event = SignedDocument.from_bytes(leaf, EntryEvent).payload
        if not period.contains(event.occurred_at):
            continue
        if event.kind is EventKind.REGISTERED:
            approved += 1
        elif event.kind is EventKind.CORRECTED:
            corrected[event.reason.value] += 1
        else:
            deleted[event.reason.value] += 1
    return EntryCounts(
        proposed=len(proposed),
        approved=approved,
        rejected=_tally(rejected),
        corrected=_tally(corrected, _CORRECTION_REASONS),
        deleted=_tally(deleted, _DELETION_REASONS),
        active_at_end=_leaves_before(session, [EventKind.REGISTERED], period.end)
        - _leaves_before(session, [EventKind.DELETED, EventKind.EXPIRED], period.end),
    )


def owed_receipts(session: Session) -> Tally:
    """Receipts still owed us now, by member: the open ``owed_receipt`` rows (``node.federation.owed``)."""
    rows = session.exec(select(OwedReceipt.member, func.count()).group_by(col(OwedReceipt.member))).all()
    return {member: int(count) for member, count in sorted(rows) if count}


# -- the audit log ----------------------------------------------------------------------------


def count_audit(session: Session, period: Period) -> tuple[QueryCounts, MatchCounts, RefusalCounts]:
    """Queries, hits, staff verdicts and refusals, from the audit records written in the period."""
    rows = session.exec(
        select(AuditRecord.action, AuditRecord.target, AuditRecord.outcome)
        .where(col(AuditRecord.at) >= period.start, col(AuditRecord.at) < period.end)
        .where(
            or_(
                col(AuditRecord.outcome).startswith(REFUSED),
                col(AuditRecord.action).in_(
                    [
                        QUERY_ACTION,
                        PEER_QUERY_ACTION,
                        REVEAL_ACTION,
                        MATCH_ACTION,
                        SEARCH_ACTION,
                        REVIEW_ACTION,
                    ]
                ),
            )
        )
        .order_by(col(AuditRecord.seq))
    ).all()
    sent: Counter[str] = Counter()
    answered: Counter[str] = Counter()
    query_refusals: Counter[str] = Counter()
    reviews: Counter[str] = Counter()
    request_refusals: Counter[str] = Counter()
    data_refusals: Counter[str] = Counter()
    faces_sent = faces_answered = local_searches = local_hits = network_hits = answered_hits = 0
    for action, target, outcome in rows:
        if outcome.startswith(REFUSED):
            code = _key(outcome[len(REFUSED) :])
            times = _int(_REPEATS_RE, target) or 1
            if _HTTP_RE.match(action):
                if code == UNAUTHENTICATED and action.startswith(READS):
                    continue  # a page loaded before sign-in, not a refused request
                request_refusals[code] += times
                if action == PEER_QUERY_ACTION:
                    query_refusals[code] += times
            elif action.startswith(PEER_DATA_PREFIXES):
                data_refusals[code] += times
            continue
        if action == REVIEW_ACTION:
            reviews[_key(outcome)] += 1
        elif outcome != OK:
            continue
        elif action == QUERY_ACTION:
            faces = _int(_FACES_RE, target)
            if faces == 0:
                continue  # no face in the frame: nothing was sent
            purpose = _PURPOSE_RE.search(target)
            sent[_key(purpose.group(1) if purpose else None)] += 1
            faces_sent += faces
            network_hits += _int(_HITS_RE, target)
        elif action == SEARCH_ACTION:
            sent["data-subject-request"] += 1
            faces_sent += 1
        elif action == PEER_QUERY_ACTION:
            purpose = _PURPOSE_RE.search(target)
            answered[_key(purpose.group(1) if purpose else None)] += 1
            faces_answered += _int(_FACES_RE, target)
            answered_hits += _int(_HITS_RE, target)
        elif action == REVEAL_ACTION:
            answered_hits += _int(_HITS_RE, target)
        elif action == MATCH_ACTION:
            local_searches += 1
            local_hits += _int(_HITS_RE, target)
    queries = QueryCounts(
        sent=_tally(sent, ["crime-prevention"]),
        faces_sent=faces_sent,
        answered=_tally(answered, ["crime-prevention"]),
        faces_answered=faces_answered,
        refused=_tally(query_refusals),
    )
    matches = MatchCounts(
        local_searches=local_searches,
        local_hits=local_hits,
        network_hits=network_hits,
        answered_hits=answered_hits,
        reviews=_tally(reviews, ["confirmed", "false-match"]),
        feedback_received={},
    )
    refusals = RefusalCounts(requests=_tally(request_refusals), peer_data=_tally(data_refusals))
    return queries, matches, refusals


def _feedback_received(session: Session, period: Period, node_id: str) -> Tally:
    outcomes = session.exec(
        select(MatchFeedbackRow.outcome).where(
            MatchFeedbackRow.origin != node_id,
            col(MatchFeedbackRow.received_at) >= period.start,
            col(MatchFeedbackRow.received_at) < period.end,
        )
    ).all()
    return _tally(Counter(_key(o) for o in outcomes), ["confirmed", "false-match"])


# -- registers --------------------------------------------------------------------------------


def count_provisions(session: Session, period: Period) -> ProvisionCounts:
    rows = session.exec(
        select(ProvisionRow).where(
            col(ProvisionRow.received_at) >= period.start, col(ProvisionRow.received_at) < period.end
        )
    ).all()
    provided = [r for r in rows if r.outcome == "provided"]
    return ProvisionCounts(
        received=_tally(Counter(_key(r.requester_kind) for r in rows)),
        provided=_tally(Counter(_key(r.legal_basis) for r in provided)),
        refused=_tally(Counter(_key(r.legal_basis) for r in rows if r.outcome != "provided")),
        entries_provided=sum(r.entry_count for r in provided),
    )


def count_subject_requests(session: Session, period: Period, now: datetime) -> RequestCounts:
    at_end, overdue_at = period.end, _overdue_at(period, now)
    rows = session.exec(
        select(SubjectRequest).where(
            or_(
                col(SubjectRequest.received_at) < period.end,
                col(SubjectRequest.closed_at) < period.end,
            )
        )
    ).all()
    kinds = [k.value for k in RequestKind]
    received: Counter[str] = Counter()
    forwarded_in: Counter[str] = Counter()
    closed: dict[str, Counter[str]] = {kind: Counter() for kind in kinds}
    forwarded_closed: Counter[str] = Counter()
    grounds: Counter[str] = Counter()
    closed_late = open_at_end = overdue_at_end = 0
    for r in rows:
        forwarded = r.identity_check.startswith(FORWARDED)
        if period.contains(r.received_at):
            (forwarded_in if forwarded else received)[_key(r.kind)] += 1
        if r.closed_at is not None and period.contains(r.closed_at):
            if forwarded:
                forwarded_closed[_key(r.outcome)] += 1
            else:
                closed.setdefault(_key(r.kind), Counter())[_key(r.outcome)] += 1
                if r.ground is not None:
                    grounds[_key(r.ground)] += 1
                if r.closed_at > r.deadline:
                    closed_late += 1
        if not forwarded and r.received_at < at_end and (r.closed_at is None or r.closed_at >= at_end):
            open_at_end += 1
            if r.deadline < overdue_at:
                overdue_at_end += 1
    outcomes = [o.value for o in RequestOutcome]
    return RequestCounts(
        received=_tally(received, kinds),
        closed={kind: _tally(counter) for kind, counter in sorted(closed.items())},
        refusal_grounds=_tally(grounds, [g.value for g in RefusalGround]),
        closed_late=closed_late,
        open_at_end=open_at_end,
        overdue_at_end=overdue_at_end,
        forwarded_in=_tally(forwarded_in, kinds),
        forwarded_closed=_tally(forwarded_closed, [o for o in outcomes if o != RequestOutcome.DISCLOSED]),
        unrecognized_fields={FORWARDS: count_forwards(session, period)},
    )


def count_forwards(session: Session, period: Period) -> Tally:
    """Members' forwards of data-subject requests by what they did: opened a request, merged an
    entry into one, repeated one (absorbed, nothing opened), or refused (rate limit, conflict)."""
    rows = session.exec(
        select(AuditRecord.target, AuditRecord.outcome).where(
            AuditRecord.action == FORWARD_ACTION,
            col(AuditRecord.at) >= period.start,
            col(AuditRecord.at) < period.end,
        )
    ).all()
    counts: Counter[str] = Counter()
    for target, outcome in rows:
        if outcome == OK:
            m = _FORWARD_RE.match(target)
            outcome = m.group(1) if m else "opened"  # audited before forwards were told apart
        if outcome in FORWARD_RESULTS:
            counts[FORWARD_RESULTS[outcome]] += 1
    return _tally(counts, FORWARD_RESULTS.values())


def count_complaints(session: Session, period: Period) -> ComplaintCounts:
    at_end = period.end
    rows = session.exec(
        select(Complaint).where(
            or_(col(Complaint.received_at) < period.end, col(Complaint.closed_at) < period.end)
        )
    ).all()
    received = [r for r in rows if period.contains(r.received_at)]
    closed = [r for r in rows if r.closed_at is not None and period.contains(r.closed_at)]
    return ComplaintCounts(
        received=_tally(Counter(_key(r.category) for r in received), COMPLAINT_CATEGORIES),
        channels=_tally(Counter(_key(r.channel) for r in received)),
        closed=_tally(Counter(_key(r.outcome) for r in closed), COMPLAINT_OUTCOMES),
        open_at_end=sum(
            1 for r in rows if r.received_at < at_end and (r.closed_at is None or r.closed_at >= at_end)
        ),
    )


# -- the report -------------------------------------------------------------------------------


def build_report(
    engine: Engine,
    *,
    node_id: str,
    group_id: str,
    manifest_version: int,
    period: Period,
    now: datetime,
) -> TransparencyReport:
    """This node's report for ``period`` as of ``now`` (read in one session; nothing is written)."""
    now = now.replace(microsecond=0)
    with Session(engine) as session:
        entries = count_entries(session, period)
        entries.owed_receipts = owed_receipts(session)
        queries, matches, refusals = count_audit(session, period)
        matches.feedback_received = _feedback_received(session, period, node_id)
        provisions = count_provisions(session, period)
        subject_requests = count_subject_requests(session, period, now)
        complaints = count_complaints(session, period)
    return TransparencyReport(
        scope=ReportScope.NODE,
        issuer=node_id,
        group_id=group_id,
        period=period,
        generated_at=now,
        manifest_version=manifest_version,
        members=(node_id,),
        entries=entries,
        queries=queries,
        matches=matches,
        refusals=refusals,
        provisions=provisions,
        subject_requests=subject_requests,
        complaints=complaints,
    )


def signed_report(
    engine: Engine,
    key: SigningKey,
    *,
    node_id: str,
    group_id: str,
    manifest_version: int,
    period: Period,
    now: datetime,
) -> SignedDocument[TransparencyReport]:
    """The report signed with the node's signing key (the key the manifest lists for it)."""
    document = SignedDocument(
        build_report(
            engine,
            node_id=node_id,
            group_id=group_id,
            manifest_version=manifest_version,
            period=period,
            now=now,
        )
    )
    document.sign(key)
    return document
