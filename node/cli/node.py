"""``watchnet init``, ``watchnet db ...``, ``watchnet user ...`` and ``watchnet node ...``: setting up,
staffing and looking after a node."""

from __future__ import annotations

import argparse
import getpass
import json
import logging
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from governance.manifest import Manifest
from governance.roles import NODE_ROLES, Role
from node.cli.client import url_argument
from node.config import MANIFEST_FILE, NodeConfig, load_manifest_file
from protocol.errors import ConfigurationError
from protocol.fields import format_time, parse_duration
from protocol.signed import SignedDocument

if TYPE_CHECKING:
    from node.records.accounts import StaffAccounts
    from node.storage.reserve import DiskReserve

__all__ = ["register"]


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def _emit(args: argparse.Namespace, data: dict[str, Any], text: str) -> None:
    print(json.dumps(data, ensure_ascii=False, sort_keys=True) if args.json else text)


def _fetch_manifest(url: str) -> SignedDocument[Manifest]:
    import urllib.request

    target = url.rstrip("/") + "/v1/manifest"
    try:
        with urllib.request.urlopen(target, timeout=10) as response:  # noqa: S310 (operator-configured URL)
            return SignedDocument.from_bytes(response.read(4 << 20), Manifest)
    except OSError as e:
        raise ConfigurationError(
            f"could not fetch {target}: {e}; is 'watchnet gov serve' running there?"
        ) from e


def cmd_manifest_install(args: argparse.Namespace) -> int:
    from node.records.manifests import install_manifest
    from node.records.setup import write_default_rules
    from node.storage.engine import make_engine
    from node.storage.migrate import check_schema

    config = NodeConfig.load(Path(args.node))
    if args.file:
        document, source = load_manifest_file(Path(args.file)), args.file
    else:
        url = args.url or config.manifest_url
        if not url:
            raise ConfigurationError("no --url given and no governance.manifest_url in the node's config")
        document, source = _fetch_manifest(url), url
    engine = make_engine(args.database_url or config.effective_database_url)
    try:
        check_schema(engine)
        offer = install_manifest(
            config.directory,
            engine,
            config.root_keyids,
            document,
            _now(),
            source,
            root_threshold=config.pinned_root_threshold,
        )
    finally:
        engine.dispose()
    write_default_rules(config.directory, document.payload)
    _emit(
        args,
        {"version": offer.version, "outcome": offer.outcome, "source": source},
        f"manifest version {offer.version}: {offer.outcome} (from {source})",
    )
    return 0


def cmd_manifest_show(args: argparse.Namespace) -> int:
    config = NodeConfig.load(Path(args.node))
    manifest = load_manifest_file(config.directory / MANIFEST_FILE).payload
    members = [
        {"node_id": m.node_id, "name": m.name.get("en"), "status": m.status.value, "endpoint": m.endpoint}
        for m in manifest.joint_use.members
    ]
    purposes = sorted(manifest.purpose_codes)
    data: dict[str, Any] = {
        "group_id": manifest.group_id,
        "version": manifest.version,
        "expires": format_time(manifest.expires),
        "members": members,
        "purposes": purposes,
        "threshold": manifest.policy.match_threshold,
    }
    lines = [
        f"group {manifest.group_id}, manifest version {manifest.version}, expires {data['expires']}",
        *(f"  {m['node_id']:<16} {m['status']:<10} {m['endpoint']}  {m['name']}" for m in members),
        f"purposes: {', '.join(purposes)}",
    ]
    _emit(args, data, "\n".join(lines))
    return 0


def cmd_init(args: argparse.Namespace) -> int:
    from node.records.setup import create_node

    config = NodeConfig(
        directory=Path(args.directory),
        node_id=args.node_id,
        display_name=args.display_name or args.node_id,
        port=args.port,
        database_url=args.database_url,
        root_keyids=tuple(args.root_keyid),
        root_threshold=args.root_threshold,
        manifest_url=args.manifest_url,
    )
    created = create_node(config, Path(args.manifest) if args.manifest else None, _now())
    _emit(
        args,
        created.to_dict(),
        "\n".join(
            [
                f"created node {config.node_id} in {config.directory} (schema {created.schema})",
                f"signing key    {created.signing_key}",
                f"encryption key {created.encryption_key}",
                f"first manifest needs {created.config.pinned_root_threshold} of "
                f"{len(config.root_keyids)} pinned root keys",
                created.standing,
            ]
        ),
    )
    return 0


