"""The organisation's own complaint register (Art. 40): one JSON file per complaint, no database.

The certified privacy organisation takes complaints about any member, from the public (through
``watchnet gov serve``) and from its own staff (``watchnet gov complaints``). It runs no node, so
the register is a directory of files written atomically; closing rewrites the file with the
outcome and a note.
"""

from __future__ import annotations

import json
import secrets
from datetime import datetime
from pathlib import Path
from typing import Any

from governance.requests import COMPLAINT_CATEGORIES, COMPLAINT_CHANNELS, COMPLAINT_OUTCOMES
from node.files import write_atomic
from node.records.registry import WrongState
from protocol.errors import MalformedError
from protocol.fields import format_time

__all__ = ["close_complaint", "count_open", "file_complaint", "list_complaints"]

MAX_SUMMARY = 2000


class ComplaintClosed(WrongState):
    """Closing a closed complaint (409, as a node answers ``wrong_state``)."""


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


def close_complaint(
    directory: Path, complaint_id: str, *, outcome: str, note: str, now: datetime
) -> dict[str, Any]:
    if outcome not in COMPLAINT_OUTCOMES:
        raise MalformedError(f"outcome {outcome!r:.30}: one of {sorted(COMPLAINT_OUTCOMES)}")
    if not note.strip():
        raise MalformedError("closing a complaint needs a note saying what was done or why not")
    path = _path(directory, complaint_id)
    try:
        complaint: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as e:
        raise MalformedError(f"no complaint {complaint_id} in {directory}") from e
    if complaint["status"] != "open":
        raise ComplaintClosed(f"complaint {complaint_id} is already {complaint['status']}")
    complaint.update(status="closed", outcome=outcome, note=note.strip()[:500], closed_at=format_time(now))
    write_atomic(path, json.dumps(complaint, ensure_ascii=False, indent=2).encode(), mode=0o600)
    return complaint
