"""TLS at the node, and real haproxy terminating TLS in front of two workers of one node (#15).

(a) A node serving TLS itself with a throwaway CA (``deploy/make-test-ca.sh``): verified HTTPS
works, plain HTTP to the TLS port gets no HTTP answer, TLS below 1.2 is refused, and a missing
key, a key that is not the certificate's or a missing CA file stops ``watchnet serve`` at start
with exit 2 and one line saying which file, without a traceback.

(b) haproxy (Debian's package) running ``deploy/haproxy.cfg`` itself, its server lines replaced by
two workers of one node on one PostgreSQL database whose ``[server] trusted_proxies`` is
``["127.0.0.1"]``: requests over TLS reach both workers; the console's cookie is ``Secure``
through haproxy (and not for an untrusted peer that merely claims TLS); a flood of anonymous
refusals from one client address is limited for that client alone, and the audit log names
the real client. Clients bind their own loopback source addresses (127.0.0.x), which haproxy
passes on in ``X-Forwarded-For``.

(c) The forwarded-header rules from a table, the middleware in-process (its request survives the
access middleware's clone), and a property test that no header text makes the parser fail other
than with ``MalformedForwarded``.
"""

from __future__ import annotations

import http.client
import ipaddress
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, replace
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import given, settings
from hypothesis import strategies as st
from multidict import CIMultiDict, CIMultiDictProxy

from node.app.proxies import ForwardedClient, MalformedForwarded, TrustedProxies, forwarded_client
from node.config import NodeConfig, Server
from node.console.pages import COOKIE
from node.demo.network import LocalNode, _spawn, free_port
from node.files import PRIVATE_FILE, write_atomic
from protocol.errors import MalformedError
from tests.nodeproc import NodeProcess

REPO = Path(__file__).resolve().parents[1]
MAKE_CA = REPO / "deploy" / "make-test-ca.sh"
HAPROXY_TEMPLATE = REPO / "deploy" / "haproxy.cfg"
FLOOD_LIMIT = 20
"""``[connections] anonymous_refusals_per_minute`` of the cluster's node."""


@pytest.fixture(scope="module")
def ca_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("ca") / "tls"
    subprocess.run(["bash", str(MAKE_CA), str(directory)], check=True, capture_output=True, timeout=60)
    assert (directory / "server.key").stat().st_mode & 0o777 == 0o600
    return directory


def _verified(ca: Path) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(ca / "ca.crt"))


def _write_config(node: LocalNode, **changes: Any) -> None:
    config = replace(NodeConfig.load(node.directory), **changes)
    write_atomic(node.directory / "config.toml", config.to_toml().encode(), mode=PRIVATE_FILE)


def _wait_ready(
    url: str, process: subprocess.Popen[bytes], log: Path, context: ssl.SSLContext | None
) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"{url} exited with {process.returncode}: {log.read_text()[-1500:]}")
        try:
            with urllib.request.urlopen(f"{url}/v1/health", timeout=2, context=context) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            time.sleep(0.2)
    raise AssertionError(f"{url} did not answer within 60 s: {log.read_text()[-1500:]}")


@dataclass
class Worker(LocalNode):
    """One ``watchnet serve`` of a node directory on a port of its own with its own log; HTTPS
    (verified against ``ca``) when ``ca`` is given."""

    ca: Path | None = None

    @property
    def url(self) -> str:
        return f"{'https' if self.ca else 'http'}://127.0.0.1:{self.port}"

    @property
    def log_file(self) -> Path:
        return self.directory / f"serve-{self.port}.log"

    def start(self) -> None:
        argv = ["serve", "--node", str(self.directory), "--port", str(self.port)]
        self.process = _spawn(argv, self.log_file)
        _wait_ready(self.url, self.process, self.log_file, _verified(self.ca) if self.ca else None)


def _get(
    connection: http.client.HTTPConnection, path: str, headers: dict[str, str] | None = None
) -> tuple[int, http.client.HTTPMessage, bytes]:
    connection.request("GET", path, headers=headers or {})
    response = connection.getresponse()
    return response.status, response.headers, response.read()


