"""HTTP handlers of private mode: members' evaluation keys, round 1 and round 2."""

from __future__ import annotations

import asyncio

from aiohttp import web

from node.http.api import AUDIT_TARGET, CLOCK, FEDERATION, METRICS, PRIVATE, admit_peer, sealed_response
from node.private.mode import PRIVATE_KEY_BODIES, PRIVATE_QUERY_BODIES, PRIVATE_REVEAL_BODIES
from protocol.message import MAX_BULK_SEALED_BYTES

__all__ = ["add_private_routes"]


async def peer_private_keys(request: web.Request) -> web.Response:
    """Hold a member's evaluation keys for its epoch (public material: they cannot decrypt)."""
    federation = request.app[FEDERATION]
    admitted = await admit_peer(request, PRIVATE_KEY_BODIES, max_bytes=MAX_BULK_SEALED_BYTES)
    ack = request.app[PRIVATE].accept_keys(admitted)
    request[AUDIT_TARGET] = f"he-keys={ack.key_id[:16]}"
    return sealed_response(federation.gate.reply(admitted, ack, request.app[CLOCK]()))


async def peer_private_query(request: web.Request) -> web.Response:
    """Round 1: masked encrypted scores for every slot of the shuffled gallery; nothing learnt, nothing kept."""
    federation = request.app[FEDERATION]
    admitted = await admit_peer(request, PRIVATE_QUERY_BODIES, max_bytes=MAX_BULK_SEALED_BYTES)
    scores, count = await request.app[PRIVATE].answer(admitted)
    request[AUDIT_TARGET] = (
        f"purpose={admitted.message.purpose} private faces={count} build={scores.build_id}"
    )
    request.app[METRICS].match_queries.add(count)
    sealed = federation.gate.reply(admitted, scores, request.app[CLOCK](), max_bytes=MAX_BULK_SEALED_BYTES)
    return sealed_response(sealed)


async def peer_private_reveal(request: web.Request) -> web.Response:
    """Round 2: the signed entry for each revealed face that really scores at or above the threshold."""
    federation = request.app[FEDERATION]
    admitted = await admit_peer(request, PRIVATE_REVEAL_BODIES)
    response, asked = await asyncio.to_thread(request.app[PRIVATE].reveal, admitted, federation.admit_hits)
    request[AUDIT_TARGET] = (
        f"purpose={admitted.message.purpose} reveal candidates={asked} hits={len(response.matches)}"
    )
    request.app[METRICS].matches.add(len(response.matches))
    return sealed_response(federation.gate.reply(admitted, response, request.app[CLOCK]()))


def add_private_routes(app: web.Application) -> None:
    app.router.add_post("/v1/peer/private/keys", peer_private_keys)
    app.router.add_post("/v1/peer/private/query", peer_private_query)
    app.router.add_post("/v1/peer/private/reveal", peer_private_reveal)
