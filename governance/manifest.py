"""The governance manifest: the signed joint-use notice and group policy (APPI Art. 27-5-3).

Modelled on TUF's root metadata: a strictly increasing ``version``, an ``expires`` time, the
certified privacy organisation's keys and a signature ``threshold`` for the ``manifest`` role.
Its body is what the law asks a joint-use group to publish (the fact of joint use, the items,
the joint users, the purposes, the accountable administrator) plus the policy every node
enforces (model pin, match threshold, retention, categories, evidence). One signed document
drives both what the public notice says and what the nodes do, so the two cannot drift.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Self

from governance.disclosure import ScoreDisclosure, default_disclosure
from governance.errors import InvalidManifestError
from protocol.errors import MalformedError
from protocol.fields import CODE_RE, NODE_ID_RE, Fields, format_time
from protocol.he_params import HEParameters
from protocol.keys import PublicEncryptionKey, PublicSigningKey, keyid_of
from protocol.signed import SPEC_VERSION, Payload

__all__ = [
    "MANIFEST_ROLE",
    "ORGANISATION_WITNESS",
    "Administrator",
    "GroupPolicy",
    "JointUse",
    "Label",
    "LocalizedText",
    "Manifest",
    "Member",
    "MemberStatus",
    "ModelPin",
    "OrganisationWitness",
    "QueryModes",
    "Role",
    "WitnessPolicy",
]

MANIFEST_ROLE = "manifest"
MAX_MEMBERS = 512
_ENDPOINT_RE = re.compile(r"https?://[A-Za-z0-9.-]+(:\d{1,5})?(/[A-Za-z0-9._~/-]*)?")
_SHA256_RE = re.compile(r"[0-9a-f]{64}")
_GROUP_RE = NODE_ID_RE


@dataclass(frozen=True)
class LocalizedText:
    """The same statement in Japanese and English (the notice is published in both)."""

    ja: str
    en: str

    def get(self, lang: str) -> str:
        return self.ja if lang == "ja" else self.en

    def to_dict(self) -> dict[str, Any]:
        return {"ja": self.ja, "en": self.en}

    @classmethod
    def from_dict(cls, data: Any, what: str) -> LocalizedText:
        f = Fields(data, what)
        ja, en = f.text("ja", max_len=2000), f.text("en", max_len=2000)
        if not ja.strip() or not en.strip():
            raise MalformedError(f"{what}: both 'ja' and 'en' must be non-empty")
        if f.rest():
            raise MalformedError(f"{what}: unexpected fields {sorted(f.rest())}")
        return cls(ja, en)


@dataclass(frozen=True)
class Label:
    """A code the nodes enforce, with the words the notice shows for it."""

    code: str
    text: LocalizedText

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, **self.text.to_dict()}

    @classmethod
    def from_dict(cls, data: Any, what: str) -> Label:
        f = Fields(data, what)
        code = f.text("code", max_len=48, pattern=CODE_RE)
        return cls(code, LocalizedText.from_dict(f.rest(), what))


class MemberStatus(enum.StrEnum):
    ACTIVE = "active"
    SUSPENDED = "suspended"
    REMOVED = "removed"


@dataclass(frozen=True)
class Member:
    """A joint user: who it is, how to reach it, and the keys it signs and receives with."""

    node_id: str
    name: LocalizedText
    signing_key: PublicSigningKey
    encryption_key: PublicEncryptionKey
    endpoint: str
    status: MemberStatus = MemberStatus.ACTIVE
    private_only: bool = False
    """This member answers queries only in private mode (it never sees a passer-by's face)."""

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "node_id": self.node_id,
            "name": self.name.to_dict(),
            "signing_key": self.signing_key.to_str(),
            "encryption_key": self.encryption_key.to_str(),
            "endpoint": self.endpoint,
            "status": self.status.value,
        }
        if self.private_only:
            d["private_only"] = True
        return d

    @classmethod
    def from_dict(cls, data: Any, what: str = "member") -> Member:
        f = Fields(data, what)
        member = cls(
            node_id=f.text("node_id", max_len=63, pattern=NODE_ID_RE),
            name=LocalizedText.from_dict(f.obj("name"), f"{what}.name"),
            signing_key=PublicSigningKey.from_str(
                f.text("signing_key", max_len=64), field=f"{what}.signing_key"
            ),
            encryption_key=PublicEncryptionKey.from_str(
                f.text("encryption_key", max_len=64), field=f"{what}.encryption_key"
            ),
            endpoint=f.text("endpoint", max_len=256, pattern=_ENDPOINT_RE),
            status=f.enum("status", MemberStatus),
            private_only=f.optional("private_only", False, f.boolean),
        )
        if f.rest():
            raise MalformedError(f"{what}: unexpected fields {sorted(f.rest())}")
        return member


