"""``GET /v1/report?period=2026-Q4&format=json|html&lang=en|ja``: this node's transparency report, signed.

The JSON answer is the ``TransparencyReport`` signed with the node's signing key, the key the
manifest lists for it, so the organisation can verify it wherever it came from (``watchnet gov
report``). The HTML answer is the same counts as a page with charts, for publication; it
carries a Content-Security-Policy that allows no script and no fetched resource.

The routes are added by the service with its own keys and role check, so this module does not
import the service: ``require(request, Action.READ_REPORT)`` raises when the caller may not read.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime
from typing import Any

from aiohttp import web

from governance.manifest import Manifest
from governance.report import Period, TransparencyReport, parse_period
from governance.roles import Action
from node.context import NodeContext
from node.local_time import LocalTimes
from node.reporting.report import signed_report
from node.reporting.report_html import LANGS, render_report_html
from protocol.errors import MalformedError
from protocol.signed import SignedDocument

__all__ = ["CSP", "FORMATS", "add_report_routes", "member_names", "node_report"]

FORMATS = ("json", "html")
CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'"


def node_report(context: NodeContext, period: Period, now: datetime) -> SignedDocument[TransparencyReport]:
    """This node's report for ``period`` as of ``now``, signed with its key (what ``GET /v1/report`` answers)."""
    manifest = context.manifest
    return signed_report(
        context.engine,
        context.signing_key,
        node_id=context.config.node_id,
        group_id=manifest.group_id,
        manifest_version=manifest.version,
        period=period,
        now=now,
    )


def member_names(manifest: Manifest) -> dict[str, str]:
    """Display names of the group's members by node id, for the report's headings."""
    return {m.node_id: m.name.get("en") for m in manifest.joint_use.members}


def add_report_routes(
    app: web.Application,
    context_key: web.AppKey[Any],
    clock_key: web.AppKey[Any],
    require: Callable[[web.Request, Any], Any],
) -> None:
    """Add ``GET /v1/report`` (roles that may ``Action.READ_REPORT``: officer, auditor, admin)."""

    async def report(request: web.Request) -> web.Response:
        require(request, Action.READ_REPORT)
        text = request.query.get("period")
        if not text:
            raise MalformedError("query parameter 'period' is required, e.g. period=2026-Q4, 2026-11 or 2026")
        period = parse_period(text)
        fmt = request.query.get("format", "json")
        if fmt not in FORMATS:
            raise MalformedError(f"query parameter 'format': one of {', '.join(FORMATS)}, got {fmt!r:.20}")
        context = request.app[context_key]
        document = await asyncio.to_thread(node_report, context, period, request.app[clock_key]())
        if fmt == "json":
            return web.Response(body=document.to_bytes(), content_type="application/json")
        lang = request.query.get("lang", "en")
        if lang not in LANGS:
            raise MalformedError(f"query parameter 'lang': one of {', '.join(LANGS)}, got {lang!r:.20}")
        names = member_names(context.manifest)
        when = LocalTimes(lang, context.config.console.zone).when
        page = await asyncio.to_thread(
            lambda: render_report_html(document.payload, names=names, lang=lang, when=when)
        )
        return web.Response(
            text=page,
            content_type="text/html",
            charset="utf-8",
            headers={"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff"},
        )

    app.router.add_get("/v1/report", report)
