"""Sending signed, sealed messages to peers and opening their sealed answers.

One POST per message to ``<member endpoint>/v1/peer/<kind>``, with a deadline. A peer that
refuses answers with a plain JSON error (code and reason), which becomes ``PeerRefused``; a peer
that cannot be reached in time becomes ``PeerUnreachable``. A sealed answer is opened and checked
like any incoming message: it must come from the member we asked, be signed by its key from the
trusted manifest, and carry the body type we expect.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import TypeVar

import aiohttp

from governance.manifest import Member
from node.federation.gate import PeerGate
from protocol.errors import MalformedError, OversizedError, WatchnetError
from protocol.keys import EncryptionKey
from protocol.message import MAX_SEALED_BYTES, PeerKeys, decode_body, open_sealed
from protocol.signed import Payload

__all__ = ["PeerClient", "PeerRefused", "PeerTimeout", "PeerUnreachable", "read_limited"]

B = TypeVar("B", bound=Payload)


async def read_limited(response: aiohttp.ClientResponse, limit: int) -> bytes:
    """The whole body, refusing more than ``limit`` bytes (a peer must not make us buffer without end)."""
    body = bytearray()
    async for chunk in response.content.iter_chunked(1 << 16):
        body += chunk
        if len(body) > limit:
            raise OversizedError(f"answer from {response.url.host} is larger than {limit} bytes")
    return bytes(body)


class PeerUnreachable(WatchnetError):
    code = "peer_unreachable"


class PeerTimeout(PeerUnreachable):
    """The peer took the message but gave no answer before the deadline: it may be working, it
    may be hung; either way its answer is unknown, which is never the same as "no match"."""

    code = "peer_timeout"


class PeerRefused(WatchnetError):
    """The peer answered with an error: ``peer_code`` is its reason code."""

    code = "peer_refused"

    def __init__(self, message: str, *, peer_code: str, status: int) -> None:
        super().__init__(message)
        self.peer_code = peer_code
        self.status = status


class PeerClient:
    """Our side of peer conversations; one ``aiohttp`` session, reused."""

    def __init__(
        self,
        gate: PeerGate,
        encryption_key: EncryptionKey,
        session: aiohttp.ClientSession,
        skews: dict[str, float] | None = None,
    ) -> None:
        self._gate = gate
        self._key = encryption_key
        self._session = session
        self.skews = skews if skews is not None else {}
        """Each peer's clock minus ours (seconds) when its last answer arrived."""

    async def post(
        self, member: Member, path: str, sealed: bytes, timeout: float, *, max_bytes: int = MAX_SEALED_BYTES
    ) -> bytes:
        """POST a sealed message; return the sealed answer or raise ``PeerRefused``/``PeerUnreachable``."""
        url = f"{member.endpoint.rstrip('/')}{path}"
        try:
            async with self._session.post(
                url,
                data=sealed,
                headers={"Content-Type": "application/json"},
                timeout=aiohttp.ClientTimeout(total=timeout),
            ) as response:
                body = await read_limited(response, max_bytes)
                status = response.status
        except TimeoutError as e:
            raise PeerTimeout(f"{member.node_id} at {url}: no answer within {timeout:.1f}s") from e
        except aiohttp.ClientError as e:
            raise PeerUnreachable(f"{member.node_id} at {url}: {type(e).__name__} {e}".strip()) from e
        if status != 200:
            try:
                error = json.loads(body)
                code, reason = str(error["error"]), str(error.get("message", ""))
            except (ValueError, KeyError, TypeError):
                code, reason = "http_error", body[:200].decode("utf-8", "replace")
            raise PeerRefused(f"{member.node_id} refused ({code}): {reason}", peer_code=code, status=status)
        return body

    def open_answer(
        self,
        member: Member,
        sealed: bytes,
        expected: type[B],
        *,
        max_bytes: int = MAX_SEALED_BYTES,
        sent_at: datetime | None = None,
    ) -> B:
        """Open ``member``'s sealed answer and parse its body as ``expected``."""
        keys = PeerKeys(member.signing_key, member.encryption_key)
        signed = open_sealed(
            sealed,
            recipient_id=self._gate.node_id,
            recipient_key=self._key,
            lookup_sender=lambda node_id: keys if node_id == member.node_id else None,
            box_for=self._gate.boxes,
            max_bytes=max_bytes,
        )
        if sent_at is not None:  # the answer was signed between our sending and now
            self.skews[member.node_id] = (signed.payload.issued_at - sent_at).total_seconds()
        body = decode_body(signed.payload, {expected.TYPE: expected})
        if not isinstance(body, expected):
            raise MalformedError(f"{member.node_id} answered with {signed.payload.body_type!r}")
        return body

    async def exchange(
        self,
        member: Member,
        path: str,
        purpose: str,
        body: Payload,
        expected: type[B],
        *,
        now: datetime,
        manifest_version: int,
        timeout: float,
        max_bytes: int = MAX_SEALED_BYTES,
    ) -> B:
        """Send ``body`` to ``member`` and return its answer's body."""
        sealed = self._gate.seal_to(member, purpose, body, now, manifest_version, max_bytes=max_bytes)
        answer = await self.post(member, path, sealed, timeout, max_bytes=max_bytes)
        return self.open_answer(member, answer, expected, max_bytes=max_bytes, sent_at=now)
