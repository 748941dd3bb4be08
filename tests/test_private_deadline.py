"""The private-mode deadline follows the faces asked and what the peer was measured to cost."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from node.private.deadline import PRIOR_FACE_SECONDS, PrivateDeadlines


def deadlines() -> PrivateDeadlines:
    return PrivateDeadlines(base=5.0, cap=60.0, max_faces=16)


def test_the_deadline_grows_with_the_faces_and_stops_at_the_cap() -> None:
    d = deadlines()
    assert d.round1("chain-a", 1) < d.round1("chain-a", 16)
    assert d.round1("chain-a", 16) > 5.0 + 16 * PRIOR_FACE_SECONDS, "a margin above the expected work"
    d.timed_out("chain-a", 16, 60.0)
    assert d.round1("chain-a", 16) == 60.0


def test_a_slow_peer_gets_fewer_faces_per_message_and_a_fast_one_the_wire_limit() -> None:
    d = deadlines()
    assert d.faces_per_message("chain-a") == 16
    d.measured("chain-a", 4, 4 * 2.0)
    assert d.faces_per_message("chain-a") < 16
    assert d.round1("chain-a", d.faces_per_message("chain-a")) <= 60.0


def test_a_timeout_lengthens_the_next_deadline() -> None:
    d = deadlines()
    before = d.round1("chain-a", 16)
    d.timed_out("chain-a", 16, before)
    assert d.round1("chain-a", 16) > before
    assert d.round1("chain-b", 16) == before, "costs are per peer"


def test_one_quick_answer_does_not_undo_a_slow_history() -> None:
    d = deadlines()
    d.measured("chain-a", 10, 10 * 1.0)
    d.measured("chain-a", 10, 10 * 0.01)
    assert d.face_cost("chain-a") > 0.5


@given(
    faces=st.integers(min_value=1, max_value=16),
    samples=st.lists(st.floats(min_value=0.0, max_value=100.0), max_size=8),
)
def test_the_deadline_is_always_within_base_and_cap(faces: int, samples: list[float]) -> None:
    d = deadlines()
    for s in samples:
        d.measured("p", faces, s * faces)
    assert 5.0 <= d.round1("p", faces) <= 60.0
    assert 1 <= d.faces_per_message("p") <= 16