def _cookie(headers: http.client.HTTPMessage) -> Any:
    jar: SimpleCookie = SimpleCookie()
    for value in headers.get_all("Set-Cookie") or []:
        jar.load(value)
    assert COOKIE in jar, headers
    return jar[COOKIE]


# ----- (a) TLS at the node ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def tls_node(tmp_path_factory: pytest.TempPathFactory, ca_dir: Path) -> Iterator[Worker]:
    base = NodeProcess.create(tmp_path_factory.mktemp("tls-node"))
    _write_config(
        base, server=Server(tls_cert=str(ca_dir / "server.crt"), tls_key=str(ca_dir / "server.key"))
    )
    node = Worker(base.node_id, base.directory, base.port, dict(base.tokens), ca=ca_dir)
    node.start()
    try:
        yield node
    finally:
        node.stop()


def test_a_node_serves_tls_verified_against_its_ca_and_nothing_else(tls_node: Worker, ca_dir: Path) -> None:
    """HTTPS verified against the test CA is answered (TLS 1.3 by default, 1.2 if the client
    stops there) and the console's cookie is Secure; the same certificate fails verification
    without the CA; plain HTTP and TLS 1.1 get no answer from the TLS port."""
    context = _verified(ca_dir)
    connection = http.client.HTTPSConnection("127.0.0.1", tls_node.port, timeout=10, context=context)
    status, _, body = _get(connection, "/v1/health")
    assert status == 200 and json.loads(body)["status"] == "ok"
    assert f"on https://127.0.0.1:{tls_node.port} " in tls_node.log_file.read_text()
    assert connection.sock.version() == "TLSv1.3"
    status, headers, _ = _get(connection, "/console/login")
    assert status == 200 and _cookie(headers)["secure"]
    connection.close()

    tls12 = _verified(ca_dir)
    tls12.maximum_version = ssl.TLSVersion.TLSv1_2
    with urllib.request.urlopen(f"{tls_node.url}/v1/health", timeout=10, context=tls12) as response:
        assert response.status == 200

    with pytest.raises(urllib.error.URLError) as unverified:
        urllib.request.urlopen(f"{tls_node.url}/v1/health", timeout=10)
    assert isinstance(unverified.value.reason, ssl.SSLCertVerificationError)

    with socket.create_connection(("127.0.0.1", tls_node.port), timeout=10) as plain:
        plain.sendall(b"GET /v1/health HTTP/1.1\r\nHost: node\r\n\r\n")
        try:
            answer = plain.recv(4096)
        except ConnectionResetError:
            answer = b""
    assert not answer.startswith(b"HTTP/"), answer[:80]

    old = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    old.load_verify_locations(str(ca_dir / "ca.crt"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # that is the point
        old.minimum_version = ssl.TLSVersion.TLSv1
        old.maximum_version = ssl.TLSVersion.TLSv1_1
    old.set_ciphers("DEFAULT:@SECLEVEL=0")
    with (
        socket.create_connection(("127.0.0.1", tls_node.port), timeout=10) as raw,
        pytest.raises(ssl.SSLError) as refused,
    ):
        old.wrap_socket(raw, server_hostname="127.0.0.1")
    assert "NO_PROTOCOLS" not in str(refused.value), "the client offered TLS 1.1; the node hung up"


def test_the_peer_client_verifies_a_tls_peer_against_ca_file(
    tls_node: Worker, ca_dir: Path, tmp_path: Path
) -> None:
    """The TLS setting the federation's HTTP session is built with (``Server.client_ssl``):
    ``[server] ca_file`` (absolute, or relative to the node directory) verifies the test CA's
    node; without it the system's authorities refuse the same node."""
    import asyncio

    import aiohttp

    async def status(ssl_setting: ssl.SSLContext | bool) -> int:
        async with (
            aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ssl_setting)) as session,
            session.get(f"{tls_node.url}/v1/health") as response,
        ):
            return response.status

    assert asyncio.run(status(Server(ca_file=str(ca_dir / "ca.crt")).client_ssl(tmp_path))) == 200
    assert asyncio.run(status(Server(ca_file="ca.crt").client_ssl(ca_dir))) == 200
    assert Server().client_ssl(tmp_path) is True
    with pytest.raises(aiohttp.ClientConnectorCertificateError):
        asyncio.run(status(True))


