"""The accounts page: an admin adds staff accounts, disables and re-enables them, clears sign-in
locks, and issues and revokes API tokens, without the command line.

Every change goes through the same ``StaffAccounts`` methods as ``watchnet user ...``, so the
username and password rules, the bounded token lifetime, and the protections (an admin cannot
disable themselves, nor the last enabled admin) cannot drift between the two; each writes its
audit record (``account.add``, ``account.disable``, ``account.enable``, ``account.unlock``,
``account.token``, ``account.revoke``: actor, target username, outcome) in the transaction of the
change. Disabling an account deletes its console sessions at once (its open pages go to the
sign-in page on their next request, its live alert streams end at their next tick) and its API
tokens are refused from the next request. A new token is shown once, in the answer to the POST
that issued it, and never stored: the database keeps its SHA-256, the page lists a token by the
first hex digits of that hash.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, TypeVar

from aiohttp import web

from governance.roles import Action, Role
from node.console.pages import HOST, PREFIX, Visit, redirect, render, staff_page, url
from node.http.api import CLOCK, refuse_extra
from node.records.accounts import MAX_TOKEN_LIFETIME, MIN_PASSWORD_LENGTH, AccountOverview
from protocol.errors import MalformedError

__all__ = ["DEFAULT_TOKEN_DAYS", "PAGE", "add_accounts_routes"]

PAGE = f"{PREFIX}/accounts"
ADD = f"{PAGE}/add"
DISABLE = f"{PAGE}/disable"
UNLOCK = f"{PAGE}/unlock"
TOKEN = f"{PAGE}/token"
REVOKE = f"{PAGE}/revoke"
DEFAULT_TOKEN_DAYS = 90
MAX_PASSWORD = 1024
T = TypeVar("T")


def _rows(accounts: list[AccountOverview], now: datetime) -> list[dict[str, Any]]:
    return [
        {
            "username": a.member.username,
            "id": a.member.id,
            "role": a.member.role.value,
            "disabled": a.disabled,
            "created_at": a.created_at,
            "locked_until": a.locked_until,
            "last_sign_in": a.last_sign_in,
            "tokens": [
                {
                    "id": t.token_id,
                    "created_at": t.created_at,
                    "expires_at": t.expires_at,
                    "state": t.state(now),
                }
                for t in a.tokens
            ],
        }
        for a in accounts
    ]


async def _page(request: web.Request, visit: Visit, *, issued: dict[str, Any] | None = None) -> web.Response:
    host = request.app[HOST]
    now = request.app[CLOCK]()
    accounts = await asyncio.to_thread(host.accounts.overview, now)
    return render(
        request,
        "accounts.html",
        visit.lang,
        session=visit.session,
        switch_path=PAGE,
        accounts=_rows(accounts, now),
        roles=[
            r.value for r in host.accounts.roles if r is not Role.CAMERA
        ],  # a camera account's sites: the CLI
        me=visit.staff.id,
        issued=issued,
        actions={"add": ADD, "disable": DISABLE, "unlock": UNLOCK, "token": TOKEN, "revoke": REVOKE},
        min_password=MIN_PASSWORD_LENGTH,
        default_days=DEFAULT_TOKEN_DAYS,
        max_days=MAX_TOKEN_LIFETIME.days,
    )


async def _as_admin(
    request: web.Request, visit: Visit, change: Callable[..., T], *args: Any, **kwargs: Any
) -> T:
    """Run one ``StaffAccounts`` change off the loop, as this admin (its audit record's actor), now."""
    call = functools.partial(
        change,
        *args,
        actor=visit.staff.id,
        now=request.app[CLOCK](),
        write_lock=request.app[HOST].write_lock,
        **kwargs,
    )
    return await asyncio.to_thread(call)


@staff_page(Action.MANAGE_ACCOUNTS)
async def accounts_page(request: web.Request, visit: Visit) -> web.StreamResponse:
    return await _page(request, visit)


@staff_page(Action.MANAGE_ACCOUNTS, back=PAGE)
async def add_account(request: web.Request, visit: Visit) -> web.StreamResponse:
    f = visit.fields()
    username = f.text("username", max_len=64)
    role = f.enum("role", Role)
    password = f.text("password", max_len=MAX_PASSWORD)
    again = f.text("password_again", max_len=MAX_PASSWORD)
    refuse_extra(f)
    if password != again:
        raise MalformedError("the two passwords differ")
    await _as_admin(request, visit, request.app[HOST].accounts.add, username, role, password)
    visit.session.notices.append("accounts.added_notice")
    return redirect(url(PAGE, visit.lang))


@staff_page(Action.MANAGE_ACCOUNTS, back=PAGE)
async def disable_account(request: web.Request, visit: Visit) -> web.StreamResponse:
    """Disable (``enable=0``) or re-enable (``enable=1``) an account."""
    f = visit.fields()
    username = f.text("username", max_len=64)
    enable = f.text("enable", max_len=1) == "1"
    refuse_extra(f)
    await _as_admin(request, visit, request.app[HOST].accounts.set_disabled, username, not enable)
    visit.session.notices.append("accounts.enabled_notice" if enable else "accounts.disabled_notice")
    return redirect(url(PAGE, visit.lang))


@staff_page(Action.MANAGE_ACCOUNTS, back=PAGE)
async def unlock_account(request: web.Request, visit: Visit) -> web.StreamResponse:
    """Clear the account's sign-in locks from every source address."""
    f = visit.fields()
    username = f.text("username", max_len=64)
    refuse_extra(f)
    await _as_admin(request, visit, request.app[HOST].accounts.clear_locks, username, None)
    visit.session.notices.append("locks.cleared")
    return redirect(url(PAGE, visit.lang))


@staff_page(Action.MANAGE_ACCOUNTS, back=PAGE)
async def issue_token(request: web.Request, visit: Visit) -> web.StreamResponse:
    """Issue a token expiring in ``days`` (1 .. ``MAX_TOKEN_LIFETIME``) and show it, this once."""
    f = visit.fields()
    username = f.text("username", max_len=64)
    days = f.text("days", max_len=4)
    refuse_extra(f)
    if not days.isdigit() or not 1 <= int(days) <= MAX_TOKEN_LIFETIME.days:
        raise MalformedError(f"days {days!r}: expected a whole number from 1 to {MAX_TOKEN_LIFETIME.days}")
    lifetime = timedelta(days=int(days))
    token = await _as_admin(
        request, visit, request.app[HOST].accounts.issue_token, username, valid_for=lifetime
    )
    now = request.app[CLOCK]()
    return await _page(
        request, visit, issued={"username": username, "token": token, "expires_at": now + lifetime}
    )


@staff_page(Action.MANAGE_ACCOUNTS, back=PAGE)
async def revoke_token(request: web.Request, visit: Visit) -> web.StreamResponse:
    f = visit.fields()
    username = f.text("username", max_len=64)
    token_id = f.text("token", max_len=64)
    refuse_extra(f)
    await _as_admin(request, visit, request.app[HOST].accounts.revoke_token_id, username, token_id)
    visit.session.notices.append("accounts.revoked_notice")
    return redirect(url(PAGE, visit.lang))


def add_accounts_routes(app: web.Application) -> None:
    app.router.add_get(PAGE, accounts_page)
    app.router.add_post(ADD, add_account)
    app.router.add_post(DISABLE, disable_account)
    app.router.add_post(UNLOCK, unlock_account)
    app.router.add_post(TOKEN, issue_token)
    app.router.add_post(REVOKE, revoke_token)
