"""Complaints the organisation refers to this member, and this member's signed answers (Art. 40).

The certified organisation takes complaints about its members and refers one to the member it
is about with a signed ``complaint-referral`` (``POST /v1/org/complaint-referral``). It is
checked against the manifest in force alone (``verify_referral``: this group, this node, the
organisation's online key ``policy.witness.organisation.key``) and kept in the node's own
complaint register (``node.casework.registers``) under the organisation's complaint id, channel
``organisation``, with the answer deadline the organisation asked for. The same referral again
(the organisation retrying after a lost reply) changes nothing; a different one for a complaint
held is a replay and refused.

Staff answer it from the complaints page (``answer_referral``): the node signs a
``complaint-answer`` with its signing key, closes its own complaint with that outcome and keeps
the answer until the organisation confirms it (``POST <manifest_url>/v1/complaint-answers``),
sent at once and again by the node's ``complaint_answers`` duty (``node.app.server``), backing off from
30 seconds to an hour; the page shows "not yet delivered" until then.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from threading import RLock
from typing import Any

import aiohttp
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from governance.manifest import Manifest
from governance.requests import COMPLAINT_ANSWER_OUTCOMES, COMPLAINT_CATEGORIES
from node.casework.registers import complaint_view
from node.records.auditlog import append_audit
from node.records.registry import EntryNotFound, WrongState
from node.storage.models import Complaint
from protocol.canonical import canonical_bytes, parse_json
from protocol.complaint import ComplaintAnswer, ComplaintReferral
from protocol.errors import ClockSkewError, MalformedError, MisaddressedError, ReplayError, VerificationError
from protocol.keys import SigningKey
from protocol.signed import SignedDocument

__all__ = [
    "ANSWERS_INTERVAL",
    "ANSWER_PATH",
    "MAX_REFERRAL_BYTES",
    "NoOrganisationKey",
    "accept_referral",
    "answer_referral",
    "deliver_answers",
    "verify_referral",
]

LOG = logging.getLogger("watchnet.node")
MAX_REFERRAL_BYTES = 16 << 10
"""A referral: a summary of at most 2000 characters, a few fields and one signature."""
ANSWER_PATH = "/v1/complaint-answers"
"""Where the organisation (``gov serve``, at the node's ``governance.manifest_url``) takes answers."""
ANSWERS_INTERVAL = timedelta(seconds=30)
MAX_BACKOFF = timedelta(hours=1)
CLOCK_SKEW = timedelta(minutes=5)
"""How far in our future a referral's ``referred_at`` may be (the organisation's clock may run ahead)."""


class NoOrganisationKey(VerificationError):
    """The manifest in force names no online key of the organisation to check a referral with."""

    code = "no_organisation_key"


def verify_referral(
    data: Any, manifest: Manifest, node_id: str, now: datetime
) -> SignedDocument[ComplaintReferral]:
    """A ``complaint-referral`` for this node, checked against ``manifest``; raise, typed, otherwise.

    1. A signed ``complaint-referral`` (``malformed``).
    2. Of this group and addressed to this node (``misaddressed``).
    3. Signed by the organisation's online key the manifest names, ``policy.witness.organisation``
       (``no_organisation_key`` when it names none; ``bad_signature`` / ``threshold_not_met``).
    4. A category the group counts, and not referred in our future (``clock_skew``).
    """
    document = SignedDocument.from_dict(data, ComplaintReferral)
    referral = document.payload
    if referral.group_id != manifest.group_id:
        raise MisaddressedError(
            f"complaint-referral of group {referral.group_id!r}, this node is in {manifest.group_id!r}"
        )
    if referral.member != node_id:
        raise MisaddressedError(f"complaint-referral for {referral.member!r}, this node is {node_id!r}")
    organisation = manifest.policy.witness.organisation
    if organisation is None:
        raise NoOrganisationKey(
            f"manifest version {manifest.version} names no online key of the organisation "
            "(policy.witness.organisation): a referral cannot be checked"
        )
    try:
        document.verify([organisation.key], threshold=1)
    except VerificationError as e:
        raise type(e)(f"complaint-referral not signed by the organisation's key: {e}") from e
    if referral.category not in COMPLAINT_CATEGORIES:
        raise MalformedError(f"complaint-referral.category {referral.category!r:.40} is not one the group counts")
    if referral.referred_at > now + CLOCK_SKEW:
        raise ClockSkewError(f"complaint-referral referred at {referral.referred_at.isoformat()}, in our future")
    return document


def accept_referral(
    engine: Engine, lock: RLock, document: SignedDocument[ComplaintReferral], now: datetime
) -> tuple[dict[str, Any], bool]:
    """Keep a verified referral as an open complaint; return it and whether it is new."""
    referral = document.payload
    with lock, Session(engine, expire_on_commit=False) as session:
        held = session.get(Complaint, referral.complaint_id)
        if held is not None:
            if held.referral is not None and canonical_bytes(json.loads(held.referral)) == document.to_bytes():
                return complaint_view(held), False
            append_audit(
                session,
                actor="organisation",
                action="complaint.referral",
                target=referral.complaint_id,
                outcome="refused:replay",
                now=now,
            )
            session.commit()
            raise ReplayError(
                f"complaint {referral.complaint_id} is held already, from another referral; this one is refused"
            )
        complaint = Complaint(
            id=referral.complaint_id,
            channel="organisation",
            category=referral.category,
            summary=referral.summary,
            contact=None,
            received_at=now,
            recorded_by="organisation",
            referral=document.to_bytes().decode("utf-8"),
            answer_by=referral.answer_by,
        )
        session.add(complaint)
        append_audit(
            session,
            actor="organisation",
            action="complaint.referral",
            target=referral.complaint_id,
            outcome=f"ok:{referral.category}",
            now=now,
        )
        session.commit()
        return complaint_view(complaint), True


def answer_referral(
    engine: Engine,
    lock: RLock,
    *,
    complaint_id: str,
    outcome: str,
    answer: str,
    staff: str,
    key: SigningKey,
    now: datetime,
) -> dict[str, Any]:
    """Sign our answer to a referred complaint, close the complaint with it, keep it to deliver."""
    if outcome not in COMPLAINT_ANSWER_OUTCOMES:
        raise MalformedError(f"answer outcome {outcome!r:.30}: one of {sorted(COMPLAINT_ANSWER_OUTCOMES)}")
    if not answer.strip():
        raise MalformedError("an answer to the organisation needs a text saying what was done or why not")
    with lock, Session(engine, expire_on_commit=False) as session:
        complaint = session.get(Complaint, complaint_id)
        if complaint is None:
            raise EntryNotFound(f"no complaint {complaint_id!r}")
        if complaint.referral is None:
            raise WrongState(f"complaint {complaint_id} was not referred by the organisation; close it instead")
        if complaint.status != "open":
            raise WrongState(f"complaint {complaint_id} is already {complaint.status}")
        referral = SignedDocument.from_bytes(complaint.referral.encode("utf-8"), ComplaintReferral).payload
        document = SignedDocument(
            ComplaintAnswer(
                group_id=referral.group_id,
                complaint_id=complaint_id,
                member=referral.member,
                outcome=outcome,
                answer=answer.strip(),
                answered_at=now,
            )
        )
        document.sign(key)
        complaint.answer = document.to_bytes().decode("utf-8")
        complaint.status, complaint.outcome, complaint.note = "closed", outcome, answer.strip()[:500]
        complaint.closed_at, complaint.closed_by = now, staff
        session.add(complaint)
        append_audit(
            session, actor=staff, action="complaint.answer", target=complaint_id, outcome=outcome, now=now
        )
        session.commit()
        return complaint_view(complaint)


@dataclass(frozen=True)
class _Owed:
    complaint_id: str
    body: bytes
    attempts: int
    tried_at: datetime | None


def _owed(engine: Engine, now: datetime, only: str | None) -> list[_Owed]:
    with Session(engine) as session:
        query = select(Complaint).where(
            col(Complaint.answer).is_not(None), col(Complaint.answer_delivered_at).is_(None)
        )
        if only is not None:
            query = query.where(Complaint.id == only)
        owed = []
        for c in session.exec(query).all():
            wait = min(MAX_BACKOFF, ANSWERS_INTERVAL * 2 ** max(0, c.answer_attempts - 1))
            if only is None and c.answer_tried_at is not None and now < c.answer_tried_at + wait:
                continue
            owed.append(_Owed(c.id, (c.answer or "").encode("utf-8"), c.answer_attempts, c.answer_tried_at))
        return owed


def _settle(engine: Engine, lock: RLock, complaint_id: str, error: str | None, now: datetime) -> None:
    with lock, Session(engine) as session:
        complaint = session.get(Complaint, complaint_id)
        if complaint is None:
            return
        complaint.answer_attempts += 1
        complaint.answer_tried_at = now
        complaint.answer_error = None if error is None else error[:64]
        if error is None:
            complaint.answer_delivered_at = now
            append_audit(
                session,
                actor="system",
                action="complaint.answer_delivered",
                target=complaint_id,
                outcome=f"ok:attempt-{complaint.answer_attempts}",
                now=now,
            )
        session.add(complaint)
        session.commit()


async def _post(session: aiohttp.ClientSession, url: str, body: bytes) -> str | None:
    try:
        async with session.post(
            url, data=body, headers={"Content-Type": "application/json"}, timeout=aiohttp.ClientTimeout(total=10)
        ) as response:
            if response.status in (200, 201):
                return None
            try:
                answer = parse_json(await response.content.read(4096), max_bytes=4096)
                code = str(answer.get("error", ""))[:40] if isinstance(answer, dict) else ""
            except (MalformedError, aiohttp.ClientError):
                code = ""
            return f"http:{response.status}" + (f":{code}" if code else "")
    except (aiohttp.ClientError, TimeoutError, OSError) as e:
        return f"unreachable:{type(e).__name__}"


async def deliver_answers(
    engine: Engine,
    lock: RLock,
    organisation_url: str | None,
    now: datetime,
    *,
    only: str | None = None,
    session: aiohttp.ClientSession | None = None,
) -> dict[str, str | None]:
    """Send the answers owed to the organisation (those due, or just ``only`` at once); return
    each one's error (``None``: delivered)."""
    owed = await asyncio.to_thread(_owed, engine, now, only)
    if not owed:
        return {}
    results: dict[str, str | None] = {}
    own = session is None
    client = session or aiohttp.ClientSession()
    try:
        for item in owed:
            if not organisation_url:
                error: str | None = "no_manifest_url"
            else:
                error = await _post(client, organisation_url.rstrip("/") + ANSWER_PATH, item.body)
            if error is not None:
                LOG.warning(
                    "complaint answer not delivered to the organisation; will retry",
                    extra={"reference": item.complaint_id, "error": error, "attempt": item.attempts + 1},
                )
            await asyncio.to_thread(_settle, engine, lock, item.complaint_id, error, now)
            results[item.complaint_id] = error
    finally:
        if own:
            await client.close()
    return results
