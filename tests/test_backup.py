"""Backups: the sealed archive refuses every damaged copy, and a node's backup taken while it
serves holds one consistent state, opens only with its passphrase and holds keys only when asked.
"""

from __future__ import annotations

import io
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.archive import MAGIC, ArchiveReader, ArchiveWriter, KdfCost
from protocol.errors import BackupError, DecryptionError, MalformedError, WatchnetError
from tests.nodeproc import NodeProcess
from tests.test_federation import register, unit

CHEAP = KdfCost(1, 8 * 1024 * 1024)
"""argon2id at its cheapest for the format tests; the command uses libsodium's moderate cost."""
PASSPHRASE = "correct horse battery staple"


def sealed(data: bytes, passphrase: bytes = b"pass phrase") -> bytes:
    out = io.BytesIO()
    writer = ArchiveWriter(out, passphrase, CHEAP)
    for start in range(0, len(data), 10_000):
        writer.write(data[start : start + 10_000])
    writer.close()
    return out.getvalue()


def opened(blob: bytes, passphrase: bytes = b"pass phrase") -> bytes:
    reader = ArchiveReader(io.BytesIO(blob), passphrase)
    data = reader.read()
    assert reader.complete
    return data


def test_an_archive_opens_to_what_was_sealed_and_nothing_of_it_is_readable() -> None:
    data = os.urandom(150_000) + b"SQLite format 3\x00" * 100
    blob = sealed(data)
    assert opened(blob) == data
    assert blob.startswith(MAGIC) and b"SQLite format 3" not in blob
    assert opened(sealed(b"")) == b""


def test_a_damaged_copy_is_refused_with_its_reason() -> None:
    data = os.urandom(200_000)
    blob = sealed(data)
    header_end = 12 + int.from_bytes(blob[8:12], "big")
    cases = {
        "cut short": (blob[:-1], BackupError, "truncated"),
        "cut at a frame boundary": (blob[: header_end + 24 + 4 + 65536 + 17], BackupError, "truncated"),
        "extended": (blob + b"\x00", BackupError, "extended"),
        "header changed": (blob[:20] + bytes([blob[20] ^ 1]) + blob[21:], WatchnetError, ""),
        "a byte in a later frame": (blob[:-100] + bytes([blob[-100] ^ 1]) + blob[-99:], DecryptionError, "changed"),
        "not a backup": (b"SQLite format 3\x00" + blob[16:], BackupError, "not a watchnet backup"),
    }
    for name, (damaged, error, words) in cases.items():
        with pytest.raises(error) as caught:
            opened(damaged)
        assert words in str(caught.value), (name, caught.value)
    with pytest.raises(DecryptionError, match="wrong passphrase"):
        opened(blob, b"another phrase")


def test_a_hostile_header_cannot_make_the_reader_spend_without_bound() -> None:
    blob = sealed(b"x")
    length = int.from_bytes(blob[8:12], "big")
    header = json.loads(blob[12 : 12 + length])
    for change, words in (
        ({"memlimit": 64 * 1024 * 1024 * 1024}, "memlimit"),
        ({"opslimit": 10_000}, "opslimit"),
    ):
        forged = json.dumps({**header, "kdf": {**header["kdf"], **change}}, separators=(",", ":")).encode()
        hostile = MAGIC + len(forged).to_bytes(4, "big") + forged + blob[12 + length :]
        with pytest.raises(BackupError, match=words):
            opened(hostile)
    with pytest.raises(BackupError, match="more than 4096"):
        opened(MAGIC + (1 << 30).to_bytes(4, "big"))


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=400), st.integers(min_value=0, max_value=400))
def test_any_bytes_are_refused_with_a_typed_error_or_opened(noise: bytes, cut: int) -> None:
    blob = sealed(b"hello")
    for candidate in (noise, MAGIC + noise, blob[:cut] + noise):
        try:
            opened(candidate)
        except (BackupError, DecryptionError, MalformedError):
            pass


def watchnet(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "node.cli.main", *argv],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={**os.environ, **(env or {})},
        stdin=subprocess.DEVNULL,
    )


