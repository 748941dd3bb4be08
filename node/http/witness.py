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
from datetime import datetime
from typing import Protocol

from aiohttp import web

from governance.manifest import Manifest
from node.http.api import CLOCK, CONTEXT, FEDERATION
from protocol.errors import WatchnetError
from protocol.witness import CheckpointConflict, status_of

__all__ = ["CheckpointWitness", "add_witness_routes", "answer_add_checkpoint", "answer_witnessed"]

TEXT = "text/plain; charset=utf-8"


class CheckpointWitness(Protocol):
    """A witness as the endpoints use it: a member node's (``node.records.witnessing``) or the
    organisation's (``node.org.witness``)."""

    def add_checkpoint(self, body: bytes, manifest: Manifest, now: datetime) -> str: ...

    def latest(self, origin: str) -> str | None: ...


async def answer_add_checkpoint(
    witness: CheckpointWitness, body: bytes, manifest: Manifest, now: datetime
) -> web.Response:
    """The spec's answer to an add-checkpoint request: the cosignature line or the status."""
    try:
        line = await asyncio.to_thread(witness.add_checkpoint, body, manifest, now)
    except CheckpointConflict as e:
        return web.Response(status=409, body=f"{e.size}\n".encode(), content_type="text/x.tlog.size")
    except WatchnetError as e:
        return web.Response(status=status_of(e), text=f"{e.code}: {e}\n", content_type="text/plain")
    return web.Response(text=line, content_type="text/plain")


async def add_checkpoint(request: web.Request) -> web.Response:
    body = await request.read()
    witness = request.app[FEDERATION].witness
    return await answer_add_checkpoint(witness, body, request.app[CONTEXT].manifest, request.app[CLOCK]())


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


async def answer_witnessed(witness: CheckpointWitness, request: web.Request) -> web.Response:
    """``GET .../witness/checkpoint?origin=``: the latest checkpoint ``witness`` cosigned for it."""
    origin = request.query.get("origin", "")
    if not origin or len(origin) > MAX_ORIGIN or any(c.isspace() or c == "+" for c in origin):
        return web.json_response(
            {"error": "malformed", "message": f"origin: 1..{MAX_ORIGIN} characters without spaces or '+'"},
            status=400,
        )
    note = await asyncio.to_thread(witness.latest, origin)
    if note is None:
        return web.Response(
            status=404,
            text=f"unknown_log: no checkpoint of {origin} cosigned here\n",
            content_type="text/plain",
        )
    return web.Response(text=note, content_type="text/plain", headers={"Cache-Control": "no-cache"})


async def witnessed_checkpoint(request: web.Request) -> web.Response:
    return await answer_witnessed(request.app[FEDERATION].witness, request)


def add_witness_routes(app: web.Application) -> None:
    app.router.add_post("/v1/witness/add-checkpoint", add_checkpoint)
    app.router.add_get("/v1/witness/checkpoint", witnessed_checkpoint)
    app.router.add_get("/v1/log/checkpoint", log_checkpoint)
