"""The questions every node asks the trusted manifest before it acts.

Is this node a current member? Is this purpose one of the group's? Is this item shared? Is
this the pinned model? Each refusal is a specific ``PolicyError`` so it is audited and counted
by kind. A suspended or removed member is refused from the moment the manifest that says so
is trusted.
"""

from __future__ import annotations

from governance.errors import (
    ItemNotShared,
    MemberNotActive,
    ModelMismatch,
    NotAMember,
    PurposeNotAllowed,
    QueryModeNotAllowed,
)
from governance.manifest import Manifest, Member, MemberStatus

__all__ = [
    "FACE_IMAGE_ITEM",
    "query_mode_for",
    "require_item_shared",
    "require_member",
    "require_model",
    "require_purpose",
    "require_query_mode",
]


FACE_IMAGE_ITEM = "face-image"
"""The jointly used item that lets a member see the face an owner registered (its crop), e.g. for
an operator's decision on an alert; without it a face crop never leaves its owner."""


def require_member(manifest: Manifest, node_id: str) -> Member:
    member = manifest.member(node_id)
    if member is None:
        raise NotAMember(
            f"{node_id!r} is not a joint user in manifest version {manifest.version} "
            f"({len(manifest.joint_use.members)} members)"
        )
    if member.status is not MemberStatus.ACTIVE:
        raise MemberNotActive(f"{node_id!r} is {member.status.value} in manifest version {manifest.version}")
    return member


def require_purpose(manifest: Manifest, purpose: str) -> None:
    if purpose not in manifest.purpose_codes:
        raise PurposeNotAllowed(
            f"purpose {purpose!r} is not among the group's purposes {sorted(manifest.purpose_codes)}; "
            "using the data for another purpose needs the person's consent, which watchnet does not offer"
        )


def require_item_shared(manifest: Manifest, item: str) -> None:
    if item not in manifest.item_codes:
        raise ItemNotShared(f"item {item!r} is not a jointly used item {sorted(manifest.item_codes)}")


def require_model(manifest: Manifest, model_id: str) -> None:
    pinned = manifest.policy.model.model_id
    if model_id != pinned:
        raise ModelMismatch(f"embedding model {model_id!r} is not the group's pinned model {pinned!r}")


def require_query_mode(manifest: Manifest, answering: Member | None, mode: str) -> None:
    """The group allows ``mode`` and the answering member accepts it (a private-only member refuses plain)."""
    allowed = manifest.policy.query_modes.allowed
    if mode not in allowed:
        raise QueryModeNotAllowed(
            f"{mode} queries are not allowed in manifest version {manifest.version} (allowed: {list(allowed)})"
        )
    if mode == "plain" and answering is not None and answering.private_only:
        raise QueryModeNotAllowed(
            f"{answering.node_id} answers only private queries (manifest version {manifest.version}); "
            "ask again with private mode"
        )


def query_mode_for(manifest: Manifest, peer: Member, preferred: str) -> str:
    """The mode to ask ``peer`` in: ``preferred`` when allowed, private when the peer demands it."""
    allowed = manifest.policy.query_modes.allowed
    if peer.private_only or (preferred == "private" and "private" in allowed):
        return "private"
    if preferred in allowed:
        return preferred
    return allowed[0]
