"""Staff judgements on alerts, members' feedback on our entries, and complaints: small registers.

A false match is the most important thing an owner can learn about an entry, so an operator's
verdict on an alert is kept with the alert and, for another member's entry, sent to the owner,
who counts verdicts per entry for its officer and its transparency report. Complaints (Art. 40)
are taken from the public and from staff, tracked to an outcome and counted.
"""

from __future__ import annotations

import secrets
from datetime import datetime
from threading import RLock
from typing import Any

from sqlalchemy import func
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from governance.requests import COMPLAINT_CATEGORIES, COMPLAINT_CHANNELS, COMPLAINT_OUTCOMES, DEFAULT_DEADLINE
from node.records.alert_faces import erase_crops_in
from node.records.auditlog import append_audit
from node.records.registry import EntryNotFound, WrongState
from node.records.vault import Vault
from node.storage.models import Alert, Complaint, EntryRow, MatchFeedbackRow
from protocol.errors import MalformedError
from protocol.fields import format_time, parse_time

__all__ = [
    "COMPLAINT_DEADLINE",
    "close_complaint",
    "complaint_due",
    "complaint_view",
    "feedback_counts",
    "list_complaints",
    "record_complaint",
    "record_feedback",
    "review_alert",
]

MAX_SUMMARY = 2000
COMPLAINT_DEADLINE = DEFAULT_DEADLINE
"""Art. 40 asks for prompt handling and names no period; a complaint is held to the outer limit the
node keeps for data-subject requests, so staff see the same kind of deadline in both queues."""


def review_alert(
    engine: Engine,
    lock: RLock,
    *,
    alert_id: str,
    outcome: str,
    staff: str,
    now: datetime,
    vault: Vault | None = None,
) -> Alert:
    """Mark an open alert confirmed or a false match; return it (for the feedback to its owner).

    A false match was a passer-by: with ``vault`` the camera's face crops of the alert are erased
    in the same transaction (``alert.face_erase false-match``), not kept for the review window."""
    if outcome not in ("confirmed", "false-match"):
        raise MalformedError(f"review outcome {outcome!r:.30}: confirmed or false-match")
    with lock, Session(engine, expire_on_commit=False) as session:
        alert = session.get(Alert, alert_id)
        if alert is None:
            raise EntryNotFound(f"no alert {alert_id!r}")
        if alert.status != "open":
            raise WrongState(f"alert {alert_id} is {alert.status}; only an open alert is reviewed")
        alert.status = outcome
        session.add(alert)
        append_audit(session, actor=staff, action="alert.review", target=alert_id, outcome=outcome, now=now)
        if outcome == "false-match" and vault is not None:
            erase_crops_in(session, vault, alert_id, "false-match", now, actor=staff)
        session.commit()
        return alert


def record_feedback(
    engine: Engine,
    lock: RLock,
    *,
    origin: str,
    alert_id: str,
    entry_id: str,
    entry_version: int,
    outcome: str,
    now: datetime,
) -> str:
    """Keep a verdict on one of our entries (from our staff or a member's); once per (origin, alert)."""
    with lock, Session(engine) as session:
        if session.get(EntryRow, entry_id) is None:
            raise EntryNotFound(f"feedback about {entry_id!r}, which is not an entry of this node")
        existing = session.exec(
            select(MatchFeedbackRow).where(
                MatchFeedbackRow.origin == origin, MatchFeedbackRow.alert_id == alert_id
            )
        ).first()
        if existing is not None:
            return existing.id
        feedback_id = f"fbk-{secrets.token_hex(10)}"
        session.add(
            MatchFeedbackRow(
                id=feedback_id,
                origin=origin,
                alert_id=alert_id,
                entry_id=entry_id,
                entry_version=entry_version,
                outcome=outcome,
                received_at=now,
            )
        )
        append_audit(
            session,
            actor=f"peer:{origin}",
            action="entry.feedback",
            target=entry_id,
            outcome=outcome,
            now=now,
        )
        session.commit()
        return feedback_id


def feedback_counts(engine: Engine) -> dict[str, dict[str, int]]:
    """Per entry of ours: how many alerts on it were judged false matches, and how many confirmed."""
    with Session(engine) as session:
        rows = session.exec(
            select(MatchFeedbackRow.entry_id, MatchFeedbackRow.outcome, func.count()).group_by(
                col(MatchFeedbackRow.entry_id), col(MatchFeedbackRow.outcome)
            )
        ).all()
    counts: dict[str, dict[str, int]] = {}
    for entry_id, outcome, n in rows:
        counts.setdefault(entry_id, {"false-match": 0, "confirmed": 0})[outcome] = int(n)
    return counts


