"""The replay guard: the window, the nonce cache, its memory bound, and a clock that misbehaves."""

from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.errors import (
    ClockSkewError,
    ConfigurationError,
    FreshnessError,
    ReplayCacheFullError,
    ReplayError,
)
from protocol.replay import ReplayGuard
from tests.factories import T0

W = timedelta(seconds=60)


def s(seconds: float) -> timedelta:
    return timedelta(seconds=seconds)


def test_fresh_message_is_recorded_once() -> None:
    guard = ReplayGuard(window=W)
    guard.check("chain-a", b"n1", T0, T0)
    assert len(guard) == 1
    with pytest.raises(ReplayError, match="already seen at 2026-11-01T09:00:00Z"):
        guard.check("chain-a", b"n1", T0, T0 + s(30))
    guard.check("chain-b", b"n1", T0, T0 + s(30))
    guard.check("chain-a", b"n2", T0, T0 + s(30))
    assert len(guard) == 3


WINDOW_CASES: list[tuple[str, timedelta, type[Exception] | None]] = [
    ("exactly-window-old", -W, None),
    ("one-second-too-old", -W - s(1), ClockSkewError),
    ("exactly-window-ahead", W, None),
    ("one-second-too-far-ahead", W + s(1), ClockSkewError),
    ("a-day-old", -timedelta(days=1), ClockSkewError),
    ("now", s(0), None),
]


@pytest.mark.parametrize(("offset", "error"), [c[1:] for c in WINDOW_CASES], ids=[c[0] for c in WINDOW_CASES])
def test_issued_at_window_edges(offset: timedelta, error: type[Exception] | None) -> None:
    guard = ReplayGuard(window=W)
    if error is None:
        guard.check("chain-a", b"n", T0 + offset, T0)
        assert len(guard) == 1
    else:
        with pytest.raises(error):
            guard.check("chain-a", b"n", T0 + offset, T0)
        assert len(guard) == 0


def test_nonces_are_forgotten_only_when_their_message_would_be_stale() -> None:
    guard = ReplayGuard(window=W)
    guard.check("chain-a", b"n1", T0, T0)
    guard.check("chain-a", b"n2", T0 + s(30), T0 + s(30))
    guard.check("chain-a", b"n3", T0 + s(60), T0 + s(60))
    assert len(guard) == 3
    guard.check("chain-a", b"n4", T0 + s(61), T0 + s(61))
    assert len(guard) == 3
    with pytest.raises(ClockSkewError):
        guard.check("chain-a", b"n1", T0, T0 + s(61))
    with pytest.raises(ReplayError):
        guard.check("chain-a", b"n2", T0 + s(30), T0 + s(90))
    guard.check("chain-a", b"n5", T0 + s(200), T0 + s(200))
    assert len(guard) == 1


def test_full_cache_refuses_instead_of_forgetting() -> None:
    guard = ReplayGuard(window=W, max_entries=2)
    guard.check("chain-a", b"n1", T0, T0)
    guard.check("chain-a", b"n2", T0, T0 + s(1))
    with pytest.raises(ReplayCacheFullError, match="2/2 nonces") as info:
        guard.check("chain-a", b"n3", T0, T0 + s(2))
    assert isinstance(info.value, ReplayError) and info.value.code == "replay_cache_full"
    with pytest.raises(ReplayError, match="already seen"):
        guard.check("chain-a", b"n1", T0, T0 + s(3))
    guard.check("chain-a", b"n3", T0 + s(61), T0 + s(61))
    assert len(guard) == 1


def test_a_clock_stepping_back_cannot_reopen_a_forgotten_nonce() -> None:
    guard = ReplayGuard(window=W)
    guard.check("chain-a", b"n1", T0, T0)
    guard.check("chain-b", b"other", T0 + s(100), T0 + s(100))
    assert len(guard) == 1
    with pytest.raises(ClockSkewError, match="latest clock reading"):
        guard.check("chain-a", b"n1", T0, T0 + s(30))
    guard.check("chain-a", b"n2", T0 + s(45), T0 + s(40))


def test_configuration_limits() -> None:
    for window in (timedelta(0), -W, timedelta(hours=2)):
        with pytest.raises(ConfigurationError, match="replay window"):
            ReplayGuard(window=window)
    with pytest.raises(ConfigurationError, match="replay cache size"):
        ReplayGuard(max_entries=0)
    assert ReplayGuard().window == W


events = st.lists(
    st.tuples(
        st.sampled_from(["chain-a", "chain-b"]),
        st.sampled_from([b"n1", b"n2", b"n3"]),
        st.integers(-90, 300),
        st.integers(-30, 120),
    ),
    max_size=60,
)


@settings(max_examples=300, deadline=None)
@given(steps=events, max_entries=st.integers(1, 8))
def test_no_message_is_ever_accepted_twice(
    steps: list[tuple[str, bytes, int, int]], max_entries: int
) -> None:
    """Whatever the clock does (forwards, backwards, jumps), an identical message passes at most once."""
    guard = ReplayGuard(window=W, max_entries=max_entries)
    accepted: set[tuple[str, bytes, int]] = set()
    clock = 0
    for sender, nonce, issued, tick in steps:
        clock += tick
        now, issued_at = T0 + s(clock), T0 + s(issued)
        try:
            guard.check(sender, nonce, issued_at, now)
        except FreshnessError:
            assert len(guard) <= max_entries
            continue
        assert abs(now - issued_at) <= W
        key = (sender, nonce, issued)
        assert key not in accepted
        accepted.add(key)
        assert len(guard) <= max_entries


@settings(max_examples=200, deadline=None)
@given(
    offsets=st.lists(st.integers(0, 600), min_size=1, max_size=40).map(sorted),
)
def test_with_a_forward_clock_fresh_distinct_nonces_always_pass(offsets: list[int]) -> None:
    """Liveness: honest peers (distinct nonces, current issued_at, clock moving forward) are never refused."""
    guard = ReplayGuard(window=W, max_entries=len(offsets))
    for i, offset in enumerate(offsets):
        now = T0 + s(offset)
        guard.check("chain-a", i.to_bytes(16, "big"), now, now)
