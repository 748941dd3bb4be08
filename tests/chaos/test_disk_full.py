"""A full disk on an SQLite node (#16): deletions still stop matching at once and land when space returns.

chain-a's node directory (its SQLite database, keys, disk reserve) is a small tmpfs of its own;
chain-b is on the ordinary disk. A filler file takes every free byte of the tmpfs, then:

- with the disk reserve held, chain-a's officer deletes an entry: the write fails for the full
  disk, the node releases the reserve and the deletion lands at once (200) without the filler
  being touched; chain-b's receipt arrives;
- with the reserve gone and the disk full again, the next deletion answers 202 ``deletion_pending``
  and the person no longer matches at once; readiness is 503 naming ``disk``, ``deletions`` and
  ``disk_reserve``; once the filler is removed the deletion lands within seconds, chain-b's
  receipt arrives exactly once, the reserve is taken back and readiness is 200 again;
- a deletion held when the node is restarted on the full disk is still held (and not matching)
  after the restart, and lands once space returns.

It needs ``mount -t tmpfs`` (root): without it the module is skipped, except under CI=true, where
that is a failure.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import jsonschema_rs
import pytest

from node.config import HealthSettings, NodeConfig, StorageSettings
from node.demo.network import LocalNetwork, LocalNode, wait_for
from node.http.openapi import openapi_document
from node.storage.reserve import RESERVE_FILE
from tests.test_federation import register, unit

MEMBERS = ["chain-a", "chain-b"]
TMPFS_MB = 24
RESERVE_MB = 4
MIN_FREE_MB = 2
LANDS_WITHIN = 5.0
"""Seconds from free space to the held deletion written (the retry backs off to 2 s)."""


def documented(path: str, status: str, body: Any) -> None:
    """``body`` is what node/http/openapi.json says ``GET``/``POST path`` answers with ``status``."""
    document = json.loads(openapi_document())
    operation = next(iter(document["paths"][path].values()))
    schema = operation["responses"][status]["content"]["application/json"]["schema"]
    jsonschema_rs.validator_for({**schema, "components": document["components"]}).validate(body)


def mount_tmpfs(directory: Path) -> None:
    directory.mkdir(mode=0o700)
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={TMPFS_MB}m,mode=0700", "tmpfs", str(directory)],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        reason = f"cannot mount a tmpfs here ({result.stderr.strip() or result.returncode}); needs root"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)


def unmount(directory: Path) -> None:
    if subprocess.run(["umount", str(directory)], check=False).returncode != 0:
        subprocess.run(["umount", "-l", str(directory)], check=False)


def fill(directory: Path) -> int:
    """Take every free byte of ``directory``'s filesystem into (or onto) its filler file."""
    fd = os.open(directory / "filler", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    written, chunk = 0, 1 << 20
    try:
        while chunk >= 512:
            try:
                written += os.write(fd, b"\0" * chunk)
            except OSError:
                chunk //= 2
    finally:
        os.close(fd)
    assert os.statvfs(directory).f_bavail == 0
    return written


def confirmed_by(node: LocalNode, entry_id: str) -> list[list[str]]:
    """For each ``deleted`` event of ``entry_id`` in the owner's log, the members who confirmed it."""
    status, body = node.call("GET", "/v1/propagation", "off1")
    assert status == 200, body
    return [
        sorted(c["member"] for c in e["confirmed"])
        for e in body["events"]
        if e["entry_id"] == entry_id and e["kind"] == "deleted"
    ]


def matched(node: LocalNode, seed: int) -> list[str]:
    status, body = node.call("POST", "/v1/match", "op1", {"embeddings": [unit(seed).to_str()]})
    assert status == 200, body
    return [m["entry_id"] for m in body["matches"]]


def ready(node: LocalNode) -> tuple[int, dict[str, Any]]:
    status, body = node.call("GET", "/v1/health/ready", timeout=10)
    return status, body


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalNetwork]:
    root = tmp_path_factory.mktemp("diskfull")
    disk = root / "chain-a"
    mount_tmpfs(disk)
    try:
        # SQLite whatever WATCHNET_DEMO_DATABASE_SERVER says: the disk that fills is the one
        # holding chain-a's database file
        network = LocalNetwork(
            root, MEMBERS, sync_interval="1s", reserve_mb=RESERVE_MB, database_server=None
        )
        network.create()
        a = network.node("chain-a")
        a.log_name = str(root / "chain-a-serve.log")  # the node's log outside the full disk
        config = NodeConfig.load(a.directory)
        small = replace(
            config,
            health=replace(HealthSettings(), disk_free_min_mb=MIN_FREE_MB),
            storage=StorageSettings(RESERVE_MB),
        )
        (a.directory / "config.toml").write_text(small.to_toml(), encoding="utf-8")
        try:
            network.start()
            yield network
        finally:
            network.destroy()
    finally:
        with contextlib.suppress(FileNotFoundError):
            (disk / "filler").unlink()
        unmount(disk)


def follows(reader: LocalNode, owner: str, size: int) -> bool:
    status, body = reader.call("GET", "/v1/peers", "off1")
    return status == 200 and any(p["node_id"] == owner and p["log_size"] >= size for p in body["peers"])


