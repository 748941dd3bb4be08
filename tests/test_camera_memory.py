"""Nothing kept of people who match nothing, down to the processes' memory (#19).

The camera worker plays a real RTSP stream of strangers (``tests/rtsp_relay.py``, Debian's
ffmpeg) and asks a real node about each track. The test decodes the same clip with the same
OpenCV and runs the same face pipeline, so it knows the exact bytes the worker computed: each
stranger's embedding (float32, and the base64 the worker sends and the node parses) and each
aligned face crop. It reads both processes' memory (``/proc/PID/mem`` over every readable
mapping, as the demo does for a peer, ``node.demo.story.process_holds``):

- while the strangers are in view the worker holds their embeddings (a live track must): the
  scan finds them, so it is able to;
- once their tracks have ended, no byte window of any stranger's embedding or crop is left in
  the worker or the node (``node.scrub``: glibc overwrites what is freed), nor in any file either
  wrote (the node's database, logs and status, the worker's log);
- the registered person then walks past among strangers: the one alert is raised and kept, and
  still nothing of the first strangers is found.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from node.demo.network import free_port
from node.face.models import ModelPack
from node.face.pipeline import FacePipeline
from tests.camera_clip import make_clip
from tests.memscan import held, held_in
from tests.nodeproc import NodeProcess, cli
from tests.rtsp_relay import RtspRelay
from tests.test_camera_worker import _camera, _publish, _register_person, _wait, camera_node

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.skipif(
    shutil.which("ffmpeg") is None and os.environ.get("CI") != "true",
    reason="needs Debian's ffmpeg (apt install ffmpeg); CI must have it",
)
MIN_FACE_PIXELS = 30


def stranger_blobs(clip: Path) -> tuple[list[bytes], list[str]]:
    """Every stranger's embedding (its float32 bytes and its base64) and aligned crop (BGR, and
    RGB as the recognizer's input is made) that the worker may have computed, with what each is:
    every frame of ``clip`` decoded by the same OpenCV and seen by the same pipeline."""
    pipeline = FacePipeline(ModelPack.locate())
    capture = cv2.VideoCapture(str(clip), cv2.CAP_FFMPEG)
    blobs: dict[bytes, str] = {}
    try:
        while True:
            ok, image = capture.read()
            if not ok:
                break
            faces = [
                f
                for f in pipeline.detect(np.asarray(image, dtype=np.uint8))
                if f.quality.face_pixels >= MIN_FACE_PIXELS
            ]
            for face, embedding in zip(faces, pipeline.embed_crops([f.crop for f in faces]), strict=True):
                blobs[embedding.raw] = "embedding"
                blobs[embedding.to_str().encode("ascii")] = "embedding-base64"
                blobs[face.crop.tobytes()] = "crop"
                blobs[np.ascontiguousarray(face.crop[:, :, ::-1]).tobytes()] = "crop-rgb"
    finally:
        capture.release()
    return list(blobs), list(blobs.values())


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    yield from camera_node(tmp_path_factory.mktemp("camera-memory"))


def _found(pid: int, blobs: list[bytes], kinds: list[str]) -> dict[str, int]:
    """How many blobs of each kind ``pid`` holds."""
    counts: dict[str, int] = {}
    for i in held([pid], blobs):
        counts[kinds[i]] = counts.get(kinds[i], 0) + 1
    return counts


def test_strangers_leave_nothing_in_the_worker_or_the_nodes_memory(node: NodeProcess, tmp_path: Path) -> None:
    entry_id = _register_person(node)
    clips = tmp_path / "clips"
    clips.mkdir()
    strangers = make_clip(clips / "strangers.mp4", person=False, strangers_s=1.5)
    passing = make_clip(clips / "passing.mp4", strangers_s=1.0, person_s=3.0)
    blobs, kinds = stranger_blobs(strangers)
    assert kinds.count("embedding") >= 20, kinds  # two strangers in 30 frames, each frame's own bytes
    rtsp_port, status_port = free_port(), free_port()
    cli(
        "camera", "add", "--node", str(node.directory), "door", "--site", "shibuya-01", "--gate", "north",
        "--url-stdin", "--sample-fps", "5", "--min-face-pixels", str(MIN_FACE_PIXELS),
        stdin=f"rtsp://127.0.0.1:{rtsp_port}/cam\n",
    )  # fmt: skip
    token_file = tmp_path / "camera.token"
    token_file.write_text(node.tokens["cam1"] + "\n", encoding="utf-8")
    relay = RtspRelay(rtsp_port)
    relay.start()
    worker_log = tmp_path / "camera.log"
    publisher = _publish(strangers, rtsp_port, loop=True)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    assert node.process is not None
    with worker_log.open("wb") as log:
        worker = subprocess.Popen(
            [
                sys.executable, "-m", "node.cli", "camera", "run", "--node", str(node.directory),
                "--url", node.url, "--token-file", str(token_file), "--status-port", str(status_port),
            ],
            stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT,
        )  # fmt: skip
    try:
        _wait("strangers asked about", lambda: _camera(status_port)["submitted_faces"] >= 6, 90)
        live = _found(worker.pid, blobs, kinds)
        print("while the strangers are in view: worker", live, "node", _found(node.process.pid, blobs, kinds))
        assert live.get("embedding", 0) >= 1, live  # a live track holds its best face: the scan sees it
        publisher.kill()
        publisher.wait(10)
        _wait("every track ended", lambda: (c := _camera(status_port))["tracks"] == 0 and c, 20)
        time.sleep(3)
        in_worker, in_node = _found(worker.pid, blobs, kinds), _found(node.process.pid, blobs, kinds)
        print("after the tracks ended: worker", in_worker, "node", in_node)
        assert _camera(status_port)["alerts"] == 0
        assert in_worker == {} and in_node == {}, (in_worker, in_node)
        # the registered person walks past among strangers: the alert is raised and kept
        publisher = _publish(passing, rtsp_port, loop=True)
        _wait("the alert", lambda: _camera(status_port)["alerts"] >= 1, 90)
        publisher.kill()
        publisher.wait(10)
        _, listed = node.call("GET", "/v1/alerts", "op1")
        assert [(a["entry_id"], a["camera"], a["gate"]) for a in listed["alerts"]] == [
            (entry_id, "door", "north")
        ], listed
        _wait("every track ended", lambda: _camera(status_port)["tracks"] == 0, 20)
        assert _found(worker.pid, blobs, kinds) == {} and _found(node.process.pid, blobs, kinds) == {}
    finally:
        publisher.kill()
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(20)
        finally:
            if worker.poll() is None:
                worker.kill()
            relay.stop()
    assert worker.returncode == 0, worker_log.read_text(errors="replace")[-3000:]
    # nor in any file the node or the worker wrote (its database, logs, status, the worker's log)
    written = [worker_log, *(p for p in node.directory.rglob("*") if p.is_file())]
    leaks = {str(p): sorted({kinds[i] for i in held_in(p.read_bytes(), blobs)}) for p in written}
    assert not any(leaks.values()), {p: k for p, k in leaks.items() if k}
    assert len(written) > 5 and any(p.name.endswith((".db", ".sqlite")) for p in written), written
