"""The node's typed configuration (``config.toml`` in the node directory).

Every setting has a documented default and a hard limit, durations are written like ``"60s"``,
and a bad value is refused at start with the field, the value and what is expected, rather than
discovered later in a request. Secrets are never in this file: key files sit beside it (0600),
and the data key may instead come from the environment (``WATCHNET_DATA_KEY``).
"""

from __future__ import annotations

import ipaddress
import os
import re
import ssl
import tomllib
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import tomli_w

from governance.manifest import LocalizedText, Manifest
from governance.notice import SiteSignage
from protocol.canonical import b64url_decode
from protocol.errors import ConfigurationError, MalformedError
from protocol.fields import DATE_RE, NODE_ID_RE, Fields, format_duration, parse_duration
from protocol.keys import DataKey
from protocol.signed import SignedDocument

__all__ = [
    "CAMERA_SCHEMES",
    "CAMERA_STATUS_FILE",
    "CONFIG_FILE",
    "MANIFEST_FILE",
    "NOTICE_URL_RE",
    "RULES_FILE",
    "AlertSettings",
    "CameraSettings",
    "Connections",
    "ConsoleSettings",
    "EmailSettings",
    "Federation",
    "HealthSettings",
    "Limits",
    "NodeConfig",
    "NoticeSettings",
    "SecuritySettings",
    "Server",
    "SmtpSettings",
    "StorageSettings",
    "WebhookSettings",
    "load_manifest_file",
    "redact_url",
]

CONFIG_FILE = "config.toml"
CAMERA_STATUS_FILE = "camera-status.json"
"""Where ``watchnet camera run`` writes its cameras' state every 2 s (the console's cameras page reads it)."""
MANIFEST_FILE = "manifest.json"
RULES_FILE = "rules.toml"


def load_manifest_file(path: Path) -> SignedDocument[Manifest]:
    """A signed manifest from a file (not yet verified: the caller checks it against its trust)."""
    try:
        return SignedDocument.from_bytes(path.read_bytes(), Manifest)
    except FileNotFoundError as e:
        raise ConfigurationError(
            f"{path} not found; 'watchnet init --manifest FILE' installs the group manifest"
        ) from e


_KEYID_RE = re.compile(r"[0-9a-f]{64}")
EXPORTERS = ("none", "console", "otlp")


@dataclass(frozen=True)
class Limits:
    """Hard limits on what one request or one account may cost the node."""

    max_body_bytes: int = 8 << 20
    requests_per_minute: int = 600
    peer_requests_per_minute: int = 1200
    replay_window: timedelta = timedelta(seconds=60)
    forwards_per_member_per_day: int = 50
    """Data-subject requests one member may forward to us in any 24 hours (each opens a request
    with a legal deadline for our officer); more are refused ``forward_rate_limited``. A repeat
    of a forward we already hold opens nothing and does not count. Between 1 and 10,000."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "max_body_bytes": self.max_body_bytes,
            "requests_per_minute": self.requests_per_minute,
            "peer_requests_per_minute": self.peer_requests_per_minute,
            "replay_window": format_duration(self.replay_window),
            "forwards_per_member_per_day": self.forwards_per_member_per_day,
        }

    @classmethod
    def from_dict(cls, data: Any) -> Limits:
        f = Fields(data, "limits")
        d = cls()
        limits = cls(
            max_body_bytes=f.optional(
                "max_body_bytes", d.max_body_bytes, lambda n: f.integer(n, low=1024, high=16 << 20)
            ),
            requests_per_minute=f.optional(
                "requests_per_minute", d.requests_per_minute, lambda n: f.integer(n, low=1, high=100_000)
            ),
            peer_requests_per_minute=f.optional(
                "peer_requests_per_minute",
                d.peer_requests_per_minute,
                lambda n: f.integer(n, low=1, high=100_000),
            ),
            replay_window=f.optional(
                "replay_window",
                d.replay_window,
                lambda n: parse_duration(f.text(n, max_len=16), field=f"limits.{n}"),
            ),
            forwards_per_member_per_day=f.optional(
                "forwards_per_member_per_day",
                d.forwards_per_member_per_day,
                lambda n: f.integer(n, low=1, high=10_000),
            ),
        )
        f.finish()
        return limits


def _bounded_durations(
    f: Fields, section: str, bounds: dict[str, tuple[timedelta, timedelta]]
) -> dict[str, timedelta]:
    """The durations of ``section`` that are set, each checked against its (low, high) bounds."""
    values: dict[str, timedelta] = {}
    for name, (low, high) in bounds.items():
        if not f.has(name):
            continue
        value = parse_duration(f.text(name, max_len=16), field=f"{section}.{name}")
        if not low <= value <= high:
            raise MalformedError(
                f"{section}.{name}: {format_duration(value)} outside "
                f"[{format_duration(low)}, {format_duration(high)}]"
            )
        values[name] = value
    return values


@dataclass(frozen=True)
class Federation:
    """How the node talks to its peers and the organisation: deadlines and schedules."""

    peer_timeout: timedelta = timedelta(seconds=5)
    sync_interval: timedelta = timedelta(seconds=30)
    manifest_poll: timedelta = timedelta(minutes=5)
    manifest_grace: timedelta = timedelta(minutes=5)
    retry_max: timedelta = timedelta(minutes=10)
    he_key_epoch: timedelta = timedelta(days=1)
    gallery_reshuffle: timedelta = timedelta(hours=1)
    private_deadline_cap: timedelta = timedelta(seconds=60)
    """The longest a private-mode round 1 may wait; below it the deadline follows the faces asked."""
    lease_poll: timedelta = timedelta(seconds=2)
    """How often a worker tries for the node's leader lease (PostgreSQL), and the leader checks it."""
    he_processes: int = 1
    """Processes that share each private-mode query (1, 2, 4 or 8): each holds its part of the
    gallery and computes its part of the products on its own core, so a query's server time
    falls with more cores (docs/private-mode.md); memory stays that of one copy."""

    _BOUNDS: ClassVar[dict[str, tuple[timedelta, timedelta]]] = {
        "peer_timeout": (timedelta(seconds=1), timedelta(minutes=2)),
        "sync_interval": (timedelta(seconds=1), timedelta(days=1)),
        "manifest_poll": (timedelta(seconds=1), timedelta(days=1)),
        "manifest_grace": (timedelta(0), timedelta(days=1)),
        "retry_max": (timedelta(seconds=1), timedelta(days=1)),
        "he_key_epoch": (timedelta(minutes=1), timedelta(days=7)),
        "gallery_reshuffle": (timedelta(seconds=10), timedelta(days=1)),
        "private_deadline_cap": (timedelta(seconds=5), timedelta(minutes=10)),
        "lease_poll": (timedelta(seconds=1), timedelta(minutes=1)),
    }

    HE_PROCESSES: ClassVar[tuple[int, ...]] = (1, 2, 4, 8)
    """Each share takes an equal part of the baby steps, and those come in powers of two."""

    def to_dict(self) -> dict[str, Any]:
        return {
            **{name: format_duration(getattr(self, name)) for name in self._BOUNDS},
            "he_processes": self.he_processes,
        }

    @classmethod
    def from_dict(cls, data: Any) -> Federation:
        f = Fields(data, "federation")
        values: dict[str, Any] = dict(_bounded_durations(f, "federation", cls._BOUNDS))
        if f.has("he_processes"):
            count = f.integer("he_processes", low=1, high=8)
            if count not in cls.HE_PROCESSES:
                raise MalformedError(f"federation.he_processes {count}: expected 1, 2, 4 or 8")
            values["he_processes"] = count
        f.finish()
        return cls(**values)


