"""``watchnet entry ...`` and ``watchnet match``: staff commands that talk to a running node over HTTP.

They go through the same API, roles and audit log as any other client; the token comes from
``--token`` or ``WATCHNET_TOKEN`` (``watchnet user token`` issues one). Output is JSON with
``--json`` and a short table otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from protocol.embedding import Embedding
from protocol.errors import ConfigurationError, MalformedError, WatchnetError

__all__ = ["RemoteError", "register"]

MAX_FACES = 64
"""Faces matched from one image: the request limit of the match endpoint."""


class RemoteError(WatchnetError):
    """The node refused the request; ``code`` is the node's error code."""

    def __init__(self, code: str, message: str, status: int) -> None:
        super().__init__(f"{message} (HTTP {status})")
        self.code = code
        self.status = status


def _token(args: argparse.Namespace) -> str:
    token = args.token or os.environ.get("WATCHNET_TOKEN")
    if not token:
        raise ConfigurationError(
            "no API token: pass --token or set WATCHNET_TOKEN ('watchnet user token' issues one)"
        )
    return str(token)


def call(args: argparse.Namespace, method: str, path: str, body: Any = None) -> Any:
    data = None if body is None else json.dumps(body).encode("utf-8")
    request = urllib.request.Request(f"{args.url.rstrip('/')}{path}", data=data, method=method)  # noqa: S310
    request.add_header("Authorization", f"Bearer {_token(args)}")
    request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310
            return json.loads(response.read() or b"null")
    except urllib.error.HTTPError as e:
        try:
            error = json.loads(e.read())
        except ValueError:
            error = {"error": "http_error", "message": e.reason}
        raise RemoteError(error.get("error", "http_error"), error.get("message", ""), e.code) from None
    except urllib.error.URLError as e:
        raise ConfigurationError(
            f"cannot reach the node at {args.url}: {e.reason}; is 'watchnet serve' running?"
        ) from e


def read_embedding(path: str) -> Embedding:
    """An embedding file: base64url float32 text (as 'watchnet face embed' writes), one line."""
    text = Path(path).read_text(encoding="utf-8").strip()
    try:
        return Embedding.from_str(text, field=path)
    except MalformedError as e:
        raise MalformedError(f"{path}: not an embedding file ({e})") from e


def _show(args: argparse.Namespace, data: Any) -> None:
    if args.json:
        print(json.dumps(data, ensure_ascii=False, sort_keys=True))
        return
    rows = data.get("entries") or data.get("matches") if isinstance(data, dict) else None
    if rows is None:
        rows = [data]
    for row in rows:
        print("  ".join(f"{k}={v}" for k, v in row.items() if v is not None))
    if isinstance(data, dict) and "matches" in data and not data["matches"]:
        print(f"no match at or above the threshold {data.get('threshold')}")


def cmd_propose(args: argparse.Namespace) -> int:
    body: dict[str, Any] = {
        "embedding": read_embedding(args.embedding_file).to_str(),
        "category": args.category,
        "evidence": {"kind": args.evidence_kind, "reference": args.evidence_ref},
        "incident_date": args.incident_date,
        "site": args.site,
    }
    if args.retention_days:
        body["retention_days"] = args.retention_days
    _show(args, call(args, "POST", "/v1/entries", body))
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    suffix = f"?status={args.status}" if args.status else ""
    _show(args, call(args, "GET", f"/v1/entries{suffix}"))
    return 0


def cmd_decide(args: argparse.Namespace) -> int:
    body: dict[str, Any] | None = None
    if args.action in ("reject", "delete", "correct"):
        body = {"reason": args.reason}
    if args.action == "correct":
        if args.category:
            body = {**(body or {}), "category": args.category}
    _show(args, call(args, "POST", f"/v1/entries/{args.entry_id}/{args.action}", body))
    return 0


def _image_embeddings(path: str) -> list[str]:
    """Every face in a camera frame or photo, embedded locally with the shipped model pack."""
    from node.face.models import ModelPack
    from node.face.pipeline import FacePipeline, decode_image

    pipeline = FacePipeline(ModelPack.locate())
    try:
        image = decode_image(Path(path).read_bytes())
    except FileNotFoundError as e:
        raise ConfigurationError(f"image {path} not found") from e
    faces = pipeline.detect(image)[:MAX_FACES]
    return [pipeline.embed_crop(face.crop).to_str() for face in faces]


def cmd_match(args: argparse.Namespace) -> int:
    if not args.embedding_file and not args.image:
        raise ConfigurationError("give --image FILE or --embedding-file FILE")
    embeddings = [read_embedding(p).to_str() for p in args.embedding_file or []]
    for image in args.image or []:
        embeddings.extend(_image_embeddings(image))
    if not embeddings:
        print("no face found")
        return 0
    body: dict[str, Any] = {"embeddings": embeddings}
    if args.site:
        body["site"] = args.site
    _show(args, call(args, "POST", "/v1/match", body))
    return 0


def _common(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument(
        "--url",
        default=os.environ.get("WATCHNET_URL", "http://127.0.0.1:8470"),
        help="the node (default $WATCHNET_URL or http://127.0.0.1:8470)",
    )
    p.add_argument("--token", help="API token (default $WATCHNET_TOKEN)")
    p.add_argument("--json", action="store_true", help="print JSON for scripts")
    return p


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    entry = sub.add_parser("entry", help="watchlist entries on a running node (registrar and officer)")
    commands = entry.add_subparsers(dest="entry_command", metavar="COMMAND", required=True)
    p = _common(
        commands.add_parser("propose", help="propose an entry (registrar); an officer must approve it")
    )
    p.set_defaults(handler=cmd_propose)
    p.add_argument("--embedding-file", required=True, help="embedding file written by 'watchnet face embed'")
    p.add_argument("--category", required=True, help="incident category code, e.g. shoplifting")
    p.add_argument("--evidence-kind", required=True, help="evidence kind code, e.g. police-report")
    p.add_argument(
        "--evidence-ref", required=True, help="evidence reference number (no spaces), e.g. TKY-2026-0012"
    )
    p.add_argument("--incident-date", required=True, help="YYYY-MM-DD")
    p.add_argument("--site", required=True, help="store/site id, e.g. shibuya-01")
    p.add_argument("--retention-days", type=int, help="shorter retention than the node's rules")
    p = _common(commands.add_parser("list", help="list entries (officer: all; registrar: own proposals)"))
    p.set_defaults(handler=cmd_list)
    p.add_argument("--status", choices=["proposed", "active", "rejected", "deleted", "expired"])
    for action, text in (
        ("approve", "approve a proposed entry (officer, not its registrar)"),
        ("reject", "reject a proposed entry (officer)"),
        ("correct", "correct an active entry: a new signed version (officer)"),
        ("delete", "delete an active entry: erased everywhere, tombstone kept (officer)"),
    ):
        p = _common(commands.add_parser(action, help=text))
        p.set_defaults(handler=cmd_decide, action=action)
        p.add_argument("entry_id")
        if action != "approve":
            p.add_argument(
                "--reason",
                required=True,
                help="reason code: data-subject-request, error, no-longer-necessary, correction, or a rejection code",
            )
        if action == "correct":
            p.add_argument("--category")

    p = _common(sub.add_parser("match", help="match faces against the active entries (operator)"))
    p.set_defaults(handler=cmd_match)
    p.add_argument("--embedding-file", action="append", help="embedding file (repeat for a batch)")
    p.add_argument("--image", action="append", help="a photo or camera frame: every face in it is matched")
    p.add_argument("--site", help="where the camera is, recorded with an alert")
