"""``watchnet camera ...``: the store's cameras in the node's config, and the worker that reads them.

``add``, ``list`` and ``remove`` edit the ``[[cameras]]`` tables of ``config.toml`` (0600; each
change is audited with the camera's id and site, never its address); ``test`` opens a stream for
a few seconds and says how many frames and faces it saw, keeping nothing; ``run`` is the camera
worker (``node/camera/worker.py``). A stream URL's password is shown everywhere as ``***``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from node.config import CONFIG_FILE, CameraSettings, NodeConfig
from protocol.errors import ConfigurationError
from protocol.fields import format_duration, parse_duration

__all__ = ["register"]


def _emit(args: argparse.Namespace, data: Any, text: str) -> None:
    print(json.dumps(data, ensure_ascii=False, sort_keys=True) if args.json else text)


def _save(config: NodeConfig) -> None:
    from node.files import PRIVATE_FILE, write_atomic

    write_atomic(config.directory / CONFIG_FILE, config.to_toml().encode("utf-8"), mode=PRIVATE_FILE)


def _audit(config: NodeConfig, args: argparse.Namespace, action: str, camera: CameraSettings) -> None:
    """One audit record of the change: the camera's id, site and gate, never its address."""
    from datetime import UTC, datetime

    from sqlmodel import Session

    from node.cli.node import _cli_actor
    from node.records.auditlog import append_audit
    from node.storage.engine import make_engine
    from node.storage.migrate import check_schema

    engine = make_engine(args.database_url or config.effective_database_url)
    try:
        check_schema(engine)
        with Session(engine) as session:
            append_audit(
                session,
                actor=_cli_actor()[:64],
                action=action,
                target=camera.id,
                outcome=f"ok:site={camera.site}" + (f",gate={camera.gate}" if camera.gate else ""),
                now=datetime.now(UTC).replace(microsecond=0),
            )
            session.commit()
    finally:
        engine.dispose()


def _url(args: argparse.Namespace) -> str:
    if args.url_stdin:
        if args.url:
            raise ConfigurationError("give the stream's address once: --url or --url-stdin")
        url = sys.stdin.readline().strip()
        if not url:
            raise ConfigurationError("--url-stdin: standard input held no address (one line)")
        return url
    if not args.url:
        raise ConfigurationError(
            "give the stream's address with --url rtsp://HOST/PATH, or --url-stdin to keep a password "
            "off the command line"
        )
    return str(args.url)


def cmd_add(args: argparse.Namespace) -> int:
    config = NodeConfig.load(Path(args.node))
    if any(c.id == args.camera_id for c in config.cameras):
        raise ConfigurationError(
            f"camera {args.camera_id!r} is already in {config.directory / CONFIG_FILE}; "
            "'watchnet camera remove' it first"
        )
    camera = CameraSettings(
        id=args.camera_id,
        site=args.site,
        url=_url(args),
        gate=args.gate or "",
        sample_fps=args.sample_fps,
        min_face_pixels=args.min_face_pixels,
        resend_after=parse_duration(args.resend_after, field="--resend-after"),
        ask_network=args.ask_network,
    )
    updated = replace(config, cameras=(*config.cameras, camera))
    NodeConfig.from_toml(updated.to_toml(), config.directory)  # the whole file still reads back
    _save(updated)
    _audit(config, args, "camera.add", camera)
    _emit(
        args,
        camera.to_public_dict(),
        f"added camera {camera.id} at site {camera.site}"
        + (f", gate {camera.gate}" if camera.gate else "")
        + f": {camera.safe_url}; start it with 'watchnet camera run --node {args.node}'",
    )
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    config = NodeConfig.load(Path(args.node))
    data = [c.to_public_dict() for c in config.cameras]
    if args.json:
        print(json.dumps({"cameras": data}, ensure_ascii=False, sort_keys=True))
        return 0
    if not data:
        print(f"no camera in {config.directory / CONFIG_FILE}; add one with 'watchnet camera add'")
    for c in config.cameras:
        print(
            f"{c.id:<24} site {c.site:<16} gate {c.gate or '-':<12} {c.sample_fps:g} fps, "
            f"faces >= {c.min_face_pixels} px, resend {format_duration(c.resend_after)}  {c.safe_url}"
        )
    return 0


def cmd_remove(args: argparse.Namespace) -> int:
    config = NodeConfig.load(Path(args.node))
    camera = config.camera(args.camera_id)
    _save(replace(config, cameras=tuple(c for c in config.cameras if c.id != camera.id)))
    _audit(config, args, "camera.remove", camera)
    _emit(args, {"removed": camera.id}, f"removed camera {camera.id} (site {camera.site})")
    return 0


