"""A node killed with SIGKILL in the middle of registrations loses nothing committed and leaves no half entry."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from tests.factories import embedding
from tests.nodeproc import NodeProcess, cli


def test_sigkill_during_registrations(tmp_path: Path) -> None:
    node = NodeProcess.create(tmp_path)
    node.start()
    approved: list[str] = []
    stop = threading.Event()

    def hammer() -> None:
        seed = 1000
        while not stop.is_set():
            seed += 1
            try:
                status, state = node.call(
                    "POST",
                    "/v1/entries",
                    "reg1",
                    {
                        "embedding": embedding(seed).to_str(),
                        "category": "theft",
                        "evidence": {"kind": "incident-record", "reference": f"INC-{seed}"},
                        "incident_date": "2026-11-02",
                        "site": "umeda-02",
                    },
                )
                if status != 201:
                    continue
                status, state = node.call("POST", f"/v1/entries/{state['entry_id']}/approve", "off1")
                if status == 200:
                    approved.append(state["entry_id"])
            except OSError:
                return

    worker = threading.Thread(target=hammer)
    worker.start()
    deadline = time.monotonic() + 30
    while len(approved) < 15 and time.monotonic() < deadline:
        time.sleep(0.05)
    node.kill()
    stop.set()
    worker.join(timeout=30)
    assert len(approved) >= 15

    db = sqlite3.connect(node.directory / "watchnet.db")
    leaves = db.execute("select idx, entry_id, kind, event_id from log_leaf order by idx").fetchall()
    assert [row[0] for row in leaves] == list(range(len(leaves)))
    active = {r[0] for r in db.execute("select entry_id from entry where status = 'active'")}
    registered = {r[1] for r in leaves if r[2] == "registered"}
    assert set(approved) <= active
    assert active == registered
    for _, entry_id, _, event_id in leaves:
        payload = db.execute(
            "select payload_ct from event_payload where event_id = ?", (event_id,)
        ).fetchone()
        assert payload is not None and payload[0] is not None
        row = db.execute(
            "select embedding_ct, signed_entry from entry where entry_id = ?", (entry_id,)
        ).fetchone()
        assert row is not None and None not in row
    half = db.execute(
        "select count(*) from entry where status = 'active' and signed_entry is null"
    ).fetchone()
    assert half == (0,)
    db.close()

    node.start()
    try:
        out = json.loads(cli("audit", "verify", "--url", node.url, "--token", node.tokens["aud1"], "--json"))
        assert out["ok"], out
        status, result = node.call("POST", "/v1/match", "op1", {"embeddings": [embedding(1001).to_str()]})
        assert status == 200
        if approved and approved[0] in active:
            assert any(m["entry_id"] == approved[0] for m in result["matches"])
    finally:
        node.stop()


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_service_on_postgresql(tmp_path: Path, database_url: str) -> None:
    node = NodeProcess.create(tmp_path, database_url=database_url)
    node.start()
    try:
        status, state = node.call(
            "POST",
            "/v1/entries",
            "reg1",
            {
                "embedding": embedding(5).to_str(),
                "category": "shoplifting",
                "evidence": {"kind": "police-report", "reference": "OSK-5"},
                "incident_date": "2026-11-02",
                "site": "namba-01",
            },
        )
        assert status == 201
        assert node.call("POST", f"/v1/entries/{state['entry_id']}/approve", "off1")[0] == 200
        status, result = node.call("POST", "/v1/match", "op1", {"embeddings": [embedding(5).to_str()]})
        assert [m["entry_id"] for m in result["matches"]] == [state["entry_id"]]
        out = json.loads(cli("audit", "verify", "--url", node.url, "--token", node.tokens["aud1"], "--json"))
        assert out["ok"], out
    finally:
        node.stop()
