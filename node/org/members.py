"""What the organisation knows of each member: the version it runs, its fetches, its reachability.

Two sources, each stated for what it is:

- **Asked**: every ``interval`` (and when staff press "check now") the organisation GETs each
  member's public ``/v1/manifest``, the manifest that node trusts now. The answer says which
  version it runs (if the document verifies under its own keys and is of this group) and whether
  the member is reachable from the organisation, with the error when not. A supervised loop: an
  error is logged and counted, the loop backs off and never dies.
- **Seen**: members fetch ``/v1/manifest`` from the organisation without credentials, so a fetch
  is known only by its source address. ``FetchLog`` keeps, per address (at most ``MAX_SOURCES``),
  the last fetch, the version served and a count, kept in a file beside the manifest (written at
  most every ``SAVE_EVERY`` seconds and at shutdown), so a restart forgets none. A member's fetches
  are those from its endpoint's address when that address is an IP literal (or ``localhost``)
  and no other member's endpoint shares it; otherwise the page says the fetch cannot be told
  apart, rather than guessing.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import logging
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web

from governance.manifest import Manifest, Member, MemberStatus
from node.files import write_atomic
from node.org.loops import running, wakeable_loop
from node.records.accounts import sign_in_source
from protocol.errors import WatchnetError
from protocol.fields import format_time, parse_time
from protocol.signed import SignedDocument

__all__ = ["Fetch", "FetchLog", "MemberWatch", "Sighting", "endpoint_source"]

LOG = logging.getLogger("watchnet.gov.members")
MAX_SOURCES = 4096
MAX_MANIFEST_BYTES = 1 << 20
ASK_TIMEOUT = 5.0
SAVE_EVERY = 10.0
"""Seconds between two writes of the fetch file while members fetch."""


@dataclass(frozen=True)
class Fetch:
    """The last fetch of the manifest from one source address."""

    source: str
    at: datetime
    version: int
    count: int


class FetchLog:
    """Fetches of ``/v1/manifest`` per source address, bounded (oldest forgotten first), kept in
    ``path`` when given: a crash loses at most the last ``SAVE_EVERY`` seconds of them."""

    def __init__(self, max_sources: int = MAX_SOURCES, path: Path | None = None) -> None:
        self.max_sources = max_sources
        self.path = path
        self._fetches: OrderedDict[str, Fetch] = OrderedDict()
        self._saved_at = 0.0
        self._dirty = False
        self._scheduled = False
        if path is not None and path.exists():
            self._load(path)

    def _load(self, path: Path) -> None:
        try:
            rows = json.loads(path.read_text(encoding="utf-8"))
            for row in rows[-self.max_sources :]:
                fetch = Fetch(
                    str(row["source"]), parse_time(row["at"]), int(row["version"]), int(row["count"])
                )
                self._fetches[fetch.source] = fetch
        except (
            OSError,
            ValueError,
            KeyError,
            TypeError,
            WatchnetError,
        ) as e:  # a damaged file: start afresh, say so
            LOG.warning(
                "manifest fetches in %s could not be read (%s); starting with none", path, type(e).__name__
            )
            self._fetches.clear()

    def record(self, source: str, version: int, now: datetime) -> None:
        previous = self._fetches.pop(source, None)
        self._fetches[source] = Fetch(source, now, version, 1 if previous is None else previous.count + 1)
        while len(self._fetches) > self.max_sources:
            self._fetches.popitem(last=False)
        self._dirty = True
        if time.monotonic() - self._saved_at >= SAVE_EVERY:
            self.save()
        elif not self._scheduled:  # the rest of a burst, written once it is SAVE_EVERY old
            with contextlib.suppress(
                RuntimeError
            ):  # no running loop (a test's direct call): saved at the next
                asyncio.get_running_loop().call_later(SAVE_EVERY, self._save_later)
                self._scheduled = True

    def _save_later(self) -> None:
        self._scheduled = False
        self.save()

    def save(self) -> None:
        """Write the fetches to ``path`` (atomically) if any changed; errors are logged, not raised."""
        if self.path is None or not self._dirty:
            return
        rows = [
            {"source": f.source, "at": format_time(f.at), "version": f.version, "count": f.count}
            for f in self._fetches.values()
        ]
        try:
            write_atomic(self.path, json.dumps(rows).encode())
        except OSError as e:
            LOG.warning("manifest fetches could not be saved to %s (%s); will retry", self.path, e)
            return
        self._saved_at, self._dirty = time.monotonic(), False

    def get(self, source: str) -> Fetch | None:
        return self._fetches.get(source)


def endpoint_source(endpoint: str) -> str | None:
    """The source address fetches from a member would come from, if its endpoint names one
    (an IP literal, or ``localhost`` as 127.0.0.1); ``None`` for a host name."""
    host = urlsplit(endpoint).hostname or ""
    if host == "localhost":
        return "127.0.0.1"
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return None
    return sign_in_source(host)


@dataclass(frozen=True)
class Sighting:
    """The last time the organisation asked a member which manifest it runs."""

    checked_at: datetime
    outcome: str
    """``ok``, ``unreachable``, ``http:<status>``, ``refused:<code>`` (not a manifest of this group)."""
    version: int | None = None
    last_ok: datetime | None = None
    detail: str = ""
    elapsed_ms: float = 0.0


class MemberWatch:
    """Asks every member (not removed) which manifest it runs; supervised, with back-off."""

    def __init__(
        self,
        manifest: Callable[[], Manifest],
        clock: Callable[[], datetime],
        *,
        interval: float = 300.0,
        timeout: float = ASK_TIMEOUT,
        fetches_path: Path | None = None,
    ) -> None:
        self.manifest = manifest
        self.clock = clock
        self.interval = interval
        self.timeout = timeout
        self.sightings: dict[str, Sighting] = {}
        self.fetches = FetchLog(path=fetches_path)
        self.runs = 0
        self.errors = 0
        self.last_error = ""
        self.last_pass: datetime | None = None
        self._session: aiohttp.ClientSession | None = None
        self._wake = asyncio.Event()

    async def _ask(self, session: aiohttp.ClientSession, member: Member, group_id: str) -> Sighting:
        now = self.clock()
        previous = self.sightings.get(member.node_id)
        last_ok = previous.last_ok if previous else None
        started = time.monotonic()
        url = member.endpoint.rstrip("/") + "/v1/manifest"
        try:
            async with session.get(url, timeout=aiohttp.ClientTimeout(total=self.timeout)) as response:
                body = await response.content.read(MAX_MANIFEST_BYTES + 1)
                status = response.status
        except (aiohttp.ClientError, TimeoutError, OSError) as e:
            return Sighting(now, "unreachable", None, last_ok, type(e).__name__)
        elapsed = (time.monotonic() - started) * 1000
        if status != 200:
            return Sighting(now, f"http:{status}", None, last_ok, elapsed_ms=elapsed)
        try:
            document = SignedDocument.from_bytes(body[:MAX_MANIFEST_BYTES], Manifest)
            manifest = document.payload
            if manifest.group_id != group_id:
                return Sighting(now, "refused:other_group", None, last_ok, manifest.group_id[:63], elapsed)
            document.verify(manifest.role_keys(), manifest.manifest_role.threshold)
        except WatchnetError as e:
            return Sighting(now, f"refused:{e.code}", None, last_ok, str(e)[:200], elapsed)
        return Sighting(now, "ok", manifest.version, now, elapsed_ms=elapsed)

    async def check(self) -> dict[str, Sighting]:
        """Ask every member once, concurrently; returns (and keeps) each answer."""
        manifest = self.manifest()
        members = [m for m in manifest.joint_use.members if m.status is not MemberStatus.REMOVED]
        owned = self._session is None
        session = self._session or aiohttp.ClientSession()
        try:
            answers = await asyncio.gather(*(self._ask(session, m, manifest.group_id) for m in members))
        finally:
            if owned:
                await session.close()
        for member, sighting in zip(members, answers, strict=True):
            self.sightings[member.node_id] = sighting
        self.runs += 1
        self.last_pass = self.clock()
        return dict(self.sightings)

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        """Every ``interval`` (or when woken), ask the members; errors are logged and backed off."""
        await wakeable_loop(
            self._wake, self.interval, self.check, doing="asking the members", log=LOG, failed=self._failed
        )

    def _failed(self, error: BaseException) -> None:
        self.errors += 1
        self.last_error = type(error).__name__

    async def start(self, _app: web.Application) -> AsyncIterator[None]:
        """An aiohttp ``cleanup_ctx``: one client session and the loop, closed with the server."""
        try:
            async with running(self.run, "org-member-watch", self._use_session):
                yield
        finally:
            self.fetches.save()

    def _use_session(self, session: aiohttp.ClientSession | None) -> None:
        self._session = session