def test_with_the_reserve_held_a_deletion_on_a_full_disk_lands_at_once(net: LocalNetwork) -> None:
    a, b = net.node("chain-a"), net.node("chain-b")
    assert wait_for(lambda: ready(a)[0] == 200, 30), ready(a)
    assert (a.directory / RESERVE_FILE).stat().st_size == RESERVE_MB << 20
    entry_id = register(a, unit(31))
    assert matched(a, 31) == [entry_id]
    assert wait_for(lambda: follows(b, "chain-a", 1), 20), "chain-b follows chain-a's log"
    filled = fill(a.directory)
    started = time.monotonic()
    status, body = a.call("POST", f"/v1/entries/{entry_id}/delete", "off2", {"reason": "error"})
    answered = time.monotonic() - started
    assert status == 200 and body["status"] == "deleted", body
    assert not (a.directory / RESERVE_FILE).exists(), "the reserve was released for it"
    assert (a.directory / "filler").stat().st_size == filled, "the filler was not touched"
    assert matched(a, 31) == []
    assert wait_for(lambda: confirmed_by(a, entry_id) == [["chain-b"]], 20, interval=0.1), confirmed_by(a, entry_id)
    receipt = time.monotonic() - started
    status, body = ready(a)
    assert status == 503 and "disk_reserve" in body["failing"], body
    assert body["checks"]["disk_reserve"]["released_by_node"] is True
    print(
        f"\nfull disk, reserve held: deletion answered in {answered:.2f} s (reserve released), "
        f"chain-b's receipt after {receipt:.2f} s; failing: {body['failing']}"
    )


def test_with_the_reserve_gone_a_deletion_is_pending_stops_matching_and_lands_when_space_returns(
    net: LocalNetwork,
) -> None:
    a, b = net.node("chain-a"), net.node("chain-b")
    entry_id = register(a, unit(32))
    assert matched(a, 32) == [entry_id]
    assert wait_for(lambda: follows(b, "chain-a", 3), 20), "chain-b follows chain-a's log"
    fill(a.directory)  # the space the reserve gave back is taken too

    started = time.monotonic()
    status, body = a.call("POST", f"/v1/entries/{entry_id}/delete", "off2", {"reason": "data-subject-request"})
    answered = time.monotonic() - started
    assert status == 202, body
    assert (body["status"], body["entry_id"]) == ("deletion_pending", entry_id), body
    documented("/v1/entries/{entry_id}/delete", "202", body)
    assert matched(a, 32) == [], "the person no longer matches, at once"
    status, health = ready(a)
    assert status == 503, health
    assert {"disk", "deletions", "disk_reserve"} <= set(health["failing"]), health["failing"]
    assert health["checks"]["deletions"]["pending"] == 1 and health["checks"]["deletions"]["disk_full"]
    documented("/v1/health/ready", "503", health)
    status, detail = a.call("GET", "/v1/health")
    assert status == 200 and detail["deletions"]["pending"] == 1 and detail["deletions"]["disk_full"]
    documented("/v1/health", "200", detail)
    time.sleep(2.5)  # a retry or two on the full disk: still held, still not matching, not sent
    assert matched(a, 32) == [] and confirmed_by(a, entry_id) == []

    freed = time.monotonic()
    (a.directory / "filler").unlink()
    assert wait_for(lambda: confirmed_by(a, entry_id) != [], LANDS_WITHIN + 5, interval=0.1)
    landed = time.monotonic() - freed
    assert landed < LANDS_WITHIN, f"the held deletion took {landed:.1f} s to land once space returned"
    assert wait_for(lambda: confirmed_by(a, entry_id) == [["chain-b"]], 20, interval=0.1), confirmed_by(a, entry_id)
    receipt = time.monotonic() - freed
    assert wait_for(lambda: ready(a)[0] == 200, 15, interval=0.2), ready(a)
    back = time.monotonic() - freed
    assert (a.directory / RESERVE_FILE).stat().st_size == RESERVE_MB << 20, "the reserve is taken back"
    assert matched(a, 32) == []
    time.sleep(1.5)  # another sync: the receipt is counted once, the event logged once
    assert confirmed_by(a, entry_id) == [["chain-b"]]
    status, audit = a.call("GET", "/v1/audit?limit=1000", "aud1")
    assert status == 200
    records = [r for r in audit["records"] if r["target"] == entry_id]
    assert ("entry.deleted", "ok") in {(r["action"], r["outcome"]) for r in records}
    assert ("POST /v1/entries/{entry_id}/delete", "ok:202") in {(r["action"], r["outcome"]) for r in records}
    print(
        f"\nfull disk, no reserve: 202 in {answered:.2f} s; after the filler went: written in "
        f"{landed:.2f} s, chain-b's receipt {receipt:.2f} s, ready again {back:.2f} s"
    )


def test_a_held_deletion_outlives_a_restart_on_the_full_disk(net: LocalNetwork) -> None:
    a, b = net.node("chain-a"), net.node("chain-b")
    entry_id = register(a, unit(33))
    assert wait_for(lambda: follows(b, "chain-a", 5), 20), "chain-b follows chain-a's log"
    assert wait_for(lambda: (a.directory / RESERVE_FILE).exists(), 10)
    (a.directory / RESERVE_FILE).unlink()  # as if given up before: the disk fills without one
    fill(a.directory)
    status, body = a.call("POST", f"/v1/entries/{entry_id}/delete", "off2", {"reason": "error"})
    assert status == 202, body
    started = time.monotonic()
    a.stop()
    stopped = time.monotonic() - started
    a.start()
    restart = time.monotonic() - started
    assert matched(a, 33) == [], "still held after the restart: no match"
    status, health = ready(a)
    assert status == 503 and health["checks"]["deletions"]["pending"] == 1, health
    freed = time.monotonic()
    (a.directory / "filler").unlink()
    assert wait_for(lambda: confirmed_by(a, entry_id) == [["chain-b"]], 20, interval=0.1), confirmed_by(a, entry_id)
    receipt = time.monotonic() - freed
    assert wait_for(lambda: ready(a)[0] == 200, 15, interval=0.2), ready(a)
    print(f"\nrestarted on the full disk in {restart:.1f} s (stop {stopped:.1f} s) with the deletion held; receipt {receipt:.2f} s after space returned")
