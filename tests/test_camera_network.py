"""A camera's faces asked of the network: chain-b's camera sees a person chain-a registered.

Two member processes. chain-b's camera account submits with ``network``: the face is matched
against chain-b's own list and asked of chain-a (purpose ``crime-prevention``); chain-a's signed
entry answers, and chain-b's alert names chain-a as the owner and the camera, site and gate. The
camera learns only the count; a stranger raises nothing anywhere; staff cannot use the flag.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from node.demo.network import LocalNetwork
from node.demo.restore_drill import face, register
from tests.nodeproc import PASSWORD, cli


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalNetwork]:
    with LocalNetwork(tmp_path_factory.mktemp("camnet"), ["chain-a", "chain-b"]).running() as network:
        b = network.node("chain-b")
        cli(
            "user", "add", "--node", str(b.directory), "cam1", "--role", "camera", "--site", "umeda-02",
            "--password-stdin", stdin=PASSWORD + "\n",
        )  # fmt: skip
        b.tokens["cam1"] = cli("user", "token", "--node", str(b.directory), "cam1").strip()
        yield network


def test_a_camera_asks_the_network_and_the_alert_names_owner_and_camera(net: LocalNetwork) -> None:
    a, b = net.node("chain-a"), net.node("chain-b")
    entry_id = register(a, face(61))
    body = {"embeddings": [face(61).to_str()], "camera": "umeda-02-door", "site": "umeda-02", "gate": "east"}
    status, answer = b.call("POST", "/v1/match", "cam1", body)
    assert (status, answer) == (200, {"faces": 1, "alerts": 0})  # not in chain-b's own list
    status, answer = b.call("POST", "/v1/match", "cam1", {**body, "network": True})
    assert (status, answer) == (200, {"faces": 1, "alerts": 1}), answer
    _, listed = b.call("GET", "/v1/alerts", "op1")
    (alert,) = [x for x in listed["alerts"] if x["entry_id"] == entry_id]
    assert (alert["owner"], alert["camera"], alert["site"], alert["gate"]) == (
        "chain-a",
        "umeda-02-door",
        "umeda-02",
        "east",
    )
    status, answer = b.call(
        "POST", "/v1/match", "cam1", {**body, "embeddings": [face(62).to_str()], "network": True}
    )
    assert (status, answer) == (200, {"faces": 1, "alerts": 0})
    _, on_a = a.call("GET", "/v1/alerts", "op1")
    assert on_a["alerts"] == []  # the owner keeps nothing of the question
    status, error = b.call("POST", "/v1/match", "op1", {"embeddings": [face(61).to_str()], "network": True})
    assert (status, error["error"]) == (400, "malformed") and "/v1/query" in error["message"]
