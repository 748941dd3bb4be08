"""Building and editing manifests: what the organisation's CLI does, as pure functions.

A manifest starts from a description (TOML, parsed by the caller) and the organisation's public
keys. Every edit of a published manifest yields a new unsigned draft with the next version,
because a signed version must never change: the key holders then sign the draft.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from governance.errors import InvalidManifestError
from governance.manifest import (
    MANIFEST_ROLE,
    GroupPolicy,
    JointUse,
    Manifest,
    Member,
    MemberStatus,
    Role,
)
from protocol.errors import MalformedError
from protocol.fields import NODE_ID_RE, Fields, parse_duration
from protocol.keys import PublicSigningKey

__all__ = ["add_member", "manifest_from_description", "next_version", "renew", "set_member_status"]


def manifest_from_description(
    description: Any, signers: list[PublicSigningKey], threshold: int, now: datetime
) -> Manifest:
    """Version 1 of a group's manifest, expiring ``expires_in`` (e.g. "180d") from ``now``."""
    f = Fields(description, "description")
    group_id = f.text("group_id", max_len=63, pattern=NODE_ID_RE)
    expires_in = parse_duration(f.text("expires_in", max_len=16), field="description.expires_in")
    joint_use = JointUse.from_dict(f.obj("joint_use"))
    policy = GroupPolicy.from_dict(f.obj("policy"))
    if f.rest():
        raise MalformedError(f"description: unknown settings {sorted(f.rest())}")
    if len({k.keyid for k in signers}) != len(signers):
        raise InvalidManifestError("the same signer key was given twice")
    keys = {k.keyid: k for k in signers}
    return Manifest(
        group_id=group_id,
        version=1,
        expires=now + expires_in,
        keys=keys,
        roles={MANIFEST_ROLE: Role(tuple(keys), threshold)},
        joint_use=joint_use,
        policy=policy,
    )


def next_version(manifest: Manifest, *, expires: datetime | None = None, **changes: Any) -> Manifest:
    """The next draft: version + 1, optional new expiry and other changes."""
    return replace(
        manifest,
        version=manifest.version + 1,
        expires=expires if expires is not None else manifest.expires,
        **changes,
    )


def add_member(manifest: Manifest, member: Member) -> Manifest:
    if manifest.member(member.node_id) is not None:
        raise InvalidManifestError(f"{member.node_id!r} is already a member")
    joint = replace(manifest.joint_use, members=(*manifest.joint_use.members, member))
    return next_version(manifest, joint_use=joint)


def set_member_status(manifest: Manifest, node_id: str, status: MemberStatus) -> Manifest:
    """Suspend, remove or reinstate a member; peers refuse it once they trust the new version."""
    if manifest.member(node_id) is None:
        raise InvalidManifestError(f"{node_id!r} is not a member of group {manifest.group_id!r}")
    members = tuple(
        replace(m, status=status) if m.node_id == node_id else m for m in manifest.joint_use.members
    )
    return next_version(manifest, joint_use=replace(manifest.joint_use, members=members))


def renew(manifest: Manifest, now: datetime, expires_in: timedelta) -> Manifest:
    return next_version(manifest, expires=now + expires_in)