@dataclass(frozen=True)
class Administrator:
    """The business operator responsible for managing the jointly used data (Art. 27-5-3)."""

    name: LocalizedText
    address: LocalizedText
    representative: LocalizedText
    contact: LocalizedText

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name.to_dict(),
            "address": self.address.to_dict(),
            "representative": self.representative.to_dict(),
            "contact": self.contact.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: Any) -> Administrator:
        f = Fields(data, "administrator")
        admin = cls(
            **{
                name: LocalizedText.from_dict(f.obj(name), f"administrator.{name}")
                for name in ("name", "address", "representative", "contact")
            }
        )
        if f.rest():
            raise MalformedError(f"administrator: unexpected fields {sorted(f.rest())}")
        return admin


@dataclass(frozen=True)
class JointUse:
    """The five items a joint-use group must make known to the people concerned."""

    statement: LocalizedText
    items: tuple[Label, ...]
    members: tuple[Member, ...]
    purposes: tuple[Label, ...]
    administrator: Administrator

    def to_dict(self) -> dict[str, Any]:
        return {
            "statement": self.statement.to_dict(),
            "items": [i.to_dict() for i in self.items],
            "members": [m.to_dict() for m in self.members],
            "purposes": [p.to_dict() for p in self.purposes],
            "administrator": self.administrator.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: Any) -> JointUse:
        f = Fields(data, "joint_use")
        joint = cls(
            statement=LocalizedText.from_dict(f.obj("statement"), "joint_use.statement"),
            items=tuple(
                Label.from_dict(x, f"joint_use.items[{i}]")
                for i, x in enumerate(f.array("items", max_items=64))
            ),
            members=tuple(
                Member.from_dict(x, f"joint_use.members[{i}]")
                for i, x in enumerate(f.array("members", max_items=MAX_MEMBERS))
            ),
            purposes=tuple(
                Label.from_dict(x, f"joint_use.purposes[{i}]")
                for i, x in enumerate(f.array("purposes", max_items=32))
            ),
            administrator=Administrator.from_dict(f.obj("administrator")),
        )
        if f.rest():
            raise MalformedError(f"joint_use: unexpected fields {sorted(f.rest())}")
        return joint


@dataclass(frozen=True)
class ModelPin:
    """The one embedding model the group uses: scores from different models mean nothing together."""

    model_id: str
    dimension: int
    weights_sha256: str

    def to_dict(self) -> dict[str, Any]:
        return {"model_id": self.model_id, "dimension": self.dimension, "weights_sha256": self.weights_sha256}

    @classmethod
    def from_dict(cls, data: Any) -> ModelPin:
        f = Fields(data, "policy.model")
        pin = cls(
            model_id=f.text("model_id", max_len=128),
            dimension=f.integer("dimension", low=1, high=4096),
            weights_sha256=f.text("weights_sha256", max_len=64, pattern=_SHA256_RE),
        )
        if f.rest():
            raise MalformedError(f"policy.model: unexpected fields {sorted(f.rest())}")
        return pin


QUERY_MODES = ("plain", "private")


@dataclass(frozen=True)
class QueryModes:
    """How members may query each other: plain (the peer sees the face) and/or private (CKKS)."""

    allowed: tuple[str, ...]
    he: HEParameters | None = None

    def __post_init__(self) -> None:
        if not self.allowed or len(set(self.allowed)) != len(self.allowed):
            raise InvalidManifestError(
                f"policy.query_modes.allowed {list(self.allowed)}: name each mode once"
            )
        unknown = sorted(set(self.allowed) - set(QUERY_MODES))
        if unknown:
            raise InvalidManifestError(
                f"policy.query_modes.allowed: unknown modes {unknown}, expected {QUERY_MODES}"
            )
        if ("private" in self.allowed) != (self.he is not None):
            raise InvalidManifestError(
                "policy.query_modes: the he parameters are given exactly when private mode is allowed"
            )

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"allowed": list(self.allowed)}
        if self.he is not None:
            d["he"] = self.he.to_dict()
        return d

    @classmethod
    def from_dict(cls, data: Any) -> QueryModes:
        f = Fields(data, "policy.query_modes")
        modes = cls(
            allowed=tuple(f.texts("allowed", max_items=len(QUERY_MODES), max_len=16, pattern=CODE_RE)),
            he=f.optional("he", None, lambda n: HEParameters.from_dict(f.obj(n), "policy.query_modes.he")),
        )
        if f.rest():
            raise MalformedError(f"policy.query_modes: unexpected fields {sorted(f.rest())}")
        return modes


