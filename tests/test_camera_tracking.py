"""Faces tracked across frames (box overlap plus embedding similarity): one passer-by, one question.

The clock is the caller's, so each case drives time itself.
"""

from __future__ import annotations

import numpy as np

from node.camera.tracking import Detection, Tracker, face_quality, iou
from node.face.pipeline import Quality
from protocol.embedding import Embedding
from tests.factories import embedding


def near(seed: int, noise: float, rng: np.random.Generator) -> Embedding:
    """The face of ``seed`` in another frame: the same person, a little different."""
    v = embedding(seed).vector + rng.normal(0, noise, 512).astype(np.float32)
    return Embedding.from_vector(v)


def at(x: float, seed: int, quality: float, rng: np.random.Generator, y: float = 50) -> Detection:
    return Detection((x, y, x + 80, y + 80), near(seed, 0.01, rng), quality)


def test_iou_and_quality() -> None:
    assert iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1.0
    assert iou((0, 0, 10, 10), (20, 20, 30, 30)) == 0.0
    assert abs(iou((0, 0, 10, 10), (5, 0, 15, 10)) - 1 / 3) < 1e-9
    frontal = face_quality(Quality(0.9, 112, 0.0, 100))
    assert frontal == 0.9
    assert face_quality(Quality(0.9, 56, 0.0, 100)) == 0.45
    assert face_quality(Quality(0.9, 112, 60.0, 100)) < frontal / 1.9


def test_one_person_walking_past_is_asked_once() -> None:
    rng = np.random.default_rng(1)
    tracker = Tracker(resend_after=60)
    asked = []
    for i in range(20):  # 4 s at 5 samples a second, moving 10 px a sample
        now = i * 0.2
        for track in tracker.update([at(100 + 10 * i, 7, 0.5, rng)], now):
            asked.append(track.id)
            tracker.sent(track, now, alerted=False)
    assert asked == [1] and len(tracker.tracks) == 1 and tracker.tracks[0].frames == 20


def test_a_markedly_better_face_is_asked_again_a_slightly_better_one_not() -> None:
    rng = np.random.default_rng(2)
    tracker = Tracker(resend_after=60, improve_ratio=1.25)
    (first,) = tracker.update([at(100, 7, 0.5, rng)], 0.0)
    tracker.sent(first, 0.0, alerted=False)
    assert tracker.update([at(105, 7, 0.55, rng)], 0.2) == []  # 10 % better
    (again,) = tracker.update([at(110, 7, 0.7, rng)], 0.4)  # 40 % better than what was sent
    assert again.id == first.id and again.best_quality == 0.7
    tracker.sent(again, 0.4, alerted=False)
    assert tracker.update([at(115, 7, 0.6, rng)], 0.6) == []  # worse: the best stays the one sent


def test_a_track_is_asked_again_after_the_interval() -> None:
    rng = np.random.default_rng(3)
    tracker = Tracker(resend_after=2.0)
    (track,) = tracker.update([at(100, 7, 0.5, rng)], 0.0)
    tracker.sent(track, 0.0, alerted=True)
    asked = []
    for i in range(1, 25):
        for again in tracker.update([at(100, 7, 0.5, rng)], i / 10):
            asked.append(i)
            tracker.sent(again, i / 10, alerted=True)
    assert asked == [20]  # at 2.0 s, once


def test_two_people_are_two_tracks_and_a_stranger_in_the_same_place_is_a_new_one() -> None:
    rng = np.random.default_rng(4)
    tracker = Tracker()
    both = tracker.update([at(100, 7, 0.5, rng), at(400, 8, 0.5, rng)], 0.0)
    assert sorted(t.id for t in both) == [1, 2]
    for t in both:
        tracker.sent(t, 0.0, alerted=False)
    assert tracker.update([at(105, 7, 0.5, rng), at(395, 8, 0.5, rng)], 0.2) == []
    (stranger,) = tracker.update([at(105, 9, 0.5, rng)], 0.4)  # same box, another face
    assert stranger.id == 3


def test_a_long_step_between_samples_keeps_a_strongly_similar_face_in_its_track() -> None:
    rng = np.random.default_rng(5)
    tracker = Tracker()
    (track,) = tracker.update([at(0, 7, 0.5, rng)], 0.0)
    tracker.sent(track, 0.0, alerted=False)
    assert tracker.update([at(400, 7, 0.5, rng, y=200)], 0.5) == []  # no overlap, same person
    assert len(tracker.tracks) == 1


def test_an_unseen_track_ends_and_its_face_is_dropped() -> None:
    rng = np.random.default_rng(6)
    tracker = Tracker(max_age=1.5)
    for track in tracker.update([at(100, 7, 0.5, rng), at(300, 8, 0.5, rng)], 0.0):
        tracker.sent(track, 0.0, alerted=False)
    assert tracker.expire(1.0) == 0
    assert tracker.expire(1.6) == 2 and tracker.tracks == [] and tracker.ended == 2
    (back,) = tracker.update([at(100, 7, 0.5, rng)], 2.0)  # the same person later: a new track, asked
    assert back.id == 3


def test_a_failed_submission_is_retried_after_its_backoff() -> None:
    rng = np.random.default_rng(7)
    tracker = Tracker()
    (track,) = tracker.update([at(100, 7, 0.5, rng)], 0.0)
    tracker.failed(track, 0.0, 1.0)
    assert tracker.update([at(100, 7, 0.5, rng)], 0.5) == []
    assert [t.id for t in tracker.update([at(100, 7, 0.5, rng)], 1.0)] == [track.id]
