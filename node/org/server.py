"""``watchnet gov serve``: the organisation publishes its signed manifest and notice, takes fork
reports and publishes fork clearances (``GET /v1/fork-clearances/<member>``, see ``node.org.clearances``).

The group-wide notice is the same page the nodes serve, rendered from the published manifest:
HTML at ``/notice`` (Japanese or English by ``?lang=`` or ``Accept-Language``), plain text at
``/notice.txt``, and a QR code to the page at ``/notice/qr.png`` and ``/notice/qr.svg``. The
group's rules, as the guideline the organisation publishes, are ``/rules`` and ``/rules.txt``,
generated from the same manifest (``node.org.rules``).

The manifest file is re-read when it changes, and a version is published only once a threshold
of its own keys has signed it: a draft written by ``gov member suspend`` and still waiting for its
second signature is never served, the last fully signed version is. Nodes verify everything
again themselves (pinned roots, rotation, expiry), so this server needs no secret.

Fork reports need no account, because the evidence proves itself: two tree heads of one size
with different roots, both signed by the accused member's key in the published manifest
(:func:`verify_fork_report`). Anything else is refused before a byte is written, and the same
evidence from the same reporter is kept once. A report of suspected template extraction
(``extraction-report``) is kept only when signed by a current member.

With an organisation database (``staff``, ``node.org.staff``) the server also serves the
organisation's staff console under ``/console`` (``node.org.console``), and records each fetch
of ``/v1/manifest`` by source address for its members page.

Nothing here takes an anonymous write without a bound: bodies are capped by ``Content-Length``
before they are read (64 KiB for a report, 16 KiB for a complaint), each source address (an IPv6
client as its /64) may send 60 reports and 5 complaints per 10 minutes (429 ``rate_limited`` with
``Retry-After``; at most 4096 sources are tracked, the oldest forgotten first), and the public may
hold at most 10 000 open complaints (503 ``register_full``). Logs are JSON lines
(``node.jsonlog``); values a sender chose travel as fields.
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import json
import logging
import math
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiohttp import web

from governance.errors import NotAMember
from governance.manifest import Manifest, MemberStatus
from governance.notice import LANGUAGES, render_notice, render_text
from governance.requests import COMPLAINT_CATEGORIES
from node.files import write_atomic
from node.http.notice import (
    CACHE_CONTROL,
    COMPLAINT_ACTION,
    COMPLAINT_PATH,
    QR_SRC,
    ComplaintFormError,
    complaint_refusal,
    html_response,
    qr_response,
    request_base,
    request_language,
)
from node.http.witness import answer_add_checkpoint, answer_witnessed
from node.local_time import LocalTimes
from node.org.clearances import clearance_path, load_clearance
from node.org.complaints import count_open, file_complaint, record_answer
from node.org.console import OrgConsole, add_org_console
from node.org.drafts import DraftStore
from node.org.group_report import ReportStore
from node.org.members import MemberWatch
from node.org.referrals import ReferralSender, verify_answer
from node.org.rules import RULES_PATH, build_rules
from node.org.staff import OrgStaff
from node.org.witness import OrganisationWitness
from node.records.registry import EntryNotFound, WrongState
from node.reporting.notice_pages import (
    NOTICE_PATH,
    ORGANISATION_ZONE,
    complaint_received_html,
    group_notice_html,
    render_html,
)
from protocol.canonical import b64url_encode, canonical_bytes, parse_json
from protocol.errors import MalformedError, OversizedError, PolicyError, VerificationError, WatchnetError
from protocol.extraction import ExtractionReport
from protocol.fields import NODE_ID_RE, format_time, parse_time
from protocol.signed import SignedDocument
from protocol.treehead import TreeHead

__all__ = [
    "ForkEvidence",
    "ForkUnproven",
    "Rate",
    "RateLimited",
    "RegisterFull",
    "SourceLimiter",
    "build_gov_app",
    "source_of",
    "verify_fork_report",
]

LOG = logging.getLogger("watchnet.gov")
MAX_REPORT_BYTES = 64 << 10
"""A fork report is two signed tree heads (about 1.5 KB); an extraction report is smaller."""
MAX_COMPLAINT_BYTES = 16 << 10
"""A complaint's summary is at most 2000 characters, 12 KB even if every one is JSON-escaped."""
MAX_OPEN_PUBLIC_COMPLAINTS = 10_000
"""Open complaints from the public beyond which ``/v1/complaints`` answers 503 ``register_full``
(each file is at most about 8 KB, so the register stays under 80 MB until staff close some)."""
MAX_FORK_REPORTS_PER_PEER = 100
"""Distinct fork proofs kept about one member: one is enough to act, a hundred is plenty."""
MAX_SOURCES = 4096
FORK_REPORT_FIELDS = frozenset({"type", "peer", "reporter", "verified_head", "conflicting_head"})


