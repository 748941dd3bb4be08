"""The camera account: least privilege over the real HTTP API.

A camera account (``watchnet user add NAME --role camera --site SITE``) may only submit faces for
matching at its own sites, naming its camera; it is answered how many faces and alerts, never
which entry, and it reads no entry, alert, log, audit or request. The alert it raises names the
camera, site and gate for the operator.
"""

from __future__ import annotations

import io
import sys
from collections.abc import Iterator
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest

from governance.roles import Action, Role, permitted
from node.cli.main import main
from tests.factories import embedding
from tests.nodeproc import PASSWORD, NodeProcess, cli
from tests.test_service import register


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    n = NodeProcess.create(tmp_path_factory.mktemp("camera-role"))
    directory = str(n.directory)
    cli(
        "user", "add", "--node", directory, "cam1", "--role", "camera", "--site", "shibuya-01",
        "--site", "shibuya-02", "--password-stdin", stdin=PASSWORD + "\n",
    )  # fmt: skip
    n.tokens["cam1"] = cli("user", "token", "--node", directory, "cam1").strip()
    n.start()
    yield n
    n.stop()


def faces(seed: int, **fields: str) -> dict[str, object]:
    return {"embeddings": [embedding(seed).to_str()], "camera": "door", **fields}


def test_the_camera_role_may_do_one_thing() -> None:
    assert [a for a in Action if permitted(Role.CAMERA, a)] == [Action.SUBMIT_CAMERA_FACES]
    assert not any(permitted(r, Action.SUBMIT_CAMERA_FACES) for r in Role if r is not Role.CAMERA)


def test_a_camera_account_needs_sites_and_only_it_has_them(node: NodeProcess) -> None:
    for argv, expected in (
        (["cam2", "--role", "camera"], "needs the site(s)"),
        (["op9", "--role", "operator", "--site", "shibuya-01"], "only a camera account has sites"),
        (["cam3", "--role", "camera", "--site", "Shibuya 1"], "does not match"),
    ):
        err = io.StringIO()
        old = sys.stdin
        sys.stdin = io.StringIO(PASSWORD + "\n")
        try:
            with redirect_stdout(io.StringIO()), redirect_stderr(err):
                code = main(["user", "add", "--node", str(node.directory), *argv, "--password-stdin"])
        finally:
            sys.stdin = old
        assert code == 1 and expected in err.getvalue(), err.getvalue()


def test_a_camera_submits_only_for_its_own_sites_and_learns_no_entry(node: NodeProcess) -> None:
    entry_id = register(node, 31)
    status, answer = node.call("POST", "/v1/match", "cam1", faces(31, site="shibuya-01", gate="north"))
    assert (status, answer) == (200, {"faces": 1, "alerts": 1}), answer
    status, answer = node.call("POST", "/v1/match", "cam1", faces(77, site="shibuya-02"))
    assert (status, answer) == (200, {"faces": 1, "alerts": 0})
    status, error = node.call("POST", "/v1/match", "cam1", faces(31, site="osaka-01"))
    assert (status, error["error"]) == (403, "forbidden") and "shibuya-01, shibuya-02" in error["message"]
    status, error = node.call(
        "POST", "/v1/match", "cam1", {"embeddings": [embedding(31).to_str()], "site": "shibuya-01"}
    )
    assert (status, error["error"]) == (400, "malformed") and "'camera'" in error["message"]
    status, error = node.call("POST", "/v1/match", "cam1", faces(31, site="shibuya-01", purpose="marketing"))
    assert (status, error["error"]) == (403, "purpose_not_allowed")
    # the operator sees where it was raised
    status, listed = node.call("GET", "/v1/alerts", "op1")
    alert = next(a for a in listed["alerts"] if a["entry_id"] == entry_id)
    assert (alert["camera"], alert["site"], alert["gate"]) == ("door", "shibuya-01", "north")
    # an operator's own match still answers as before
    status, answer = node.call("POST", "/v1/match", "op1", {"embeddings": [embedding(31).to_str()]})
    assert status == 200 and answer["matches"][0]["entry_id"] == entry_id


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/v1/entries", None),
        ("GET", "/v1/entries?status=active", None),
        ("GET", "/v1/alerts", None),
        ("GET", "/v1/audit", None),
        ("GET", "/v1/log", None),
        ("GET", "/v1/requests", None),
        ("GET", "/v1/propagation", None),
        ("GET", "/v1/peers", None),
        ("GET", "/v1/report?period=2026-Q4", None),
        ("POST", "/v1/entries", {}),
        ("POST", "/v1/query", {"embeddings": [embedding(31).to_str()]}),
        ("POST", "/v1/alerts/alr-0000000000/review", {"verdict": "confirmed"}),
    ],
)
def test_a_camera_account_reads_nothing(node: NodeProcess, method: str, path: str, body: object) -> None:
    status, error = node.call(method, path, "cam1", body)
    assert (status, error["error"]) == (403, "forbidden"), (status, error)


