"""The cameras page: the store's cameras (``[[cameras]]`` in the node's config) and the state the
camera worker last reported for each, for admins and operators (``Action.VIEW_CAMERAS``).

The config is read again at each visit, so a camera added with ``watchnet camera add`` shows at
once; the state comes from ``camera-status.json``, which ``watchnet camera run`` rewrites every 2 s
in the node directory. A report older than ``STALE_AFTER`` is shown as stale and its cameras'
state as unknown: a worker that stopped must not look like cameras that are up. A stream's
address is shown with its password as ``***``; no frame or face is ever on this page. Below the
cameras, each alert delivery target (webhooks, e-mail) with what it still owes and its last
error, so a receiver that is down is seen (the node keeps retrying it).
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from aiohttp import web

from governance.roles import Action
from node.config import CAMERA_STATUS_FILE, NodeConfig, redact_url
from node.console.pages import PREFIX, Visit, render, staff_page
from node.context import NodeContext
from node.http.api import CLOCK, CONTEXT
from node.records.deliveries import delivery_status
from protocol.errors import WatchnetError
from protocol.fields import format_duration

__all__ = ["PAGE", "STALE_AFTER", "add_cameras_routes", "camera_rows", "delivery_rows"]

PAGE = f"{PREFIX}/cameras"
STALE_AFTER = timedelta(seconds=10)
"""A worker's report older than this (five of its 2 s writes) is stale."""
MAX_STATUS_BYTES = 1 << 20


def _report(directory: Path) -> tuple[datetime | None, dict[str, dict[str, Any]]]:
    """When the worker last reported, and its state per camera id (nothing if there is no report)."""
    try:
        raw = (directory / CAMERA_STATUS_FILE).read_bytes()[:MAX_STATUS_BYTES]
        data = json.loads(raw)
        updated = datetime.strptime(data["updated_at"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
        cameras = {str(c["camera"]): c for c in data["cameras"] if isinstance(c, dict)}
    except (OSError, ValueError, KeyError, TypeError):
        return None, {}
    return updated, cameras


def camera_rows(directory: Path, now: datetime) -> dict[str, Any]:
    """What the page shows: one row per configured camera, and how fresh the worker's report is."""
    try:
        cameras = NodeConfig.load(directory).cameras
    except WatchnetError:
        cameras = ()
    updated, reported = _report(directory)
    fresh = updated is not None and now - updated <= STALE_AFTER
    rows = []
    for camera in cameras:
        state = reported.get(camera.id, {}) if fresh else {}
        rows.append(
            {
                "id": camera.id,
                "site": camera.site,
                "gate": camera.gate,
                "url": camera.safe_url,
                "sampling": f"{camera.sample_fps:g} fps, ≥ {camera.min_face_pixels} px, "
                f"{format_duration(camera.resend_after)}",
                "state": str(state.get("state", "unknown")),
                "stream_fps": state.get("stream_fps"),
                "faces_per_minute": state.get("faces_per_minute"),
                "latency_p50_ms": state.get("latency_p50_ms"),
                "latency_p99_ms": state.get("latency_p99_ms"),
                "alerts": state.get("alerts"),
                "reconnects": state.get("reconnects"),
                "last_error": state.get("last_error"),
            }
        )
    return {"cameras": rows, "reported_at": updated, "stale": updated is not None and not fresh}


def delivery_rows(context: NodeContext) -> list[dict[str, Any]]:
    """Each webhook and e-mail target of the config, with what it still owes and its last error."""
    status = delivery_status(context.engine)
    config = context.config
    targets = [("webhook", w.id, redact_url(w.url), w.sites) for w in config.webhooks]
    targets += [("email", m.id, ", ".join(m.to), m.sites) for m in config.email]
    return [
        {
            "kind": kind,
            "id": target_id,
            "where": where,
            "sites": ", ".join(sites),
            "settled": status.get(target_id, {}).get("settled", 0),
            "pending": status.get(target_id, {}).get("pending", 0),
            "last_error": status.get(target_id, {}).get("last_error"),
        }
        for kind, target_id, where, sites in targets
    ]


@staff_page(Action.VIEW_CAMERAS)
async def cameras_page(request: web.Request, visit: Visit) -> web.StreamResponse:
    context = request.app[CONTEXT]
    shown = await asyncio.to_thread(camera_rows, context.config.directory, request.app[CLOCK]())
    deliveries = await asyncio.to_thread(delivery_rows, context)
    return render(request, "cameras.html", visit.lang, session=visit.session, deliveries=deliveries, **shown)


def add_cameras_routes(app: web.Application) -> None:
    app.router.add_get(PAGE, cameras_page)
