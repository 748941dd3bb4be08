"""Staff accounts: argon2id passwords, API tokens, sign-in throttling, and the role each account holds.

Passwords are stored only as argon2id hashes; API tokens only as their SHA-256 (a token is
shown once, at creation). Every refusal is a typed error so the audit log records what happened.

Wrong passwords throttle the pair (account, source address) they came from, never the account
(the way the major identity providers' smart lockout works): after ``DELAY_AFTER`` failures
each further attempt from that source must wait 1 s, 2 s, 4 s ... (at most ``MAX_DELAY``), and
``LOCK_AFTER`` failures within ``LOCK_WINDOW`` lock that pair for ``LOCK_DURATION``, after which
the lock ends by itself. An attempt inside a delay or a lock is refused without checking the
password. A lock never disables the account, never touches its API tokens and never stops a
sign-in from another source; an admin can list and clear locks (``locks``, ``clear_locks``).
The state is a database table (``sign_in_throttle``), updated in single statements, so several
worker processes on one database share it. Every attempt runs exactly one argon2 verification
(against a fixed dummy hash when the account does not exist or the pair is blocked), so the
answer takes the same time whatever the reason for a refusal.
"""

from __future__ import annotations

import builtins
import contextlib
import functools
import hashlib
import ipaddress
import re
import secrets
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import argon2
from sqlalchemy import and_, case, delete, func, insert, literal, or_, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select
from sqlmodel.sql.sqltypes import UTCDateTime

from governance.roles import NODE_ROLES, Role
from node.records.auditlog import append_audit
from node.storage.locks import lock_chains
from node.storage.models import Account, ApiToken, AuditRecord, ConsoleSessionRow, SignInThrottle
from protocol.errors import MalformedError, PolicyError
from protocol.fields import NODE_ID_RE, format_time

__all__ = [
    "DELAY_AFTER",
    "LOCK_AFTER",
    "LOCK_DURATION",
    "LOCK_WINDOW",
    "MAX_DELAY",
    "MAX_TOKEN_LIFETIME",
    "MIN_PASSWORD_LENGTH",
    "AccountDisabled",
    "AccountExists",
    "AccountOverview",
    "AccountProtected",
    "AuthenticationFailed",
    "SignInLock",
    "SignInRefused",
    "StaffAccounts",
    "StaffMember",
    "TokenNotFound",
    "TokenOverview",
    "sign_in_source",
]

MIN_PASSWORD_LENGTH = 12
DELAY_AFTER = 3
"""Failures from one source after which each further attempt from it must wait (1 s, 2 s, 4 s ...)."""
MAX_DELAY = timedelta(seconds=30)
LOCK_AFTER = 10
"""Failures from one source within ``LOCK_WINDOW`` that lock the pair (account, source)."""
LOCK_WINDOW = timedelta(minutes=15)
LOCK_DURATION = timedelta(minutes=15)
_USERNAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{2,47}")
_HASHER = argon2.PasswordHasher(type=argon2.Type.ID)
_DUMMY_HASH = (
    "$argon2id$v=19$m=65536,t=3,p=4$/rm133z4UcBFKqYsIWtuLA$8dEB+wnBI2NM82KihbA60Xurnp5o5I663rt/UOewbvo"
)
"""Verified instead of a real hash when there is none to check (hash of a random, forgotten secret)."""
MAX_SOURCE = 64


TOKEN_PREFIX = "wnt_"  # noqa: S105 (a public prefix, not a secret)
TOKEN_ID_LENGTH = 12
"""Hex digits of a token's SHA-256 that name it in lists and revocations (never the token itself)."""
MAX_TOKEN_LIFETIME = timedelta(days=365)
"""The longest an API token may be issued for; every token expires."""


class AuthenticationFailed(PolicyError):
    code = "unauthenticated"


class SignInRefused(AuthenticationFailed):
    """A refused password sign-in; the caller answers every one the same way.

    ``reason`` is for the audit log only: ``unknown_account``, ``wrong_password``, ``throttled``
    (inside the delay) or ``locked``; ``account_id`` is empty for an unknown account, and
    ``locked_now`` says this failure started the pair's lock.
    """

    def __init__(self, reason: str, account_id: str = "", *, locked_now: bool = False) -> None:
        super().__init__("wrong username or password, or too many failed sign-ins from this address")
        self.reason = reason
        self.account_id = account_id
        self.locked_now = locked_now


