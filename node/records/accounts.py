"""Staff accounts: argon2id passwords, API tokens, lockout, and the role each account holds.

Passwords are stored only as argon2id hashes; API tokens only as their SHA-256 (a token is
shown once, at creation). Repeated wrong passwords lock the account until an admin re-enables
it. Every refusal is a typed error so the audit log records what happened.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

import argon2
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from governance.roles import Role
from node.storage.models import Account, ApiToken
from protocol.errors import MalformedError, PolicyError

__all__ = [
    "MIN_PASSWORD_LENGTH",
    "AccountDisabled",
    "AccountExists",
    "AuthenticationFailed",
    "StaffAccounts",
    "StaffMember",
]

MIN_PASSWORD_LENGTH = 12
MAX_FAILED_LOGINS = 5
_USERNAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{2,47}")
_HASHER = argon2.PasswordHasher(type=argon2.Type.ID)


TOKEN_PREFIX = "wnt_"  # noqa: S105 (a public prefix, not a secret)


class AuthenticationFailed(PolicyError):
    code = "unauthenticated"


class AccountDisabled(PolicyError):
    code = "account_disabled"


class AccountExists(PolicyError):
    code = "account_exists"


@dataclass(frozen=True)
class StaffMember:
    """An authenticated account: what handlers and the audit log need, nothing secret."""

    id: str
    username: str
    role: Role


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


class StaffAccounts:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def add(self, username: str, role: Role, password: str, now: datetime) -> StaffMember:
        if not _USERNAME_RE.fullmatch(username):
            raise MalformedError(f"username {username!r}: use 3..48 letters, digits, '-' or '_'")
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
        )
        try:
            with Session(self._engine, expire_on_commit=False) as session:
                session.add(account)
                session.commit()
        except IntegrityError as e:
            raise AccountExists(f"username {username!r} is taken") from e
        return StaffMember(account.id, username, role)

    def list(self) -> list[tuple[StaffMember, bool]]:
        with Session(self._engine, expire_on_commit=False) as session:
            rows = session.exec(select(Account).order_by(Account.username)).all()
            return [(StaffMember(a.id, a.username, Role(a.role)), a.disabled) for a in rows]

    def set_disabled(self, username: str, disabled: bool) -> None:
        with Session(self._engine, expire_on_commit=False) as session:
            account = session.exec(select(Account).where(Account.username == username)).first()
            if account is None:
                raise AuthenticationFailed(f"no account {username!r}")
            account.disabled = disabled
            account.failed_logins = 0
            session.add(account)
            session.commit()

    def authenticate_password(self, username: str, password: str) -> StaffMember:
        with Session(self._engine, expire_on_commit=False) as session:
            account = session.exec(select(Account).where(Account.username == username)).first()
            if account is None:
                _HASHER.hash(password)
                raise AuthenticationFailed("wrong username or password")
            if account.disabled:
                raise AccountDisabled(f"account {username!r} is disabled; an admin can re-enable it")
            try:
                _HASHER.verify(account.password_hash, password)
            except argon2.exceptions.VerificationError:
                account.failed_logins += 1
                if account.failed_logins >= MAX_FAILED_LOGINS:
                    account.disabled = True
                session.add(account)
                session.commit()
                raise AuthenticationFailed("wrong username or password") from None
            account.failed_logins = 0
            session.add(account)
            session.commit()
            return StaffMember(account.id, account.username, Role(account.role))

    def issue_token(
        self, username: str, now: datetime, valid_for: timedelta | None = timedelta(days=90)
    ) -> str:
        """A new API token for ``username``; only its hash is stored, so show it now or never.

        The ``wnt_`` prefix lets secret scanners recognise a leaked token, and keeps a token from
        ever starting with ``-`` (which a command line would read as an option).
        """
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        with Session(self._engine, expire_on_commit=False) as session:
            account = session.exec(select(Account).where(Account.username == username)).first()
            if account is None:
                raise AuthenticationFailed(f"no account {username!r}")
            session.add(
                ApiToken(
                    token_hash=_token_hash(token),
                    account_id=account.id,
                    created_at=now,
                    expires_at=None if valid_for is None else now + valid_for,
                )
            )
            session.commit()
        return token

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
            return StaffMember(account.id, account.username, Role(account.role))

    def revoke_token(self, token: str) -> None:
        with Session(self._engine, expire_on_commit=False) as session:
            row = session.get(ApiToken, _token_hash(token))
            if row is not None:
                row.revoked = True
                session.add(row)
                session.commit()
