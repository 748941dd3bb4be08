"""The governance manifest: structure, trust (initial, rotation, rollback, expiry), policy, rules, notice."""

from __future__ import annotations

import copy
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from governance.description import add_member, next_version, renew, set_member_status
from governance.errors import (
    InvalidManifestError,
    ItemNotShared,
    MemberNotActive,
    ModelMismatch,
    NotAMember,
    PurposeNotAllowed,
    RegistrationRefused,
)
from governance.manifest import LocalizedText, Manifest, Member, MemberStatus
from governance.notice import render_notice
from governance.policy import require_item_shared, require_member, require_model, require_purpose
from governance.rules import RegistrationRules, check_entry
from governance.trust import assess, verify_initial, verify_update
from protocol.canonical import canonical_bytes
from protocol.errors import ExpiredError, MalformedError, RollbackError, ThresholdError
from protocol.keys import EncryptionKey, SigningKey
from protocol.signed import SignedDocument
from tests.factories import KEYS, T0, make_entry, make_manifest, signed_manifest

PINNED = [k.keyid for k in KEYS]
LATER = T0 + timedelta(days=1)


def test_round_trip_and_unknown_fields() -> None:
    d = make_manifest().to_dict()
    d["x_future_policy"] = {"appeal_days": 14}
    parsed = Manifest.from_dict(copy.deepcopy(d))
    assert canonical_bytes(parsed.to_dict()) == canonical_bytes(d)


@settings(max_examples=30, deadline=None)
@given(
    version=st.integers(1, 10**6),
    threshold=st.floats(0.0, 1.0),
    days=st.integers(1, 3650),
    extra=st.dictionaries(
        st.from_regex(r"x_[a-z]{1,8}", fullmatch=True),
        st.integers(-(2**53) + 1, 2**53 - 1) | st.text(max_size=5),
        max_size=3,
    ),
)
def test_round_trip_property(version: int, threshold: float, days: int, extra: dict[str, Any]) -> None:
    m = make_manifest()
    m = replace(
        m, version=version, policy=replace(m.policy, match_threshold=threshold, max_retention_days=days)
    )
    d = {**m.to_dict(), **extra}
    assert canonical_bytes(Manifest.from_dict(d).to_dict()) == canonical_bytes(d)


def _mutate(path: list[Any], value: Any) -> dict[str, Any]:
    d = make_manifest().to_dict()
    target = d
    for key in path[:-1]:
        target = target[key]
    if value is _DELETE:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return d


_DELETE = object()
KEYID0 = KEYS[0].keyid
INVALID = [
    ("role-key-not-listed", ["roles", "manifest", "keyids"], [*PINNED[:2], "ab" * 32], InvalidManifestError),
    ("threshold-too-high", ["roles", "manifest", "threshold"], 4, InvalidManifestError),
    ("threshold-zero", ["roles", "manifest", "threshold"], 0, MalformedError),
    ("duplicate-role-keyids", ["roles", "manifest", "keyids"], [KEYID0, KEYID0], MalformedError),
    ("keyid-mismatch", ["keys", KEYID0, "public"], KEYS[1].public.to_str(), InvalidManifestError),
    ("no-manifest-role", ["roles"], {}, InvalidManifestError),
    ("empty-purposes", ["joint_use", "purposes"], [], InvalidManifestError),
    ("empty-items", ["joint_use", "items"], [], InvalidManifestError),
    ("member-without-endpoint", ["joint_use", "members", 0, "endpoint"], _DELETE, MalformedError),
    ("member-without-keys", ["joint_use", "members", 0, "signing_key"], _DELETE, MalformedError),
    ("member-bad-endpoint", ["joint_use", "members", 0, "endpoint"], "ftp://x", MalformedError),
    ("member-bad-status", ["joint_use", "members", 0, "status"], "vip", MalformedError),
    ("bad-weights-hash", ["policy", "model", "weights_sha256"], "zz", MalformedError),
    ("threshold-above-one", ["policy", "match_threshold"], 1.5, MalformedError),
    ("no-categories", ["policy", "incident_categories"], [], InvalidManifestError),
    ("expired-string", ["expires"], "tomorrow", MalformedError),
    ("version-zero", ["version"], 0, MalformedError),
    ("version-string", ["version"], "2", MalformedError),
    ("missing-administrator", ["joint_use", "administrator"], _DELETE, MalformedError),
    ("missing-english", ["joint_use", "statement", "en"], _DELETE, MalformedError),
    ("witness-required-negative", ["policy", "witness"], {"required": -1}, MalformedError),
    ("witness-required-above-63", ["policy", "witness"], {"required": 64}, MalformedError),
    ("witness-required-string", ["policy", "witness"], {"required": "1"}, MalformedError),
    ("witness-required-missing", ["policy", "witness"], {}, MalformedError),
    ("witness-unknown-field", ["policy", "witness"], {"required": 1, "quorum": 2}, MalformedError),
    ("witness-not-an-object", ["policy", "witness"], 1, MalformedError),
]


