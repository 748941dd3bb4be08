"""The stream reader keeps only the latest frame and backs off when a stream is down; the camera
loop survives its faults. Real clips through OpenCV's FFmpeg backend; faults injected where named.
"""

from __future__ import annotations

import itertools
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from node.camera import worker as camera_worker
from node.camera.stream import StreamReader
from node.camera.worker import CameraLoop, NodeClient, Worker
from node.config import CameraSettings
from node.demo.network import free_port
from tests.camera_clip import make_clip


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_clip(tmp_path_factory.mktemp("clips") / "clip.mp4", strangers_s=1.0, person_s=1.0)


def test_a_slow_consumer_gets_the_newest_frame_never_a_queue(clip: Path) -> None:
    reader = StreamReader("door", str(clip), sample_fps=30)  # decode every frame of the 10 fps clip
    reader.start()
    taken = []
    try:
        while not reader.drained:
            frame = reader.take(timeout=1.0)
            if frame is not None:
                taken.append(frame.seq)
            time.sleep(0.5)  # a consumer five times slower than the camera
    finally:
        reader.stop()
    assert reader.status.state == "ended" and reader.status.frames == 30
    assert reader.status.decoded == 30
    assert 4 <= len(taken) <= 8, taken
    gaps = [b - a for a, b in itertools.pairwise(taken)]
    assert min(gaps) >= 3, taken  # the frames in between were replaced, not queued
    assert taken[-1] == 30 and reader.take(timeout=0.1) is None  # the last frame, then nothing


def test_a_stream_that_is_down_is_retried_with_a_doubling_capped_backoff() -> None:
    port = free_port()  # nothing listens there
    reader = StreamReader(
        "door", f"rtsp://u:pw@127.0.0.1:{port}/cam", sample_fps=5, backoff_start=0.1, backoff_max=0.4
    )
    reader.start()
    seen = set()
    try:
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            seen.add(reader.status.retry_in)
            time.sleep(0.02)
    finally:
        reader.stop()
    assert reader.status.connects == 0 and reader.status.last_error == "open_failed"
    assert {0.1, 0.2, 0.4} <= seen and max(seen) == 0.4, seen
    assert reader.status.state == "stopped"
    assert "pw" not in repr(reader) and "u:***@" in repr(reader)


class FlakyPipeline:
    """Detection that fails its first ``failures`` calls (a fault injected into the loop), then
    finds no face."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls = 0

    def detect(self, image: Any) -> list[Any]:
        self.calls += 1
        if self.calls <= self.failures:
            raise RuntimeError("injected")
        return []

    def embed_crops(self, crops: list[Any]) -> list[Any]:
        return []


def test_a_failing_loop_is_logged_counted_backed_off_and_goes_on(
    clip: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(camera_worker, "RETRY_START", 0.05)
    camera = CameraSettings(id="door", site="shibuya-01", url=str(clip), sample_fps=5)
    pipeline = FlakyPipeline(failures=3)
    loop = CameraLoop(camera, pipeline, NodeClient("http://127.0.0.1:9", "unused"))  # type: ignore[arg-type]
    worker = Worker([loop], status_file=None)
    runner = threading.Thread(target=worker.run, daemon=True)
    runner.start()
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and loop.reader.status.state != "ended":
            time.sleep(0.1)
    finally:
        worker.stop.set()
        runner.join(15)
    status = loop.status()
    assert status["errors"] == 3 and status["last_error"] == "RuntimeError", status
    assert status["sampled"] >= 5, status  # it went on sampling after the faults
    assert status["state"] == "ended" and not runner.is_alive()