@dataclass(frozen=True)
class Connections:
    """Connection hygiene (``[connections]``): how long a client may take and how many it may hold.

    ``idle_timeout`` closes a connection that has not sent a complete request head within that
    time of opening (or of its last answer): a client trickling header bytes is closed by it.
    ``body_timeout`` bounds the reading of one request body. ``per_source`` caps the connections
    open from one address at once, and ``anonymous_refusals_per_minute`` how many requests
    without valid credentials one address may have refused before it is answered 429 unheard.
    """

    idle_timeout: timedelta = timedelta(seconds=20)
    body_timeout: timedelta = timedelta(seconds=30)
    per_source: int = 64
    anonymous_refusals_per_minute: int = 120

    _BOUNDS: ClassVar[dict[str, tuple[timedelta, timedelta]]] = {
        "idle_timeout": (timedelta(seconds=1), timedelta(minutes=10)),
        "body_timeout": (timedelta(seconds=1), timedelta(minutes=10)),
    }

    def to_dict(self) -> dict[str, Any]:
        return {
            **{name: format_duration(getattr(self, name)) for name in self._BOUNDS},
            "per_source": self.per_source,
            "anonymous_refusals_per_minute": self.anonymous_refusals_per_minute,
        }

    @classmethod
    def from_dict(cls, data: Any) -> Connections:
        f = Fields(data, "connections")
        values: dict[str, Any] = dict(_bounded_durations(f, "connections", cls._BOUNDS))
        if f.has("per_source"):
            values["per_source"] = f.integer("per_source", low=1, high=100_000)
        if f.has("anonymous_refusals_per_minute"):
            values["anonymous_refusals_per_minute"] = f.integer(
                "anonymous_refusals_per_minute", low=1, high=100_000
            )
        f.finish()
        return cls(**values)


@dataclass(frozen=True)
class ConsoleSettings:
    """How long a staff web console session lasts (``node/console``): idle, and at most in all.

    A shop-floor tablet is often left logged in; the idle timeout ends its session after a
    quiet spell, the lifetime ends every session however busy, so a stolen cookie ages out.
    """

    idle_timeout: timedelta = timedelta(minutes=15)
    session_lifetime: timedelta = timedelta(hours=12)
    time_zone: str = "Asia/Tokyo"
    """The IANA zone every time a person reads is shown in (console, notice, report); the wire,
    the logs and the audit chain stay in UTC."""

    _BOUNDS: ClassVar[dict[str, tuple[timedelta, timedelta]]] = {
        "idle_timeout": (timedelta(minutes=1), timedelta(hours=8)),
        "session_lifetime": (timedelta(minutes=5), timedelta(hours=24)),
    }

    def __post_init__(self) -> None:
        try:
            ZoneInfo(self.time_zone)
        except (ZoneInfoNotFoundError, ValueError) as e:
            raise MalformedError(
                f"console.time_zone: {self.time_zone!r:.60} is not an IANA time zone (e.g. Asia/Tokyo)"
            ) from e

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.time_zone)

    def to_dict(self) -> dict[str, Any]:
        return {
            **{name: format_duration(getattr(self, name)) for name in self._BOUNDS},
            "time_zone": self.time_zone,
        }

    @classmethod
    def from_dict(cls, data: Any) -> ConsoleSettings:
        f = Fields(data, "console")
        values: dict[str, Any] = _bounded_durations(f, "console", cls._BOUNDS)
        if f.has("time_zone"):
            values["time_zone"] = f.text("time_zone", max_len=64)
        f.finish()
        settings = cls(**values)
        if settings.idle_timeout > settings.session_lifetime:
            raise MalformedError(
                f"console.idle_timeout {format_duration(settings.idle_timeout)} is longer than "
                f"console.session_lifetime {format_duration(settings.session_lifetime)}"
            )
        return settings


@dataclass(frozen=True)
class HealthSettings:
    """When the node calls itself not ready (``[health]``, ``GET /v1/health/ready``).

    ``disk_free_min_mb``: the free space the node directory's disk must keep (deletions, expiries
    and the audit log are written there on SQLite). A duty is stalled when its last success is
    older than ``duty_stall_factor`` times its interval plus ``duty_stall_grace`` (a pass may wait
    on a peer's deadline). ``manifest_min_validity``: how long the trusted manifest must still be
    valid; below it the organisation must sign the next version soon.
    """

    disk_free_min_mb: int = 128
    duty_stall_factor: int = 3
    duty_stall_grace: timedelta = timedelta(seconds=30)
    manifest_min_validity: timedelta = timedelta(days=3)

    _BOUNDS: ClassVar[dict[str, tuple[timedelta, timedelta]]] = {
        "duty_stall_grace": (timedelta(seconds=1), timedelta(hours=1)),
        "manifest_min_validity": (timedelta(0), timedelta(days=365)),
    }

    def to_dict(self) -> dict[str, Any]:
        return {
            "disk_free_min_mb": self.disk_free_min_mb,
            "duty_stall_factor": self.duty_stall_factor,
            **{name: format_duration(getattr(self, name)) for name in self._BOUNDS},
        }

    @classmethod
    def from_dict(cls, data: Any) -> HealthSettings:
        f = Fields(data, "health")
        values: dict[str, Any] = dict(_bounded_durations(f, "health", cls._BOUNDS))
        if f.has("disk_free_min_mb"):
            values["disk_free_min_mb"] = f.integer("disk_free_min_mb", low=0, high=1 << 20)
        if f.has("duty_stall_factor"):
            values["duty_stall_factor"] = f.integer("duty_stall_factor", low=2, high=100)
        f.finish()
        return cls(**values)


