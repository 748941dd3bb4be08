"""One status per peer from all its signals (issue #18), and the warning for an endpoint without TLS.

The network page once showed a green "OK" beside a red failure count and an error. The table
below drives ``peer_health`` through each combination of signals that mattered, including that
one; ``error_standing`` says whether the stored error is newer than the last success.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from node.federation.health import (
    FAILING_AFTER,
    PeerHealth,
    PeerSignals,
    endpoint_warning,
    error_standing,
    peer_health,
)

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
SYNCED = {"stored_status": "ok", "last_sync_at": T0, "last_contact": T0 + timedelta(seconds=5)}

CASES: list[tuple[str, PeerSignals, PeerHealth, str | None]] = [
    ("all well", PeerSignals(membership="active", **SYNCED), PeerHealth.OK, None),
    ("nothing yet", PeerSignals(membership="active"), PeerHealth.NEVER_SYNCED, None),
    (
        "was green OK beside failures and an error",
        PeerSignals(membership="active", failures=2, last_error="timed out", **SYNCED),
        PeerHealth.DEGRADED,
        "current",
    ),
    (
        "failures past the threshold",
        PeerSignals(membership="active", failures=FAILING_AFTER, last_error="refused", **SYNCED),
        PeerHealth.FAILING,
        "current",
    ),
    (
        "one failure and never worked",
        PeerSignals(membership="active", failures=1, last_error="connection refused"),
        PeerHealth.FAILING,
        "current",
    ),
    (
        "circuit open",
        PeerSignals(membership="active", failures=1, circuit="open", last_error="timed out", **SYNCED),
        PeerHealth.UNREACHABLE,
        "current",
    ),
    (
        "forked beats an open circuit",
        PeerSignals(
            membership="active",
            stored_status="forked",
            circuit="open",
            last_error="head contradicts",
            last_sync_at=T0,
        ),
        PeerHealth.FORKED,
        "current",
    ),
    (
        "suspended, even if syncing looked fine",
        PeerSignals(membership="suspended", **SYNCED),
        PeerHealth.SUSPENDED,
        None,
    ),
    (
        "suspended beats failures",
        PeerSignals(membership="suspended", failures=9, last_error="refused", **SYNCED),
        PeerHealth.SUSPENDED,
        "current",
    ),
    ("removed", PeerSignals(membership="removed", **SYNCED), PeerHealth.REMOVED, None),
    (
        "an error left over with no failure counted is older",
        PeerSignals(membership="active", last_error="old", **SYNCED),
        PeerHealth.OK,
        "older",
    ),
]


@pytest.mark.parametrize(("signals", "health", "standing"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_one_status_from_all_signals(signals: PeerSignals, health: PeerHealth, standing: str | None) -> None:
    assert peer_health(signals) is health
    assert error_standing(signals) == standing


def test_never_ok_beside_failures_or_a_current_error() -> None:
    """Whatever the other signals, a peer with failures counted is not OK."""
    for failures in range(1, 6):
        for circuit in ("closed", "half_open", "open"):
            for contact in (None, T0):
                signals = PeerSignals(
                    membership="active",
                    stored_status="ok",
                    failures=failures,
                    last_sync_at=T0,
                    last_contact=contact,
                    circuit=circuit,
                    last_error="x",
                )
                assert peer_health(signals) is not PeerHealth.OK
                assert error_standing(signals) == "current"


ENDPOINTS = [
    ("https://chain-a.example.jp", None),
    ("https://127.0.0.1:8443", None),
    ("http://chain-a.example.jp", "http"),
    ("http://192.0.2.10:8470", "http"),
    ("http://127.0.0.1:8470", "http-loopback"),
    ("http://[::1]:8470", "http-loopback"),
    ("http://localhost:8470", "http-loopback"),
    ("ftp://chain-a.example.jp", "not-http"),
]


@pytest.mark.parametrize(("endpoint", "warning"), ENDPOINTS)
def test_an_endpoint_without_tls_is_flagged(endpoint: str, warning: str | None) -> None:
    assert endpoint_warning(endpoint) == warning


def test_the_network_page_shows_the_one_status_a_dated_error_and_the_http_flag(tmp_path: Path) -> None:
    """On the real page: a peer that failed twice since its last sync is "Degraded", never a green
    OK, its error is dated by that sync, the http endpoints of the example group are flagged, and once
    the organisation suspends it the same peer reads "Suspended"."""
    from sqlmodel import Session

    from governance.description import set_member_status
    from governance.manifest import MemberStatus
    from node.storage.models import PeerState
    from tests.console_app import loaded_node
    from tests.factories import KEYS, signed_manifest
    from tests.test_console import Console, run

    pages: list[str] = []
    with loaded_node(tmp_path) as node:
        with Session(node.context.engine) as session:
            session.add(
                PeerState(
                    peer="chain-b",
                    tree_size=4,
                    status="ok",
                    failures=2,
                    last_error="peer answered 503",
                    last_sync_at=T0,
                )
            )
            session.commit()

        async def scenario(browser: Callable[[], Awaitable[Console]]) -> None:
            b = await browser()
            await b.login("off1")
            for lang in ("en", "ja"):
                status, text, _ = await b.get(f"/console/network?lang={lang}")
                assert status == 200
                pages.append(text)
            # the organisation suspends chain-b: the same failures now read "Suspended"
            v2 = set_member_status(node.context.manifest, "chain-b", MemberStatus.SUSPENDED)
            offered = node.context.manifests.offer(
                signed_manifest(v2, KEYS[0], KEYS[1]), datetime.now(UTC).replace(microsecond=0), "test"
            )
            assert offered.outcome == "accepted"
            status, text, _ = await b.get("/console/network?lang=en")
            pages.append(text)

        run(node.context, scenario)
    en, ja, suspended = pages
    row = re.search(r'<tr data-peer="chain-b".*?</tr>', suspended, re.S)
    assert row and 'data-health="suspended"' in row.group(0) and ">Suspended<" in row.group(0)
    assert "no queries and no data are exchanged" in row.group(0)
    row = re.search(r'<tr data-peer="chain-b".*?</tr>', en, re.S)
    assert row, en[:2000]
    assert 'data-health="degraded"' in row.group(0) and ">Degraded<" in row.group(0)
    assert "health-ok" not in row.group(0) and "sync-ok" not in row.group(0)
    assert 'data-error="current"' in row.group(0) and "Since the last successful sync" in row.group(0)
    assert "peer answered 503" in row.group(0)
    assert en.count('data-endpoint-warning="http-loopback"') == 2
    assert "Use https in production" in en
    assert "一部失敗" in ja and "ローカルのデモでのみ許容" in ja