@pytest.fixture(scope="module")
def refused_node(tmp_path_factory: pytest.TempPathFactory) -> NodeProcess:
    return NodeProcess.create(tmp_path_factory.mktemp("refused-node"))


@pytest.mark.parametrize("case", ["missing key", "key of another certificate", "missing CA file"])
def test_a_bad_tls_file_stops_serve_at_start_with_exit_2_and_a_clear_line(
    refused_node: NodeProcess, ca_dir: Path, case: str
) -> None:
    missing = refused_node.directory / "tls" / "absent.pem"
    server, expected = {
        "missing key": (
            Server(tls_cert=str(ca_dir / "server.crt"), tls_key="tls/absent.pem"),
            f"server.tls_key: {missing} not found",
        ),
        "key of another certificate": (
            Server(tls_cert=str(ca_dir / "server.crt"), tls_key=str(ca_dir / "ca.key")),
            f"server.tls_key: {ca_dir / 'ca.key'} is not the key of the certificate {ca_dir / 'server.crt'}",
        ),
        "missing CA file": (Server(ca_file="tls/absent.pem"), f"server.ca_file: {missing} not found"),
    }[case]
    _write_config(refused_node, server=server)
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "node.cli.main", "serve", "--node", str(refused_node.directory)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 2, output
    assert "Traceback" not in output
    assert f"watchnet serve: refusing to start: {expected}" in result.stderr, result.stderr
    assert time.monotonic() - started < 60


# ----- (b) haproxy in front of two workers -------------------------------------------------------


def _haproxy() -> str:
    found = shutil.which("haproxy") or next(
        (p for p in ("/usr/sbin/haproxy", "/usr/local/sbin/haproxy") if os.access(p, os.X_OK)), None
    )
    if found is None:
        if os.environ.get("CI") == "true":
            pytest.fail(
                "haproxy is not installed; .ci/run installs Debian's package and CI must run this test"
            )
        pytest.skip("haproxy is not installed (apt-get install haproxy); CI installs it and runs this test")
    return found


SERVER_LINE = re.compile(r"    server worker\d+ 127\.0\.0\.1:\d+")
ROOT_ONLY = ("chroot", "user", "group")


def haproxy_config(ports: list[int]) -> str:
    """deploy/haproxy.cfg as shipped, with its ``server`` lines replaced by one per worker port
    and the global lines that need root (``chroot``, ``user``, ``group``) dropped."""
    lines = HAPROXY_TEMPLATE.read_text().splitlines()
    servers = [i for i, line in enumerate(lines) if SERVER_LINE.fullmatch(line)]
    assert servers, f"{HAPROXY_TEMPLATE} has no line like '    server worker8471 127.0.0.1:8471'"
    dropped = [i for i, line in enumerate(lines) if line.split()[:1] and line.split()[0] in ROOT_ONLY]
    assert len(dropped) == len(ROOT_ONLY), "expected chroot, user and group once each in global"
    out: list[str] = []
    for i, line in enumerate(lines):
        if i == servers[0]:
            out += [f"    server worker{port} 127.0.0.1:{port}" for port in ports]
        if i not in servers and i not in dropped:
            out.append(line)
    return "\n".join(out) + "\n"


def _stats(sock: Path) -> dict[str, dict[str, str]]:
    """``show stat`` on haproxy's stats socket: the backend's server rows by name."""
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(5)
        s.connect(str(sock))
        s.sendall(b"show stat\n")
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    lines = data.decode().splitlines()
    header = lines[0].lstrip("# ").split(",")
    rows = [dict(zip(header, line.split(","), strict=False)) for line in lines[1:] if line]
    return {r["svname"]: r for r in rows if r["pxname"] == "watchnet_workers" and r["svname"] != "BACKEND"}


