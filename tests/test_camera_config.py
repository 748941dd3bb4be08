"""Cameras in the node's config (``[[cameras]]``) and ``watchnet camera add|list|remove|test``.

A bad table is refused at load with the field and the value; a stream URL's password stays in
``config.toml`` (0600) and is ``***`` in every output, error and audit record.
"""

from __future__ import annotations

import io
import json
import stat
import subprocess
import sys
from contextlib import redirect_stderr, redirect_stdout
from datetime import timedelta
from pathlib import Path

import pytest
from sqlmodel import Session, select

from node.cli.main import main
from node.config import CameraSettings, NodeConfig, redact_url
from node.storage.engine import make_engine
from node.storage.models import AuditRecord
from protocol.errors import ConfigurationError, MalformedError
from tests.camera_clip import make_clip
from tests.factories import KEYS, make_manifest, signed_manifest

SECRET = "s3cret-Pa55"
URL = f"rtsp://viewer:{SECRET}@127.0.0.1:1/stream1"


def run(*argv: str, stdin: str | None = None) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    old = sys.stdin
    try:
        if stdin is not None:
            sys.stdin = io.StringIO(stdin)
        with redirect_stdout(out), redirect_stderr(err):
            code = main(list(argv))
    finally:
        sys.stdin = old
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def node_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from datetime import UTC, datetime

    root = tmp_path_factory.mktemp("camera-config")
    manifest = root / "manifest.json"
    now = datetime.now(UTC).replace(microsecond=0)
    manifest.write_bytes(signed_manifest(make_manifest(now=now), KEYS[0], KEYS[1]).to_bytes())
    roots = [a for k in KEYS for a in ("--root-keyid", k.keyid)]
    directory = root / "node"
    code, _, err = run("init", str(directory), "--node-id", "chain-a", "--manifest", str(manifest), *roots)
    assert code == 0, err
    return directory


@pytest.mark.parametrize(
    ("table", "expected"),
    [
        ({"id": "door", "site": "shibuya-01"}, "missing field 'url'"),
        ({"id": "Door 1", "site": "s1", "url": "rtsp://h/x"}, "cameras.id"),
        ({"id": "door", "site": "S 1", "url": "rtsp://h/x"}, "cameras[door].site"),
        ({"id": "door", "site": "s1", "url": "ftp://h/x"}, "schemes: rtsp"),
        ({"id": "door", "site": "s1", "url": "rtsp:///x"}, "has no host"),
        ({"id": "door", "site": "s1", "url": "rtsp://h/x y"}, "has spaces"),
        ({"id": "door", "site": "s1", "url": "rtsp://h/x", "sample_fps": 60}, "sample_fps"),
        ({"id": "door", "site": "s1", "url": "rtsp://h/x", "sample_fps": "5"}, "expected a number"),
        ({"id": "door", "site": "s1", "url": "rtsp://h/x", "min_face_pixels": 4}, "min_face_pixels"),
        ({"id": "door", "site": "s1", "url": "rtsp://h/x", "resend_after": "2h"}, "resend_after"),
        ({"id": "door", "site": "s1", "url": "rtsp://h/x", "zoom": 2}, "zoom"),
        ({"id": "door", "site": "s1", "url": f"ftp://u:{SECRET}@h/x"}, "u:***@h"),
    ],
)
def test_a_bad_camera_table_is_refused_with_its_field(table: dict[str, object], expected: str) -> None:
    with pytest.raises(MalformedError) as refused:
        CameraSettings.from_dict(table)
    assert expected in str(refused.value)
    assert SECRET not in str(refused.value)


def test_cameras_round_trip_through_the_config_file(node_dir: Path) -> None:
    config = NodeConfig.load(node_dir)
    camera = CameraSettings(
        id="door",
        site="shibuya-01",
        url=URL,
        gate="north",
        sample_fps=2.5,
        resend_after=timedelta(seconds=30),
    )
    text = NodeConfig(directory=node_dir, node_id=config.node_id, cameras=(camera,)).to_toml()
    again = NodeConfig.from_toml(text, node_dir)
    assert again.cameras == (camera,)
    assert SECRET not in repr(again) and "viewer:***@" in repr(again.cameras[0])
    with pytest.raises(ConfigurationError, match="duplicate id"):
        NodeConfig.from_toml(text + text[text.index("[[cameras]]") :], node_dir)
    with pytest.raises(ConfigurationError, match=r"no camera 'back' .* \(cameras: door\)"):
        again.camera("back")