PLAIN_ONLY = QueryModes(allowed=("plain",))
"""What a manifest without ``query_modes`` means: the mode every earlier version had."""


MAX_REQUIRED_COSIGNATURES = 63
"""A checkpoint note carries at most 64 signature lines: the log's own and 63 cosignatures."""


ORGANISATION_WITNESS = "organisation"
"""The witness id of the certified organisation's witness, beside the members' node ids."""


@dataclass(frozen=True)
class OrganisationWitness:
    """The organisation's own witness (``watchnet gov serve --witness-key``): an online Ed25519
    key, never one of the offline keys that sign the manifest, and where it answers."""

    key: PublicSigningKey
    endpoint: str

    def __post_init__(self) -> None:
        if not _ENDPOINT_RE.fullmatch(self.endpoint):
            raise InvalidManifestError(
                f"policy.witness.organisation.endpoint: {self.endpoint!r:.80} is not an http(s) URL"
            )

    def to_dict(self) -> dict[str, Any]:
        return {"key": self.key.to_str(), "endpoint": self.endpoint}

    @classmethod
    def from_dict(cls, data: Any) -> OrganisationWitness:
        f = Fields(data, "policy.witness.organisation")
        witness = cls(
            key=PublicSigningKey.from_str(
                f.text("key", max_len=128), field="policy.witness.organisation.key"
            ),
            endpoint=f.text("endpoint", max_len=256),
        )
        f.finish()
        return witness


@dataclass(frozen=True)
class WitnessPolicy:
    """How many witnesses must have cosigned a member's checkpoint before an auditor accepts its log.

    The witnesses of a member's log are the other members that are not removed (each member
    witnesses every other, ``node/records/witnessing.py``) and, when ``organisation`` is set, the
    organisation's witness; a cosignature counts once per witness, on a checkpoint consistent
    with the head the auditor verified."""

    required: int = 0
    organisation: OrganisationWitness | None = None

    def __post_init__(self) -> None:
        if not (0 <= self.required <= MAX_REQUIRED_COSIGNATURES):
            raise InvalidManifestError(
                f"policy.witness.required: {self.required}, expected 0..{MAX_REQUIRED_COSIGNATURES}"
            )

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"required": self.required}
        if self.organisation is not None:
            d["organisation"] = self.organisation.to_dict()
        return d

    @classmethod
    def from_dict(cls, data: Any) -> WitnessPolicy:
        f = Fields(data, "policy.witness")
        policy = cls(
            required=f.integer("required", low=0, high=MAX_REQUIRED_COSIGNATURES),
            organisation=f.optional("organisation", None, lambda n: OrganisationWitness.from_dict(f.obj(n))),
        )
        if f.rest():
            raise MalformedError(f"policy.witness: unexpected fields {sorted(f.rest())}")
        return policy


NO_WITNESS = WitnessPolicy()
"""What a manifest without ``policy.witness`` means: no cosignature required (every earlier version)."""


