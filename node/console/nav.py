"""The console's page links: each signed-in member sees the pages their role may open, and no others.

A link to a page the role may not open would only lead to a refusal, so the list is filtered by
the same ``governance.roles`` table the pages themselves check. Each entry names the actions
that open its page (any one of them is enough, as for the network page, which an admin opens
for the manifest and an officer or auditor for the logs); the base template shows the links in
the header of every page through the ``console_links`` template global.
"""

from __future__ import annotations

from governance.roles import Action, permitted
from node.console.pages import PREFIX
from node.records.accounts import StaffMember

__all__ = ["PAGES", "links_for"]

PAGES: tuple[tuple[str, str, frozenset[Action]], ...] = (
    (f"{PREFIX}/registrar", "nav.registrar", frozenset({Action.PROPOSE_ENTRY})),
    (f"{PREFIX}/officer", "nav.officer", frozenset({Action.REVIEW_ENTRY})),
    (f"{PREFIX}/operator", "nav.operator", frozenset({Action.VIEW_ALERTS})),
    (f"{PREFIX}/network", "nav.network", frozenset({Action.MANAGE_MANIFEST, Action.READ_EVENT_LOG})),
    (f"{PREFIX}/accounts", "nav.accounts", frozenset({Action.MANAGE_ACCOUNTS})),
    (f"{PREFIX}/cameras", "nav.cameras", frozenset({Action.VIEW_CAMERAS})),
    # auditor, requests and complaints pages
    (f"{PREFIX}/requests", "nav.requests", frozenset({Action.READ_REQUESTS})),
    (f"{PREFIX}/complaints", "nav.complaints", frozenset({Action.READ_REQUESTS})),
    (f"{PREFIX}/audit", "nav.audit", frozenset({Action.READ_AUDIT})),
    (f"{PREFIX}/log", "nav.log", frozenset({Action.READ_EVENT_LOG})),
    (f"{PREFIX}/report", "nav.report", frozenset({Action.READ_REPORT})),
)
"""Page path, message key of its link, and the actions of which a role needs one to open it."""


def links_for(staff: StaffMember) -> list[tuple[str, str]]:
    """(path, message key) of every page ``staff``'s role may open, in menu order."""
    return [(path, key) for path, key, actions in PAGES if any(permitted(staff.role, a) for a in actions)]