def test_redact_url_hides_only_the_password() -> None:
    assert redact_url(URL) == "rtsp://viewer:***@127.0.0.1:1/stream1"
    assert redact_url("rtsp://viewer@h/x") == "rtsp://viewer@h/x"
    assert redact_url("http://h/x?a=b@c") == "http://h/x?a=b@c"
    assert redact_url("/var/clips/a.mp4") == "/var/clips/a.mp4"


def test_camera_cli_keeps_the_password_in_the_config_file_only(node_dir: Path) -> None:
    code, out, err = run(
        "camera", "add", "--node", str(node_dir), "door", "--site", "shibuya-01", "--gate", "north",
        "--url-stdin", "--sample-fps", "4", stdin=URL + "\n",
    )  # fmt: skip
    assert code == 0, err
    assert "rtsp://viewer:***@127.0.0.1:1/stream1" in out
    code, out2, _ = run("camera", "add", "--node", str(node_dir), "door", "--site", "x1", "--url", URL)
    assert code == 1
    code, listed, _ = run("camera", "list", "--node", str(node_dir), "--json")
    assert code == 0
    cameras = json.loads(listed)["cameras"]
    assert [(c["id"], c["site"], c["gate"], c["sample_fps"]) for c in cameras] == [
        ("door", "shibuya-01", "north", 4.0)
    ]
    assert cameras[0]["url"] == "rtsp://viewer:***@127.0.0.1:1/stream1"
    code, table, _ = run("camera", "list", "--node", str(node_dir))
    assert "door" in table and "viewer:***@" in table
    # the stream is down: the refusal names the camera, not its password
    code, tested, err = run("camera", "test", "--node", str(node_dir), "door", "--seconds", "1", "--no-faces")
    assert code == 1 and "no frame" in tested
    config_file = node_dir / "config.toml"
    assert SECRET in config_file.read_text(encoding="utf-8")
    assert stat.S_IMODE(config_file.stat().st_mode) == 0o600
    code, removed, _ = run("camera", "remove", "--node", str(node_dir), "door")
    assert code == 0 and NodeConfig.load(node_dir).cameras == ()
    engine = make_engine(NodeConfig.load(node_dir).effective_database_url)
    with Session(engine) as session:
        records = session.exec(select(AuditRecord).where(AuditRecord.action.startswith("camera."))).all()
    engine.dispose()
    assert [(r.action, r.target, r.outcome) for r in records] == [
        ("camera.add", "door", "ok:site=shibuya-01,gate=north"),
        ("camera.remove", "door", "ok:site=shibuya-01,gate=north"),
    ]
    for text in (out, out2, listed, table, tested, err, removed):
        assert SECRET not in text


def test_camera_test_counts_frames_and_faces_of_a_clip(node_dir: Path, tmp_path: Path) -> None:
    clip = make_clip(tmp_path / "clip.mp4", strangers_s=1.0, person_s=1.0)
    code, _, err = run(
        "camera", "add", "--node", str(node_dir), "clip", "--site", "shibuya-01", "--url", str(clip),
        "--sample-fps", "2", "--min-face-pixels", "30",
    )  # fmt: skip
    assert code == 0, err
    try:
        code, out, err = run("camera", "test", "--node", str(node_dir), "clip", "--seconds", "10", "--json")
        assert code == 0, err
        data = json.loads(out)
        assert data["opened"] and data["frames"] == 30, data  # 3 s at 10 fps, read at its own rate
        assert data["sampled"] >= 4 and data["faces"] >= 4 and data["resolution"] == "640x360"
    finally:
        run("camera", "remove", "--node", str(node_dir), "clip")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4"]  # nothing kept


def test_camera_help_loads_no_heavy_library() -> None:
    probe = (
        "import sys; from node.cli.main import main\n"
        "try: main(['camera', 'run', '--help'])\n"
        "except SystemExit: pass\n"
        "print([m for m in ('cv2', 'aiohttp', 'onnxruntime', 'sqlalchemy') if m in sys.modules])"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).parent.parent,
    ).stdout
    assert out.strip().endswith("[]")
