"""After a deletion, no copy of the person's embedding opens: not the dead row, not the WAL, not
a backup taken before the deletion (docs/adr/0003-per-entry-keys.md).

chain-a runs on a PostgreSQL cluster of the test's own, so the test can read its data directory
and WAL as an intruder with a copy of the disk would. The test first shows the copies are really
there (the scan finds the sealed embedding's bytes in the files and in the backup), then that
none of the keys the node still holds opens any of them, while the entry that was not deleted
still opens from the same backup.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
from pathlib import Path

import nacl.exceptions
import nacl.secret
import psycopg
import pytest

from node.config import NodeConfig
from node.records.keystore import load_data_key
from node.records.record_keys import RecordKeyDestroyed, RecordKeys
from node.records.vault import Vault
from protocol.archive import ArchiveReader
from tests.nodeproc import NodeProcess
from tests.test_federation import register, unit
from tests.throwaway_pg import PG_BINARIES, ThrowawayPostgres

PASSPHRASE = "correct horse battery staple"
PROBE = 64
"""Bytes of the sealed embedding searched for (nonce and the first ciphertext bytes): PostgreSQL
stores a value this size out of line in chunks, so only a prefix is contiguous on disk."""


def _sealed_embedding(url: str, entry_id: str) -> bytes | None:
    with psycopg.connect(url.replace("+psycopg", "")) as conn:
        row = conn.execute("SELECT embedding_ct FROM entry WHERE entry_id = %s", (entry_id,)).fetchone()
    assert row is not None
    return None if row[0] is None else bytes(row[0])


def _files_holding(root: Path, needle: bytes) -> list[Path]:
    return [p for p in sorted(root.rglob("*")) if p.is_file() and needle in p.read_bytes()]


def _restore_dump(backup: Path, cluster: ThrowawayPostgres, scratch: Path) -> str:
    """Open the sealed backup with its passphrase and load its pg_dump into a scratch database."""
    with (
        backup.open("rb") as f,
        tarfile.open(fileobj=ArchiveReader(f, PASSPHRASE.encode()), mode="r|") as tar,
    ):  # type: ignore[call-overload]
        for member in tar:
            if member.name.endswith(".pgdump"):
                extracted = tar.extractfile(member)
                assert extracted is not None
                (scratch / "db.pgdump").write_bytes(extracted.read())
    url = cluster.create_database("from_backup")
    done = subprocess.run(
        [
            str(PG_BINARIES[-1].parent / "pg_restore"),
            "--no-owner",
            "-d",
            url.replace("+psycopg", ""),
            str(scratch / "db.pgdump"),
        ],
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return url


def _keys_left(directory: Path) -> list[bytes]:
    config = NodeConfig.load(directory)
    data_key = load_data_key(config.path(config.data_key_file))
    store = RecordKeys(config.path(config.record_keys_dir), data_key)
    return [data_key.secret, *(store.get(record) for record in store.record_ids())]


def _opens(sealed: bytes, keys: list[bytes]) -> bool:
    for key in keys:
        try:
            nacl.secret.SecretBox(key).decrypt(sealed)
            return True
        except nacl.exceptions.CryptoError:
            continue
    return False


def test_no_copy_of_a_deleted_embedding_opens_anywhere(
    tmp_path: Path, throwaway_postgres: ThrowawayPostgres
) -> None:
    url = throwaway_postgres.create_database("chain_a")
    node = NodeProcess.create(tmp_path, url)
    node.start()
    try:
        deleted, kept = register(node, unit(41)), register(node, unit(42))
        before = _sealed_embedding(url, deleted)
        kept_sealed = _sealed_embedding(url, kept)
        assert before is not None and kept_sealed is not None
        opened = _opens(before, _keys_left(node.directory))
        assert opened, "control: the node opens it before the deletion"

        backup = tmp_path / "before-deletion.wnbackup"
        made = subprocess.run(
            [
                sys.executable,
                "-m",
                "node.cli.main",
                "backup",
                "create",
                "--node",
                str(node.directory),
                "--out",
                str(backup),
            ],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
            env={**os.environ, "WATCHNET_BACKUP_PASSPHRASE": PASSPHRASE},
            stdin=subprocess.DEVNULL,
        )
        assert made.returncode == 0, made.stderr

        status, body = node.call(
            "POST", f"/v1/entries/{deleted}/delete", "off2", {"reason": "data-subject-request"}
        )
        assert status == 200, body
        assert _sealed_embedding(url, deleted) is None, "the live row is erased"
    finally:
        node.stop()
    with psycopg.connect(url.replace("+psycopg", ""), autocommit=True) as conn:
        conn.execute("CHECKPOINT")  # the dead tuple's page written to the data files too

    data = throwaway_postgres.data
    on_disk = _files_holding(data / "base", before[:PROBE]) + _files_holding(data / "pg_wal", before[:PROBE])
    assert on_disk, (
        "the scan finds the sealed embedding in the data directory or the WAL (else it proves nothing)"
    )
    from_backup = _sealed_embedding(_restore_dump(backup, throwaway_postgres, tmp_path), deleted)
    assert from_backup == before, "the backup taken before the deletion holds the sealed embedding"

    keys = _keys_left(node.directory)
    opened = _opens(before, keys)  # a bool, so a failure prints no key bytes
    assert not opened, "no key the node still holds opens the deleted person's embedding"
    store = Vault(
        load_data_key(node.directory / "keys/data.key"),
        RecordKeys(node.directory / "keys/records", load_data_key(node.directory / "keys/data.key")),
    )
    with pytest.raises(RecordKeyDestroyed):
        store.open_record(deleted, from_backup, field="embedding")
    kept_from_backup = _sealed_embedding(throwaway_postgres.url("from_backup"), kept)
    assert kept_from_backup is not None
    assert len(store.open_record(kept, kept_from_backup, field="embedding")) == 512 * 4, (
        "control: the entry not deleted opens from the same backup"
    )
    key_files = b"".join(p.read_bytes() for p in (node.directory / "keys").rglob("*") if p.is_file())
    assert before[:PROBE] not in key_files
