"""Server-side console sessions: a random id in an HttpOnly cookie, kept by its hash in the database.

Staff sign in once with their password (argon2id, throttled per account and source address: ``StaffAccounts``) and then carry
only a random session id. The node keeps each session under the SHA-256 of that id, so a
database dump or a log line with a key in it cannot be replayed as a cookie. A session ends at
logout, after ``console.idle_timeout`` without a request and after ``console.session_lifetime``
in all. A session exists before sign-in too, so that the login form has a CSRF token; signing in
replaces it with a new one (a fixed session id cannot be planted). Every new session first clears
the timed-out ones (with any photo a registrar left being checked); the number of sessions is
bounded, and when full the least recently used anonymous session goes first.

A node of several workers keeps its sessions in the ``console_session`` table
(``SharedSessionStore``), so a browser signed in through one worker is signed in on every worker
and signing out anywhere ends it everywhere. A session's fields are written through when a page
changes them (the role re-read, a notice, the registrar's photo being checked), and ``last_seen``
at most every ``TOUCH_SECONDS``, not on every request. The photo being checked holds a face crop
and its embedding: it is sealed with the node's data key, bound to its session's row, and never
reaches the database in the clear. ``SessionStore`` keeps the same sessions in memory, for one
process that needs no database.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import secrets
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, SupportsIndex

from sqlalchemy import bindparam, delete, func, select, update
from sqlalchemy.engine import Engine, RowMapping

from governance.roles import Role
from node.config import ConsoleSettings
from node.records.accounts import AuthenticationFailed, StaffMember
from node.records.vault import Vault
from node.storage.models import ConsoleSessionRow
from protocol.canonical import b64url_decode, b64url_encode
from protocol.embedding import Embedding
from protocol.errors import DecryptionError, MalformedError

__all__ = [
    "MAX_SESSIONS",
    "TOUCH_SECONDS",
    "ConsoleSession",
    "Notices",
    "SessionExpired",
    "SessionStore",
    "SharedSessionStore",
]

MAX_SESSIONS = 10_000
"""Hard limit on sessions held (anonymous ones are evicted first)."""
TOUCH_SECONDS = 5.0
"""A shared session's ``last_seen`` is written at most this often (its idle time may read up to
this much longer than it is, never shorter)."""

_WRITTEN = frozenset({"staff", "checked_at", "notices", "preview"})
"""The fields pages change on a session they found; a shared store writes each change through."""


class SessionExpired(AuthenticationFailed):
    """The session timed out; ``session`` is the one that ended, for the audit log."""

    code = "session_expired"

    def __init__(self, session: ConsoleSession, message: str) -> None:
        self.session = session
        super().__init__(message)


class Notices(list[str]):
    """A session's notices (message keys shown once); each change calls ``changed``."""

    def __init__(self, items: Iterable[str] = (), changed: Callable[[], None] | None = None) -> None:
        super().__init__(items)
        self._changed = changed

    def _tell(self) -> None:
        if self._changed is not None:
            self._changed()

    def append(self, item: str) -> None:
        super().append(item)
        self._tell()

    def extend(self, items: Iterable[str]) -> None:
        super().extend(items)
        self._tell()

    def insert(self, index: SupportsIndex, item: str) -> None:
        super().insert(index, item)
        self._tell()

    def pop(self, index: SupportsIndex = -1) -> str:
        item = super().pop(index)
        self._tell()
        return item

    def remove(self, item: str) -> None:
        super().remove(item)
        self._tell()

    def clear(self) -> None:
        if self:  # every page render clears them: an empty list is not written again
            super().clear()
            self._tell()


@dataclass(eq=False)
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
    """The registrar's photo being checked (``pages_registrar.Preview``)."""
    _save: Callable[[ConsoleSession, str], None] | None = field(default=None, init=False, repr=False)

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "notices":
            value = Notices(value, lambda: self._saved("notices"))
        object.__setattr__(self, name, value)
        if name in _WRITTEN:
            self._saved(name)

    def _saved(self, name: str) -> None:
        save = self.__dict__.get("_save")
        if save is not None:
            save(self, name)


