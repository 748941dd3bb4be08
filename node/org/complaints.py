"""The organisation's own complaint register (Art. 40): one JSON file per complaint, no database.

The certified privacy organisation takes complaints about any member, from the public (through
``watchnet gov serve``) and from its own staff (``watchnet gov complaints``). It runs no node, so
the register is a directory of files written atomically; closing rewrites the file with the
outcome and a note.

A complaint about a member can be referred to it (``refer_complaint``): the signed
``complaint-referral`` is kept in the file under ``referral`` with its delivery state (attempts,
the last error, when it arrived), which ``gov serve`` retries until the member takes it. The
member's signed ``complaint-answer``, verified by the server, is kept under ``answer``. Every
change is a read, a change and an atomic rewrite under one lock, so the console, the delivery
loop and an arriving answer never lose each other's writes (one ``gov serve`` process per register).
"""

from __future__ import annotations

import json
import secrets
import threading
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from governance.requests import COMPLAINT_CATEGORIES, COMPLAINT_CHANNELS, COMPLAINT_OUTCOMES
from node.files import write_atomic
from node.records.registry import EntryNotFound, WrongState
from protocol.canonical import canonical_bytes
from protocol.complaint import ComplaintAnswer, ComplaintReferral
from protocol.errors import MalformedError, PolicyError
from protocol.fields import format_time, parse_time
from protocol.signed import SignedDocument

__all__ = [
    "AlreadyAnswered",
    "AlreadyReferred",
    "ComplaintClosed",
    "NoReferralKey",
    "NotReferred",
    "UnknownComplaint",
    "close_complaint",
    "count_open",
    "file_complaint",
    "list_complaints",
    "read_complaint",
    "record_answer",
    "record_delivery",
    "refer_complaint",
    "undelivered_referrals",
]

MAX_SUMMARY = 2000
_LOCK = threading.RLock()
"""One writer at a time on the register's files (the console, the delivery loop, answers)."""


class ComplaintClosed(WrongState):
    """Closing a closed complaint (409, as a node answers ``wrong_state``)."""


class NoReferralKey(PolicyError):
    """``gov serve`` holds no online key of the organisation (``--witness-key``) to sign a referral."""

    code = "no_referral_key"


class UnknownComplaint(EntryNotFound):
    """No complaint of that id in the register."""

    code = "unknown_complaint"


class AlreadyReferred(WrongState):
    """Referring a complaint a second time: the member holds the first referral."""

    code = "already_referred"


class NotReferred(WrongState):
    """An answer to a complaint this register never referred to that member."""

    code = "not_referred"


class AlreadyAnswered(WrongState):
    """A second, different answer to a complaint the member already answered."""

    code = "already_answered"


def _path(directory: Path, complaint_id: str) -> Path:
    if not complaint_id.startswith("cmp-") or not complaint_id[4:].isalnum():
        raise MalformedError(f"{complaint_id!r:.40} is not a complaint id")
    return directory / f"{complaint_id}.json"


def file_complaint(
    directory: Path,
    *,
    channel: str,
    category: str,
    summary: str,
    contact: str | None,
    member: str | None,
    now: datetime,
) -> dict[str, Any]:
    if channel not in COMPLAINT_CHANNELS:
        raise MalformedError(f"channel {channel!r:.30}: one of {sorted(COMPLAINT_CHANNELS)}")
    if category not in COMPLAINT_CATEGORIES:
        raise MalformedError(f"category {category!r:.30}: one of {sorted(COMPLAINT_CATEGORIES)}")
    if not summary.strip() or len(summary) > MAX_SUMMARY:
        raise MalformedError(f"summary: 1..{MAX_SUMMARY} characters")
    complaint_id = f"cmp-{secrets.token_hex(10)}"
    complaint: dict[str, Any] = {
        "id": complaint_id,
        "channel": channel,
        "category": category,
        "summary": summary.strip(),
        "contact": contact,
        "about_member": member,
        "received_at": format_time(now),
        "status": "open",
        "outcome": None,
        "note": None,
        "closed_at": None,
    }
    write_atomic(
        _path(directory, complaint_id),
        json.dumps(complaint, ensure_ascii=False, indent=2).encode(),
        mode=0o600,
    )
    return complaint


def list_complaints(directory: Path, status: str | None = None) -> list[dict[str, Any]]:
    items = [json.loads(p.read_text(encoding="utf-8")) for p in sorted(directory.glob("cmp-*.json"))]
    items = [c for c in items if status is None or c["status"] == status]
    return sorted(items, key=lambda c: c["received_at"])


def count_open(directory: Path, *, channel: str) -> int:
    """How many complaints that came through ``channel`` are still open (unreadable files count as
    open: ``gov serve`` uses this to cap the register, and must not be talked past it)."""
    count = 0
    for path in directory.glob("cmp-*.json"):
        try:
            complaint = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            count += 1
            continue
        if not isinstance(complaint, dict):
            count += 1
        elif complaint.get("channel") == channel and complaint.get("status") == "open":
            count += 1
    return count


def read_complaint(directory: Path, complaint_id: str) -> dict[str, Any]:
    path = _path(directory, complaint_id)
    try:
        complaint: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as e:
        raise UnknownComplaint(f"no complaint {complaint_id} in the register") from e
    return complaint


