"""Alerts delivered where staff are: signed webhooks and e-mail, routed per site, retried.

A real node process with two webhooks (one for shibuya-01 only, one for every site) and one
e-mail target (shibuya-01) through a local SMTP server. A match raises an alert: each target of its
site gets it once, signed (HMAC-SHA256 over timestamp and body) and without any face, embedding
or score; a receiver that fails first gets it again after the backoff; a target of another site
gets nothing; the failure is visible while it lasts.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import Session

from node.app.delivery import signature
from node.config import EmailSettings, NodeConfig, SmtpSettings, WebhookSettings
from node.demo.network import free_port
from node.demo.story import photo_path
from node.records.deliveries import delivery_status
from node.storage.engine import make_engine
from protocol.canonical import b64url_encode
from protocol.errors import ConfigurationError, MalformedError
from tests.factories import embedding
from tests.nodeproc import NodeProcess
from tests.smtp_sink import SmtpSink
from tests.test_camera_worker import _operator_page, _register_person
from tests.test_service import register

SECRET = b"k" * 24 + b"-webhook-secret-for-tests"


class Receiver:
    """Webhook endpoints on 127.0.0.1: each path answers the statuses queued for it, then 200."""

    def __init__(self, failures: dict[str, list[int]]) -> None:
        self.calls: list[tuple[str, dict[str, str], bytes, int]] = []
        queued = {k: list(v) for k, v in failures.items()}
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                pending = queued.get(self.path, [])
                status = pending.pop(0) if pending else 200
                outer.calls.append((self.path, dict(self.headers.items()), body, status))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}"


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[NodeProcess, Receiver, SmtpSink]]:
    node = NodeProcess.create(tmp_path_factory.mktemp("delivery"))
    receiver = Receiver({"/ops": [500]})
    sink = SmtpSink(free_port())
    sink.start()
    key = node.directory / "keys" / "webhook.key"
    key.write_bytes(SECRET + b"\n")
    key.chmod(0o600)
    config = NodeConfig.load(node.directory)
    config = replace(
        config,
        webhooks=(
            WebhookSettings("ops", f"{receiver.url}/ops", "keys/webhook.key", ("shibuya-01",)),
            WebhookSettings("all", f"{receiver.url}/all", "keys/webhook.key"),
            WebhookSettings("osaka", f"{receiver.url}/osaka", "keys/webhook.key", ("osaka-01",)),
            WebhookSettings(
                "desk", f"{receiver.url}/desk", "keys/webhook.key", ("shibuya-01",), include_crop=True
            ),
        ),
        email=(EmailSettings("guards", ("guard@a-mart.example",), ("shibuya-01",)),),
        smtp=SmtpSettings("127.0.0.1", "watchnet@a-mart.example", port=sink.port, starttls=False),
    )
    (node.directory / "config.toml").write_text(config.to_toml(), encoding="utf-8")
    assert NodeConfig.load(node.directory).webhooks == config.webhooks  # reads back
    node.start()
    yield node, receiver, sink
    node.stop()
    receiver.server.shutdown()
    sink.stop()


def _wait(check: Any, timeout: float = 20) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError("timed out")


def test_an_alert_reaches_each_target_of_its_site_signed_once(
    setup: tuple[NodeProcess, Receiver, SmtpSink],
) -> None:
    node, receiver, sink = setup
    entry_id = register(node, 51)
    status, answer = node.call(
        "POST", "/v1/match", "op1", {"embeddings": [embedding(51).to_str()], "site": "shibuya-01"}
    )
    assert status == 200 and answer["matches"], answer
    alert_id = answer["matches"][0]["alert_id"]
    started = time.monotonic()
    _wait(lambda: [c for c in receiver.calls if c[0] == "/ops" and c[3] == 200])
    retried_after = time.monotonic() - started
    _wait(lambda: sink.messages)
    time.sleep(1.5)  # a pass or two more: nothing is sent twice
    by_path: dict[str, list[tuple[dict[str, str], bytes, int]]] = {}
    for path, headers, body, code in receiver.calls:
        by_path.setdefault(path, []).append((headers, body, code))
    assert [code for _, _, code in by_path["/ops"]] == [500, 200]  # failed once, then delivered
    assert [code for _, _, code in by_path["/all"]] == [200]
    ((_, desk_body, _),) = by_path["/desk"]  # asks for the crop: this alert (from embeddings) has none
    assert json.loads(desk_body)["crop_jpeg"] is None
    assert "/osaka" not in by_path  # another site's target
    assert retried_after >= 1.5, retried_after  # after the first backoff (2 s), not at once
    for headers, body, _ in by_path["/ops"] + by_path["/all"]:
        stamp = headers["X-Watchnet-Timestamp"]
        expected = "sha256=" + hmac.new(SECRET, stamp.encode() + b"." + body, hashlib.sha256).hexdigest()
        assert headers["X-Watchnet-Signature"] == expected == signature(SECRET, stamp, body)
        assert abs(int(stamp) - time.time()) < 60
        sent = json.loads(body)
        assert (sent["alert_id"], sent["entry_id"], sent["site"]) == (alert_id, entry_id, "shibuya-01")
        assert set(sent) == {
            "type", "alert_id", "owner", "entry_id", "version", "band", "category", "site", "camera",
            "gate", "status", "created_at",
        }  # fmt: skip
        assert headers["X-Watchnet-Delivery"].startswith(f"{alert_id}/")
    ((to, message),) = sink.messages
    assert to == ["guard@a-mart.example"] and "shibuya-01" in message["Subject"]
    payload = message.get_payload(decode=True)
    assert isinstance(payload, bytes)
    text = payload.decode("utf-8")
    assert entry_id in text and "照合アラート" in text
    engine = make_engine(NodeConfig.load(node.directory).effective_database_url)
    try:
        with Session(engine):
            status_now = delivery_status(engine)
    finally:
        engine.dispose()
    page = _operator_page(node, "/console/cameras?lang=en")
    assert (
        'data-target="ops" data-pending="0"' in page and "Webhook (signed)" in page and "Every site" in page
    )
    from node.console.pages_cameras import delivery_rows
    from node.context import NodeContext

    context = NodeContext.load(node.directory)
    try:
        rows = {r["id"]: (r["kind"], r["settled"], r["pending"], r["sites"]) for r in delivery_rows(context)}
    finally:
        context.engine.dispose()
    assert rows == {
        "ops": ("webhook", 1, 0, "shibuya-01"),
        "all": ("webhook", 1, 0, ""),
        "osaka": ("webhook", 0, 0, "osaka-01"),
        "desk": ("webhook", 1, 0, "shibuya-01"),
        "guards": ("email", 1, 0, "shibuya-01"),
    }
    assert {t: (s["settled"], s["pending"]) for t, s in status_now.items()} == {
        "ops": (1, 0),
        "desk": (1, 0),
        "all": (1, 0),
        "guards": (1, 0),
    }


def test_only_a_webhook_configured_for_it_carries_the_alerts_face_crop_signed(
    setup: tuple[NodeProcess, Receiver, SmtpSink],
) -> None:
    import cv2
    import numpy as np

    from protocol.canonical import b64url_decode

    node, receiver, _ = setup
    entry_id = _register_person(node)
    image = b64url_encode(photo_path("yaoming.jpg").read_bytes())
    status, answer = node.call("POST", "/v1/match", "op1", {"image": image, "site": "shibuya-01"})
    assert status == 200, answer
    (hit,) = [m for m in answer.get("matches", []) if m["entry_id"] == entry_id]
    alert_id = hit["alert_id"]

    def sent_to(path: str) -> list[tuple[dict[str, str], bytes]]:
        return [(h, b) for p, h, b, c in receiver.calls if p == path and c == 200 and alert_id.encode() in b]

    _wait(lambda: sent_to("/desk") and sent_to("/ops") and sent_to("/all"))
    ((headers, body),) = sent_to("/desk")
    stamp = headers["X-Watchnet-Timestamp"]
    assert headers["X-Watchnet-Signature"] == signature(SECRET, stamp, body)  # the crop is signed too
    sent = json.loads(body)
    crop = cv2.imdecode(np.frombuffer(b64url_decode(sent["crop_jpeg"]), dtype=np.uint8), cv2.IMREAD_COLOR)
    assert crop is not None and crop.shape == (112, 112, 3)  # the aligned face the camera saw
    for path in ("/ops", "/all"):  # not asked for: the same alert without a face
        ((_, plain),) = sent_to(path)
        assert "crop_jpeg" not in json.loads(plain) and len(plain) < 1000, path
    config = NodeConfig.load(node.directory)
    assert [w.id for w in config.webhooks if w.include_crop] == ["desk"]  # read back from config.toml
    assert "include_crop = true" in (node.directory / "config.toml").read_text(encoding="utf-8")
    with pytest.raises(MalformedError, match="include_crop"):
        WebhookSettings.from_dict(
            {"id": "desk2", "url": "https://x.example/", "secret_file": "k", "include_crop": "yes"},
            "webhooks[0]",
        )


def test_a_webhook_secret_must_be_a_file_of_32_bytes(tmp_path: Path) -> None:
    from node.app.delivery import DeliveryTargets

    (tmp_path / "short.key").write_bytes(b"short")
    config = NodeConfig(
        directory=tmp_path,
        node_id="chain-a",
        webhooks=(WebhookSettings("ops", "http://127.0.0.1:9/ops", "short.key"),),
    )
    with pytest.raises(ConfigurationError, match="5 bytes, at least 32"):
        DeliveryTargets.load(config)
    with pytest.raises(ConfigurationError, match=r"missing\.key"):
        DeliveryTargets.load(
            replace(config, webhooks=(WebhookSettings("ops", "http://127.0.0.1:9/ops", "missing.key"),))
        )
    base = 'node_id = "chain-a"\n'
    hook = (
        '[[webhooks]]\nid = "ops"\nurl = "http://127.0.0.1:9/ops"\nsecret_file = "k"\nsites = ["Bad Site"]\n'
    )
    with pytest.raises(ConfigurationError, match=r"webhooks\[0\]\.sites"):
        NodeConfig.from_toml(base + hook, tmp_path)
    with pytest.raises(ConfigurationError, match=r"need an \[smtp\] server"):
        NodeConfig.from_toml(base + '[[email]]\nid = "guards"\nto = ["a@b.example"]\n', tmp_path)