def _key(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _new_session(now: datetime, staff: StaffMember | None) -> tuple[str, ConsoleSession]:
    token = secrets.token_urlsafe(32)
    session = ConsoleSession(
        key=_key(token),
        csrf=secrets.token_urlsafe(32),
        created_at=now,
        last_seen=now,
        staff=staff,
        checked_at=now,
    )
    return token, session


class SessionStore:
    """Sessions in this process's memory by the hash of their id, with idle and absolute timeouts
    (the clock is passed in)."""

    def __init__(self, settings: ConsoleSettings, *, max_sessions: int = MAX_SESSIONS) -> None:
        self.settings = settings
        self.max_sessions = max_sessions
        self._sessions: dict[str, ConsoleSession] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._sessions)

    def create(self, now: datetime, staff: StaffMember | None = None) -> tuple[str, ConsoleSession]:
        """A new session; returns the id for the cookie (only its hash is kept)."""
        token, session = _new_session(now, staff)
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
        return self._expiry_of(session.created_at, session.last_seen, now)

    def _expiry_of(self, created_at: datetime, last_seen: datetime, now: datetime) -> str | None:
        idle = now - last_seen
        if idle > self.settings.idle_timeout:
            return f"session idle for {idle}, limit {self.settings.idle_timeout}"
        age = now - created_at
        if age > self.settings.session_lifetime:
            return f"session {age} old, limit {self.settings.session_lifetime}"
        return None

    def _purge(self, now: datetime) -> None:
        for key in [k for k, s in self._sessions.items() if self._expiry(s, now) is not None]:
            del self._sessions[key]


class PreviewCodec:
    """The registrar's photo being checked as sealed bytes, and back.

    A preview is a tree of frozen dataclasses (``preview_types`` and ``Embedding``), tuples,
    bytes and plain values, written as tagged JSON (no pickle: only the named types are ever
    built again) and sealed with the data key, bound to its session's row.
    """

    def __init__(self, vault: Vault, types: Iterable[type]) -> None:
        self._vault = vault
        self._types: Mapping[str, type] = {t.__name__: t for t in (*types, Embedding)}

    def seal(self, key: str, preview: Any) -> bytes:
        plain = json.dumps(self._encode(preview), separators=(",", ":")).encode("utf-8")
        return self._vault.seal(plain, binding=f"console-session/{key}/preview")

    def open(self, key: str, sealed: bytes) -> Any:
        plain = self._vault.open(sealed, binding=f"console-session/{key}/preview")
        return self._decode(json.loads(plain))

    def _encode(self, value: Any) -> Any:
        if value is None or isinstance(value, bool | int | float | str):
            return value
        if isinstance(value, bytes):
            return {"$b": b64url_encode(value)}
        if isinstance(value, tuple):
            return {"$t": [self._encode(v) for v in value]}
        if isinstance(value, list):
            return [self._encode(v) for v in value]
        kind = type(value)
        if dataclasses.is_dataclass(value) and self._types.get(kind.__name__) is kind:
            fields = {
                f.name: self._encode(getattr(value, f.name)) for f in dataclasses.fields(value) if f.init
            }
            return {"$d": kind.__name__, "f": fields}
        raise TypeError(f"a console preview holds a {kind.__name__}, not one of {sorted(self._types)}")

    def _decode(self, value: Any) -> Any:
        if isinstance(value, list):
            return [self._decode(v) for v in value]
        if not isinstance(value, dict):
            return value
        if "$b" in value:
            return b64url_decode(value["$b"], field="preview")
        if "$t" in value:
            return tuple(self._decode(v) for v in value["$t"])
        kind = self._types[value["$d"]]
        return kind(**{name: self._decode(v) for name, v in value["f"].items()})


_TABLE = ConsoleSessionRow.__table__  # type: ignore[attr-defined]
_BY_KEY = _TABLE.c.key == bindparam("b_key")
_FIND = select(_TABLE).where(_BY_KEY)
_TIMES = select(_TABLE.c.staff_id, _TABLE.c.created_at, _TABLE.c.last_seen).where(_BY_KEY)
"""What the timeouts and ``signed_in`` need: never the sealed preview."""
_TOUCH = (
    update(_TABLE)
    .where(_BY_KEY, _TABLE.c.last_seen < bindparam("b_now"))
    .values(last_seen=bindparam("b_now"))
)
_DROP = delete(_TABLE).where(_BY_KEY)
"""Built once: building a statement costs more than a primary-key lookup runs."""


