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

from pathlib import Path

import aiohttp_jinja2
import jinja2
from aiohttp import web

from node.console.nav import links_for
from node.console.pages import JINJA, PREFIX, SESSIONS
from node.console.pages_accounts import add_accounts_routes
from node.console.pages_auditor import add_auditor_routes
from node.console.pages_cameras import add_cameras_routes
from node.console.pages_login import home, login_form, login_submit, logout
from node.console.pages_network import add_network_page_routes
from node.console.pages_officer import add_officer_routes
from node.console.pages_operator import add_operator_routes
from node.console.pages_registrar import Preview, QualityCheck, add_registrar_routes
from node.console.pages_requests import add_request_routes
from node.console.session import SharedSessionStore
from node.http.api import CONTEXT

__all__ = ["PREFIX", "add_console_routes", "is_console_path"]


def is_console_path(path: str) -> bool:
    """Whether a request path belongs to the console (authenticated by session, not API token)."""
    return path == PREFIX or path.startswith(f"{PREFIX}/")


def add_console_routes(app: web.Application) -> None:
    """Add the console's pages, templates (autoescaped) and stylesheet to the node's application."""
    aiohttp_jinja2.setup(
        app,
        app_key=JINJA,
        loader=jinja2.PackageLoader("node.console", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        default_helpers=False,
    )
    app[JINJA].globals["console_links"] = links_for
    context = app[CONTEXT]
    app[SESSIONS] = SharedSessionStore(
        context.config.console,
        engine=context.engine,
        vault=context.registry.vault,
        preview_types=(Preview, QualityCheck),
    )
    app.router.add_get(PREFIX, home)
    app.router.add_get(f"{PREFIX}/login", login_form)
    app.router.add_post(f"{PREFIX}/login", login_submit)
    app.router.add_post(f"{PREFIX}/logout", logout)
    add_registrar_routes(app)
    add_officer_routes(app)
    add_operator_routes(app)
    add_network_page_routes(app)
    add_accounts_routes(app)
    add_cameras_routes(app)
    add_auditor_routes(app)
    add_request_routes(app)
    app.router.add_static(f"{PREFIX}/static", Path(__file__).parent / "static")
