"""Image decompression bombs are refused from the header, before any pixel is decoded (issue 14, section 3).

A bomb is a small file whose header declares a huge image: a 600-byte JPEG declaring
30000x30000, a 50 KB PNG of 20000x20000 zeros, a 34-byte WebP declaring 16383x16383. Decoded,
each costs gigabytes of memory and seconds of CPU. ``decode_image`` reads the size with Pillow's
lazy ``Image.open`` and refuses above ``MAX_IMAGE_PIXELS`` (``image_too_large``), in the test
process and through a real node over HTTP; memory is measured as resident set size, sampled
while the call runs so that a peak freed again before the call returns still counts.

The bombs are built here without ever holding the declared image: the JPEG and WebP are tiny
real files with their size fields patched, the PNG is written chunk by chunk with zlib.
"""

from __future__ import annotations

import io
import sqlite3
import struct
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from typing import Any
from unittest import mock

import cv2
import numpy as np
import psutil
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image, ImageOps

import node.face.pipeline as face_pipeline
from node.demo.story import photo_path
from node.face.models import ModelPack
from node.face.pipeline import (
    MAX_IMAGE_PIXELS,
    FacePipeline,
    ImageTooLarge,
    UnsupportedImage,
    decode_image,
)
from protocol.canonical import b64url_encode
from protocol.errors import MalformedError, OversizedError, WatchnetError
from tests.nodeproc import NodeProcess

MB = 1 << 20
TIME_LIMIT = 0.050
RSS_LIMIT = 20 * MB


# -- the bombs -------------------------------------------------------------------------------------


def jpeg_bomb(width: int, height: int) -> bytes:
    """A real 8x8 baseline JPEG whose SOF0 header is patched to declare ``width`` x ``height``."""
    out = io.BytesIO()
    Image.new("RGB", (8, 8), (128, 128, 128)).save(out, "JPEG", quality=50)
    data = bytearray(out.getvalue())
    sof = data.index(b"\xff\xc0")  # marker, length (2), precision (1), height (2), width (2)
    data[sof + 5 : sof + 7] = height.to_bytes(2, "big")
    data[sof + 7 : sof + 9] = width.to_bytes(2, "big")
    return bytes(data)


def png_bomb(width: int, height: int) -> bytes:
    """An all-zero 1-bit greyscale PNG, compressed row by row (never held whole in memory)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    row = bytes(1 + (width + 7) // 8)  # filter byte 0, then the row's bits
    z = zlib.compressobj(9)
    idat = b"".join(z.compress(row) for _ in range(height)) + z.flush()
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def webp_bomb(width: int, height: int) -> bytes:
    """A real 16x16 lossless WebP whose VP8L header is patched to declare ``width`` x ``height``."""
    out = io.BytesIO()
    Image.new("RGB", (16, 16), 0).save(out, "WEBP", lossless=True)
    data = bytearray(out.getvalue())
    at = data.index(b"VP8L") + 8
    assert data[at] == 0x2F
    bits = int.from_bytes(data[at + 1 : at + 5], "little") & ~((1 << 28) - 1)
    data[at + 1 : at + 5] = (bits | (width - 1) | ((height - 1) << 14)).to_bytes(4, "little")
    return bytes(data)


BOMBS: dict[str, tuple[Callable[[int, int], bytes], int, int]] = {
    "jpeg-30000x30000": (jpeg_bomb, 30000, 30000),
    "png-20000x20000": (png_bomb, 20000, 20000),
    "webp-16383x16383": (webp_bomb, 16383, 16383),
    # above our limit but below twice Pillow's own (179 M pixels): Pillow's plain header path
    "jpeg-8000x8000": (jpeg_bomb, 8000, 8000),
    "png-8000x8000": (png_bomb, 8000, 8000),
    "webp-8000x8000": (webp_bomb, 8000, 8000),
}


@pytest.fixture(scope="module")
def bombs() -> dict[str, bytes]:
    return {name: make(w, h) for name, (make, w, h) in BOMBS.items()}


@pytest.mark.parametrize("make", [jpeg_bomb, png_bomb, webp_bomb], ids=["jpeg", "png", "webp"])
def test_the_bomb_builders_make_images_a_decoder_decodes_at_the_declared_size(
    make: Callable[[int, int], bytes],
) -> None:
    """The same builders at a small size: OpenCV decodes every one, at the size the header declares."""
    image = cv2.imdecode(np.frombuffer(make(48, 40), np.uint8), cv2.IMREAD_COLOR)
    assert image is not None and image.shape == (40, 48, 3)


def test_the_bombs_are_small_files(bombs: dict[str, bytes]) -> None:
    assert len(bombs["jpeg-30000x30000"]) < 1000
    assert len(bombs["png-20000x20000"]) < 100_000
    assert len(bombs["webp-16383x16383"]) < 100


# -- (a) decode_image in this process --------------------------------------------------------------


class PeakRss:
    """The highest resident set size of a process while the block runs (sampled every 2 ms)."""

    def __init__(self, pid: int | None = None) -> None:
        self.process = psutil.Process(pid)
        self.before = 0
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(0.002):
            self.peak = max(self.peak, self.process.memory_info().rss)

    def __enter__(self) -> PeakRss:
        self.before = self.peak = self.process.memory_info().rss
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.after = self.process.memory_info().rss
        self.peak = max(self.peak, self.after)

    @property
    def growth(self) -> int:
        return self.peak - self.before


def _warm_up() -> None:
    """Load Pillow's and OpenCV's decoders once, so a first call's imports are not timed."""
    decode_image(photo_path("yaoming.jpg").read_bytes())
    for make in (jpeg_bomb, png_bomb, webp_bomb):
        with pytest.raises(ImageTooLarge):
            decode_image(make(10000, 10000))


