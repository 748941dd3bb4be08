"""Query modes in the manifest and the querier's key epochs."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from governance.errors import InvalidManifestError, QueryModeNotAllowed
from governance.manifest import PLAIN_ONLY, Manifest, QueryModes
from governance.policy import query_mode_for, require_query_mode
from node.private.query_keys import QueryKeyring
from protocol.he_params import HEParameters
from tests.factories import make_manifest

BOTH = QueryModes(allowed=("plain", "private"), he=HEParameters())


def with_modes(modes: QueryModes, private_only: str | None = None) -> Manifest:
    manifest = make_manifest()
    members = tuple(replace(m, private_only=m.node_id == private_only) for m in manifest.joint_use.members)
    return replace(
        manifest,
        policy=replace(manifest.policy, query_modes=modes),
        joint_use=replace(manifest.joint_use, members=members),
    )


def test_modes_and_parameters_go_together() -> None:
    with pytest.raises(InvalidManifestError):
        QueryModes(allowed=("private",))
    with pytest.raises(InvalidManifestError):
        QueryModes(allowed=("plain",), he=HEParameters())
    with pytest.raises(InvalidManifestError, match="unknown"):
        QueryModes(allowed=("plain", "telepathy"))
    with pytest.raises(InvalidManifestError, match="private"):
        with_modes(PLAIN_ONLY, private_only=make_manifest().joint_use.members[0].node_id)


def test_a_plain_only_manifest_serialises_as_before_and_modes_round_trip() -> None:
    plain = make_manifest()
    assert "query_modes" not in plain.to_dict()["policy"]
    member = plain.joint_use.members[0].node_id
    both = with_modes(BOTH, private_only=member)
    again = Manifest.from_dict(both.to_dict())
    assert again.policy.query_modes == BOTH
    assert again.member(member).private_only  # type: ignore[union-attr]
    assert "private_only" not in again.to_dict()["joint_use"]["members"][1]


def test_the_mode_each_peer_is_asked_in() -> None:
    first, second = (m.node_id for m in make_manifest().joint_use.members[:2])
    both = with_modes(BOTH, private_only=first)
    strict, relaxed = both.member(first), both.member(second)
    assert strict is not None and relaxed is not None
    assert query_mode_for(both, strict, "plain") == "private"
    assert query_mode_for(both, relaxed, "plain") == "plain"
    assert query_mode_for(both, relaxed, "private") == "private"
    plain = make_manifest()
    plain_member = plain.member(second)
    assert plain_member is not None and query_mode_for(plain, plain_member, "private") == "plain"
    with pytest.raises(QueryModeNotAllowed, match="only private"):
        require_query_mode(both, strict, "plain")
    require_query_mode(both, relaxed, "plain")
    with pytest.raises(QueryModeNotAllowed, match="not allowed"):
        require_query_mode(plain, None, "private")


def test_query_keys_persist_within_an_epoch_and_renew_after_it(tmp_path: Path) -> None:
    params = HEParameters()
    now = datetime(2026, 11, 25, 9, tzinfo=UTC)
    ring = QueryKeyring(tmp_path, "chain-b", timedelta(hours=1))
    keys, not_after = ring.current(params, now)
    assert not_after == now + timedelta(hours=1)
    assert (tmp_path / "he-query.secret").stat().st_mode & 0o777 == 0o600
    ring.sent["chain-a"] = keys.key_id
    reloaded, same_until = QueryKeyring(tmp_path, "chain-b", timedelta(hours=1)).current(params, now)
    assert (reloaded.key_id, same_until) == (keys.key_id, not_after)
    assert reloaded.secret_bytes() == keys.secret_bytes()
    renewed, _ = ring.current(params, now + timedelta(hours=1, seconds=1))
    assert renewed.key_id != keys.key_id and ring.sent == {}
    other = HEParameters(query_scale_bits=27, entry_scale_bits=17)
    changed, _ = ring.current(other, now + timedelta(hours=1, seconds=2))
    assert changed.key_id != renewed.key_id and changed.context.params == other
    bundle = ring.bundle(other, now + timedelta(hours=1, seconds=3))
    assert (bundle.owner, bundle.key_id, bundle.params) == ("chain-b", changed.key_id, other)
