"""Staff roles and what each may do: least privilege, and the two-person rule.

APPI Art. 23 (and the PPC guidelines' organisational measures) expects access to be limited to
what each person's job needs. A registrar proposes, an officer decides (approves, rejects,
corrects, deletes), an operator matches and handles alerts, an auditor reads logs and reports,
an admin manages accounts and configuration but cannot touch entries. A camera (the account a
store's camera worker signs in with) may only submit the faces it sees for matching, and only
for the sites its account names: it reads no entry, no alert and no log. The registrar of an entry
can never be its approving officer; that check lives with the entry, this table with the roles.

The certified organisation's own staff (its console, ``watchnet gov serve``) hold the
organisation's roles: the secretariat drafts the next manifest version (an admission, a
suspension) and publishes it once signed, a key holder uploads the signature they made offline
with their own key, an auditor reads, an admin manages the organisation's accounts. A member's
node offers only ``NODE_ROLES`` and the organisation's server only ``ORG_ROLES``.
"""

from __future__ import annotations

import enum

from protocol.errors import PolicyError

__all__ = [
    "NODE_ROLES",
    "ORG_ACTIONS",
    "ORG_ROLES",
    "Action",
    "Forbidden",
    "Role",
    "permitted",
    "require_camera_site",
    "require_permission",
]


class Role(enum.StrEnum):
    REGISTRAR = "registrar"
    OFFICER = "officer"
    OPERATOR = "operator"
    AUDITOR = "auditor"
    ADMIN = "admin"
    CAMERA = "camera"
    SECRETARIAT = "secretariat"
    KEY_HOLDER = "key-holder"


class Action(enum.StrEnum):
    PROPOSE_ENTRY = "entry.propose"
    VIEW_OWN_PROPOSALS = "entry.view-own"
    REVIEW_ENTRY = "entry.review"
    APPROVE_ENTRY = "entry.approve"
    REJECT_ENTRY = "entry.reject"
    CORRECT_ENTRY = "entry.correct"
    DELETE_ENTRY = "entry.delete"
    MATCH = "match"
    VIEW_ALERTS = "alerts.view"
    READ_AUDIT = "audit.read"
    READ_EVENT_LOG = "log.read"
    MANAGE_ACCOUNTS = "accounts.manage"
    MANAGE_MANIFEST = "manifest.manage"
    HANDLE_REQUESTS = "requests.handle"
    READ_REQUESTS = "requests.read"
    REVIEW_ALERT = "alerts.review"
    READ_REPORT = "report.read"
    RECORD_PROVISION = "provision.record"
    READ_METRICS = "metrics.read"
    VIEW_CAMERAS = "cameras.view"
    """The store's cameras and their state (the console's cameras page); never a frame."""
    SUBMIT_CAMERA_FACES = "match.camera"
    """A camera worker's faces for matching, at one of its account's sites; it learns no result."""
    ORG_READ_MEMBERS = "org.members.read"
    ORG_READ_DRAFTS = "org.drafts.read"
    ORG_DRAFT_MANIFEST = "org.manifest.draft"
    ORG_SIGN_MANIFEST = "org.manifest.sign"
    ORG_PUBLISH_MANIFEST = "org.manifest.publish"
    ORG_READ_COMPLAINTS = "org.complaints.read"
    ORG_HANDLE_COMPLAINTS = "org.complaints.handle"
    ORG_DECIDE_FORKS = "org.forks.decide"
    ORG_MANAGE_REPORTS = "org.reports.manage"