def cmd_test(args: argparse.Namespace) -> int:
    """Open the stream, sample it for ``--seconds`` and count frames and faces; nothing is kept."""
    from node.camera.stream import StreamReader
    from node.face.models import ModelPack
    from node.face.pipeline import FacePipeline

    config = NodeConfig.load(Path(args.node))
    camera = config.camera(args.camera_id)
    pipeline = FacePipeline(ModelPack.locate()) if not args.no_faces else None
    reader = StreamReader(camera.id, camera.url, sample_fps=camera.sample_fps, backoff_max=1.0)
    reader.start()
    sampled = faces = 0
    widest = 0
    deadline = time.monotonic() + args.seconds
    try:
        while time.monotonic() < deadline and not reader.drained:
            frame = reader.take(timeout=min(1.0, max(0.05, deadline - time.monotonic())))
            if frame is None:
                continue
            sampled += 1
            if pipeline is not None:
                found = [
                    f for f in pipeline.detect(frame.image) if f.quality.face_pixels >= camera.min_face_pixels
                ]
                faces += len(found)
                widest = max([widest, *(f.quality.face_pixels for f in found)])
            height, width = frame.image.shape[:2]
            del frame
    finally:
        reader.stop()
    status = reader.status
    data: dict[str, Any] = {
        "camera": camera.id,
        "url": camera.safe_url,
        "opened": status.connects > 0,
        "frames": status.frames,
        "sampled": sampled,
        "stream_fps": round(status.fps, 1),
        "faces": faces if pipeline is not None else None,
        "widest_face_px": widest if pipeline is not None else None,
        "seconds": args.seconds,
        "error": status.last_error or None,
    }
    if sampled:
        data["resolution"] = f"{width}x{height}"
    ok = status.frames > 0
    text = (
        f"camera {camera.id} ({camera.safe_url}): {status.frames} frame(s) in {args.seconds:g} s "
        f"(~{status.fps:.1f} fps{', ' + data['resolution'] if sampled else ''}), {sampled} sampled"
        + (f", {faces} face(s) of at least {camera.min_face_pixels} px" if pipeline is not None else "")
        + "; nothing was kept"
        if ok
        else f"camera {camera.id} ({camera.safe_url}): no frame in {args.seconds:g} s "
        f"({status.last_error or 'no_frame'}); check the address, the network and the camera's credentials"
    )
    _emit(args, data, text)
    return 0 if ok else 1


def cmd_run(args: argparse.Namespace) -> int:
    from node.camera.worker import run_worker

    return int(run_worker(args))


def _fps(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r:.20} is not a number of frames a second") from None
    if not 0.2 <= value <= 30:
        raise argparse.ArgumentTypeError(f"{value:g} frames a second is outside [0.2, 30]")
    return value


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    camera = sub.add_parser("camera", help="the store's cameras: add, list, remove, test, run the worker")
    commands = camera.add_subparsers(dest="camera_command", metavar="COMMAND", required=True)

    def common(p: argparse.ArgumentParser, *, database: bool = False) -> argparse.ArgumentParser:
        p.add_argument("--node", default=".", help="node directory (default: current directory)")
        p.add_argument("--json", action="store_true", help="print JSON for scripts")
        if database:
            p.add_argument("--database-url", help="override the database URL (for the audit record)")
        return p

    p = common(commands.add_parser("add", help="add a camera to the node's config (audited)"), database=True)
    p.set_defaults(handler=cmd_add)
    p.add_argument("camera_id", help="the camera's id, e.g. shibuya-01-door")
    p.add_argument("--site", required=True, help="the store/site id it is in, e.g. shibuya-01")
    p.add_argument("--gate", help="the entrance or aisle it watches, e.g. north-door")
    p.add_argument("--url", help="rtsp://[user:pass@]HOST/PATH, http://HOST/PATH (MJPEG) or a file path")
    p.add_argument("--url-stdin", action="store_true", help="read the address from standard input instead")
    p.add_argument(
        "--sample-fps", type=_fps, default=5.0, help="frames a second searched for faces (default 5)"
    )
    p.add_argument(
        "--min-face-pixels", type=int, default=40, help="ignore faces narrower than this (default 40)"
    )
    p.add_argument(
        "--resend-after", default="60s", help="ask about a track again after this long (default 60s)"
    )
    p.add_argument(
        "--ask-network",
        action="store_true",
        help="also ask the other members of the group about each track's face (default: this node's list)",
    )
    p = common(commands.add_parser("list", help="the cameras in the node's config (passwords as ***)"))
    p.set_defaults(handler=cmd_list)
    p = common(
        commands.add_parser("remove", help="remove a camera from the node's config (audited)"), database=True
    )
    p.set_defaults(handler=cmd_remove)
    p.add_argument("camera_id")
    p = common(
        commands.add_parser(
            "test", help="open a camera's stream for a few seconds: frames and faces seen, nothing kept"
        )
    )
    p.set_defaults(handler=cmd_test)
    p.add_argument("camera_id")
    p.add_argument("--seconds", type=float, default=5.0, help="how long to read (default 5)")
    p.add_argument("--no-faces", action="store_true", help="count frames only (no face detection)")
    p = commands.add_parser(
        "run",
        help="the camera worker: read every configured camera, track faces, ask the node (camera account)",
    )
    p.set_defaults(handler=cmd_run)
    p.add_argument("--node", default=".", help="node directory whose [[cameras]] are read")
    p.add_argument("--url", help="the node's API (default: http://HOST:PORT of its config)")
    p.add_argument(
        "--token-file", help="file holding the camera account's API token (default $WATCHNET_TOKEN)"
    )
    p.add_argument("--camera", action="append", help="run only this camera (repeat); default: all")
    p.add_argument("--status-port", type=int, help="serve GET /status, /ready and /metrics on 127.0.0.1:PORT")
    p.add_argument(
        "--status-file", help="write the cameras' state here every 2 s (default camera-status.json in --node)"
    )
    p.add_argument("--json", action="store_true", help="log JSON lines (default)")
