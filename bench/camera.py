"""Live cameras: faces a second per core for detection plus embedding, and the latency from the
frame in which the registered person first appears to the alert the operator sees.

1. **Pipeline**, in this process pinned to one core: the clip's frames (640x360; strangers with 6
   faces, the person with 1) through detection and embedding of every face, as the worker does at
   each sample: frames a second and faces a second on one core.
2. **End to end**, real processes: a node (SQLite) with the person registered, ``watchnet camera
   run`` with 1 or 4 cameras, each an RTSP stream that Debian's ffmpeg publishes (``-re``, real
   time) to the tests' relay: 12 s of strangers, then the person for 3 s. The clock starts when the
   relay forwards a stream's first packet plus 12 s (the person's first frame) and stops when
   ``GET /v1/alerts`` as the operator (what the operator's page shows, polled every 50 ms) first
   lists the alert of that camera. Each trial uses new sites (an alert is raised once per person
   and site a minute), so the worker is started again for each, and starts at least
   ``MERGE_WINDOW`` (the node's ``[alerts] merge_window``, set to its least) after the last
   alert: the same person seen again within it is a sighting of that alert, not a new one.
3. **To the browser**, in the same trials: the operator's ``/console/operator`` open in Debian's
   Chromium (Playwright, headless, signed in as the operator, as ``tests/test_*browser*.py`` do),
   where the node pushes the re-rendered alert list as a server-sent event. A script installed
   in the page before its own (``add_init_script``) watches the list with a ``MutationObserver``
   and notes ``Date.now()`` the first time a row of each site is in it (kept in
   ``sessionStorage``, so a reload the page does keeps it); that wall-clock time, against the
   same person's first frame, is the latency to the operator's screen. Without
   ``/usr/bin/chromium`` this part is skipped.

    python bench/camera.py [--trials 6] [--cameras 1 4] [--no-browser]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from node.config import CAMERA_STATUS_FILE, CameraSettings, NodeConfig  # noqa: E402
from node.demo.network import free_port  # noqa: E402
from tests.camera_clip import frames, make_clip  # noqa: E402
from tests.nodeproc import PASSWORD, NodeProcess, cli  # noqa: E402
from tests.rtsp_relay import RtspRelay  # noqa: E402
from tests.test_camera_worker import _register_person  # noqa: E402

MERGE_WINDOW = timedelta(seconds=30)
LEAD_IN = 12.0
"""Seconds of strangers before the person appears: the worker connects within them."""


def pipeline_rate(seconds: float = 10.0) -> dict[str, float]:
    """Frames and faces a second through detect + embed on one core (this process pinned to CPU 0)."""
    os.sched_setaffinity(0, {0})
    from node.face.models import ModelPack
    from node.face.pipeline import FacePipeline

    pipeline = FacePipeline(ModelPack.locate())
    clip = frames(strangers_s=0.5, person_s=0.5)
    pipeline.embed_crops([f.crop for f in pipeline.detect(clip[0])])  # warm up
    done = faces = 0
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        found = pipeline.detect(clip[done % len(clip)])
        pipeline.embed_crops([f.crop for f in found])
        faces += len(found)
        done += 1
    elapsed = time.perf_counter() - started
    os.sched_setaffinity(0, set(range(os.cpu_count() or 1)))
    return {"frames_per_s": done / elapsed, "faces_per_s": faces / elapsed, "faces_per_frame": faces / done}


def _publish(clip: Path, port: int, path: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-re", "-i", str(clip), "-c", "copy",
         "-f", "rtsp", "-rtsp_transport", "tcp", f"rtsp://127.0.0.1:{port}/{path}"],
        stdin=subprocess.DEVNULL,
    )  # fmt: skip


def _alerts(node: NodeProcess) -> list[dict[str, object]]:
    status, listed = node.call("GET", "/v1/alerts", "op1")
    assert status == 200, listed
    alerts: list[dict[str, object]] = listed["alerts"]
    return alerts


WATCH_ROWS = """
(() => {
  const note = () => {
    const seen = JSON.parse(sessionStorage.getItem("bench-seen") || "{}");
    let changed = false;
    for (const cell of document.querySelectorAll("#live-alerts tr[data-entry] td.site")) {
      const site = (cell.textContent.match(/bench-[0-9]+/) || [])[0];
      if (site && !(site in seen)) { seen[site] = Date.now(); changed = true; }
    }
    if (changed) sessionStorage.setItem("bench-seen", JSON.stringify(seen));
  };
  const start = () => {
    note();
    new MutationObserver(note).observe(document.body, {childList: true, subtree: true});
  };
  if (document.body) start(); else document.addEventListener("DOMContentLoaded", start);
})();
"""
"""When each site's first alert row is in the operator's live list (ms since the epoch)."""


class OperatorPage:
    """The operator's live page in Chromium, signed in, with ``WATCH_ROWS`` in every load of it."""

    def __init__(self, node: NodeProcess) -> None:
        from playwright.sync_api import sync_playwright

        from tests.browser import CHROMIUM, FLAGS

        self._playwright = sync_playwright().start()
        self._browser = self._playwright.chromium.launch(executable_path=str(CHROMIUM), args=list(FLAGS))
        context = self._browser.new_context(locale="en-US")
        context.add_init_script(WATCH_ROWS)
        self.page = context.new_page()
        self.page.set_default_timeout(30_000)
        self.page.goto(f"{node.url}/console/login?lang=en")
        self.page.fill("#username", "op1")
        self.page.fill("#password", PASSWORD)
        self.page.locator("main form button[type=submit]").click()
        self.page.wait_for_url("**/console/operator?lang=en")
        self.page.wait_for_selector("#live-status[data-state=connected]")

    def seen(self) -> dict[str, float]:
        """Each site's first row on the page, as ``time.time()`` seconds."""
        try:
            raw = self.page.evaluate("sessionStorage.getItem('bench-seen') || '{}'")
        except Exception:  # noqa: BLE001 (the page is reloading: asked again at the next poll)
            return {}
        return {site: ms / 1000 for site, ms in json.loads(raw).items()}

    def close(self) -> None:
        self._browser.close()
        self._playwright.stop()


