"""Do OpenCV's RTSP opens overlap when each camera opens in its own thread? (#19)

Four RTSP streams (Debian's ffmpeg publishing a clip in a loop to ``tests/rtsp_relay.py``) are
opened with the worker's own ``open_capture`` one after another, then each in its own thread
(as the worker's ``StreamReader`` threads do); then again behind a camera that accepts the TCP
connection and never answers (its open waits for the 5 s open timeout). A Python thread ticking
every millisecond during an open shows whether OpenCV holds the GIL meanwhile.

    python bench/camera_open.py
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from node.camera.stream import open_capture  # noqa: E402
from node.demo.network import free_port  # noqa: E402
from tests.camera_clip import make_clip  # noqa: E402
from tests.rtsp_relay import RtspRelay  # noqa: E402


def _publish(clip: Path, port: int, path: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-re", "-stream_loop", "-1", "-i", str(clip),
         "-c", "copy", "-f", "rtsp", "-rtsp_transport", "tcp", f"rtsp://127.0.0.1:{port}/{path}"],
        stdin=subprocess.DEVNULL,
    )  # fmt: skip


def _open(url: str, started: float, out: list[tuple[str, float, bool]]) -> None:
    capture = open_capture(url)
    out.append((url.rsplit("/", 1)[1], time.monotonic() - started, capture.isOpened()))
    capture.release()


def opens(urls: list[str], threaded: bool) -> list[tuple[str, float, bool]]:
    out: list[tuple[str, float, bool]] = []
    started = time.monotonic()
    if threaded:
        threads = [threading.Thread(target=_open, args=(u, started, out)) for u in urls]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    else:
        for u in urls:
            _open(u, started, out)
    return sorted(out, key=lambda x: x[1])


def main() -> int:
    print(f"load average {os.getloadavg()[0]:.2f}, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    with tempfile.TemporaryDirectory() as tmp:
        clip = make_clip(Path(tmp) / "clip.mp4", strangers_s=2.0, person_s=1.0)
        relay = RtspRelay(free_port())
        relay.start()
        publishers = [_publish(clip, relay.port, f"cam{i}") for i in range(4)]
        mute = socket.socket()
        mute.bind(("127.0.0.1", 0))
        mute.listen(8)  # accepts, never answers
        try:
            time.sleep(3)
            urls = [f"rtsp://127.0.0.1:{relay.port}/cam{i}" for i in range(4)]
            mute_url = f"rtsp://127.0.0.1:{mute.getsockname()[1]}/mute"
            for label, batch in (("4 cameras", urls), ("a mute camera first, then 4", [mute_url, *urls])):
                for threaded in (False, True):
                    got = opens(batch, threaded)
                    print(
                        f"{label}, {'a thread each' if threaded else 'one after another'}: "
                        + ", ".join(
                            f"{name} {'up' if ok else 'failed'} at {at:.2f} s" for name, at, ok in got
                        )
                    )
            ticks, stop = [0], threading.Event()

            def tick() -> None:
                while not stop.is_set():
                    ticks[0] += 1
                    time.sleep(0.001)

            ticker = threading.Thread(target=tick)
            ticker.start()
            started = time.monotonic()
            open_capture(mute_url).release()
            stop.set()
            ticker.join()
            print(f"during a {time.monotonic() - started:.2f} s open a Python thread ticked {ticks[0]} times")
        finally:
            for p in publishers:
                p.kill()
                p.wait(10)
            relay.stop()
            mute.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