@pytest.mark.parametrize("name", list(BOMBS))
def test_decode_image_refuses_a_bomb_from_its_header(name: str, bombs: dict[str, bytes]) -> None:
    _, width, height = BOMBS[name]
    _warm_up()
    with PeakRss() as rss:
        started = time.perf_counter()
        with pytest.raises(ImageTooLarge) as refused:
            decode_image(bombs[name])
        elapsed = time.perf_counter() - started
    error = refused.value
    assert error.code == "image_too_large" and isinstance(error, OversizedError)
    assert (error.width, error.height, error.limit) == (width, height, MAX_IMAGE_PIXELS)
    assert str(error) == (
        f"image is {width}x{height} = {width * height} pixels, the limit is {MAX_IMAGE_PIXELS} pixels"
    )
    assert elapsed < TIME_LIMIT, f"{name}: refused after {elapsed * 1000:.1f} ms"
    assert rss.growth < RSS_LIMIT, f"{name}: resident memory grew {rss.growth / MB:.1f} MB"
    print(f"{name}: {len(bombs[name])} bytes, {elapsed * 1000:.2f} ms, peak RSS +{rss.growth / MB:.2f} MB")


def test_the_limit_is_read_at_each_call_and_is_inclusive() -> None:
    out = io.BytesIO()
    Image.new("RGB", (20, 10), (90, 120, 200)).save(out, "PNG")
    data = out.getvalue()
    with mock.patch.object(face_pipeline, "MAX_IMAGE_PIXELS", 200):
        assert decode_image(data).shape == (10, 20, 3)
    with mock.patch.object(face_pipeline, "MAX_IMAGE_PIXELS", 199):
        with pytest.raises(ImageTooLarge, match=r"20x10 = 200 pixels, the limit is 199 pixels"):
            decode_image(data)


@pytest.mark.parametrize("kind", ["GIF", "BMP", "TIFF", "PPM", "ICO"])
def test_other_formats_are_refused_before_decoding(kind: str) -> None:
    """OpenCV alone decodes most of these; only JPEG, PNG and WebP are accepted now."""
    out = io.BytesIO()
    Image.new("RGB", (32, 32), (10, 200, 30)).save(out, kind)
    with mock.patch.object(cv2, "imdecode", side_effect=AssertionError("decoded")):
        with pytest.raises(UnsupportedImage, match="not JPEG, PNG or WebP") as refused:
            decode_image(out.getvalue())
    assert isinstance(refused.value, MalformedError) and refused.value.code == "malformed"