def trial(
    node: NodeProcess,
    relay: RtspRelay,
    clip: Path,
    token_file: Path,
    sites: list[str],
    browser: OperatorPage | None = None,
) -> tuple[list[float], list[float]]:
    """One run of the worker with one camera per site; the latency of each camera's alert (s) in
    ``GET /v1/alerts`` and on the operator's page in the browser."""
    config = NodeConfig.load(node.directory)
    cameras = tuple(
        CameraSettings(id=f"cam-{site}", site=site, url=f"rtsp://127.0.0.1:{relay.port}/{site}", sample_fps=5,
                       min_face_pixels=30)
        for site in sites
    )  # fmt: skip
    (node.directory / "config.toml").write_text(replace(config, cameras=cameras).to_toml(), encoding="utf-8")
    publishers = [_publish(clip, relay.port, site) for site in sites]
    log = (node.directory / "bench-camera.log").open("ab")
    worker = subprocess.Popen(
        [sys.executable, "-m", "node.cli", "camera", "run", "--node", str(node.directory), "--url", node.url,
         "--token-file", str(token_file)],
        stdout=log, stderr=log, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    latencies: dict[str, float] = {}
    pushed: dict[str, float] = {}
    wall = time.time() - time.monotonic()  # the browser's clock is the wall clock
    up_at: dict[str, float] = {}
    status_file = node.directory / CAMERA_STATUS_FILE
    status_file.unlink(missing_ok=True)
    try:
        deadline = time.monotonic() + LEAD_IN + 20
        while time.monotonic() < deadline and (
            len(latencies) < len(sites) or (browser is not None and len(pushed) < len(sites))
        ):
            try:
                for c in json.loads(status_file.read_text(encoding="utf-8"))["cameras"]:
                    if c["state"] == "up":
                        up_at.setdefault(c["site"], time.monotonic())
            except (OSError, ValueError, KeyError):
                pass
            for alert in _alerts(node):
                site = str(alert["site"])
                if site in sites and site not in latencies and f"/{site}" in relay.first_packet:
                    latencies[site] = time.monotonic() - (relay.first_packet[f"/{site}"] + LEAD_IN)
            if browser is not None:
                for site, at in browser.seen().items():
                    if site in sites and site not in pushed and f"/{site}" in relay.first_packet:
                        pushed[site] = at - wall - (relay.first_packet[f"/{site}"] + LEAD_IN)
            time.sleep(0.05)
    finally:
        worker.terminate()
        worker.wait(20)
        log.close()
        for p in publishers:
            p.kill()
            p.wait(10)
    late = sorted(
        s
        for s in sites
        if f"/{s}" in relay.first_packet and up_at.get(s, 1e18) > relay.first_packet[f"/{s}"] + LEAD_IN
    )
    missing = sorted(set(sites) - set(latencies) - set(late))
    if late:
        print(f"    {late}: the worker was not up before the person appeared (not counted)")
    if missing:
        print(f"    no alert from {missing} within {LEAD_IN + 20:.0f} s")
    if browser is not None and set(latencies) - set(pushed):
        print(f"    {sorted(set(latencies) - set(pushed))}: in GET /v1/alerts but never on the page")
    return [v for k, v in latencies.items() if k not in late], [v for k, v in pushed.items() if k not in late]


def _quantiles(values: list[float]) -> str:
    ordered = sorted(values)
    p99 = ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]
    return f"p50 {statistics.median(ordered) * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms, max {ordered[-1] * 1000:.0f} ms (n={len(ordered)})"


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--trials", type=int, default=6)
    parser.add_argument("--cameras", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--no-browser", action="store_true", help="skip the latency to the browser's page")
    args = parser.parse_args()
    print(f"machine: {platform.machine()} {os.cpu_count()} cores, Python {platform.python_version()}, "
          f"load average {os.getloadavg()[0]:.2f}, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")  # fmt: skip
    rate = pipeline_rate()
    print(f"pipeline on one core: {rate['frames_per_s']:.1f} frames/s, {rate['faces_per_s']:.1f} faces/s "
          f"({rate['faces_per_frame']:.1f} faces a frame): one core keeps up with "
          f"{rate['frames_per_s'] / 5:.1f} camera(s) sampled at 5 fps, {rate['frames_per_s'] / 2:.1f} at 2 fps")  # fmt: skip
    results: dict[str, object] = {"pipeline_one_core": rate}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        node = NodeProcess.create(root)
        config = NodeConfig.load(node.directory)  # the alert poll below is faster than staff's 600 a minute
        config = replace(
            config,
            limits=replace(config.limits, requests_per_minute=6000),
            alerts=replace(config.alerts, merge_window=MERGE_WINDOW),
        )
        (node.directory / "config.toml").write_text(config.to_toml(), encoding="utf-8")
        sites_needed = sum(n * args.trials for n in args.cameras)
        site_args = [a for i in range(sites_needed) for a in ("--site", f"bench-{i:02d}")]
        cli("user", "add", "--node", str(node.directory), "cam1", "--role", "camera", *site_args,
            "--password-stdin", stdin=PASSWORD + "\n")  # fmt: skip
        token_file = root / "camera.token"
        token_file.write_text(cli("user", "token", "--node", str(node.directory), "cam1"), encoding="utf-8")
        node.start()
        relay = RtspRelay(free_port())
        relay.start()
        from tests.browser import CHROMIUM

        browser = None if args.no_browser or not CHROMIUM.exists() else OperatorPage(node)
        if browser is None:
            print("  (no browser: the latency to the operator's page is not measured)")
        try:
            _register_person(node)
            clip = make_clip(root / "passing.mp4", strangers_s=LEAD_IN, person_s=3.0)
            used = 0
            last_alert = -1e9
            for n in args.cameras:
                samples: list[float] = []
                on_page: list[float] = []
                for t in range(args.trials):
                    sites = [f"bench-{used + i:02d}" for i in range(n)]
                    used += n
                    time.sleep(max(0.0, last_alert + MERGE_WINDOW.total_seconds() + 1 - time.monotonic()))
                    got, pushed = trial(node, relay, clip, token_file, sites, browser)
                    last_alert = time.monotonic()
                    print(
                        f"  {n} camera(s), trial {t + 1}: GET /v1/alerts "
                        + ", ".join(f"{x * 1000:.0f} ms" for x in got)
                        + ("; browser " + ", ".join(f"{x * 1000:.0f} ms" for x in pushed) if browser else "")
                    )
                    samples += got
                    on_page += pushed
                if samples:
                    print(
                        f"{n} camera(s): first frame of the person to the operator's alert: {_quantiles(samples)}"
                    )
                if on_page:
                    print(
                        f"{n} camera(s): first frame of the person to the alert on the operator's page "
                        f"in the browser: {_quantiles(on_page)}"
                    )
                results[f"cameras_{n}"] = samples
                results[f"cameras_{n}_browser"] = on_page
        finally:
            if browser is not None:
                browser.close()
            relay.stop()
            node.stop()
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
