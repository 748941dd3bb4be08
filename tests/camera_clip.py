"""A short camera clip made from the shipped photos, encoded by Debian's ffmpeg, for the camera tests.

Strangers (``t1.jpg``, ``gdp.jpg``: the insightface and model packages' sample photos) pass, then the
registered person (``yaoming.jpg``) walks across the frame for a few seconds, then strangers again.
H.264 with a key frame every second, so a reader that joins (or rejoins) mid-stream decodes within
a second.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import cv2
import numpy as np

from node.demo.story import photo_path

WIDTH, HEIGHT, FPS = 640, 360, 10
STRANGERS = ("t1.jpg", "gdp.jpg")
PERSON = "yaoming.jpg"


def _fit(image: np.ndarray, width: int, height: int) -> np.ndarray:
    scale = min(width / image.shape[1], height / image.shape[0])
    return cv2.resize(image, (int(image.shape[1] * scale), int(image.shape[0] * scale)))


def _photo(name: str) -> np.ndarray:
    image = cv2.imread(str(photo_path(name)))
    assert image is not None, name
    return np.asarray(image, dtype=np.uint8)


def _canvas() -> np.ndarray:
    return np.full((HEIGHT, WIDTH, 3), 90, dtype=np.uint8)


def _place(canvas: np.ndarray, image: np.ndarray, x: int, y: int) -> np.ndarray:
    h, w = image.shape[:2]
    x, y = max(0, min(x, WIDTH - w)), max(0, min(y, HEIGHT - h))
    canvas[y : y + h, x : x + w] = image
    return canvas


def frames(*, strangers_s: float = 2.0, person_s: float = 3.0, person: bool = True) -> list[np.ndarray]:
    """The clip's frames: strangers, then (if ``person``) the registered person moving, then strangers."""
    out: list[np.ndarray] = []
    for name in STRANGERS:
        picture = _fit(_photo(name), WIDTH, HEIGHT)
        for _ in range(int(strangers_s * FPS)):
            out.append(_place(_canvas(), picture, (WIDTH - picture.shape[1]) // 2, 0))
        if person and name == STRANGERS[0]:
            face = _fit(_photo(PERSON), 260, 320)
            steps = int(person_s * FPS)
            for i in range(steps):  # walks left to right across the frame
                out.append(_place(_canvas(), face, 60 + i * (WIDTH - 380) // max(1, steps - 1), 20))
    return out


def make_clip(path: Path, **kwargs: float | bool) -> Path:
    """Encode ``frames(**kwargs)`` as H.264 into ``path`` (an .mp4) with ffmpeg."""
    data = b"".join(f.tobytes() for f in frames(**kwargs))  # type: ignore[arg-type]
    subprocess.run(
        [
            "ffmpeg", "-hide_banner", "-loglevel", "error", "-y",
            "-f", "rawvideo", "-pix_fmt", "bgr24", "-s", f"{WIDTH}x{HEIGHT}", "-r", str(FPS), "-i", "-",
            "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p", "-g", str(FPS),
            "-bf", "0", str(path),
        ],
        input=data,
        check=True,
        timeout=60,
    )  # fmt: skip
    return path
