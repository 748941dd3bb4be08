"""``watchnet backup create|verify`` and ``watchnet restore``: a node's sealed backup, checking one
without restoring it, and writing one back into a node (``node.records.restore``)."""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from protocol.errors import ConfigurationError

if TYPE_CHECKING:
    from node.records.backup import BackupReport

__all__ = ["register"]

PASSPHRASE_ENV = "WATCHNET_BACKUP_PASSPHRASE"  # noqa: S105 (the variable's name)
MIN_PASSPHRASE = 12


def _passphrase(args: argparse.Namespace, *, confirm: bool) -> bytes:
    """From --passphrase-file, then $WATCHNET_BACKUP_PASSPHRASE, then asked twice at a terminal."""
    if args.passphrase_file:
        try:
            text = Path(args.passphrase_file).read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as e:
            raise ConfigurationError(f"--passphrase-file {args.passphrase_file}: {e}") from e
        value = text[0] if text else ""
    elif os.environ.get(PASSPHRASE_ENV):
        value = os.environ[PASSPHRASE_ENV]
    elif sys.stdin.isatty():
        value = getpass.getpass("backup passphrase: ")
        if confirm and getpass.getpass("again: ") != value:
            raise ConfigurationError("the two passphrases differ")
    else:
        raise ConfigurationError(
            f"no passphrase: give --passphrase-file FILE or set {PASSPHRASE_ENV} (no terminal to ask at)"
        )
    if confirm and len(value) < MIN_PASSPHRASE:
        raise ConfigurationError(f"the passphrase has {len(value)} characters; use at least {MIN_PASSPHRASE}")
    return value.encode("utf-8")


class _Bar:
    """A tqdm bar on standard error, or nothing for --json or when standard error is no terminal."""

    def __init__(self, args: argparse.Namespace, what: str, unit: str = "B") -> None:
        self._bar: Any = None
        if not args.json and sys.stderr.isatty():
            from tqdm import tqdm

            self._bar = tqdm(desc=what, unit=unit, unit_scale=True, file=sys.stderr, leave=False)

    def update(self, done: int, total: int | None = None) -> None:
        if self._bar is not None:
            if total is not None:
                self._bar.total = total
            self._bar.n = done
            self._bar.refresh()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


def _summary(report: BackupReport) -> str:
    entries = ", ".join(f"{n} {status}" for status, n in sorted(report.entries.items())) or "not counted"
    keys = "with the secret keys" if report.with_keys else "without secret keys"
    return (
        f"{report.node_id}, taken {report.created_at}, {report.engine} (schema {report.schema}), "
        f"log size {report.log_size}, {len(report.members)} files, {keys}; entries: {entries}"
    )


def cmd_create(args: argparse.Namespace) -> int:
    from node.records.backup import create_backup

    directory = Path(args.node)
    target = Path(args.out)
    if target.exists() and not args.force:
        raise ConfigurationError(f"--out {target} exists; choose another name or give --force")
    if not (directory / "config.toml").is_file():
        raise ConfigurationError(f"--node {directory}: not a node directory (no config.toml)")
    passphrase = _passphrase(args, confirm=True)
    partial = target.with_name(f".{target.name}.partial")
    bar = _Bar(args, "backup")
    try:
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as out:
            report = create_backup(
                directory,
                out,
                passphrase,
                datetime.now(UTC),
                with_keys=args.with_keys,
                progress=bar.update,
            )
            out.flush()
            os.fsync(out.fileno())
        os.replace(partial, target)
    except OSError as e:
        raise ConfigurationError(f"cannot write {target}: {e.strerror or e}") from e
    finally:
        bar.close()
        partial.unlink(missing_ok=True)
    data = {**report.to_json(), "file": str(target), "file_bytes": target.stat().st_size}
    print(
        json.dumps(data, ensure_ascii=False, sort_keys=True)
        if args.json
        else f"backup written to {target}: {_summary(report)}"
    )
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    from node.records.backup import verify_backup

    path = Path(args.file)
    try:
        size = path.stat().st_size
        source = path.open("rb")
    except OSError as e:
        raise ConfigurationError(f"{path}: {e.strerror or e}") from e
    passphrase = _passphrase(args, confirm=False)
    bar = _Bar(args, "verify")
    scratch = Path(args.scratch) if args.scratch else path.resolve().parent
    try:
        with source:
            report = verify_backup(source, passphrase, scratch, progress=lambda done: bar.update(done, size))
    finally:
        bar.close()
    data = {**report.to_json(), "file": str(path), "ok": True}
    print(
        json.dumps(data, ensure_ascii=False, sort_keys=True)
        if args.json
        else f"backup {path} is whole: {_summary(report)}"
    )
    return 0