@dataclass(frozen=True)
class StorageSettings:
    """The node directory's disk (``[storage]``).

    ``reserve_mb``: the size of the reserve file (``disk-reserve`` in the node directory) held on
    the disk in real blocks, given up when a deletion or an expiry cannot be written for a full
    disk, so that it can (``node.storage.reserve``). 0 keeps no reserve. Between 0 and 65,536.
    """

    reserve_mb: int = 64

    def to_dict(self) -> dict[str, Any]:
        return {"reserve_mb": self.reserve_mb}

    @classmethod
    def from_dict(cls, data: Any) -> StorageSettings:
        f = Fields(data, "storage")
        values: dict[str, Any] = {}
        if f.has("reserve_mb"):
            values["reserve_mb"] = f.integer("reserve_mb", low=0, high=1 << 16)
        f.finish()
        return cls(**values)


LOOSE_PERMISSIONS = ("warn", "refuse")


@dataclass(frozen=True)
class SecuritySettings:
    """What ``watchnet serve`` does on finding a file or directory under the node directory that
    group or others may read or write (``[security] loose_permissions``): ``"warn"`` names each
    path and the ``chmod`` to run on stderr, ``"refuse"`` also refuses to start (exit 2).

    The node directory holds password hashes, complaint text and the audit log; it is created
    0700 and its files 0600.
    """

    loose_permissions: str = "warn"

    def to_dict(self) -> dict[str, Any]:
        return {"loose_permissions": self.loose_permissions}

    @classmethod
    def from_dict(cls, data: Any) -> SecuritySettings:
        f = Fields(data, "security")
        d = cls()
        value = f.text("loose_permissions", max_len=16) if f.has("loose_permissions") else d.loose_permissions
        if value not in LOOSE_PERMISSIONS:
            raise MalformedError(
                f"security.loose_permissions: {value!r} is not one of {', '.join(LOOSE_PERMISSIONS)}"
            )
        f.finish()
        return cls(loose_permissions=value)


MAX_TRUSTED_PROXIES = 64