@pytest.mark.parametrize(("path", "value", "error"), [c[1:] for c in INVALID], ids=[c[0] for c in INVALID])
def test_invalid_manifests(path: list[Any], value: Any, error: type[Exception]) -> None:
    with pytest.raises(error):
        Manifest.from_dict(_mutate(path, value))


def test_witness_policy_defaults_to_none_required_and_keeps_old_bytes() -> None:
    old = make_manifest()
    assert "witness" not in old.to_dict()["policy"] and old.policy.witness.required == 0
    assert Manifest.from_dict(old.to_dict()).to_dict() == old.to_dict()  # a manifest without it re-serialises unchanged
    d = old.to_dict()
    d["policy"]["witness"] = {"required": 2}
    stated = Manifest.from_dict(d)
    assert stated.policy.witness.required == 2
    assert canonical_bytes(stated.to_dict()) == canonical_bytes(d)
    d["policy"]["witness"] = {"required": 0}  # stated as the default: read, then written without it
    assert "witness" not in Manifest.from_dict(d).to_dict()["policy"]
    chain_b = old.joint_use.members[1].node_id
    removed = set_member_status(old, chain_b, MemberStatus.REMOVED)
    assert old.witnesses_of("chain-a") == [chain_b] and removed.witnesses_of("chain-a") == []


def test_duplicate_member_ids_and_shared_keys_refused() -> None:
    d = make_manifest().to_dict()
    d["joint_use"]["members"].append(copy.deepcopy(d["joint_use"]["members"][0]))
    with pytest.raises(InvalidManifestError, match="duplicate node ids"):
        Manifest.from_dict(d)
    d["joint_use"]["members"][-1]["node_id"] = "chain-z"
    with pytest.raises(InvalidManifestError, match="share a key"):
        Manifest.from_dict(d)


def test_initial_trust_needs_threshold_of_pinned_keys() -> None:
    doc = signed_manifest(make_manifest(), KEYS[0], KEYS[1])
    assert verify_initial(doc, PINNED, LATER).version == 1
    with pytest.raises(ThresholdError, match="signed by 1/1"):
        verify_initial(doc, PINNED[:1], LATER)
    with pytest.raises(ThresholdError, match="none of its 3 signing keys"):
        verify_initial(doc, ["cd" * 32], LATER)
    with pytest.raises(ThresholdError, match="signed by 1/3 keys, threshold 2"):
        verify_initial(signed_manifest(make_manifest(), KEYS[2]), PINNED, LATER)


def test_signature_by_unknown_key_does_not_count() -> None:
    outsider = SigningKey(b"\x99" * 32)
    doc = signed_manifest(make_manifest(), KEYS[0], outsider)
    report = assess(doc, now=LATER, pinned_keyids=PINNED)
    assert not report.accepted and "1 signature(s) by unknown keys" in str(report)


def test_expired_manifest_refused() -> None:
    doc = signed_manifest(make_manifest(), KEYS[0], KEYS[1])
    with pytest.raises(ExpiredError, match="expired"):
        verify_initial(doc, PINNED, T0 + timedelta(days=181))


def test_update_rollback_freeze_and_rotation() -> None:
    v1 = make_manifest()
    v2 = add_member(
        v1,
        Member(
            node_id="chain-c",
            name=LocalizedText("Cマート", "C-Mart"),
            signing_key=SigningKey(b"\xc1" * 32).public,
            encryption_key=EncryptionKey(b"\xc2" * 32).public,
            endpoint="http://127.0.0.1:8473",
        ),
    )
    assert v2.version == 2
    doc2 = signed_manifest(v2, KEYS[0], KEYS[2])
    assert verify_update(v1, doc2, LATER).member("chain-c") is not None
    with pytest.raises(RollbackError, match="not newer"):
        verify_update(v2, signed_manifest(v1, KEYS[0], KEYS[1]), LATER)
    with pytest.raises(RollbackError):
        verify_update(v2, doc2, LATER)
    new_keys = [SigningKey(bytes([0x40 + i]) * 32) for i in range(3)]
    rotated = next_version(
        v2,
        keys={k.keyid: k.public for k in new_keys},
        roles={"manifest": replace(v2.manifest_role, keyids=tuple(k.keyid for k in new_keys))},
    )
    with pytest.raises(ThresholdError, match="trusted version 2"):
        verify_update(v2, signed_manifest(rotated, *new_keys), LATER)
    with pytest.raises(ThresholdError):
        verify_update(v2, signed_manifest(rotated, KEYS[0], KEYS[1]), LATER)
    assert (
        verify_update(v2, signed_manifest(rotated, KEYS[0], KEYS[1], new_keys[0], new_keys[1]), LATER).version
        == 3
    )