def _audit_actors(database_url: str, want: set[str]) -> set[str]:
    """The actors of the node's audit records that name a client address (waiting up to 15 s for
    ``want`` among them: reads and refusals are written by group commit)."""
    from sqlalchemy import create_engine, text

    engine = create_engine(database_url)
    query = text("SELECT DISTINCT actor FROM audit WHERE actor LIKE 'anonymous:%' OR actor LIKE 'public:%'")
    try:
        deadline = time.monotonic() + 15
        while True:
            with engine.connect() as conn:
                actors = {row[0] for row in conn.execute(query)}
            if want <= actors or time.monotonic() > deadline:
                return actors
            time.sleep(0.3)
    finally:
        engine.dispose()


@dataclass
class Cluster:
    workers: list[Worker]
    port: int
    socket: Path
    ca: Path
    database_url: str

    def connect(self, source: str) -> http.client.HTTPSConnection:
        return http.client.HTTPSConnection(
            "127.0.0.1", self.port, timeout=15, context=_verified(self.ca), source_address=(source, 0)
        )


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, postgres_url: str, ca_dir: Path) -> Iterator[Cluster]:
    import psycopg

    binary = _haproxy()
    admin = postgres_url.replace("postgresql+psycopg://", "postgresql://", 1)
    name = f"{admin.rsplit('/', 1)[1]}_haproxy"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = f"{postgres_url.rsplit('/', 1)[0]}/{name}"
    root = tmp_path_factory.mktemp("haproxy")
    first = NodeProcess.create(root, database_url=url)
    config = NodeConfig.load(first.directory)
    _write_config(
        first,
        server=Server(trusted_proxies=("127.0.0.1",)),
        connections=replace(config.connections, anonymous_refusals_per_minute=FLOOD_LIMIT),
    )
    ports = [first.port]
    while len(ports) < 3:  # two workers and haproxy
        port = free_port()
        if port not in ports:
            ports.append(port)
    workers = [Worker(first.node_id, first.directory, port, dict(first.tokens)) for port in ports[:2]]
    stats = root / "haproxy.sock"
    (root / "haproxy.cfg").write_text(haproxy_config(ports[:2]))
    env = {
        **os.environ,
        "WATCHNET_BIND": f"127.0.0.1:{ports[2]}",
        "WATCHNET_TLS_PEM": str(ca_dir / "server.pem"),
        "WATCHNET_HAPROXY_SOCKET": str(stats),
    }
    proxy: subprocess.Popen[bytes] | None = None
    log = root / "haproxy.log"
    try:
        for worker in workers:
            worker.start()
        with log.open("wb") as out:
            proxy = subprocess.Popen(
                [binary, "-db", "-f", str(root / "haproxy.cfg")],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
            )
        deadline = time.monotonic() + 30
        while True:
            assert proxy.poll() is None, f"haproxy exited {proxy.returncode}: {log.read_text()[-2000:]}"
            try:
                rows = _stats(stats)
                if len(rows) == 2 and all(
                    r["status"] == "UP" and r["check_status"] == "L7OK" for r in rows.values()
                ):
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, f"haproxy's workers not UP in 30 s: {log.read_text()[-2000:]}"
            time.sleep(0.3)
        yield Cluster(workers, ports[2], stats, ca_dir, url)
    finally:
        if proxy is not None:
            proxy.send_signal(signal.SIGTERM)
            proxy.wait(timeout=15)
        for worker in workers:
            worker.stop()
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_requests_through_haproxy_over_tls_are_answered_by_both_workers(cluster: Cluster) -> None:
    """20 verified HTTPS requests on one connection to haproxy; its counters show both workers
    answering, round robin."""
    before = _stats(cluster.socket)
    connection = cluster.connect("127.0.0.1")
    for _ in range(20):
        status, _, body = _get(connection, "/v1/node")
        assert status == 200 and json.loads(body)["node_id"] == "chain-a"
    connection.close()
    after = _stats(cluster.socket)
    served = {name: int(after[name]["hrsp_2xx"]) - int(before[name]["hrsp_2xx"]) for name in after}
    assert sorted(served) == sorted(f"worker{w.port}" for w in cluster.workers)
    assert sum(served.values()) == 20 and min(served.values()) >= 8, served


