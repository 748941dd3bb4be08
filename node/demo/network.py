"""A whole watchnet group on one machine: an organisation and member nodes as separate processes.

``watchnet demo`` and the federation tests both run on this: every node is a real ``watchnet
serve`` process with its own directory, database (SQLite unless ``databases`` names another), key
files and port on 127.0.0.1, and the organisation is a real ``watchnet gov serve``. With a
``database_server`` (or ``WATCHNET_DEMO_DATABASE_SERVER``) every node not named in ``databases``
gets a fresh PostgreSQL database of its own on that server, dropped when the network is destroyed:
CI runs the group tests that way, on production's engine. Setting up
goes through the same functions the CLI uses (``watchnet init``, ``gov create``/``sign``, ``user
add``), so what the demo shows is what an operator does by hand.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import signal
import socket
import ssl
import subprocess
import sys
import time
import tomllib
import urllib.error
import urllib.request
import weakref
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from importlib import resources
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from governance.description import manifest_from_description, next_version
from governance.manifest import LocalizedText, Manifest
from governance.notice import SiteSignage
from governance.roles import Role
from node.config import AlertSettings, Federation, NodeConfig, NoticeSettings, StorageSettings
from node.files import PRIVATE_FILE, write_atomic
from node.records.accounts import StaffAccounts
from node.records.keystore import load_encryption_key, load_signing_key, save_key
from node.records.setup import create_node
from node.storage.engine import make_engine
from node.storage.migrate import upgrade
from protocol.errors import ConfigurationError
from protocol.fields import parse_duration
from protocol.keys import EncryptionKey, SigningKey
from protocol.signed import SignedDocument

__all__ = [
    "DATABASE_SERVER_VARIABLE",
    "ORG_STAFF",
    "STAFF",
    "LocalNetwork",
    "LocalNode",
    "Placement",
    "free_port",
]

DATABASE_SERVER_VARIABLE = "WATCHNET_DEMO_DATABASE_SERVER"
"""A PostgreSQL server URL (no database name) for every ``LocalNetwork`` that names none itself."""
_IDENTIFIER_MAX = 63

STAFF = {
    "reg1": Role.REGISTRAR,
    "off1": Role.OFFICER,
    "off2": Role.OFFICER,
    "op1": Role.OPERATOR,
    "aud1": Role.AUDITOR,
    "adm1": Role.ADMIN,
}
ORG_STAFF = {
    "sec1": Role.SECRETARIAT,
    "kh1": Role.KEY_HOLDER,
    "kh2": Role.KEY_HOLDER,
    "oaud1": Role.AUDITOR,
    "oadm1": Role.ADMIN,
}
"""The organisation's console accounts (``org_console=True``); kh1 and kh2 sign with org1.key and org2.key."""
CHAIN_NAMES = {
    "chain-a": ("株式会社Aマート", "A-Mart Co., Ltd."),
    "chain-b": ("株式会社Bストア", "B-Store Inc."),
    "chain-c": ("株式会社Cマーケット", "C-Market Corp."),
}
DEMO_SITES = {
    "chain-a": (("shinjuku", "新宿店", "Shinjuku store"), ("shibuya", "渋谷店", "Shibuya store")),
    "chain-b": (("ikebukuro", "池袋店", "Ikebukuro store"),),
    "chain-c": (("ueno", "上野店", "Ueno store"),),
}
"""Each demo member's stores, cameras and signs, so its notice page lists where its cameras run."""


DEMO_PROCEDURE = (
    LocalizedText(
        "本人に声をかけず、その場で責任者に連絡する",
        "Do not approach the person; call the officer on duty at once",
    ),
    LocalizedText(
        "責任者と二人で、カメラの顔と登録時の顔を見比べる",
        "With the officer, compare the camera's face with the registered one",
    ),
    LocalizedText(
        "同一人物と判断したら「本人と確認」を押し、店舗の防犯手順に従って対応する",
        "If it is the same person, press Confirmed and follow the store's security procedure",
    ),
    LocalizedText(
        "別人なら「誤検知」を押す（カメラ画像はその場で消去され、登録元に伝えられる）",
        "If it is someone else, press False match (the camera image is erased and the owner told)",
    ),
)
"""The response procedure every demo node shows on its alert pages (``[alerts] procedure``)."""


