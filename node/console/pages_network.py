"""The network page: the group's manifest, each peer's sync health, and who confirmed our deletions.

An officer or an auditor checks here that the group works as its notice says: the manifest this
node trusts now (version, expiry, members and their status, purposes, items, the administrator,
query modes), how following each peer's log goes (``peer_items``, what ``GET /v1/peers``
returns), and for every deletion, expiry and correction of ours the members that returned a
signed receipt and those that have not yet (``propagation_status``, what ``GET /v1/propagation``
returns), a page at a time from a log index as the API pages. An admin, who installs
manifests but may not read the event log, sees the manifest part, and the sign-in locks: each
(account, source address) pair whose sign-ins are delayed or locked after wrong passwords, with a
button that clears it (``StaffAccounts.clear_locks``, audited as ``account.unlock``).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from aiohttp import web

from governance.manifest import Manifest
from governance.roles import Action, permitted, require_permission
from node.console.pages import PREFIX, Visit, redirect, render, staff_page, url
from node.context import NodeContext
from node.federation.health import endpoint_warning
from node.federation.sync import propagation_status
from node.http.api import CLOCK, CONTEXT, FEDERATION, int_query, refuse_extra
from node.http.network import peer_items
from node.records.accounts import MAX_SOURCE, SignInLock

__all__ = ["PAGE_SIZE", "Propagation", "add_network_page_routes"]

PAGE = f"{PREFIX}/network"
CLEAR_LOCK = f"{PAGE}/locks/clear"
PAGE_SIZE = 100
"""Deletions, expiries and corrections per page."""


@dataclass(frozen=True)
class Propagation:
    """One page of our deletions, expiries and corrections, with receipts."""

    events: list[dict[str, Any]]
    complete: int
    pending: int
    after: int
    next_after: int | None


def _propagation(context: NodeContext, after: int, pending_only: bool) -> Propagation:
    items = propagation_status(
        context.engine, context.manifest, context.config.node_id, after=after, limit=PAGE_SIZE
    )
    complete = sum(1 for item in items if not item["missing"])
    return Propagation(
        events=[i for i in items if i["missing"]] if pending_only else items,
        complete=complete,
        pending=len(items) - complete,
        after=after,
        next_after=items[-1]["index"] + 1 if len(items) == PAGE_SIZE else None,
    )


def _days_left(manifest: Manifest, now: datetime) -> int:
    return (manifest.expires - now).days


def _lock_rows(locks: list[SignInLock]) -> list[dict[str, Any]]:
    return [
        {
            "username": lock.username,
            "source": lock.source,
            "failures": lock.failures,
            "locked_until": lock.locked_until,
            "wait_until": lock.wait_until,
        }
        for lock in locks
    ]


@staff_page(None)
async def network_page(request: web.Request, visit: Visit) -> web.StreamResponse:
    role = visit.staff.role
    if not permitted(role, Action.MANAGE_MANIFEST):
        require_permission(role, Action.READ_EVENT_LOG)
    reads_log = permitted(role, Action.READ_EVENT_LOG)
    context = request.app[CONTEXT]
    manifest = context.manifest
    after = int_query(request, "after", 0)
    pending_only = request.query.get("pending") == "1"
    peers = None
    propagation = None
    locks = None
    pages: dict[str, str] = {}
    if permitted(role, Action.MANAGE_ACCOUNTS):
        locks = _lock_rows(await asyncio.to_thread(context.accounts.locks, request.app[CLOCK]()))
    if reads_log:
        peers = peer_items(context, request.app[FEDERATION])
        propagation = await asyncio.to_thread(_propagation, context, after, pending_only)
        pending = {"pending": "1"} if pending_only else {}
        pages = {
            "all": url(PAGE, visit.lang, after=str(after)),
            "pending": url(PAGE, visit.lang, after=str(after), pending="1"),
        }
        if propagation.next_after is not None:
            pages["next"] = url(PAGE, visit.lang, after=str(propagation.next_after), **pending)
    return render(
        request,
        "network.html",
        visit.lang,
        session=visit.session,
        manifest=manifest,
        node_id=context.config.node_id,
        days_left=_days_left(manifest, request.app[CLOCK]()),
        peers=peers,
        propagation=propagation,
        pending_only=pending_only,
        pages=pages,
        locks=locks,
        clear_lock=CLEAR_LOCK,
        names={m.node_id: m.name.get(visit.lang) for m in manifest.joint_use.members},
        endpoint_warnings={m.endpoint: endpoint_warning(m.endpoint) for m in manifest.joint_use.members},
    )


@staff_page(Action.MANAGE_ACCOUNTS, back=PAGE)
async def clear_lock(request: web.Request, visit: Visit) -> web.StreamResponse:
    """Clear one pair's sign-in lock (or every source's, without ``source``); audited."""
    f = visit.fields()
    username = f.text("username", max_len=64)
    source = f.opt_text("source", max_len=MAX_SOURCE) or None
    refuse_extra(f)
    context = request.app[CONTEXT]
    await asyncio.to_thread(
        context.accounts.clear_locks,
        username,
        source,
        actor=visit.staff.id,
        now=request.app[CLOCK](),
        write_lock=context.registry.write_lock,
    )
    visit.session.notices.append("locks.cleared")
    return redirect(url(PAGE, visit.lang) + "#sign-in-locks")


def add_network_page_routes(app: web.Application) -> None:
    app.router.add_get(PAGE, network_page)
    app.router.add_post(CLEAR_LOCK, clear_lock)
