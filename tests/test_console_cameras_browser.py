"""A camera's alert reaches the operator's open page live, and the cameras page, in a real browser.

Debian's Chromium, driven by Playwright, against a real node process. An operator keeps
``/console/operator`` open (Japanese); the camera account submits the registered person's face,
and the alert appears without a reload, naming the camera and gate under its site. The operator
then opens the cameras page from the menu: the camera, its redacted address and the state the
worker reported. Screenshots go to ``tests/artifacts/``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import replace

import pytest

from node.config import CAMERA_STATUS_FILE, CameraSettings, NodeConfig
from tests.browser import chromium, require_chromium, screenshots
from tests.factories import embedding
from tests.nodeproc import PASSWORD, NodeProcess, cli
from tests.test_service import register

require_chromium()

from playwright.sync_api import Browser, expect  # noqa: E402

shot = screenshots("cameras")
SECRET = "Br0wser-Pa55"


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    n = NodeProcess.create(tmp_path_factory.mktemp("cameras-browser"))
    cli(
        "user", "add", "--node", str(n.directory), "cam1", "--role", "camera", "--site", "shibuya-01",
        "--password-stdin", stdin=PASSWORD + "\n",
    )  # fmt: skip
    n.tokens["cam1"] = cli("user", "token", "--node", str(n.directory), "cam1").strip()
    config = NodeConfig.load(n.directory)
    door = CameraSettings(id="door", site="shibuya-01", gate="north", url=f"rtsp://view:{SECRET}@10.0.0.5/s1")
    (n.directory / "config.toml").write_text(replace(config, cameras=(door,)).to_toml(), encoding="utf-8")
    n.start()
    yield n
    n.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as b:
        yield b


def test_the_operator_sees_a_camera_alert_live_and_the_cameras_page(
    node: NodeProcess, browser: Browser
) -> None:
    entry_id = register(node, 71)
    context = browser.new_context(locale="ja-JP", viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(20_000)
    page.goto(f"{node.url}/console")
    page.fill("#username", "op1")
    page.fill("#password", PASSWORD)
    page.locator("main form button[type=submit]").click()
    page.wait_for_url("**/console/operator?lang=ja")
    body = {"embeddings": [embedding(71).to_str()], "camera": "door", "site": "shibuya-01", "gate": "north"}
    status, answer = node.call("POST", "/v1/match", "cam1", body)
    assert (status, answer) == (200, {"faces": 1, "alerts": 1}), answer
    row = page.locator(f"tr[data-entry='{entry_id}']")
    expect(row).to_be_visible()  # pushed to the open page, no reload
    expect(row.locator("td.site")).to_contain_text("shibuya-01")
    expect(row.locator("td.site .camera")).to_have_text("door / north")
    shot(page, "1-operator-ja")

    report = {
        "updated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "ready": True,
        "not_ready": [],
        "cameras": [{"camera": "door", "state": "up", "stream_fps": 10.0, "faces_per_minute": 4,
                     "latency_p50_ms": 430, "latency_p99_ms": 690, "alerts": 1, "reconnects": 0}],
    }  # fmt: skip
    (node.directory / CAMERA_STATUS_FILE).write_text(json.dumps(report), encoding="utf-8")
    page.get_by_role("link", name="カメラ").click()
    page.wait_for_url("**/console/cameras?lang=ja")
    expect(page.locator("h1")).to_have_text("カメラ")
    camera = page.locator("tr[data-camera=door]")
    expect(camera).to_have_attribute("data-state", "up")
    expect(camera).to_contain_text("受信中")
    expect(camera).to_contain_text("rtsp://view:***@10.0.0.5/s1")
    expect(camera).to_contain_text("430 / 690 ms")
    shot(page, "2-cameras-ja")
    page.goto(f"{node.url}/console/cameras?lang=en")
    expect(page.locator("tr[data-camera=door]")).to_contain_text("up")
    expect(page.locator("#worker-report")).to_contain_text("The camera worker last reported")
    assert SECRET not in page.content()
    shot(page, "3-cameras-en")
    context.close()