def _update(directory: Path, complaint_id: str, change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    with _LOCK:
        complaint = read_complaint(directory, complaint_id)
        change(complaint)
        write_atomic(
            _path(directory, complaint_id),
            json.dumps(complaint, ensure_ascii=False, indent=2).encode(),
            mode=0o600,
        )
        return complaint


def close_complaint(
    directory: Path, complaint_id: str, *, outcome: str, note: str, now: datetime
) -> dict[str, Any]:
    if outcome not in COMPLAINT_OUTCOMES:
        raise MalformedError(f"outcome {outcome!r:.30}: one of {sorted(COMPLAINT_OUTCOMES)}")
    if not note.strip():
        raise MalformedError("closing a complaint needs a note saying what was done or why not")

    def close(complaint: dict[str, Any]) -> None:
        if complaint["status"] != "open":
            raise ComplaintClosed(f"complaint {complaint_id} is already {complaint['status']}")
        complaint.update(
            status="closed", outcome=outcome, note=note.strip()[:500], closed_at=format_time(now)
        )

    return _update(directory, complaint_id, close)


def refer_complaint(
    directory: Path,
    complaint_id: str,
    *,
    group_id: str,
    manifest_version: int,
    summary: str | None,
    days: int,
    staff: str,
    sign: Callable[[ComplaintReferral], SignedDocument[ComplaintReferral]],
    now: datetime,
) -> dict[str, Any]:
    """Sign a ``complaint-referral`` of an open complaint about a member and keep it, undelivered.

    ``summary`` replaces the complainant's words when the secretariat sends a summary instead;
    the complainant's contact is never sent. The answer is asked for within ``days``."""
    if not 1 <= days <= 90:
        raise MalformedError(f"answer deadline: 1..90 days, got {days}")

    def refer(complaint: dict[str, Any]) -> None:
        if complaint["status"] != "open":
            raise ComplaintClosed(
                f"complaint {complaint_id} is {complaint['status']}; only an open one is referred"
            )
        if complaint.get("referral"):
            raise AlreadyReferred(
                f"complaint {complaint_id} was referred to {complaint['about_member']} already"
            )
        member = complaint.get("about_member")
        if not member:
            raise MalformedError(f"complaint {complaint_id} names no member to refer it to")
        text = (summary or "").strip() or complaint["summary"]
        document = sign(
            ComplaintReferral(
                group_id=group_id,
                complaint_id=complaint_id,
                member=member,
                category=complaint["category"],
                summary=text[:MAX_SUMMARY],
                received_at=parse_time(complaint["received_at"]),
                answer_by=now + timedelta(days=days),
                referred_at=now,
                manifest_version=manifest_version,
            )
        )
        complaint["referral"] = {
            "document": document.to_dict(),
            "member": member,
            "summary_sent": text != complaint["summary"],
            "referred_at": format_time(now),
            "referred_by": staff,
            "answer_by": format_time(now + timedelta(days=days)),
            "attempts": 0,
            "last_attempt_at": None,
            "last_error": None,
            "delivered_at": None,
        }

    return _update(directory, complaint_id, refer)


def undelivered_referrals(directory: Path) -> list[dict[str, Any]]:
    """Complaints whose referral the member has not yet confirmed (open or closed since)."""
    if not directory.exists():
        return []
    return [
        c
        for c in list_complaints(directory)
        if c.get("referral") and c["referral"].get("delivered_at") is None
    ]


def record_delivery(
    directory: Path, complaint_id: str, *, error: str | None, now: datetime
) -> dict[str, Any]:
    """One delivery attempt of a referral: ``error`` ``None`` when the member took it."""

    def settle(complaint: dict[str, Any]) -> None:
        referral = complaint["referral"]
        referral["attempts"] = int(referral.get("attempts", 0)) + 1
        referral["last_attempt_at"] = format_time(now)
        referral["last_error"] = error
        if error is None and referral.get("delivered_at") is None:
            referral["delivered_at"] = format_time(now)

    return _update(directory, complaint_id, settle)


def record_answer(
    directory: Path, document: SignedDocument[ComplaintAnswer], *, now: datetime
) -> tuple[dict[str, Any], bool]:
    """Keep a member's verified answer; return the complaint and whether it is new.

    The same signed answer again (the member retrying after a lost reply) changes nothing; a
    different one for an answered complaint is refused (``already_answered``)."""
    answer = document.payload

    def keep(complaint: dict[str, Any]) -> None:
        referral = complaint.get("referral")
        if not referral or referral.get("member") != answer.member:
            raise NotReferred(f"complaint {answer.complaint_id} was not referred to {answer.member}")
        held = complaint.get("answer")
        if held is not None:
            if canonical_bytes(held["document"]) == document.to_bytes():
                raise _Duplicate
            raise AlreadyAnswered(f"{answer.member} already answered complaint {answer.complaint_id}")
        complaint["answer"] = {
            "document": document.to_dict(),
            "outcome": answer.outcome,
            "text": answer.answer,
            "answered_at": format_time(answer.answered_at),
            "received_at": format_time(now),
        }
        if referral.get("delivered_at") is None:  # the member answered, so it has the referral
            referral["delivered_at"] = format_time(now)

    try:
        return _update(directory, answer.complaint_id, keep), True
    except _Duplicate:
        return read_complaint(directory, answer.complaint_id), False


class _Duplicate(Exception):
    """The answer held is this one: nothing to write."""