@pytest.mark.parametrize("kind", ["JPEG", "PNG", "WEBP"])
def test_the_accepted_formats_decode_to_bgr_uint8(kind: str) -> None:
    out = io.BytesIO()
    Image.new("RGB", (64, 48), (200, 100, 50)).save(
        out, kind, **({"lossless": True} if kind == "WEBP" else {})
    )
    image = decode_image(out.getvalue())
    assert image.dtype == np.uint8 and image.shape == (48, 64, 3) and image.flags.c_contiguous
    assert np.abs(image[24, 32].astype(int) - [50, 100, 200]).max() <= 3  # blue, green, red


# -- (b) through a real node over HTTP -------------------------------------------------------------


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    n = NodeProcess.create(tmp_path_factory.mktemp("bombs"))
    n.start()
    # one real photo first, so the face models are loaded before memory is measured
    status, result = n.call("POST", "/v1/match", "op1", {"image": b64url_encode(_photo()), "site": "gate-1"})
    assert status == 200 and result["faces"] == 1, result
    yield n
    n.stop()


def _photo() -> bytes:
    return photo_path("yaoming.jpg").read_bytes()


def _refusals(node: NodeProcess, user: str, path: str) -> int:
    """How many ``refused:image_too_large`` records the node's audit log holds for ``user`` at
    ``path`` (successful reads are group-committed later, so "the last record" is not a test)."""
    db = sqlite3.connect(node.directory / "watchnet.db")
    try:
        row = db.execute(
            "select count(*) from audit left join account on account.id = audit.actor"
            " where account.username = ? and audit.action = ? and audit.outcome = 'refused:image_too_large'",
            (user, f"POST {path}"),
        ).fetchone()
        return int(row[0])
    finally:
        db.close()


def _registration(image: bytes) -> dict[str, object]:
    return {
        "image": b64url_encode(image),
        "category": "shoplifting",
        "evidence": {"kind": "police-report", "reference": "TKY-2026-1414"},
        "incident_date": "2026-11-01",
        "site": "shibuya-01",
    }


ROUTES: dict[str, tuple[str, str, Callable[[bytes], dict[str, object]]]] = {
    "match": ("op1", "/v1/match", lambda image: {"image": b64url_encode(image), "site": "gate-1"}),
    "register": ("reg1", "/v1/entries", _registration),
}


@pytest.mark.parametrize("route", list(ROUTES))
@pytest.mark.parametrize("name", ["jpeg-30000x30000", "png-20000x20000", "webp-16383x16383"])
def test_the_node_refuses_a_bomb_with_413_and_audits_it(
    node: NodeProcess, bombs: dict[str, bytes], name: str, route: str
) -> None:
    _, width, height = BOMBS[name]
    user, path, body = ROUTES[route]
    assert node.process is not None
    request = body(bombs[name])
    refused_before = _refusals(node, user, path)
    with PeakRss(node.process.pid) as rss:
        started = time.perf_counter()
        status, error = node.call("POST", path, user, request)
        elapsed = time.perf_counter() - started
    assert (status, error["error"]) == (413, "image_too_large"), error
    assert f"{width}x{height} = {width * height} pixels" in error["message"]
    assert f"limit is {MAX_IMAGE_PIXELS} pixels" in error["message"]
    assert _refusals(node, user, path) == refused_before + 1, "the refusal is audited once"
    assert rss.growth < RSS_LIMIT, (
        f"{name} via {path}: the node's resident memory grew {rss.growth / MB:.1f} MB"
    )
    print(f"{name} via {path}: answered in {elapsed * 1000:.1f} ms, node peak RSS +{rss.growth / MB:.2f} MB")


def test_the_node_still_registers_a_real_photo_after_the_bombs(node: NodeProcess) -> None:
    status, state = node.call("POST", "/v1/entries", "reg1", _registration(_photo()))
    assert status == 201, state


# -- (c) EXIF orientation --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pipeline() -> FacePipeline:
    return FacePipeline(ModelPack.locate())


def _upright() -> Image.Image:
    with Image.open(photo_path("yaoming.jpg")) as photo:
        return photo.convert("RGB")


def _bgr(image: Image.Image) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(image.convert("RGB"))[..., ::-1])