def _engine(args: argparse.Namespace) -> Any:
    from node.storage.engine import make_engine

    if args.database_url:
        return make_engine(args.database_url)
    return make_engine(NodeConfig.load(Path(args.node)).effective_database_url)


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    from node.storage.migrate import upgrade

    revision = upgrade(_engine(args))
    _emit(args, {"schema": revision}, f"database schema at {revision}")
    return 0


def cmd_db_check(args: argparse.Namespace) -> int:
    from node.storage.migrate import check_schema, current_revision, head_revision

    engine = _engine(args)
    current, head = current_revision(engine), head_revision()
    check_schema(engine)
    _emit(args, {"schema": current, "head": head}, f"database schema at {current} (current)")
    return 0


def _accounts(args: argparse.Namespace) -> StaffAccounts:
    from node.records.accounts import StaffAccounts
    from node.storage.migrate import check_schema

    engine = _engine(args)
    check_schema(engine)
    return StaffAccounts(engine)


def _password(args: argparse.Namespace) -> str:
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\n")
        if not password:
            raise ConfigurationError("--password-stdin: standard input held no password (one line)")
        return password
    if not sys.stdin.isatty():
        raise EOFError  # getpass would read the password from a pipe, echoing a warning
    first = getpass.getpass("password: ")
    if getpass.getpass("again: ") != first:
        raise ConfigurationError("the two passwords differ")
    return first


def cmd_user_add(args: argparse.Namespace) -> int:
    member = _accounts(args).add(
        args.username,
        Role(args.role),
        _password(args),
        _now(),
        actor=_cli_actor(),
        sites=tuple(args.site or ()),
    )
    data: dict[str, Any] = {"id": member.id, "username": member.username, "role": member.role.value}
    if member.sites:
        data["sites"] = list(member.sites)
    where = f" for site(s) {', '.join(member.sites)}" if member.sites else ""
    _emit(args, data, f"added {member.username} ({member.role.value}{where}) as {member.id}")
    return 0


def cmd_user_list(args: argparse.Namespace) -> int:
    """The accounts as the console's accounts page lists them (``StaffAccounts.overview``)."""
    now = _now()
    data: list[dict[str, Any]] = [
        {
            "id": a.member.id,
            "username": a.member.username,
            "role": a.member.role.value,
            **({"sites": list(a.member.sites)} if a.member.sites else {}),
            "disabled": a.disabled,
            "locked_until": None if a.locked_until is None else format_time(a.locked_until),
            "last_sign_in": None if a.last_sign_in is None else format_time(a.last_sign_in),
            "tokens": [
                {
                    "id": t.token_id,
                    "state": t.state(now),
                    "expires_at": None if t.expires_at is None else format_time(t.expires_at),
                }
                for t in a.tokens
            ],
        }
        for a in _accounts(args).overview(now)
    ]
    if args.json:
        print(json.dumps(data, sort_keys=True))
    else:
        for item in data:
            valid = sum(1 for t in item["tokens"] if t["state"] == "valid")
            flags = "  (disabled)" if item["disabled"] else ""
            if item["locked_until"]:
                flags += f"  (sign-in locked until {item['locked_until']})"
            print(f"{item['username']:<20} {item['role']:<10} {item['id']}  tokens valid: {valid}{flags}")
    return 0


def cmd_user_disable(args: argparse.Namespace) -> int:
    _accounts(args).set_disabled(args.username, not args.enable, actor=_cli_actor(), now=_now())
    _emit(
        args,
        {"username": args.username, "disabled": not args.enable},
        f"{args.username} {'enabled' if args.enable else 'disabled'}",
    )
    return 0


def cmd_user_locks(args: argparse.Namespace) -> int:
    locks = _accounts(args).locks(_now())
    data = [lock.to_dict() for lock in locks]
    if args.json:
        print(json.dumps(data, sort_keys=True))
    elif not data:
        print("no sign-in is delayed or locked")
    else:
        for item in data:
            until = item["locked_until"] or (
                f"waits until {item['wait_until']}" if item["wait_until"] else "-"
            )
            print(
                f"{item['username']:<20} {item['source']:<40} {item['failures']:>3} failures  locked until {until}"
            )
    return 0


def _cli_actor() -> str:
    """Who ran the command, for the audit log: the host account (the node's operator)."""
    try:
        return f"host:{getpass.getuser()}"
    except (KeyError, OSError):
        return "host"


