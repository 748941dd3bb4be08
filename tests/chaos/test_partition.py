"""A network partition and its healing (#16): the deletion reaches the cut-off member afterwards.

Each member runs in a network namespace of its own (``ip netns``), on one veth "cable" to a
bridge here, addresses in 10.203.x.0/24; the organisation serves on the bridge's own address.
Pulling chain-b's cable (``ip link set DEV down``, no firewall involved) cuts it off from
everyone. While it is cut off, a deletion at chain-a gets chain-c's receipt as usual and shows
chain-b's as owed; chain-a's peer list shows chain-b failing, and a query from chain-a reports
chain-b unanswered, never "no match"; chain-b meanwhile still holds its alert on the entry (seen
from inside its namespace, as its own staff would). Once the cable is back, the deletion reaches
chain-b and its signed receipt reaches chain-a exactly once, within a bound.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from node.demo.network import LocalNetwork, LocalNode, Placement, wait_for
from tests.test_federation import audit, register, unit

MEMBERS = ["chain-a", "chain-b", "chain-c"]
PEER_TIMEOUT = 5.0
"""The network's ``[federation] peer_timeout`` (the default)."""
SYNC_INTERVAL = 1.0
"""How often each member follows every peer's log here (``sync_interval``)."""
HEAL_BOUND = 3 * (PEER_TIMEOUT + SYNC_INTERVAL)
"""Heal -> receipt: one pass of chain-b's follower that may still be waiting out its deadline
(``peer_timeout``), the next pass (``sync_interval``), then the receipt; three times over for a
loaded machine."""


class NamespacesUnavailable(RuntimeError):
    """``ip netns`` cannot be used here (no root, no iproute2, or a sandbox that forbids it)."""


def ip(*argv: str) -> str:
    try:
        done = subprocess.run(["ip", *argv], check=True, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError) as e:
        detail = getattr(e, "stderr", "") or ""
        raise NamespacesUnavailable(f"ip {' '.join(argv)}: {e} {detail}".strip()) from e
    return done.stdout


@dataclass
class Lan:
    """A bridge here and a namespace per member on a cable of its own: cut one, mend it."""

    tag: str = field(default_factory=lambda: secrets.token_hex(3))
    subnet: int = 0
    namespaces: dict[str, str] = field(default_factory=dict)
    cables: dict[str, str] = field(default_factory=dict)
    """Per member, the host end of its veth pair (on the bridge)."""
    placements: dict[str, Placement] = field(default_factory=dict)

    @property
    def bridge(self) -> str:
        return f"wn{self.tag}br"

    @property
    def gateway(self) -> str:
        return f"10.203.{self.subnet}.1"

    def address(self, index: int) -> str:
        return f"10.203.{self.subnet}.{10 + index}"

    def build(self, members: list[str]) -> dict[str, Placement]:
        """Create bridge, namespaces and cables; return where each member and the organisation run."""
        used = ip("-o", "addr")
        free = [x for x in range(256) if f" 10.203.{x}." not in used]
        self.subnet = random.choice(free)
        # the host's firewall (a FORWARD policy of DROP, as Docker sets) must not see bridged frames
        ip("link", "add", self.bridge, "type", "bridge", "nf_call_iptables", "0", "nf_call_ip6tables", "0")
        ip("addr", "add", f"{self.gateway}/24", "dev", self.bridge)
        ip("link", "set", self.bridge, "up")
        placements = {"org": Placement(self.gateway)}
        for index, node_id in enumerate(members):
            ns, cable = f"wn-{self.tag}-{node_id}", f"wn{self.tag}{node_id[-1]}"
            ip("netns", "add", ns)
            self.namespaces[node_id] = ns
            ip("link", "add", cable, "type", "veth", "peer", "name", "eth0", "netns", ns)
            self.cables[node_id] = cable
            ip("link", "set", cable, "master", self.bridge, "up")
            ip("-n", ns, "addr", "add", f"{self.address(index)}/24", "dev", "eth0")
            ip("-n", ns, "link", "set", "eth0", "up")
            ip("-n", ns, "link", "set", "lo", "up")
            placements[node_id] = Placement(self.address(index), ("ip", "netns", "exec", ns))
        return placements

    def cut(self, node_id: str) -> None:
        ip("link", "set", self.cables[node_id], "down")

    def mend(self, node_id: str) -> None:
        ip("link", "set", self.cables[node_id], "up")

    def teardown(self) -> None:
        for ns in self.namespaces.values():
            with contextlib.suppress(NamespacesUnavailable):
                ip("netns", "del", ns)
        for cable in self.cables.values():  # gone with its namespace, unless that was slow
            with contextlib.suppress(NamespacesUnavailable):
                ip("link", "del", cable)
        with contextlib.suppress(NamespacesUnavailable):
            ip("link", "del", self.bridge)


