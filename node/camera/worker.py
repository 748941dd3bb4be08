"""``watchnet camera run``: every configured camera read, its faces tracked, each track asked once.

One process per store (or per node): a ``StreamReader`` thread per camera keeps the latest frame;
a loop per camera takes it at the camera's ``sample_fps``, detects and embeds the faces at least
``min_face_pixels`` wide with the group's pinned model, drops the frame, updates the camera's
tracks and sends each due track's best face to the node's ``POST /v1/match`` as the camera
account (purpose ``crime-prevention``, the camera, its site and gate). The node raises the alert;
the worker learns only how many, and keeps nothing of anyone.

Every loop is supervised: an exception is logged (its type, never a frame or a face), counted
and retried after a backoff that doubles from 1 s to 60 s, and a loop thread that died anyway is
started again by the main thread. Each camera's state (``up``, ``connecting``, ``reconnecting``,
``no_frames``, ``ended``), its fps, faces a minute and the latency from frame to answer are
written to ``camera-status.json`` every 2 s and, with ``--status-port``, served on 127.0.0.1 as
``/status`` (JSON), ``/ready`` (200 when every camera is up, else 503 naming the others) and
``/metrics`` (Prometheus text).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import requests

from node.camera.stream import StreamReader
from node.camera.tracking import Detection, Tracker, face_quality
from node.config import CAMERA_STATUS_FILE, CameraSettings, NodeConfig
from node.face.pipeline import FacePipeline
from node.files import PRIVATE_FILE, write_atomic
from protocol.canonical import b64url_encode
from protocol.embedding import Embedding
from protocol.errors import ConfigurationError, WatchnetError

__all__ = ["CameraLoop", "NodeClient", "SubmitRefused", "run_worker"]

log = logging.getLogger("watchnet.camera")

PURPOSE = "crime-prevention"
STATUS_FILE = CAMERA_STATUS_FILE
STATUS_EVERY = 2.0
RETRY_START, RETRY_MAX = 1.0, 60.0
SUBMIT_RETRY_START, SUBMIT_RETRY_MAX = 1.0, 30.0
MAX_FACES_PER_FRAME = 64
"""The node takes at most this many embeddings in one request (``MAX_QUERY_EMBEDDINGS``)."""


class SubmitRefused(WatchnetError):
    """The node refused or could not take a submission; ``code`` is its error code."""

    def __init__(self, code: str, message: str, status: int) -> None:
        super().__init__(f"{code}: {message} (HTTP {status})")
        self.code = code
        self.status = status


class NodeClient:
    """The node's HTTP API as the camera account sees it: one endpoint, ``POST /v1/match``."""

    def __init__(self, url: str, token: str, *, timeout: float = 10.0) -> None:
        self.url = url.rstrip("/")
        self._session = requests.Session()
        self._session.headers["Authorization"] = f"Bearer {token}"
        self._timeout = timeout

    def __repr__(self) -> str:
        return f"NodeClient({self.url!r})"

    def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        try:
            response = self._session.post(f"{self.url}{path}", json=body, timeout=self._timeout)
        except requests.RequestException as e:
            raise SubmitRefused("node_unreachable", f"cannot reach the node at {self.url}", 0) from e
        if response.status_code >= 400:
            try:
                error = response.json()
            except ValueError:
                error = {}
            if not isinstance(error, dict):
                error = {}
            raise SubmitRefused(
                str(error.get("error", "http_error")),
                str(error.get("message", response.reason)),
                response.status_code,
            )
        answer = response.json()
        return answer if isinstance(answer, dict) else {}

    def manifest_model(self) -> tuple[str, str]:
        """The model the node's trusted manifest pins (id, weights SHA-256): the worker must embed with it."""
        try:
            response = self._session.get(f"{self.url}/v1/manifest", timeout=self._timeout)
            model = response.json()["signed"]["policy"]["model"]
            return str(model["model_id"]), str(model["weights_sha256"])
        except (requests.RequestException, ValueError, KeyError, TypeError) as e:
            raise ConfigurationError(
                f"could not read the manifest of the node at {self.url} ({type(e).__name__}); "
                "is 'watchnet serve' running there?"
            ) from e

    def submit(
        self,
        camera: CameraSettings,
        embeddings: list[Embedding],
        crops: list[npt.NDArray[np.uint8] | None] | None = None,
    ) -> int:
        """Ask the node about ``embeddings`` seen by ``camera``, with each face's aligned crop when
        every one has it (the node keeps only a matching face's, for the operator); how many
        alerts they raised."""
        body: dict[str, Any] = {
            "embeddings": [e.to_str() for e in embeddings],
            "camera": camera.id,
            "site": camera.site,
            "purpose": PURPOSE,
        }
        jpegs = _jpegs(crops) if crops is not None else None
        if jpegs is not None:
            body["crops"] = jpegs
        if camera.gate:
            body["gate"] = camera.gate
        if camera.ask_network:
            body["network"] = True
        return int(self._post("/v1/match", body).get("alerts", 0))

    def hello(self, camera: CameraSettings) -> None:
        """A frame with no face, to check the token, the role and the camera's site before streaming."""
        import cv2

        ok, jpeg = cv2.imencode(".jpg", np.zeros((32, 32, 3), dtype=np.uint8))
        if not ok:
            raise ConfigurationError("OpenCV could not encode a JPEG; is its build complete?")
        image = b64url_encode(jpeg.tobytes())
        body: dict[str, Any] = {"image": image, "camera": camera.id, "site": camera.site, "purpose": PURPOSE}
        if camera.gate:
            body["gate"] = camera.gate
        self._post("/v1/match", body)


