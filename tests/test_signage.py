"""Printable signage (R2, R3): the QR code and the A4 'face-recognition camera in operation' sign.

The images are real files: the QR codes in them are read back with OpenCV's detector, and the
PDF is checked for one A4 page with the Japanese font embedded. The CLI reads only the node
directory's config.toml, manifest.json and rules.toml.
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Iterator
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import replace
from datetime import date
from pathlib import Path

import cv2
import numpy as np
import pytest

import node.cli.main
from governance.manifest import LocalizedText
from governance.notice import JOINT_USE_SECTIONS, SiteSignage
from node.cli import notice as cli_notice
from node.config import NodeConfig, NoticeSettings
from node.reporting.notice_pages import qr_png, qr_svg, render_sign
from tests.factories import KEYS, make_manifest, signed_manifest

URL = "https://a-mart.example/notice"
A4_POINTS = (595.276, 841.89)


def decode(image_bytes: bytes) -> str:
    image = cv2.imdecode(np.frombuffer(image_bytes, np.uint8), cv2.IMREAD_GRAYSCALE)
    assert image is not None
    text, _, _ = cv2.QRCodeDetector().detectAndDecode(image)
    return str(text)


def config(directory: Path, url: str | None = URL) -> NodeConfig:
    return NodeConfig(
        directory=directory,
        node_id="chain-a",
        notice=NoticeSettings(
            url=url,
            contact=LocalizedText("お客様相談室 03-1234-5678", "Customer desk +81-3-1234-5678"),
            sites=(
                SiteSignage("shibuya-01", LocalizedText("渋谷店", "Shibuya store"), (), date(2026, 11, 1)),
            ),
        ),
    )


@pytest.fixture
def node_dir(tmp_path: Path) -> Path:
    """What the notice commands read from a node directory (no keys or database needed)."""
    directory = tmp_path / "node"
    directory.mkdir()
    (directory / "config.toml").write_text(config(directory).to_toml(), encoding="utf-8")
    (directory / "manifest.json").write_bytes(signed_manifest(make_manifest(), KEYS[0], KEYS[1]).to_bytes())
    (directory / "rules.toml").write_text(
        'categories = ["shoplifting"]\nevidence_kinds = ["police-report"]\nretention_days = 90\n',
        encoding="utf-8",
    )
    return directory


@pytest.fixture(autouse=True)
def notice_commands(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Register ``watchnet notice`` for these tests if node/cli/main.py does not list it yet."""
    groups = node.cli.main._groups
    if cli_notice.register not in groups():
        monkeypatch.setattr(node.cli.main, "_groups", lambda: [*groups(), cli_notice.register])
    yield


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        try:
            code = node.cli.main.main(list(argv))
        except SystemExit as e:
            code = int(e.code or 0)
    return code, out.getvalue(), err.getvalue()


def test_qr_png_and_svg_encode_the_url() -> None:
    assert decode(qr_png(URL)) == URL
    svg = qr_svg(URL).decode("utf-8")
    assert svg.startswith("<?xml") and f"<title>{URL}</title>" in svg


def test_sign_png_is_a4_and_its_qr_code_decodes_to_the_notice_url(tmp_path: Path) -> None:
    png = render_sign(make_manifest(), config(tmp_path), URL, "png", dpi=150)
    image = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None
    height, width = image.shape[:2]
    assert abs(width - 210 / 25.4 * 150) <= 1 and abs(height - 297 / 25.4 * 150) <= 1
    assert decode(png) == URL


def test_sign_pdf_has_one_a4_page_with_the_japanese_font(tmp_path: Path) -> None:
    pdf = render_sign(make_manifest(), config(tmp_path), URL, "pdf", site_id="shibuya-01")
    assert pdf.startswith(b"%PDF-")
    assert len(re.findall(rb"/Type\s*/Page\b", pdf)) == 1 and re.search(rb"/Count\s+1\b", pdf)
    boxes = re.findall(rb"/MediaBox\s*\[\s*([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s*\]", pdf)
    assert len(boxes) == 1
    x0, y0, x1, y1 = (float(v) for v in boxes[0])
    assert (x0, y0) == (0, 0) and abs(x1 - A4_POINTS[0]) < 0.5 and abs(y1 - A4_POINTS[1]) < 0.5
    assert re.search(rb"/BaseFont\s*/[A-Z]{6}\+IPAexGothic", pdf), "the Japanese font is embedded"


