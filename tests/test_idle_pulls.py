"""An idle group's followers back off (``PULL_BACKOFF``): changes arrive by notice, so pulls that
keep finding nothing new come ever less often, and a change still arrives at once."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from node.demo.network import LocalNetwork, LocalNode, wait_for
from node.demo.restore_drill import face as unit
from node.demo.restore_drill import register
from node.federation.federation import PULL_BACKOFF
from tests.test_federation import audit

SYNC = 1.0
"""The members' ``sync_interval`` here, in seconds."""


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalNetwork]:
    root: Path = tmp_path_factory.mktemp("idle")
    with LocalNetwork(
        root, ["chain-a", "chain-b"], sync_interval="1s", manifest_poll="5m"
    ).running() as network:
        yield network


def pulls_by(node: LocalNode, peer: str) -> list[float]:
    return [
        r["seq"]
        for r in audit(node)
        if r["action"] == "POST /v1/peer/log" and r["actor"] == f"peer:{peer}" and r["outcome"] == "ok:200"
    ]


def test_idle_pulls_back_off_and_a_change_still_arrives_at_once(net: LocalNetwork) -> None:
    a, b = net.node("chain-a"), net.node("chain-b")
    before = len(pulls_by(a, "chain-b"))
    window = 1.5 * SYNC * PULL_BACKOFF
    time.sleep(window)  # waits of 1, 2, 4, 8 s: at most 4 pulls (5 with one under way at the start)
    idle = len(pulls_by(a, "chain-b")) - before
    assert 1 <= idle <= 5, f"{idle} pulls in {window:.0f} s: one per {SYNC:.0f} s would be {window:.0f}"

    known = followed_size(b, "chain-a")
    register(a, unit(9101))
    started = time.monotonic()
    assert wait_for(lambda: followed_size(b, "chain-a") > known, 3 * SYNC), "the notice wakes the follower"
    assert time.monotonic() - started < 3 * SYNC, "not at the end of a backed-off wait"


def followed_size(node: LocalNode, peer: str) -> int:
    """How much of ``peer``'s log ``node`` has verified and applied."""
    status, body = node.call("GET", "/v1/peers", "aud1")
    assert status == 200, body
    return int(next(p["log_size"] for p in body["peers"] if p["node_id"] == peer))