def _jpegs(crops: list[npt.NDArray[np.uint8] | None]) -> list[str] | None:
    """Each crop as base64url JPEG, or ``None`` when one is missing or will not encode."""
    import cv2

    out = []
    for crop in crops:
        if crop is None:
            return None
        ok, jpeg = cv2.imencode(".jpg", crop, [cv2.IMWRITE_JPEG_QUALITY, 90])
        if not ok:
            return None
        out.append(b64url_encode(jpeg.tobytes()))
    return out


def _quantile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


@dataclass
class CameraStats:
    samples: int = 0
    faces: int = 0
    submissions: int = 0
    submitted_faces: int = 0
    alerts: int = 0
    errors: int = 0
    submit_errors: int = 0
    last_error: str = ""
    last_ok: float | None = None
    face_times: deque[tuple[float, int]] = field(default_factory=lambda: deque(maxlen=4096))
    latencies: deque[float] = field(default_factory=lambda: deque(maxlen=256))

    def faces_per_minute(self, now: float) -> int:
        while self.face_times and now - self.face_times[0][0] > 60:
            self.face_times.popleft()
        return sum(n for _, n in self.face_times)


class CameraLoop:
    """One camera: its reader, its tracks, its counters; ``step`` handles one sampled frame."""

    def __init__(
        self,
        camera: CameraSettings,
        pipeline: FacePipeline,
        client: NodeClient,
        *,
        clock: Callable[[], float] = time.monotonic,
        reader: StreamReader | None = None,
    ) -> None:
        self.camera = camera
        self.pipeline = pipeline
        self.client = client
        self.clock = clock
        self.reader = reader or StreamReader(camera.id, camera.url, sample_fps=camera.sample_fps)
        self.tracker = Tracker(resend_after=camera.resend_after.total_seconds())
        self.stats = CameraStats()
        self._submit_backoff = SUBMIT_RETRY_START

    def step(self) -> None:
        frame = self.reader.take(timeout=1.0)
        now = self.clock()
        if frame is None:
            self.tracker.expire(now)
            return
        found = [
            f
            for f in self.pipeline.detect(frame.image)
            if f.quality.face_pixels >= self.camera.min_face_pixels
        ][:MAX_FACES_PER_FRAME]
        captured_at = frame.captured_at
        del frame  # the frame is not kept past detection
        embeddings = self.pipeline.embed_crops([f.crop for f in found])
        detections = [
            Detection(f.box, e, face_quality(f.quality), f.crop)
            for f, e in zip(found, embeddings, strict=True)
        ]
        del found, embeddings  # a crop stays only as a track's best face, dropped when the track ends
        self.stats.samples += 1
        self.stats.faces += len(detections)
        if detections:
            self.stats.face_times.append((now, len(detections)))
        due = self.tracker.update(detections, now)
        del detections
        if not due:
            return
        try:
            alerts = self.client.submit(self.camera, [t.best for t in due], [t.best_crop for t in due])
        except SubmitRefused as e:
            self.stats.submit_errors += 1
            self.stats.last_error = e.code
            for track in due:
                self.tracker.failed(track, now, self._submit_backoff)
            log.warning(
                "camera submission refused",
                extra={"camera": self.camera.id, "error": e.code, "retry_in_s": self._submit_backoff},
            )
            self._submit_backoff = min(self._submit_backoff * 2, SUBMIT_RETRY_MAX)
            return
        self._submit_backoff = SUBMIT_RETRY_START
        answered = self.clock()
        self.stats.latencies.append(answered - captured_at)
        self.stats.submissions += 1
        self.stats.submitted_faces += len(due)
        if alerts and not all(t.alerted for t in due):  # a track asked again renews its alert: not a new one
            self.stats.alerts += alerts
        self.stats.last_ok = answered
        self.stats.last_error = ""
        for track in due:
            self.tracker.sent(track, answered, alerted=alerts > 0)
        if alerts:
            log.info(
                "camera alert raised",
                extra={"camera": self.camera.id, "site": self.camera.site, "alerts": alerts},
            )

    def status(self) -> dict[str, Any]:
        now = self.clock()
        s, stream = self.stats, self.reader.status
        latencies = list(s.latencies)
        p50, p99 = _quantile(latencies, 0.5), _quantile(latencies, 0.99)
        state = self.reader.state_now()
        return {
            "camera": self.camera.id,
            "site": self.camera.site,
            "gate": self.camera.gate,
            "url": self.camera.safe_url,
            "state": state,
            "stream_fps": round(stream.fps, 2) if state == "up" else 0.0,
            "frames": stream.frames,
            "sampled": s.samples,
            "connects": stream.connects,
            "reconnects": max(0, stream.connects - 1),
            "last_frame_age_s": None
            if stream.last_frame_at is None
            else round(now - stream.last_frame_at, 2),
            "faces": s.faces,
            "faces_per_minute": s.faces_per_minute(now),
            "tracks": len(self.tracker.tracks),
            "tracks_ended": self.tracker.ended,
            "submissions": s.submissions,
            "submitted_faces": s.submitted_faces,
            "alerts": s.alerts,
            "latency_p50_ms": None if p50 is None else round(p50 * 1000),
            "latency_p99_ms": None if p99 is None else round(p99 * 1000),
            "errors": s.errors,
            "submit_errors": s.submit_errors,
            "last_error": s.last_error or stream.last_error or None,
        }