def cmd_user_unlock(args: argparse.Namespace) -> int:
    from node.records.accounts import sign_in_source

    source = sign_in_source(args.source) if args.source else None
    cleared = _accounts(args).clear_locks(args.username, source, actor=_cli_actor(), now=_now())
    _emit(
        args,
        {"username": args.username, "source": source, "cleared": cleared},
        f"cleared {cleared} sign-in lock(s) of {args.username}" + (f" from {source}" if source else ""),
    )
    return 0


def cmd_user_token(args: argparse.Namespace) -> int:
    token = _accounts(args).issue_token(args.username, _now(), timedelta(days=args.days), actor=_cli_actor())
    _emit(args, {"username": args.username, "token": token}, token)
    return 0


def _reserve(args: argparse.Namespace) -> DiskReserve:
    from node.storage.reserve import DiskReserve

    config = NodeConfig.load(Path(args.node))
    return DiskReserve(config.directory, config.storage.reserve_mb, config.health.disk_free_min_mb)


def cmd_reserve_release(args: argparse.Namespace) -> int:
    reserve = _reserve(args)
    try:
        freed = reserve.release("released by hand: watchnet node release-reserve")
    except OSError as e:
        raise ConfigurationError(f"could not remove {reserve.path}: {e.strerror}") from e
    state = reserve.state()
    text = (
        f"released the disk reserve: {freed >> 20} MiB freed under {reserve.directory} "
        f"({state.free_mb} MiB free); a running node writes its held deletions within seconds"
        if freed
        else f"no disk reserve held under {reserve.directory} ({state.free_mb} MiB free)"
    )
    _emit(args, {"released": freed > 0, "freed_mb": freed >> 20, **state.to_dict()}, text)
    return 0


