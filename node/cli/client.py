"""``watchnet entry ...`` and ``watchnet match``: staff commands that talk to a running node over HTTP.

They go through the same API, roles and audit log as any other client; the token comes from
``--token`` or ``WATCHNET_TOKEN`` (``watchnet user token`` issues one). Output is JSON with
``--json`` and a short table otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import urllib.parse
from pathlib import Path
from typing import TYPE_CHECKING, Any

import requests

from protocol.canonical import b64url_encode
from protocol.errors import ConfigurationError, MalformedError, WatchnetError

if TYPE_CHECKING:
    from protocol.embedding import Embedding

__all__ = ["RemoteError", "register"]


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
    """One request to the node with the staff token; the JSON answer, or ``RemoteError``."""
    return json.loads(fetch(args, method, path, body) or b"null")


def fetch(
    args: argparse.Namespace,
    method: str,
    path: str,
    body: Any = None,
    *,
    auth: bool = True,
    timeout: float = 60,
) -> bytes:
    """One request to the node; the raw answer (JSON or a page), or ``RemoteError`` with the node's code."""
    headers = {"Content-Type": "application/json"}
    if auth:
        headers["Authorization"] = f"Bearer {_token(args)}"
    try:
        response = requests.request(
            method,
            f"{args.url.rstrip('/')}{path}",
            data=None if body is None else json.dumps(body).encode("utf-8"),
            headers=headers,
            timeout=timeout,
        )
    except requests.RequestException as e:
        reason = type(e).__name__ if not e.args else str(e.args[0]).split(":")[-1].strip(" ')>")
        raise ConfigurationError(
            f"cannot reach the node at {args.url} ({reason}); is 'watchnet serve' running there?"
        ) from e
    if response.status_code >= 400:
        try:
            error = response.json()
        except ValueError:
            error = {"error": "http_error", "message": response.reason}
        if not isinstance(error, dict):
            error = {"error": "http_error", "message": response.reason}
        raise RemoteError(error.get("error", "http_error"), error.get("message", ""), response.status_code)
    return response.content


def read_embedding(path: str) -> Embedding:
    """An embedding file: base64url float32 text (as 'watchnet face embed' writes), one line."""
    from protocol.embedding import Embedding

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
    if bool(args.image) == bool(args.embedding_file):
        raise ConfigurationError("give exactly one of --image PHOTO or --embedding-file FILE")
    face = (
        {"image": _read_image(args.image)}
        if args.image
        else {"embedding": read_embedding(args.embedding_file).to_str()}
    )
    body: dict[str, Any] = {
        **face,
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


def _read_image(path: str) -> str:
    try:
        return b64url_encode(Path(path).read_bytes())
    except FileNotFoundError as e:
        raise MalformedError(f"image {path} not found; give the path of a JPEG or PNG photo") from e


def _match_video(args: argparse.Namespace, path: str) -> dict[str, Any]:
    """Send sampled frames; the node keeps one alert per person and site per window."""
    import cv2
    from tqdm import tqdm

    capture = cv2.VideoCapture(path)
    if not capture.isOpened():
        raise ConfigurationError(f"video {path} could not be opened")
    fps = capture.get(cv2.CAP_PROP_FPS) or 25.0
    total = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) or None
    step = max(1, round(fps / args.sample_rate))
    alerts: dict[str, dict[str, Any]] = {}
    frames = faces = 0
    with tqdm(total=total, unit="frame", desc=Path(path).name, disable=args.json) as progress:
        index = 0
        while True:
            ok, frame = capture.read()
            if not ok:
                break
            if index % step == 0:
                encoded, jpeg = cv2.imencode(".jpg", frame)
                if encoded:
                    body: dict[str, Any] = {"image": b64url_encode(jpeg.tobytes())}
                    if args.site:
                        body["site"] = args.site
                    result = call(args, "POST", "/v1/match", body)
                    frames += 1
                    faces += int(result.get("faces", 0))
                    for match in result["matches"]:
                        alerts.setdefault(
                            match["alert_id"], {k: v for k, v in match.items() if k != "query_index"}
                        )
            index += 1
            progress.update(1)
    capture.release()
    return {"frames_sent": frames, "faces": faces, "matches": list(alerts.values())}


def cmd_match(args: argparse.Namespace) -> int:
    sources = [bool(args.embedding_file), bool(args.image), bool(args.video)]
    if sum(sources) != 1:
        raise ConfigurationError("give one of --image FILE, --video FILE or --embedding-file FILE")
    if args.video:
        _show(args, _match_video(args, args.video))
        return 0
    body: dict[str, Any] = (
        {"image": _read_image(args.image)}
        if args.image
        else {"embeddings": [read_embedding(p).to_str() for p in args.embedding_file]}
    )
    if args.site:
        body["site"] = args.site
    _show(args, call(args, "POST", "/v1/match", body))
    return 0


