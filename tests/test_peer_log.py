"""A node that starts before its peers logs their absence at INFO, then one WARNING, then rarely."""

from __future__ import annotations

import json
import logging

import pytest

from node.demo.network import LocalNetwork, wait_for
from node.federation.peerlog import PeerLog

LOGGER = logging.getLogger("watchnet.test.peerlog")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def levels(caplog: pytest.LogCaptureFixture) -> list[tuple[str, str]]:
    return [(r.levelname, r.getMessage()) for r in caplog.records if r.name == LOGGER.name]


def test_peers_coming_up_within_the_grace_are_info_and_recovery_is_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER.name)
    clock = Clock()
    log = PeerLog(LOGGER, grace=60, first_reminder=300, max_reminder=3600, clock=clock)
    for _ in range(15):  # a sync every 2 s for 30 s
        log.failed("chain-b", "sync", "peer_unreachable", unreachable=True)
        clock.now += 2
    log.succeeded("chain-b", "sync")
    log.succeeded("chain-b", "sync")
    seen = levels(caplog)
    assert [lvl for lvl, _ in seen] == ["INFO"] * 16
    assert "works again after 15 failed attempts over 30 s" in seen[-1][1]


def test_a_peer_down_past_the_grace_is_one_warning_then_reminders_with_backoff(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER.name)
    clock = Clock()
    log = PeerLog(LOGGER, grace=60, first_reminder=300, max_reminder=1200, clock=clock)
    for _ in range(int(3 * 3600 / 2)):  # three hours of syncs every 2 s
        log.failed("chain-c", "sync", "peer_unreachable", unreachable=True)
        clock.now += 2
    warnings = [(lvl, m) for lvl, m in levels(caplog) if lvl == "WARNING"]
    # one at 60 s, reminders after 300, 600, 1200, 1200, ... s: 1 + 1 + 1 + (10800 - 60 - 2100) // 1200
    assert len(warnings) == 1 + 3 + (10800 - 60 - 2100) // 1200
    assert "31 attempts over 60 s" in warnings[0][1]
    assert all("still failing" in m for _, m in warnings[1:])
    infos = [m for lvl, m in levels(caplog) if lvl == "INFO"]
    assert len(infos) == 30


def test_a_refusal_is_a_warning_at_once_and_a_new_code_starts_over(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER.name)
    clock = Clock()
    log = PeerLog(LOGGER, clock=clock)
    for _ in range(10):
        log.failed("chain-b", "sync", "manifest_version", unreachable=False)
        clock.now += 2
    log.failed("chain-b", "sync", "bad_signature", unreachable=False)
    assert [lvl for lvl, _ in levels(caplog)] == ["WARNING", "WARNING"]


def test_a_real_node_started_before_its_peer_logs_no_warning_and_one_recovery(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """``watchnet serve`` for chain-a with chain-b down for ~8 s (four syncs), then chain-b up."""
    network = LocalNetwork(tmp_path_factory.mktemp("peerlog"), ["chain-a", "chain-b"], sync_interval="2s")
    network.create()
    a = network.node("chain-a")
    try:
        network.start(only=["chain-a"])
        wait_for(lambda: a.log_file.read_text().count("the peer may still be starting") >= 3, timeout=60)
        network.node("chain-b").start()
        wait_for(lambda: "sync with chain-b works again" in a.log_file.read_text(), timeout=60)
    finally:
        network.stop()
    records = [json.loads(line) for line in a.log_file.read_text().splitlines() if line.startswith("{")]
    about_b = [r for r in records if "chain-b" in r.get("message", "") and "sync" in r.get("message", "")]
    assert [r["level"] for r in about_b if r["level"] != "INFO"] == []
    assert sum("works again" in r["message"] for r in about_b) == 1
    assert sum("may still be starting" in r["message"] for r in about_b) >= 3
