"""Alert delivery: each new alert POSTed to the signed webhooks and e-mailed to the addresses of
its site, retried with backoff, never in the way of matching.

A leader duty (``delivery``) wakes every ``PASS_SECONDS``: it gives every alert raised in the last
``LOOKBACK`` that a target of its site (``[[webhooks]]``, ``[[email]]``, each with ``sites``, empty
meaning every site) does not hold yet an ``alert_delivery`` row, then sends the rows that are due.
A row is one alert owed to one target, so a restart, a second leader for a moment or a target that
is down loses and doubles nothing: a target that fails (an error status, no answer within
``SEND_TIMEOUT``, a refused connection) is tried again after 2 s, 4 s ... at most ``RETRY_MAX``, and
gives up after a day (``node.records.deliveries``) (the alert stays on the operator's page). Nothing here touches the
match path: alerts are read after they commit.

What is sent is the alert as ``GET /v1/alerts`` lists it (owner, entry id and version, category,
band, site, camera, gate, status, time): never an embedding or a score, and never a face unless
the group's config asks for it on that webhook (``include_crop = true``): then ``crop_jpeg`` is
the camera's face crop the alert still holds (base64url JPEG, read from the vault at sending;
``null`` once erased or when the alert was raised from embeddings sent without crops). E-mail never carries a
face. A webhook's body is signed: ``X-Watchnet-Timestamp`` (Unix seconds) and ``X-Watchnet-Signature: sha256=<hex
HMAC-SHA256(secret, "<timestamp>.<body>")>``, with ``X-Watchnet-Delivery`` (alert id and target)
for the receiver to drop a repeat. A failure is logged (target, error code, attempt) and counted
in the duty's health; the last error of each target is kept on its rows.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import smtplib
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from typing import Any

import aiohttp
from sqlalchemy.engine import Engine

from node.app.leader import DutyLoop, DutyState
from node.config import EmailSettings, NodeConfig, SmtpSettings, WebhookSettings
from node.records.deliveries import due, enqueue, prune, settle
from node.storage.models import Alert, AlertDelivery
from protocol.canonical import b64url_encode
from protocol.errors import ConfigurationError
from protocol.fields import format_time

__all__ = ["PASS_SECONDS", "DeliveryTargets", "delivery_duty", "signature"]

LOG = logging.getLogger("watchnet.delivery")

PASS_SECONDS = 1.0
SEND_TIMEOUT = 10.0
MIN_SECRET_BYTES = 32


def signature(secret: bytes, timestamp: str, body: bytes) -> str:
    """``sha256=`` and the hex HMAC-SHA256 of ``"<timestamp>.<body>"`` under ``secret``."""
    return "sha256=" + hmac.new(secret, timestamp.encode("ascii") + b"." + body, hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class _Webhook:
    settings: WebhookSettings
    secret: bytes


@dataclass(frozen=True)
class DeliveryTargets:
    """The node's webhooks (with their secrets, read from their files) and e-mail targets."""

    webhooks: tuple[_Webhook, ...]
    email: tuple[EmailSettings, ...]
    smtp: SmtpSettings | None
    smtp_password: str | None

    @property
    def empty(self) -> bool:
        return not self.webhooks and not self.email

    @classmethod
    def load(cls, config: NodeConfig) -> DeliveryTargets:
        hooks = []
        for hook in config.webhooks:
            try:
                secret = config.path(hook.secret_file).read_bytes().strip()
            except OSError as e:
                raise ConfigurationError(
                    f"webhooks[{hook.id}].secret_file: {config.path(hook.secret_file)}: {e.strerror}"
                ) from e
            if len(secret) < MIN_SECRET_BYTES:
                raise ConfigurationError(
                    f"webhooks[{hook.id}].secret_file: {len(secret)} bytes, at least {MIN_SECRET_BYTES} needed"
                )
            hooks.append(_Webhook(hook, secret))
        password = None
        if config.smtp is not None and config.smtp.password_file:
            try:
                password = config.path(config.smtp.password_file).read_text(encoding="utf-8").strip()
            except OSError as e:
                raise ConfigurationError(f"smtp.password_file: {e.strerror}") from e
        return cls(tuple(hooks), config.email, config.smtp, password)


CropOf = Callable[[str], bytes | None]
"""The camera's face crop an alert (by id) still holds, as JPEG; ``None`` when it holds none."""


