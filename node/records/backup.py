"""Backups of a node: a consistent snapshot of its database and files in one sealed archive.

The database is copied while the node serves: SQLite through its online backup API (a page-by-
page copy that sees one committed state), PostgreSQL with ``pg_dump --format=custom`` (one
repeatable-read snapshot). The copy, the node's config, manifest, rules and held deletions go
into a tar stream sealed by ``protocol.archive``; the secret keys go in only when asked, since a
backup with keys is as sensitive as the node itself. ``backup.json``, the first member, says what
the backup holds (node, time, schema, the log's size and root at the snapshot, every member's
size and SHA-256) so ``verify_backup`` can check a copy end to end without restoring it.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import sqlite3
import subprocess
import tarfile
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO

from sqlalchemy.engine import make_url

from node.config import CONFIG_FILE, MANIFEST_FILE, RULES_FILE, NodeConfig
from node.files import PRIVATE_DIR, PRIVATE_FILE
from node.records.held_journal import HELD_FILE
from protocol.archive import ArchiveReader, ArchiveWriter, KdfCost
from protocol.errors import BackupError, ConfigurationError
from protocol.fields import format_time

__all__ = ["BackupReport", "create_backup", "read_archive", "verify_backup"]

METADATA = "backup.json"
SQLITE_MEMBER = "database.sqlite"
PGDUMP_MEMBER = "database.pgdump"
NODE_FILES = (CONFIG_FILE, MANIFEST_FILE, RULES_FILE, HELD_FILE)
SQLITE_PAGES_PER_STEP = 1024
Progress = Callable[[int, int], None]
"""Called with (bytes done, bytes in all) as the work goes on."""


@dataclass
class BackupReport:
    """What a backup holds, as written or as checked."""

    node_id: str
    created_at: str
    engine: str
    schema: str | None
    log_size: int
    log_root: str | None
    with_keys: bool
    members: list[dict[str, Any]] = field(default_factory=list)
    archive_bytes: int = 0
    entries: dict[str, int] = field(default_factory=dict)
    """Entries by status, counted in the copied database (SQLite; PostgreSQL dumps are listed)."""

    def to_json(self) -> dict[str, Any]:
        return {
            "node_id": self.node_id,
            "created_at": self.created_at,
            "engine": self.engine,
            "schema": self.schema,
            "log_size": self.log_size,
            "log_root": self.log_root,
            "with_keys": self.with_keys,
            "members": self.members,
            "archive_bytes": self.archive_bytes,
            "entries": self.entries,
        }


@contextmanager
def _private_scratch(directory: Path) -> Iterator[Path]:
    """A 0700 directory beside the node's files (same disk, same owner), removed afterwards."""
    scratch = Path(tempfile.mkdtemp(prefix=".backup-", dir=directory))
    os.chmod(scratch, PRIVATE_DIR)
    try:
        yield scratch
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _snapshot_sqlite(source: Path, target: Path, progress: Progress) -> None:
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE)
    os.close(fd)
    src = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
    dst = sqlite3.connect(target)
    try:
        src.backup(
            dst,
            pages=SQLITE_PAGES_PER_STEP,
            progress=lambda _status, remaining, total: progress(total - remaining, total),
        )
    finally:
        dst.close()
        src.close()


def _pg_tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        candidates = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"))
        if not candidates:
            raise ConfigurationError(f"{name} not found: install PostgreSQL's client tools")
        found = str(candidates[-1])
    return found


def _libpq(url: str) -> tuple[list[str], dict[str, str]]:
    """pg_dump's connection arguments from the node's URL; the password goes in the environment,
    never on a command line another user could read."""
    parsed = make_url(url)
    args = ["--dbname", parsed.database or ""]
    if parsed.host:
        args += ["--host", parsed.host]
    if parsed.port:
        args += ["--port", str(parsed.port)]
    if parsed.username:
        args += ["--username", parsed.username]
    env = {**os.environ}
    if parsed.password:
        env["PGPASSWORD"] = str(parsed.password)
    return args, env


def run_pg_tool(
    tool: str, arguments: list[str], url: str, stdout: BinaryIO | int = subprocess.DEVNULL
) -> None:
    """Run one of PostgreSQL's client tools against the node's database; its last line of
    standard error is the message when it fails."""
    args, env = _libpq(url)
    done = subprocess.run(  # noqa: S603 (PostgreSQL's own tool, our arguments)
        [_pg_tool(tool), *arguments[:-1], "--no-password", *args, *arguments[-1:]],
        stdout=stdout,
        stderr=subprocess.PIPE,
        env=env,
        check=False,
        timeout=3600,
    )
    if done.returncode != 0:
        message = done.stderr.decode("utf-8", "replace").strip().splitlines()[-1:] or ["no message"]
        raise ConfigurationError(f"{tool} failed ({done.returncode}): {message[0]}")