def cmd_query(args: argparse.Namespace) -> int:
    if bool(args.image) == bool(args.embedding_file):
        raise ConfigurationError("give one of --image FILE or --embedding-file FILE")
    body: dict[str, Any] = (
        {"image": _read_image(args.image)}
        if args.image
        else {"embeddings": [read_embedding(p).to_str() for p in args.embedding_file]}
    )
    body["purpose"] = args.purpose
    if args.site:
        body["site"] = args.site
    if args.private:
        body["mode"] = "private"
    data = call(args, "POST", "/v1/query", body)
    if args.json:
        print(json.dumps(data, ensure_ascii=False, sort_keys=True))
        return 0
    print(
        f"{data['faces']} face(s) asked of {len(data['peers'])} member(s), purpose {data['purpose']}, "
        f"{data.get('mode', 'plain')} mode"
    )
    for peer in data["peers"]:
        detail = (
            f"{peer['matches']} match(es)" if peer["status"] == "ok" else f"{peer['error']}: {peer['reason']}"
        )
        print(f"  {peer['node_id']:<16} {peer['status']:<14} {peer.get('mode', 'plain'):<8} {detail}")
    for match in data["matches"]:
        print(
            f"  MATCH face {match['query_index']}: {match['owner']}/{match['entry_id']} v{match['version']} "
            f"{match['category']} {match['band']} (alert {match['alert_id']})"
        )
    unanswered = data.get("unanswered", [])
    if unanswered:
        print(
            f"INCOMPLETE: {len(unanswered)} member(s) gave no answer ({', '.join(unanswered)}); what they hold "
            "was not searched. Ask again later, and see 'watchnet propagation status' for their reachability."
        )
    if not data["matches"]:
        answered = len(data["peers"]) - len(unanswered)
        print(
            f"no match among the {answered} member(s) that answered"
            if unanswered
            else "no match in the network"
        )
    return 0


def cmd_propagation_status(args: argparse.Namespace) -> int:
    data = call(args, "GET", "/v1/propagation")
    if args.json:
        print(json.dumps(data, ensure_ascii=False, sort_keys=True))
        return 0
    print(f"{data['complete']} change(s) confirmed by every member, {data['pending']} pending")
    for event in data["events"]:
        confirmed = ", ".join(c["member"] for c in event["confirmed"]) or "-"
        missing = ", ".join(event["missing"]) or "-"
        print(
            f"  {event['occurred_at']} {event['kind']:<9} {event['entry_id']}  "
            f"confirmed: {confirmed}  missing: {missing}"
        )
    return 0 if data["pending"] == 0 or not args.check else 1


def _request_line(r: dict[str, Any]) -> str:
    state = r["outcome"] or ("OVERDUE" if r["overdue"] else f"{r['days_left']} day(s) left")
    found = "not searched" if r["report"] is None else f"{len(r['report'])} entr(ies) found"
    return f"{r['id']}  {r['kind']:<13} {r['status']:<7} deadline {r['deadline']}  {state}  {found}"


def cmd_requests(args: argparse.Namespace) -> int:
    """Data-subject requests: record, search, forward, close, list, show."""
    action = args.requests_command
    if action == "record":
        body: dict[str, Any] = {
            "kind": args.kind,
            "identity_check": args.identity_check,
            "image": _read_image(args.image),
        }
        data = call(args, "POST", "/v1/requests", body)
    elif action == "list":
        data = call(args, "GET", "/v1/requests" + (f"?status={args.status}" if args.status else ""))
    elif action == "show":
        data = call(args, "GET", f"/v1/requests/{args.request_id}")
    elif action in ("search", "forward"):
        data = call(args, "POST", f"/v1/requests/{args.request_id}/{action}")
    else:
        close: dict[str, Any] = {"outcome": args.outcome}
        if args.ground:
            close["ground"] = args.ground
        data = call(args, "POST", f"/v1/requests/{args.request_id}/close", close)
    if args.json:
        print(json.dumps(data, ensure_ascii=False, sort_keys=True))
        return 0
    if action == "list":
        for r in data["requests"]:
            print(_request_line(r))
        print(f"{len(data['requests'])} request(s), {data['overdue']} overdue")
    elif action == "forward":
        for f in data["forwarded"]:
            print(
                f"  {f['owner']}/{f['entry_id']}: "
                + (
                    f"opened {f['owner_request_id']}"
                    if "owner_request_id" in f
                    else f"{f['error']}: {f['reason']}"
                )
            )
    else:
        print(_request_line(data))
        for item in data.get("report") or []:
            print(
                f"  {item['owner_name']} ({item['owner']}) {item['entry_id']} v{item['version']} {item['category']} "
                f"evidence {item['evidence_kind']} registered {item['registered_at']} until {item['expires_at']}"
            )
        if data.get("ground_text"):
            print(f"  refused under {data['ground_text']['article']}: {data['ground_text']['en']}")
        if data.get("receipts"):
            print(f"  {len(data['receipts'])} signed receipt(s) attached")
    return 0