@dataclass(frozen=True)
class GroupPolicy:
    """What every member node enforces."""

    model: ModelPin
    match_threshold: float
    max_retention_days: int
    incident_categories: tuple[str, ...]
    required_evidence: tuple[str, ...]
    query_modes: QueryModes = PLAIN_ONLY
    disclosure_rule: ScoreDisclosure | None = None
    """As the manifest states it; ``disclosure`` gives the rule in force (the default if absent)."""
    witness: WitnessPolicy = NO_WITNESS

    @property
    def disclosure(self) -> ScoreDisclosure:
        return self.disclosure_rule or default_disclosure(self.match_threshold)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "model": self.model.to_dict(),
            "match_threshold": self.match_threshold,
            "max_retention_days": self.max_retention_days,
            "incident_categories": list(self.incident_categories),
            "required_evidence": list(self.required_evidence),
        }
        if self.query_modes != PLAIN_ONLY:
            d["query_modes"] = self.query_modes.to_dict()
        if self.disclosure_rule is not None:
            d["disclosure"] = self.disclosure_rule.to_dict()
        if self.witness != NO_WITNESS:
            d["witness"] = self.witness.to_dict()
        return d

    @classmethod
    def from_dict(cls, data: Any) -> GroupPolicy:
        f = Fields(data, "policy")
        match_threshold = f.number("match_threshold", low=0.0, high=1.0)
        policy = cls(
            model=ModelPin.from_dict(f.obj("model")),
            match_threshold=match_threshold,
            max_retention_days=f.integer("max_retention_days", low=1, high=3650),
            incident_categories=tuple(
                f.texts("incident_categories", max_items=64, max_len=48, pattern=CODE_RE)
            ),
            required_evidence=tuple(f.texts("required_evidence", max_items=32, max_len=48, pattern=CODE_RE)),
            query_modes=f.optional("query_modes", PLAIN_ONLY, lambda n: QueryModes.from_dict(f.obj(n))),
            disclosure_rule=f.optional(
                "disclosure", None, lambda n: ScoreDisclosure.from_dict(f.obj(n), match_threshold)
            ),
            witness=f.optional("witness", NO_WITNESS, lambda n: WitnessPolicy.from_dict(f.obj(n))),
        )
        if f.rest():
            raise MalformedError(f"policy: unexpected fields {sorted(f.rest())}")
        if not policy.incident_categories:
            raise InvalidManifestError(
                "policy.incident_categories is empty: nothing could ever be registered"
            )
        if not policy.required_evidence:
            raise InvalidManifestError(
                "policy.required_evidence is empty: registration needs objective evidence"
            )
        return policy


@dataclass(frozen=True)
class Role:
    """Key ids allowed to sign for a role, and how many of them must."""

    keyids: tuple[str, ...]
    threshold: int

    def to_dict(self) -> dict[str, Any]:
        return {"keyids": list(self.keyids), "threshold": self.threshold}

    @classmethod
    def from_dict(cls, data: Any, what: str) -> Role:
        f = Fields(data, what)
        keyids = tuple(f.texts("keyids", max_items=16, max_len=64, pattern=_SHA256_RE))
        threshold = f.integer("threshold", low=1, high=16)
        if f.rest():
            raise MalformedError(f"{what}: unexpected fields {sorted(f.rest())}")
        if threshold > len(keyids):
            raise InvalidManifestError(f"{what}: threshold {threshold} but only {len(keyids)} keys")
        return cls(keyids, threshold)


