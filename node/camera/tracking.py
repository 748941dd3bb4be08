"""Faces tracked across frames, so that one person walking past is one question to the node.

A detection joins the track whose last box it overlaps (IoU) and whose face it resembles
(cosine similarity of the embeddings), or, if the person moved far between two samples, the
track it resembles strongly; each detection joins at most one track, best pairs first. A track
keeps its latest box, a running mean of its embeddings and its best-quality face's embedding
and aligned crop (sent beside it, so that an alert shows the operator the camera's face),
nothing else: no frame. It is *due* (its best face is sent) when it is new, when its
best quality has improved by ``improve_ratio`` since the last send, or ``resend_after`` after the
last send. A track not seen for ``max_age`` seconds ends and everything it held is dropped: a
passer-by who matched nothing leaves nothing in the worker either.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from node.face.pipeline import Quality
from protocol.embedding import Embedding

__all__ = ["Detection", "Track", "Tracker", "face_quality", "iou"]

Box = tuple[float, float, float, float]


def iou(a: Box, b: Box) -> float:
    """Intersection over union of two boxes ``(x1, y1, x2, y2)``."""
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def face_quality(q: Quality) -> float:
    """One number to rank a track's faces: detection confidence, size up to the 112 px the model
    sees, and how frontal the face is (0 for a profile)."""
    size = min(1.0, q.face_pixels / 112.0)
    pose = max(0.0, math.cos(math.radians(min(90.0, abs(q.yaw_degrees)))))
    return q.detection_score * size * pose


@dataclass
class Detection:
    box: Box
    embedding: Embedding
    quality: float
    crop: npt.NDArray[np.uint8] | None = None


@dataclass
class Track:
    id: int
    box: Box
    mean: npt.NDArray[np.float32]
    best: Embedding
    best_quality: float
    first_seen: float
    last_seen: float
    sent_at: float | None = None
    sent_quality: float = 0.0
    retry_at: float = 0.0
    frames: int = 1
    alerted: bool = False
    best_crop: npt.NDArray[np.uint8] | None = None

    def similarity(self, e: Embedding) -> float:
        return float(np.dot(self.mean, e.vector))


@dataclass
class Tracker:
    """The tracks of one camera. Time is the caller's (monotonic seconds), so tests drive it."""

    resend_after: float = 60.0
    max_age: float = 1.5
    iou_min: float = 0.2
    similar_min: float = 0.3
    """With overlap: the least similarity that keeps a face in its track."""
    strong_min: float = 0.5
    """Without overlap (a long step between samples): the similarity that still joins."""
    improve_ratio: float = 1.25
    tracks: list[Track] = field(default_factory=list)
    ended: int = 0
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def update(self, detections: list[Detection], now: float) -> list[Track]:
        """Join ``detections`` to tracks (or start new ones); the tracks whose best face is due now."""
        self.expire(now)
        pairs: list[tuple[float, int, int]] = []
        for ti, track in enumerate(self.tracks):
            for di, d in enumerate(detections):
                overlap, similar = iou(track.box, d.box), track.similarity(d.embedding)
                if (overlap >= self.iou_min and similar >= self.similar_min) or similar >= self.strong_min:
                    pairs.append((overlap + similar, ti, di))
        used_tracks: set[int] = set()
        used_detections: set[int] = set()
        for _, ti, di in sorted(pairs, reverse=True):
            if ti in used_tracks or di in used_detections:
                continue
            used_tracks.add(ti)
            used_detections.add(di)
            self._join(self.tracks[ti], detections[di], now)
        for di, d in enumerate(detections):
            if di not in used_detections:
                self.tracks.append(
                    Track(
                        id=next(self._ids),
                        box=d.box,
                        mean=d.embedding.vector.copy(),
                        best=d.embedding,
                        best_quality=d.quality,
                        best_crop=d.crop,
                        first_seen=now,
                        last_seen=now,
                    )
                )
        return [t for t in self.tracks if t.last_seen == now and self._due(t, now)]

    def _join(self, track: Track, d: Detection, now: float) -> None:
        track.box = d.box
        track.last_seen = now
        track.frames += 1
        mean = track.mean * 0.7 + d.embedding.vector * 0.3
        track.mean = (mean / max(float(np.linalg.norm(mean)), 1e-6)).astype(np.float32)
        if d.quality > track.best_quality:
            track.best, track.best_quality, track.best_crop = d.embedding, d.quality, d.crop

    def _due(self, track: Track, now: float) -> bool:
        if now < track.retry_at:
            return False
        if track.sent_at is None:
            return True
        if track.best_quality >= track.sent_quality * self.improve_ratio:
            return True
        return now - track.sent_at >= self.resend_after

    def sent(self, track: Track, now: float, *, alerted: bool) -> None:
        """The node heard ``track``'s best face."""
        track.sent_at, track.sent_quality = now, track.best_quality
        track.alerted = track.alerted or alerted

    def failed(self, track: Track, now: float, backoff: float) -> None:
        """The node could not be asked: try this track again after ``backoff`` seconds."""
        track.retry_at = now + backoff

    def expire(self, now: float) -> int:
        """End the tracks not seen for ``max_age``; their embeddings and crops are dropped with them."""
        live = [t for t in self.tracks if now - t.last_seen <= self.max_age]
        gone = len(self.tracks) - len(live)
        self.tracks = live
        self.ended += gone
        return gone
