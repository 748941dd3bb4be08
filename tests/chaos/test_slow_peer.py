"""One hung member harms no one else (#16): a SIGSTOPped peer during a query and during propagation.

Three members on real processes; chain-c is stopped with SIGSTOP (it keeps its sockets: TCP
connects, nothing answers, as a hung machine does). A query from chain-a returns at the peer
deadline with chain-b's answer and chain-c reported ``timeout`` (never "no match"); after three
failures in a row chain-c's circuit opens and queries skip it at once (``circuit_open``), shown
in ``/v1/peers`` and the metrics. A deletion at chain-a meanwhile gets chain-b's receipt as fast as
with every member up, and chain-c's once it is continued, each receipt once.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from typing import Any

import pytest

from node.demo.network import LocalNetwork, LocalNode, wait_for
from tests.test_federation import register, unit

MEMBERS = ["chain-a", "chain-b", "chain-c"]
PEER_TIMEOUT = 5.0
"""The demo network's ``[federation] peer_timeout`` (the default)."""




def query(node: LocalNode, seed: int) -> tuple[float, dict[str, Any]]:
    started = time.monotonic()
    status, result = node.call("POST", "/v1/query", "op1", {"embeddings": [unit(seed).to_str()]})
    assert status == 200, result
    return time.monotonic() - started, result


def confirmed_by(node: LocalNode, entry_id: str) -> set[str]:
    status, body = node.call("GET", "/v1/propagation", "off1")
    assert status == 200, body
    events = [e for e in body["events"] if e["entry_id"] == entry_id and e["kind"] == "deleted"]
    return {c["member"] for e in events for c in e["confirmed"]}


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalNetwork]:
    with LocalNetwork(tmp_path_factory.mktemp("slow"), MEMBERS, sync_interval="1s").running() as network:
        yield network


def test_a_hung_peer_costs_a_query_its_deadline_once_then_is_skipped(net: LocalNetwork) -> None:
    a, b, c = (net.node(n) for n in MEMBERS)
    entry_id = register(b, unit(7))
    assert c.process is not None
    c.process.send_signal(signal.SIGSTOP)
    try:
        elapsed, first = query(a, 7)
        peers = {p["node_id"]: p for p in first["peers"]}
        assert peers["chain-b"]["status"] == "ok", peers
        assert peers["chain-c"]["status"] in ("timeout", "unreachable"), peers  # unknown, never "no match"
        assert [m["entry_id"] for m in first["matches"]] == [entry_id]
        assert elapsed < PEER_TIMEOUT + 5, elapsed
        print(f"\nfirst query with chain-c hung: {elapsed:.2f} s, chain-c {peers['chain-c'].get('error')}")
        # the leader's follower and notifier also time out on chain-c and feed its breaker, so
        # the circuit opens after at most two more queries
        skipped: dict[str, Any] = {}
        for _ in range(3):
            elapsed, result = query(a, 7)
            peers = {p["node_id"]: p for p in result["peers"]}
            assert peers["chain-b"]["status"] == "ok" and [m["entry_id"] for m in result["matches"]] == [entry_id]
            assert peers["chain-c"]["status"] in ("timeout", "unreachable"), peers
            if peers["chain-c"].get("error") == "circuit_open":
                skipped = peers
                break
        assert skipped, "chain-c's circuit never opened"
        assert elapsed < PEER_TIMEOUT / 2, f"a query skipping an open circuit took {elapsed:.1f} s"
        shown = {p["node_id"]: p for p in a.call("GET", "/v1/peers", "off1")[1]["peers"]}
        assert shown["chain-c"]["circuit"] == "open" and shown["chain-b"]["circuit"] == "closed", shown
        status, metrics = a.call("GET", "/metrics", "adm1")
        assert status == 200
        assert any(
            line.startswith("watchnet_peer_circuit_open{")
            and 'peer="chain-c"' in line
            and line.endswith(" 1.0")
            for line in str(metrics).splitlines()
        ), metrics
    finally:
        c.process.send_signal(signal.SIGCONT)
    def circuit_closed() -> bool:
        query(a, 7)  # a probe, when one is due
        shown = {p["node_id"]: p for p in a.call("GET", "/v1/peers", "off1")[1]["peers"]}
        return bool(shown["chain-c"]["circuit"] == "closed")

    assert wait_for(circuit_closed, 60, interval=1), "chain-c's circuit closes once it is continued"


def test_a_hung_peer_does_not_delay_the_others_receipts(net: LocalNetwork) -> None:
    a, c = net.node("chain-a"), net.node("chain-c")
    entry_id = register(a, unit(11))
    assert wait_for(lambda: len(c.call("GET", "/v1/peers", "off1")[1]["peers"]) == 2, 10)
    assert wait_for(
        lambda: any(
            p["node_id"] == "chain-a" and p["log_size"] >= 1
            for p in c.call("GET", "/v1/peers", "off1")[1]["peers"]
        ),
        20,
    ), "chain-c follows chain-a's log before it is stopped"
    assert c.process is not None
    c.process.send_signal(signal.SIGSTOP)
    try:
        started = time.monotonic()
        status, body = a.call("POST", f"/v1/entries/{entry_id}/delete", "off2", {"reason": "error"})
        assert status == 200, body
        assert wait_for(lambda: "chain-b" in confirmed_by(a, entry_id), 15, interval=0.1)
        b_receipt = time.monotonic() - started
        assert b_receipt < PEER_TIMEOUT, f"chain-b's receipt took {b_receipt:.1f} s with chain-c hung"
        assert "chain-c" not in confirmed_by(a, entry_id)
    finally:
        c.process.send_signal(signal.SIGCONT)
    continued = time.monotonic()
    assert wait_for(lambda: confirmed_by(a, entry_id) == {"chain-b", "chain-c"}, 60, interval=0.2)
    c_receipt = time.monotonic() - continued
    print(f"\nreceipts with chain-c hung: chain-b {b_receipt:.2f} s; chain-c {c_receipt:.2f} s after SIGCONT")
    status, body = a.call("GET", "/v1/propagation", "off1")
    deleted = [e for e in body["events"] if e["entry_id"] == entry_id and e["kind"] == "deleted"]
    assert len(deleted) == 1 and sorted(c["member"] for c in deleted[0]["confirmed"]) == [
        "chain-b",
        "chain-c",
    ]
