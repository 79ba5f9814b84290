"""Logins, session tokens and API tokens.

Tokens are random 256-bit secrets shown once; the index keeps only their
SHA-256, so a copy of the database opens no session.  Sessions end after
``session_idle_minutes`` without use and ``session_max_hours`` after login,
or at logout; API tokens (for systems) live until revoked or their expiry.
An account locks after ``login_max_failures`` wrong passwords in a row for
``login_lockout_minutes``; one address gets at most ``IP_FAILURES`` failures
in ``IP_WINDOW`` seconds before it is told to wait (429).
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from collections import deque
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, insert, select, update

from radcloud.archive.service import Archive
from radcloud.auth import accounts, passwords, totp
from radcloud.auth.access import Principal
from radcloud.auth.permissions import Perm
from radcloud.errors import Forbidden, InvalidRequest, NotFound, TooManyRequests, Unauthenticated
from radcloud.store.db import as_utc
from radcloud.store.models import AuthToken, User

SESSION, API = "session", "api"
_PREFIX = {SESSION: "rcs_", API: "rca_"}
LOGIN_FAILED = (
    "login failed: wrong user name or password, or the account is locked for a while after "
    "repeated failures"
)
IP_FAILURES, IP_WINDOW = 30, 300.0
#: last_used_at is written at most this often per token (not on every request).
TOUCH_EVERY = timedelta(seconds=60)


def token_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _now() -> datetime:
    return datetime.now(UTC)


class _IpLimiter:
    """Failed logins per source address in a sliding window (per node)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._seen: dict[str, deque[float]] = {}

    def check(self, source: str) -> None:
        with self._lock:
            q = self._seen.get(source)
            now = time.monotonic()
            while q and q[0] < now - IP_WINDOW:
                q.popleft()
            if q is not None and len(q) >= IP_FAILURES:
                raise TooManyRequests(
                    "too many failed logins from this address; wait a few minutes"
                )

    def failed(self, source: str) -> None:
        with self._lock:
            self._seen.setdefault(source, deque()).append(time.monotonic())

    def reset(self) -> None:
        with self._lock:
            self._seen.clear()


IP_LIMITER = _IpLimiter()


@dataclass(frozen=True)
class Login:
    token: str
    user_id: int
    username: str
    expires_at: datetime


def login(
    archive: Archive, username: str, password: str, *, code: str | None = None, source: str = ""
) -> Login:
    """Check the password (and the TOTP code when enabled) and open a session."""
    IP_LIMITER.check(source)
    settings = archive.settings
    with archive.read() as conn:
        row = conn.execute(
            select(User).where(func.lower(User.username) == username.strip().lower())
        ).first()
    ok = passwords.verify(row.password_hash if row else None, password)
    now = _now()
    if row is None or not ok or not row.active:
        IP_LIMITER.failed(source)
        if row is not None and not ok:
            _count_failure(archive, row.id)
        raise Unauthenticated(LOGIN_FAILED)
    locked = as_utc(row.locked_until)
    if locked is not None and locked > now:
        IP_LIMITER.failed(source)
        raise Unauthenticated(LOGIN_FAILED)
    if row.totp_enabled:
        if not code:
            raise Unauthenticated("second factor required: send the 6-digit code as 'code'")
        if not totp.verify(row.totp_secret or "", code):
            IP_LIMITER.failed(source)
            _count_failure(archive, row.id)
            raise Unauthenticated("login failed: wrong one-time code")
    accounts.principal_for_user(archive, row.id)  # raises when the institution is inactive
    with archive.write() as conn:
        conn.execute(update(User).where(User.id == row.id).values(failed_logins=0,
                                                                    locked_until=None))  # fmt: skip
    if passwords.needs_rehash(row.password_hash):
        accounts.set_password(archive, row.id, password)
    expires = now + timedelta(hours=settings.session_max_hours)
    secret = issue(archive, row.id, SESSION, expires_at=expires, source=source)
    return Login(secret, row.id, row.username, expires)


def change_password(archive: Archive, user_id: int, current: str, new: str) -> None:
    """The user's own password change: the current one must match (a miss counts as a
    failed login, so this is no way around the lock-out); every session then ends."""
    with archive.read() as conn:
        stored = conn.scalar(select(User.password_hash).where(User.id == user_id))
    if not passwords.verify(stored, current):
        _count_failure(archive, user_id)
        raise InvalidRequest("the current password is wrong")
    accounts.set_password(archive, user_id, new)


def _count_failure(archive: Archive, user_id: int) -> None:
    settings = archive.settings
    with archive.write() as conn:
        failures = int(
            conn.execute(
                update(User)
                .where(User.id == user_id)
                .values(failed_logins=User.failed_logins + 1)
                .returning(User.failed_logins)
            ).scalar_one()
        )
        if failures >= settings.login_max_failures:
            until = _now() + timedelta(minutes=settings.login_lockout_minutes)
            conn.execute(
                update(User).where(User.id == user_id).values(locked_until=until, failed_logins=0)
            )


def issue(
    archive: Archive,
    user_id: int,
    kind: str,
    *,
    name: str = "",
    expires_at: datetime | None = None,
    source: str = "",
) -> str:
    """A new token of ``kind`` for the user; the secret is returned once, never stored."""
    secret = _PREFIX[kind] + secrets.token_urlsafe(32)
    with archive.write() as conn:
        conn.execute(
            insert(AuthToken),
            dict(token_hash=token_hash(secret), kind=kind, user_fk=user_id, name=name[:128],
                 source=source[:64], created_at=_now(), expires_at=expires_at,
                 last_used_at=_now()),
        )  # fmt: skip
    return secret


