"""The camera worker against a real RTSP stream, a real node and the real face pipeline.

Debian's ffmpeg publishes a clip made from the shipped photos to a small RTSP server
(``tests/rtsp_relay.py``); ``watchnet camera run`` plays it as an IP camera's stream, tracks the
faces and asks the node as the camera account. The registered person walks past among strangers:
exactly one alert, naming the camera, site and gate. The stream is killed and published again:
the worker reconnects and keeps working. Strangers leave nothing: no file, no log line with data,
no alert, and the stream's password appears nowhere.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from node.context import NodeContext
from node.demo.network import free_port
from node.demo.story import photo_path
from protocol.canonical import b64url_encode
from tests.camera_clip import make_clip
from tests.nodeproc import PASSWORD, NodeProcess, cli
from tests.rtsp_relay import RtspRelay

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.skipif(
    shutil.which("ffmpeg") is None and os.environ.get("CI") != "true",
    reason="needs Debian's ffmpeg (apt install ffmpeg); CI must have it",
)
SECRET = "Cam-Pa55word"
LONG_BASE64 = re.compile(r"[A-Za-z0-9_-]{200,}")
"""An embedding (2,048 bytes) or an image in base64: no log line may hold one."""


def _status(port: int) -> dict[str, Any]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/status", timeout=5) as response:
        data: dict[str, Any] = json.loads(response.read())
        return data


def _camera(port: int) -> dict[str, Any]:
    camera: dict[str, Any] = _status(port)["cameras"][0]
    return camera


def _wait(what: str, check: Any, timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except OSError as e:
            last = e
        else:
            if last:
                return last
        time.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})")


def _publish(clip: Path, rtsp_port: int, *, loop: bool = False) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            "ffmpeg", "-hide_banner", "-loglevel", "error", "-re",
            *(["-stream_loop", "-1"] if loop else []),
            "-i", str(clip), "-c", "copy", "-f", "rtsp", "-rtsp_transport", "tcp",
            f"rtsp://127.0.0.1:{rtsp_port}/cam",
        ],
        stdin=subprocess.DEVNULL,
    )  # fmt: skip


def camera_node(directory: Path) -> Iterator[NodeProcess]:
    """A node with a camera account ``cam1`` for site ``shibuya-01``, serving until closed."""
    n = NodeProcess.create(directory)
    cli(
        "user", "add", "--node", str(n.directory), "cam1", "--role", "camera", "--site", "shibuya-01",
        "--password-stdin", stdin=PASSWORD + "\n",
    )  # fmt: skip
    n.tokens["cam1"] = cli("user", "token", "--node", str(n.directory), "cam1").strip()
    n.start()
    yield n
    n.stop()


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    yield from camera_node(tmp_path_factory.mktemp("camera-worker"))


def _operator_page(node: NodeProcess, path: str = "/console/operator?lang=en") -> str:
    """A console page as the operator sees it, signed in as a browser would (cookie, CSRF token)."""
    import requests

    from tests.test_console import CSRF_RE

    with requests.Session() as browser:
        match = CSRF_RE.search(browser.get(f"{node.url}/console/login?lang=en", timeout=10).text)
        assert match
        form = {"csrf": match.group(1), "username": "op1", "password": PASSWORD}
        browser.post(f"{node.url}/console/login?lang=en", data=form, timeout=10)
        page = browser.get(f"{node.url}{path}", timeout=10)
        assert page.status_code == 200, page.text[:300]
        return page.text


def _register_person(node: NodeProcess) -> str:
    body = {
        "image": b64url_encode(photo_path("yaoming.jpg").read_bytes()),
        "category": "shoplifting",
        "evidence": {"kind": "police-report", "reference": "TKY-2026-0042"},
        "incident_date": "2026-11-01",
        "site": "shibuya-01",
    }
    status, state = node.call("POST", "/v1/entries", "reg1", body)
    assert status == 201, state
    status, state = node.call("POST", f"/v1/entries/{state['entry_id']}/approve", "off1")
    assert status == 200, state
    return str(state["entry_id"])


def test_the_worker_alerts_once_reconnects_and_keeps_nothing_of_strangers(
    node: NodeProcess, tmp_path: Path
) -> None:
    entry_id = _register_person(node)
    clips = tmp_path / "clips"
    clips.mkdir()
    strangers = make_clip(clips / "strangers.mp4", person=False, strangers_s=1.5)
    passing = make_clip(clips / "passing.mp4", strangers_s=2.0, person_s=4.0)
    rtsp_port, status_port = free_port(), free_port()
    url = f"rtsp://viewer:{SECRET}@127.0.0.1:{rtsp_port}/cam"
    cli(
        "camera", "add", "--node", str(node.directory), "door", "--site", "shibuya-01", "--gate", "north",
        "--url-stdin", "--sample-fps", "5", "--min-face-pixels", "30", stdin=url + "\n",
    )  # fmt: skip
    token_file = tmp_path / "camera.token"
    token_file.write_text(node.tokens["cam1"] + "\n", encoding="utf-8")
    before = {p.name for p in node.directory.iterdir()}
    relay = RtspRelay(rtsp_port)
    relay.start()
    worker_log = tmp_path / "camera.log"
    publisher = _publish(strangers, rtsp_port, loop=True)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with worker_log.open("wb") as log:
        worker = subprocess.Popen(
            [
                sys.executable, "-m", "node.cli", "camera", "run", "--node", str(node.directory),
                "--url", node.url, "--token-file", str(token_file), "--status-port", str(status_port),
            ],
            stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT,
        )  # fmt: skip
    try:
        # strangers pass: faces found and asked about, no alert
        up = _wait("the stream up with faces", lambda: (c := _camera(status_port))["faces"] >= 10 and c, 60)
        assert up["state"] == "up" and up["url"] == f"rtsp://viewer:***@127.0.0.1:{rtsp_port}/cam"
        with urllib.request.urlopen(f"http://127.0.0.1:{status_port}/ready", timeout=5) as ready:
            assert json.loads(ready.read()) == {"ready": True, "not_ready": []}
        _wait("strangers asked about", lambda: _camera(status_port)["submitted_faces"] >= 4, 30)
        assert _camera(status_port)["alerts"] == 0
        # the camera drops (killed): the worker says so and is not ready
        publisher.kill()
        publisher.wait(10)
        down = _wait("the drop seen", lambda: (c := _camera(status_port))["state"] != "up" and c, 20)
        assert down["state"] in ("reconnecting", "connecting", "no_frames"), down
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{status_port}/ready", timeout=5)
            raise AssertionError("ready while the camera is down")
        except urllib.error.HTTPError as e:
            assert e.code == 503 and json.loads(e.read())["not_ready"] == ["door"]
        # it comes back with the registered person walking past among strangers
        publisher = _publish(passing, rtsp_port)
        _wait("reconnected", lambda: (c := _camera(status_port))["state"] == "up" and c["connects"] >= 2, 30)
        publisher.wait(30)
        alerted = _wait("the alert", lambda: (c := _camera(status_port))["alerts"] >= 1 and c, 20)
        time.sleep(2)  # the last strangers of the clip, then the stream ends
        _, listed = node.call("GET", "/v1/alerts", "op1")
        alerts = [a for a in listed["alerts"]]
        assert [(a["entry_id"], a["camera"], a["site"], a["gate"]) for a in alerts] == [
            (entry_id, "door", "shibuya-01", "north")
        ], alerts
        assert "door / north" in _operator_page(node)
        context = NodeContext.load(node.directory)  # the operator decides by the camera's own face
        try:
            crop = cv2.imdecode(np.frombuffer(context.alerts.camera_crop(alerts[0]["alert_id"]), np.uint8), 1)
        finally:
            context.engine.dispose()
        assert crop.shape == (112, 112, 3)
        final = _camera(status_port)
        assert final["reconnects"] >= 1 and final["alerts"] == alerted["alerts"]
        assert final["latency_p99_ms"] is not None and final["latency_p99_ms"] < 2000, final
        with urllib.request.urlopen(f"http://127.0.0.1:{status_port}/metrics", timeout=5) as metrics:
            text = metrics.read().decode()
        assert 'watchnet_camera_alerts_total{camera="door",site="shibuya-01"}' in text
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
    # nothing of the strangers, and no password, in any file the worker or the node wrote
    after = {p.name for p in node.directory.iterdir()}
    assert after - before == {"camera-status.json"}, after - before
    lines = worker_log.read_text(encoding="utf-8").splitlines()
    assert lines and all(json.loads(line) for line in lines), lines[:5]
    for path in (worker_log, node.log_file, node.directory / "camera-status.json"):
        text = path.read_text(encoding="utf-8", errors="replace")
        assert SECRET not in text, path
        assert not LONG_BASE64.search(text), path
    accounts = json.loads(cli("user", "list", "--node", str(node.directory), "--json"))
    camera_account = next(a["id"] for a in accounts if a["username"] == "cam1")
    _, audit = node.call("GET", "/v1/audit?after=0", "aud1")
    asked = [
        r["target"]
        for r in audit["records"]
        if r["action"] == "POST /v1/match" and r["actor"] == camera_account
    ]
    counted = re.compile(r"camera=door site=shibuya-01 faces=\d+ hits=[01]")
    assert len(asked) >= 3 and all(counted.fullmatch(t) for t in asked if t), asked[:5]  # counts only
    assert sum(t.endswith("hits=1") for t in asked) >= 1
    for record in audit["records"]:
        assert SECRET not in json.dumps(record)
    print("camera status at the end:", json.dumps(final, sort_keys=True))