def record_complaint(
    engine: Engine,
    lock: RLock,
    *,
    channel: str,
    category: str,
    summary: str,
    contact: str | None,
    recorded_by: str,
    now: datetime,
) -> dict[str, Any]:
    if channel not in COMPLAINT_CHANNELS:
        raise MalformedError(f"complaint channel {channel!r:.30}: one of {sorted(COMPLAINT_CHANNELS)}")
    if category not in COMPLAINT_CATEGORIES:
        raise MalformedError(f"complaint category {category!r:.30}: one of {sorted(COMPLAINT_CATEGORIES)}")
    if not summary.strip() or len(summary) > MAX_SUMMARY:
        raise MalformedError(f"complaint summary: 1..{MAX_SUMMARY} characters")
    complaint = Complaint(
        id=f"cmp-{secrets.token_hex(10)}",
        channel=channel,
        category=category,
        summary=summary.strip(),
        contact=contact,
        received_at=now,
        recorded_by=recorded_by,
    )
    with lock, Session(engine, expire_on_commit=False) as session:
        session.add(complaint)
        append_audit(
            session,
            actor=recorded_by,
            action="complaint.record",
            target=complaint.id,
            outcome=category,
            now=now,
        )
        session.commit()
    return complaint_view(complaint)


def close_complaint(
    engine: Engine, lock: RLock, *, complaint_id: str, outcome: str, note: str, staff: str, now: datetime
) -> dict[str, Any]:
    if outcome not in COMPLAINT_OUTCOMES:
        raise MalformedError(f"complaint outcome {outcome!r:.30}: one of {sorted(COMPLAINT_OUTCOMES)}")
    if not note.strip():
        raise MalformedError("closing a complaint needs a note saying what was done or why not")
    with lock, Session(engine, expire_on_commit=False) as session:
        complaint = session.get(Complaint, complaint_id)
        if complaint is None:
            raise EntryNotFound(f"no complaint {complaint_id!r}")
        if complaint.status != "open":
            raise WrongState(f"complaint {complaint_id} is already {complaint.status}")
        if complaint.referral is not None:
            raise WrongState(
                f"complaint {complaint_id} was referred by the organisation: it is closed by answering it"
            )
        complaint.status, complaint.outcome, complaint.note = "closed", outcome, note.strip()[:500]
        complaint.closed_at, complaint.closed_by = now, staff
        session.add(complaint)
        append_audit(
            session, actor=staff, action="complaint.close", target=complaint_id, outcome=outcome, now=now
        )
        session.commit()
        return complaint_view(complaint)


def list_complaints(engine: Engine, status: str | None = None) -> list[dict[str, Any]]:
    with Session(engine) as session:
        query = select(Complaint).order_by(col(Complaint.received_at))
        if status is not None:
            query = query.where(Complaint.status == status)
        return [complaint_view(c) for c in session.exec(query).all()]


def complaint_due(view: dict[str, Any], now: datetime) -> tuple[datetime, bool]:
    """When a complaint (as ``complaint_view`` shows it) is due, and whether it is open past that:
    the organisation's answer deadline for one it referred, else ``COMPLAINT_DEADLINE`` after receipt."""
    if view.get("answer_by"):
        deadline = parse_time(view["answer_by"])
    else:
        deadline = parse_time(view["received_at"]) + COMPLAINT_DEADLINE
    return deadline, view["status"] == "open" and now > deadline


def complaint_view(c: Complaint) -> dict[str, Any]:
    return {
        "id": c.id,
        "channel": c.channel,
        "category": c.category,
        "summary": c.summary,
        "contact": c.contact,
        "received_at": format_time(c.received_at),
        "recorded_by": c.recorded_by,
        "status": c.status,
        "outcome": c.outcome,
        "note": c.note,
        "closed_at": format_time(c.closed_at) if c.closed_at else None,
        "referred": c.referral is not None,
        "answer_by": format_time(c.answer_by) if c.answer_by else None,
        "answered": c.answer is not None,
        "answer_attempts": c.answer_attempts,
        "answer_error": c.answer_error,
        "answer_delivered_at": format_time(c.answer_delivered_at) if c.answer_delivered_at else None,
    }