def cmd_restore(args: argparse.Namespace) -> int:
    from node.records.restore import restore_backup

    directory = Path(args.node)
    if not (directory / "config.toml").is_file():
        raise ConfigurationError(f"--node {directory}: not a node directory (no config.toml)")
    if args.report or args.file is None:
        return _print_restore_report(directory, args)
    path = Path(args.file)
    try:
        source = path.open("rb")
    except OSError as e:
        raise ConfigurationError(f"{path}: {e.strerror or e}") from e
    passphrase = _passphrase(args, confirm=False)
    with source:
        report = restore_backup(
            directory,
            source,
            passphrase,
            datetime.now(UTC),
            progress=(lambda step: None) if args.json else (lambda step: print(f"  {step}", file=sys.stderr)),
        )
    print(
        json.dumps({**report.to_json(), "restoring": True}, ensure_ascii=False, sort_keys=True)
        if args.json
        else (
            f"restored {report.node_id} from {path} (taken {report.backup_created_at}, log size "
            f"{report.backup_log_size}, {report.backup_bytes} bytes"
            f"{', with keys' if report.with_keys else ''}). The node is marked restoring: start it "
            "('watchnet serve'); it answers no query until it has replayed its log from the members' "
            "copies. Then 'watchnet restore --report' lists what was lost."
        )
    )
    return 0


def _print_restore_report(directory: Path, args: argparse.Namespace) -> int:
    from node.records.restore import read_marker, read_report

    marker = read_marker(directory)
    report = read_report(directory)
    data: dict[str, Any] = {
        "restoring": marker is not None,
        "in_progress": marker,
        "last": None if report is None else report.to_json(),
    }
    if args.json:
        print(json.dumps(data, ensure_ascii=False, sort_keys=True))
    elif marker is not None:
        print(
            f"restoring from a backup taken {marker.get('backup_created_at')} (log size "
            f"{marker.get('backup_log_size')}); not complete yet: see GET /v1/health/ready (restore)"
        )
    elif report is None:
        print("this node has not been restored")
    else:
        lost = ", ".join(report.lost) or "none"
        print(
            f"restored from a backup taken {report.backup_created_at}; completed {report.completed_at}: log "
            f"{report.backup_log_size} -> {report.log_size}, {report.replayed} events replayed, "
            f"{len(report.erased)} entries erased again, {report.receipts} receipts recovered; lost (registered "
            f"or changed after the backup, to re-register from their evidence): {lost}"
        )
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    backup = sub.add_parser(
        "backup",
        help="write a node's sealed backup, or check one without restoring it",
        description=(
            "A backup is one file sealed with a passphrase (argon2id, libsodium secretstream): the "
            "database (a consistent copy taken while the node serves), config, manifest, rules and "
            "held deletions; the secret keys only with --with-keys. Keep backups no longer than the "
            "group's deletion deadline (docs/operations.md, Backups)."
        ),
    )
    commands = backup.add_subparsers(dest="backup_command", metavar="COMMAND", required=True)

    def common(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument("--json", action="store_true", help="print JSON for scripts")
        p.add_argument(
            "--passphrase-file",
            help=f"read the passphrase from the first line of this file (else ${PASSPHRASE_ENV}, else asked)",
        )
        return p

    p = common(commands.add_parser("create", help="write a sealed backup of a node"))
    p.set_defaults(handler=cmd_create)
    p.add_argument("--node", default=".", help="node directory (default: current directory)")
    p.add_argument("--out", required=True, help="the backup file to write")
    p.add_argument(
        "--with-keys", action="store_true", help="include the node's secret keys (handle as the node itself)"
    )
    p.add_argument("--force", action="store_true", help="replace --out if it exists")

    p = common(
        sub.add_parser(
            "restore",
            help="write a backup back into a stopped node and mark it restoring, or report the last restore",
            description=(
                "Writes the backup's database back (SQLite: the file replaced; PostgreSQL: pg_restore "
                "--clean into the configured database) and its keys if it has them, and marks the node "
                "restoring: started, it answers no query until it has replayed the events after the "
                "backup from the members' copies of its log (deletions erased again; entries it cannot "
                "recover reported lost). Stop the node first (docs/operations.md, Restore)."
            ),
        )
    )
    p.set_defaults(handler=cmd_restore)
    p.add_argument("file", nargs="?", help="the backup file (omit with --report)")
    p.add_argument("--node", default=".", help="node directory (default: current directory)")
    p.add_argument("--report", action="store_true", help="print what the last restore replayed and lost")

    p = common(commands.add_parser("verify", help="check a backup end to end without restoring it"))
    p.set_defaults(handler=cmd_verify)
    p.add_argument("file", help="the backup file")
    p.add_argument("--scratch", help="directory for the database copy checked (default: beside the file)")