def _snapshot_postgres(url: str, target: Path, progress: Progress) -> None:
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE)
    with os.fdopen(fd, "wb") as out:
        run_pg_tool("pg_dump", ["--format=custom", "--no-owner"], url, out)
    size = target.stat().st_size
    progress(size, size)


def _log_head(config: NodeConfig) -> tuple[str | None, int, str | None]:
    from sqlmodel import Session

    from node.records.eventlog import open_event_log
    from node.storage.engine import make_engine
    from node.storage.migrate import current_revision

    engine = make_engine(config.effective_database_url)
    try:
        schema = current_revision(engine)
        with Session(engine) as session:
            size, root = open_event_log(engine).head_in(session)
        return schema, size, root.hex() if size else None
    finally:
        engine.dispose()


def _key_files(config: NodeConfig) -> list[tuple[str, Path]]:
    names = (config.signing_key_file, config.encryption_key_file, config.data_key_file)
    found = []
    for name in names:
        path = config.path(name)
        if not path.is_file():
            raise ConfigurationError(f"--with-keys: {path} is missing")
        found.append((f"keys/{Path(name).name}", path))
    return found


def _record_keys(config: NodeConfig, scratch: Path) -> list[tuple[str, Path]]:
    """The key store, copied first: a key destroyed while the archive is written is simply absent."""
    source = config.path(config.record_keys_dir)
    if not source.is_dir():
        return []
    copies = scratch / "record-keys"
    copies.mkdir(mode=0o700)
    found = []
    for path in sorted(source.glob("*.key")):
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            continue
        copy = copies / path.name
        copy.write_bytes(data)
        found.append((f"keys/records/{path.name}", copy))
    return found


def _add(tar: tarfile.TarFile, name: str, path: Path) -> None:
    info = tarfile.TarInfo(name)
    info.size = path.stat().st_size
    info.mode = PRIVATE_FILE
    info.mtime = int(path.stat().st_mtime)
    with path.open("rb") as f:
        tar.addfile(info, f)


def create_backup(
    directory: Path,
    out: BinaryIO,
    passphrase: bytes,
    now: datetime,
    *,
    with_keys: bool = False,
    cost: KdfCost | None = None,
    progress: Progress = lambda _done, _total: None,
) -> BackupReport:
    """Snapshot the node in ``directory`` into the sealed archive ``out``."""
    config = NodeConfig.load(directory)
    url = config.effective_database_url
    engine_name = "postgresql" if url.startswith("postgresql") else "sqlite"
    schema, log_size, log_root = _log_head(config)
    with _private_scratch(config.directory) as scratch:
        if engine_name == "sqlite":
            database = scratch / SQLITE_MEMBER
            source = Path(url.removeprefix("sqlite:///"))
            _snapshot_sqlite(source, database, lambda done, total: progress(done, total * 2))
        else:
            database = scratch / PGDUMP_MEMBER
            _snapshot_postgres(url, database, lambda done, total: progress(done, total * 2))
        members: list[tuple[str, Path]] = [(database.name, database)]
        members += [
            (name, config.directory / name) for name in NODE_FILES if (config.directory / name).is_file()
        ]
        if with_keys:
            members += _key_files(config)
            members += _record_keys(config, scratch)
        listing: list[dict[str, Any]] = [
            {"name": name, "size": path.stat().st_size, "sha256": _sha256(path)} for name, path in members
        ]
        report = BackupReport(
            node_id=config.node_id,
            created_at=format_time(now),
            engine=engine_name,
            schema=schema,
            log_size=log_size,
            log_root=log_root,
            with_keys=with_keys,
            members=listing,
        )
        metadata = json.dumps(report.to_json(), ensure_ascii=False, indent=1).encode("utf-8")
        total = sum(m["size"] for m in listing) or 1
        sealed = ArchiveWriter(out, passphrase, cost)
        with tarfile.open(fileobj=sealed, mode="w|", format=tarfile.PAX_FORMAT) as tar:  # type: ignore[call-overload]
            info = tarfile.TarInfo(METADATA)
            info.size = len(metadata)
            info.mode = PRIVATE_FILE
            tar.addfile(info, io.BytesIO(metadata))
            done = 0
            for name, path in members:
                _add(tar, name, path)
                done += path.stat().st_size
                progress(total + done, total * 2)
        sealed.close()
        report.archive_bytes = sealed.written
    return report


class _Hashing:
    """A tar member read through, its SHA-256 and size kept; written to ``copy`` when given."""

    def __init__(self, copy: BinaryIO | None) -> None:
        self.digest = hashlib.sha256()
        self.size = 0
        self.copy = copy

    def feed(self, source: BinaryIO) -> None:
        for block in iter(lambda: source.read(1 << 20), b""):
            self.digest.update(block)
            self.size += len(block)
            if self.copy is not None:
                self.copy.write(block)