@pytest.mark.parametrize("database_url", ["sqlite", "postgres"], indirect=True)
def test_a_backup_of_a_serving_node_verifies_and_holds_keys_only_when_asked(
    tmp_path: Path, database_url: str
) -> None:
    node = NodeProcess.create(tmp_path, None if database_url.startswith("sqlite") else database_url)
    node.start()
    try:
        entry_ids = [register(node, unit(seed)) for seed in (11, 12)]
        status, body = node.call(
            "POST", f"/v1/entries/{entry_ids[1]}/delete", "off2", {"reason": "data-subject-request"}
        )
        assert status == 200, body
        phrase = tmp_path / "phrase"
        phrase.write_text(PASSPHRASE + "\n")
        target = tmp_path / "chain-a.wnbackup"
        made = watchnet(
            "backup", "create", "--node", str(node.directory), "--out", str(target),
            "--passphrase-file", str(phrase), "--json",
        )  # fmt: skip
        assert made.returncode == 0, made.stderr
        written = json.loads(made.stdout)
        assert stat.S_IMODE(target.stat().st_mode) == 0o600
        names = {m["name"] for m in written["members"]}
        assert not any(n.startswith("keys/") for n in names) and not written["with_keys"]
        assert {"config.toml", "manifest.json"} <= names
        assert written["log_size"] >= 3, written  # two registrations and a deletion
        blob = target.read_bytes()
        assert b"SQLite format 3" not in blob and b"PGDMP" not in blob and b"chain-a" not in blob
        status, _ = node.call("GET", "/v1/health")
        assert status == 200, "the node served throughout"
    finally:
        node.stop()

    checked = watchnet("backup", "verify", str(target), "--json", env={"WATCHNET_BACKUP_PASSPHRASE": PASSPHRASE})
    assert checked.returncode == 0, checked.stderr
    report = json.loads(checked.stdout)
    assert report["ok"] and report["node_id"] == "chain-a" and report["log_size"] == written["log_size"]
    if database_url.startswith("sqlite"):
        assert report["entries"] == {"active": 1, "deleted": 1}, report
    else:
        assert report["engine"] == "postgresql"

    wrong = watchnet("backup", "verify", str(target), env={"WATCHNET_BACKUP_PASSPHRASE": "not the phrase"})
    assert wrong.returncode == 1 and "Traceback" not in wrong.stderr
    assert wrong.stderr.strip().count("\n") == 0 and "decryption_failed" in wrong.stderr
    target.write_bytes(blob[: len(blob) // 2])
    cut = watchnet("backup", "verify", str(target), env={"WATCHNET_BACKUP_PASSPHRASE": PASSPHRASE})
    assert cut.returncode == 1 and "truncated" in cut.stderr and "Traceback" not in cut.stderr

    with_keys = tmp_path / "with-keys.wnbackup"
    made = watchnet(
        "backup", "create", "--node", str(node.directory), "--out", str(with_keys), "--with-keys", "--json",
        env={"WATCHNET_BACKUP_PASSPHRASE": PASSPHRASE},
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    names = {m["name"] for m in json.loads(made.stdout)["members"]}
    assert {"keys/signing.key", "keys/encryption.key", "keys/data.key"} <= names
    assert not list(node.directory.glob(".backup-*")), "the scratch copy is removed"


def test_backup_commands_refuse_bad_input_in_one_line(tmp_path: Path) -> None:
    phrase = tmp_path / "phrase"
    phrase.write_text(PASSPHRASE)
    short = tmp_path / "short"
    short.write_text("too short")
    (tmp_path / "node").mkdir()
    existing = tmp_path / "exists"
    existing.write_bytes(b"")
    cases = [
        (["backup", "create", "--node", str(tmp_path / "node"), "--out", "x", "--passphrase-file", str(phrase)],
         "not a node directory"),
        (["backup", "create", "--node", str(tmp_path), "--out", str(existing)], "exists"),
        (["backup", "verify", str(tmp_path / "missing")], "No such file"),
        (["backup", "verify", str(existing)], "no passphrase"),
        (["backup", "verify", str(existing), "--passphrase-file", str(phrase)], "not a watchnet backup"),
        (["backup", "verify", str(existing), "--passphrase-file", str(tmp_path / "nope")], "passphrase-file"),
    ]  # fmt: skip
    for argv, words in cases:
        done = watchnet(*argv)
        assert done.returncode in (1, 2), (argv, done.returncode, done.stderr)
        assert "Traceback" not in done.stderr and words in done.stderr, (argv, done.stderr)
    (tmp_path / "n").mkdir()
    node = NodeProcess.create(tmp_path / "n")
    done = watchnet(
        "backup", "create", "--node", str(node.directory), "--out", str(tmp_path / "b"),
        "--passphrase-file", str(short),
    )  # fmt: skip
    assert done.returncode == 1 and "at least 12" in done.stderr