class SharedSessionStore(SessionStore):
    """Sessions in the ``console_session`` table, shared by every worker of the node.

    Each ``find`` reads the row (one primary-key lookup) and builds a new ``ConsoleSession``;
    changes to it are written through. ``preview_types`` are the dataclasses a registrar's
    preview is made of (``pages_registrar.Preview`` and what it holds).
    """

    def __init__(
        self,
        settings: ConsoleSettings,
        *,
        engine: Engine,
        vault: Vault,
        preview_types: Iterable[type] = (),
        max_sessions: int = MAX_SESSIONS,
        touch_seconds: float = TOUCH_SECONDS,
    ) -> None:
        super().__init__(settings, max_sessions=max_sessions)
        self._engine = engine
        self._codec = PreviewCodec(vault, preview_types)
        self._touch = timedelta(seconds=touch_seconds)

    def __len__(self) -> int:
        with self._engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(_TABLE)).scalar_one())

    def create(self, now: datetime, staff: StaffMember | None = None) -> tuple[str, ConsoleSession]:
        """A new session; expired rows go first, then the least recently used (anonymous first)
        while the table is full."""
        token, session = _new_session(now, staff)
        c = _TABLE.c
        with self._engine.begin() as conn:
            conn.execute(
                delete(_TABLE).where(
                    (c.last_seen < now - self.settings.idle_timeout)
                    | (c.created_at < now - self.settings.session_lifetime)
                )
            )
            surplus = int(conn.execute(select(func.count()).select_from(_TABLE)).scalar_one())
            surplus -= self.max_sessions - 1
            if surplus > 0:
                oldest = select(c.key).order_by(c.staff_id.is_not(None), c.last_seen).limit(surplus)
                conn.execute(delete(_TABLE).where(c.key.in_(oldest)))
            conn.execute(_TABLE.insert().values(self._row(session)))
        session._save = self._write
        return token, session

    def find(self, token: str | None, now: datetime) -> ConsoleSession | None:
        if not token:
            return None
        key = _key(token)
        with self._engine.connect() as conn:
            row = conn.execute(_FIND, {"b_key": key}).first()
        if row is None:
            return None
        session = self._session(row._mapping)
        reason = self._expiry(session, now)
        if reason is not None:
            self.drop(session)
            raise SessionExpired(session, reason)
        if now - session.last_seen >= self._touch:
            with self._engine.begin() as conn:
                conn.execute(_TOUCH, {"b_key": key, "b_now": now})
            session.last_seen = now
        session._save = self._write
        return session

    def signed_in(self, token: str | None, now: datetime) -> bool:
        if not token:
            return False
        times = self._times(_key(token))
        return times is not None and times[0] is not None and self._expiry_of(times[1], times[2], now) is None

    def alive(self, session: ConsoleSession, now: datetime) -> bool:
        times = self._times(session.key)
        return times is not None and self._expiry_of(times[1], times[2], now) is None

    def drop(self, session: ConsoleSession) -> None:
        session._save = None
        with self._engine.begin() as conn:
            conn.execute(_DROP, {"b_key": session.key})

    def _times(self, key: str) -> tuple[str | None, datetime, datetime] | None:
        with self._engine.connect() as conn:
            row = conn.execute(_TIMES, {"b_key": key}).first()
        return None if row is None else (row[0], row[1], row[2])

    def _write(self, session: ConsoleSession, name: str) -> None:
        """Write one changed field of ``session`` (a session dropped meanwhile stays dropped)."""
        with self._engine.begin() as conn:
            conn.execute(
                update(_TABLE).where(_TABLE.c.key == session.key).values(self._columns(session, name))
            )

    def _columns(self, session: ConsoleSession, name: str) -> dict[str, Any]:
        if name == "staff":
            staff = session.staff
            return {
                "staff_id": None if staff is None else staff.id,
                "staff_username": None if staff is None else staff.username,
                "staff_role": None if staff is None else staff.role.value,
            }
        if name == "notices":
            return {"notices": json.dumps(list(session.notices))}
        if name == "preview":
            preview = session.preview
            return {"preview_ct": None if preview is None else self._codec.seal(session.key, preview)}
        return {name: getattr(session, name)}

    def _row(self, session: ConsoleSession) -> dict[str, Any]:
        row: dict[str, Any] = {
            "key": session.key,
            "csrf": session.csrf,
            "created_at": session.created_at,
            "last_seen": session.last_seen,
        }
        for name in sorted(_WRITTEN):
            row.update(self._columns(session, name))
        return row

    def _session(self, row: RowMapping) -> ConsoleSession:
        staff = (
            None
            if row["staff_id"] is None
            else StaffMember(row["staff_id"], row["staff_username"], Role(row["staff_role"]))
        )
        preview = None
        if row["preview_ct"] is not None:
            try:
                preview = self._codec.open(row["key"], row["preview_ct"])
            except (DecryptionError, MalformedError, KeyError, TypeError, ValueError):
                preview = None  # sealed under another data key or by another release: upload again
        return ConsoleSession(
            key=row["key"],
            csrf=row["csrf"],
            created_at=row["created_at"],
            last_seen=row["last_seen"],
            staff=staff,
            checked_at=row["checked_at"],
            notices=json.loads(row["notices"]),
            preview=preview,
        )