class AccountDisabled(PolicyError):
    code = "account_disabled"

    def __init__(self, message: str, account_id: str = "") -> None:
        super().__init__(message)
        self.account_id = account_id


class AccountExists(PolicyError):
    code = "account_exists"


class AccountProtected(PolicyError):
    """A change that would lock the node out of its own administration: an admin disabling
    themselves, or the last enabled admin being disabled."""

    code = "account_protected"


class TokenNotFound(PolicyError):
    code = "token_not_found"


@dataclass(frozen=True)
class TokenOverview:
    """One API token as an admin sees it: its id (a prefix of its hash), never the token."""

    token_id: str
    created_at: datetime
    expires_at: datetime | None
    revoked: bool

    def state(self, now: datetime) -> str:
        """``revoked``, ``expired`` or ``valid``."""
        if self.revoked:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= now:
            return "expired"
        return "valid"


@dataclass(frozen=True)
class AccountOverview:
    """One account as the admin's accounts page lists it."""

    member: StaffMember
    disabled: bool
    created_at: datetime
    locked_until: datetime | None
    """The latest end of a sign-in lock of this account from any source (``None``: not locked)."""
    last_sign_in: datetime | None
    tokens: tuple[TokenOverview, ...]


@dataclass(frozen=True)
class StaffMember:
    """An authenticated account: what handlers and the audit log need, nothing secret."""

    id: str
    username: str
    role: Role
    sites: tuple[str, ...] = ()
    """A camera account's sites (the only ones it may submit faces for); empty for staff."""


def _member(account: Account) -> StaffMember:
    sites = tuple(s for s in account.sites.split(",") if s) if account.sites else ()
    return StaffMember(account.id, account.username, Role(account.role), sites)


MAX_CAMERA_SITES = 32


def _camera_sites(role: Role, sites: tuple[str, ...]) -> tuple[str, ...]:
    """A camera account needs at least one site (``NODE_ID_RE``), every other role none."""
    if role is not Role.CAMERA:
        if sites:
            raise MalformedError(f"only a camera account has sites; a {role.value} account has none")
        return ()
    if not sites:
        raise MalformedError("a camera account needs the site(s) it may submit faces for (--site shibuya-01)")
    if len(sites) > MAX_CAMERA_SITES:
        raise MalformedError(f"{len(sites)} sites, at most {MAX_CAMERA_SITES} for one camera account")
    for site in sites:
        if not NODE_ID_RE.fullmatch(site):
            raise MalformedError(f"site {site!r:.63} does not match {NODE_ID_RE.pattern}")
    return tuple(dict.fromkeys(sites))


