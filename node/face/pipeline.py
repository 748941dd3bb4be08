"""Detect faces, measure their quality, align them and compute unit ArcFace embeddings.

Quality is measured, not guessed: the detector's score, the face's width in pixels, a yaw
estimate from the five keypoints and the sharpness (variance of the Laplacian of the aligned
crop). A registration refuses a face that misses any threshold of the node's written rules and
says which value missed which limit. The ONNX sessions are created once; callers run ``detect``
and ``embed`` off the event loop.
"""

from __future__ import annotations

import io
import math
import threading
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt
import PIL.Image

from governance.findings import Finding
from governance.rules import FaceQuality
from node.face.models import ModelPack
from protocol.embedding import Embedding
from protocol.errors import MalformedError, OversizedError, PolicyError

__all__ = [
    "MAX_CROP_BYTES",
    "MAX_IMAGE_PIXELS",
    "DetectedFace",
    "FacePipeline",
    "FaceQualityRefused",
    "ImageTooLarge",
    "NoFaceFound",
    "Quality",
    "UnsupportedImage",
    "check_crop",
    "decode_crop",
    "decode_image",
]

Image = npt.NDArray[np.uint8]
MAX_IMAGE_PIXELS = 40_000_000
"""The most pixels an uploaded image may declare; read at each call, checked before any decoding."""

ACCEPTED_FORMATS = ("JPEG", "PNG", "WEBP")
"""What ``decode_image`` opens (Pillow's format names); a JPEG with several pictures opens as ``MPO``."""


class NoFaceFound(PolicyError):
    code = "no_face"


class FaceQualityRefused(PolicyError):
    code = "face_quality"

    def __init__(self, failures: Sequence[str]) -> None:
        self.failures = list(failures)
        super().__init__("; ".join(failures))


class ImageTooLarge(OversizedError):
    """An image whose header declares more pixels than ``MAX_IMAGE_PIXELS`` (refused before decoding)."""

    code = "image_too_large"

    def __init__(self, width: int, height: int, limit: int) -> None:
        self.width, self.height, self.limit = width, height, limit
        super().__init__(f"image is {width}x{height} = {width * height} pixels, the limit is {limit} pixels")


class UnsupportedImage(MalformedError):
    """Bytes that are not a JPEG, PNG or WebP image (refused before decoding; code ``malformed``)."""


