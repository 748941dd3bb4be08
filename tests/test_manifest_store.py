"""The trusted manifest of a running node: successors only, atomic switch, grace for the previous version."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from governance.description import next_version
from governance.manifest import Manifest, MemberStatus
from node.cli.main import main
from node.config import NodeConfig
from node.records.manifests import ManifestStore, ManifestVersionError, install_manifest
from node.storage.engine import make_engine
from node.storage.migrate import upgrade
from node.storage.models import ManifestRow
from protocol.errors import ConfigurationError, ExpiredError, RollbackError, ThresholdError
from protocol.keys import SigningKey
from protocol.signed import SignedDocument
from tests.factories import KEYS, T0, make_manifest, signed_manifest

V1 = make_manifest(now=T0)
PINNED = tuple(k.keyid for k in KEYS)


def successor(manifest: Manifest, **changes: object) -> Manifest:
    return next_version(manifest, **changes)


def suspend(manifest: Manifest, node_id: str) -> Manifest:
    members = tuple(
        replace(m, status=MemberStatus.SUSPENDED) if m.node_id == node_id else m
        for m in manifest.joint_use.members
    )
    return next_version(manifest, joint_use=replace(manifest.joint_use, members=members))


@pytest.fixture
def engine(tmp_path: Path) -> Engine:
    engine = make_engine(f"sqlite:///{tmp_path / 'node.db'}")
    upgrade(engine)
    return engine


@pytest.fixture
def store(tmp_path: Path, engine: Engine) -> ManifestStore:
    path = tmp_path / "manifest.json"
    document = signed_manifest(V1, KEYS[0], KEYS[1])
    path.write_bytes(document.to_bytes())
    return ManifestStore(path, engine, document, accepted_at=T0, grace=timedelta(minutes=5))


def test_a_valid_successor_replaces_the_file_and_the_history_and_tells_listeners(
    store: ManifestStore, engine: Engine, tmp_path: Path
) -> None:
    seen: list[int] = []
    store.on_change(lambda m: seen.append(m.version))
    v2 = suspend(V1, "chain-b")
    offer = store.offer(signed_manifest(v2, KEYS[1], KEYS[2]), T0 + timedelta(hours=1), "org")
    assert (offer.version, offer.outcome) == (2, "accepted")
    assert store.current.version == 2 and seen == [2]
    on_disk = SignedDocument.from_bytes((tmp_path / "manifest.json").read_bytes(), Manifest)
    assert on_disk.payload.version == 2
    with Session(engine) as session:
        assert [r.version for r in session.exec(select(ManifestRow).order_by(ManifestRow.version)).all()] == [
            1,
            2,
        ]
    assert not list(tmp_path.glob(".manifest.json.*")), "no temporary file left behind"


def test_the_same_version_again_is_a_no_op(store: ManifestStore) -> None:
    assert store.offer(signed_manifest(V1, KEYS[0], KEYS[2]), T0, "peer").outcome == "already"
    assert store.current.version == 1


@pytest.mark.parametrize(
    ("make", "error"),
    [
        (
            lambda: signed_manifest(replace(V1, expires=V1.expires + timedelta(days=1)), KEYS[0], KEYS[1]),
            RollbackError,
        ),
        (lambda: signed_manifest(successor(V1), KEYS[0]), ThresholdError),
        (lambda: signed_manifest(successor(V1), KEYS[0], SigningKey(b"\x77" * 32)), ThresholdError),
        (
            lambda: signed_manifest(successor(V1, expires=T0 + timedelta(seconds=1)), KEYS[0], KEYS[1]),
            ExpiredError,
        ),
    ],
    ids=["same-version-other-content", "one-signature", "unknown-key", "expired"],
)
def test_an_invalid_offer_is_refused_and_changes_nothing(
    store: ManifestStore, tmp_path: Path, make: object, error: type[Exception]
) -> None:
    before = (tmp_path / "manifest.json").read_bytes()
    with pytest.raises(error):
        store.offer(make(), T0 + timedelta(hours=1), "peer")  # type: ignore[operator]
    assert store.current.version == 1
    assert (tmp_path / "manifest.json").read_bytes() == before


def test_an_older_version_is_a_rollback(store: ManifestStore) -> None:
    v2, v3 = successor(V1), successor(successor(V1))
    store.offer(signed_manifest(v2, KEYS[0], KEYS[1]), T0, "org")
    store.offer(signed_manifest(v3, KEYS[0], KEYS[1]), T0, "org")
    with pytest.raises(RollbackError):
        store.offer(signed_manifest(v2, KEYS[0], KEYS[1]), T0, "peer")
    assert store.current.version == 3


def test_peers_may_name_the_previous_version_only_within_the_grace_period(store: ManifestStore) -> None:
    store.check_named_version(1, T0)
    with pytest.raises(ManifestVersionError, match="fetching the newer version"):
        store.check_named_version(2, T0)
    switched = T0 + timedelta(hours=1)
    store.offer(signed_manifest(successor(V1), KEYS[0], KEYS[1]), switched, "org")
    store.check_named_version(2, switched)
    store.check_named_version(1, switched + timedelta(minutes=5))
    with pytest.raises(ManifestVersionError, match="superseded"):
        store.check_named_version(1, switched + timedelta(minutes=5, seconds=1))
    store.offer(signed_manifest(successor(successor(V1)), KEYS[0], KEYS[1]), switched, "org")
    with pytest.raises(ManifestVersionError):
        store.check_named_version(1, switched)


def test_a_restarted_node_remembers_when_it_switched(
    store: ManifestStore, engine: Engine, tmp_path: Path
) -> None:
    switched = T0 + timedelta(hours=1)
    document = signed_manifest(successor(V1), KEYS[0], KEYS[1])
    store.offer(document, switched, "org")
    again = ManifestStore.load(tmp_path / "manifest.json", engine, document, switched + timedelta(hours=5))
    assert again.current.version == 2
    again.check_named_version(1, switched + timedelta(minutes=4))
    with pytest.raises(ManifestVersionError):
        again.check_named_version(1, switched + timedelta(minutes=6))


def test_the_first_installed_manifest_must_be_signed_by_pinned_roots(tmp_path: Path, engine: Engine) -> None:
    document = signed_manifest(V1, KEYS[0], KEYS[1])
    with pytest.raises(ThresholdError):
        install_manifest(
            tmp_path, engine, (SigningKey(b"\x55" * 32).keyid,), document, T0, "file", root_threshold=1
        )
    assert not (tmp_path / "manifest.json").exists()
    offer = install_manifest(tmp_path, engine, PINNED, document, T0, "file", root_threshold=2)
    assert offer.outcome == "accepted"
    later = signed_manifest(successor(V1), KEYS[0], KEYS[1])
    assert install_manifest(tmp_path, engine, (), later, T0, "file", root_threshold=2).outcome == "accepted"
    with pytest.raises(RollbackError):
        install_manifest(tmp_path, engine, (), document, T0, "file", root_threshold=2)


def test_a_first_manifest_is_held_to_the_pinned_root_threshold_not_its_own(
    tmp_path: Path, engine: Engine
) -> None:
    """One stolen pinned key signs a manifest declaring threshold 1: refused, whatever it declares."""
    stolen = signed_manifest(make_manifest(threshold=1, now=T0), KEYS[2])
    assert stolen.payload.manifest_role.threshold == 1  # it would pass its own threshold
    with pytest.raises(ThresholdError, match=r"signed by 1 of the 3 pinned root keys it lists, 2 needed"):
        install_manifest(tmp_path, engine, PINNED, stolen, T0, "file", root_threshold=2)
    assert not (tmp_path / "manifest.json").exists()
    # a declared threshold above the pinned one still counts
    three = signed_manifest(make_manifest(threshold=3, now=T0), *KEYS[:2])
    with pytest.raises(ThresholdError):
        install_manifest(tmp_path, engine, PINNED, three, T0, "file", root_threshold=2)
    # the organisation's usual 2-of-3 manifest installs
    normal = signed_manifest(V1, KEYS[0], KEYS[1])
    offer = install_manifest(tmp_path, engine, PINNED, normal, T0, "file", root_threshold=2)
    assert offer.outcome == "accepted"


def test_a_config_without_root_threshold_still_needs_two_pinned_signatures(tmp_path: Path) -> None:
    """Configs written before ``root_threshold`` existed: 2 of the pinned keys (1 if only one is pinned)."""
    old = NodeConfig.from_toml(
        'node_id = "chain-a"\n[governance]\nroot_keyids = [' + ", ".join(f'"{k}"' for k in PINNED) + "]\n",
        tmp_path,
    )
    assert old.root_threshold is None and old.pinned_root_threshold == 2
    assert replace(old, root_keyids=PINNED[:1]).pinned_root_threshold == 1
    assert NodeConfig.from_toml(replace(old, root_threshold=3).to_toml(), tmp_path).pinned_root_threshold == 3
    with pytest.raises(ConfigurationError, match="root_threshold: 4 is more than the 3 pinned root key ids"):
        NodeConfig.from_toml(replace(old, root_threshold=4).to_toml(), tmp_path)


def test_init_pins_the_root_threshold_and_refuses_a_manifest_below_it(tmp_path: Path) -> None:
    roots = [a for k in KEYS for a in ("--root-keyid", k.keyid)]
    stolen = tmp_path / "stolen.json"
    stolen.write_bytes(signed_manifest(make_manifest(threshold=1), KEYS[2]).to_bytes())
    node = tmp_path / "refused"
    assert main(["init", str(node), "--node-id", "chain-a", "--manifest", str(stolen), *roots]) == 1
    assert not node.exists()
    # the flag pins it explicitly; with one key pinned and threshold 1 the same file is accepted
    explicit = tmp_path / "explicit"
    argv = ["init", str(explicit), "--node-id", "chain-a", "--manifest", str(stolen), *roots[-2:]]
    assert main([*argv, "--root-threshold", "1"]) == 0
    assert NodeConfig.load(explicit).root_threshold == 1
    assert main(["init", str(tmp_path / "n"), "--node-id", "chain-a", *roots, "--root-threshold", "4"]) == 1
    # without a manifest and without the flag, init writes the default: 2 of the 3
    bare = tmp_path / "bare"
    assert main(["init", str(bare), "--node-id", "chain-a", *roots]) == 0
    assert NodeConfig.load(bare).root_threshold == 2
    normal = tmp_path / "normal.json"
    normal.write_bytes(signed_manifest(make_manifest(), KEYS[0], KEYS[1]).to_bytes())
    assert main(["manifest", "install", "--node", str(bare), str(stolen)]) == 1
    assert main(["manifest", "install", "--node", str(bare), str(normal)]) == 0