NODE_ROLES: tuple[Role, ...] = (
    Role.REGISTRAR,
    Role.OFFICER,
    Role.OPERATOR,
    Role.AUDITOR,
    Role.ADMIN,
    Role.CAMERA,
)
"""The roles of a member's staff, in the order lists show them."""
ORG_ROLES: tuple[Role, ...] = (Role.SECRETARIAT, Role.KEY_HOLDER, Role.AUDITOR, Role.ADMIN)
"""The roles of the certified organisation's staff."""
ORG_ACTIONS = frozenset(
    {
        Action.ORG_READ_MEMBERS,
        Action.ORG_READ_DRAFTS,
        Action.ORG_DRAFT_MANIFEST,
        Action.ORG_SIGN_MANIFEST,
        Action.ORG_PUBLISH_MANIFEST,
        Action.ORG_READ_COMPLAINTS,
        Action.ORG_HANDLE_COMPLAINTS,
        Action.ORG_DECIDE_FORKS,
        Action.ORG_MANAGE_REPORTS,
    }
)
"""What only the organisation's console does (a member's node has no such page)."""


class Forbidden(PolicyError):
    code = "forbidden"


_PERMISSIONS: dict[Role, frozenset[Action]] = {
    Role.REGISTRAR: frozenset({Action.PROPOSE_ENTRY, Action.VIEW_OWN_PROPOSALS}),
    Role.OFFICER: frozenset(
        {
            Action.REVIEW_ENTRY,
            Action.APPROVE_ENTRY,
            Action.REJECT_ENTRY,
            Action.CORRECT_ENTRY,
            Action.DELETE_ENTRY,
            Action.READ_EVENT_LOG,
            Action.HANDLE_REQUESTS,
            Action.READ_REQUESTS,
            Action.RECORD_PROVISION,
            Action.READ_REPORT,
        }
    ),
    Role.OPERATOR: frozenset({Action.MATCH, Action.VIEW_ALERTS, Action.REVIEW_ALERT, Action.VIEW_CAMERAS}),
    Role.AUDITOR: frozenset(
        {
            Action.READ_AUDIT,
            Action.READ_EVENT_LOG,
            Action.READ_REQUESTS,
            Action.READ_REPORT,
            Action.ORG_READ_MEMBERS,
            Action.ORG_READ_DRAFTS,
            Action.ORG_READ_COMPLAINTS,
        }
    ),
    Role.ADMIN: frozenset(
        {
            Action.MANAGE_ACCOUNTS,
            Action.MANAGE_MANIFEST,
            Action.READ_REPORT,
            Action.READ_METRICS,
            Action.VIEW_CAMERAS,
            Action.ORG_READ_MEMBERS,
        }
    ),
    Role.CAMERA: frozenset({Action.SUBMIT_CAMERA_FACES}),
    Role.SECRETARIAT: frozenset(
        {
            Action.ORG_READ_MEMBERS,
            Action.ORG_READ_DRAFTS,
            Action.ORG_DRAFT_MANIFEST,
            Action.ORG_PUBLISH_MANIFEST,
            Action.ORG_READ_COMPLAINTS,
            Action.ORG_HANDLE_COMPLAINTS,
            Action.ORG_DECIDE_FORKS,
            Action.ORG_MANAGE_REPORTS,
        }
    ),
    Role.KEY_HOLDER: frozenset({Action.ORG_READ_MEMBERS, Action.ORG_READ_DRAFTS, Action.ORG_SIGN_MANIFEST}),
}


def permitted(role: Role, action: Action) -> bool:
    return action in _PERMISSIONS[role]


def require_permission(role: Role, action: Action) -> None:
    if not permitted(role, action):
        allowed = sorted(r.value for r, actions in _PERMISSIONS.items() if action in actions)
        raise Forbidden(f"role {role.value!r} may not {action.value} (allowed for: {', '.join(allowed)})")


def require_camera_site(role: Role, sites: tuple[str, ...], site: str) -> None:
    """A camera account submits only for the sites it was created for (``watchnet user add --site``)."""
    require_permission(role, Action.SUBMIT_CAMERA_FACES)
    if site not in sites:
        raise Forbidden(
            f"this camera account may submit for site(s) {', '.join(sites) or 'none'}, not {site!r:.63}"
        )