def test_the_console_cookie_is_secure_through_haproxy_and_not_for_an_untrusted_peer(cluster: Cluster) -> None:
    """Through haproxy (TLS at haproxy, plain HTTP to the worker) the login page's session cookie
    is Secure on both workers, and both audit the visit under the browser's address. A client
    connecting to a worker directly from an address that is not a trusted proxy, claiming TLS and
    another address in both header kinds, gets a cookie without Secure and is audited as itself."""
    connection = cluster.connect("127.0.0.4")
    for _ in range(2):  # round robin: one request per worker
        status, headers, _ = _get(connection, "/console/login")
        assert status == 200
        assert _cookie(headers)["secure"], headers.get_all("Set-Cookie")
    connection.close()

    direct = http.client.HTTPConnection(
        "127.0.0.1", cluster.workers[0].port, timeout=10, source_address=("127.0.0.5", 0)
    )
    claims = {
        "X-Forwarded-Proto": "https",
        "X-Forwarded-For": "203.0.113.7",
        "Forwarded": "for=203.0.113.7;proto=https",
    }
    status, headers, _ = _get(direct, "/console/login", claims)
    direct.close()
    assert status == 200
    assert not _cookie(headers)["secure"]
    actors = _audit_actors(cluster.database_url, {"public:127.0.0.4", "public:127.0.0.5"})
    assert {"public:127.0.0.4", "public:127.0.0.5"} <= actors, actors
    assert "public:203.0.113.7" not in actors and "public:127.0.0.1" not in actors, actors


def test_a_flood_through_haproxy_is_limited_for_its_own_client_only(cluster: Cluster) -> None:
    """120 anonymous requests from 127.0.0.2 through haproxy, each claiming another address in
    ``Forwarded`` and ``X-Forwarded-For`` (haproxy drops the claims): refused 401 until the
    client's allowance per worker is spent, then 429. A client at 127.0.0.3 behind the same
    haproxy is still answered 401, not 429, and the audit log names 127.0.0.2, never haproxy's
    127.0.0.1 or a claimed address."""
    flooder = cluster.connect("127.0.0.2")
    statuses = []
    for i in range(120):
        claim = f"198.51.100.{i % 250}"
        status, _, _ = _get(flooder, "/v1/entries", {"Forwarded": f"for={claim}", "X-Forwarded-For": claim})
        statuses.append(status)
    flooder.close()
    assert set(statuses) == {401, 429}, statuses
    assert statuses.count(401) <= FLOOD_LIMIT * len(cluster.workers), statuses
    assert statuses[-10:] == [429] * 10

    other = cluster.connect("127.0.0.3")
    answers = [_get(other, "/v1/entries")[0] for _ in range(2)]  # once per worker
    other.close()
    assert answers == [401, 401]

    actors = _audit_actors(cluster.database_url, {"anonymous:127.0.0.2", "anonymous:127.0.0.3"})
    assert {"anonymous:127.0.0.2", "anonymous:127.0.0.3"} <= actors, actors
    assert not any(a.startswith("anonymous:198.51.100.") or a == "anonymous:127.0.0.1" for a in actors), (
        actors
    )


# ----- (c) the forwarded-header rules --------------------------------------------------------------

NETWORKS = (
    ipaddress.ip_network("127.0.0.1/32"),
    ipaddress.ip_network("10.0.0.0/8"),
    ipaddress.ip_network("2001:db8:1::/48"),
)
XFF, XFP, FWD = "X-Forwarded-For", "X-Forwarded-Proto", "Forwarded"

