"""Policy refusals: authentic and fresh, but the group's rules say no.

Each subclass has a stable ``code`` so a node can count refusals by kind in the audit log and the
transparency report, and map them to wire errors without parsing messages.
"""

from __future__ import annotations

from collections.abc import Sequence

from protocol.errors import MalformedError, PolicyError

__all__ = [
    "InvalidManifestError",
    "ItemNotShared",
    "MemberNotActive",
    "ModelMismatch",
    "NotAMember",
    "PurposeNotAllowed",
    "RegistrationRefused",
]


class InvalidManifestError(MalformedError):
    """A manifest that parses but is not coherent (unknown role keys, no purposes, ...)."""

    code = "invalid_manifest"


class NotAMember(PolicyError):
    code = "not_a_member"


class MemberNotActive(PolicyError):
    code = "member_not_active"


class PurposeNotAllowed(PolicyError):
    code = "purpose_not_allowed"


class ItemNotShared(PolicyError):
    code = "item_not_shared"


class ModelMismatch(PolicyError):
    code = "model_mismatch"


class RegistrationRefused(PolicyError):
    """An entry breaks the registration rules; ``violations`` lists every broken rule."""

    code = "registration_refused"

    def __init__(self, violations: Sequence[str]) -> None:
        self.violations = list(violations)
        super().__init__("; ".join(self.violations))


class QueryModeNotAllowed(PolicyError):
    """A query in a mode the group or the answering member does not accept."""

    code = "query_mode_not_allowed"
