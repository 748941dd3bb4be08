"""CSRF protection for console forms: a synchronizer token tied to the server-side session.

The session cookie is ``SameSite=Strict``, which already keeps most browsers from sending it
with a form posted from another site; the token is the second, browser-independent check.
Every form carries the session's token in a hidden field and every POST must return it
unchanged, compared in constant time. The login form has one too (a session exists before
sign-in), so another site cannot sign a browser in under an account of its choosing.
"""

from __future__ import annotations

import hmac

from node.console.session import ConsoleSession
from protocol.errors import PolicyError

__all__ = ["CSRF_FIELD", "CsrfRefused", "check_csrf"]

CSRF_FIELD = "csrf"


class CsrfRefused(PolicyError):
    code = "csrf"


def check_csrf(session: ConsoleSession | None, submitted: str | None) -> ConsoleSession:
    """The session, if ``submitted`` is its token; else raise ``CsrfRefused``."""
    if session is None:
        raise CsrfRefused("the form was posted without a console session; reload the page")
    if not submitted:
        raise CsrfRefused(f"the form has no {CSRF_FIELD!r} field; reload the page")
    if not hmac.compare_digest(session.csrf.encode("utf-8"), submitted.encode("utf-8")):
        raise CsrfRefused(f"the form's {CSRF_FIELD!r} token does not match this session; reload the page")
    return session