CASES: list[tuple[str, str | None, list[tuple[str, str]], tuple[str, str | None] | None]] = [
    ("no forwarded header", "127.0.0.1", [], None),
    ("XFF from a trusted proxy", "127.0.0.1", [(XFF, "203.0.113.7")], ("203.0.113.7", None)),
    ("XFF and XFP", "127.0.0.1", [(XFF, "203.0.113.7"), (XFP, "https")], ("203.0.113.7", "https")),
    ("untrusted peer: ignored", "198.51.100.1", [(XFF, "203.0.113.7"), (XFP, "https")], None),
    ("untrusted peer: malformed ignored too", "198.51.100.1", [(XFF, "nonsense"), (FWD, "for=[")], None),
    ("no peer address", None, [(XFF, "203.0.113.7")], None),
    ("peer inside a trusted network", "10.9.9.9", [(XFF, "203.0.113.7")], ("203.0.113.7", None)),
    ("IPv4-mapped peer", "::ffff:127.0.0.1", [(XFF, "203.0.113.7")], ("203.0.113.7", None)),
    (
        "chain: right-most untrusted wins, the client's own claim is ignored",
        "127.0.0.1",
        [(XFF, "192.0.2.66, 203.0.113.7, 10.1.2.3")],
        ("203.0.113.7", None),
    ),
    (
        "two header lines are one list",
        "127.0.0.1",
        [(XFF, "203.0.113.7"), (XFF, "10.1.2.3")],
        ("203.0.113.7", None),
    ),
    ("every hop trusted: the left-most", "127.0.0.1", [(XFF, "10.0.0.2, 10.0.0.3")], ("10.0.0.2", None)),
    ("a port is dropped", "127.0.0.1", [(XFF, "203.0.113.7:51234")], ("203.0.113.7", None)),
    ("IPv6, normalised", "127.0.0.1", [(XFF, "2001:DB8::7")], ("2001:db8::7", None)),
    ("IPv6 in brackets with a port", "127.0.0.1", [(XFF, "[2001:db8::7]:443")], ("2001:db8::7", None)),
    ("IPv4-mapped client", "127.0.0.1", [(XFF, "::ffff:203.0.113.7")], ("203.0.113.7", None)),
    (
        "IPv6 trusted network",
        "2001:db8:1::5",
        [(XFF, "2001:db8:2::1, 2001:db8:1::9")],
        ("2001:db8:2::1", None),
    ),
    (
        "XFP aligned with XFF from the right",
        "127.0.0.1",
        [(XFF, "192.0.2.66, 203.0.113.7, 10.0.0.2"), (XFP, "http, https, http")],
        ("203.0.113.7", "https"),
    ),
    (
        "one XFP from the outermost proxy",
        "127.0.0.1",
        [(XFF, "203.0.113.7, 10.0.0.2"), (XFP, "HTTPS")],
        ("203.0.113.7", "https"),
    ),
    ("Forwarded", "127.0.0.1", [(FWD, "for=203.0.113.7;proto=https")], ("203.0.113.7", "https")),
    (
        "Forwarded: quoted IPv6 with a port, by=",
        "127.0.0.1",
        [(FWD, 'for="[2001:db8::7]:4711";proto=https;by=10.0.0.1')],
        ("2001:db8::7", "https"),
    ),
    (
        "Forwarded: names and proto are case-insensitive",
        "127.0.0.1",
        [(FWD, 'For="203.0.113.7:80";PROTO=HTTPS')],
        ("203.0.113.7", "https"),
    ),
    (
        "Forwarded: a chain, the hop's own proto",
        "127.0.0.1",
        [(FWD, "for=192.0.2.66, for=203.0.113.7;proto=http, for=10.0.0.2;proto=https")],
        ("203.0.113.7", "http"),
    ),
    (
        "Forwarded: over two header lines, space around separators",
        "127.0.0.1",
        [(FWD, "for=192.0.2.66"), (FWD, " for=203.0.113.7 ; proto=https ,for=10.0.0.2")],
        ("203.0.113.7", "https"),
    ),
    (
        "Forwarded: comma and semicolon inside a quoted value",
        "127.0.0.1",
        [(FWD, 'for="203.0.113.7";host="a,b;c\\"d"')],
        ("203.0.113.7", None),
    ),
    ("Forwarded: unknown", "127.0.0.1", [(FWD, "for=unknown;proto=https")], ("unknown", "https")),
    ("Forwarded: obfuscated", "127.0.0.1", [(FWD, 'for="_hidden", for=10.0.0.2')], ("_hidden", None)),
    ("Forwarded: no for", "127.0.0.1", [(FWD, "proto=https")], ("unknown", "https")),
    (
        "Forwarded wins over XFF",
        "127.0.0.1",
        [(FWD, "for=203.0.113.7"), (XFF, "192.0.2.66")],
        ("203.0.113.7", None),
    ),
]

