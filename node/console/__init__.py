"""The staff web console: server-rendered pages for registrars and officers, in Japanese and English.

Store staff do not run a command line. The node serves plain HTML forms under ``/console``
(no script, no build step, readable on a tablet): a registrar checks a photo's face and proposes
it, an officer decides on proposals and corrects or deletes entries. An operator's alert page is
the one exception to "no script": a small optional script takes the list pushed as server-sent
events, and without it a reload shows the same. The pages call the same
registry and face functions as the JSON API, so every rule (roles, the two-person rule, the
registration rules, face quality) is enforced in one place. The console authenticates by a
server-side session cookie instead of an API token: the node's access middleware lets
``/console`` paths through to these handlers, which check the session, the role and a CSRF
token themselves, and it still audits every request.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import aiohttp_jinja2
import jinja2
from aiohttp import web

from node.console.nav import links_for
from node.console.pages import HOST, JINJA, PREFIX, SESSIONS, ConsoleHost
from node.console.pages_accounts import add_accounts_routes
from node.console.pages_auditor import add_auditor_routes
from node.console.pages_cameras import add_cameras_routes
from node.console.pages_login import ROLE_PAGES, add_sign_in_routes
from node.console.pages_network import add_network_page_routes
from node.console.pages_officer import add_officer_routes
from node.console.pages_operator import add_operator_routes
from node.console.pages_registrar import Preview, QualityCheck, add_registrar_routes
from node.console.pages_requests import add_request_routes
from node.console.session import SharedSessionStore
from node.context import NodeContext
from node.http.api import CONTEXT
from node.records.accounts import StaffMember

__all__ = ["PREFIX", "add_console_routes", "is_console_path", "node_host", "setup_templates"]


def is_console_path(path: str) -> bool:
    """Whether a request path belongs to the console (authenticated by session, not API token)."""
    return path == PREFIX or path.startswith(f"{PREFIX}/")


def setup_templates(
    app: web.Application,
    links: Callable[[StaffMember], list[tuple[str, str]]],
    *,
    packages: tuple[str, ...] = (),
) -> None:
    """Jinja2 for console pages (autoescaped, strict): templates of ``packages`` first, then the
    console's own (``base.html``, ``login.html``, ``error.html`` ...); ``links`` lists the pages a
    signed-in account may open, for the header of every page."""
    aiohttp_jinja2.setup(
        app,
        app_key=JINJA,
        loader=jinja2.ChoiceLoader(
            [jinja2.PackageLoader(p, "templates") for p in (*packages, "node.console")]
        ),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        default_helpers=False,
    )
    app[JINJA].globals["console_links"] = links


def add_static(app: web.Application) -> None:
    """The console's stylesheet and script under ``/console/static``."""
    app.router.add_static(f"{PREFIX}/static", Path(__file__).parent / "static")


def node_host(context: NodeContext) -> ConsoleHost:
    """The console's host on a member's node: its database, accounts, zone and business name."""

    def heading(lang: str) -> tuple[str, str]:
        member = context.manifest.member(context.config.node_id)
        name = context.config.display_name or context.config.node_id
        return (member.name.get(lang) if member is not None else name), context.config.node_id

    return ConsoleHost(
        engine=context.engine,
        write_lock=context.registry.write_lock,
        accounts=context.accounts,
        zone=context.config.console.zone,
        heading=heading,
        role_pages=ROLE_PAGES,
        site_names=lambda lang: {s.site_id: s.name.get(lang) for s in context.config.notice.sites},
    )


def add_console_routes(app: web.Application) -> None:
    """Add the console's pages, templates (autoescaped) and stylesheet to the node's application."""
    setup_templates(app, links_for)
    context = app[CONTEXT]
    app[HOST] = node_host(context)
    app[SESSIONS] = SharedSessionStore(
        context.config.console,
        engine=context.engine,
        vault=context.registry.vault,
        preview_types=(Preview, QualityCheck),
    )
    add_sign_in_routes(app)
    add_registrar_routes(app)
    add_officer_routes(app)
    add_operator_routes(app)
    add_network_page_routes(app)
    add_accounts_routes(app)
    add_cameras_routes(app)
    add_auditor_routes(app)
    add_request_routes(app)
    app.router.add_static(f"{PREFIX}/static", Path(__file__).parent / "static")
