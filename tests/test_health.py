"""Liveness, readiness naming the failing part, and the Prometheus metrics an operator alerts on (#16).

In process (the real application on a real database): a node that works is ready; a disk below
the reserve, a duty that keeps failing, a manifest about to expire and a database that refuses
connections each turn readiness red and are named in ``failing``, while liveness stays 200.
``/metrics`` answers in Prometheus' text format, only to a token allowed ``metrics.read``, and
carries the duty ages, the manifest's remaining validity and the refusals by code.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from aiohttp.test_utils import TestClient, TestServer

from node.app.server import build_app
from node.config import HealthSettings
from node.context import NodeContext
from tests.nodeproc import NodeProcess

Scenario = Callable[[TestClient[Any, Any], NodeContext], Awaitable[None]]


def run(context: NodeContext, scenario: Scenario, **app_options: Any) -> None:
    async def main() -> None:
        app = build_app(context, federate=False, **app_options)
        async with TestClient(TestServer(app)) as client:
            await scenario(client, context)

    try:
        asyncio.run(main())
    finally:
        context.engine.dispose()


def load(node: NodeProcess, **health: Any) -> NodeContext:
    """The node's context with ``[health]`` settings of the test's choosing."""
    context = NodeContext.load(node.directory)
    context.config = replace(context.config, health=replace(HealthSettings(), **health))
    return context


async def ready_body(client: TestClient[Any, Any], want: bool, timeout: float = 20) -> tuple[int, Any]:
    """Poll readiness until it is ``want`` (the first integrity check runs at start)."""
    deadline = time.monotonic() + timeout
    while True:
        response = await client.get("/v1/health/ready")
        body = await response.json()
        if body["ready"] is want or time.monotonic() > deadline:
            return response.status, body
        await asyncio.sleep(0.1)


@pytest.fixture
def node(tmp_path: Path) -> NodeProcess:
    return NodeProcess.create(tmp_path)


def test_a_working_node_is_live_and_ready_part_by_part(node: NodeProcess) -> None:
    seen: dict[str, Any] = {}

    async def scenario(client: TestClient[Any, Any], _context: NodeContext) -> None:
        seen["live"] = (await client.get("/v1/health/live")).status
        seen["ready"] = await ready_body(client, True)

    run(load(node), scenario)
    assert seen["live"] == 200
    status, body = seen["ready"]
    assert status == 200 and body["ready"] and body["failing"] == [], body
    assert {"database", "disk", "duty:retention", "manifest", "integrity", "private"} <= set(body["checks"])
    assert body["checks"]["disk"]["free_mb"] > 0


def test_a_disk_below_the_reserve_is_named_and_liveness_stays(node: NodeProcess) -> None:
    seen: dict[str, Any] = {}

    async def scenario(client: TestClient[Any, Any], _context: NodeContext) -> None:
        seen["ready"] = await ready_body(client, False)
        seen["live"] = (await client.get("/v1/health/live")).status

    run(load(node, disk_free_min_mb=1 << 20), scenario)  # 1 TiB free wanted: never here
    status, body = seen["ready"]
    # nor is there room for the disk reserve above that minimum, so it could not be taken
    assert status == 503 and body["failing"] == ["disk", "disk_reserve"], body
    assert "release-reserve" in body["checks"]["disk"]["detail"]
    assert seen["live"] == 200


def test_a_manifest_close_to_expiry_is_named(node: NodeProcess) -> None:
    seen: dict[str, Any] = {}

    async def scenario(client: TestClient[Any, Any], _context: NodeContext) -> None:
        seen["ready"] = await ready_body(client, False)

    run(load(node, manifest_min_validity=timedelta(days=200)), scenario)  # it has 180
    status, body = seen["ready"]
    assert status == 503 and body["failing"] == ["manifest"], body
    assert "ask the organisation" in body["checks"]["manifest"]["detail"]


def test_a_duty_that_keeps_failing_turns_readiness_red_and_shows_in_metrics(node: NodeProcess) -> None:
    context = load(node, duty_stall_factor=2, duty_stall_grace=timedelta(seconds=1))
    context.config = replace(context.config, retention_sweep=timedelta(seconds=1))

    def broken(_now: datetime) -> list[str]:
        raise RuntimeError("the database went away")

    context.registry.expire_due = broken  # type: ignore[method-assign]
    seen: dict[str, Any] = {}

    async def scenario(client: TestClient[Any, Any], _context: NodeContext) -> None:
        seen["ready"] = await ready_body(client, False)
        metrics = await client.get("/metrics", headers={"Authorization": f"Bearer {node.tokens['adm1']}"})
        seen["metrics"] = (metrics.status, metrics.headers["Content-Type"], await metrics.text())

    run(context, scenario)
    status, body = seen["ready"]
    assert status == 503 and body["failing"] == ["duty:retention"], body
    retention = body["checks"]["duty:retention"]
    assert retention["errors"] >= 1 and "RuntimeError" in retention["detail"], retention
    code, content_type, text = seen["metrics"]
    assert code == 200 and content_type.startswith("text/plain"), (code, content_type)
    age = re.search(
        r'^watchnet_duty_last_success_age_seconds\{[^}]*duty="retention"[^}]*\} (\S+)$', text, re.M
    )
    assert age is not None and float(age.group(1)) >= 3, text
    assert re.search(r'^watchnet_duty_errors_total\{[^}]*duty="retention"', text, re.M), text


def test_metrics_need_a_token_allowed_to_read_them_and_carry_refusals_by_code(node: NodeProcess) -> None:
    seen: dict[str, Any] = {}

    async def scenario(client: TestClient[Any, Any], _context: NodeContext) -> None:
        seen["anonymous"] = (await client.get("/metrics")).status
        operator = {"Authorization": f"Bearer {node.tokens['op1']}"}
        seen["operator"] = (await client.get("/metrics", headers=operator)).status
        admin = {"Authorization": f"Bearer {node.tokens['adm1']}"}
        seen["text"] = await (await client.get("/metrics", headers=admin)).text()

    run(load(node), scenario)
    assert seen["anonymous"] == 401 and seen["operator"] == 403, seen
    text = seen["text"]
    left = re.search(r"^watchnet_manifest_expires_in_seconds\{[^}]*\} (\S+)$", text, re.M)
    assert left is not None and float(left.group(1)) > 86400, text
    assert re.search(r"^watchnet_leader(_ratio)?\{[^}]*\} 1\.0$", text, re.M), text
    refused = dict(
        re.findall(r'^watchnet_http_refusals_total\{[^}]*watchnet_error="(\w+)"[^}]*\} (\S+)$', text, re.M)
    )
    assert float(refused.get("forbidden", 0)) == 1 and len(refused) == 2, refused  # the two refusals above
    assert "Bearer" not in text and node.tokens["adm1"] not in text


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_a_database_that_refuses_connections_is_named(tmp_path: Path, database_url: str) -> None:
    node = NodeProcess.create(tmp_path, database_url)
    name = database_url.rsplit("/", 1)[1]
    admin = database_url.replace("postgresql+psycopg://", "postgresql://", 1).rsplit("/", 1)[0] + "/test"
    seen: dict[str, Any] = {}

    def cut(allow: bool) -> None:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS {str(allow).lower()}')
            if not allow:
                conn.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,)
                )

    async def scenario(client: TestClient[Any, Any], _context: NodeContext) -> None:
        seen["before"] = await ready_body(client, True, timeout=30)
        await asyncio.to_thread(cut, False)
        try:
            seen["down"] = await ready_body(client, False)
            seen["live"] = (await client.get("/v1/health/live")).status
        finally:
            await asyncio.to_thread(cut, True)
        seen["after"] = await ready_body(client, True, timeout=30)

    run(load(node), scenario)
    assert seen["before"][0] == 200, seen["before"]
    status, body = seen["down"]
    assert status == 503 and "database" in body["failing"], body
    assert seen["live"] == 200
    assert seen["after"][0] == 200, seen["after"]
