"""The witness endpoints, as c2sp.org/tlog-witness and tlog-checkpoint fix them: plain text.

``POST /v1/witness/add-checkpoint`` (the submission prefix is ``/v1/witness``) takes another
member's checkpoint with a consistency proof and answers this node's cosignature line, or the
spec's status (404, 403, 400, 409 with ``text/x.tlog.size``, 422). It needs no credential: the
checkpoint's signature by a member's key is the credential, and the body is at most 64 KiB (the
public door's bound). ``GET /v1/log/checkpoint`` is this node's latest checkpoint with the
cosignatures its witnesses gave for that size. ``GET /v1/witness/checkpoint?origin=<origin>``
(watchnet's read endpoint; tlog-witness defines none) is the latest checkpoint this node cosigned
for that log, so an auditor can ask the witnesses themselves what they saw.
"""

from __future__ import annotations

import asyncio

from aiohttp import web

from node.http.api import CLOCK, CONTEXT, FEDERATION
from protocol.errors import WatchnetError
from protocol.witness import CheckpointConflict, status_of

__all__ = ["add_witness_routes"]

TEXT = "text/plain; charset=utf-8"


async def add_checkpoint(request: web.Request) -> web.Response:
    body = await request.read()
    federation = request.app[FEDERATION]
    manifest = request.app[CONTEXT].manifest
    try:
        line = await asyncio.to_thread(
            federation.witness.add_checkpoint, body, manifest, request.app[CLOCK]()
        )
    except CheckpointConflict as e:
        return web.Response(status=409, body=f"{e.size}\n".encode(), content_type="text/x.tlog.size")
    except WatchnetError as e:
        return web.Response(status=status_of(e), text=f"{e.code}: {e}\n", content_type="text/plain")
    return web.Response(text=line, content_type="text/plain")


async def log_checkpoint(request: web.Request) -> web.Response:
    federation = request.app[FEDERATION]
    own = await asyncio.to_thread(federation.checkpoints.current, request.app[CONTEXT].manifest)
    if own is None:
        return web.json_response(
            {"error": "empty_log", "message": "no event has been logged yet"}, status=404
        )
    return web.Response(
        text=own.note.to_text(),
        content_type="text/plain",
        headers={"Cache-Control": "no-cache", "X-Watchnet-Cosigned-By": ",".join(own.cosigned_by)},
    )


MAX_ORIGIN = 160
"""The longest origin a witness keeps (``WitnessedLog.origin``)."""


async def witnessed_checkpoint(request: web.Request) -> web.Response:
    origin = request.query.get("origin", "")
    if not origin or len(origin) > MAX_ORIGIN or any(c.isspace() or c == "+" for c in origin):
        return web.json_response(
            {"error": "malformed", "message": f"origin: 1..{MAX_ORIGIN} characters without spaces or '+'"},
            status=400,
        )
    note = await asyncio.to_thread(request.app[FEDERATION].witness.latest, origin)
    if note is None:
        return web.Response(
            status=404,
            text=f"unknown_log: no checkpoint of {origin} cosigned here\n",
            content_type="text/plain",
        )
    return web.Response(text=note, content_type="text/plain", headers={"Cache-Control": "no-cache"})


def add_witness_routes(app: web.Application) -> None:
    app.router.add_post("/v1/witness/add-checkpoint", add_checkpoint)
    app.router.add_get("/v1/witness/checkpoint", witnessed_checkpoint)
    app.router.add_get("/v1/log/checkpoint", log_checkpoint)
