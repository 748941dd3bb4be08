"""What a draft manifest changes against the version in force, as a list a person can read.

The organisation's key holders sign a whole manifest, but what they decide is its difference
from the version the group runs now: a member added, a member suspended, a purpose removed, the
signature threshold raised, the retention shortened. ``manifest_changes`` lists those
differences as typed ``Change`` records (a code and its values, no prose), so the console can
say them in Japanese and English and a test can check them without parsing text. Anything that
differs but has no change kind of its own is reported as ``other`` with the field's name, so a
draft can never change something silently.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from governance.manifest import MANIFEST_ROLE, Label, LocalizedText, Manifest, Member, MemberStatus
from protocol.fields import format_time

__all__ = ["CHANGE_KINDS", "Change", "manifest_changes"]

CHANGE_KINDS = (
    "member-added",
    "member-suspended",
    "member-reinstated",
    "member-removed",
    "member-endpoint",
    "member-keys",
    "member-name",
    "member-private-only",
    "purpose-added",
    "purpose-removed",
    "item-added",
    "item-removed",
    "signer-added",
    "signer-removed",
    "threshold",
    "retention-shortened",
    "retention-lengthened",
    "match-threshold",
    "category-added",
    "category-removed",
    "evidence-added",
    "evidence-removed",
    "model",
    "expires",
    "administrator",
    "statement",
    "other",
)
"""Every kind ``manifest_changes`` reports, in the order it lists them."""


@dataclass(frozen=True)
class Change:
    """One difference: ``kind`` (of ``CHANGE_KINDS``), what it is about (``subject``: a node
    id, a code, a key id, a field name), its value before and after (as text, when it has
    one), and the member's or label's name in both languages when there is one."""

    kind: str
    subject: str = ""
    before: str = ""
    after: str = ""
    name: LocalizedText | None = None

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "kind": self.kind,
            "subject": self.subject,
            "before": self.before,
            "after": self.after,
        }
        if self.name is not None:
            d["name"] = self.name.to_dict()
        return d


_STATUS_KIND = {
    MemberStatus.SUSPENDED: "member-suspended",
    MemberStatus.ACTIVE: "member-reinstated",
    MemberStatus.REMOVED: "member-removed",
}


def _members(old: Manifest, new: Manifest) -> list[Change]:
    changes: list[Change] = []
    before = {m.node_id: m for m in old.joint_use.members}
    for member in new.joint_use.members:
        was: Member | None = before.get(member.node_id)
        if was is None:
            changes.append(Change("member-added", member.node_id, after=member.endpoint, name=member.name))
            continue
        if was.status != member.status:
            changes.append(
                Change(
                    _STATUS_KIND[member.status],
                    member.node_id,
                    was.status.value,
                    member.status.value,
                    member.name,
                )
            )
        if was.endpoint != member.endpoint:
            changes.append(
                Change("member-endpoint", member.node_id, was.endpoint, member.endpoint, member.name)
            )
        if was.signing_key != member.signing_key or was.encryption_key != member.encryption_key:
            changes.append(
                Change(
                    "member-keys",
                    member.node_id,
                    was.signing_key.keyid[:16],
                    member.signing_key.keyid[:16],
                    member.name,
                )
            )
        if was.name != member.name:
            changes.append(Change("member-name", member.node_id, was.name.en, member.name.en, member.name))
        if was.private_only != member.private_only:
            changes.append(
                Change(
                    "member-private-only",
                    member.node_id,
                    str(was.private_only).lower(),
                    str(member.private_only).lower(),
                    member.name,
                )
            )
    kept = {m.node_id for m in new.joint_use.members}
    for node_id, member in before.items():
        if node_id not in kept:  # a member dropped from the list altogether
            changes.append(Change("member-removed", node_id, member.status.value, "", member.name))
    return changes


def _labels(kind: str, old: tuple[Label, ...], new: tuple[Label, ...]) -> list[Change]:
    was = {label.code: label for label in old}
    now = {label.code: label for label in new}
    added = [Change(f"{kind}-added", code, name=label.text) for code, label in now.items() if code not in was]
    removed = [
        Change(f"{kind}-removed", code, name=label.text) for code, label in was.items() if code not in now
    ]
    return added + removed


def _codes(kind: str, old: tuple[str, ...], new: tuple[str, ...]) -> list[Change]:
    return [Change(f"{kind}-added", c) for c in new if c not in old] + [
        Change(f"{kind}-removed", c) for c in old if c not in new
    ]


def manifest_changes(old: Manifest, new: Manifest) -> list[Change]:
    """What ``new`` changes against ``old`` (the version in force), in ``CHANGE_KINDS`` order.

    The version number and the expiry's time of day are not changes of their own: a draft is
    always the next version. An empty list means the draft says the same as the version in force.
    """
    changes = _members(old, new)
    changes += _labels("purpose", old.joint_use.purposes, new.joint_use.purposes)
    changes += _labels("item", old.joint_use.items, new.joint_use.items)
    old_signers, new_signers = set(old.manifest_role.keyids), set(new.manifest_role.keyids)
    changes += [Change("signer-added", k[:16]) for k in new.manifest_role.keyids if k not in old_signers]
    changes += [Change("signer-removed", k[:16]) for k in old.manifest_role.keyids if k not in new_signers]
    if old.manifest_role.threshold != new.manifest_role.threshold:
        changes.append(
            Change(
                "threshold", MANIFEST_ROLE, str(old.manifest_role.threshold), str(new.manifest_role.threshold)
            )
        )
    was, now = old.policy, new.policy
    if now.max_retention_days != was.max_retention_days:
        kind = (
            "retention-shortened"
            if now.max_retention_days < was.max_retention_days
            else "retention-lengthened"
        )
        changes.append(
            Change(kind, "max_retention_days", str(was.max_retention_days), str(now.max_retention_days))
        )
    if now.match_threshold != was.match_threshold:
        changes.append(
            Change("match-threshold", "match_threshold", str(was.match_threshold), str(now.match_threshold))
        )
    changes += _codes("category", was.incident_categories, now.incident_categories)
    changes += _codes("evidence", was.required_evidence, now.required_evidence)
    if now.model != was.model:
        changes.append(Change("model", "model", was.model.model_id, now.model.model_id))
    if new.expires != old.expires:
        changes.append(Change("expires", "expires", format_time(old.expires), format_time(new.expires)))
    if new.joint_use.administrator != old.joint_use.administrator:
        changes.append(Change("administrator", "administrator", name=new.joint_use.administrator.name))
    if new.joint_use.statement != old.joint_use.statement:
        changes.append(Change("statement", "statement"))
    described = {"model", "match_threshold", "max_retention_days", "incident_categories", "required_evidence"}
    old_policy, new_policy = was.to_dict(), now.to_dict()
    for name in sorted(set(old_policy) | set(new_policy)):
        if name not in described and old_policy.get(name) != new_policy.get(name):
            changes.append(Change("other", f"policy.{name}"))
    if old.keys.keys() - old_signers != new.keys.keys() - new_signers or old.roles.keys() != new.roles.keys():
        changes.append(Change("other", "keys"))
    if old.unrecognized_fields != new.unrecognized_fields:
        changes.append(Change("other", "unrecognized_fields"))
    return changes