def _webp_canvas(data: bytes) -> tuple[int, int] | None:
    """A WebP file's canvas size from its first chunk header (RFC 9649), or None."""
    chunk = data[12:16]
    if chunk == b"VP8X" and len(data) >= 30:
        return int.from_bytes(data[24:27], "little") + 1, int.from_bytes(data[27:30], "little") + 1
    if chunk == b"VP8L" and len(data) >= 25 and data[20] == 0x2F:
        bits = int.from_bytes(data[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8 " and len(data) >= 30 and data[23:26] == b"\x9d\x01\x2a":
        return int.from_bytes(data[26:28], "little") & 0x3FFF, int.from_bytes(data[28:30], "little") & 0x3FFF
    return None


def _size_past_pillow_limit(data: bytes) -> tuple[int, int]:
    """The declared size of an image Pillow itself refused as a bomb, without Pillow's own limit.

    Pillow checks its ``MAX_IMAGE_PIXELS`` (about 89 M, error at twice that) inside ``Image.open``
    and does not say the width and height. The JPEG and PNG classes parse only the header when
    constructed; a WebP's canvas size is in its first chunk header.
    """
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        size = _webp_canvas(data)
        if size is None:
            raise UnsupportedImage("WebP image without a readable canvas size")
        return size
    for name in ("JPEG", "PNG"):
        factory, accept = PIL.Image.OPEN[name]
        if accept is not None and accept(data[:16]):
            with factory(io.BytesIO(data), "") as header:
                return header.size
    raise UnsupportedImage("image is not JPEG, PNG or WebP")


def _declared_size(data: bytes) -> tuple[int, int]:
    """Width and height from the image's header (Pillow's lazy ``Image.open``; no pixel data is read).

    Refuses bytes that are not JPEG, PNG or WebP, or whose header cannot be read.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", PIL.Image.DecompressionBombWarning)
            try:
                with PIL.Image.open(io.BytesIO(data), formats=ACCEPTED_FORMATS) as header:
                    return header.size
            except PIL.Image.DecompressionBombError:
                return _size_past_pillow_limit(data)
    except UnsupportedImage:
        raise
    except PIL.UnidentifiedImageError as e:
        raise UnsupportedImage("image is not JPEG, PNG or WebP (or its header is damaged)") from e
    except Exception as e:  # a damaged header: Pillow's plugins raise many kinds, by format and version
        raise UnsupportedImage(f"image header could not be read ({type(e).__name__})") from e


def decode_image(data: bytes) -> Image:
    """Decode JPEG/PNG/WebP bytes to an upright BGR uint8 array; refuse anything else.

    The header is read first and an image declaring more than ``MAX_IMAGE_PIXELS`` pixels is
    refused (``ImageTooLarge``) before a single pixel is decoded: a few hundred bytes can declare
    30000x30000, which would cost gigabytes of memory and seconds of CPU to decode. Bytes that are
    not JPEG, PNG or WebP are refused (``UnsupportedImage``) before decoding too.

    OpenCV decodes and applies the EXIF orientation (as ``PIL.ImageOps.exif_transpose`` does; the
    tests hold the two equal for all eight orientations), so a phone photo held upright reaches
    the face detector upright.
    """
    if not data:
        raise MalformedError("image is empty")
    limit = MAX_IMAGE_PIXELS
    width, height = _declared_size(data)
    if width * height > limit:
        raise ImageTooLarge(width, height, limit)
    try:
        image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    except cv2.error as e:
        raise MalformedError("image could not be decoded (expected JPEG, PNG or WebP)") from e
    if image is None or image.ndim != 3 or image.shape[2] != 3:
        raise MalformedError("image could not be decoded (expected JPEG, PNG or WebP)")
    if image.shape[0] * image.shape[1] > limit:  # the decoder disagreed with the header
        raise ImageTooLarge(image.shape[1], image.shape[0], limit)
    return np.asarray(image, dtype=np.uint8)


CROP_SIDE = 112
"""An aligned face crop's width and height (ArcFace's input)."""
MAX_CROP_BYTES = 64 << 10
"""A sent crop's JPEG is a few kilobytes; more is not one."""


def check_crop(data: bytes, field: str) -> None:
    """Refuse, from its header alone, bytes that are not an aligned crop's JPEG (112x112, <= 64 KiB)."""
    if len(data) > MAX_CROP_BYTES:
        raise MalformedError(
            f"{field}: {len(data)} bytes, an aligned face crop's JPEG is at most {MAX_CROP_BYTES}"
        )
    if data[:3] != b"\xff\xd8\xff":
        raise UnsupportedImage(f"{field}: not a JPEG")
    width, height = _declared_size(data)
    if (width, height) != (CROP_SIDE, CROP_SIDE):
        raise MalformedError(
            f"{field}: an aligned face crop is {CROP_SIDE}x{CROP_SIDE}, got {width}x{height}"
        )


def decode_crop(data: bytes, field: str = "crop") -> Image:
    """An aligned crop's pixels from its JPEG, checked as ``check_crop`` checks it first."""
    check_crop(data, field)
    image = decode_image(data)
    if image.shape[:2] != (CROP_SIDE, CROP_SIDE):  # the decoder disagreed with the header
        raise MalformedError(f"{field}: an aligned face crop is {CROP_SIDE}x{CROP_SIDE}")
    return image


@dataclass(frozen=True)
class Quality:
    detection_score: float
    face_pixels: int
    yaw_degrees: float
    sharpness: float

    def failures(self, limits: FaceQuality) -> list[Finding]:
        out = []
        if self.detection_score < limits.min_detection_score:
            out.append(
                Finding(
                    "detection_score_low",
                    "detection score {score:.2f} is below {limit:.2f}",
                    score=self.detection_score,
                    limit=limits.min_detection_score,
                )
            )
        if self.face_pixels < limits.min_face_pixels:
            out.append(
                Finding(
                    "face_too_small",
                    "face is {pixels} px wide, at least {limit} px needed",
                    pixels=self.face_pixels,
                    limit=limits.min_face_pixels,
                )
            )
        if abs(self.yaw_degrees) > limits.max_yaw_degrees:
            out.append(
                Finding(
                    "head_turned",
                    "head turned {degrees:.0f} degrees, at most {limit:.0f}",
                    degrees=abs(self.yaw_degrees),
                    limit=limits.max_yaw_degrees,
                )
            )
        if self.sharpness < limits.min_sharpness:
            out.append(
                Finding(
                    "blurred",
                    "sharpness {sharpness:.0f} is below {limit:.0f} (blurred)",
                    sharpness=self.sharpness,
                    limit=limits.min_sharpness,
                )
            )
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "detection_score": round(self.detection_score, 4),
            "face_pixels": self.face_pixels,
            "yaw_degrees": round(self.yaw_degrees, 1),
            "sharpness": round(self.sharpness, 1),
        }


