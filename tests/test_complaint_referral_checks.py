"""What a member checks on a ``complaint-referral`` before it keeps one, and what the organisation
checks on a ``complaint-answer``: each refusal by its code, against real manifests and keys."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest

from governance.errors import NotAMember
from governance.manifest import MemberStatus
from governance.manifest import OrganisationWitness as NamedWitness
from node.casework.referrals import NoOrganisationKey, verify_referral
from node.org.referrals import verify_answer
from protocol.complaint import ComplaintAnswer, ComplaintReferral
from protocol.errors import ClockSkewError, MalformedError, MisaddressedError, SignatureError
from protocol.keys import SigningKey
from protocol.signed import SignedDocument
from tests.factories import KEYS, NODE_A_SIGNING, T0, make_manifest

WITNESS = SigningKey(b"\x77" * 32)


def manifest(witness: bool = True):  # type: ignore[no-untyped-def]
    m = make_manifest()
    if not witness:
        return m
    named = replace(m.policy.witness, organisation=NamedWitness(WITNESS.public, "http://127.0.0.1:9"))
    return m.with_changes(policy=replace(m.policy, witness=named))


def referral(key: SigningKey = WITNESS, **changes) -> dict:  # type: ignore[no-untyped-def, type-arg]
    payload = ComplaintReferral(
        group_id=make_manifest().group_id,
        complaint_id="cmp-0123456789abcdef0123",
        member="chain-b",
        category="misidentification",
        summary="stopped at the door",
        received_at=T0,
        answer_by=T0 + timedelta(days=14),
        referred_at=T0,
        manifest_version=1,
    )
    document = SignedDocument(replace(payload, **changes))
    document.sign(key)
    return document.to_dict()


def test_a_referral_for_this_node_signed_with_the_named_key_passes() -> None:
    document = verify_referral(referral(), manifest(), "chain-b", T0)
    assert document.payload.answer_by == T0 + timedelta(days=14)


@pytest.mark.parametrize(
    ("data", "node", "error"),
    [
        (referral(), "chain-a", MisaddressedError),
        (referral(group_id="another-group"), "chain-b", MisaddressedError),
        (referral(KEYS[0]), "chain-b", SignatureError),  # a manifest key, not the online one
        (referral(category="marketing"), "chain-b", MalformedError),
        (
            referral(referred_at=T0 + timedelta(hours=1), answer_by=T0 + timedelta(days=3)),
            "chain-b",
            ClockSkewError,
        ),
        ({"signed": {"type": "complaint-referral"}, "signatures": []}, "chain-b", MalformedError),
    ],
)
def test_refusals_by_code(data: dict, node: str, error: type[Exception]) -> None:  # type: ignore[type-arg]
    with pytest.raises(error):
        verify_referral(data, manifest(), node, T0)


def test_a_manifest_without_the_organisations_online_key_cannot_check_a_referral() -> None:
    with pytest.raises(NoOrganisationKey) as refused:
        verify_referral(referral(), manifest(witness=False), "chain-b", T0)
    assert refused.value.code == "no_organisation_key"


def answer(key: SigningKey, **changes) -> dict:  # type: ignore[no-untyped-def, type-arg]
    payload = ComplaintAnswer(
        group_id=make_manifest().group_id,
        complaint_id="cmp-0123456789abcdef0123",
        member="chain-a",
        outcome="resolved",
        answer="we apologised",
        answered_at=T0,
    )
    document = SignedDocument(replace(payload, **changes))
    document.sign(key)
    return document.to_dict()


def test_an_answer_is_the_members_own_of_this_group_with_an_answer_outcome() -> None:
    assert verify_answer(answer(NODE_A_SIGNING), manifest()).payload.member == "chain-a"
    with pytest.raises(SignatureError):
        verify_answer(answer(NODE_A_SIGNING, member="chain-b"), manifest())  # in chain-b's name
    with pytest.raises(MisaddressedError):
        verify_answer(answer(NODE_A_SIGNING, group_id="another-group"), manifest())
    with pytest.raises(MalformedError):
        verify_answer(answer(NODE_A_SIGNING, outcome="referred"), manifest())
    removed = manifest()
    members = tuple(
        replace(m, status=MemberStatus.REMOVED) if m.node_id == "chain-a" else m
        for m in removed.joint_use.members
    )
    with pytest.raises(NotAMember):
        verify_answer(
            answer(NODE_A_SIGNING),
            removed.with_changes(joint_use=replace(removed.joint_use, members=members)),
        )