class Worker:
    """The cameras' loops, supervised, and the status they expose."""

    def __init__(self, loops: list[CameraLoop], *, status_file: Path | None) -> None:
        self.loops = loops
        self.status_file = status_file
        self.stop = threading.Event()
        self._threads: dict[str, threading.Thread] = {}
        self.restarts = 0

    def _supervise(self, loop: CameraLoop) -> None:
        backoff = RETRY_START
        while not self.stop.is_set():
            if loop.reader.drained and loop.reader.status.state == "ended":
                loop.tracker.expire(float("inf"))  # a file's last frame: every track ends
                self.stop.wait(1.0)
                continue
            try:
                loop.step()
                backoff = RETRY_START
            except Exception as e:  # noqa: BLE001 (logged, counted, backed off: a camera's loop never dies)
                loop.stats.errors += 1
                loop.stats.last_error = type(e).__name__
                log.error(
                    "camera loop failed; retrying",
                    extra={"camera": loop.camera.id, "error": type(e).__name__, "retry_in_s": backoff},
                )
                self.stop.wait(backoff)
                backoff = min(backoff * 2, RETRY_MAX)

    def _start(self, loop: CameraLoop) -> None:
        thread = threading.Thread(
            target=self._supervise, args=(loop,), name=f"loop-{loop.camera.id}", daemon=True
        )
        self._threads[loop.camera.id] = thread
        thread.start()

    def status(self) -> dict[str, Any]:
        cameras = [loop.status() for loop in self.loops]
        waiting = [c["camera"] for c in cameras if c["state"] not in ("up", "ended")]
        return {
            "ready": not waiting,
            "not_ready": waiting,
            "loop_restarts": self.restarts,
            "updated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "cameras": cameras,
        }

    def write_status(self) -> None:
        if self.status_file is not None:
            data = json.dumps(self.status(), sort_keys=True).encode("utf-8")
            write_atomic(self.status_file, data, mode=PRIVATE_FILE)

    def run(self) -> None:
        for loop in self.loops:
            loop.reader.start()
            self._start(loop)
        while not self.stop.is_set():
            for loop in self.loops:
                if not self._threads[loop.camera.id].is_alive() and not self.stop.is_set():
                    self.restarts += 1
                    log.error("camera loop ended; started again", extra={"camera": loop.camera.id})
                    self._start(loop)
            try:
                self.write_status()
            except OSError as e:
                log.warning("camera status not written", extra={"error": e.strerror or type(e).__name__})
            self.stop.wait(STATUS_EVERY)
        for loop in self.loops:
            loop.reader.stop()
        for thread in self._threads.values():
            thread.join(5)
        try:
            self.write_status()
        except OSError:
            pass


