"""The organisation's publishing server and a node that gets its manifest from it."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from governance.description import next_version
from governance.manifest import Manifest
from node.demo.network import free_port
from node.org.server import build_gov_app
from protocol.signed import SignedDocument
from tests.factories import KEYS, make_manifest, signed_manifest
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


def test_fork_reports_are_kept_and_junk_is_refused(tmp_path: Path) -> None:
    import asyncio

    reports = tmp_path / "reports"

    async def scenario() -> None:
        async with TestClient(TestServer(build_gov_app(tmp_path / "m.json", reports))) as client:
            ok = await client.post("/v1/reports", json={"type": "fork-report", "peer": "chain-a"})
            assert ok.status == 201
            bad = await client.post("/v1/reports", data=b"{not json")
            assert bad.status == 400
            other = await client.post("/v1/reports", json={"type": "something-else"})
            assert other.status == 400
            big = await client.post("/v1/reports", data=b"x" * (300 << 10))
            assert big.status == 413

    asyncio.run(scenario())
    saved = list(reports.glob("fork-*.json"))
    assert len(saved) == 1 and json.loads(saved[0].read_text())["peer"] == "chain-a"


@pytest.fixture
def gov_serve(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    path = tmp_path / "org" / "manifest.json"
    path.parent.mkdir()
    path.write_bytes(signed_manifest(make_manifest(now=NOW), KEYS[0], KEYS[1]).to_bytes())
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "node.cli.main", "gov", "serve", "--manifest", str(path), "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
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