def test_sign_refuses_an_unknown_site_and_format(tmp_path: Path) -> None:
    from protocol.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match="'osaka-09' is not in"):
        render_sign(make_manifest(), config(tmp_path), URL, "png", site_id="osaka-09")
    with pytest.raises(ConfigurationError, match="not one of pdf, png"):
        render_sign(make_manifest(), config(tmp_path), URL, "gif")  # type: ignore[arg-type]


def test_cli_qr_and_sign_write_real_files(node_dir: Path, tmp_path: Path) -> None:
    code, out, _ = run("notice", "qr", "--node", str(node_dir), "--out", str(tmp_path / "qr.png"), "--json")
    assert code == 0 and json.loads(out) == {
        "format": "png",
        "out": str(tmp_path / "qr.png"),
        "url": URL,
        "warning": None,
    }
    assert decode((tmp_path / "qr.png").read_bytes()) == URL
    other = "https://b-store.example/notice"
    code, _, _ = run(
        "notice", "qr", "--url", other, "--out", str(tmp_path / "qr.svg"), "--node", str(tmp_path)
    )
    assert code == 0 and f"<title>{other}</title>" in (tmp_path / "qr.svg").read_text(encoding="utf-8")
    code, out, err = run("notice", "sign", "--node", str(node_dir), "--out", str(tmp_path / "sign.pdf"))
    assert code == 0 and URL in out and (tmp_path / "sign.pdf").read_bytes().startswith(b"%PDF-")
    assert "warning" not in err, "a public https URL prints no warning"


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("http://shop.example/notice", "is not https"),
        ("https://127.0.0.1:8470/notice", "cannot reach"),
        ("https://192.168.1.20/notice", "cannot reach"),
        ("https://localhost/notice", "cannot reach"),
        ("https://10.0.0.5/notice", "cannot reach"),
    ],
)
def test_a_sign_to_an_address_a_phone_cannot_open_is_warned_about(
    node_dir: Path, tmp_path: Path, url: str, words: str
) -> None:
    code, _, err = run(
        "notice", "sign", "--node", str(node_dir), "--url", url, "--out", str(tmp_path / "s.pdf")
    )
    assert code == 0 and (tmp_path / "s.pdf").is_file(), "a warning, not a refusal: a test print is fine"
    assert err.count("\n") == 1 and err.startswith("watchnet: warning:") and words in err, err


def test_cli_show_prints_the_node_notice(node_dir: Path) -> None:
    code, out, _ = run("notice", "show", "--node", str(node_dir), "--lang", "en", "--json")
    assert code == 0
    shown = json.loads(out)
    manifest = make_manifest()
    sections = {s["id"]: s for s in shown["sections"]}
    joint = {s["id"]: s for s in sections["joint-use"]["subsections"]}
    assert list(joint) == list(JOINT_USE_SECTIONS)
    assert joint["joint-use-items"]["bullets"] == [i.text.en for i in manifest.joint_use.items]
    assert shown["url"] == URL and shown["lang"] == "en"
    assert any("at most 90 days" in line for line in sections["retention"]["bullets"])
    code, out, _ = run("notice", "show", "--node", str(node_dir))
    assert code == 0 and "顔識別機能付き防犯カメラ" in out and "渋谷店 (shibuya-01)" in out
    code, out, _ = run("notice", "show", "--node", str(node_dir), "--html", "--lang", "en")
    assert code == 0 and out.startswith("<!DOCTYPE html>") and '<html lang="en">' in out


def test_cli_errors_say_what_to_do(node_dir: Path, tmp_path: Path) -> None:
    bare = replace(config(node_dir, url=None), directory=node_dir)
    (node_dir / "config.toml").write_text(bare.to_toml(), encoding="utf-8")
    code, _, err = run("notice", "sign", "--node", str(node_dir), "--out", str(tmp_path / "s.pdf"))
    assert code == 1 and "notice.url is not set" in err and "--url" in err
    code, _, err = run(
        "notice", "qr", "--node", str(node_dir), "--url", URL, "--out", str(tmp_path / "q.gif")
    )
    assert code == 1 and "must end in .png or .svg" in err
    code, _, err = run("notice", "qr", "--url", "javascript:alert(1)", "--out", str(tmp_path / "q.png"))
    assert code == 1 and "not an http(s) URL" in err
    code, _, err = run("notice", "show", "--node", str(tmp_path / "missing"))
    assert code == 1 and "not found" in err
    assert not (tmp_path / "s.pdf").exists()


@pytest.mark.parametrize("command", ["show", "qr", "sign"])
def test_every_notice_command_has_help(command: str) -> None:
    code, out, _ = run("notice", command, "--help")
    assert code == 0 and "--node" in out
