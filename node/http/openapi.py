"""``GET /v1/openapi.json``: the OpenAPI 3.1 description of the node's HTTP API, served as checked in.

The document (``node/http/openapi.json``, package data) is written by hand rather than generated from
the handlers, so it says what the API promises, not what the code happens to do; the tests keep
the two together: every route the application registers must be described (and nothing else),
and a fuzzer checks the real node's answers against the document's schemas.
"""

from __future__ import annotations

from functools import cache
from importlib import resources

from aiohttp import web

__all__ = ["OPENAPI_PATH", "add_openapi_routes", "openapi_document"]

OPENAPI_PATH = "/v1/openapi.json"
"""Public (no account): it describes the API, it gives nothing of the node's data away."""


@cache
def openapi_document() -> bytes:
    """The document's bytes, read once from the installed package."""
    return resources.files("node.http").joinpath("openapi.json").read_bytes()


async def _openapi(request: web.Request) -> web.Response:
    return web.Response(
        body=openapi_document(),
        content_type="application/json",
        headers={"Cache-Control": "public, max-age=300"},
    )


def add_openapi_routes(app: web.Application) -> None:
    """Add ``GET /v1/openapi.json`` (the node's access middleware lists it as public)."""
    app.router.add_get(OPENAPI_PATH, _openapi)