def cmd_reserve_restore(args: argparse.Namespace) -> int:
    reserve = _reserve(args)
    if not reserve.enabled:
        _emit(args, reserve.state().to_dict(), "no disk reserve is configured ([storage] reserve_mb = 0)")
        return 0
    try:
        written = reserve.restore()
    except OSError as e:
        raise ConfigurationError(f"could not write {reserve.path}: {e.strerror}") from e
    state = reserve.state()
    text = (
        f"disk reserve of {state.size_mb} MiB held at {reserve.path} ({state.free_mb} MiB free)"
        if written
        else f"the disk reserve is held already ({state.size_mb} MiB at {reserve.path})"
    )
    _emit(args, {"restored": written, **state.to_dict()}, text)
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    def with_common(p: argparse.ArgumentParser, *, node: bool = True) -> argparse.ArgumentParser:
        p.add_argument("--json", action="store_true", help="print JSON for scripts")
        if node:
            p.add_argument("--node", default=".", help="node directory (default: current directory)")
            p.add_argument("--database-url", help="override the database URL, e.g. postgresql+psycopg://...")
        return p

    p = with_common(
        sub.add_parser(
            "init", help="create a node directory: config, keys (0600), manifest, rules, database"
        ),
        node=False,
    )
    p.set_defaults(handler=cmd_init)
    p.add_argument("directory")
    p.add_argument("--node-id", required=True, help="this node's id as listed in the manifest, e.g. chain-a")
    p.add_argument("--manifest", help="the group manifest signed by the organisation (or fetch it later)")
    p.add_argument(
        "--manifest-url", help="the organisation's URL ('watchnet gov serve'), polled for new versions"
    )
    p.add_argument(
        "--root-keyid",
        action="append",
        required=True,
        help="a pinned root key id of the organisation (repeat)",
    )
    p.add_argument(
        "--root-threshold",
        type=int,
        help="how many pinned root keys must sign the first manifest "
        "(default: the threshold --manifest declares, at least 2 when 2 or more keys are pinned)",
    )
    p.add_argument("--display-name")
    p.add_argument("--port", type=int, default=8470)
    p.add_argument("--database-url", help="PostgreSQL URL for production; default SQLite in the directory")

    db = sub.add_parser("db", help="database schema (Alembic migrations)")
    db_commands = db.add_subparsers(dest="db_command", metavar="COMMAND", required=True)
    with_common(
        db_commands.add_parser("upgrade", help="apply migrations up to the newest schema")
    ).set_defaults(handler=cmd_db_upgrade)
    with_common(db_commands.add_parser("check", help="fail unless the schema is the newest")).set_defaults(
        handler=cmd_db_check
    )

    manifest = sub.add_parser("manifest", help="the group manifest this node trusts")
    manifest_commands = manifest.add_subparsers(dest="manifest_command", metavar="COMMAND", required=True)
    p = with_common(
        manifest_commands.add_parser(
            "install", help="trust a newer manifest from a file (first one: signed by the pinned root keys)"
        )
    )
    p.set_defaults(handler=cmd_manifest_install, url=None)
    p.add_argument("file")
    p = with_common(
        manifest_commands.add_parser(
            "fetch", help="fetch the manifest from the organisation and trust it if valid"
        )
    )
    p.set_defaults(handler=cmd_manifest_install, file=None)
    p.add_argument("--url", help="the organisation's URL (default: governance.manifest_url from the config)")
    with_common(
        manifest_commands.add_parser("show", help="the trusted manifest: version, members, purposes")
    ).set_defaults(handler=cmd_manifest_show)

    user = sub.add_parser("user", help="staff accounts")
    user_commands = user.add_subparsers(dest="user_command", metavar="COMMAND", required=True)
    p = with_common(user_commands.add_parser("add", help="add a staff account with a role"))
    p.set_defaults(handler=cmd_user_add)
    p.add_argument("username")
    p.add_argument("--role", required=True, choices=[r.value for r in NODE_ROLES])
    p.add_argument(
        "--site",
        action="append",
        help="a camera account's site, the only ones it may submit faces for (repeat; camera role only)",
    )
    p.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    with_common(user_commands.add_parser("list", help="list staff accounts")).set_defaults(
        handler=cmd_user_list
    )
    p = with_common(user_commands.add_parser("disable", help="disable (or --enable) an account"))
    p.set_defaults(handler=cmd_user_disable)
    p.add_argument("username")
    p.add_argument("--enable", action="store_true", help="re-enable instead")
    with_common(
        user_commands.add_parser(
            "locks", help="sign-in locks: accounts delayed or locked after wrong passwords, by source address"
        )
    ).set_defaults(handler=cmd_user_locks)
    p = with_common(user_commands.add_parser("unlock", help="clear an account's sign-in locks (audited)"))
    p.set_defaults(handler=cmd_user_unlock)
    p.add_argument("username")
    p.add_argument("--source", help="only the lock from this address (default: from every address)")
    p = with_common(user_commands.add_parser("token", help="issue an API token (shown once)"))
    p.set_defaults(handler=cmd_user_token)
    p.add_argument("username")
    p.add_argument(
        "--days",
        type=int,
        default=90,
        help="days until the token expires (default 90, at most 365)",
    )

    node = sub.add_parser("node", help="looking after a node's directory: the disk reserve")
    node_commands = node.add_subparsers(dest="node_command", metavar="COMMAND", required=True)
    reserve_help = " ([storage] reserve_mb in the node directory, kept for deletions and expiries)"
    for name, handler, text in (
        (
            "release-reserve",
            cmd_reserve_release,
            "give the disk reserve up now, so a full disk has room for deletions",
        ),
        (
            "restore-reserve",
            cmd_reserve_restore,
            "take the disk reserve again once there is room for it and [health] disk_free_min_mb",
        ),
    ):
        p = with_common(node_commands.add_parser(name, help=text + reserve_help), node=False)
        p.add_argument("--node", default=".", help="node directory (default: current directory)")
        p.set_defaults(handler=handler)


def cmd_serve(args: argparse.Namespace) -> int:
    import os

    from node.app.server import build_app
    from node.app.serving import serve
    from node.context import NodeContext
    from node.files import PRIVATE_UMASK, loose_mode_warning, loose_modes
    from node.records.manifests import install_manifest
    from node.records.setup import write_default_rules
    from node.scrub import scrub_freed_memory
    from node.storage.engine import make_engine

    scrub_freed_memory()  # faces matched and let go (a camera's, a peer's query) overwritten when freed
    os.umask(PRIVATE_UMASK)  # the database's -wal/-shm, logs, HE keys: the owner's alone
    config = NodeConfig.load(Path(args.node))
    if not (config.directory / MANIFEST_FILE).exists() and config.manifest_url:
        engine = make_engine(args.database_url or config.effective_database_url)
        document = _fetch_manifest(config.manifest_url)
        try:
            install_manifest(
                config.directory,
                engine,
                config.root_keyids,
                document,
                _now(),
                config.manifest_url,
                root_threshold=config.pinned_root_threshold,
            )
        finally:
            engine.dispose()
        write_default_rules(config.directory, document.payload)
    context = NodeContext.load(Path(args.node), database_url=args.database_url)
    if context.engine.dialect.name == "sqlite":  # one serving process per SQLite node
        from node.app.single import AlreadyServing, hold_serve_lock

        try:  # the lock's file stays open (and locked) until this process ends
            hold_serve_lock(context.config.directory, str(context.engine.url.database))
        except AlreadyServing as e:
            print(f"watchnet serve: {e}", file=sys.stderr, flush=True)
            return 2
    host = args.host or context.config.host
    port = args.port or context.config.port
    loose = loose_modes(context.config.directory)
    for path in loose:
        print(f"watchnet serve: {loose_mode_warning(path)}", file=sys.stderr, flush=True)
    if loose and context.config.security.loose_permissions == "refuse":
        print(
            f"watchnet serve: refusing to start: {len(loose)} path(s) under {context.config.directory} "
            'readable or writable by group or others ([security] loose_permissions = "refuse")',
            file=sys.stderr,
        )
        return 2
    app = build_app(context)
    _log_to_stderr()
    scheme = "https" if context.config.server.tls_cert else "http"
    print(
        f"serving node {context.config.node_id} on {scheme}://{host}:{port} (manifest v{context.manifest.version})",
        flush=True,
    )
    serve(app, host, port, context.config.connections)
    return 0