def alert_body(alert: Alert) -> dict[str, Any]:
    """What a target is told: the alert as staff see it, nothing of the face."""
    return {
        "type": "watchnet-alert",
        "alert_id": alert.id,
        "owner": alert.owner,
        "entry_id": alert.entry_id,
        "version": alert.entry_version,
        "band": alert.band,
        "category": alert.category,
        "site": alert.site,
        "camera": alert.camera,
        "gate": alert.gate,
        "status": alert.status,
        "created_at": format_time(alert.created_at),
    }


async def _post(
    session: aiohttp.ClientSession, hook: _Webhook, alert: Alert, crop_of: CropOf | None
) -> str | None:
    fields = alert_body(alert)
    if hook.settings.include_crop:  # asked for by the group's config, and then signed with the rest
        crop = None if crop_of is None else await asyncio.to_thread(crop_of, alert.id)
        fields["crop_jpeg"] = None if crop is None else b64url_encode(crop)
    body = json.dumps(fields, sort_keys=True, separators=(",", ":")).encode("utf-8")
    del fields
    stamp = str(int(time.time()))
    headers = {
        "Content-Type": "application/json",
        "X-Watchnet-Timestamp": stamp,
        "X-Watchnet-Signature": signature(hook.secret, stamp, body),
        "X-Watchnet-Delivery": f"{alert.id}/{hook.settings.id}",
        "User-Agent": "watchnet-alerts",
    }
    try:
        async with session.post(
            hook.settings.url, data=body, headers=headers, timeout=aiohttp.ClientTimeout(total=SEND_TIMEOUT)
        ) as response:
            await response.read()
            return None if 200 <= response.status < 300 else f"http_{response.status}"
    except TimeoutError:
        return "timeout"
    except aiohttp.ClientError as e:
        return type(e).__name__


def _mail(targets: DeliveryTargets, mail: EmailSettings, alert: Alert, node_id: str) -> str | None:
    smtp = targets.smtp
    assert smtp is not None
    message = EmailMessage()
    message["From"] = smtp.sender
    message["To"] = ", ".join(mail.to)
    where = " / ".join(x for x in (alert.site, alert.camera, alert.gate) if x)
    message["Subject"] = f"[watchnet] 照合アラート / match alert: {where or node_id}"
    fields = alert_body(alert)
    lines = [f"{k}: {v}" for k, v in fields.items() if v not in (None, "")]
    message.set_content(
        "照合アラートが発生しました。コンソールの照合アラート画面で確認してください。\n"
        "A match alert was raised; review it on the console's alerts page.\n\n" + "\n".join(lines) + "\n"
    )
    try:
        with smtplib.SMTP(smtp.host, smtp.port, timeout=SEND_TIMEOUT) as client:
            if smtp.starttls:
                client.starttls(context=ssl.create_default_context())
            if smtp.username and targets.smtp_password is not None:
                client.login(smtp.username, targets.smtp_password)
            client.send_message(message)
    except (OSError, smtplib.SMTPException) as e:
        return type(e).__name__
    return None


def delivery_duty(
    engine: Engine,
    targets: DeliveryTargets,
    clock: Callable[[], datetime],
    node_id: str,
    crop_of: CropOf | None = None,
) -> DutyLoop:
    """The ``delivery`` duty: see the module docstring; ``crop_of`` reads an alert's camera crop
    for the webhooks that include it."""
    hooks = {w.settings.id: w for w in targets.webhooks}
    mails = {m.id: m for m in targets.email}
    routes = {**{h: w.settings.sites for h, w in hooks.items()}, **{m: e.sites for m, e in mails.items()}}

    async def send(session: aiohttp.ClientSession, row: AlertDelivery, alert: Alert | None) -> None:
        if alert is None:  # erased with its entry: nothing left to tell
            error: str | None = None
        elif row.target in hooks:
            error = await _post(session, hooks[row.target], alert, crop_of)
        elif row.target in mails:
            error = await asyncio.to_thread(_mail, targets, mails[row.target], alert, node_id)
        else:
            error = "unknown_target"  # removed from the config: kept, retried until given up
        if error is not None:
            LOG.warning(
                "alert delivery failed; retrying",
                extra={"target": row.target, "error": error, "attempt": row.attempts + 1},
            )
        await asyncio.to_thread(settle, engine, row, clock(), error)

    async def loop(duty: DutyState) -> None:
        async with aiohttp.ClientSession() as session:
            while True:
                now = clock()
                await asyncio.to_thread(enqueue, engine, routes, now)
                owed = await asyncio.to_thread(due, engine, now)
                if owed:
                    await asyncio.gather(*(send(session, row, alert) for row, alert in owed))
                if duty.runs % 600 == 0:
                    await asyncio.to_thread(prune, engine, now)
                duty.ok()
                await asyncio.sleep(PASS_SECONDS)

    return loop