def demo_notice(node_id: str, posted_on: date) -> NoticeSettings:
    """The ``[notice]`` settings of a demo node: its stores, two cameras each, signs posted."""
    return NoticeSettings(
        sites=tuple(
            SiteSignage(
                site_id=site_id,
                name=LocalizedText(ja, en),
                cameras=("entrance", "register"),
                posted_on=posted_on,
            )
            for site_id, ja, en in DEMO_SITES.get(node_id, ())
        )
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def _wait_http(url: str, process: subprocess.Popen[bytes], log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ConfigurationError(f"{url} exited with {process.returncode}: {log.read_text()[-1500:]}")
        try:
            with urllib.request.urlopen(f"{url}/v1/health", timeout=1) as response:  # noqa: S310
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            time.sleep(0.1)
    raise ConfigurationError(f"{url} did not answer within {timeout:.0f}s: {log.read_text()[-1500:]}")


@dataclass(frozen=True)
class Placement:
    """Where a process of the network runs: the address it listens on (and its URL names), and a
    command prefix that starts it elsewhere, e.g. ``("ip", "netns", "exec", NS)`` for a network
    namespace of its own (the partition tests). The default is the demo's: 127.0.0.1, here."""

    host: str = "127.0.0.1"
    prefix: tuple[str, ...] = ()


def _server_default() -> str | None:
    return os.environ.get(DATABASE_SERVER_VARIABLE) or None


def _database_name(token: str, node_id: str) -> str:
    """``watchnet_demo_<token>_<node>``: lower case, [a-z0-9_] only, within PostgreSQL's 63 bytes."""
    node = re.sub(r"[^a-z0-9_]", "_", node_id.lower())
    return f"watchnet_demo_{token}_{node}"[:_IDENTIFIER_MAX]


def _on_server(server: str, database: str) -> str:
    """The URL of ``database`` on ``server`` (a server URL names no database of its own)."""
    url = make_url(server)
    if url.database:
        raise ConfigurationError(
            f"database server {url.render_as_string()!r} names a database; give the server only"
        )
    return url.set(database=database).render_as_string(hide_password=False)


def _administer(server: str, statements: list[str]) -> None:
    """Run CREATE/DROP DATABASE on the server's maintenance database, outside a transaction."""
    engine = create_engine(_on_server(server, "postgres"), isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            for statement in statements:
                conn.execute(text(statement))
    finally:
        engine.dispose()


def _drop_databases(server: str, names: list[str]) -> None:
    """Drop the network's databases (FORCE: a node killed mid-test may leave a connection behind)."""
    if names:
        _administer(server, [f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)' for name in names])
        names.clear()


def _spawn(argv: list[str], log: Path, placement: Placement = Placement()) -> subprocess.Popen[bytes]:
    out = os.fdopen(os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, PRIVATE_FILE), "ab")
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(  # noqa: S603 (our own interpreter and arguments)
        [*placement.prefix, sys.executable, "-m", "node.cli.main", *argv],
        stdout=out,
        stderr=subprocess.STDOUT,
        env=env,
    )


@dataclass
class LocalNode:
    """One member (or outsider) node: its directory, port, staff tokens and process."""

    node_id: str
    directory: Path
    port: int
    tokens: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None
    log_name: str = "serve.log"
    placement: Placement = Placement()
    tls: ssl.SSLContext | None = None
    """Speak HTTPS to ``port``, verified with this context (a node behind a TLS proxy)."""

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.placement.host}:{self.port}"

    @property
    def log_file(self) -> Path:
        return self.directory / self.log_name

    def worker(self, port: int | None = None) -> LocalNode:
        """Another ``watchnet serve`` of this node's directory (on PostgreSQL: a second worker), on
        a port and with a log file of its own, sharing the staff tokens."""
        port = port or free_port()
        return LocalNode(
            self.node_id,
            self.directory,
            port,
            dict(self.tokens),
            log_name=f"serve-{port}.log",
            placement=self.placement,
        )

    def signing_key(self) -> SigningKey:
        return load_signing_key(self.directory / "keys" / "signing.key")

    def encryption_key(self) -> EncryptionKey:
        return load_encryption_key(self.directory / "keys" / "encryption.key")

    def start(self) -> None:
        if self.process is not None and self.process.poll() is None:
            return
        self.process = _spawn(
            ["serve", "--node", str(self.directory), "--port", str(self.port)], self.log_file, self.placement
        )
        _wait_http(self.url, self.process, self.log_file)

    def stop(self) -> None:
        if self.process is not None:
            if self.process.poll() is None:
                self.process.send_signal(signal.SIGTERM)
                try:
                    self.process.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait(timeout=5)
            self.process = None

    def kill(self) -> None:
        """SIGKILL: no cleanup, as in a power cut."""
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=10)
            self.process = None

    def call(
        self,
        method: str,
        path: str,
        user: str | None = None,
        body: Any = None,
        raw: bytes | None = None,
        timeout: float = 60,
    ) -> tuple[int, Any]:
        """One HTTP request; returns (status, parsed JSON body)."""
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        request = urllib.request.Request(f"{self.url}{path}", data=data, method=method)  # noqa: S310
        request.add_header("Content-Type", "application/json")
        if user is not None:
            request.add_header("Authorization", f"Bearer {self.tokens[user]}")
        try:
            with urllib.request.urlopen(request, timeout=timeout, context=self.tls) as response:  # noqa: S310
                payload = response.read()
                status = response.status
        except urllib.error.HTTPError as e:
            payload, status = e.read(), e.code
        try:
            return status, json.loads(payload or b"null")
        except ValueError:
            return status, payload.decode("utf-8", "replace")


@dataclass
class LocalNetwork:
    """An organisation with three signing keys (threshold 2) and member nodes, under ``root``."""

    root: Path
    members: list[str]
    outsiders: list[str] = field(default_factory=list)
    sync_interval: str = "2s"
    manifest_poll: str = "2s"
    he_processes: int = 1
    """Every member's ``[federation] he_processes``: how many processes share a private query."""
    databases: dict[str, str] = field(default_factory=dict)
    """A database URL per node id (PostgreSQL, say); a node not named gets one on
    ``database_server``, or without one keeps SQLite in its directory."""
    database_server: str | None = field(default_factory=_server_default)
    """A PostgreSQL server URL without a database name (``postgresql+psycopg://user@host:port``):
    ``create()`` makes a fresh database there for every node not in ``databases``, and
    ``destroy()`` drops them. Defaults to ``WATCHNET_DEMO_DATABASE_SERVER``; ``None`` given
    explicitly keeps SQLite whatever the environment says (a test that needs the file)."""
    reserve_mb: int = 8
    """Each node's disk reserve (``[storage] reserve_mb``): small, as many nodes share one disk here."""
    endpoints: dict[str, str] = field(default_factory=dict)
    """A member's address in the manifest when peers reach it elsewhere than its own port (a TLS
    proxy in front of its workers); by default ``LocalNode.url``."""
    nodes: dict[str, LocalNode] = field(default_factory=dict)
    organisation_witness: bool = True
    """The organisation witnesses every member's log too (``policy.witness.organisation``)."""
    org_console: bool = False
    """Serve the organisation's staff console (``ORG_STAFF``, the network's password) at
    ``org_url/console``; off, ``gov serve`` runs with ``--no-console`` and keeps no database."""
    org_keys: list[SigningKey] = field(default_factory=list)
    referral_retry: str = "30s"
    """``gov serve --referral-retry``: the first wait before a complaint referral is sent again."""
    org_port: int = 0
    org_process: subprocess.Popen[bytes] | None = None
    password: str = field(default_factory=lambda: secrets.token_urlsafe(12))
    """Every demo account's password: random per network, printed in the demo's summary."""
    placements: dict[str, Placement] = field(default_factory=dict)
    """Per node id (and ``"org"`` for the organisation's server), where it runs; unnamed ones run
    here on 127.0.0.1."""
    manifest_path: Path = field(init=False)
    created_databases: list[str] = field(init=False, default_factory=list)
    """The databases ``create()`` made on ``database_server``, dropped by ``destroy()``."""
    _drop: weakref.finalize | None = field(init=False, default=None, repr=False)  # type: ignore[type-arg]

    def __post_init__(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.manifest_path = self.root / "org" / "manifest.json"
        if self.database_server is not None:
            # also at interpreter exit, should a caller never reach destroy(): the shared server
            # must not fill up with the databases of finished tests
            self._drop = weakref.finalize(self, _drop_databases, self.database_server, self.created_databases)

    def _create_databases(self, node_ids: list[str]) -> None:
        """A fresh database on ``database_server`` for each node that ``databases`` does not place.

        The schema is migrated once, in a template the node databases are copied from (a
        migration on the shared server costs over a second per database on a busy machine). The
        databases commit without waiting for the WAL flush (``synchronous_commit = off``): a
        node sees exactly what it sees in production, committed rows stay committed whatever
        happens to the node's processes, and only a crash of the server itself, which nothing
        here causes, could lose the last fraction of a second; in exchange a request does not
        wait for a disk flush the whole machine's tests share (measured: 26 ms instead of 69 ms
        per audited request on a loaded 2-core machine)."""
        if self.database_server is None:
            return
        token = secrets.token_hex(4)
        wanted = {n: _database_name(token, n) for n in node_ids if n not in self.databases}
        if not wanted:
            return
        if len(set(wanted.values())) != len(wanted):
            raise ConfigurationError(f"node ids collide as database names: {sorted(wanted)}")
        template = _database_name(token, "template")
        _administer(self.database_server, [f'CREATE DATABASE "{template}"'])
        self.created_databases.append(template)
        engine = make_engine(_on_server(self.database_server, template))
        try:
            upgrade(engine)
        finally:
            engine.dispose()
        statements = []
        for name in wanted.values():
            statements.append(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
            statements.append(f'ALTER DATABASE "{name}" SET synchronous_commit = off')
        self.created_databases.extend(wanted.values())
        _administer(self.database_server, [*statements, f'DROP DATABASE "{template}"'])
        self.created_databases.remove(template)
        for node_id, name in wanted.items():
            self.databases[node_id] = _on_server(self.database_server, name)

    @property
    def witness_key_path(self) -> Path:
        """The organisation's online witness key (``gov serve --witness-key``)."""
        return self.root / "org" / "witness.key"

    @property
    def org_url(self) -> str:
        return f"http://{self.placements.get('org', Placement()).host}:{self.org_port}"

    def node(self, node_id: str) -> LocalNode:
        return self.nodes[node_id]

    def create(self, progress: Callable[[str], None] = lambda _: None) -> None:
        """Organisation keys, node directories with their own keys, then manifest version 1."""
        org = self.root / "org"
        org.mkdir(parents=True, exist_ok=True)
        self.org_keys = [SigningKey.generate() for _ in range(3)]
        for i, key in enumerate(self.org_keys, 1):
            save_key(org / f"org{i}.key", key)
        if self.organisation_witness:
            save_key(self.witness_key_path, SigningKey.generate())
        self.org_port = free_port()
        self._create_databases([*self.members, *self.outsiders])
        for node_id in [*self.members, *self.outsiders]:
            directory = self.root / node_id
            port = free_port()
            placement = self.placements.get(node_id, Placement())
            progress(f"watchnet init {node_id} (port {port})")
            created = create_node(
                NodeConfig(
                    directory=directory,
                    node_id=node_id,
                    display_name=node_id,
                    host=placement.host,
                    port=port,
                    root_keyids=tuple(k.keyid for k in self.org_keys),
                    manifest_url=self.org_url,
                    database_url=self.databases.get(node_id),
                ),
                None,
                _now(),
            )
            config = created.config
            federation = Federation(
                sync_interval=parse_duration(self.sync_interval),
                manifest_poll=parse_duration(self.manifest_poll),
                manifest_grace=parse_duration("10s"),
                retry_max=parse_duration("4s"),
                he_processes=self.he_processes,
            )
            write_atomic(
                directory / "config.toml",
                replace(
                    config,
                    federation=federation,
                    storage=StorageSettings(self.reserve_mb),
                    notice=demo_notice(node_id, _now().date()),
                    alerts=AlertSettings(procedure=DEMO_PROCEDURE),
                )
                .to_toml()
                .encode(),
                mode=PRIVATE_FILE,
            )
            node = LocalNode(node_id, directory, port, placement=placement)
            engine = make_engine(config.effective_database_url)
            try:
                accounts = StaffAccounts(engine)
                for username, role in STAFF.items():
                    accounts.add(username, role, self.password, _now())
                    node.tokens[username] = accounts.issue_token(username, _now())
            finally:
                engine.dispose()
            self.nodes[node_id] = node
        self.publish(self.first_manifest())
        if self.org_console:
            from node.org.staff import OrgStaff, database_url

            staff = OrgStaff.open(database_url(org))
            try:
                for username, role in ORG_STAFF.items():
                    staff.accounts.add(username, role, self.password, _now())
            finally:
                staff.close()

    def first_manifest(self) -> Manifest:
        with resources.files("node.demo").joinpath("demo_group.toml").open("rb") as f:
            description = tomllib.load(f)
        description["joint_use"]["members"] = [self._member_entry(node_id) for node_id in self.members]
        if self.organisation_witness:
            description["policy"].setdefault("witness", {"required": 0})["organisation"] = {
                "key": load_signing_key(self.witness_key_path).public.to_str(),
                "endpoint": self.org_url,
            }
        return manifest_from_description(description, [k.public for k in self.org_keys], 2, _now())

    def _member_entry(self, node_id: str) -> dict[str, Any]:
        node = self.nodes[node_id]
        ja, en = CHAIN_NAMES.get(node_id, (node_id, node_id))
        return {
            "node_id": node_id,
            "name": {"ja": ja, "en": en},
            "signing_key": node.signing_key().public.to_str(),
            "encryption_key": node.encryption_key().public.to_str(),
            "endpoint": self.endpoints.get(node_id, node.url),
            "status": "active",
        }

    def publish(self, manifest: Manifest, signers: int = 2) -> SignedDocument[Manifest]:
        """Sign with ``signers`` of the three organisation keys and write it where ``gov serve`` reads."""
        document = SignedDocument(manifest)
        for key in self.org_keys[:signers]:
            document.sign(key)
        write_atomic(self.manifest_path, document.to_bytes() + b"\n")
        return document

    def current_manifest(self) -> Manifest:
        return SignedDocument.from_bytes(self.manifest_path.read_bytes(), Manifest).payload

    def update(self, change: Callable[[Manifest], Manifest]) -> SignedDocument[Manifest]:
        """The organisation's next version: ``change`` applied to the current one, signed by two keys."""
        return self.publish(change(next_version(self.current_manifest())))

    def start(
        self, progress: Callable[[str], None] = lambda _: None, only: Iterable[str] | None = None
    ) -> None:
        """Start the organisation and the nodes (``only`` those named, when given: the others may
        be started later with ``node(id).start()``, e.g. once a proxy in front of a member is up)."""
        self.start_org(progress)
        wanted = set(self.nodes) if only is None else set(only)
        for node in (n for n in self.nodes.values() if n.node_id in wanted):
            progress(f"watchnet serve {node.node_id} on {node.url}")
            node.start()

    def start_org(self, progress: Callable[[str], None] = lambda _: None) -> None:
        """Start the organisation's ``watchnet gov serve`` (again, after ``stop_org``)."""
        log = self.root / "org" / "gov-serve.log"
        progress(f"watchnet gov serve on {self.org_url}")
        placement = self.placements.get("org", Placement())
        self.org_process = _spawn(
            [
                "gov",
                "serve",
                "--manifest",
                str(self.manifest_path),
                "--host",
                placement.host,
                "--port",
                str(self.org_port),
                *(["--witness-key", str(self.witness_key_path)] if self.organisation_witness else []),
                *(["--member-poll", "30s"] if self.org_console else ["--no-console"]),
                *(["--referral-retry", self.referral_retry] if self.org_console else []),
            ],
            log,
            placement,
        )
        _wait_http(self.org_url, self.org_process, log)

    def stop(self) -> None:
        for node in self.nodes.values():
            with contextlib.suppress(Exception):
                node.stop()
        self.stop_org()

    def stop_org(self) -> None:
        """Stop the organisation's server (the members go on)."""
        if self.org_process is not None:
            self.org_process.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.org_process.wait(timeout=10)
            if self.org_process.poll() is None:
                self.org_process.kill()
            self.org_process = None

    def destroy(self) -> None:
        """The final teardown: stop every process, then drop the databases ``create()`` made on
        ``database_server`` (``stop()`` alone keeps them, so a test can start the network again)."""
        self.stop()
        if self._drop is not None:
            self._drop()

    @contextlib.contextmanager
    def running(self) -> Iterator[LocalNetwork]:
        """Create and start the network; on the way out, whatever happened, every process is
        stopped and the network's databases on ``database_server`` are dropped."""
        try:
            self.create()
            self.start()
            yield self
        finally:
            self.destroy()

    def wait_private_ready(self, node_ids: list[str], timeout: float = 120) -> dict[str, str]:
        """Wait until each node's private-mode gallery holds its current entries (``/v1/health``);
        returns each node's last state, so a caller can say which one was not ready."""
        states: dict[str, str] = {}

        def ready() -> bool:
            for node_id in node_ids:
                status, body = self.nodes[node_id].call("GET", "/v1/health", timeout=5)
                states[node_id] = (
                    body.get("private_gallery", {}).get("state", "?") if status == 200 else "down"
                )
            return all(state == "ready" for state in states.values())

        wait_for(ready, timeout, interval=0.2)
        return states

    def refresh_manifests(self) -> dict[str, int]:
        """Ask every running node to fetch the manifest now (instead of waiting for its poll)."""
        versions = {}
        for node in self.nodes.values():
            if node.process is None:
                continue
            status, body = node.call("POST", "/v1/manifest/refresh", "adm1")
            versions[node.node_id] = body.get("version", 0) if status == 200 else 0
        return versions


def wait_for(check: Callable[[], Any], timeout: float, interval: float = 0.1) -> Any:
    """Poll ``check`` until it returns something truthy; return it, or the last falsy value at timeout."""
    deadline = time.monotonic() + timeout
    result = check()
    while not result and time.monotonic() < deadline:
        time.sleep(interval)
        result = check()
    return result