@dataclass(kw_only=True)
class Manifest(Payload):
    """Version ``version`` of the joint-use group ``group_id``, valid until ``expires``."""

    TYPE = "governance-manifest"

    group_id: str
    version: int
    expires: datetime
    keys: dict[str, PublicSigningKey]
    roles: dict[str, Role]
    joint_use: JointUse
    policy: GroupPolicy
    spec_version: str = SPEC_VERSION
    unrecognized_fields: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._validate()

    def _validate(self) -> None:
        if self.version < 1:
            raise InvalidManifestError(f"version must be >= 1, got {self.version}")
        for keyid, key in self.keys.items():
            if keyid_of(key.raw) != keyid:
                raise InvalidManifestError(f"keys: key id {keyid[:16]}... does not match its key")
        if MANIFEST_ROLE not in self.roles:
            raise InvalidManifestError(f"roles: the {MANIFEST_ROLE!r} role is missing")
        for name, role in self.roles.items():
            missing = [k for k in role.keyids if k not in self.keys]
            if missing:
                raise InvalidManifestError(f"roles.{name}: {len(missing)} key id(s) not listed in keys")
        node_ids = [m.node_id for m in self.joint_use.members]
        if len(set(node_ids)) != len(node_ids):
            raise InvalidManifestError("joint_use.members: duplicate node ids")
        signing = [m.signing_key.raw for m in self.joint_use.members]
        encryption = [m.encryption_key.raw for m in self.joint_use.members]
        if len(set(signing)) != len(signing) or len(set(encryption)) != len(encryption):
            raise InvalidManifestError("joint_use.members: two members share a key")
        if not self.joint_use.purposes:
            raise InvalidManifestError(
                "joint_use.purposes is empty: the purposes must be specified (Art. 17)"
            )
        if not self.joint_use.items:
            raise InvalidManifestError("joint_use.items is empty: the jointly used items must be listed")
        if "private" not in self.policy.query_modes.allowed:
            strict = [m.node_id for m in self.joint_use.members if m.private_only]
            if strict:
                raise InvalidManifestError(
                    f"joint_use.members {strict} answer only private queries, but the group does not allow private mode"
                )
        for what, labels in (("purposes", self.joint_use.purposes), ("items", self.joint_use.items)):
            codes = [label.code for label in labels]
            if len(set(codes)) != len(codes):
                raise InvalidManifestError(f"joint_use.{what}: duplicate codes")

    @property
    def manifest_role(self) -> Role:
        return self.roles[MANIFEST_ROLE]

    def role_keys(self, role: str = MANIFEST_ROLE) -> dict[str, PublicSigningKey]:
        return {keyid: self.keys[keyid] for keyid in self.roles[role].keyids}

    def member(self, node_id: str) -> Member | None:
        return next((m for m in self.joint_use.members if m.node_id == node_id), None)

    def witnesses_of(self, node_id: str) -> list[str]:
        """Whose cosignature of ``node_id``'s checkpoints counts: every other member not removed,
        and the organisation's witness (``ORGANISATION_WITNESS``) when the policy names one."""
        organisation = [ORGANISATION_WITNESS] if self.policy.witness.organisation is not None else []
        return [*self.confirming_members(node_id), *organisation]

    def witness_key(self, witness: str) -> PublicSigningKey | None:
        """The key a witness cosigns with: a member's signing key, or the organisation's witness key."""
        organisation = self.policy.witness.organisation
        if witness == ORGANISATION_WITNESS:
            return None if organisation is None else organisation.key
        member = self.member(witness)
        return None if member is None else member.signing_key

    def witness_endpoint(self, witness: str) -> str | None:
        """Where a witness answers ``add-checkpoint`` and tells the checkpoint it holds."""
        organisation = self.policy.witness.organisation
        if witness == ORGANISATION_WITNESS:
            return None if organisation is None else organisation.endpoint
        member = self.member(witness)
        return None if member is None else member.endpoint

    def confirming_members(self, node_id: str) -> list[str]:
        """Members that must confirm ``node_id``'s changes: everyone listed and not removed, except it."""
        return sorted(
            m.node_id
            for m in self.joint_use.members
            if m.node_id != node_id and m.status is not MemberStatus.REMOVED
        )

    @property
    def purpose_codes(self) -> frozenset[str]:
        return frozenset(p.code for p in self.joint_use.purposes)

    @property
    def item_codes(self) -> frozenset[str]:
        return frozenset(i.code for i in self.joint_use.items)

    def is_expired(self, now: datetime) -> bool:
        return now >= self.expires

    def with_changes(self, **changes: Any) -> Manifest:
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return self._with_unrecognized(
            {
                **self._header(),
                "group_id": self.group_id,
                "version": self.version,
                "expires": format_time(self.expires),
                "keys": {k: {"keytype": "ed25519", "public": v.to_str()} for k, v in self.keys.items()},
                "roles": {name: role.to_dict() for name, role in self.roles.items()},
                "joint_use": self.joint_use.to_dict(),
                "policy": self.policy.to_dict(),
            }
        )

    @classmethod
    def from_dict(cls, data: Any) -> Self:
        f, spec_version = cls._read_header(data)
        group_id = f.text("group_id", max_len=63, pattern=_GROUP_RE)
        version = f.integer("version", low=1)
        expires = f.time("expires")
        keys: dict[str, PublicSigningKey] = {}
        raw_keys = f.obj("keys")
        if len(raw_keys) > 16:
            raise MalformedError(f"manifest.keys: {len(raw_keys)} keys, limit 16")
        for keyid, value in raw_keys.items():
            kf = Fields(value, f"keys[{keyid[:16]}]")
            kf.const("keytype", "ed25519")
            keys[keyid] = PublicSigningKey.from_str(
                kf.text("public", max_len=64), field=f"keys[{keyid[:16]}].public"
            )
        raw_roles = f.obj("roles")
        roles = {name: Role.from_dict(value, f"roles.{name}") for name, value in raw_roles.items()}
        return cls(
            group_id=group_id,
            version=version,
            expires=expires,
            keys=keys,
            roles=roles,
            joint_use=JointUse.from_dict(f.obj("joint_use")),
            policy=GroupPolicy.from_dict(f.obj("policy")),
            spec_version=spec_version,
            unrecognized_fields=f.rest(),
        )
