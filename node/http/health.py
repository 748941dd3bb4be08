"""Health for people and machines: ``/v1/health`` (what each part is doing), ``/v1/health/live``
(the process answers), ``/v1/health/ready`` (whether to send it traffic, naming what is wrong)
and ``/metrics`` (Prometheus' text format, for the operator's alerts).

The first three are public (a load balancer checks them without credentials) and show states,
sizes and times only. ``/metrics`` carries per-peer counts, so it needs a staff token with the
``metrics.read`` permission (give Prometheus an admin token in its ``authorization`` setting).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from governance.roles import Action
from node.http.api import CONTEXT, PRIVATE, TELEMETRY, require_staff

__all__ = ["LEADER_STATUS", "READINESS", "add_health_routes"]

LEADER_STATUS: web.AppKey[Callable[[], dict[str, Any]]] = web.AppKey("leader_status")
"""This worker's part in the node's leader lease and its duties (``node.app.leader``)."""
READINESS: web.AppKey[Callable[[], Awaitable[dict[str, Any]]]] = web.AppKey("readiness")
"""This worker's readiness, part by part (``node.app.readiness``)."""
PROMETHEUS_TYPE = "text/plain; version=0.0.4"


async def health(request: web.Request) -> web.Response:
    """Liveness, whether private queries would be answered from a current gallery, and whether the
    store agrees with the log the node signed (public: states, sizes and times, no counts of
    entries, no entry ids); ``leader``: whether this worker holds the node's leader lease and
    runs its background duties, and each duty's last success and errors; ``deletions``: how many
    decided deletions and expiries this worker holds unwritten (``node.records.closures``)."""
    return web.json_response(
        {
            "status": "ok",
            "private_gallery": request.app[PRIVATE].readiness(),
            "integrity": request.app[CONTEXT].registry.integrity.to_dict(),
            "index": request.app[CONTEXT].registry.freshness(),
            "leader": request.app[LEADER_STATUS](),
            "deletions": request.app[CONTEXT].registry.pending.to_dict(),
        }
    )


async def live(_request: web.Request) -> web.Response:
    """The process answers HTTP: restart it when this fails, not when readiness does."""
    return web.json_response({"status": "live"})


async def ready(request: web.Request) -> web.Response:
    """200 when every part is working, 503 with ``failing`` naming the parts that are not."""
    body = await request.app[READINESS]()
    return web.json_response(body, status=200 if body["ready"] else 503)


async def metrics(request: web.Request) -> web.Response:
    require_staff(request, Action.READ_METRICS)
    payload = await asyncio.to_thread(request.app[TELEMETRY].prometheus_text)
    return web.Response(body=payload, headers={"Content-Type": PROMETHEUS_TYPE})


def add_health_routes(app: web.Application) -> None:
    app.router.add_get("/v1/health", health)
    app.router.add_get("/v1/health/live", live)
    app.router.add_get("/v1/health/ready", ready)
    app.router.add_get("/metrics", metrics)