def _metrics(status: dict[str, Any]) -> str:
    lines = [
        "# TYPE watchnet_camera_up gauge",
        "# TYPE watchnet_camera_fps gauge",
        "# TYPE watchnet_camera_faces_per_minute gauge",
        "# TYPE watchnet_camera_latency_seconds gauge",
        "# TYPE watchnet_camera_submissions_total counter",
        "# TYPE watchnet_camera_alerts_total counter",
        "# TYPE watchnet_camera_reconnects_total counter",
        "# TYPE watchnet_camera_errors_total counter",
    ]
    for c in status["cameras"]:
        label = f'camera="{c["camera"]}",site="{c["site"]}"'
        lines.append(f"watchnet_camera_up{{{label}}} {1 if c['state'] == 'up' else 0}")
        lines.append(f"watchnet_camera_fps{{{label}}} {c['stream_fps']}")
        lines.append(f"watchnet_camera_faces_per_minute{{{label}}} {c['faces_per_minute']}")
        for q, key in (("0.5", "latency_p50_ms"), ("0.99", "latency_p99_ms")):
            if c[key] is not None:
                lines.append(f'watchnet_camera_latency_seconds{{{label},quantile="{q}"}} {c[key] / 1000}')
        lines.append(f"watchnet_camera_submissions_total{{{label}}} {c['submissions']}")
        lines.append(f"watchnet_camera_alerts_total{{{label}}} {c['alerts']}")
        lines.append(f"watchnet_camera_reconnects_total{{{label}}} {c['reconnects']}")
        lines.append(f"watchnet_camera_errors_total{{{label}}} {c['errors'] + c['submit_errors']}")
    return "\n".join(lines) + "\n"


