"""Referring complaints to the members they concern, and taking their answers (``gov serve``).

A referral is signed once, when the secretariat refers the complaint (``refer_complaint``), and
then delivered: at once, and again by ``ReferralSender.run`` (a supervised loop of ``gov serve``)
until the member confirms it, backing off from ``retry`` seconds to an hour between attempts of
one referral. Delivery is ``POST <member endpoint>/v1/org/complaint-referral`` with the signed
document; 201 (taken) and 200 (already held: our first attempt arrived, its answer did not) are
both delivered. Anything else is kept as the referral's last error and shown on the console
page as "not yet delivered".

A member's answer arrives on ``POST /v1/complaint-answers``: a signed ``complaint-answer``
checked against the manifest in force alone (``verify_answer``) and kept with the complaint.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from governance.errors import NotAMember
from governance.manifest import Manifest, MemberStatus
from governance.requests import COMPLAINT_ANSWER_OUTCOMES
from node.org.complaints import record_delivery, undelivered_referrals
from node.org.loops import running, wakeable_loop
from protocol.canonical import canonical_bytes
from protocol.complaint import ComplaintAnswer
from protocol.errors import MalformedError, MisaddressedError, VerificationError
from protocol.fields import parse_time
from protocol.signed import SignedDocument

__all__ = ["REFERRAL_PATH", "ReferralSender", "verify_answer"]

LOG = logging.getLogger("watchnet.gov")
REFERRAL_PATH = "/v1/org/complaint-referral"
"""Where a member node takes the organisation's referrals."""
MAX_BACKOFF = 3600.0


def verify_answer(data: Any, manifest: Manifest) -> SignedDocument[ComplaintAnswer]:
    """A member's ``complaint-answer``, verified against ``manifest``; raise, typed, otherwise.

    Of this group (``misaddressed``), from a member not removed (``not_a_member``), signed by that
    member's signing key (``bad_signature`` / ``threshold_not_met``), with an outcome a member
    may answer (``malformed``). Whether the complaint was referred to it is the register's check."""
    document = SignedDocument.from_dict(data, ComplaintAnswer)
    answer = document.payload
    if answer.group_id != manifest.group_id:
        raise MisaddressedError(
            f"complaint-answer of group {answer.group_id!r}, this is {manifest.group_id!r}"
        )
    member = manifest.member(answer.member)
    if member is None or member.status is MemberStatus.REMOVED:
        raise NotAMember(f"complaint-answer.member: {answer.member!r} is not a member of the group")
    try:
        document.verify([member.signing_key], threshold=1)
    except VerificationError as e:
        raise type(e)(f"complaint-answer not signed by {answer.member}'s key: {e}") from e
    if answer.outcome not in COMPLAINT_ANSWER_OUTCOMES:
        raise MalformedError(
            f"complaint-answer.outcome {answer.outcome!r:.30}: one of {sorted(COMPLAINT_ANSWER_OUTCOMES)}"
        )
    return document


class ReferralSender:
    """Delivers the register's undelivered referrals to their members."""

    def __init__(
        self,
        complaints: Path,
        manifest: Callable[[], Manifest],
        clock: Callable[[], datetime],
        *,
        retry: float = 30.0,
        timeout: float = 10.0,
    ) -> None:
        self.complaints = complaints
        self.manifest = manifest
        self.clock = clock
        self.retry = retry
        self.timeout = timeout
        self.runs = 0
        self._session: aiohttp.ClientSession | None = None
        self._wake = asyncio.Event()

    def _due(self, referral: dict[str, Any], now: datetime) -> bool:
        attempts = int(referral.get("attempts", 0))
        last = referral.get("last_attempt_at")
        if attempts == 0 or last is None:
            return True
        wait = min(MAX_BACKOFF, self.retry * 2 ** (attempts - 1))
        return now >= parse_time(last) + timedelta(seconds=wait)

    async def _post(self, session: aiohttp.ClientSession, complaint: dict[str, Any]) -> str | None:
        """One attempt; ``None`` when the member holds the referral, else what went wrong (a code)."""
        referral = complaint["referral"]
        member = self.manifest().member(referral["member"])
        if member is None or member.status is MemberStatus.REMOVED:
            return "not_a_member"
        try:
            async with session.post(
                member.endpoint.rstrip("/") + REFERRAL_PATH,
                data=canonical_bytes(referral["document"]),
                headers={"Content-Type": "application/json"},
                timeout=aiohttp.ClientTimeout(total=self.timeout),
            ) as response:
                if response.status in (200, 201):
                    return None
                try:
                    body = await response.json(content_type=None)
                    code = str(body.get("error", ""))[:48] if isinstance(body, dict) else ""
                except (ValueError, aiohttp.ClientError):
                    code = ""
                return f"http:{response.status}" + (f":{code}" if code else "")
        except (aiohttp.ClientError, TimeoutError, OSError) as e:
            return f"unreachable:{type(e).__name__}"

    async def deliver(self, complaint: dict[str, Any]) -> dict[str, Any]:
        """Try one referral now; return the complaint as recorded after the attempt."""
        owned = self._session is None
        session = self._session or aiohttp.ClientSession()
        try:
            error = await self._post(session, complaint)
        finally:
            if owned:
                await session.close()
        if error is not None:
            LOG.warning(
                "complaint referral not delivered; will retry",
                extra={
                    "reference": complaint["id"],
                    "member": complaint["referral"]["member"],
                    "error": error,
                },
            )
        else:
            LOG.info(
                "complaint referral delivered",
                extra={"reference": complaint["id"], "member": complaint["referral"]["member"]},
            )
        return await asyncio.to_thread(
            record_delivery, self.complaints, complaint["id"], error=error, now=self.clock()
        )

    async def pass_once(self) -> int:
        """Deliver every referral that is due; return how many were attempted."""
        now = self.clock()
        owed = await asyncio.to_thread(undelivered_referrals, self.complaints)
        due = [c for c in owed if self._due(c["referral"], now)]
        for complaint in due:
            await self.deliver(complaint)
        self.runs += 1
        return len(due)

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        """Every ``retry`` seconds (or when woken), deliver what is due; errors logged and backed off."""
        await wakeable_loop(
            self._wake, self.retry, self.pass_once, doing="delivering complaint referrals", log=LOG
        )

    async def start(self, _app: web.Application) -> AsyncIterator[None]:
        """An aiohttp ``cleanup_ctx``: one client session and the loop, closed with the server."""
        async with running(self.run, "org-complaint-referrals", self._use_session):
            yield

    def _use_session(self, session: aiohttp.ClientSession | None) -> None:
        self._session = session
