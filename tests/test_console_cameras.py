"""The console's cameras page: the configured cameras and the state the camera worker last reported.

Admins and operators open it, other roles are refused; a camera added to the config shows at
the next visit; a stale report shows as stale with every camera's state unknown; the stream's
password never reaches the page; Japanese first, English on request.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest

from node.config import CAMERA_STATUS_FILE, CameraSettings, NodeConfig
from node.context import NodeContext
from tests.nodeproc import NodeProcess
from tests.test_console import Clock, Console, run

PAGE = "/console/cameras"
SECRET = "Cam-Pa55"


@pytest.fixture(scope="module")
def context(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeContext]:
    directory = NodeProcess.create(tmp_path_factory.mktemp("console-cameras")).directory
    context = NodeContext.load(directory)
    yield context
    context.engine.dispose()


def _add(directory: Path, *cameras: CameraSettings) -> None:
    config = NodeConfig.load(directory)
    (directory / "config.toml").write_text(
        replace(config, cameras=(*config.cameras, *cameras)).to_toml(), encoding="utf-8"
    )


def _report(directory: Path, updated: str, **door: object) -> None:
    status = {"updated_at": updated, "ready": True, "not_ready": [], "cameras": [{"camera": "door", **door}]}
    (directory / CAMERA_STATUS_FILE).write_text(json.dumps(status), encoding="utf-8")


def _state(text: str, camera: str) -> str:
    match = re.search(rf'data-camera="{camera}" data-state="([a-z_]+)"', text)
    assert match, text[:2000]
    return match.group(1)


def test_who_opens_the_page_and_what_it_shows(context: NodeContext) -> None:
    directory = context.config.directory
    clock = Clock()
    got: dict[str, int] = {}
    pages: dict[str, str] = {}

    async def scenario(browser: Callable[[], Awaitable[Console]]) -> None:
        b = await browser()
        for user in ("reg1", "off1", "aud1", "op1", "adm1"):
            await b.login(user)
            status, _, _ = await b.get(PAGE + "?lang=en")
            got[user] = status
        pages["empty"] = (await b.get(PAGE + "?lang=en"))[1]
        _add(
            directory,
            CameraSettings(
                id="door", site="shibuya-01", gate="north", url=f"rtsp://view:{SECRET}@10.0.0.5/s1"
            ),
            CameraSettings(id="aisle", site="shibuya-01", url="http://10.0.0.6/mjpeg"),
        )
        pages["no-report"] = (await b.get(PAGE + "?lang=en"))[1]
        now = clock.now.strftime("%Y-%m-%dT%H:%M:%SZ")
        _report(directory, now, state="up", stream_fps=10.0, faces_per_minute=12, latency_p50_ms=420,
                latency_p99_ms=760, alerts=1, reconnects=2, last_error=None)  # fmt: skip
        pages["fresh"] = (await b.get(PAGE + "?lang=en"))[1]
        pages["ja"] = (await b.get(PAGE))[1]
        clock.now += timedelta(seconds=30)
        pages["stale"] = (await b.get(PAGE + "?lang=en"))[1]

    run(context, scenario, clock)
    assert got == {"reg1": 403, "off1": 403, "aud1": 403, "op1": 200, "adm1": 200}, got
    assert "No camera yet" in pages["empty"]
    assert "No report from the camera worker" in pages["no-report"]
    assert _state(pages["no-report"], "door") == "unknown"
    fresh = pages["fresh"]
    assert _state(fresh, "door") == "up" and _state(fresh, "aisle") == "unknown"
    assert "420 / 760 ms" in fresh and "rtsp://view:***@10.0.0.5/s1" in fresh and "north" in fresh
    assert "The camera worker last reported" in fresh
    assert "受信中" in pages["ja"] and "カメラワーカーの最終報告" in pages["ja"]
    assert "has not reported since" in pages["stale"] and _state(pages["stale"], "door") == "unknown"
    for text in pages.values():
        assert SECRET not in text