MALFORMED: list[tuple[str, list[tuple[str, str]]]] = [
    ("empty XFF", [(XFF, "")]),
    ("empty XFF item", [(XFF, "203.0.113.7,,10.0.0.1")]),
    ("XFF not an address", [(XFF, "not-an-address")]),
    ("XFF unknown", [(XFF, "unknown")]),
    ("XFF bad port", [(XFF, "203.0.113.7:http")]),
    ("XFF IPv6 bracket unclosed", [(XFF, "[2001:db8::7:443")]),
    ("XFF IPv4 in brackets", [(XFF, "[203.0.113.7]")]),
    ("XFP not http(s)", [(XFF, "203.0.113.7"), (XFP, "gopher")]),
    ("Forwarded empty", [(FWD, "")]),
    ("Forwarded only separators", [(FWD, " , ; ,")]),
    ("Forwarded IPv6 unquoted", [(FWD, "for=[2001:db8::7]")]),
    ("Forwarded port unquoted", [(FWD, "for=203.0.113.7:80")]),
    ("Forwarded parameter twice", [(FWD, "for=203.0.113.7;for=192.0.2.66")]),
    ("Forwarded unclosed quote", [(FWD, 'for="203.0.113.7')]),
    ("Forwarded missing separator", [(FWD, "for=203.0.113.7 proto=https")]),
    ("Forwarded bare name", [(FWD, "for")]),
    ("Forwarded not an address", [(FWD, "for=localhost")]),
    ("Forwarded port too long", [(FWD, 'for="203.0.113.7:123456"')]),
    ("Forwarded IPv6 without brackets but a port", [(FWD, 'for="2001:db8::7]:80"')]),
    ("Forwarded proto not http(s)", [(FWD, "for=203.0.113.7;proto=ftp")]),
]


def _headers(pairs: list[tuple[str, str]]) -> CIMultiDictProxy[str]:
    return CIMultiDictProxy(CIMultiDict(pairs))


@pytest.mark.parametrize(("case", "peer", "headers", "expected"), CASES, ids=[c[0] for c in CASES])
def test_forwarded_client_from_the_table(
    case: str, peer: str | None, headers: list[tuple[str, str]], expected: tuple[str, str | None] | None
) -> None:
    result = forwarded_client(peer, _headers(headers), NETWORKS)
    assert result == (None if expected is None else ForwardedClient(*expected)), case


@pytest.mark.parametrize(("case", "headers"), MALFORMED, ids=[c[0] for c in MALFORMED])
def test_a_malformed_forwarded_header_from_a_trusted_proxy_is_refused_by_the_parser(
    case: str, headers: list[tuple[str, str]]
) -> None:
    with pytest.raises(MalformedForwarded):
        forwarded_client("127.0.0.1", _headers(headers), NETWORKS)