def serve_status(worker: Worker, port: int) -> ThreadingHTTPServer:
    """``/status``, ``/ready`` and ``/metrics`` on 127.0.0.1:``port``, in a thread of their own."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            status = worker.status()
            if self.path == "/status":
                self._send(200, "application/json", json.dumps(status, sort_keys=True))
            elif self.path == "/ready":
                body = json.dumps({"ready": status["ready"], "not_ready": status["not_ready"]})
                self._send(200 if status["ready"] else 503, "application/json", body)
            elif self.path == "/metrics":
                self._send(200, "text/plain; version=0.0.4", _metrics(status))
            else:
                self._send(404, "application/json", json.dumps({"error": "not_found"}))

        def _send(self, code: int, kind: str, body: str) -> None:
            data = body.encode("utf-8")
            self.send_response(code)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            """No access log: the status is read every few seconds by a probe."""

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    threading.Thread(target=server.serve_forever, name="camera-status", daemon=True).start()
    return server


def _token(args: argparse.Namespace) -> str:
    if args.token_file:
        token = Path(args.token_file).read_text(encoding="utf-8").strip()
    else:
        token = os.environ.get("WATCHNET_TOKEN", "").strip()
    if not token:
        raise ConfigurationError(
            "no API token for the camera account: give --token-file FILE or set WATCHNET_TOKEN "
            "('watchnet user add NAME --role camera --site SITE', then 'watchnet user token NAME')"
        )
    return token


def _node_url(config: NodeConfig) -> str:
    host = "127.0.0.1" if config.host in ("0.0.0.0", "::", "") else config.host  # noqa: S104 (a listen-all address)
    scheme = "https" if config.server.tls else "http"
    return f"{scheme}://{host}:{config.port}"


def run_worker(args: argparse.Namespace) -> int:
    """``watchnet camera run``: until SIGTERM or SIGINT."""
    from node.face.models import ModelPack
    from node.jsonlog import json_handler
    from node.scrub import scrub_freed_memory

    scrubbed = scrub_freed_memory()  # a stranger's freed crop or embedding is overwritten at once
    root = logging.getLogger("watchnet")
    if not root.handlers:
        root.addHandler(json_handler(sys.stderr))
        root.setLevel(logging.INFO)
    config = NodeConfig.load(Path(args.node))
    cameras = [config.camera(c) for c in args.camera] if args.camera else list(config.cameras)
    if not cameras:
        raise ConfigurationError(
            f"no camera in {config.directory / 'config.toml'}; add one with 'watchnet camera add'"
        )
    client = NodeClient(args.url or _node_url(config), _token(args))
    pack = ModelPack.locate()
    model_id, weights = client.manifest_model()
    if (pack.model_id, pack.recognizer_sha256) != (model_id, weights):
        raise ConfigurationError(
            f"the local model {pack.model_id} ({pack.recognizer_sha256[:16]}...) is not the group's pinned "
            f"model {model_id} ({weights[:16]}...); its embeddings would not be comparable"
        )
    for camera in cameras:
        try:
            client.hello(camera)
        except SubmitRefused as e:
            raise ConfigurationError(
                f"camera {camera.id} (site {camera.site}): the node refused the camera account: {e}"
            ) from e
    pipeline = FacePipeline(pack)
    loops = [CameraLoop(camera, pipeline, client) for camera in cameras]
    status_file = Path(args.status_file) if args.status_file else config.directory / STATUS_FILE
    worker = Worker(loops, status_file=status_file)
    server = serve_status(worker, args.status_port) if args.status_port else None

    def _stop(signum: int, _frame: Any) -> None:
        worker.stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    log.info(
        "camera worker started",
        extra={
            "cameras": [c.id for c in cameras],
            "node": client.url,
            "status_port": args.status_port,
            "freed_memory_overwritten": scrubbed,
        },
    )
    try:
        worker.run()
    finally:
        if server is not None:
            server.shutdown()
    log.info("camera worker stopped")
    return 0