def test_the_account_list_shows_the_camera_sites(node: NodeProcess) -> None:
    import json

    listed = json.loads(cli("user", "list", "--node", str(Path(node.directory)), "--json"))
    camera = next(a for a in listed if a["username"] == "cam1")
    assert (camera["role"], camera["sites"]) == ("camera", ["shibuya-01", "shibuya-02"])


def _crop_jpeg(seed: int, side: int = 112, ext: str = ".jpg") -> str:
    import cv2
    import numpy as np

    from protocol.canonical import b64url_encode

    pixels = np.random.default_rng(seed).integers(0, 255, (side, side, 3), dtype=np.uint8)
    pixels[:, : side // 2] = (40, 90, 200)  # a half of flat colour survives JPEG nearly unchanged
    ok, data = cv2.imencode(ext, pixels)
    assert ok
    return b64url_encode(data.tobytes())


def test_a_cameras_crop_is_kept_only_for_the_face_that_raised_the_alert(node: NodeProcess) -> None:
    import cv2
    import numpy as np

    from node.context import NodeContext
    from node.records.alert_faces import CropErased
    from protocol.canonical import b64url_decode

    entry_id = register(node, 41)
    body = {
        "embeddings": [embedding(41).to_str(), embedding(78).to_str()],  # the registered face, a stranger
        "crops": [_crop_jpeg(1), _crop_jpeg(2)],
        "camera": "door",
        "site": "shibuya-01",
    }
    status, answer = node.call("POST", "/v1/match", "cam1", body)
    assert (status, answer) == (200, {"faces": 2, "alerts": 1}), answer
    _, listed = node.call("GET", "/v1/alerts", "op1")
    alert = next(a for a in listed["alerts"] if a["entry_id"] == entry_id)
    context = NodeContext.load(node.directory)
    try:
        kept = cv2.imdecode(
            np.frombuffer(context.alerts.camera_crop(alert["alert_id"]), np.uint8), cv2.IMREAD_COLOR
        )
        sent = cv2.imdecode(np.frombuffer(b64url_decode(_crop_jpeg(1)), np.uint8), cv2.IMREAD_COLOR)
        assert kept.shape == (112, 112, 3)
        assert (
            float(np.abs(kept[:, :56].astype(int) - sent[:, :56].astype(int)).mean()) < 4
        )  # this face's crop
    finally:
        context.engine.dispose()
    # without crops the alert holds no camera face, as before
    plain_entry = register(node, 42)
    node.call("POST", "/v1/match", "cam1", faces(42, site="shibuya-01"))
    _, listed = node.call("GET", "/v1/alerts", "op1")
    plain = next(
        a
        for a in listed["alerts"]
        if a["entry_id"] not in (entry_id, None)
        and a["alert_id"] != alert["alert_id"]
        and a.get("camera") == "door"
        and a["site"] == "shibuya-01"
        and a["entry_id"] == plain_entry
    )
    context = NodeContext.load(node.directory)
    try:
        with pytest.raises(CropErased):
            context.alerts.camera_crop(plain["alert_id"])
    finally:
        context.engine.dispose()


@pytest.mark.parametrize(
    ("crops", "error", "said"),
    [
        ([_crop_jpeg(3), _crop_jpeg(4)], "malformed", "2 crops for 1 embeddings"),
        ([_crop_jpeg(3, side=64)], "malformed", "112x112, got 64x64"),
        ([_crop_jpeg(3, ext=".png")], "malformed", "not a JPEG"),
        (["not base64!"], "malformed", "crops[0]"),
        ([42], "malformed", "crops[0]"),
    ],
)
def test_a_crop_that_is_not_an_aligned_jpeg_is_refused_before_any_decoding(
    node: NodeProcess, crops: list[object], error: str, said: str
) -> None:
    body = {**faces(43, site="shibuya-01"), "crops": crops}
    status, answer = node.call("POST", "/v1/match", "cam1", body)
    assert status in (400, 415) and answer["error"] == error and said in answer["message"], answer