def _proxy_network(text: str, where: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    try:
        return ipaddress.ip_network(text, strict=True)
    except ValueError as e:
        raise MalformedError(
            f"{where}: {text!r:.60} is not an address or a network like 10.0.0.0/8 ({e})"
        ) from e


@dataclass(frozen=True)
class Server:
    """How the node's own listener is reached (``[server]``): TLS, and the proxies in front of it.

    ``tls_cert`` and ``tls_key`` (PEM files, relative to the node directory or absolute; both or
    neither) make ``watchnet serve`` speak TLS 1.2 or newer itself. ``ca_file`` is a PEM bundle of
    the certificate authorities the node trusts when it calls peers and the organisation over
    https (unset: the system's). ``trusted_proxies`` lists the addresses or networks (``127.0.0.1``,
    ``10.0.0.0/8``) whose ``Forwarded`` / ``X-Forwarded-For`` / ``X-Forwarded-Proto`` headers are
    believed (``node/app/proxies.py``); from anyone else those headers are ignored. Empty (the
    default): the TCP peer is the client.
    """

    tls_cert: str | None = None
    tls_key: str | None = None
    ca_file: str | None = None
    trusted_proxies: tuple[str, ...] = ()

    @property
    def tls(self) -> bool:
        return self.tls_cert is not None

    @property
    def proxy_networks(self) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
        return tuple(_proxy_network(p, "server.trusted_proxies") for p in self.trusted_proxies)

    def client_ssl(self, directory: Path) -> ssl.SSLContext | bool:
        """What the node's HTTP client verifies peers with: ``ca_file``'s authorities, or (``True``)
        the system's."""
        if self.ca_file is None:
            return True
        path = Path(self.ca_file) if Path(self.ca_file).is_absolute() else directory / self.ca_file
        try:
            return ssl.create_default_context(cafile=str(path))
        except FileNotFoundError as e:
            raise ConfigurationError(f"server.ca_file: {path} not found") from e
        except (OSError, ssl.SSLError) as e:
            raise ConfigurationError(
                f"server.ca_file: {path} is not a PEM bundle of CA certificates ({e})"
            ) from e

    def to_dict(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            name: getattr(self, name)
            for name in ("tls_cert", "tls_key", "ca_file")
            if getattr(self, name) is not None
        }
        if self.trusted_proxies:
            doc["trusted_proxies"] = list(self.trusted_proxies)
        return doc

    @classmethod
    def from_dict(cls, data: Any) -> Server:
        f = Fields(data, "server")
        paths = {
            name: f.text(name, max_len=1024) for name in ("tls_cert", "tls_key", "ca_file") if f.has(name)
        }
        proxies = (
            tuple(f.texts("trusted_proxies", max_items=MAX_TRUSTED_PROXIES, max_len=64))
            if f.has("trusted_proxies")
            else ()
        )
        f.finish()
        if ("tls_cert" in paths) != ("tls_key" in paths):
            given, missing = ("tls_cert", "tls_key") if "tls_cert" in paths else ("tls_key", "tls_cert")
            raise MalformedError(f"server.{given} is set but server.{missing} is not: give both or neither")
        for i, proxy in enumerate(proxies):
            _proxy_network(proxy, f"server.trusted_proxies[{i}]")
        return cls(trusted_proxies=proxies, **paths)


NOTICE_URL_RE = re.compile(r"https?://[A-Za-z0-9.-]+(:\d{1,5})?(/[A-Za-z0-9._~/%!$&'()*+,;=:@?#-]*)?")
MAX_SITES = 256
MAX_CAMERAS = 64


def _localized(f: Fields, name: str) -> LocalizedText | None:
    return LocalizedText.from_dict(f.obj(name), f"notice.{name}") if f.has(name) else None


def _posted_on(value: Any, where: str) -> date:
    """A TOML date (``2026-11-01``) or the same as a string."""
    if isinstance(value, date) and not isinstance(value, datetime):
        return value
    if isinstance(value, str) and DATE_RE.fullmatch(value):
        try:
            return date.fromisoformat(value)
        except ValueError as e:
            raise MalformedError(f"{where}: invalid date {value!r}") from e
    raise MalformedError(f"{where}: expected a date like 2026-11-01, got {value!r:.40}")


def _site(data: Any, where: str) -> SiteSignage:
    """One ``[[notice.sites]]`` table; no ``signage_posted_on`` means the sign is not posted yet."""
    f = Fields(data, where)
    site_id = f.text("site_id", max_len=63, pattern=NODE_ID_RE)
    name = LocalizedText.from_dict(f.obj("name"), f"{where}.name")
    cameras = tuple(f.texts("cameras", max_items=MAX_CAMERAS, max_len=100)) if f.has("cameras") else ()
    if any(not c.strip() for c in cameras):
        raise MalformedError(f"{where}.cameras: a camera label is empty")
    rest = f.rest()
    posted = rest.pop("signage_posted_on", None)
    if rest:
        raise MalformedError(f"{where}: unknown fields {sorted(rest)}")
    posted_on = None if posted is None else _posted_on(posted, f"{where}.signage_posted_on")
    return SiteSignage(site_id=site_id, name=name, cameras=cameras, posted_on=posted_on)


@dataclass(frozen=True)
class NoticeSettings:
    """What the public notice and the signage say about this business (APPI Art. 20-1, 21; Q1-11, Q1-12).

    The group's part of the notice comes from the signed manifest; these settings add the
    business operator that acquires the images, its contact point, where its 'camera in
    operation' signs are posted, and the public URL the QR code on those signs points to.
    Unset names fall back to this node's name in the manifest; an unset contact falls back to
    the administrator's (set one: the business is the first contact for its own cameras).
    """

    url: str | None = None
    """Public URL of this node's notice page, e.g. ``https://a-mart.example/notice``; printed as the QR code."""
    operator: LocalizedText | None = None
    address: LocalizedText | None = None
    representative: LocalizedText | None = None
    contact: LocalizedText | None = None
    recording_retention: timedelta | None = None
    """How long camera recordings are kept (``"30d"``), stated on the notice when set."""
    sites: tuple[SiteSignage, ...] = ()
    request_identity: LocalizedText | None = None
    """What a data subject brings to a request as proof of identity; unset: a photo identity document."""
    request_response_days: int = 14
    """Days within which a data-subject request is answered, stated on the notice (1 to 60)."""

    def to_dict(self) -> dict[str, Any]:
        doc: dict[str, Any] = {}
        if self.url:
            doc["url"] = self.url
        if self.request_response_days != NoticeSettings.request_response_days:
            doc["request_response_days"] = self.request_response_days
        for name in ("operator", "address", "representative", "contact", "request_identity"):
            text: LocalizedText | None = getattr(self, name)
            if text is not None:
                doc[name] = text.to_dict()
        if self.recording_retention is not None:
            doc["recording_retention"] = format_duration(self.recording_retention)
        if self.sites:
            doc["sites"] = [
                {
                    "site_id": s.site_id,
                    "name": s.name.to_dict(),
                    **({"cameras": list(s.cameras)} if s.cameras else {}),
                    **({"signage_posted_on": s.posted_on} if s.posted_on is not None else {}),
                }
                for s in self.sites
            ]
        return doc

    @classmethod
    def from_dict(cls, data: Any) -> NoticeSettings:
        f = Fields(data, "notice")
        url = f.text("url", max_len=512, pattern=NOTICE_URL_RE) if f.has("url") else None
        operator, address = _localized(f, "operator"), _localized(f, "address")
        representative, contact = _localized(f, "representative"), _localized(f, "contact")
        recording = (
            parse_duration(f.text("recording_retention", max_len=16), field="notice.recording_retention")
            if f.has("recording_retention")
            else None
        )
        if recording is not None and recording % timedelta(days=1):
            raise MalformedError(
                f"notice.recording_retention: {format_duration(recording)} is not a whole number of days"
            )
        if recording is not None and not timedelta(days=1) <= recording <= timedelta(days=3650):
            raise MalformedError(
                f"notice.recording_retention: {format_duration(recording)} outside [1d, 3650d]"
            )
        sites = (
            tuple(_site(x, f"notice.sites[{i}]") for i, x in enumerate(f.array("sites", max_items=MAX_SITES)))
            if f.has("sites")
            else ()
        )
        ids = [s.site_id for s in sites]
        if len(set(ids)) != len(ids):
            raise MalformedError(
                f"notice.sites: duplicate site_id {sorted({i for i in ids if ids.count(i) > 1})}"
            )
        identity = _localized(f, "request_identity")
        days = (
            f.integer("request_response_days", low=1, high=60)
            if f.has("request_response_days")
            else cls.request_response_days
        )
        f.finish()
        return cls(url, operator, address, representative, contact, recording, sites, identity, days)


MAX_PROCEDURE_STEPS = 12


@dataclass(frozen=True)
class AlertSettings:
    """How alerts are kept and what the operator is told to do (``[alerts]``).

    ``review_window``: how long the camera's face crop of an alert is kept (sealed under the
    alert's own record key) for staff to decide by; then the key is destroyed and the crop erased
    (default 72 h, between 1 h and 14 d). ``merge_window``: the same person (owner and entry) seen
    again within this of the alert's last sighting, at any gate or site, is a sighting of the same
    alert rather than a new alert (default 5 min, between 30 s and 1 h). ``erase_interval``: how
    often the erasure duty looks for crops whose window ended (default 60 s, between 1 s and 1 h).
    ``procedure``: the group's written response procedure, one ``[[alerts.procedure]]`` table per
    step with ``ja`` and ``en``, shown numbered beside the confirm and reject buttons.
    """

    review_window: timedelta = timedelta(hours=72)
    merge_window: timedelta = timedelta(minutes=5)
    erase_interval: timedelta = timedelta(seconds=60)
    procedure: tuple[LocalizedText, ...] = ()

    _BOUNDS: ClassVar[dict[str, tuple[timedelta, timedelta]]] = {
        "review_window": (timedelta(hours=1), timedelta(days=14)),
        "merge_window": (timedelta(seconds=30), timedelta(hours=1)),
        "erase_interval": (timedelta(seconds=1), timedelta(hours=1)),
    }

    def to_dict(self) -> dict[str, Any]:
        doc: dict[str, Any] = {name: format_duration(getattr(self, name)) for name in self._BOUNDS}
        if self.procedure:
            doc["procedure"] = [step.to_dict() for step in self.procedure]
        return doc

    @classmethod
    def from_dict(cls, data: Any) -> AlertSettings:
        f = Fields(data, "alerts")
        values: dict[str, Any] = dict(_bounded_durations(f, "alerts", cls._BOUNDS))
        if f.has("procedure"):
            values["procedure"] = tuple(
                LocalizedText.from_dict(step, f"alerts.procedure[{i}]")
                for i, step in enumerate(f.array("procedure", max_items=MAX_PROCEDURE_STEPS))
            )
        f.finish()
        return cls(**values)


CAMERA_SCHEMES = ("rtsp", "rtsps", "http", "https", "file")
"""What a camera's ``url`` may be read with (OpenCV's FFmpeg backend); ``file`` also takes a plain path."""
MAX_CAMERA_URL = 1024
_USERINFO_RE = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*://)([^@/?#]*)@")


def redact_url(url: str) -> str:
    """``url`` with the password of its credentials replaced by ``***`` (``rtsp://user:***@host/``).

    The one form in which a camera's address is shown, logged or audited: the user name stays (it
    says which account the camera uses), the password never leaves the config file."""
    match = _USERINFO_RE.match(url)
    if match is None:
        return url
    user = match.group(2).split(":", 1)[0]
    return f"{match.group(1)}{user}:***@{url[match.end() :]}" if ":" in match.group(2) else url


@dataclass(frozen=True)
class CameraSettings:
    """One camera (``[[cameras]]``): where it is, how its stream is read and sampled.

    ``id`` names the camera in alerts, metrics and the status (``shibuya-01-door``); ``site`` is the
    store it is in (a camera account may match only for its own sites) and ``gate`` the entrance or
    aisle it watches. ``url`` is an RTSP, HTTP (MJPEG) or file address, read through OpenCV's FFmpeg
    backend; its credentials (``rtsp://user:pass@host/``) stay in this file (0600) and are shown
    everywhere else as ``redact_url`` gives them. ``sample_fps`` frames a second are searched for
    faces (0.2 to 30; the reader keeps only the latest frame between samples), faces narrower than
    ``min_face_pixels`` are ignored (16 to 1024), and a track is asked about again only after
    ``resend_after`` (1s to 1h) or when its best face's quality improves markedly.
    """

    id: str
    site: str
    url: str = field(repr=False)
    gate: str = ""
    sample_fps: float = 5.0
    min_face_pixels: int = 40
    resend_after: timedelta = timedelta(seconds=60)
    ask_network: bool = False
    """Also ask the other members of the group (purpose ``crime-prevention``), not only this node's list."""

    def __post_init__(self) -> None:
        where = f"cameras[{self.id}]"
        if not NODE_ID_RE.fullmatch(self.id):
            raise MalformedError(f"cameras.id: {self.id!r:.60} does not match {NODE_ID_RE.pattern}")
        if not NODE_ID_RE.fullmatch(self.site):
            raise MalformedError(f"{where}.site: {self.site!r:.60} does not match {NODE_ID_RE.pattern}")
        if self.gate and not NODE_ID_RE.fullmatch(self.gate):
            raise MalformedError(f"{where}.gate: {self.gate!r:.60} does not match {NODE_ID_RE.pattern}")
        _camera_url(self.url, f"{where}.url")
        if not 0.2 <= self.sample_fps <= 30:
            raise MalformedError(f"{where}.sample_fps: {self.sample_fps:g} outside [0.2, 30]")
        if not 16 <= self.min_face_pixels <= 1024:
            raise MalformedError(f"{where}.min_face_pixels: {self.min_face_pixels} outside [16, 1024]")
        if not timedelta(seconds=1) <= self.resend_after <= timedelta(hours=1):
            raise MalformedError(
                f"{where}.resend_after: {format_duration(self.resend_after)} outside [1s, 1h]"
            )

    @property
    def safe_url(self) -> str:
        return redact_url(self.url)

    def __repr__(self) -> str:
        return (
            f"CameraSettings(id={self.id!r}, site={self.site!r}, gate={self.gate!r}, url={self.safe_url!r})"
        )

    def to_dict(self) -> dict[str, Any]:
        """The table as ``config.toml`` holds it (with the URL's credentials: for the file only)."""
        doc: dict[str, Any] = {"id": self.id, "site": self.site, "url": self.url}
        if self.gate:
            doc["gate"] = self.gate
        doc["sample_fps"] = self.sample_fps
        doc["min_face_pixels"] = self.min_face_pixels
        doc["resend_after"] = format_duration(self.resend_after)
        if self.ask_network:
            doc["ask_network"] = True
        return doc

    def to_public_dict(self) -> dict[str, Any]:
        """What may be shown or logged: the same with the URL's password replaced by ``***``."""
        return {**self.to_dict(), "url": self.safe_url}

    @classmethod
    def from_dict(cls, data: Any, where: str = "cameras") -> CameraSettings:
        f = Fields(data, where)
        camera_id = f.text("id", max_len=63, pattern=NODE_ID_RE)
        where = f"cameras[{camera_id}]"
        f = Fields({k: v for k, v in data.items() if k != "id"}, where)
        site = f.text("site", max_len=63, pattern=NODE_ID_RE)
        url = f.text("url", max_len=MAX_CAMERA_URL)
        gate = f.text("gate", max_len=63, pattern=NODE_ID_RE) if f.has("gate") else ""
        if f.has("sample_fps") and isinstance(data.get("sample_fps"), int | float):
            fps = f.number("sample_fps", low=0.2, high=30)
        elif f.has("sample_fps"):
            raise MalformedError(
                f"{where}.sample_fps: expected a number of frames a second, got {data['sample_fps']!r:.40}"
            )
        else:
            fps = cls.sample_fps
        min_face = (
            f.integer("min_face_pixels", low=16, high=1024)
            if f.has("min_face_pixels")
            else cls.min_face_pixels
        )
        resend = (
            parse_duration(f.text("resend_after", max_len=16), field=f"{where}.resend_after")
            if f.has("resend_after")
            else cls.resend_after
        )
        ask_network = f.boolean("ask_network") if f.has("ask_network") else False
        f.finish()
        return cls(
            ask_network=ask_network,
            id=camera_id,
            site=site,
            url=url,
            gate=gate,
            sample_fps=float(fps),
            min_face_pixels=min_face,
            resend_after=resend,
        )


def _camera_url(url: str, where: str) -> None:
    """Refuse an address OpenCV's FFmpeg backend will not be asked to open (only the scheme and
    host are checked: the stream itself is tried by ``watchnet camera test``)."""
    if not url or len(url) > MAX_CAMERA_URL or any(c.isspace() or ord(c) < 32 for c in url):
        raise MalformedError(f"{where}: {redact_url(url)!r:.80} is empty, too long or has spaces")
    if url.startswith("/"):
        return
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower() not in CAMERA_SCHEMES:
        raise MalformedError(
            f"{where}: {redact_url(url)!r:.80} is not an address like rtsp://HOST/PATH, "
            f"http://HOST/PATH (MJPEG) or an absolute file path (schemes: {', '.join(CAMERA_SCHEMES)})"
        )
    if scheme.lower() != "file" and not rest.split("/", 1)[0].rpartition("@")[2]:
        raise MalformedError(f"{where}: {redact_url(url)!r:.80} has no host")


def _cameras(data: Any) -> tuple[CameraSettings, ...]:
    if not isinstance(data, list):
        raise MalformedError(f"cameras: expected [[cameras]] tables, got {type(data).__name__}")
    if len(data) > MAX_CAMERAS:
        raise MalformedError(f"cameras: {len(data)} cameras, at most {MAX_CAMERAS} a node")
    cameras = tuple(CameraSettings.from_dict(x, f"cameras[{i}]") for i, x in enumerate(data))
    ids = [c.id for c in cameras]
    if len(set(ids)) != len(ids):
        raise MalformedError(f"cameras: duplicate id {sorted({i for i in ids if ids.count(i) > 1})}")
    return cameras


MAX_DELIVERY_TARGETS = 16
_ADDRESS_RE = re.compile(r"[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9.-]{1,190}\.[A-Za-z]{2,24}")


def _target_sites(f: Fields, where: str) -> tuple[str, ...]:
    sites = tuple(f.texts("sites", max_items=64, max_len=63, pattern=NODE_ID_RE)) if f.has("sites") else ()
    if len(set(sites)) != len(sites):
        raise MalformedError(f"{where}.sites: a site is listed twice")
    return sites


@dataclass(frozen=True)
class WebhookSettings:
    """Where alerts are POSTed (``[[webhooks]]``): ``url`` (http or https), the HMAC key in
    ``secret_file`` (relative to the node directory, 0600; at least 32 bytes, never in this file),
    and the ``sites`` whose alerts it takes (empty: every site). The body is the alert as
    ``GET /v1/alerts`` lists it (never an embedding or a score, and no face unless
    ``include_crop``: then the camera's face crop the alert still holds, a JPEG in base64url, for
    a security desk that must see who to look for); the headers carry ``X-Watchnet-Timestamp`` and
    ``X-Watchnet-Signature: sha256=HMAC(secret, "<timestamp>.<body>")``."""

    id: str
    url: str
    secret_file: str
    sites: tuple[str, ...] = ()
    include_crop: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "url": self.url,
            "secret_file": self.secret_file,
            **({"sites": list(self.sites)} if self.sites else {}),
            **({"include_crop": True} if self.include_crop else {}),
        }

    @classmethod
    def from_dict(cls, data: Any, where: str) -> WebhookSettings:
        f = Fields(data, where)
        hook_id = f.text("id", max_len=63, pattern=NODE_ID_RE)
        url = f.text("url", max_len=1024, pattern=NOTICE_URL_RE)
        secret_file = f.text("secret_file", max_len=1024)
        sites = _target_sites(f, where)
        include_crop = f.boolean("include_crop") if f.has("include_crop") else False
        f.finish()
        return cls(hook_id, url, secret_file, sites, include_crop)