def cmd_audit_verify(args: argparse.Namespace) -> int:
    import asyncio

    from node.reporting.auditor import audit_node

    report = asyncio.run(
        audit_node(
            args.url,
            args.token,
            pinned_key=args.signing_key,
            state_file=Path(args.state) if args.state else None,
            root_keyids=args.root_keyid,
            now=_now,
            witness_wait=parse_duration(args.witness_wait, field="--witness-wait").total_seconds(),
        )
    )
    print(json.dumps(report.to_dict(), sort_keys=True) if args.json else str(report))
    return 0 if report.ok else 1


def _audited_url(text: str) -> str:
    """The old ``audit verify --url URL``: a URL still works; a directory is told about --url."""
    if not text.startswith(("http://", "https://")):
        raise argparse.ArgumentTypeError(
            f"{text!r:.80}: an auditor verifies a node over HTTP; give its address with --url http(s)://HOST:PORT"
        )
    return url_argument(text)


def register_service(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("serve", help="run the node's HTTP service")
    p.set_defaults(handler=cmd_serve)
    p.add_argument("--node", default=".", help="node directory (default: current directory)")
    p.add_argument("--database-url", help="override the database URL, e.g. postgresql+psycopg://...")
    p.add_argument("--host", help="listen address (default from config: 127.0.0.1)")
    p.add_argument("--port", type=int, help="listen port (default from config: 8470)")

    audit = sub.add_parser("audit", help="third-party checks of a node")
    audit_commands = audit.add_subparsers(dest="audit_command", metavar="COMMAND", required=True)
    p = audit_commands.add_parser(
        "verify", help="verify a node's signed event log, inclusion, consistency and audit chain over HTTP"
    )
    p.set_defaults(handler=cmd_audit_verify)
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument("--url", type=url_argument, help="the node's URL, e.g. http://127.0.0.1:8470")
    target.add_argument(
        "--node", dest="url", type=_audited_url, help=argparse.SUPPRESS
    )  # before --url existed; it is a URL here, never a node directory
    p.add_argument("--token", required=True, help="an auditor account's API token")
    p.add_argument("--signing-key", help="the node's public signing key to pin (from the manifest)")
    p.add_argument(
        "--state",
        help="file keeping what was verified (head, compact range, last audit record): the next run "
        "checks the consistency proof and only what is new; written only when the run is OK",
    )
    p.add_argument(
        "--root-keyid",
        action="append",
        default=[],
        help="an organisation root key id to trust the node's manifest under (repeat; as in watchnet init)",
    )
    p.add_argument(
        "--witness-wait",
        default="10s",
        help="how long to wait for the group policy's number of witness cosignatures (default 10s)",
    )
    p.add_argument("--json", action="store_true", help="print JSON for scripts")


def _log_to_stderr() -> None:
    """The node's own events (manifests trusted, peers failing, galleries rebuilt) at INFO on stderr;
    they name nodes, versions and counts, never an embedding, a face or a key. One JSON object per
    line (``node.jsonlog``), on the root logger so aiohttp's warnings are JSON too: a value a peer
    sent can never start a line of its own."""
    from node.jsonlog import json_handler

    logging.getLogger().addHandler(json_handler())
    logging.getLogger().setLevel(logging.WARNING)
    logging.getLogger("watchnet").setLevel(logging.INFO)
