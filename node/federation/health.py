"""One health per peer, derived from all its signals by one pure function, and endpoint warnings.

The network page used to show a peer's stored sync status ("ok" until a fork) beside its failure
count, its last error and its circuit breaker, each on its own: a peer could be a green "OK" next
to a red count of failures and an error. ``peer_health`` reads every signal at once and returns
the one status the page shows, in this order of precedence:

1. ``removed`` / ``suspended``: the manifest says so (nothing is exchanged with such a member);
2. ``forked``: its log contradicted a head we verified (syncing it stopped);
3. ``unreachable``: the circuit breaker is open (it failed several exchanges in a row);
4. ``failing``: ``FAILING_AFTER`` or more syncs failed in a row, or some failed and none ever
   worked;
5. ``degraded``: fewer syncs failed since the last one that worked;
6. ``never-synced``: nothing failed, nothing synced yet;
7. ``ok``.

A stored last error is cleared by the next successful sync, so an error with failures counted
is newer than the last success (``current``); one without (an older release's leftover) is
``older``, and the page marks it so. ``endpoint_warning`` flags a member endpoint that is not
https: peer messages are sealed and signed end to end, but without TLS anyone on the path sees
which members talk, when and how much.
"""

from __future__ import annotations

import enum
import ipaddress
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlsplit

__all__ = ["FAILING_AFTER", "PeerHealth", "PeerSignals", "endpoint_warning", "error_standing", "peer_health"]

FAILING_AFTER = 3
"""Syncs failed in a row from which a peer is ``failing`` rather than ``degraded``."""


class PeerHealth(enum.StrEnum):
    OK = "ok"
    DEGRADED = "degraded"
    FAILING = "failing"
    UNREACHABLE = "unreachable"
    FORKED = "forked"
    NEVER_SYNCED = "never-synced"
    SUSPENDED = "suspended"
    REMOVED = "removed"


@dataclass(frozen=True, kw_only=True)
class PeerSignals:
    """What the node knows of one peer: the manifest's word, the stored sync state, this worker's contact."""

    membership: str
    """``active``, ``suspended`` or ``removed`` (the manifest's member status)."""
    stored_status: str = "never-synced"
    """``peer_state.status``: ``ok``, ``forked``, or ``never-synced`` when there is no row."""
    failures: int = 0
    """Syncs failed in a row (reset by a successful one)."""
    last_sync_at: datetime | None = None
    last_contact: datetime | None = None
    circuit: str = "closed"
    last_error: str = ""


def peer_health(signals: PeerSignals) -> PeerHealth:
    """The one status of a peer, from all its signals (the precedence is in the module's docstring)."""
    if signals.membership == "removed":
        return PeerHealth.REMOVED
    if signals.membership == "suspended":
        return PeerHealth.SUSPENDED
    if signals.stored_status == "forked":
        return PeerHealth.FORKED
    if signals.circuit == "open":
        return PeerHealth.UNREACHABLE
    if signals.failures >= FAILING_AFTER:
        return PeerHealth.FAILING
    if signals.failures > 0:
        never_worked = signals.last_sync_at is None and signals.last_contact is None
        return PeerHealth.FAILING if never_worked else PeerHealth.DEGRADED
    if signals.last_sync_at is None:
        return PeerHealth.NEVER_SYNCED
    return PeerHealth.OK


def error_standing(signals: PeerSignals) -> str | None:
    """``current`` (newer than the last successful sync), ``older``, or ``None`` (no error)."""
    if not signals.last_error:
        return None
    return "current" if signals.failures > 0 or signals.stored_status == "forked" else "older"


def endpoint_warning(endpoint: str) -> str | None:
    """``http`` (plain http), ``http-loopback`` (plain http to this machine, as in the local demo),
    ``not-http`` (neither http nor https), or ``None`` for https."""
    parts = urlsplit(endpoint)
    if parts.scheme == "https":
        return None
    if parts.scheme != "http":
        return "not-http"
    host = parts.hostname or ""
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    return "http-loopback" if loopback else "http"