def url_argument(text: str) -> str:
    """``--url``: an http(s) address with a host (argparse refuses anything else, exit 2)."""
    try:
        parts = urllib.parse.urlsplit(text)
    except ValueError:
        parts = urllib.parse.urlsplit("")
    try:
        parts.port  # noqa: B018 (reading it checks it)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r:.80} has a bad port") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise argparse.ArgumentTypeError(
            f"{text!r:.80} is not a node's address; give http(s)://HOST:PORT, e.g. http://127.0.0.1:8470"
            " (a node directory goes with --node)"
        )
    return text


def _common(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument(
        "--url",
        type=url_argument,
        default=os.environ.get("WATCHNET_URL") or "http://127.0.0.1:8470",
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
    p.add_argument("--image", help="photo of the person: the node detects, checks quality and embeds it")
    p.add_argument("--embedding-file", help="or an embedding file written by 'watchnet face embed'")
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
    p.add_argument("--image", help="a photo or camera frame: the node matches every face in it")
    p.add_argument(
        "--video", help="a video file: frames are sampled and sent; one alert per person per window"
    )
    p.add_argument(
        "--sample-rate", type=float, default=2.0, help="frames per second sent from --video (default 2)"
    )
    p.add_argument("--site", help="where the camera is, recorded with an alert")

    p = _common(
        sub.add_parser("query", help="ask every other member of the group about the faces (operator)")
    )
    p.set_defaults(handler=cmd_query)
    p.add_argument(
        "--private",
        action="store_true",
        help="private mode: peers score an encrypted query they cannot decrypt (the manifest must allow it)",
    )
    p.add_argument("--image", help="a photo or camera frame: every face in it is asked about")
    p.add_argument("--embedding-file", action="append", help="embedding file (repeat for a batch)")
    p.add_argument(
        "--purpose", default="crime-prevention", help="one of the group's purposes (default crime-prevention)"
    )
    p.add_argument("--site", help="where the camera is, recorded with an alert")

    requests = sub.add_parser(
        "requests", help="data-subject requests (Art. 33-35): record, search, forward, close"
    )
    request_commands = requests.add_subparsers(dest="requests_command", metavar="COMMAND", required=True)
    p = _common(request_commands.add_parser("record", help="record a request taken at the counter (officer)"))
    p.set_defaults(handler=cmd_requests)
    p.add_argument("--kind", required=True, choices=["disclosure", "correction", "deletion", "cease-of-use"])
    p.add_argument(
        "--identity-check",
        required=True,
        help="document seen, e.g. drivers-licence, my-number-card, passport",
    )
    p.add_argument(
        "--image", required=True, help="photo of the person taken at the counter (erased on close)"
    )
    p = _common(request_commands.add_parser("list", help="requests with deadlines; overdue ones flagged"))
    p.set_defaults(handler=cmd_requests)
    p.add_argument("--status", choices=["open", "closed"])
    for action, text in (
        ("show", "one request with its report and outcome"),
        ("search", "search for the person here and across the group (purpose data-subject-request)"),
        ("forward", "send a correction/deletion/cease-of-use request to the owners of the entries found"),
    ):
        p = _common(request_commands.add_parser(action, help=text))
        p.set_defaults(handler=cmd_requests)
        p.add_argument("request_id")
    p = _common(request_commands.add_parser("close", help="close with an outcome (refused: give --ground)"))
    p.set_defaults(handler=cmd_requests)
    p.add_argument("request_id")
    p.add_argument(
        "--outcome", required=True, choices=["disclosed", "granted", "nothing-held", "refused", "withdrawn"]
    )
    p.add_argument("--ground", help="legal ground of a refusal, e.g. cabinet-order-5-iv or art-33-2-ii")

    propagation = sub.add_parser(
        "propagation", help="whether our corrections and deletions reached every member"
    )
    propagation_commands = propagation.add_subparsers(
        dest="propagation_command", metavar="COMMAND", required=True
    )
    p = _common(
        propagation_commands.add_parser(
            "status",
            help="per deletion, expiry and correction: members that confirmed and those that did not",
        )
    )
    p.set_defaults(handler=cmd_propagation_status)
    p.add_argument("--check", action="store_true", help="exit 1 while any change is unconfirmed")