def test_suspended_member_refused_after_update() -> None:
    v1 = make_manifest()
    assert require_member(v1, "chain-b").node_id == "chain-b"
    v2 = set_member_status(v1, "chain-b", MemberStatus.SUSPENDED)
    trusted = verify_update(v1, signed_manifest(v2, KEYS[0], KEYS[1]), LATER)
    with pytest.raises(MemberNotActive, match="suspended"):
        require_member(trusted, "chain-b")
    with pytest.raises(NotAMember):
        require_member(trusted, "chain-x")
    assert "chain-b" not in render_notice(trusted, "en")


def test_policy_helpers() -> None:
    m = make_manifest()
    require_purpose(m, "crime-prevention")
    with pytest.raises(PurposeNotAllowed, match="marketing"):
        require_purpose(m, "marketing")
    require_item_shared(m, "face-embedding")
    with pytest.raises(ItemNotShared):
        require_item_shared(m, "face-crop")
    require_model(m, "buffalo_s/w600k_mbf")
    with pytest.raises(ModelMismatch):
        require_model(m, "other-model")


RULES = RegistrationRules(
    categories=("shoplifting", "theft"), evidence_kinds=("police-report",), retention_days=180
)


def test_rules_accept_a_good_entry_and_must_narrow_the_group() -> None:
    m = make_manifest()
    RULES.check_against(m)
    check_entry(m, RULES, make_entry(), T0)
    with pytest.raises(InvalidManifestError, match="400 days"):
        replace(RULES, retention_days=400).check_against(m)
    with pytest.raises(InvalidManifestError, match="categories"):
        replace(RULES, categories=("loitering",)).check_against(m)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"category": "loitering"}, "not one of the group's"),
        ({"category": "nuisance"}, "not one this node registers"),
        ({"model_id": "other"}, "pinned model"),
        ({"expires_at": T0 + timedelta(days=200)}, "exceeds the limit of 180 days"),
    ],
)
def test_rules_refuse_entries(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(RegistrationRefused, match=message):
        check_entry(make_manifest(), RULES, make_entry(**overrides), T0)


def test_rules_refuse_evidence_and_free_text_listing_every_violation() -> None:
    from protocol.entry import Evidence

    entry = make_entry(evidence=Evidence("witness", "W-1"), category="loitering")
    entry.unrecognized_fields["note"] = "arrested on 2026-10-30"
    with pytest.raises(RegistrationRefused) as e:
        check_entry(make_manifest(), RULES, entry, T0)
    assert len(e.value.violations) == 3
    assert any("free text" in v for v in e.value.violations)


def test_rules_from_toml_dict() -> None:
    rules = RegistrationRules.from_dict(
        {
            "categories": ["shoplifting"],
            "evidence_kinds": ["police-report"],
            "retention_days": 90,
            "face_quality": {"min_face_pixels": 100},
        }
    )
    assert rules.face_quality.min_face_pixels == 100
    with pytest.raises(MalformedError, match="unknown settings"):
        RegistrationRules.from_dict(
            {**{"categories": ["a-b"], "evidence_kinds": ["x-y"], "retention_days": 1}, "narrative": "x"}
        )


def test_notice_shows_the_five_items_from_the_manifest() -> None:
    m = make_manifest()
    for lang in ("ja", "en"):
        text = render_notice(m, lang)
        joint = m.joint_use
        assert joint.statement.get(lang) in text
        assert all(i.text.get(lang) in text for i in joint.items)
        assert all(p.text.get(lang) in text for p in joint.purposes)
        assert all(mem.name.get(lang) in text for mem in joint.members)
        for part in (
            joint.administrator.name,
            joint.administrator.address,
            joint.administrator.representative,
        ):
            assert part.get(lang) in text
    changed = replace(
        m,
        joint_use=replace(
            m.joint_use,
            administrator=replace(m.joint_use.administrator, name=LocalizedText("新機構", "New Org")),
        ),
    )
    assert "New Org" in render_notice(changed, "en") and "New Org" not in render_notice(m, "en")


def test_renew_extends_expiry_and_bumps_version() -> None:
    m = make_manifest()
    renewed = renew(m, LATER, timedelta(days=30))
    assert renewed.version == 2 and renewed.expires == LATER + timedelta(days=30)


def test_tampered_manifest_fails() -> None:
    doc = signed_manifest(make_manifest(), KEYS[0], KEYS[1])
    d = doc.to_dict()
    d["signed"]["policy"]["max_retention_days"] = 3650
    with pytest.raises(ThresholdError):
        verify_initial(SignedDocument.from_dict(d, Manifest), PINNED, LATER)


def test_notice_names_the_model_and_its_licence() -> None:
    m = make_manifest()
    assert "buffalo_s/w600k_mbf" in render_notice(m, "en") and "non-commercial" in render_notice(m, "en")
    assert "非商用" in render_notice(m, "ja")
    own = replace(m, policy=replace(m.policy, model=replace(m.policy.model, model_id="acme/arcface-r100")))
    assert "non-commercial" not in render_notice(own, "en")
