"""The organisation's publishing server and a node that gets its manifest from it."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

import node.org.server as gov_server
from governance.description import next_version, set_member_status
from governance.manifest import Manifest, MemberStatus
from node.demo.network import free_port
from node.jsonlog import json_handler
from node.org.server import (
    ForkUnproven,
    Rate,
    RateLimited,
    SourceLimiter,
    build_gov_app,
    source_of,
    verify_fork_report,
)
from protocol.keys import SigningKey
from protocol.signed import SignedDocument
from protocol.treehead import TreeHead
from tests.factories import KEYS, NODE_A_SIGNING, NODE_B_SIGNING, make_manifest, signed_manifest
from tests.nodeproc import cli

NOW = datetime.now(UTC).replace(microsecond=0)


async def _get(client: TestClient[Any, Any], path: str) -> tuple[int, Any]:
    response = await client.get(path)
    body = await response.read()
    try:
        return response.status, json.loads(body)
    except ValueError:
        return response.status, body.decode()


@pytest.mark.timeout(60)
def test_only_a_fully_signed_version_is_published(tmp_path: Path) -> None:
    import asyncio

    path = tmp_path / "manifest.json"
    v1 = make_manifest(now=NOW)

    async def scenario() -> None:
        async with TestClient(TestServer(build_gov_app(path, tmp_path / "reports"))) as client:
            assert (await _get(client, "/v1/manifest"))[0] == 503
            path.write_bytes(signed_manifest(v1, KEYS[0], KEYS[1]).to_bytes())
            status, body = await _get(client, "/v1/manifest")
            assert status == 200 and body["signed"]["version"] == 1
            draft = SignedDocument(next_version(v1))
            draft.sign(KEYS[2])
            time.sleep(0.01)
            path.write_bytes(draft.to_bytes())
            assert (await _get(client, "/v1/manifest"))[1]["signed"]["version"] == 1
            draft.sign(KEYS[0])
            time.sleep(0.01)
            path.write_bytes(draft.to_bytes())
            assert (await _get(client, "/v1/manifest"))[1]["signed"]["version"] == 2
            status, text = await _get(client, "/notice?lang=en")
            assert status == 200 and "Retail Security Data Protection Organisation" in text
            assert "一般社団法人" in (await _get(client, "/notice"))[1]
            assert (await _get(client, "/notice?lang=fr"))[0] == 400

    asyncio.run(scenario())


def _head(size: int, root: int, key: SigningKey = NODE_A_SIGNING, log_id: str = "chain-a") -> dict[str, Any]:
    """A signed tree head of ``log_id`` for ``size`` events with root ``bytes([root]) * 32``."""
    document = SignedDocument(
        TreeHead(log_id=log_id, tree_size=size, root_hash=bytes([root]) * 32, timestamp=NOW)
    )
    document.sign(key)
    return document.to_dict()


def _fork(verified: dict[str, Any], conflicting: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {
        "type": "fork-report",
        "peer": "chain-a",
        "reporter": "chain-b",
        "verified_head": verified,
        "conflicting_head": conflicting,
        **fields,
    }


def _unsigned(head: dict[str, Any]) -> dict[str, Any]:
    return {**head, "signatures": []}


def _published(tmp_path: Path, manifest: Manifest | None = None) -> Path:
    path = tmp_path / "org" / "manifest.json"
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(signed_manifest(manifest or make_manifest(now=NOW), KEYS[0], KEYS[1]).to_bytes())
    return path


def _stored(directory: Path) -> list[Path]:
    return sorted(directory.iterdir()) if directory.exists() else []


async def _oversized_by_header(client: TestClient[Any, Any], path: str, length: int) -> bytes:
    """Announce ``length`` bytes and send none: only a server that refuses by Content-Length answers."""
    reader, writer = await asyncio.open_connection(client.host, client.port)
    writer.write(
        f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Content-Length: {length}\r\n\r\n".encode()
    )
    await writer.drain()
    try:
        return await asyncio.wait_for(reader.read(4096), 5)
    finally:
        writer.close()


def test_a_signed_fork_is_kept_once_and_anything_that_proves_less_is_refused(tmp_path: Path) -> None:
    reports = tmp_path / "reports"
    manifest_path = _published(tmp_path)
    fork = _fork(_head(3, 1), _head(3, 2))
    stranger = SigningKey(b"\x55" * 32)
    refused: list[tuple[str, Any, int, str]] = [
        ("not json", b"{not json", 400, "malformed"),
        ("another type", {"type": "something-else"}, 400, "malformed"),
        ("no heads (today's junk)", {"type": "fork-report", "peer": "chain-a"}, 400, "malformed"),
        ("unsigned", _fork(_unsigned(_head(3, 1)), _unsigned(_head(3, 2))), 401, "threshold_not_met"),
        ("one head unsigned", _fork(_head(3, 1), _unsigned(_head(3, 2))), 401, "threshold_not_met"),
        (
            "signed by a non-member",
            _fork(_head(3, 1, stranger), _head(3, 2, stranger)),
            401,
            "threshold_not_met",
        ),
        (
            "signed by another member",
            _fork(_head(3, 1, NODE_B_SIGNING), _head(3, 2, NODE_B_SIGNING)),
            401,
            "threshold_not_met",
        ),
        (
            "accuses a non-member",
            _fork(_head(3, 1, log_id="chain-z"), _head(3, 2, log_id="chain-z"), peer="chain-z"),
            401,
            "not_a_member",
        ),
        (
            "heads of another log",
            _fork(_head(3, 1, NODE_B_SIGNING, "chain-b"), _head(3, 2, NODE_B_SIGNING, "chain-b")),
            400,
            "malformed",
        ),
        ("same root", _fork(_head(3, 1), _head(3, 1)), 400, "fork_unproven"),
        ("different sizes", _fork(_head(3, 1), _head(4, 2)), 400, "fork_unproven"),
        ("reporter not a member", _fork(_head(3, 1), _head(3, 2), reporter="nobody"), 400, "malformed"),
        ("unknown field", _fork(_head(3, 1), _head(3, 2), padding="x" * 1000), 400, "malformed"),
        (
            "peer forging a log line",
            _fork(_head(3, 1), _head(3, 2), peer="chain-a\nCRITICAL x"),
            400,
            "malformed",
        ),
    ]

    async def scenario() -> None:
        async with TestClient(TestServer(build_gov_app(manifest_path, reports))) as client:
            for name, body, status, code in refused:
                kwargs = {"data": body} if isinstance(body, bytes) else {"json": body}
                answer = await client.post("/v1/reports", **kwargs)
                assert (answer.status, (await answer.json())["error"]) == (status, code), name
                assert _stored(reports) == [], name
            big = await client.post("/v1/reports", data=b"x" * (300 << 10))
            assert big.status == 413
            raw = await _oversized_by_header(client, "/v1/reports", 10**9)
            assert raw.startswith(b"HTTP/1.1 413") and b'"oversized"' in raw
            assert _stored(reports) == []
            ok = await client.post("/v1/reports", json=fork)
            assert ok.status == 201
            digest = (await ok.json())["received"]
            again = await client.post("/v1/reports", json=fork)
            swapped = await client.post(
                "/v1/reports", json=_fork(fork["conflicting_head"], fork["verified_head"])
            )
            for answer in (again, swapped):
                assert answer.status == 200 and await answer.json() == {"received": digest, "duplicate": True}

    asyncio.run(scenario())
    saved = _stored(reports)
    assert len(saved) == 1 and saved[0].name.startswith("fork-chain-a-")
    kept = json.loads(saved[0].read_text())
    assert (kept["peer"], kept["reporter"], kept["tree_size"]) == ("chain-a", "chain-b", 3)
    assert kept["verified_head"] == fork["verified_head"]
    assert kept["conflicting_head"] == fork["conflicting_head"]

    removed = set_member_status(make_manifest(now=NOW), "chain-a", MemberStatus.REMOVED)
    manifest_path = _published(tmp_path, removed)

    async def after_removal() -> None:
        async with TestClient(TestServer(build_gov_app(manifest_path, tmp_path / "later"))) as client:
            answer = await client.post("/v1/reports", json=fork)
            assert (answer.status, (await answer.json())["error"]) == (401, "not_a_member")

    asyncio.run(after_removal())
    assert _stored(tmp_path / "later") == []


def test_fork_reports_about_one_member_are_capped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gov_server, "MAX_FORK_REPORTS_PER_PEER", 2)
    reports = tmp_path / "reports"

    async def scenario() -> None:
        async with TestClient(TestServer(build_gov_app(_published(tmp_path), reports))) as client:
            statuses = [
                (await client.post("/v1/reports", json=_fork(_head(3, 1), _head(3, root)))).status
                for root in (2, 3, 4)
            ]
            assert statuses == [201, 201, 503]

    asyncio.run(scenario())
    assert len(_stored(reports)) == 2


def test_verify_fork_report_needs_only_the_manifest() -> None:
    manifest = make_manifest(now=NOW)
    evidence = verify_fork_report(_fork(_head(5, 7), _head(5, 8)), manifest)
    assert (evidence.peer, evidence.reporter, evidence.tree_size) == ("chain-a", "chain-b", 5)
    anonymous = {k: v for k, v in _fork(_head(5, 7), _head(5, 8)).items() if k != "reporter"}
    assert verify_fork_report(anonymous, manifest).digest != evidence.digest
    with pytest.raises(ForkUnproven, match="sizes 5 and 6"):
        verify_fork_report(_fork(_head(5, 7), _head(6, 8)), manifest)
    suspended = set_member_status(manifest, "chain-a", MemberStatus.SUSPENDED)
    assert verify_fork_report(_fork(_head(5, 7), _head(5, 8)), suspended).peer == "chain-a"


def test_complaints_and_reports_are_rate_limited_per_address_and_the_register_is_capped(
    tmp_path: Path,
) -> None:
    register_dir = tmp_path / "complaints"
    complaint = {"category": "other", "summary": "y" * 1990}

    async def scenario() -> None:
        app = build_gov_app(_published(tmp_path), tmp_path / "reports", complaints=register_dir)
        async with TestClient(TestServer(app)) as client:
            statuses, sizes = [], []
            for _ in range(11):
                answer = await client.post("/v1/complaints", json=complaint)
                statuses.append(answer.status)
                sizes.append(sum(f.stat().st_size for f in _stored(register_dir)))
                if answer.status == 429:
                    body = await answer.json()
                    assert body["error"] == "rate_limited" and "5" in body["message"]
                    assert 1 <= int(answer.headers["Retry-After"]) <= 600
            assert statuses == [201] * 5 + [429] * 6
            assert sizes[4:] == [sizes[4]] * 7, "the directory stops growing"
            junk = [await client.post("/v1/reports", json={"type": "fork-report"}) for _ in range(61)]
            assert [r.status for r in junk] == [400] * 60 + [429]
            assert _stored(tmp_path / "reports") == []

    asyncio.run(scenario())
    assert len(_stored(register_dir)) == 5

    async def capped() -> None:
        app = build_gov_app(
            _published(tmp_path),
            tmp_path / "reports",
            complaints=tmp_path / "capped",
            complaint_rate=Rate(100, 600),
            max_open_complaints=3,
        )
        async with TestClient(TestServer(app)) as client:
            statuses = [(await client.post("/v1/complaints", json=complaint)).status for _ in range(5)]
            assert statuses == [201, 201, 201, 503, 503]
            full = await client.post("/v1/complaints", json=complaint)
            assert (await full.json())["error"] == "register_full"
            big = await client.post("/v1/complaints", json={**complaint, "contact": "z" * (20 << 10)})
            assert big.status == 413
            raw = await _oversized_by_header(client, "/v1/complaints", 17 << 10)
            assert raw.startswith(b"HTTP/1.1 413")

    asyncio.run(capped())
    assert len(_stored(tmp_path / "capped")) == 3
    listed = json.loads(cli("gov", "complaints", "list", "--dir", str(tmp_path / "capped"), "--json"))
    cli(
        "gov",
        "complaints",
        "close",
        listed[0]["id"],
        "--dir",
        str(tmp_path / "capped"),
        "--outcome",
        "referred",
        "--note",
        "done",
    )

    async def after_closing() -> None:
        app = build_gov_app(
            _published(tmp_path), tmp_path / "reports", complaints=tmp_path / "capped", max_open_complaints=3
        )
        async with TestClient(TestServer(app)) as client:
            assert (await client.post("/v1/complaints", json=complaint)).status == 201
            assert (await client.post("/v1/complaints", json=complaint)).status == 503

    asyncio.run(after_closing())


def test_the_table_of_sources_stays_bounded_and_windows_end() -> None:
    now = [0.0]
    limiter = SourceLimiter(Rate(2, 60), max_sources=100, clock=lambda: now[0])
    for i in range(10_000):
        limiter.hit(f"10.0.{i // 256}.{i % 256}", "complaints")
    assert len(limiter) == 100
    limiter.hit("192.0.2.1", "complaints")
    limiter.hit("192.0.2.1", "complaints")
    with pytest.raises(RateLimited) as caught:
        limiter.hit("192.0.2.1", "complaints")
    assert caught.value.retry_after == 60
    now[0] = 61.0
    limiter.hit("192.0.2.1", "complaints")
    assert len(limiter) == 1
    assert source_of("2001:db8:1:2:3:4:5:6") == source_of("2001:db8:1:2:ffff::1") == "2001:db8:1:2::/64"
    assert source_of("::ffff:192.0.2.7") == "192.0.2.7"


def test_a_log_record_is_one_json_line_whatever_it_carries() -> None:
    stream = io.StringIO()
    logger = logging.getLogger("watchnet.test-jsonlog")
    logger.addHandler(json_handler(stream))
    logger.propagate = False
    try:
        hostile = "chain-a\n2026-01-01 CRITICAL watchnet.gov: forged\u2028\x85\ud800"
        logger.warning("fork report about %s", hostile, extra={"peer": hostile, "n": 3})
        try:
            raise ValueError(hostile)
        except ValueError:
            logger.exception("failed on %s", hostile)
    finally:
        logger.handlers.clear()
        logger.propagate = True
    text = stream.getvalue()
    assert text.isascii() and len(text.splitlines()) == 2
    first, second = (json.loads(line) for line in text.splitlines())
    assert first["message"] == f"fork report about {hostile}" and first["peer"] == hostile
    assert (first["level"], first["logger"], first["n"]) == ("WARNING", "watchnet.test-jsonlog", 3)
    assert first["time"].endswith("Z")
    assert second["level"] == "ERROR" and hostile in second["exc"] and "ValueError" in second["exc"]


def test_the_node_logs_json_lines(monkeypatch: pytest.MonkeyPatch) -> None:
    from node.cli.node import _log_to_stderr

    stream = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stream)
    root = logging.getLogger()
    before, level = list(root.handlers), root.level
    try:
        _log_to_stderr()
        logging.getLogger("watchnet.federation").warning("sync with %s failed", "chain-b\nCRITICAL forged")
        logging.getLogger("aiohttp.server").error("Error handling request\nCRITICAL forged")
    finally:
        for handler in set(root.handlers) - set(before):
            root.removeHandler(handler)
        root.setLevel(level)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2 and all(json.loads(line)["message"].count("\n") == 1 for line in lines)


@pytest.fixture
def gov_serve(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    path = tmp_path / "org" / "manifest.json"
    path.parent.mkdir()
    path.write_bytes(signed_manifest(make_manifest(now=NOW), KEYS[0], KEYS[1]).to_bytes())
    port = free_port()
    log = open(tmp_path / "org" / "gov-serve.log", "wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "node.cli.main", "gov", "serve", "--manifest", str(path), "--port", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(f"{url}/v1/health", timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)
        yield url, path
    finally:
        process.terminate()
        process.wait(timeout=10)
        log.close()


def test_a_node_initialised_without_a_manifest_fetches_it_from_the_organisation(
    tmp_path: Path, gov_serve: tuple[str, Path]
) -> None:
    url, org_manifest = gov_serve
    node = tmp_path / "node"
    roots = [a for k in KEYS for a in ("--root-keyid", k.keyid)]
    created = json.loads(
        cli("init", str(node), "--node-id", "chain-c", "--manifest-url", url, *roots, "--json")
    )
    assert "no manifest yet" in created["standing"]
    assert not (node / "manifest.json").exists()
    fetched = json.loads(cli("manifest", "fetch", "--node", str(node), "--json"))
    assert (fetched["version"], fetched["outcome"]) == (1, "accepted")
    assert (node / "rules.toml").exists()
    shown = json.loads(cli("manifest", "show", "--node", str(node), "--json"))
    assert shown["version"] == 1 and [m["node_id"] for m in shown["members"]] == ["chain-a", "chain-b"]
    assert json.loads(cli("manifest", "fetch", "--node", str(node), "--json"))["outcome"] == "already"
    current = SignedDocument.from_bytes(org_manifest.read_bytes(), Manifest).payload
    org_manifest.write_bytes(signed_manifest(next_version(current), KEYS[1], KEYS[2]).to_bytes())
    assert json.loads(cli("manifest", "fetch", "--node", str(node), "--json"))["version"] == 2
    old = tmp_path / "v1.json"
    old.write_bytes(signed_manifest(current, KEYS[0], KEYS[1]).to_bytes())
    from node.cli.main import main

    assert main(["manifest", "install", str(old), "--node", str(node)]) == 1


def _post(url: str, body: Any) -> int:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as e:
        return e.code


def test_gov_serve_logs_json_lines_that_no_field_can_forge(gov_serve: tuple[str, Path]) -> None:
    url, path = gov_serve
    forged = "\n2026-01-01 00:00:00 CRITICAL watchnet.gov: the organisation's key was stolen"
    assert _post(f"{url}/v1/reports", _fork(_head(3, 1), _head(3, 2), peer="chain-a" + forged)) == 400
    assert _post(f"{url}/v1/reports", _fork(_head(3, 1), _head(3, 2))) == 201
    assert (
        _post(
            f"{url}/v1/complaints",
            {"category": "other", "summary": "x" + forged, "about_member": "b" + forged},
        )
        == 201
    )
    log = path.parent / "gov-serve.log"

    def records() -> list[dict[str, Any]]:
        return [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines()]

    for _ in range(50):
        if len(records()) >= 5:
            break
        time.sleep(0.1)
    found = records()
    assert not any(line.startswith("2026-01-01") for line in log.read_text().splitlines())
    assert all({"time", "level", "logger", "message"} <= set(r) for r in found)
    assert found[0]["message"].startswith("publishing") and found[0]["logger"] == "watchnet.gov"
    refused, fork, complaint = (
        next(r for r in found if r["message"].startswith(prefix))
        for prefix in ("report refused", "fork report", "complaint cmp-")
    )
    assert refused["error"] == "malformed" and "CRITICAL" in refused["detail"]
    assert (fork["level"], fork["peer"], fork["reporter"]) == ("WARNING", "chain-a", "chain-b")
    assert complaint["about_member"] == ("b" + forged)[:63]


def test_the_organisation_takes_complaints_from_the_public_and_its_staff(tmp_path: Path) -> None:
    import asyncio

    register_dir = tmp_path / "complaints"

    async def scenario() -> None:
        app = build_gov_app(tmp_path / "m.json", tmp_path / "reports", complaints=register_dir)
        async with TestClient(TestServer(app)) as client:
            filed = await client.post(
                "/v1/complaints",
                json={
                    "category": "misidentification",
                    "summary": "Stopped by mistake at B-Store.",
                    "about_member": "chain-b",
                },
            )
            assert filed.status == 201 and (await filed.json())["reference"].startswith("cmp-")
            for bad in (
                {"category": "gossip", "summary": "x"},
                {"category": "other", "summary": ""},
                {"category": "other", "summary": "x", "extra": 1},
                [1],
            ):
                assert (await client.post("/v1/complaints", json=bad)).status == 400

    asyncio.run(scenario())
    listed = json.loads(cli("gov", "complaints", "list", "--dir", str(register_dir), "--json"))
    assert [c["about_member"] for c in listed] == ["chain-b"] and listed[0]["channel"] == "public"
    taken = json.loads(
        cli(
            "gov",
            "complaints",
            "add",
            "--dir",
            str(register_dir),
            "--category",
            "notice",
            "--summary",
            "No sign at the door",
            "--json",
        )
    )
    closed = json.loads(
        cli(
            "gov",
            "complaints",
            "close",
            taken["id"],
            "--dir",
            str(register_dir),
            "--outcome",
            "referred",
            "--note",
            "Sent to chain-a",
            "--json",
        )
    )
    assert (closed["status"], closed["outcome"]) == ("closed", "referred")
    assert [
        c["id"]
        for c in json.loads(
            cli("gov", "complaints", "list", "--dir", str(register_dir), "--status", "open", "--json")
        )
    ] == [listed[0]["id"]]
    from node.cli.main import main

    assert (
        main(
            [
                "gov",
                "complaints",
                "close",
                taken["id"],
                "--dir",
                str(register_dir),
                "--outcome",
                "resolved",
                "--note",
                "again",
            ]
        )
        == 1
    )
