"""Server-side console sessions: a random id in an HttpOnly cookie, kept in memory by its hash.

Staff sign in once with their password (argon2id, throttled per account and source address: ``StaffAccounts``) and then carry
only a random session id. The node keeps each session under the SHA-256 of that id, so a memory
dump or a log line with a key in it cannot be replayed as a cookie. A session ends at logout,
after ``console.idle_timeout`` without a request, after ``console.session_lifetime`` in all,
and when the node restarts (staff sign in again; nothing of theirs is lost). A session exists
before sign-in too, so that the login form has a CSRF token; signing in replaces it with a new
one (a fixed session id cannot be planted). Every new session first clears the timed-out ones
(with any photo a registrar left being checked); the number of sessions is bounded, and when
full the least recently used anonymous session goes first.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from node.config import ConsoleSettings
from node.records.accounts import AuthenticationFailed, StaffMember

__all__ = ["MAX_SESSIONS", "ConsoleSession", "SessionExpired", "SessionStore"]

MAX_SESSIONS = 10_000
"""Hard limit on sessions held in memory (anonymous ones are evicted first)."""


class SessionExpired(AuthenticationFailed):
    """The session timed out; ``session`` is the one that ended, for the audit log."""

    code = "session_expired"

    def __init__(self, session: ConsoleSession, message: str) -> None:
        self.session = session
        super().__init__(message)


@dataclass
class ConsoleSession:
    """One browser's session: who signed in (``None`` before sign-in), its CSRF token, notices."""

    key: str
    csrf: str
    created_at: datetime
    last_seen: datetime
    staff: StaffMember | None = None
    checked_at: datetime | None = None
    """When the account was last confirmed enabled and its role read (``pages.staff_page``)."""
    notices: list[str] = field(default_factory=list)
    """Message keys shown once on the next page (after a redirect)."""
    preview: Any = None
    """The registrar's photo being checked (``pages_registrar.Preview``), held only here."""


def _key(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


class SessionStore:
    """Sessions by the hash of their id, with idle and absolute timeouts (the clock is passed in)."""

    def __init__(self, settings: ConsoleSettings, *, max_sessions: int = MAX_SESSIONS) -> None:
        self.settings = settings
        self.max_sessions = max_sessions
        self._sessions: dict[str, ConsoleSession] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._sessions)

    def create(self, now: datetime, staff: StaffMember | None = None) -> tuple[str, ConsoleSession]:
        """A new session; returns the id for the cookie (only its hash is kept)."""
        token = secrets.token_urlsafe(32)
        session = ConsoleSession(
            key=_key(token),
            csrf=secrets.token_urlsafe(32),
            created_at=now,
            last_seen=now,
            staff=staff,
            checked_at=now,
        )
        with self._lock:
            self._purge(now)
            while len(self._sessions) >= self.max_sessions:
                oldest = min(self._sessions.values(), key=lambda s: (s.staff is not None, s.last_seen))
                del self._sessions[oldest.key]
            self._sessions[session.key] = session
        return token, session

    def find(self, token: str | None, now: datetime) -> ConsoleSession | None:
        """The live session for a cookie value, touched; ``None`` if there is none.

        Raises ``SessionExpired`` (and forgets the session) when it was idle too long or is too old.
        """
        if not token:
            return None
        with self._lock:
            session = self._sessions.get(_key(token))
            if session is None:
                return None
            reason = self._expiry(session, now)
            if reason is not None:
                del self._sessions[session.key]
                raise SessionExpired(session, reason)
            session.last_seen = now
            return session

    def signed_in(self, token: str | None, now: datetime) -> bool:
        """Whether a cookie value names a live signed-in session, without touching or ending it (the
        node's front door sizes a request by this before its handler reads the session)."""
        if not token:
            return False
        with self._lock:
            session = self._sessions.get(_key(token))
            return session is not None and session.staff is not None and self._expiry(session, now) is None

    def alive(self, session: ConsoleSession, now: datetime) -> bool:
        """Whether ``session`` is still held and within its timeouts, without touching it: a page
        that only listens (the operator's live alerts) must not keep an unattended session open."""
        with self._lock:
            return self._sessions.get(session.key) is session and self._expiry(session, now) is None

    def drop(self, session: ConsoleSession) -> None:
        with self._lock:
            self._sessions.pop(session.key, None)

    def _expiry(self, session: ConsoleSession, now: datetime) -> str | None:
        idle = now - session.last_seen
        if idle > self.settings.idle_timeout:
            return f"session idle for {idle}, limit {self.settings.idle_timeout}"
        age = now - session.created_at
        if age > self.settings.session_lifetime:
            return f"session {age} old, limit {self.settings.session_lifetime}"
        return None

    def _purge(self, now: datetime) -> None:
        for key in [k for k, s in self._sessions.items() if self._expiry(s, now) is not None]:
            del self._sessions[key]
