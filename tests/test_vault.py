"""Encryption at rest: each record under its own key in the key store, shredded by destroying it."""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path

import pytest
from sqlmodel import Session

from node.records.record_keys import RecordKeyDestroyed, RecordKeys
from node.records.shredding import ORPHAN_AGE_SECONDS, reseal_legacy, shred_orphans
from node.records.vault import Vault
from node.storage.engine import make_engine
from node.storage.migrate import upgrade
from node.storage.models import EntryRow
from protocol.errors import DecryptionError, MalformedError
from protocol.keys import DataKey
from tests.factories import T0

KEY = DataKey(b"\x05" * 32)


def vault(tmp_path: Path, key: DataKey = KEY) -> Vault:
    return Vault(key, RecordKeys(tmp_path / "records", key))


def test_node_key_seal_open_and_binding(tmp_path: Path) -> None:
    v = vault(tmp_path)
    sealed = v.seal(b"face-bytes", binding="console-session/1/preview")
    assert b"face-bytes" not in sealed
    assert v.open(sealed, binding="console-session/1/preview") == b"face-bytes"
    with pytest.raises(DecryptionError, match="another row"):
        v.open(sealed, binding="console-session/2/preview")
    with pytest.raises(DecryptionError):
        vault(tmp_path, DataKey(b"\x06" * 32)).open(sealed, binding="console-session/1/preview")
    tampered = bytearray(sealed)
    tampered[-1] ^= 1
    with pytest.raises(DecryptionError):
        v.open(bytes(tampered), binding="console-session/1/preview")


def test_each_record_has_its_own_key_and_shredding_one_leaves_the_others(tmp_path: Path) -> None:
    v = vault(tmp_path)
    a, b = "ent-" + "a" * 20, "ent-" + "b" * 20
    v.new_record(a)
    v.new_record(b)
    sealed_a = v.seal_record(a, b"embedding of a", field="embedding")
    sealed_b = v.seal_record(b, b"embedding of b", field="embedding")
    assert v.open_record(a, sealed_a, field="embedding") == b"embedding of a"
    with pytest.raises(DecryptionError):  # a's ciphertext under b's name: another key
        v.open_record(b, sealed_a, field="embedding")
    with pytest.raises(DecryptionError, match="another row"):
        v.open_record(a, sealed_a, field="salt")
    with pytest.raises(DecryptionError):  # nor does the node key open a record's data
        v.open(sealed_a, binding=f"{a}/embedding")

    path = tmp_path / "records" / f"{a}.key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert v.records.get(a) not in path.read_bytes(), "the key file holds the key sealed, not bare"

    assert v.shred(a) and not path.exists()
    assert not v.shred(a), "destroying twice is a no-op"
    with pytest.raises(RecordKeyDestroyed):
        v.open_record(a, sealed_a, field="embedding")
    assert v.open_record(b, sealed_b, field="embedding") == b"embedding of b"
    assert v.records.record_ids() == [b]


def test_a_key_file_copied_over_another_record_does_not_open(tmp_path: Path) -> None:
    v = vault(tmp_path)
    a, b = "ent-" + "1" * 20, "ent-" + "2" * 20
    v.new_record(a)
    v.new_record(b)
    directory = tmp_path / "records"
    (directory / f"{b}.key").write_bytes((directory / f"{a}.key").read_bytes())
    with pytest.raises(DecryptionError, match="another record"):
        v.records.get(b)
    with pytest.raises(DecryptionError, match="does not open with this node's data key"):
        RecordKeys(directory, DataKey(b"\x07" * 32)).get(a)
    for hostile in ("../escape", "ent-1/../../x", "", "ENT-" + "1" * 20):
        with pytest.raises(MalformedError):
            v.records.get(hostile)


def test_concurrent_creation_yields_one_key(tmp_path: Path) -> None:
    """Two workers making the same record's key (the upgrade running in both) agree on it."""
    record = "ent-" + "c" * 20
    stores = [RecordKeys(tmp_path / "records", KEY) for _ in range(8)]
    keys: list[bytes] = []
    threads = [threading.Thread(target=lambda s=s: keys.append(s.create(record))) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(keys)) == 1 and keys[0] == stores[0].get(record)
    assert [p.name for p in (tmp_path / "records").iterdir()] == [f"{record}.key"], "no temporary left"


def _entry(entry_id: str, status: str, **sealed: bytes | None) -> EntryRow:
    return EntryRow(
        entry_id=entry_id,
        version=1,
        status=status,
        category="shoplifting",
        site="s",
        evidence_kind="police-report",
        registrar="acct-1",
        proposed_at=T0,
        expires_at=T0,
        **sealed,
    )


def test_the_upgrade_moves_legacy_records_to_their_own_keys(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'node.db'}")
    upgrade(engine)
    v = vault(tmp_path)
    live, gone = "ent-" + "d" * 20, "ent-" + "e" * 20
    legacy = v.seal(b"old embedding", binding=f"{live}/embedding")
    v.new_record(gone)
    shredded = v.seal_record(gone, b"deleted embedding", field="embedding")
    v.shred(gone)  # a held closure: key destroyed, row not yet erased
    with Session(engine) as session:
        session.add(
            _entry(live, "active", embedding_ct=legacy, salt_ct=v.seal(b"salt", binding=f"{live}/salt"))
        )
        session.add(_entry(gone, "active", embedding_ct=shredded, salt_ct=shredded))
        session.commit()
    report = reseal_legacy(engine, v)
    assert (report.entries, report.requests) == (1, 0)
    with Session(engine) as session:
        row = session.get(EntryRow, live)
        assert row is not None and row.embedding_ct is not None
        assert v.open_record(live, row.embedding_ct, field="embedding") == b"old embedding"
        with pytest.raises(DecryptionError):
            v.open(row.embedding_ct, binding=f"{live}/embedding")
    assert not v.records.exists(gone), "a shredded record is never given a key again"
    assert reseal_legacy(engine, v).entries == 0, "the upgrade runs once"


def test_orphan_keys_of_closed_or_unwritten_records_are_destroyed(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'node.db'}")
    upgrade(engine)
    v = vault(tmp_path)
    closed, live, unwritten, fresh = ("ent-" + c * 20 for c in "0123")
    for record in (closed, live, unwritten, fresh):
        v.new_record(record)
    with Session(engine) as session:
        session.add(_entry(closed, "deleted"))
        session.add(_entry(live, "active"))
        session.commit()
    old = (tmp_path / "records" / f"{unwritten}.key").stat().st_mtime - ORPHAN_AGE_SECONDS - 10
    os.utime(tmp_path / "records" / f"{unwritten}.key", (old, old))
    assert sorted(shred_orphans(engine, v)) == sorted([closed, unwritten])
    assert v.records.record_ids() == sorted([live, fresh]), "a proposal in flight keeps its key"