def test_the_middleware_hands_the_real_client_on_through_later_clones() -> None:
    """Behind ``TrustedProxies`` a middleware that clones the request (as the access middleware
    does for its body limit) still sees the proxy's client and scheme; a malformed header is
    ignored and counted; with no trusted proxies the headers change nothing."""

    @web.middleware
    async def reclone(request: web.Request, handler: Any) -> web.StreamResponse:
        return await handler(request.clone(client_max_size=4096))

    async def show(request: web.Request) -> web.Response:
        return web.json_response(
            {"remote": request.remote, "secure": request.secure, "max": request.client_max_size}
        )

    async def run(proxies: TrustedProxies, headers: dict[str, str]) -> dict[str, Any]:
        app = web.Application(middlewares=[proxies, reclone])
        app.router.add_get("/", show)
        async with TestClient(TestServer(app, host="127.0.0.1")) as client:
            response = await client.get("/", headers=headers)
            result: dict[str, Any] = await response.json()
            return result

    import asyncio

    trusted = TrustedProxies([ipaddress.ip_network("127.0.0.1/32")])
    forwarded = {"X-Forwarded-For": "203.0.113.7", "X-Forwarded-Proto": "https"}
    assert asyncio.run(run(trusted, forwarded)) == {"remote": "203.0.113.7", "secure": True, "max": 4096}
    assert asyncio.run(run(trusted, {"Forwarded": "for=[2001:db8::7]"})) == {
        "remote": "127.0.0.1",
        "secure": False,
        "max": 4096,
    }
    assert trusted.malformed == 1
    for proxies in (TrustedProxies([]), TrustedProxies([ipaddress.ip_network("10.0.0.0/8")])):
        assert asyncio.run(run(proxies, forwarded)) == {"remote": "127.0.0.1", "secure": False, "max": 4096}


HEADER_TEXT = st.one_of(
    st.text(max_size=200),
    st.text(alphabet='forpt=by;,"[]:0123456789abcdef._ \t\\-', max_size=80),
)


@settings(max_examples=400, deadline=None)
@given(name=st.sampled_from([FWD, XFF, XFP]), value=HEADER_TEXT, more=st.lists(HEADER_TEXT, max_size=2))
def test_no_header_text_breaks_the_parser(name: str, value: str, more: list[str]) -> None:
    pairs = [(name, value), *((name, m) for m in more)]
    if name == XFP:
        pairs.append((XFF, "203.0.113.7"))
    try:
        result = forwarded_client("127.0.0.1", _headers(pairs), NETWORKS)
    except MalformedForwarded:
        return
    assert result is not None
    assert result.scheme in (None, "http", "https")
    if result.remote != "unknown" and not result.remote.startswith("_"):
        ipaddress.ip_address(result.remote)  # an address, or one of RFC 7239's names


@pytest.mark.parametrize(
    ("server", "message"),
    [
        ({"tls_cert": "a.pem"}, "server.tls_cert is set but server.tls_key is not"),
        ({"tls_key": "a.key"}, "server.tls_key is set but server.tls_cert is not"),
        ({"trusted_proxies": ["10.0.0.1/8"]}, "10.0.0.1/8 has host bits set"),
        ({"trusted_proxies": ["proxy.example"]}, "is not an address or a network"),
        ({"trusted_proxies": "127.0.0.1"}, "expected array"),
        ({"tls": True}, "unknown fields ['tls']"),
    ],
)
def test_server_settings_are_checked_when_read(server: dict[str, Any], message: str) -> None:
    with pytest.raises(MalformedError, match=re.escape(message)):
        Server.from_dict(server)


def test_server_settings_round_trip_through_config_toml(tmp_path: Path) -> None:
    server = Server(
        tls_cert="tls/node.crt",
        tls_key="/etc/watchnet/node.key",
        ca_file="tls/ca.crt",
        trusted_proxies=("127.0.0.1", "10.0.0.0/8", "::1"),
    )
    config = NodeConfig(directory=tmp_path, node_id="chain-a", server=server)
    assert NodeConfig.from_toml(config.to_toml(), tmp_path).server == server
    assert "[server]" not in NodeConfig(directory=tmp_path, node_id="chain-a").to_toml()