INSIDE = """
import json, sys, urllib.error, urllib.request
ask = json.load(sys.stdin)
request = urllib.request.Request(ask["url"], method=ask["method"], data=ask["data"] and ask["data"].encode())
request.add_header("Authorization", "Bearer " + ask["token"])
request.add_header("Content-Type", "application/json")
try:
    with urllib.request.urlopen(request, timeout=30) as response:
        print(response.status, response.read().decode())
except urllib.error.HTTPError as e:
    print(e.code, e.read().decode())
"""


def inside(lan: Lan, node: LocalNode, method: str, path: str, user: str, body: Any = None) -> tuple[int, Any]:
    """A staff request to ``node`` from inside its own namespace: what its staff see while the
    node is cut off from the rest (and from this test)."""
    ask = {
        "url": f"{node.url}{path}",
        "method": method,
        "token": node.tokens[user],
        "data": None if body is None else json.dumps(body),
    }
    out = subprocess.run(
        ["ip", "netns", "exec", lan.namespaces[node.node_id], sys.executable, "-c", INSIDE],
        input=json.dumps(ask),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    status, _, payload = out.partition(" ")
    return int(status), json.loads(payload)


@pytest.fixture(scope="module")
def lan() -> Iterator[Lan]:
    lan = Lan()
    try:
        try:
            lan.placements = lan.build(MEMBERS)
        except NamespacesUnavailable as e:
            if os.environ.get("CI") == "true":
                pytest.fail(f"network namespaces are required in CI: {e}")
            pytest.skip(f"network namespaces are not available here: {e}")
        yield lan
    finally:
        lan.teardown()


@pytest.fixture(scope="module")
def net(lan: Lan, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalNetwork]:
    # SQLite whatever WATCHNET_DEMO_DATABASE_SERVER says: inside its namespace a node has a
    # loopback of its own and cannot reach the server on the host's 127.0.0.1
    network = LocalNetwork(
        tmp_path_factory.mktemp("partition"),
        MEMBERS,
        sync_interval="1s",
        placements=lan.placements,
        database_server=None,
    )
    with network.running():
        yield network


def deletion(node: LocalNode, entry_id: str) -> dict[str, Any]:
    status, body = node.call("GET", "/v1/propagation", "off1")
    assert status == 200, body
    events = [e for e in body["events"] if e["entry_id"] == entry_id and e["kind"] == "deleted"]
    assert len(events) == 1, events
    return dict(events[0])


def confirmed_by(node: LocalNode, entry_id: str) -> list[str]:
    return [c["member"] for c in deletion(node, entry_id)["confirmed"]]


def peers_seen_by(node: LocalNode) -> dict[str, dict[str, Any]]:
    status, body = node.call("GET", "/v1/peers", "off1")
    assert status == 200, body
    return {p["node_id"]: p for p in body["peers"]}


def query(node: LocalNode, seed: int) -> dict[str, Any]:
    status, result = node.call(
        "POST", "/v1/query", "op1", {"embeddings": [unit(seed).to_str()], "site": "gate-1"}
    )
    assert status == 200, result
    return dict(result)


def alert_on(alerts: list[dict[str, Any]], entry_id: str) -> dict[str, Any]:
    found = [a for a in alerts if a["entry_id"] == entry_id]
    assert len(found) == 1, alerts
    return found[0]


def test_a_deletion_reaches_a_partitioned_member_after_healing(lan: Lan, net: LocalNetwork) -> None:
    a, b, c = (net.node(n) for n in MEMBERS)
    entry_id = register(a, unit(21))
    b_entry = register(b, unit(22))
    seen = query(b, 21)
    assert [m["entry_id"] for m in seen["matches"]] == [entry_id], seen
    a_size = a.call("GET", "/v1/log/head")[1]["signed"]["tree_size"]
    assert wait_for(lambda: peers_seen_by(b)["chain-a"]["log_size"] == a_size, 20), "chain-b follows chain-a"
    assert wait_for(lambda: peers_seen_by(c)["chain-a"]["log_size"] == a_size, 20), "chain-c follows chain-a"

    lan.cut("chain-b")
    cut_at = time.monotonic()
    try:
        status, body = a.call("POST", f"/v1/entries/{entry_id}/delete", "off2", {"reason": "error"})
        assert status == 200, body
        assert wait_for(lambda: confirmed_by(a, entry_id) == ["chain-c"], 15, interval=0.1), deletion(
            a, entry_id
        )
        c_receipt = time.monotonic() - cut_at
        assert c_receipt < PEER_TIMEOUT, f"chain-c's receipt took {c_receipt:.1f} s with chain-b cut off"

        during = query(a, 22)
        peers = {p["node_id"]: p for p in during["peers"]}
        assert peers["chain-b"]["status"] in ("timeout", "unreachable"), peers  # unknown, never "no match"
        assert during["complete"] is False and during["unanswered"] == ["chain-b"], during
        assert during["matches"] == []

        assert wait_for(lambda: peers_seen_by(a)["chain-b"]["circuit"] == "open", 15, interval=0.3), (
            peers_seen_by(a)
        )
        shown = peers_seen_by(a)
        assert shown["chain-b"]["failures"] >= 1 and shown["chain-b"]["last_error"], shown
        assert shown["chain-c"]["circuit"] == "closed", shown
        owed = deletion(a, entry_id)
        assert owed["missing"] == ["chain-b"] and confirmed_by(a, entry_id) == ["chain-c"], owed
        status, metrics = a.call("GET", "/metrics", "adm1")
        assert status == 200
        assert any(
            line.startswith("watchnet_receipts_owed") and 'member="chain-b"' in line and line.endswith(" 1.0")
            for line in str(metrics).splitlines()
        ), metrics

        # chain-b, cut off, still holds its alert on the entry and sees chain-a failing
        status, held = inside(lan, b, "GET", "/v1/alerts", "op1")
        assert status == 200 and alert_on(held["alerts"], entry_id)["status"] == "open", held
        status, b_peers = inside(lan, b, "GET", "/v1/peers", "off1")
        assert status == 200, b_peers
        b_view = {p["node_id"]: p for p in b_peers["peers"]}["chain-a"]
        assert b_view["failures"] >= 1 and b_view["log_size"] == a_size, b_peers  # nothing new reached it
        partition = time.monotonic() - cut_at
        print(
            f"\nduring the partition chain-a's query saw chain-b {peers['chain-b']['status']} "
            f"({peers['chain-b'].get('error')}); /v1/peers: circuit open, {shown['chain-b']['failures']} "
            f"failures, last error {shown['chain-b']['last_error'][:80]!r}"
        )
    finally:
        lan.mend("chain-b")
        healed_at = time.monotonic()

    assert wait_for(
        lambda: confirmed_by(a, entry_id) == ["chain-b", "chain-c"], HEAL_BOUND + 10, interval=0.1
    ), (
        deletion(a, entry_id),
        peers_seen_by(a),
    )
    receipt_after = time.monotonic() - healed_at
    withdrawn = alert_on(b.call("GET", "/v1/alerts", "op1")[1]["alerts"], entry_id)
    assert withdrawn["status"] == "withdrawn" and withdrawn["category"] is None, withdrawn
    print(
        f"partition of chain-b: {partition:.1f} s; chain-c's receipt {c_receipt:.2f} s after the cut; "
        f"chain-b's receipt {receipt_after:.2f} s after healing (bound {HEAL_BOUND:.0f} s)"
    )
    assert receipt_after < HEAL_BOUND, f"chain-b's receipt took {receipt_after:.1f} s after healing"

    event_id = deletion(a, entry_id)["event_id"]
    receipts = [
        r
        for r in audit(a)
        if r["action"] == "peer.receipt" and r["actor"] == "peer:chain-b" and r["target"] == event_id
    ]
    assert len(receipts) == 1, receipts
    applied = [
        r for r in audit(b) if r["action"] == "peer.event.deleted" and r["target"] == f"chain-a/{entry_id}"
    ]
    assert len(applied) == 1, applied
    after = query(b, 21)
    assert after["complete"] is True and after["matches"] == [], after

    def answered_again() -> bool:
        result = query(a, 22)
        return bool(result["complete"]) and [m["entry_id"] for m in result["matches"]] == [b_entry]

    assert wait_for(answered_again, 30, interval=0.5), "queries reach chain-b again once its circuit closes"
    print(
        f"queries from chain-a answered by chain-b again {time.monotonic() - healed_at:.2f} s after healing"
    )
    assert peers_seen_by(a)["chain-b"]["circuit"] == "closed"
