"""SIGKILL of a node in the middle of propagation (#16): nothing lost, nothing applied twice.

Three members on real processes, each holding alerts on chain-a's entries (so a deletion that
reached a member is seen: its alert is withdrawn and keeps no copy of the entry). First the owner,
chain-a, is killed the moment its last deletion answers, before its notices and the members'
receipts have all flowed; then a receiving member, chain-b, is killed right after the deletions
that notify it answer (it has the notices and is pulling, applying or delivering receipts), and
more deletions are made while it is down. After each restart every member holds every deletion
once (one ``peer.event.deleted`` per entry, alerts withdrawn), chain-a holds each member's receipt
once (one ``peer.receipt`` per event and member), and every node's logs verify. The time from the
restart to the last receipt is measured and bounded. ``tests/test_crash.py`` covers a single node
killed during registrations; ``tests/test_federation.py`` a member killed after the deletions.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from functools import partial
from typing import Any

import pytest

from node.demo.network import LocalNetwork, LocalNode, wait_for
from tests.chaos.test_partition import PEER_TIMEOUT, SYNC_INTERVAL, peers_seen_by
from tests.nodeproc import cli
from tests.test_federation import audit, register, unit

MEMBERS = ["chain-a", "chain-b", "chain-c"]
RESTART_BOUND = 3 * (PEER_TIMEOUT + SYNC_INTERVAL)
"""Restart -> every receipt: a follower pass that may be waiting out its deadline, the next pass,
the receipts; three times over for a loaded machine."""


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalNetwork]:
    with LocalNetwork(tmp_path_factory.mktemp("kill"), MEMBERS, sync_interval="1s").running() as network:
        yield network


def held_by_members(net: LocalNetwork, seeds: list[int]) -> list[str]:
    """Register a face per seed at chain-a; chain-b and chain-c each match all of them once, so
    each holds an alert (with the entry's copy) on every one; wait until both follow chain-a's log."""
    a = net.node("chain-a")
    entries = [register(a, unit(seed)) for seed in seeds]
    for member in ("chain-b", "chain-c"):
        status, result = net.node(member).call(
            "POST", "/v1/query", "op1", {"embeddings": [unit(s).to_str() for s in seeds], "site": "gate-1"}
        )
        assert status == 200 and sorted(m["entry_id"] for m in result["matches"]) == sorted(entries), result
    followed(net)
    return entries


def followed(net: LocalNetwork, timeout: float = 20) -> None:
    size = net.node("chain-a").call("GET", "/v1/log/head")[1]["signed"]["tree_size"]

    def follows(member: LocalNode) -> bool:
        return bool(peers_seen_by(member)["chain-a"]["log_size"] == size)

    for member in (net.node("chain-b"), net.node("chain-c")):
        assert wait_for(partial(follows, member), timeout, interval=0.2), (
            f"{member.node_id} follows chain-a's log to {size} events"
        )


def delete(node: LocalNode, entry_id: str) -> None:
    status, body = node.call("POST", f"/v1/entries/{entry_id}/delete", "off2", {"reason": "error"})
    assert status == 200, body


def deletions(a: LocalNode, entries: list[str]) -> dict[str, dict[str, Any]]:
    """Each entry's one deletion event in chain-a's log, with who confirmed it."""
    status, body = a.call("GET", "/v1/propagation", "off1")
    assert status == 200, body
    events = [e for e in body["events"] if e["entry_id"] in entries and e["kind"] == "deleted"]
    assert sorted(e["entry_id"] for e in events) == sorted(entries), events
    return {e["entry_id"]: e for e in events}


def confirming(item: dict[str, Any]) -> list[str]:
    return [c["member"] for c in item["confirmed"]]


def all_confirmed(a: LocalNode, entries: list[str]) -> bool:
    return all(not item["missing"] for item in deletions(a, entries).values())


def assert_each_once(net: LocalNetwork, entries: list[str]) -> None:
    """Every member applied each deletion once and chain-a holds each receipt once; logs verify."""
    a = net.node("chain-a")
    events = deletions(a, entries)
    for item in events.values():
        assert confirming(item) == ["chain-b", "chain-c"], item
    receipts = [r for r in audit(a) if r["action"] == "peer.receipt"]
    for item in events.values():
        for member in ("chain-b", "chain-c"):
            got = [r for r in receipts if r["target"] == item["event_id"] and r["actor"] == f"peer:{member}"]
            assert len(got) == 1, (member, item, got)
    deleted = [r for r in audit(a) if r["action"] == "entry.deleted" and r["outcome"] == "ok"]
    assert {e for e in entries} <= {r["target"] for r in deleted}, "a deletion's audit record was lost"
    for member in ("chain-b", "chain-c"):
        node = net.node(member)
        applied = [r["target"] for r in audit(node) if r["action"] == "peer.event.deleted"]
        for entry_id in entries:
            assert applied.count(f"chain-a/{entry_id}") == 1, (member, entry_id, applied)
        alerts = {x["entry_id"]: x for x in node.call("GET", "/v1/alerts?limit=1000", "op1")[1]["alerts"]}
        for entry_id in entries:
            assert alerts[entry_id]["status"] == "withdrawn" and alerts[entry_id]["category"] is None, alerts[
                entry_id
            ]
    followed(net)
    for node in net.nodes.values():
        out = json.loads(cli("audit", "verify", "--url", node.url, "--token", node.tokens["aud1"], "--json"))
        assert out["ok"], (node.node_id, out)


def test_the_owner_killed_right_after_its_deletions_answer(net: LocalNetwork) -> None:
    a = net.node("chain-a")
    entries = held_by_members(net, [31, 32, 33, 34])
    for entry_id in entries:
        delete(a, entry_id)
    a.kill()
    killed = time.monotonic()
    time.sleep(2 * SYNC_INTERVAL)  # the members' followers find chain-a gone
    a.start()
    restarted = time.monotonic()
    before_kill = sum(len(item["confirmed"]) for item in deletions(a, entries).values())
    assert wait_for(lambda: all_confirmed(a, entries), RESTART_BOUND + 10, interval=0.1), deletions(
        a, entries
    )
    took = time.monotonic() - restarted
    print(
        f"\nchain-a killed as its 4th deletion answered, with {before_kill} of 8 receipts in; restarted "
        f"{restarted - killed:.1f} s after the kill, the rest in {took:.2f} s after the restart"
    )
    assert took < RESTART_BOUND, f"receipts took {took:.1f} s after chain-a's restart"
    assert_each_once(net, entries)


def test_a_member_killed_while_it_applies_deletions(net: LocalNetwork) -> None:
    a, b = net.node("chain-a"), net.node("chain-b")
    entries = held_by_members(net, [41, 42, 43, 44, 45, 46])
    first, later = entries[:3], entries[3:]
    for entry_id in first:
        delete(a, entry_id)
    b.kill()  # it has had the notices: it is pulling, applying or sending its receipts
    from_b = sum("chain-b" in confirming(item) for item in deletions(a, first).values())
    for entry_id in later:  # notices it misses while it is down
        delete(a, entry_id)
    assert wait_for(
        lambda: all(confirming(item) == ["chain-c"] for item in deletions(a, later).values()),
        10,
        interval=0.1,
    ), "chain-c confirms while chain-b is down"
    b.start()
    restarted = time.monotonic()
    assert wait_for(lambda: all_confirmed(a, entries), RESTART_BOUND + 10, interval=0.1), deletions(
        a, entries
    )
    took = time.monotonic() - restarted
    print(
        f"\nchain-b killed with {from_b} of its 3 receipts at chain-a; all 6 in {took:.2f} s after its restart"
    )
    assert took < RESTART_BOUND, f"chain-b's receipts took {took:.1f} s after its restart"
    assert_each_once(net, entries)
