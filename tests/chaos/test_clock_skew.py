"""Clocks (#16): a peer's offset is shown well before it is refused, the refusal says whose clock is
off by how much, and a clock that jumped forward and was set right does not lock older peers out.

Real processes; chain-b and chain-c read their wall clock through ``WATCHNET_CLOCK_OFFSET_FILE``
(seconds added to the system clock, re-read as it changes): the node's own clock setting for
tests, as Debian's libfaketime breaks Python's ``time.sleep`` on this machine (EINVAL).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from node.demo.network import LocalNetwork, LocalNode, wait_for
from tests.test_federation import unit

MEMBERS = ["chain-a", "chain-b", "chain-c"]



def peers_of(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {p["node_id"]: p for p in result["peers"]}


def ask(node: LocalNode) -> dict[str, dict[str, Any]]:
    status, result = node.call("POST", "/v1/query", "op1", {"embeddings": [unit(3).to_str()]})
    assert status == 200, result
    return peers_of(result)


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LocalNetwork, Path]]:
    root = tmp_path_factory.mktemp("clock")
    offset = root / "clock-offset"
    offset.write_text("0\n")
    with LocalNetwork(root, MEMBERS, sync_interval="1s").running() as network:
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("WATCHNET_CLOCK_OFFSET_FILE", str(offset))
            for node_id in ("chain-b", "chain-c"):
                network.node(node_id).stop()
                network.node(node_id).start()
        yield network, offset


def set_offset(offset: Path, seconds: int) -> None:
    offset.write_text(f"{seconds}\n")
    time.sleep(1.2)  # read again at most once a second


def test_an_offset_is_shown_before_it_is_refused_and_the_refusal_names_the_clock(
    net: tuple[LocalNetwork, Path],
) -> None:
    network, offset = net
    a = network.node("chain-a")
    set_offset(offset, 30)
    assert ask(a)["chain-b"]["status"] == "ok", "30 s is inside the 60 s window"
    shown = {p["node_id"]: p for p in a.call("GET", "/v1/peers", "off1")[1]["peers"]}
    assert 28 <= shown["chain-b"]["clock_skew_seconds"] <= 32 and shown["chain-b"]["clock_warning"], shown
    status, metrics = a.call("GET", "/metrics", "adm1")
    assert status == 200, metrics
    skew = [
        line
        for line in str(metrics).splitlines()
        if line.startswith("watchnet_peer_clock_skew_seconds{") and 'peer="chain-b"' in line
    ]
    assert skew and 28 <= float(skew[0].rsplit(" ", 1)[1]) <= 32, skew

    set_offset(offset, 75)
    refused = ask(a)["chain-b"]
    assert refused["status"] == "refused" and refused["error"] == "clock_skew", refused
    assert "chain-a's clock is" in refused["reason"] and "behind chain-b's" in refused["reason"], refused
    gap = int(refused["reason"].split("chain-a's clock is ", 1)[1].split(" s", 1)[0])
    assert 73 <= gap <= 77, refused["reason"]
    set_offset(offset, 0)


def test_a_clock_set_right_after_a_jump_admits_older_peers_at_once(net: tuple[LocalNetwork, Path]) -> None:
    network, offset = net
    a, c = network.node("chain-a"), network.node("chain-c")
    set_offset(offset, 100)  # chain-b and chain-c jump together (one bad time source)
    from_c = ask(c)
    assert from_c["chain-b"]["status"] == "ok", "chain-b takes chain-c's messages: their clocks agree"
    assert from_c["chain-a"]["status"] == "refused" and from_c["chain-a"]["error"] == "clock_skew"
    set_offset(offset, 0)
    started = time.monotonic()
    assert wait_for(lambda: ask(a)["chain-b"]["status"] == "ok", 10, interval=0.5), (
        "chain-b still refuses chain-a after its clock was set right"
    )
    print(f"\nchain-b admits chain-a again {time.monotonic() - started:.1f} s after its clock was set right")