def _count_entries(database: Path) -> dict[str, int]:
    connection = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
    try:
        (check,) = connection.execute("PRAGMA integrity_check").fetchone()
        if check != "ok":
            raise BackupError(f"the database in the backup fails SQLite's integrity check: {check}")
        rows = connection.execute("SELECT status, count(*) FROM entry GROUP BY status").fetchall()
        return {str(status): int(n) for status, n in rows}
    except sqlite3.DatabaseError as e:
        raise BackupError(f"the database in the backup does not open: {e}") from e
    finally:
        connection.close()


def _list_pgdump(dump: Path) -> None:
    done = subprocess.run(  # noqa: S603 (PostgreSQL's own tool)
        [_pg_tool("pg_restore"), "--list", str(dump)], capture_output=True, check=False, timeout=600
    )
    if done.returncode != 0:
        raise BackupError("the PostgreSQL dump in the backup does not list: pg_restore --list failed")


def read_archive(
    source: BinaryIO,
    passphrase: bytes,
    copy_to: Callable[[str], Path | None],
    *,
    progress: Callable[[int], None] = lambda _done: None,
) -> tuple[dict[str, Any], dict[str, tuple[int, str]], int]:
    """Open the archive and read every member through, hashed; written where ``copy_to(name)``
    says (``None``: only hashed). Returns ``backup.json``, each member's (size, SHA-256) and the
    bytes read, once every frame opened, the final one is there and the members match the listing."""
    reader = ArchiveReader(source, passphrase)
    seen: dict[str, tuple[int, str]] = {}
    metadata: dict[str, Any] | None = None
    with tarfile.open(fileobj=reader, mode="r|") as tar:  # type: ignore[call-overload]
        for member in tar:
            progress(reader.read_bytes)
            if not member.isfile():
                raise BackupError(f"the backup holds {member.name!r}, which is not a file")
            extracted = tar.extractfile(member)
            if extracted is None:
                raise BackupError(f"the backup's {member.name!r} cannot be read")
            if metadata is None:
                if member.name != METADATA or member.size > 1 << 20:
                    raise BackupError(f"the backup starts with {member.name!r}, not {METADATA}")
                metadata = json.loads(extracted.read())
                continue
            target = copy_to(member.name)
            if target is None:
                hashing = _Hashing(None)
                hashing.feed(extracted)
            else:
                target.parent.mkdir(parents=True, exist_ok=True, mode=PRIVATE_DIR)
                fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE)
                with os.fdopen(fd, "wb") as copy:
                    hashing = _Hashing(copy)
                    hashing.feed(extracted)
            seen[member.name] = (hashing.size, hashing.digest.hexdigest())
    if not reader.complete:
        reader.read()
    if metadata is None:
        raise BackupError("the backup holds nothing")
    listed = {m["name"]: (m["size"], m["sha256"]) for m in metadata.get("members", [])}
    if listed != seen:
        differ = sorted(set(listed) ^ set(seen)) or sorted(n for n in listed if listed[n] != seen.get(n))
        raise BackupError(f"the backup's members differ from its listing: {', '.join(differ)}")
    return metadata, seen, reader.read_bytes


def verify_backup(
    source: BinaryIO,
    passphrase: bytes,
    scratch_in: Path,
    *,
    progress: Callable[[int], None] = lambda _done: None,
) -> BackupReport:
    """Open, authenticate and check a backup without restoring it: every frame opens, the final
    one is there, every member is listed with its size and hash, and the copied database is
    whole (SQLite's integrity check; ``pg_restore --list`` for PostgreSQL)."""
    with _private_scratch(scratch_in) as scratch:
        databases = (SQLITE_MEMBER, PGDUMP_MEMBER)
        metadata, seen, read = read_archive(
            source,
            passphrase,
            lambda name: scratch / name if name in databases else None,
            progress=progress,
        )
        report = BackupReport(
            node_id=str(metadata["node_id"]),
            created_at=str(metadata["created_at"]),
            engine=str(metadata["engine"]),
            schema=metadata.get("schema"),
            log_size=int(metadata["log_size"]),
            log_root=metadata.get("log_root"),
            with_keys=bool(metadata["with_keys"]),
            members=list(metadata["members"]),
            archive_bytes=read,
        )
        if SQLITE_MEMBER in seen:
            report.entries = _count_entries(scratch / SQLITE_MEMBER)
        elif PGDUMP_MEMBER in seen:
            _list_pgdump(scratch / PGDUMP_MEMBER)
        else:
            raise BackupError("the backup holds no database")
    progress(read)
    return report