@dataclass(frozen=True)
class EmailSettings:
    """Who is e-mailed each alert (``[[email]]``, sent through ``[smtp]``): ``to`` (addresses) for
    the ``sites`` given (empty: every site). The message says where and when, the category and
    the band, and links nothing of the face."""

    id: str
    to: tuple[str, ...]
    sites: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "to": list(self.to), **({"sites": list(self.sites)} if self.sites else {})}

    @classmethod
    def from_dict(cls, data: Any, where: str) -> EmailSettings:
        f = Fields(data, where)
        mail_id = f.text("id", max_len=63, pattern=NODE_ID_RE)
        to = tuple(f.texts("to", max_items=32, max_len=254, pattern=_ADDRESS_RE))
        if not to:
            raise MalformedError(f"{where}.to: no address")
        sites = _target_sites(f, where)
        f.finish()
        return cls(mail_id, to, sites)


@dataclass(frozen=True)
class SmtpSettings:
    """The mail server alert e-mails go through (``[smtp]``): ``host``, ``port`` (default 587),
    ``sender``, ``starttls`` (default true), and ``username`` with the password in
    ``password_file`` (relative to the node directory) when the server wants a login."""

    host: str
    sender: str
    port: int = 587
    starttls: bool = True
    username: str | None = None
    password_file: str | None = None

    def to_dict(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "host": self.host,
            "port": self.port,
            "sender": self.sender,
            "starttls": self.starttls,
        }
        if self.username:
            doc["username"] = self.username
        if self.password_file:
            doc["password_file"] = self.password_file
        return doc

    @classmethod
    def from_dict(cls, data: Any) -> SmtpSettings:
        f = Fields(data, "smtp")
        host = f.text("host", max_len=255)
        sender = f.text("sender", max_len=254, pattern=_ADDRESS_RE)
        port = f.integer("port", low=1, high=65535) if f.has("port") else cls.port
        starttls = f.boolean("starttls") if f.has("starttls") else cls.starttls
        username = f.text("username", max_len=254) if f.has("username") else None
        password_file = f.text("password_file", max_len=1024) if f.has("password_file") else None
        f.finish()
        if (username is None) != (password_file is None):
            raise MalformedError("smtp: give both username and password_file, or neither")
        return cls(host, sender, port, starttls, username, password_file)


