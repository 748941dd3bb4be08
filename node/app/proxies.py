"""Who the client is when the node sits behind a proxy, believed only from proxies we trust.

Behind haproxy every connection comes from haproxy, so rate limits, sign-in throttles and the audit
log would all name one address, and the console could not tell that the browser used TLS. A proxy
says who it served in ``Forwarded`` (RFC 7239) or ``X-Forwarded-For`` / ``X-Forwarded-Proto``; any
client can send the same headers, so they are believed only when the TCP peer is listed in
``[server] trusted_proxies``. Then the client is the right-most address of the chain that is not a
trusted proxy (each proxy appends the address it was connected from, so everything left of the
first untrusted address was written by the client itself and proves nothing), and the scheme is
the one the proxy reports for that hop. ``Forwarded`` wins when both kinds are present.

A forwarded header from a trusted proxy that does not parse is ignored (the TCP peer stays the
client), counted, and logged at most once a minute with the count. ``TrustedProxies`` runs before
the access middleware and hands on a clone of the request whose ``remote`` and ``scheme`` (hence
``secure``) are the real client's, and so are those of every later clone.
"""

from __future__ import annotations

import ipaddress
import logging
import re
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from multidict import CIMultiDictProxy

__all__ = [
    "ForwardedClient",
    "Hop",
    "MalformedForwarded",
    "TrustedProxies",
    "forwarded_client",
    "parse_forwarded",
    "parse_x_forwarded_for",
]

LOG = logging.getLogger("watchnet.node")

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address
SCHEMES = ("http", "https")


class MalformedForwarded(ValueError):
    """A forwarded header that does not follow its grammar (RFC 7239, or a list of addresses)."""


@dataclass(frozen=True)
class ForwardedClient:
    """The client a trusted proxy reports: an address (normalised), or a name such as ``unknown``,
    and the scheme of the client's connection when the proxy said it."""

    remote: str
    scheme: str | None


@dataclass(frozen=True)
class Hop:
    """One hop of a forwarded chain: whom a proxy was connected by, and over which scheme."""

    node: Address | str
    """An address, or an RFC 7239 name (``unknown``, an obfuscated ``_hidden``)."""
    proto: str | None


_TCHAR = r"[!#$%&'*+.^_`|~0-9A-Za-z-]"
_PAIR = re.compile(
    rf'[ \t]*({_TCHAR}+)=({_TCHAR}+|"(?:[\t \x21\x23-\x5b\x5d-\x7e\x80-\uffff]|\\[\t \x21-\x7e\x80-\uffff])*")[ \t]*'
)
_QUOTED_PAIR = re.compile(r"\\(.)")
_OBFUSCATED = re.compile(r"_[A-Za-z0-9._-]+")
_PORT = re.compile(r"[0-9]{1,5}|_[A-Za-z0-9._-]+")


def _address(text: str) -> Address:
    """An IP address, IPv4-mapped IPv6 folded to IPv4, so one client has one spelling."""
    address = ipaddress.ip_address(text)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _node(text: str, *, names: bool) -> Address | str:
    """``192.0.2.1``, ``192.0.2.1:80``, ``[2001:db8::1]``, ``[2001:db8::1]:80`` (and with ``names``,
    RFC 7239's ``unknown`` and obfuscated ``_name``, with or without a port)."""
    host, port = text, None
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise MalformedForwarded(f"unclosed '[' in {text!r:.80}")
        host, rest = text[1:end], text[end + 1 :]
        if rest:
            if not rest.startswith(":"):
                raise MalformedForwarded(f"unexpected {rest!r:.40} after ']' in {text!r:.80}")
            port = rest[1:]
        try:
            address = _address(host)
        except ValueError as e:
            raise MalformedForwarded(f"{host!r:.80} is not an IPv6 address") from e
        if not isinstance(address, ipaddress.IPv6Address) and not host.lower().startswith("::ffff:"):
            raise MalformedForwarded(f"{host!r:.80} in brackets is not an IPv6 address")
    else:
        if text.count(":") == 1:
            host, port = text.split(":")
        if names and (host == "unknown" or _OBFUSCATED.fullmatch(host)):
            address = None
        else:
            try:
                address = _address(host)
            except ValueError as e:
                raise MalformedForwarded(f"{text!r:.80} is not an address") from e
            if port is not None and not isinstance(address, ipaddress.IPv4Address):
                raise MalformedForwarded(f"{text!r:.80}: an IPv6 address with a port needs brackets")
    if port is not None and not _PORT.fullmatch(port):
        raise MalformedForwarded(f"bad port {port!r:.40} in {text!r:.80}")
    return host if address is None else address


def _scheme(text: str) -> str:
    scheme = text.lower()
    if scheme not in SCHEMES:
        raise MalformedForwarded(f"proto {text!r:.40} is not http or https")
    return scheme