@dataclass(frozen=True)
class DetectedFace:
    box: tuple[float, float, float, float]
    keypoints: npt.NDArray[np.float32]
    quality: Quality
    crop: Image

    def to_dict(self) -> dict[str, Any]:
        return {"box": [round(v, 1) for v in self.box], "quality": self.quality.to_dict()}


def _yaw(keypoints: npt.NDArray[np.float32]) -> float:
    """Yaw from the nose's offset against the eyes' midpoint, relative to the eye distance."""
    left_eye, right_eye, nose = keypoints[0], keypoints[1], keypoints[2]
    eye_distance = float(np.linalg.norm(right_eye - left_eye))
    if eye_distance < 1e-3:
        return 90.0
    offset = float(nose[0] - (left_eye[0] + right_eye[0]) / 2) / eye_distance
    return math.degrees(math.asin(max(-1.0, min(1.0, 2.0 * offset))))


class FacePipeline:
    """SCRFD detection + 5-point alignment + ArcFace on ONNX Runtime (CPU)."""

    def __init__(self, pack: ModelPack, *, detection_threshold: float = 0.5) -> None:
        import onnxruntime
        from insightface.model_zoo import model_zoo
        from insightface.utils import face_align

        onnxruntime.set_default_logger_severity(3)
        self.pack = pack
        self._align = face_align.norm_crop
        providers = ["CPUExecutionProvider"]
        self._detector = model_zoo.get_model(str(pack.detector), providers=providers)
        self._detector.prepare(ctx_id=-1, input_size=(640, 640), det_thresh=detection_threshold)
        self._recognizer = model_zoo.get_model(str(pack.recognizer), providers=providers)
        self._recognizer.prepare(ctx_id=-1)
        self._lock = threading.Lock()

    def detect(self, image: Image) -> list[DetectedFace]:
        """Every face, best detection first."""
        with self._lock:
            boxes, keypoints = self._detector.detect(image, max_num=0, metric="default")
        faces = []
        for box, kps in zip(boxes, keypoints, strict=True):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)
                crop = self._align(image, kps, image_size=112)
            gray = cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY)
            quality = Quality(
                detection_score=float(box[4]),
                face_pixels=int(box[2] - box[0]),
                yaw_degrees=_yaw(kps),
                sharpness=float(cv2.Laplacian(gray, cv2.CV_64F).var()),
            )
            faces.append(
                DetectedFace((float(box[0]), float(box[1]), float(box[2]), float(box[3])), kps, quality, crop)
            )
        return sorted(faces, key=lambda f: f.quality.detection_score, reverse=True)

    def embed_crop(self, crop: Image) -> Embedding:
        """Embedding of an aligned 112x112 face crop."""
        if crop.shape[:2] != (112, 112):
            raise MalformedError(f"an aligned face crop is 112x112, got {crop.shape[1]}x{crop.shape[0]}")
        with self._lock:
            feature = self._recognizer.get_feat(crop).reshape(-1)
        return Embedding.from_vector(feature)

    def embed_crops(self, crops: list[Image]) -> list[Embedding]:
        """Embeddings of several aligned crops in one batched ONNX run (a frame with many faces)."""
        if not crops:
            return []
        for crop in crops:
            if crop.shape[:2] != (112, 112):
                raise MalformedError(f"an aligned face crop is 112x112, got {crop.shape[1]}x{crop.shape[0]}")
        with self._lock:
            features = self._recognizer.get_feat(crops)
        return [Embedding.from_vector(row) for row in features.reshape(len(crops), -1)]

    def best_face(self, image: Image, limits: FaceQuality | None = None) -> tuple[DetectedFace, Embedding]:
        """The best-detected face and its embedding; refuse when there is none or it fails ``limits``."""
        faces = self.detect(image)
        if not faces:
            raise NoFaceFound("no face found in the image")
        face = faces[0]
        if limits is not None:
            failures = face.quality.failures(limits)
            if failures:
                raise FaceQualityRefused(failures)
        return face, self.embed_crop(face.crop)