@dataclass(frozen=True)
class SignInLock:
    """One (account, source) pair whose sign-ins are delayed or locked now."""

    username: str
    account_id: str
    source: str
    failures: int
    locked_until: datetime | None
    wait_until: datetime | None
    """When the current delay ends (``None``: the next attempt may come now)."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "username": self.username,
            "account_id": self.account_id,
            "source": self.source,
            "failures": self.failures,
            "locked_until": None if self.locked_until is None else format_time(self.locked_until),
            "wait_until": None if self.wait_until is None else format_time(self.wait_until),
        }


def sign_in_source(remote: str | None) -> str:
    """The source key of a client address: an IPv4 address, an IPv6 address's /64, else the text.

    One IPv6 host usually holds a whole /64, so throttling single IPv6 addresses would be no
    throttle at all. An admin's ``--source`` (an address or such a network) maps the same way.
    """
    if not remote:
        return "unknown"
    try:
        address = ipaddress.ip_address(remote.split("%", 1)[0])
    except ValueError:
        try:
            network = ipaddress.ip_network(remote, strict=False)
        except ValueError:
            return remote[:MAX_SOURCE]
        if network.version == 6 and network.prefixlen >= 64:
            return str(network.supernet(new_prefix=64))
        return str(network)[:MAX_SOURCE]
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(address)


def _delay(failures: int) -> timedelta:
    if failures < DELAY_AFTER:
        return timedelta(0)
    return min(timedelta(seconds=2 ** min(failures - DELAY_AFTER, 16)), MAX_DELAY)


def _current(row: SignInThrottle, now: datetime) -> bool:
    """Whether the row still counts: locked, or its failures are inside the window."""
    locked = row.locked_until is not None and now < row.locked_until
    return locked or now - row.window_start < LOCK_WINDOW


def _blocked(row: SignInThrottle | None, now: datetime) -> str | None:
    """``locked``, ``throttled`` (inside the delay) or ``None`` (the password may be checked)."""
    if row is None or not _current(row, now):
        return None
    if row.locked_until is not None and now < row.locked_until:
        return "locked"
    if now < row.last_failure_at + _delay(row.failures):
        return "throttled"
    return None


@functools.cache
def _dummy_hash() -> str:
    """The fixed dummy hash, or a new one if this argon2 would hash with other parameters (and so take
    another time than a real account's hash)."""
    if _HASHER.check_needs_rehash(_DUMMY_HASH):
        return _HASHER.hash(secrets.token_urlsafe(32))
    return _DUMMY_HASH


def _verify(password_hash: str, password: str) -> bool:
    try:
        return _HASHER.verify(password_hash, password)
    except (argon2.exceptions.VerificationError, argon2.exceptions.InvalidHashError):
        return False


def _audit(session: Session, actor: str, action: str, target: str, outcome: str, now: datetime) -> None:
    append_audit(session, actor=actor[:64], action=action, target=target[:128], outcome=outcome[:48], now=now)


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


class StaffAccounts:
    """The accounts of one database. ``roles`` are those an account may be given here: a member's
    node takes its staff's roles (``NODE_ROLES``), the organisation's server its own (``ORG_ROLES``)."""

    def __init__(self, engine: Engine, *, roles: Iterable[Role] = NODE_ROLES) -> None:
        self._engine = engine
        self.roles: tuple[Role, ...] = tuple(roles)

    def add(
        self,
        username: str,
        role: Role,
        password: str,
        now: datetime,
        *,
        actor: str | None = None,
        write_lock: threading.RLock | None = None,
        sites: tuple[str, ...] = (),
    ) -> StaffMember:
        """A new enabled account; with ``actor`` (an admin, or ``host:<user>`` for the CLI) audited
        as ``account.add`` in the same transaction. The CLI and the console both add through here,
        so the username and password rules are the same for both. A camera account names the
        ``sites`` it may submit faces for (at least one); no other account has any."""
        sites = _camera_sites(role, sites)
        if not _USERNAME_RE.fullmatch(username):
            raise MalformedError(f"username {username!r}: use 3..48 letters, digits, '-' or '_'")
        if role not in self.roles:
            raise MalformedError(
                f"role {role.value!r} is not one of this server's roles: {', '.join(r.value for r in self.roles)}"
            )
        if len(password) < MIN_PASSWORD_LENGTH:
            raise MalformedError(
                f"password has {len(password)} characters, at least {MIN_PASSWORD_LENGTH} needed"
            )
        account = Account(
            id=f"acct-{secrets.token_hex(8)}",
            username=username,
            role=role.value,
            password_hash=_HASHER.hash(password),
            created_at=now,
            sites=",".join(sites),
        )
        try:
            with (
                write_lock or contextlib.nullcontext(),
                Session(self._engine, expire_on_commit=False) as session,
            ):
                if actor is not None:
                    lock_chains(session)
                session.add(account)
                session.flush()
                if actor is not None:
                    _audit(session, actor, "account.add", username, f"ok:{role.value}", now)
                session.commit()
        except IntegrityError as e:
            raise AccountExists(f"username {username!r} is taken") from e
        return _member(account)

    def overview(self, now: datetime) -> builtins.list[AccountOverview]:
        """Every account with its sign-in lock, last sign-in (from the audit log) and API tokens."""
        locks: dict[str, datetime] = {}
        for lock in self.locks(now):
            if lock.locked_until is not None:
                locks[lock.account_id] = max(lock.locked_until, locks.get(lock.account_id, lock.locked_until))
        with Session(self._engine, expire_on_commit=False) as session:
            accounts = session.exec(select(Account).order_by(Account.username)).all()
            tokens: dict[str, builtins.list[TokenOverview]] = {}
            for row in session.exec(select(ApiToken).order_by(col(ApiToken.created_at).desc())).all():
                tokens.setdefault(row.account_id, []).append(
                    TokenOverview(
                        row.token_hash[:TOKEN_ID_LENGTH], row.created_at, row.expires_at, row.revoked
                    )
                )
            last = dict(
                session.exec(
                    select(AuditRecord.target, func.max(AuditRecord.at))
                    .where(col(AuditRecord.action) == "console.login", col(AuditRecord.outcome) == "ok")
                    .group_by(col(AuditRecord.target))
                ).all()
            )
        return [
            AccountOverview(
                member=_member(a),
                disabled=a.disabled,
                created_at=a.created_at,
                locked_until=locks.get(a.id),
                last_sign_in=last.get(a.id),
                tokens=tuple(tokens.get(a.id, ())),
            )
            for a in accounts
        ]

    def list(self) -> list[tuple[StaffMember, bool]]:
        with Session(self._engine, expire_on_commit=False) as session:
            rows = session.exec(select(Account).order_by(Account.username)).all()
            return [(_member(a), a.disabled) for a in rows]

    def set_disabled(
        self,
        username: str,
        disabled: bool,
        *,
        actor: str,
        now: datetime,
        write_lock: threading.RLock | None = None,
    ) -> int:
        """Disable (or re-enable) an account; audited as ``account.disable`` / ``account.enable``.

        Disabling ends the account's console sessions in the same transaction (its open pages
        and live streams stop at their next check), and its API tokens are refused from the next
        request. An admin may not disable themselves (``actor`` is their account id), nor the
        last enabled admin. Returns how many console sessions were ended.
        """
        action = "account.disable" if disabled else "account.enable"
        with write_lock or contextlib.nullcontext(), Session(self._engine, expire_on_commit=False) as session:
            lock_chains(session)
            account = session.exec(select(Account).where(Account.username == username)).first()
            if account is None:
                raise AuthenticationFailed(f"no account {username!r}")
            ended = 0
            if disabled:
                refusal = None
                if account.id == actor:
                    refusal = f"{username!r} is your own account; another admin must disable it"
                elif account.role == Role.ADMIN.value and not account.disabled:
                    admins = session.exec(
                        select(func.count())
                        .select_from(Account)
                        .where(col(Account.role) == Role.ADMIN.value, col(Account.disabled).is_(False))
                    ).one()
                    if admins <= 1:
                        refusal = f"{username!r} is the only enabled admin (1 of 1); add another admin first"
                if refusal is not None:
                    _audit(session, actor, action, username, "refused:account_protected", now)
                    session.commit()
                    raise AccountProtected(refusal)
                ended = int(
                    session.exec(
                        delete(ConsoleSessionRow).where(col(ConsoleSessionRow.staff_id) == account.id)
                    ).rowcount
                )
            account.disabled = disabled
            account.failed_logins = 0
            session.add(account)
            _audit(session, actor, action, username, f"ok:sessions={ended}" if disabled else "ok", now)
            session.commit()
        return ended

    def authenticate_password(
        self, username: str, password: str, *, source: str, now: datetime
    ) -> StaffMember:
        """The account, if ``password`` is right and the pair (account, ``source``) is not blocked.

        ``source`` is the client's address as ``sign_in_source`` gives it. Every refusal is a
        ``SignInRefused`` with the same message, after one argon2 verification; only a disabled
        account with the right password gets ``AccountDisabled``.
        """
        with Session(self._engine, expire_on_commit=False) as session:
            account = session.exec(select(Account).where(Account.username == username)).first()
            row = None if account is None else session.get(SignInThrottle, (account.id, source))
        blocked = _blocked(row, now)
        if account is None or blocked is not None:
            _verify(_dummy_hash(), password)
            if account is None:
                raise SignInRefused("unknown_account")
            raise SignInRefused(blocked or "locked", account.id)
        if not _verify(account.password_hash, password):
            failures = self._record_failure(account.id, source, now)
            raise SignInRefused("wrong_password", account.id, locked_now=failures >= LOCK_AFTER)
        if account.disabled:
            raise AccountDisabled(f"account {username!r} is disabled; an admin can re-enable it", account.id)
        if row is not None:
            with Session(self._engine) as session:
                session.exec(
                    delete(SignInThrottle).where(
                        col(SignInThrottle.account_id) == account.id, col(SignInThrottle.source) == source
                    )
                )
                session.commit()
        return _member(account)

    def _record_failure(self, account_id: str, source: str, now: datetime) -> int:
        """Count one wrong password for the pair in one statement (safe with concurrent workers);
        returns the failures now counted. Rows that no longer count are deleted on the way."""
        stamp = UTCDateTime()
        stale = col(SignInThrottle.window_start) <= now - LOCK_WINDOW
        failures = case((stale, 1), else_=col(SignInThrottle.failures) + 1)
        count = (
            update(SignInThrottle)
            .where(col(SignInThrottle.account_id) == account_id, col(SignInThrottle.source) == source)
            .values(
                failures=failures,
                window_start=case((stale, literal(now, stamp)), else_=col(SignInThrottle.window_start)),
                last_failure_at=literal(now, stamp),
                locked_until=case(
                    (failures >= LOCK_AFTER, literal(now + LOCK_DURATION, stamp)),
                    else_=col(SignInThrottle.locked_until),
                ),
            )
            .returning(col(SignInThrottle.failures))
        )
        prune = delete(SignInThrottle).where(
            or_(col(SignInThrottle.locked_until).is_(None), col(SignInThrottle.locked_until) <= now),
            col(SignInThrottle.last_failure_at) <= now - LOCK_WINDOW,
        )
        for _ in range(3):
            try:
                with self._engine.begin() as conn:
                    counted = conn.execute(count).scalar_one_or_none()
                    if counted is None:
                        conn.execute(
                            insert(SignInThrottle).values(
                                account_id=account_id,
                                source=source,
                                failures=1,
                                window_start=now,
                                last_failure_at=now,
                                locked_until=None,
                            )
                        )
                        counted = 1
                    conn.execute(prune)
                    return int(counted)
            except IntegrityError:
                continue  # another worker added the pair's row just now: count on it
        return 0

    def locks(self, now: datetime) -> builtins.list[SignInLock]:
        """Every (account, source) pair that is locked, or whose next failure will be delayed."""
        with Session(self._engine, expire_on_commit=False) as session:
            rows = session.exec(
                select(SignInThrottle, Account)
                .join(Account, col(Account.id) == col(SignInThrottle.account_id))
                .where(
                    or_(
                        col(SignInThrottle.locked_until) > now,
                        and_(
                            col(SignInThrottle.window_start) > now - LOCK_WINDOW,
                            col(SignInThrottle.failures) >= DELAY_AFTER,
                        ),
                    )
                )
                .order_by(col(Account.username), col(SignInThrottle.source))
            ).all()
        out = []
        for row, account in rows:
            locked = row.locked_until if row.locked_until is not None and row.locked_until > now else None
            wait = row.last_failure_at + _delay(row.failures)
            out.append(
                SignInLock(
                    username=account.username,
                    account_id=account.id,
                    source=row.source,
                    failures=row.failures,
                    locked_until=locked,
                    wait_until=wait if wait > now else None,
                )
            )
        return out

    def clear_locks(
        self,
        username: str,
        source: str | None = None,
        *,
        actor: str,
        now: datetime,
        write_lock: threading.RLock | None = None,
    ) -> int:
        """Forget the failed sign-ins of ``username`` (from ``source`` only, if given); audited
        (``account.unlock``) in the same transaction. Returns how many pairs were cleared."""
        with write_lock or contextlib.nullcontext(), Session(self._engine) as session:
            lock_chains(session)  # before the DELETE's row locks: the audit append below takes it
            account = session.exec(select(Account).where(Account.username == username)).first()
            if account is None:
                raise AuthenticationFailed(f"no account {username!r}")
            query = delete(SignInThrottle).where(col(SignInThrottle.account_id) == account.id)
            if source is not None:
                query = query.where(col(SignInThrottle.source) == source)
            cleared = session.exec(query).rowcount
            append_audit(
                session,
                actor=actor[:64],
                action="account.unlock",
                target=account.id,
                outcome=f"cleared:{source or 'all'}"[:48],
                now=now,
            )
            session.commit()
        return int(cleared)

    def issue_token(
        self,
        username: str,
        now: datetime,
        valid_for: timedelta = timedelta(days=90),
        *,
        actor: str | None = None,
        write_lock: threading.RLock | None = None,
    ) -> str:
        """A new API token for ``username``, expiring after ``valid_for`` (at most
        ``MAX_TOKEN_LIFETIME``); only its hash is stored, so show it now or never. With ``actor``
        audited as ``account.token`` (the token's id, a prefix of its hash, never the token).

        The ``wnt_`` prefix lets secret scanners recognise a leaked token, and keeps a token from
        ever starting with ``-`` (which a command line would read as an option).
        """
        if not timedelta(0) < valid_for <= MAX_TOKEN_LIFETIME:
            raise MalformedError(
                f"token lifetime {valid_for.total_seconds() / 86400:g} days, expected more than 0 "
                f"and at most {MAX_TOKEN_LIFETIME.days}"
            )
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        digest = _token_hash(token)
        with write_lock or contextlib.nullcontext(), Session(self._engine, expire_on_commit=False) as session:
            if actor is not None:
                lock_chains(session)
            account = session.exec(select(Account).where(Account.username == username)).first()
            if account is None:
                raise AuthenticationFailed(f"no account {username!r}")
            session.add(
                ApiToken(
                    token_hash=digest,
                    account_id=account.id,
                    created_at=now,
                    expires_at=now + valid_for,
                )
            )
            if actor is not None:
                _audit(session, actor, "account.token", username, f"ok:{digest[:TOKEN_ID_LENGTH]}", now)
            session.commit()
        return token

    def revoke_token_id(
        self,
        username: str,
        token_id: str,
        *,
        actor: str,
        now: datetime,
        write_lock: threading.RLock | None = None,
    ) -> None:
        """Revoke ``username``'s token named by ``token_id`` (``TokenOverview.token_id``); audited as
        ``account.revoke``. The API refuses it from the next request (tokens are not cached)."""
        if not re.fullmatch(f"[0-9a-f]{{{TOKEN_ID_LENGTH}}}", token_id):
            raise MalformedError(f"token id {token_id!r}: expected {TOKEN_ID_LENGTH} hex digits")
        with write_lock or contextlib.nullcontext(), Session(self._engine, expire_on_commit=False) as session:
            lock_chains(session)
            account = session.exec(select(Account).where(Account.username == username)).first()
            if account is None:
                raise AuthenticationFailed(f"no account {username!r}")
            rows = session.exec(
                select(ApiToken).where(
                    col(ApiToken.account_id) == account.id, col(ApiToken.token_hash).startswith(token_id)
                )
            ).all()
            if len(rows) != 1:
                raise TokenNotFound(f"{username!r} has {len(rows)} tokens with id {token_id!r}, expected 1")
            rows[0].revoked = True
            session.add(rows[0])
            _audit(session, actor, "account.revoke", username, f"ok:{token_id}", now)
            session.commit()

    def authenticate_token(self, token: str, now: datetime) -> StaffMember:
        with Session(self._engine, expire_on_commit=False) as session:
            row = session.get(ApiToken, _token_hash(token))
            if row is None or row.revoked:
                raise AuthenticationFailed("unknown or revoked API token")
            if row.expires_at is not None and row.expires_at <= now:
                raise AuthenticationFailed("API token expired; issue a new one with 'watchnet user token'")
            account = session.get(Account, row.account_id)
            if account is None or account.disabled:
                raise AccountDisabled("the token's account is disabled")
            return _member(account)

    def revoke_token(self, token: str) -> None:
        with Session(self._engine, expire_on_commit=False) as session:
            row = session.get(ApiToken, _token_hash(token))
            if row is not None:
                row.revoked = True
                session.add(row)
                session.commit()