def _skip_space(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in " \t":
        pos += 1
    return pos


def _unquote(value: str) -> str:
    return _QUOTED_PAIR.sub(r"\1", value[1:-1]) if value.startswith('"') else value


def parse_forwarded(values: Sequence[str]) -> list[Hop]:
    """The elements of ``Forwarded`` header lines (RFC 7239 section 4), left to right.

    An element without ``for`` names its hop ``unknown``; ``by`` and ``host`` are read past.
    """
    text = ",".join(values)
    hops: list[Hop] = []
    pairs: dict[str, str] = {}
    pos = _skip_space(text, 0)
    seen_any = False

    def close() -> None:
        if pairs:
            proto = pairs.get("proto")
            node = _node(pairs["for"], names=True) if "for" in pairs else "unknown"
            hops.append(Hop(node, None if proto is None else _scheme(proto)))
        pairs.clear()

    while pos < len(text):
        if text[pos] in ",;":
            if text[pos] == ",":
                close()
            pos = _skip_space(text, pos + 1)
            continue
        match = _PAIR.match(text, pos)
        if match is None:
            raise MalformedForwarded(f"cannot parse Forwarded at character {pos}: {text[pos : pos + 40]!r}")
        name, value = match.group(1).lower(), _unquote(match.group(2))
        if name in pairs:
            raise MalformedForwarded(f"parameter {name!r:.40} twice in one Forwarded element")
        pairs[name] = value
        seen_any = True
        pos = match.end()
        if pos < len(text) and text[pos] not in ",;":
            raise MalformedForwarded(
                f"expected ',' or ';' at character {pos} of Forwarded, got {text[pos]!r}"
            )
    close()
    if not seen_any:
        raise MalformedForwarded("empty Forwarded header")
    return hops


def parse_x_forwarded_for(values: Sequence[str]) -> list[Address]:
    """The addresses of ``X-Forwarded-For`` header lines, left to right (a port is allowed and dropped)."""
    items = [item.strip(" \t") for value in values for item in value.split(",")]
    if not items or any(not item for item in items):
        raise MalformedForwarded(f"empty item in X-Forwarded-For {','.join(values)!r:.80}")
    addresses = []
    for item in items:
        node = _node(item, names=False)
        assert not isinstance(node, str)
        addresses.append(node)
    return addresses


def _trusted(node: Address | str, networks: Sequence[Network]) -> bool:
    return not isinstance(node, str) and any(node in network for network in networks)


def forwarded_client(
    peer: str | None, headers: CIMultiDictProxy[str], networks: Sequence[Network]
) -> ForwardedClient | None:
    """The real client of a request from ``peer``, or ``None`` when the headers are not to be
    believed (``peer`` is not a trusted proxy) or say nothing. Raises ``MalformedForwarded`` when a
    trusted proxy's header does not parse."""
    if not networks or not peer:
        return None
    try:
        peer_address = _address(peer)
    except ValueError:
        return None
    if not _trusted(peer_address, networks):
        return None
    if "Forwarded" in headers:
        hops = parse_forwarded(headers.getall("Forwarded"))
    elif "X-Forwarded-For" in headers:
        addresses = parse_x_forwarded_for(headers.getall("X-Forwarded-For"))
        protos = (
            [_scheme(p.strip(" \t")) for v in headers.getall("X-Forwarded-Proto") for p in v.split(",")]
            if "X-Forwarded-Proto" in headers
            else []
        )
        # Each proxy appends the scheme of the connection it took as it appends the address, so
        # the two lists align from the right; a shorter list was written by the outer proxies alone.
        n, k = len(addresses), len(protos)
        hops = [Hop(a, protos[max(0, k - (n - i))] if protos else None) for i, a in enumerate(addresses)]
    else:
        return None
    chosen = hops[0]
    for hop in reversed(hops):
        if not _trusted(hop.node, networks):
            chosen = hop
            break
    return ForwardedClient(str(chosen.node), chosen.proto)


class _ForwardedRequest(web.Request):
    """A request whose client and scheme a trusted proxy reported. aiohttp's ``clone`` starts from
    the transport again unless told otherwise, and the access middleware clones each request (for
    its body limit), so this class's clones carry the reported client and scheme on."""

    __slots__ = ()

    def clone(self, **changes: Any) -> web.Request:
        changes.setdefault("remote", self.remote)
        changes.setdefault("scheme", self.scheme)
        return super().clone(**changes)


class TrustedProxies:
    """The middleware: requests from ``networks`` are handed on as their real client's."""

    __middleware_version__ = 1

    def __init__(self, networks: Iterable[Network]) -> None:
        self.networks = tuple(networks)
        self.malformed = 0
        self._logged_at = float("-inf")
        self._malformed_logged = 0

    async def __call__(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        if not self.networks:
            return await handler(request)
        try:
            client = forwarded_client(request.remote, request.headers, self.networks)
        except MalformedForwarded as e:
            self._count_malformed(request.remote, e)
            client = None
        if client is None:
            return await handler(request)
        forwarded = request.clone(remote=client.remote, scheme=client.scheme or request.scheme)
        forwarded.__class__ = _ForwardedRequest  # same layout (no slots of its own); see its docstring
        return await handler(forwarded)

    def _count_malformed(self, peer: str | None, error: MalformedForwarded) -> None:
        """Counted each time, logged at most once a minute with the count since the last line."""
        self.malformed += 1
        now = time.monotonic()
        if now - self._logged_at >= 60.0:
            LOG.warning(
                "ignored %d malformed forwarded header(s) from trusted proxies (latest from %s: %s)",
                self.malformed - self._malformed_logged,
                peer,
                error,
            )
            self._logged_at, self._malformed_logged = now, self.malformed