def authenticate(archive: Archive, secret: str, source: str = "") -> Principal:
    """The principal a bearer token or session cookie stands for; 401 when it is not valid."""
    if not secret.startswith(tuple(_PREFIX.values())) or len(secret) > 100:
        raise Unauthenticated("the access token is not valid")
    with archive.read() as conn:
        row = conn.execute(
            select(AuthToken).where(AuthToken.token_hash == token_hash(secret))
        ).first()
    now = _now()
    if row is None or row.revoked_at is not None:
        raise Unauthenticated("the access token is not valid (revoked or never issued)")
    expires = as_utc(row.expires_at)
    if expires is not None and expires <= now:
        raise Unauthenticated("the session has expired; log in again")
    last = as_utc(row.last_used_at) or now
    if row.kind == SESSION:
        idle = timedelta(minutes=archive.settings.session_idle_minutes)
        if now - last > idle:
            raise Unauthenticated("the session ended after inactivity; log in again")
    if now - last > TOUCH_EVERY:
        with archive.write() as conn:
            conn.execute(update(AuthToken).where(AuthToken.id == row.id).values(last_used_at=now))
    try:
        p = accounts.principal_for_user(archive, row.user_fk)
    except NotFound:
        raise Unauthenticated("the account is disabled") from None
    return replace(p, token_id=row.id, source=source)


def revoke(archive: Archive, token_id: int, user_id: int | None = None) -> None:
    """End a session or revoke an API token (``user_id``: only if it is theirs)."""
    with archive.write() as conn:
        stmt = update(AuthToken).where(AuthToken.id == token_id, AuthToken.revoked_at.is_(None))
        if user_id is not None:
            stmt = stmt.where(AuthToken.user_fk == user_id)
        if not conn.execute(stmt.values(revoked_at=_now())).rowcount:
            raise NotFound(f"no active token {token_id}")


def issue_api_token(
    archive: Archive, p: Principal, name: str, *, user: str | None = None,
    days: int | None = None,
) -> tuple[str, datetime | None]:  # fmt: skip
    """An API token for ``p`` itself, or for ``user`` if ``p`` administers that user."""
    user_id = p.user_id
    if user is not None:
        target = accounts.get_user(archive, user)
        if target.id != p.user_id:
            accounts.manageable(p, target)
        user_id = target.id
    if user_id is None:
        raise Forbidden("tokens belong to users")
    expires = _now() + timedelta(days=days) if days else None
    return issue(archive, user_id, API, name=name, expires_at=expires, source=p.source), expires


def revoke_as(archive: Archive, p: Principal, token_id: int) -> None:
    """``p`` ends one of its own sessions or tokens; a platform user admin, anyone's."""
    anyone = p.is_platform and p.can(Perm.USERS_MANAGE)
    revoke(archive, token_id, user_id=None if anyone else p.user_id)


def revoke_user_tokens(archive: Archive, user_id: int, kind: str | None = None) -> int:
    with archive.write() as conn:
        stmt = update(AuthToken).where(AuthToken.user_fk == user_id, AuthToken.revoked_at.is_(None))
        if kind:
            stmt = stmt.where(AuthToken.kind == kind)
        return int(conn.execute(stmt.values(revoked_at=_now())).rowcount)


def list_tokens(archive: Archive, user_id: int) -> list[dict[str, Any]]:
    with archive.read() as conn:
        rows = conn.execute(
            select(AuthToken)
            .where(AuthToken.user_fk == user_id, AuthToken.revoked_at.is_(None))
            .order_by(AuthToken.id)
        ).all()
    now = _now()
    return [
        dict(id=r.id, kind=r.kind, name=r.name, created_at=as_utc(r.created_at),
             expires_at=as_utc(r.expires_at), last_used_at=as_utc(r.last_used_at))
        for r in rows
        if r.expires_at is None or (as_utc(r.expires_at) or now) > now
    ]  # fmt: skip


def totp_begin(archive: Archive, user_id: int) -> tuple[str, str]:
    """A new (not yet enabled) TOTP secret and its otpauth:// URI."""
    user = accounts.get_user(archive, user_id)
    secret = totp.new_secret()
    with archive.write() as conn:
        conn.execute(
            update(User).where(User.id == user_id).values(totp_secret=secret, totp_enabled=False)
        )
    return secret, totp.provisioning_uri(secret, user.username)


def totp_enable(archive: Archive, user_id: int, code: str) -> None:
    """Turn TOTP on once the user proves the app shows the right code."""
    with archive.read() as conn:
        secret = conn.scalar(select(User.totp_secret).where(User.id == user_id))
    if not secret:
        raise InvalidRequest("start the TOTP set-up first")
    if not totp.verify(secret, code):
        raise InvalidRequest("the one-time code does not match; check the phone's clock")
    with archive.write() as conn:
        conn.execute(update(User).where(User.id == user_id).values(totp_enabled=True))


def totp_disable(archive: Archive, user_id: int, code: str | None = None) -> None:
    """Turn TOTP off; with ``code`` only if it matches (the user's own request)."""
    if code is not None:
        with archive.read() as conn:
            secret = conn.scalar(select(User.totp_secret).where(User.id == user_id))
        if not secret or not totp.verify(secret, code):
            raise InvalidRequest("the one-time code does not match")
    with archive.write() as conn:
        conn.execute(
            update(User).where(User.id == user_id).values(totp_enabled=False, totp_secret=None)
        )
