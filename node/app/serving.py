"""Serving the node's application with the connection hygiene of a public server.

aiohttp's defaults suit a service behind a proxy: connections idle for an hour, and no limit per
client. A node faces members and the public directly, so ``watchnet serve`` runs the application
with ``[connections]``: ``idle_timeout`` closes a connection that has not sent a complete request
head within that time of opening or of its last answer (a client trickling header bytes is closed
as idle), the access middleware bounds each body's reading by ``body_timeout``, and
``ConnectionGuard`` caps the connections one address holds at once, answering the one past the cap
``503`` and closing it before reading anything.

With ``[server] tls_cert`` and ``tls_key`` the node speaks TLS itself (1.2 or newer, the standard
library's server defaults); a missing file, a key that is not a key or does not match the
certificate is refused before anything starts, with the path and what is wrong (exit 2).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import logging
import signal
import ssl
import sys
import time
from collections.abc import Callable
from typing import Any

from aiohttp import web

from node.config import Connections, NodeConfig
from node.http.api import CONTEXT
from protocol.errors import ConfigurationError

__all__ = ["ConnectionGuard", "serve", "server_ssl_context"]

LOG = logging.getLogger("watchnet.node")

_OVER_CAP_BODY = b'{"error":"too_many_connections","message":"too many open connections from this address"}'
OVER_CAP = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nConnection: close\r\n"
    b"Retry-After: 5\r\nContent-Length: %d\r\n\r\n%s" % (len(_OVER_CAP_BODY), _OVER_CAP_BODY)
)


LINGER_SECONDS = 1.0
"""How long a refused connection stays open, half-closed, so its client reads the 503."""


class _Refusal(asyncio.Protocol):
    """A connection past the cap: answered 503 and half-closed; what the client sends is dropped,
    and the connection closes after ``LINGER_SECONDS`` (closing at once with unread bytes would
    reset it and lose the answer). The request handler never sees a byte of it."""

    def __init__(self, handler: Any, transport: asyncio.Transport) -> None:
        self._handler = handler
        with contextlib.suppress(Exception):
            transport.write(OVER_CAP)
            transport.write_eof()
        self._timer = asyncio.get_running_loop().call_later(LINGER_SECONDS, transport.close)

    def data_received(self, data: bytes) -> None:
        pass

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: BaseException | None) -> None:
        self._timer.cancel()
        self._handler.connection_lost(exc)


class ConnectionGuard:
    """Open connections per source address, with a cap; the table holds only addresses with one open."""

    def __init__(self, per_source: int) -> None:
        self.per_source = per_source
        self.open: dict[str, int] = {}
        self.refused = 0
        self._logged_at = 0.0
        self._refused_logged = 0

    def admit(self, source: str) -> bool:
        held = self.open.get(source, 0)
        if held >= self.per_source:
            self.refused += 1
            self._log_refusals()
            return False
        self.open[source] = held + 1
        return True

    def release(self, source: str) -> None:
        held = self.open.get(source, 0) - 1
        if held > 0:
            self.open[source] = held
        else:
            self.open.pop(source, None)

    def _log_refusals(self) -> None:
        """At most one line a minute, with the count since the last: a flood cannot flood the log."""
        now = time.monotonic()
        if now - self._logged_at >= 60.0:
            LOG.warning(
                "refused %d connection(s) past the cap of %d per address",
                self.refused - self._refused_logged,
                self.per_source,
            )
            self._logged_at, self._refused_logged = now, self.refused

    def install(self, server: web.Server) -> None:
        """Count the connections ``server`` makes and loses; one past the cap is answered and closed."""
        made: Callable[..., None] = server.connection_made
        lost: Callable[..., None] = server.connection_lost
        sources: dict[object, str] = {}

        def connection_made(handler: Any, transport: asyncio.Transport) -> None:
            peer = transport.get_extra_info("peername")
            source = str(peer[0]) if isinstance(peer, tuple) and peer else "unknown"
            if not self.admit(source):
                transport.set_protocol(_Refusal(handler, transport))
                return
            sources[handler] = source
            made(handler, transport)

        def connection_lost(handler: Any, exc: BaseException | None) -> None:
            source = sources.pop(handler, None)
            if source is not None:
                self.release(source)
            lost(handler, exc)

        server.connection_made = connection_made  # type: ignore[method-assign]
        server.connection_lost = connection_lost  # type: ignore[method-assign,assignment]


def _no_password() -> bytes:
    """An encrypted key is refused (a node restarts unattended), never prompted for."""
    return b""


def server_ssl_context(config: NodeConfig) -> ssl.SSLContext | None:
    """The TLS context of ``[server] tls_cert`` / ``tls_key`` (``None`` when TLS is off), with
    TLS 1.2 as the minimum; a file that is missing or wrong raises ``ConfigurationError``."""
    settings = config.server
    if settings.tls_cert is None or settings.tls_key is None:
        return None
    cert, key = config.path(settings.tls_cert), config.path(settings.tls_key)
    for name, path in (("tls_cert", cert), ("tls_key", key)):
        if not path.is_file():
            raise ConfigurationError(
                f"server.{name}: {path} not found (a PEM file; relative paths are under {config.directory})"
            )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(cert, key, password=_no_password)
    except PermissionError as e:
        raise ConfigurationError(
            f"server.tls_cert / tls_key: cannot read {e.filename or cert}: {e.strerror}"
        ) from e
    except ssl.SSLError as e:
        if "KEY_VALUES_MISMATCH" in str(e) or "key values mismatch" in str(e):
            problem = f"server.tls_key: {key} is not the key of the certificate {cert}"
        else:
            problem = (
                f"server.tls_cert / tls_key: {cert} is not a PEM certificate (chain) "
                f"or {key} is not an unencrypted PEM private key"
            )
        raise ConfigurationError(f"{problem} ({e.reason or e})") from e
    return context


async def _serve(
    app: web.Application,
    host: str,
    port: int,
    connections: Connections,
    tls: ssl.SSLContext | None = None,
) -> None:
    runner = web.AppRunner(
        app,
        handle_signals=False,
        access_log=None,
        keepalive_timeout=connections.idle_timeout.total_seconds(),
    )
    await runner.setup()
    assert runner.server is not None
    ConnectionGuard(connections.per_source).install(runner.server)
    site = web.TCPSite(runner, host, port, ssl_context=tls)
    await site.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


M_MMAP_THRESHOLD = -3
LARGE_ALLOCATION = 1 << 20


def return_large_buffers_to_the_system() -> bool:
    """Make glibc map every allocation of 1 MiB and more on its own and unmap it when freed.

    By default glibc raises that threshold after the first large free, so later request bodies
    come from the heap and their pages stay resident after the request: 8 MiB bodies read one
    after another left about 30 MB behind. Fixing the threshold returns them. No-op off glibc.
    """
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return bool(libc.mallopt(M_MMAP_THRESHOLD, LARGE_ALLOCATION))
    except (OSError, AttributeError):
        return False


def serve(app: web.Application, host: str, port: int, connections: Connections) -> None:
    """Run ``app`` on ``host:port`` until SIGINT or SIGTERM, then shut it down cleanly; over TLS
    when the node's ``[server]`` settings say so (a bad certificate, key or CA file: exit 2)."""
    context = app.get(CONTEXT)
    tls = None
    if context is not None:
        try:
            tls = server_ssl_context(context.config)
            context.config.server.client_ssl(context.config.directory)
        except ConfigurationError as e:
            print(f"watchnet serve: refusing to start: {e}", file=sys.stderr, flush=True)
            raise SystemExit(2) from None
        if tls is not None:
            LOG.info("serving TLS on %s:%d with %s", host, port, context.config.server.tls_cert)
    return_large_buffers_to_the_system()
    asyncio.run(_serve(app, host, port, connections, tls))