@dataclass(frozen=True)
class Rate:
    """``requests`` per ``window`` seconds from one source address."""

    requests: int
    window: float


REPORT_RATE = Rate(60, 600.0)
COMPLAINT_RATE = Rate(5, 600.0)


class ForkUnproven(VerificationError):
    """Two authentic heads that do not prove a fork (same root, or different sizes)."""

    code = "fork_unproven"


class RateLimited(PolicyError):
    code = "rate_limited"

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class RegisterFull(PolicyError):
    code = "register_full"


class SourceLimiter:
    """Fixed windows of ``rate.requests`` per source, in a table of at most ``max_sources``.

    Windows are kept in the order they started, so expired ones are dropped from the front and a
    new source, when the table is full, pushes out the oldest: a flood of addresses costs a
    bounded table, never memory without end (the register's cap bounds what it can store).
    """

    def __init__(
        self, rate: Rate, *, max_sources: int = MAX_SOURCES, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate = rate
        self.max_sources = max_sources
        self.clock = clock
        self._windows: OrderedDict[str, tuple[float, int]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._windows)

    def hit(self, source: str, what: str) -> None:
        """Count one request from ``source``; raise ``RateLimited`` if its window is used up."""
        now = self.clock()
        while self._windows:
            start = next(iter(self._windows.values()))[0]
            if now - start < self.rate.window:
                break
            self._windows.popitem(last=False)
        start, count = self._windows.get(source, (now, 0))
        if count >= self.rate.requests:
            wait = start + self.rate.window - now
            raise RateLimited(
                f"{count} {what} from {source} in the last {self.rate.window:.0f} s, limit "
                f"{self.rate.requests}; try again in {math.ceil(wait)} s",
                wait,
            )
        if source not in self._windows and len(self._windows) >= self.max_sources:
            self._windows.popitem(last=False)
        self._windows[source] = (start, count + 1)


def source_of(remote: str | None) -> str:
    """The rate-limit key of a client address: IPv4 as is, IPv6 as its /64 (one host holds a
    whole /64). ``X-Forwarded-For`` is not trusted: behind a proxy every client is one source."""
    if not remote:
        return "unknown"
    try:
        address = ipaddress.ip_address(remote.split("%", 1)[0])
    except ValueError:
        return remote[:64]
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(address)


@dataclass(frozen=True)
class ForkEvidence:
    """A verified fork: ``peer`` signed ``heads``, two different roots for one tree size."""

    peer: str
    reporter: str | None
    heads: tuple[SignedDocument[TreeHead], SignedDocument[TreeHead]]

    @property
    def tree_size(self) -> int:
        return self.heads[0].payload.tree_size

    @property
    def digest(self) -> str:
        """Names the evidence: the same two heads (in either order) from the same reporter."""
        payloads = sorted(hashlib.sha256(h.payload.canonical()).hexdigest() for h in self.heads)
        return hashlib.sha256(
            canonical_bytes({"peer": self.peer, "reporter": self.reporter, "heads": payloads})
        ).hexdigest()[:32]

    def to_dict(self, received_at: datetime) -> dict[str, Any]:
        verified, conflicting = (SignedDocument(h.payload, dict(h.signatures)).to_dict() for h in self.heads)
        return {
            "type": "fork-report",
            "peer": self.peer,
            "reporter": self.reporter,
            "tree_size": self.tree_size,
            "verified_head": verified,
            "conflicting_head": conflicting,
            "received_at": format_time(received_at),
        }


def verify_fork_report(data: Any, manifest: Manifest) -> ForkEvidence:
    """Check a ``fork-report`` against the published manifest alone; raise, typed, if it proves nothing.

    1. An object with ``type`` ``"fork-report"``, ``peer``, ``verified_head``, ``conflicting_head``
       and optionally ``reporter``, nothing else (``MalformedError``).
    2. ``peer`` is a member of ``manifest`` and not removed (``NotAMember``).
    3. ``reporter``, if given, names a member (it is not authenticated: the evidence is).
    4. Both heads are signed ``tree-head`` documents of ``peer``'s log (``MalformedError``).
    5. Both verify under ``peer``'s signing key in ``manifest`` (``ThresholdError``).
    6. They state one ``tree_size`` and two different ``root_hash``es (``ForkUnproven``). Heads of
       different sizes prove nothing without the peer's whole tree, so they are refused too.
    """
    if not isinstance(data, dict) or data.get("type") != "fork-report":
        raise MalformedError("expected a fork-report object or a signed extraction-report")
    if set(data) - FORK_REPORT_FIELDS:
        raise MalformedError(f"fork-report: unexpected fields {sorted(set(data) - FORK_REPORT_FIELDS)[:8]}")
    peer, reporter = data.get("peer"), data.get("reporter")
    if not isinstance(peer, str) or not NODE_ID_RE.fullmatch(peer):
        raise MalformedError(f"fork-report.peer: {peer!r:.70} is not a node id")
    if reporter is not None and (not isinstance(reporter, str) or manifest.member(reporter) is None):
        raise MalformedError(
            f"fork-report.reporter: {reporter!r:.70} is not a member; omit it to report anonymously"
        )
    member = manifest.member(peer)
    if member is None or member.status is MemberStatus.REMOVED:
        raise NotAMember(f"fork-report.peer: {peer!r} is not a member of manifest version {manifest.version}")
    heads: list[SignedDocument[TreeHead]] = []
    for name in ("verified_head", "conflicting_head"):
        try:
            head = SignedDocument.from_dict(data.get(name), TreeHead)
        except MalformedError as e:
            raise MalformedError(f"fork-report.{name}: {e}") from e
        if head.payload.log_id != peer:
            raise MalformedError(
                f"fork-report.{name}: a head of {head.payload.log_id!r}, the report accuses {peer!r}"
            )
        try:
            head.verify([member.signing_key], threshold=1)
        except VerificationError as e:
            raise type(e)(
                f"fork-report.{name}: not signed by {peer}'s key {member.signing_key.keyid[:16]}: {e}"
            ) from e
        heads.append(head)
    first, second = heads[0].payload, heads[1].payload
    if first.tree_size != second.tree_size:
        raise ForkUnproven(
            f"heads of sizes {first.tree_size} and {second.tree_size}: only two heads of one size prove a fork"
        )
    if first.root_hash == second.root_hash:
        raise ForkUnproven(
            f"both heads of size {first.tree_size} have root {b64url_encode(first.root_hash)[:16]}...: no fork"
        )
    return ForkEvidence(peer=peer, reporter=reporter, heads=(heads[0], heads[1]))


def _refusal(e: WatchnetError) -> web.Response:
    """The one place this server maps a typed refusal to a status and a ``{"error", "message"}`` body."""
    headers: dict[str, str] | None = None
    if isinstance(e, OversizedError):
        status = 413
    elif isinstance(e, RateLimited):
        status = 429
        headers = {"Retry-After": str(max(1, math.ceil(e.retry_after)))}
    elif isinstance(e, RegisterFull):
        status = 503
    elif isinstance(e, ForkUnproven | MalformedError):
        status = 400
    elif isinstance(e, VerificationError | NotAMember):
        status = 401
    else:
        status = 400
    return web.json_response({"error": e.code, "message": str(e)}, status=status, headers=headers)


def _check_length(request: web.Request, limit: int, what: str) -> None:
    """Refuse by ``Content-Length`` before reading a byte (a chunked body is cut at the app's limit)."""
    if request.content_length is not None and request.content_length > limit:
        raise OversizedError(f"{what} of {request.content_length} bytes, limit is {limit}")


async def _read(request: web.Request, limit: int, what: str) -> bytes:
    _check_length(request, limit, what)
    try:
        body = await request.read()
    except web.HTTPRequestEntityTooLarge as e:
        raise OversizedError(f"{what} larger than {limit} bytes") from e
    if len(body) > limit:
        raise OversizedError(f"{what} of {len(body)} bytes, limit is {limit}")
    return body


class OpenComplaints:
    """How many public complaints are open, recounted from the files only when the directory
    changed behind our back (``gov complaints close``); our own filings are counted as we go."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._mtime: int | None = None
        self._count = 0

    def _stat(self) -> int:
        try:
            return self.directory.stat().st_mtime_ns
        except FileNotFoundError:
            return -1

    async def count(self) -> int:
        mtime = self._stat()
        if mtime != self._mtime:
            self._count = (
                0 if mtime < 0 else await asyncio.to_thread(count_open, self.directory, channel="public")
            )
            self._mtime = mtime
        return self._count

    def filed(self) -> None:
        self._count += 1
        self._mtime = self._stat()


@dataclass
class _Published:
    mtime_ns: int
    document: SignedDocument[Manifest]


class ManifestPublisher:
    """The newest fully signed manifest in ``path``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._published: _Published | None = None

    def current(self) -> SignedDocument[Manifest]:
        try:
            mtime = self.path.stat().st_mtime_ns
        except FileNotFoundError:
            mtime = -1
        if self._published is None or mtime != self._published.mtime_ns:
            self._reload(mtime)
        if self._published is None:
            raise web.HTTPServiceUnavailable(
                text=json.dumps(
                    {"error": "no_manifest", "message": f"{self.path} holds no signed manifest yet"}
                ),
                content_type="application/json",
            )
        return self._published.document

    def _reload(self, mtime: int) -> None:
        try:
            document = SignedDocument.from_bytes(self.path.read_bytes(), Manifest)
            manifest = document.payload
            document.verify(manifest.role_keys(), manifest.manifest_role.threshold)
        except (OSError, WatchnetError) as e:
            LOG.info("not publishing %s: %s", self.path, e)
            return
        if self._published is None or manifest.version >= self._published.document.payload.version:
            self._published = _Published(mtime, document)
            LOG.info("publishing manifest version %s", manifest.version)


PUBLISHER = web.AppKey("publisher", ManifestPublisher)
REPORTS = web.AppKey("reports", Path)
COMPLAINTS = web.AppKey("complaints", Path)
NOTICE_URL = web.AppKey("notice_url", str)
REPORT_LIMITER = web.AppKey("report_limiter", SourceLimiter)
COMPLAINT_LIMITER = web.AppKey("complaint_limiter", SourceLimiter)
OPEN_COMPLAINTS = web.AppKey("open_complaints", OpenComplaints)
MAX_OPEN = web.AppKey("max_open_complaints", int)
WITNESS = web.AppKey("witness", OrganisationWitness)
WATCH = web.AppKey("member_watch", MemberWatch)
MAX_CONSOLE_BYTES = 256 << 10
"""The largest body: a console upload of a signed draft (a manifest of a few hundred members)."""


async def manifest(request: web.Request) -> web.Response:
    document = request.app[PUBLISHER].current()
    watch = request.app.get(WATCH)
    if watch is not None:
        watch.fetches.record(source_of(request.remote), document.payload.version, datetime.now(UTC))
    return web.Response(body=document.to_bytes(), content_type="application/json")


async def notice(request: web.Request) -> web.Response:
    lang = request_language(request)
    page = group_notice_html(
        request.app[PUBLISHER].current().payload, lang, qr_src=QR_SRC, complaint_action=COMPLAINT_ACTION
    )
    return html_response(request, page, lang)


def _form_value(form: Any, name: str, max_len: int, *, required: bool) -> str | None:
    value = form.get(name)
    if not isinstance(value, str) or not value.strip():
        if required:
            raise ComplaintFormError(name, f"complaint form: {name} is missing")
        return None
    if len(value.strip()) > max_len:
        raise ComplaintFormError(
            name, f"complaint form: {name} has {len(value.strip())} characters, at most {max_len}"
        )
    return value.strip()


async def complaint_form(request: web.Request) -> web.Response:
    """The group notice page's complaint form (Art. 40): the same register and bounds as
    ``POST /v1/complaints``, answered as a page in the reader's language."""
    source = source_of(request.remote)
    register = request.app[OPEN_COMPLAINTS]
    try:
        request.app[COMPLAINT_LIMITER].hit(source, "complaints")
        _check_length(request, MAX_COMPLAINT_BYTES, "a complaint")
        form = await request.post()
        lang = str(form.get("lang")) if form.get("lang") in LANGUAGES else request_language(request)
        category = _form_value(form, "category", 48, required=True)
        if category not in COMPLAINT_CATEGORIES:
            raise ComplaintFormError("category", f"complaint form: category {category!r:.30} is not offered")
        summary = _form_value(form, "summary", 2000, required=True)
        contact = _form_value(form, "contact", 200, required=False)
        member = _form_value(form, "about_member", 63, required=False)
        manifest = request.app[PUBLISHER].current().payload
        if member is not None and manifest.member(member) is None:
            raise ComplaintFormError("about_member", f"complaint form: {member!r:.40} is not a member")
        if await register.count() >= request.app[MAX_OPEN]:
            raise RegisterFull(f"{request.app[MAX_OPEN]} complaints from the public are open")
        filed = file_complaint(
            request.app[COMPLAINTS],
            channel="public",
            category=str(category),
            summary=str(summary),
            contact=contact,
            member=member,
            now=datetime.now(UTC).replace(microsecond=0),
        )
    except web.HTTPRequestEntityTooLarge:
        return complaint_refusal(request, OversizedError("a complaint larger than the limit"), 413)
    except WatchnetError as e:
        LOG.info("complaint form refused: %s", e.code, extra={"source": source, "error": e.code})
        return complaint_refusal(request, e, _refusal(e).status)
    register.filed()
    LOG.info(
        "complaint %s filed (%s) about %s",
        filed["id"],
        filed["category"],
        filed["about_member"],
        extra={"reference": filed["id"], "about_member": filed["about_member"], "source": source},
    )
    when = LocalTimes(lang, ORGANISATION_ZONE).when(parse_time(filed["received_at"]))
    page = complaint_received_html(lang, filed["id"], when)
    return web.Response(
        text=page,
        content_type="text/html",
        charset="utf-8",
        status=201,
        headers={"Cache-Control": "no-store", "Content-Language": lang, "X-Content-Type-Options": "nosniff"},
    )


async def rules(request: web.Request) -> web.Response:
    """The group's rules as a readable guideline, generated from the published manifest (``node.org.rules``)."""
    lang = request_language(request)
    return html_response(
        request, render_html(build_rules(request.app[PUBLISHER].current().payload, lang)), lang
    )


async def rules_text(request: web.Request) -> web.Response:
    lang = request_language(request)
    text = render_text(build_rules(request.app[PUBLISHER].current().payload, lang))
    return web.Response(
        text=text,
        content_type="text/plain",
        charset="utf-8",
        headers={"Content-Language": lang, "Vary": "Accept-Language", "Cache-Control": CACHE_CONTROL},
    )


async def notice_text(request: web.Request) -> web.Response:
    lang = request_language(request)
    text = render_notice(request.app[PUBLISHER].current().payload, lang)
    return web.Response(
        text=text,
        content_type="text/plain",
        charset="utf-8",
        headers={"Content-Language": lang, "Vary": "Accept-Language", "Cache-Control": CACHE_CONTROL},
    )


def _notice_qr(kind: str) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def handler(request: web.Request) -> web.Response:
        url = request.app[NOTICE_URL] or request_base(request) + NOTICE_PATH
        return qr_response(request, url, kind)

    return handler


async def report(request: web.Request) -> web.Response:
    source = source_of(request.remote)
    try:
        request.app[REPORT_LIMITER].hit(source, "reports")
        body = await _read(request, MAX_REPORT_BYTES, "a report")
        data = parse_json(body, max_bytes=MAX_REPORT_BYTES)
        if isinstance(data, dict) and isinstance(data.get("signed"), dict):
            return _extraction_report(request, data, body)
        evidence = verify_fork_report(data, request.app[PUBLISHER].current().payload)
    except WatchnetError as e:
        if not isinstance(e, RateLimited):
            LOG.info(
                "report refused: %s", e.code, extra={"source": source, "error": e.code, "detail": str(e)}
            )
        return _refusal(e)
    digest = evidence.digest
    path = request.app[REPORTS] / f"fork-{evidence.peer}-{digest}.json"
    if path.exists():
        return web.json_response({"received": digest, "duplicate": True}, status=200)
    kept = request.app[REPORTS].glob(f"fork-{evidence.peer}-{'?' * len(digest)}.json")
    if len(list(kept)) >= MAX_FORK_REPORTS_PER_PEER:
        return _refusal(
            RegisterFull(
                f"already {MAX_FORK_REPORTS_PER_PEER} fork reports about {evidence.peer}; no more are kept"
            )
        )
    document = evidence.to_dict(datetime.now(UTC).replace(microsecond=0))
    write_atomic(path, json.dumps(document, ensure_ascii=False, indent=2, sort_keys=True).encode())
    LOG.warning(
        "fork report: %s signed two roots for tree size %d",
        evidence.peer,
        evidence.tree_size,
        extra={"peer": evidence.peer, "reporter": evidence.reporter, "source": source, "received": digest},
    )
    return web.json_response({"received": digest}, status=201)


def _extraction_report(request: web.Request, data: dict[str, object], body: bytes) -> web.Response:
    """A member's signed report of suspected template extraction: kept only if the reporter is a
    member of the manifest in force and the report carries its signature."""
    try:
        document = SignedDocument.from_dict(data, ExtractionReport)
        report = document.payload
        member = request.app[PUBLISHER].current().payload.member(report.reporter)
        if member is None or member.status is MemberStatus.REMOVED:
            raise VerificationError(f"{report.reporter!r} is not a member of the group")
        document.verify([member.signing_key], threshold=1)
    except WatchnetError as e:
        status = 401 if isinstance(e, VerificationError) else 400
        return web.json_response({"error": e.code, "message": str(e)}, status=status)
    digest = hashlib.sha256(body).hexdigest()[:16]
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    write_atomic(request.app[REPORTS] / f"extraction-{stamp}-{digest}.json", body)
    LOG.warning(
        "extraction report: %s reports %s (%s)",
        report.reporter,
        report.suspect,
        report.reason,
        extra={"reporter": report.reporter, "suspect": report.suspect, "reason": report.reason},
    )
    return web.json_response({"received": digest}, status=201)


async def complaint(request: web.Request) -> web.Response:
    """Anyone may complain to the organisation about how a member handles their data (Art. 40)."""
    source = source_of(request.remote)
    register = request.app[OPEN_COMPLAINTS]
    try:
        request.app[COMPLAINT_LIMITER].hit(source, "complaints")
        data = parse_json(
            await _read(request, MAX_COMPLAINT_BYTES, "a complaint"), max_bytes=MAX_COMPLAINT_BYTES
        )
        if not isinstance(data, dict):
            raise MalformedError("expected a JSON object with category and summary")
        allowed = {"category", "summary", "contact", "about_member"}
        if set(data) - allowed:
            raise MalformedError(f"unknown fields {sorted(set(data) - allowed)[:8]}")
        if await register.count() >= request.app[MAX_OPEN]:
            raise RegisterFull(
                f"{request.app[MAX_OPEN]} complaints from the public are open; please write to the organisation"
            )
        filed = file_complaint(
            request.app[COMPLAINTS],
            channel="public",
            category=str(data.get("category", "")),
            summary=str(data.get("summary", "")),
            contact=str(data["contact"])[:200] if data.get("contact") else None,
            member=str(data["about_member"])[:63] if data.get("about_member") else None,
            now=datetime.now(UTC).replace(microsecond=0),
        )
    except WatchnetError as e:
        if not isinstance(e, RateLimited):
            LOG.info(
                "complaint refused: %s", e.code, extra={"source": source, "error": e.code, "detail": str(e)}
            )
        return _refusal(e)
    register.filed()
    LOG.info(
        "complaint %s filed (%s) about %s",
        filed["id"],
        filed["category"],
        filed["about_member"],
        extra={"reference": filed["id"], "about_member": filed["about_member"], "source": source},
    )
    return web.json_response({"reference": filed["id"], "received_at": filed["received_at"]}, status=201)


MAX_ANSWER_BYTES = 16 << 10
"""A ``complaint-answer``: an answer of at most 2000 characters and one signature."""


async def complaint_answer(request: web.Request) -> web.Response:
    """A member's signed answer to a complaint the organisation referred to it (``complaint-answer``).

    201 when kept, 200 when this very answer is held already (a retry after a lost reply); 401 for
    a signature that is not the member's, 404 for an unknown complaint, 409 for a complaint never
    referred to that member (``not_referred``) or already answered otherwise (``already_answered``)."""
    source = source_of(request.remote)
    try:
        request.app[REPORT_LIMITER].hit(source, "answers")
        data = parse_json(await _read(request, MAX_ANSWER_BYTES, "an answer"), max_bytes=MAX_ANSWER_BYTES)
        document = verify_answer(data, request.app[PUBLISHER].current().payload)
        complaint, new = await asyncio.to_thread(
            record_answer, request.app[COMPLAINTS], document, now=datetime.now(UTC).replace(microsecond=0)
        )
    except (WrongState, EntryNotFound) as e:
        LOG.info("complaint answer refused: %s", e.code, extra={"source": source, "error": e.code})
        status = 404 if isinstance(e, EntryNotFound) else 409
        return web.json_response({"error": e.code, "message": str(e)}, status=status)
    except WatchnetError as e:
        if not isinstance(e, RateLimited):
            LOG.info(
                "complaint answer refused: %s",
                e.code,
                extra={"source": source, "error": e.code, "detail": str(e)},
            )
        return _refusal(e)
    answer = document.payload
    LOG.info(
        "complaint %s answered by %s (%s)",
        answer.complaint_id,
        answer.member,
        answer.outcome,
        extra={"reference": answer.complaint_id, "member": answer.member, "duplicate": not new},
    )
    return web.json_response(
        {"received": complaint["id"], **({} if new else {"duplicate": True})}, status=201 if new else 200
    )


async def fork_clearance(request: web.Request) -> web.Response:
    """The published ``fork-clearance`` of a member (``gov fork-clear publish``), for its followers.

    Served only while a threshold of the current manifest's organisation keys signs it: a draft
    still collecting signatures, or one signed under keys since rotated out, is never served."""
    member = request.match_info["member"]
    try:
        path = clearance_path(request.app[REPORTS], member)
        document = load_clearance(path)
        manifest = request.app[PUBLISHER].current().payload
        document.verify(manifest.role_keys(), manifest.manifest_role.threshold)
    except WatchnetError as e:
        return web.json_response(
            {"error": "no_clearance", "message": f"no published fork clearance of {member[:63]!r}: {e.code}"},
            status=404,
        )
    return web.Response(body=document.to_bytes(), content_type="application/json")


MAX_CHECKPOINT_REQUEST = 64 * 1024
"""An add-checkpoint body: a checkpoint note, a proof of at most 63 hashes, a few lines."""


async def witness_add_checkpoint(request: web.Request) -> web.Response:
    if (request.content_length or 0) > MAX_CHECKPOINT_REQUEST:
        return web.Response(status=413, text=f"oversized: at most {MAX_CHECKPOINT_REQUEST} bytes\n")
    body = await request.content.read(MAX_CHECKPOINT_REQUEST + 1)
    if len(body) > MAX_CHECKPOINT_REQUEST:
        return web.Response(status=413, text=f"oversized: at most {MAX_CHECKPOINT_REQUEST} bytes\n")
    manifest = request.app[PUBLISHER].current().payload
    witness = request.app[WITNESS]
    try:
        witness.check_key(manifest)
    except WatchnetError as e:
        return web.Response(status=404, text=f"unknown_log: {e}\n", content_type="text/plain")
    return await answer_add_checkpoint(witness, body, manifest, datetime.now(UTC).replace(microsecond=0))


async def witness_checkpoint(request: web.Request) -> web.Response:
    return await answer_witnessed(request.app[WITNESS], request)


async def health(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


def build_gov_app(
    manifest_path: Path,
    reports: Path,
    *,
    notice_url: str | None = None,
    complaints: Path | None = None,
    report_rate: Rate = REPORT_RATE,
    complaint_rate: Rate = COMPLAINT_RATE,
    max_open_complaints: int = MAX_OPEN_PUBLIC_COMPLAINTS,
    clock: Callable[[], float] = time.monotonic,
    witness: OrganisationWitness | None = None,
    staff: OrgStaff | None = None,
    member_poll: float = 300.0,
    referral_retry: float = 30.0,
) -> web.Application:
    """``notice_url``: the public address of ``/notice`` for its QR code (default: the request's own).
    The rates, the register's cap and the (monotonic) clock are parameters for tests. With
    ``staff`` (the organisation's database) the console is served too, and every member is asked
    which manifest it runs every ``member_poll`` seconds. With both ``staff`` and ``witness`` the
    secretariat can refer a complaint to its member (signed with the witness key), delivered and
    retried every ``referral_retry`` seconds until the member takes it."""
    app = web.Application(client_max_size=MAX_CONSOLE_BYTES if staff is not None else MAX_REPORT_BYTES)
    app[PUBLISHER] = ManifestPublisher(manifest_path)
    app[REPORTS] = reports
    app[NOTICE_URL] = notice_url or ""
    app[COMPLAINTS] = complaints or manifest_path.parent / "complaints"
    app[REPORT_LIMITER] = SourceLimiter(report_rate, clock=clock)
    app[COMPLAINT_LIMITER] = SourceLimiter(complaint_rate, clock=clock)
    app[OPEN_COMPLAINTS] = OpenComplaints(app[COMPLAINTS])
    app[MAX_OPEN] = max_open_complaints
    app.router.add_get("/v1/health", health)
    app.router.add_get("/v1/manifest", manifest)
    app.router.add_get(NOTICE_PATH, notice)
    app.router.add_get(f"{NOTICE_PATH}.txt", notice_text)
    app.router.add_get(f"{NOTICE_PATH}/qr.png", _notice_qr("png"))
    app.router.add_get(f"{NOTICE_PATH}/qr.svg", _notice_qr("svg"))
    app.router.add_get(RULES_PATH, rules)
    app.router.add_get(f"{RULES_PATH}.txt", rules_text)
    app.router.add_post("/v1/reports", report)
    app.router.add_get("/v1/fork-clearances/{member}", fork_clearance)
    app.router.add_post("/v1/complaints", complaint)
    app.router.add_post(COMPLAINT_PATH, complaint_form)
    app.router.add_post("/v1/complaint-answers", complaint_answer)
    if witness is not None:
        app[WITNESS] = witness
        app.router.add_post("/v1/witness/add-checkpoint", witness_add_checkpoint)
        app.router.add_get("/v1/witness/checkpoint", witness_checkpoint)
    if staff is not None:
        publisher = app[PUBLISHER]
        watch = MemberWatch(
            lambda: publisher.current().payload,
            lambda: datetime.now(UTC).replace(microsecond=0),
            interval=member_poll,
            fetches_path=manifest_path.parent / "manifest-fetches.json",
        )
        app[WATCH] = watch
        org = OrgConsole(
            current=lambda: publisher.current().payload,
            drafts=DraftStore(manifest_path),
            watch=watch,
            reports=reports,
            complaints=app[COMPLAINTS],
            verify_fork=verify_fork_report,
            member_reports=ReportStore(manifest_path.parent / "member-reports"),
            referrals=(
                None
                if witness is None
                else ReferralSender(
                    app[COMPLAINTS],
                    lambda: publisher.current().payload,
                    lambda: datetime.now(UTC).replace(microsecond=0),
                    retry=referral_retry,
                )
            ),
            sign_referral=None if witness is None else witness.sign_document,
        )
        add_org_console(app, staff, org)
    return app