def _targets(f: Fields) -> tuple[tuple[WebhookSettings, ...], tuple[EmailSettings, ...], SmtpSettings | None]:
    hooks = (
        tuple(
            WebhookSettings.from_dict(x, f"webhooks[{i}]")
            for i, x in enumerate(f.array("webhooks", max_items=MAX_DELIVERY_TARGETS))
        )
        if f.has("webhooks")
        else ()
    )
    mails = (
        tuple(
            EmailSettings.from_dict(x, f"email[{i}]")
            for i, x in enumerate(f.array("email", max_items=MAX_DELIVERY_TARGETS))
        )
        if f.has("email")
        else ()
    )
    smtp = SmtpSettings.from_dict(f.obj("smtp")) if f.has("smtp") else None
    ids = [h.id for h in hooks] + [m.id for m in mails]
    if len(set(ids)) != len(ids):
        raise MalformedError(
            f"webhooks and email: duplicate id {sorted({i for i in ids if ids.count(i) > 1})}"
        )
    if mails and smtp is None:
        raise MalformedError("email: alert e-mails need an [smtp] server")
    return hooks, mails, smtp


@dataclass(frozen=True)
class NodeConfig:
    """Where the node keeps things, whom it trusts, and how it is reached."""

    directory: Path
    node_id: str
    display_name: str = ""
    host: str = "127.0.0.1"
    port: int = 8470
    database_url: str | None = None
    signing_key_file: str = "keys/signing.key"
    encryption_key_file: str = "keys/encryption.key"
    data_key_file: str = "keys/data.key"
    record_keys_dir: str = "keys/records"
    """The key store: one file per person's record, each sealed under the data key (ADR 0003)."""
    root_keyids: tuple[str, ...] = ()
    root_threshold: int | None = None
    """How many of the pinned root keys must sign the first manifest (``governance.root_threshold``).

    ``watchnet init`` always writes it; a config written before it existed has none, and then
    ``pinned_root_threshold`` is 2 (1 when a single key is pinned), see docs/threat-model.md.
    """
    manifest_url: str | None = None
    retention_sweep: timedelta = timedelta(seconds=60)
    telemetry_exporter: str = "none"
    otlp_endpoint: str | None = None
    limits: Limits = field(default_factory=Limits)
    federation: Federation = field(default_factory=Federation)
    notice: NoticeSettings = field(default_factory=NoticeSettings)
    console: ConsoleSettings = field(default_factory=ConsoleSettings)
    security: SecuritySettings = field(default_factory=SecuritySettings)
    connections: Connections = field(default_factory=Connections)
    server: Server = field(default_factory=Server)
    health: HealthSettings = field(default_factory=HealthSettings)
    storage: StorageSettings = field(default_factory=StorageSettings)
    alerts: AlertSettings = field(default_factory=AlertSettings)
    cameras: tuple[CameraSettings, ...] = ()
    """The store's cameras (``[[cameras]]``), read by ``watchnet camera run``."""
    webhooks: tuple[WebhookSettings, ...] = ()
    email: tuple[EmailSettings, ...] = ()
    smtp: SmtpSettings | None = None

    def camera(self, camera_id: str) -> CameraSettings:
        """The camera named ``camera_id``, or a ``ConfigurationError`` naming the ones there are."""
        for camera in self.cameras:
            if camera.id == camera_id:
                return camera
        known = ", ".join(c.id for c in self.cameras) or "none"
        raise ConfigurationError(
            f"no camera {camera_id!r} in {self.directory / CONFIG_FILE} (cameras: {known})"
        )

    @property
    def pinned_root_threshold(self) -> int:
        """``root_threshold``, or for a config that lacks it 2 (1 when a single root key is pinned)."""
        if self.root_threshold is not None:
            return self.root_threshold
        return min(2, len(self.root_keyids))

    @property
    def effective_database_url(self) -> str:
        """``WATCHNET_DATABASE_URL`` overrides the file; the default is SQLite in the node directory."""
        env = os.environ.get("WATCHNET_DATABASE_URL")
        if env:
            return env
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.directory / 'watchnet.db').resolve()}"

    def path(self, relative: str) -> Path:
        p = Path(relative)
        return p if p.is_absolute() else self.directory / p

    def data_key_from_env(self) -> DataKey | None:
        text = os.environ.get("WATCHNET_DATA_KEY")
        if not text:
            return None
        try:
            return DataKey(b64url_decode(text.strip(), field="WATCHNET_DATA_KEY", length=32))
        except MalformedError as e:
            raise ConfigurationError(f"WATCHNET_DATA_KEY: {e}") from e

    def to_toml(self) -> str:
        doc: dict[str, Any] = {
            "node_id": self.node_id,
            "display_name": self.display_name,
            "listen": {"host": self.host, "port": self.port},
            "keys": {
                "signing": self.signing_key_file,
                "encryption": self.encryption_key_file,
                "data": self.data_key_file,
                "records": self.record_keys_dir,
            },
            "governance": {
                "root_keyids": list(self.root_keyids),
                **({"root_threshold": self.root_threshold} if self.root_threshold is not None else {}),
            },
            "retention": {"sweep_interval": format_duration(self.retention_sweep)},
            "telemetry": {"exporter": self.telemetry_exporter},
            "limits": self.limits.to_dict(),
            "federation": self.federation.to_dict(),
            "console": self.console.to_dict(),
            "connections": self.connections.to_dict(),
            "health": self.health.to_dict(),
            "storage": self.storage.to_dict(),
            "alerts": self.alerts.to_dict(),
        }
        doc["security"] = self.security.to_dict()
        if self.database_url:
            doc["database"] = {"url": self.database_url}
        if self.manifest_url:
            doc["governance"]["manifest_url"] = self.manifest_url
        if self.otlp_endpoint:
            doc["telemetry"]["otlp_endpoint"] = self.otlp_endpoint
        notice = self.notice.to_dict()
        if notice:
            doc["notice"] = notice
        if self.server.to_dict():
            doc["server"] = self.server.to_dict()
        if self.cameras:
            doc["cameras"] = [c.to_dict() for c in self.cameras]
        if self.webhooks:
            doc["webhooks"] = [w.to_dict() for w in self.webhooks]
        if self.email:
            doc["email"] = [m.to_dict() for m in self.email]
        if self.smtp is not None:
            doc["smtp"] = self.smtp.to_dict()
        return tomli_w.dumps(doc)

    @classmethod
    def from_toml(cls, text: str, directory: Path) -> NodeConfig:
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as e:
            raise ConfigurationError(f"{directory / CONFIG_FILE}: not valid TOML: {e}") from e
        try:
            return cls._from_dict(data, directory)
        except MalformedError as e:
            raise ConfigurationError(f"{directory / CONFIG_FILE}: {e}") from e

    @classmethod
    def _from_dict(cls, data: Any, directory: Path) -> NodeConfig:
        f = Fields(data, "config")
        node_id = f.text("node_id", max_len=63, pattern=NODE_ID_RE)
        display_name = f.text("display_name", max_len=200) if f.has("display_name") else ""
        listen = Fields(f.obj("listen") if f.has("listen") else {}, "listen")
        host = listen.text("host", max_len=255) if listen.has("host") else cls.host
        port = listen.integer("port", low=1, high=65535) if listen.has("port") else cls.port
        keys = Fields(f.obj("keys") if f.has("keys") else {}, "keys")
        database = Fields(f.obj("database") if f.has("database") else {}, "database")
        governance = Fields(f.obj("governance") if f.has("governance") else {}, "governance")
        retention = Fields(f.obj("retention") if f.has("retention") else {}, "retention")
        telemetry = Fields(f.obj("telemetry") if f.has("telemetry") else {}, "telemetry")
        exporter = telemetry.text("exporter", max_len=16) if telemetry.has("exporter") else "none"
        if exporter not in EXPORTERS:
            raise MalformedError(f"telemetry.exporter: {exporter!r} is not one of {', '.join(EXPORTERS)}")
        config = cls(
            directory=directory,
            node_id=node_id,
            display_name=display_name,
            host=host,
            port=port,
            database_url=database.text("url", max_len=1024) if database.has("url") else None,
            signing_key_file=keys.text("signing", max_len=1024)
            if keys.has("signing")
            else cls.signing_key_file,
            encryption_key_file=keys.text("encryption", max_len=1024)
            if keys.has("encryption")
            else cls.encryption_key_file,
            data_key_file=keys.text("data", max_len=1024) if keys.has("data") else cls.data_key_file,
            record_keys_dir=keys.text("records", max_len=1024)
            if keys.has("records")
            else cls.record_keys_dir,
            root_keyids=tuple(governance.texts("root_keyids", max_items=16, max_len=64, pattern=_KEYID_RE))
            if governance.has("root_keyids")
            else (),
            root_threshold=governance.integer("root_threshold", low=1, high=16)
            if governance.has("root_threshold")
            else None,
            manifest_url=governance.text("manifest_url", max_len=1024)
            if governance.has("manifest_url")
            else None,
            retention_sweep=parse_duration(
                retention.text("sweep_interval", max_len=16), field="retention.sweep_interval"
            )
            if retention.has("sweep_interval")
            else cls.retention_sweep,
            telemetry_exporter=exporter,
            otlp_endpoint=telemetry.text("otlp_endpoint", max_len=1024)
            if telemetry.has("otlp_endpoint")
            else None,
            limits=Limits.from_dict(f.obj("limits")) if f.has("limits") else Limits(),
            federation=Federation.from_dict(f.obj("federation")) if f.has("federation") else Federation(),
            notice=NoticeSettings.from_dict(f.obj("notice")) if f.has("notice") else NoticeSettings(),
            console=ConsoleSettings.from_dict(f.obj("console")) if f.has("console") else ConsoleSettings(),
            security=SecuritySettings.from_dict(f.obj("security"))
            if f.has("security")
            else SecuritySettings(),
            connections=Connections.from_dict(f.obj("connections"))
            if f.has("connections")
            else Connections(),
            server=Server.from_dict(f.obj("server")) if f.has("server") else Server(),
            health=HealthSettings.from_dict(f.obj("health")) if f.has("health") else HealthSettings(),
            storage=StorageSettings.from_dict(f.obj("storage")) if f.has("storage") else StorageSettings(),
            alerts=AlertSettings.from_dict(f.obj("alerts")) if f.has("alerts") else AlertSettings(),
            cameras=_cameras(f.array("cameras", max_items=MAX_CAMERAS + 1)) if f.has("cameras") else (),
        )
        hooks, mails, smtp = _targets(f)
        config = replace(config, webhooks=hooks, email=mails, smtp=smtp)
        for section in (f, listen, keys, database, governance, retention, telemetry):
            if section.rest():
                raise MalformedError(f"unknown settings {sorted(section.rest())}")
        if config.root_threshold is not None and config.root_threshold > len(config.root_keyids):
            raise MalformedError(
                f"governance.root_threshold: {config.root_threshold} is more than the "
                f"{len(config.root_keyids)} pinned root key ids"
            )
        if config.telemetry_exporter == "otlp" and not config.otlp_endpoint:
            raise MalformedError("telemetry.exporter is 'otlp' but telemetry.otlp_endpoint is not set")
        return config

    @classmethod
    def load(cls, directory: Path) -> NodeConfig:
        path = Path(directory) / CONFIG_FILE
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError as e:
            raise ConfigurationError(
                f"{path} not found; create a node with 'watchnet init {directory}'"
            ) from e
        except (NotADirectoryError, IsADirectoryError) as e:
            raise ConfigurationError(
                f"{directory} is not a node directory; give the directory 'watchnet init' created"
            ) from e
        return cls.from_toml(text, Path(directory))
