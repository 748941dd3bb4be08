"""Reading one camera's stream: a thread that keeps only the latest frame, and reconnects.

OpenCV's FFmpeg backend opens RTSP, HTTP (MJPEG) and files. The reader thread grabs every frame
the stream sends (a stream that is not read falls behind, and RTSP servers drop slow readers),
decodes at most ``sample_fps`` of them and puts each in a one-frame slot, replacing what is there:
a consumer slower than the camera gets the newest frame, never a queue that grows. When the
stream drops (an error, no frame within the read timeout) the reader closes it and opens it
again after a backoff that doubles from ``BACKOFF_START`` to ``BACKOFF_MAX``; a file source ends
at its last frame (it is read at its own frame rate, as a camera would send it).

The URL is never logged or shown: every message names the camera and its ``redact_url`` form.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from node.config import redact_url

__all__ = [
    "BACKOFF_MAX",
    "BACKOFF_START",
    "Capture",
    "Frame",
    "StreamReader",
    "StreamState",
    "open_capture",
]

log = logging.getLogger("watchnet.camera")

# FFmpeg's and OpenCV's own messages go to stderr as free text, outside the JSON log, and FFmpeg's
# may quote a stream's address: silenced before OpenCV is first loaded (read when it loads)
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")

BACKOFF_START = 0.5
BACKOFF_MAX = 30.0
OPEN_TIMEOUT_MS = 5000
READ_TIMEOUT_MS = 5000
CAPTURE_OPTIONS = "rtsp_transport;tcp|analyzeduration;500000|probesize;1000000"
"""FFmpeg's options for every open (``OPENCV_FFMPEG_CAPTURE_OPTIONS`` overrides them): RTSP over TCP,
and a short probe. OpenCV opens one stream at a time in a process, and FFmpeg's default probe
(5 s, 5 MB) took 3.0-3.3 s an RTSP stream here, so the fourth camera of a worker was up 12 s after
the first; with 0.5 s and 1 MB (the SDP carries the codec's parameters) each open took 0.6-0.9 s."""
FPS_WINDOW = 5.0
"""Seconds of frame arrivals the stream's fps is counted over."""
NO_FRAMES_AFTER = 5.0
"""Seconds without a frame after which an open stream counts as ``no_frames``."""


class Capture(Protocol):
    def isOpened(self) -> bool: ...
    def grab(self) -> bool: ...
    def retrieve(self) -> tuple[bool, Any]: ...
    def get(self, prop: int) -> float: ...
    def release(self) -> None: ...


def is_file_source(url: str) -> bool:
    return url.startswith("/") or url.lower().startswith("file://")


def open_capture(url: str) -> Capture:
    """The stream through OpenCV's FFmpeg backend, with open and read timeouts (RTSP over TCP)."""
    import cv2

    # read by OpenCV's FFmpeg backend at each open; TCP keeps frames whole on a lossy network
    os.environ.setdefault("OPENCV_FFMPEG_CAPTURE_OPTIONS", CAPTURE_OPTIONS)
    source = url[len("file://") :] if url.lower().startswith("file://") else url
    capture: Capture = cv2.VideoCapture(
        source,
        cv2.CAP_FFMPEG,
        [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, OPEN_TIMEOUT_MS, cv2.CAP_PROP_READ_TIMEOUT_MSEC, READ_TIMEOUT_MS],
    )
    return capture


@dataclass(frozen=True)
class Frame:
    """One decoded frame (BGR) and when it was taken off the stream (monotonic seconds)."""

    image: npt.NDArray[np.uint8]
    seq: int
    captured_at: float


@dataclass
class StreamState:
    """What the reader knows of its stream; ``state`` is ``connecting``, ``up``, ``reconnecting``,
    ``ended`` (a file's last frame) or ``stopped``."""

    state: str = "connecting"
    frames: int = 0
    """Frames grabbed from the stream (all of them, decoded or not)."""
    decoded: int = 0
    connects: int = 0
    drops: int = 0
    last_frame_at: float | None = None
    last_error: str = ""
    fps: float = 0.0
    """Frames a second the stream delivered over the last ``FPS_WINDOW`` seconds."""
    retry_in: float = 0.0


class StreamReader:
    """A thread reading ``url``; ``take`` hands out the newest decoded frame once."""

    def __init__(
        self,
        camera_id: str,
        url: str,
        *,
        sample_fps: float,
        opener: Callable[[str], Capture] = open_capture,
        backoff_start: float = BACKOFF_START,
        backoff_max: float = BACKOFF_MAX,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.camera_id = camera_id
        self._url = url
        self.safe_url = redact_url(url)
        self.sample_interval = 1.0 / sample_fps
        self._opener = opener
        self._backoff_start = backoff_start
        self._backoff_max = backoff_max
        self._clock = clock
        self._file = is_file_source(url)
        self._slot: Frame | None = None
        self._seq = 0
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.status = StreamState()
        self._recent: deque[float] = deque(maxlen=1024)

    def __repr__(self) -> str:
        return f"StreamReader({self.camera_id!r}, {self.safe_url!r})"

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"camera-{self.camera_id}", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)

    @property
    def ended(self) -> bool:
        return self.status.state in ("ended", "stopped")

    @property
    def drained(self) -> bool:
        """Ended, and its last frame taken."""
        with self._cond:
            return self.ended and self._slot is None

    def take(self, timeout: float) -> Frame | None:
        """The newest frame not yet taken, waiting up to ``timeout`` for one; ``None`` if none came."""
        deadline = self._clock() + timeout
        with self._cond:
            while self._slot is None and not self._stop.is_set() and not self.ended:
                left = deadline - self._clock()
                if left <= 0:
                    break
                self._cond.wait(left)
            frame, self._slot = self._slot, None
            return frame

    def state_now(self) -> str:
        """``state``, with an open stream that sent nothing for ``NO_FRAMES_AFTER`` s as ``no_frames``."""
        s = self.status
        if s.state == "up":
            last = s.last_frame_at
            if last is None or self._clock() - last > NO_FRAMES_AFTER:
                return "no_frames"
        return s.state

    def _put(self, image: npt.NDArray[np.uint8], at: float) -> None:
        with self._cond:
            self._seq += 1
            self._slot = Frame(image, self._seq, at)  # replaces an untaken frame: never a queue
            self._cond.notify_all()

    def _run(self) -> None:
        backoff = self._backoff_start
        while not self._stop.is_set():
            try:
                delivered = self._read_once()
            except Exception as e:  # noqa: BLE001 (supervised: an OpenCV error must not end the reader)
                delivered = False
                self.status.last_error = type(e).__name__
                log.warning(
                    "camera stream failed", extra={"camera": self.camera_id, "error": type(e).__name__}
                )
            if self._stop.is_set():
                break
            if self._file and self.status.state == "ended":
                break
            if delivered:
                backoff = self._backoff_start
            self.status.state = "reconnecting"
            self.status.retry_in = backoff
            log.info(
                "camera stream down; reconnecting",
                extra={"camera": self.camera_id, "url": self.safe_url, "retry_in_s": round(backoff, 2)},
            )
            self._stop.wait(backoff)
            backoff = min(backoff * 2, self._backoff_max)
        if self.status.state != "ended":
            self.status.state = "stopped"
        with self._cond:
            self._cond.notify_all()

    def _read_once(self) -> bool:
        """Open the stream and read it until it fails; whether it delivered any frame."""
        capture = self._opener(self._url)
        delivered = False
        try:
            if not capture.isOpened():
                self.status.last_error = "open_failed"
                return False
            self.status.connects += 1
            self.status.state = "up"
            self.status.last_error = ""
            self.status.last_frame_at = self._clock()
            log.info("camera stream up", extra={"camera": self.camera_id, "url": self.safe_url})
            native = capture.get(5) if self._file else 0.0  # cv2.CAP_PROP_FPS
            pace = 1.0 / native if self._file and 0 < native <= 120 else 0.0
            next_decode = 0.0
            started = self._clock()
            while not self._stop.is_set():
                if not capture.grab():
                    if self._file and delivered:
                        self.status.state = "ended"
                        log.info("camera file ended", extra={"camera": self.camera_id})
                    else:
                        self.status.drops += 1
                        self.status.last_error = "no_frame"
                    return delivered
                now = self._clock()
                delivered = True
                self._count(now)
                if now >= next_decode:
                    ok, image = capture.retrieve()
                    if ok and image is not None:
                        self.status.decoded += 1
                        self._put(image, now)
                        next_decode = now + self.sample_interval
                if pace:  # a file plays at its own rate, as a camera would send it
                    due = started + self.status.frames * pace
                    if due > now:
                        self._stop.wait(due - now)
            return delivered
        finally:
            capture.release()

    def _count(self, now: float) -> None:
        s = self.status
        self._recent.append(now)
        while self._recent and now - self._recent[0] > FPS_WINDOW:
            self._recent.popleft()
        span = now - self._recent[0]
        s.fps = (len(self._recent) - 1) / span if span >= 1.0 else s.fps
        s.frames += 1
        s.last_frame_at = now
