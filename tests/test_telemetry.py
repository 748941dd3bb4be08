"""Telemetry and limits in-process: spans and metrics exist, and carry no biometric or secret content."""

from __future__ import annotations

import asyncio
import json
from datetime import date
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient, TestServer
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from node.app.server import build_app
from node.context import NodeContext
from node.telemetry import safe_attributes, setup_telemetry
from tests.factories import embedding
from tests.nodeproc import NodeProcess


def run_session(
    node_dir: Path, tokens: dict[str, str], requests_per_minute: int | None = None
) -> tuple[Any, Any, list[int]]:
    spans = InMemorySpanExporter()
    metrics = InMemoryMetricReader()
    context = NodeContext.load(node_dir)
    if requests_per_minute is not None:
        from dataclasses import replace

        context.config = replace(
            context.config, limits=replace(context.config.limits, requests_per_minute=requests_per_minute)
        )
    telemetry = setup_telemetry(node_id="chain-a", span_exporter=spans, metric_reader=metrics)
    statuses: list[int] = []
    emb = embedding(77).to_str()

    async def scenario() -> None:
        app = build_app(context, telemetry=telemetry, sweep=False)
        async with TestClient(TestServer(app)) as client:
            reg = {"Authorization": f"Bearer {tokens['reg1']}"}
            body = {
                "embedding": emb,
                "category": "shoplifting",
                "evidence": {"kind": "police-report", "reference": "T-77"},
                "incident_date": date(2026, 11, 1).isoformat(),
                "site": "shibuya-01",
            }
            r = await client.post("/v1/entries", json=body, headers=reg)
            statuses.append(r.status)
            state = await r.json()
            r = await client.post(
                f"/v1/entries/{state['entry_id']}/approve",
                headers={"Authorization": f"Bearer {tokens['off1']}"},
            )
            statuses.append(r.status)
            for _ in range(5):
                r = await client.post(
                    "/v1/match",
                    json={"embeddings": [emb]},
                    headers={"Authorization": f"Bearer {tokens['op1']}"},
                )
                statuses.append(r.status)

    asyncio.run(scenario())
    telemetry.tracer_provider.force_flush()
    return spans.get_finished_spans(), metrics.get_metrics_data(), statuses


def test_spans_and_metrics_carry_no_embedding(tmp_path: Path) -> None:
    node = NodeProcess.create(tmp_path)
    spans, metrics, statuses = run_session(node.directory, node.tokens)
    assert statuses == [201, 200, 200, 200, 200, 200, 200]
    names = {s.name for s in spans}
    assert "POST /v1/match" in names and "POST /v1/entries" in names
    dumped = json.dumps([dict(s.attributes or {}) for s in spans]) + metrics.to_json()
    assert embedding(77).to_str()[:40] not in dumped
    assert all(token not in dumped for token in node.tokens.values())
    metric_names = {m.name for rm in metrics.resource_metrics for sm in rm.scope_metrics for m in sm.metrics}
    assert {"watchnet.http.requests", "watchnet.entries.registered", "watchnet.match.hits"} <= metric_names


def test_rate_limit_per_account(tmp_path: Path) -> None:
    node = NodeProcess.create(tmp_path)
    _, _, statuses = run_session(node.directory, node.tokens, requests_per_minute=3)
    assert statuses[:3] == [201, 200, 200]
    assert statuses[3:] == [200, 200, 429, 429]


def test_safe_attributes_drops_sensitive_names() -> None:
    kept = safe_attributes(
        {"http.route": "/v1/match", "query.embedding": "x", "face_image": "y", "api_token": "z"}
    )
    assert kept == {"http.route": "/v1/match"}