def _as_phone_saves_it(kind: str) -> bytes:
    """The upright photo as a phone held upright stores it: sensor pixels turned, Orientation=6."""
    sideways = _upright().transpose(Image.Transpose.ROTATE_90)  # exif_transpose turns 6 back by ROTATE_270
    exif = Image.Exif()
    exif[0x0112] = 6
    out = io.BytesIO()
    sideways.save(out, kind, exif=exif, **({"quality": 95} if kind == "JPEG" else {}))
    return out.getvalue()


def _eyes(pipeline: FacePipeline, image: np.ndarray) -> tuple[float, float, float]:
    """Of the best face: the eyes' horizontal and vertical distance, and how far the nose is below them."""
    faces = pipeline.detect(image)
    assert faces, "no face found"
    left, right, nose = faces[0].keypoints[:3]
    return (
        abs(float(right[0] - left[0])),
        abs(float(right[1] - left[1])),
        float(nose[1] - (left[1] + right[1]) / 2),
    )


@pytest.mark.parametrize("kind", ["JPEG", "PNG"])
def test_a_phone_photo_is_decoded_upright(pipeline: FacePipeline, kind: str) -> None:
    data = _as_phone_saves_it(kind)
    upright = _bgr(_upright())
    decoded = decode_image(data)
    assert decoded.shape == upright.shape and decoded.dtype == np.uint8
    if kind == "PNG":
        assert np.array_equal(decoded, upright)
    else:
        assert float(np.abs(decoded.astype(int) - upright).mean()) < 3.0
    across, down, nose_below = _eyes(pipeline, decoded)
    assert across > 3 * down and nose_below > 0.2 * across, "the face is not upright"
    _, embedding = pipeline.best_face(decoded)
    _, reference = pipeline.best_face(upright)
    assert embedding.similarity(reference) > 0.9
    # the stored pixels, without the orientation applied, show the face lying on its side
    with Image.open(io.BytesIO(data)) as stored:
        assert stored.getexif()[0x0112] == 6
        raw = _bgr(stored)
    assert raw.shape == (upright.shape[1], upright.shape[0], 3)
    across, down, _ = _eyes(pipeline, raw)
    assert down > 3 * across, "the stored pixels were expected sideways"


@pytest.mark.parametrize("kind", ["JPEG", "PNG", "WEBP"])
@pytest.mark.parametrize("orientation", range(1, 9))
def test_the_orientation_applied_is_exif_transposes(kind: str, orientation: int) -> None:
    """All eight EXIF orientations give exactly what ``PIL.ImageOps.exif_transpose`` gives."""
    exif = Image.Exif()
    exif[0x0112] = orientation
    out = io.BytesIO()
    _upright().save(out, kind, exif=exif, **({"lossless": True} if kind == "WEBP" else {}))
    with Image.open(io.BytesIO(out.getvalue())) as opened:
        expected = _bgr(ImageOps.exif_transpose(opened))
    assert np.array_equal(decode_image(out.getvalue()), expected)


# -- (d) arbitrary bytes give only typed errors -----------------------------------------------------


def _seed(kind: str, **options: Any) -> bytes:
    out = io.BytesIO()
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.new("RGB", (24, 16), (30, 60, 90)).save(out, kind, exif=exif, **options)
    return out.getvalue()


SEEDS = [
    _seed("JPEG"),
    _seed("JPEG", progressive=True),
    _seed("PNG"),
    _seed("WEBP"),
    _seed("WEBP", lossless=True),
    jpeg_bomb(64, 64),
    png_bomb(64, 64),
    webp_bomb(64, 64),
]


@st.composite
def damaged_images(draw: st.DrawFn) -> bytes:
    """A small real JPEG, PNG or WebP, truncated and with bytes overwritten anywhere."""
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(0, 6))):
        data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    return bytes(data[: draw(st.integers(0, len(data)))])


def _decode_typed(data: bytes) -> None:
    try:
        image = decode_image(data)
    except WatchnetError as e:
        assert isinstance(e, (MalformedError, OversizedError)), repr(e)
        return
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=512) | damaged_images())
def test_decode_image_raises_only_typed_errors(data: bytes) -> None:
    with mock.patch.object(face_pipeline, "MAX_IMAGE_PIXELS", 1_000_000):  # keep each decode cheap
        _decode_typed(data)
