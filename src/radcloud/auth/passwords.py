"""Password hashing (argon2id) and the password policy."""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from radcloud.errors import InvalidRequest

_HASHER = PasswordHasher()  # argon2id, RFC 9106 low-memory profile defaults
#: Hash of a random password, verified against when the user is unknown so that
#: a wrong user name costs the same time as a wrong password.
_DUMMY = _HASHER.hash("radcloud-no-such-user")
MIN_LENGTH = 10


def hash_password(password: str) -> str:
    check_policy(password)
    return _HASHER.hash(password)


def verify(stored: str | None, password: str) -> bool:
    """True when ``password`` matches ``stored`` (None: no password login)."""
    try:
        return _HASHER.verify(stored or _DUMMY, password) and stored is not None
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(stored: str) -> bool:
    return _HASHER.check_needs_rehash(stored)


def check_policy(password: str) -> None:
    """At least 10 characters mixing letters and digits or symbols."""
    if len(password) < MIN_LENGTH:
        raise InvalidRequest(f"a password needs at least {MIN_LENGTH} characters")
    if password.isalpha() or password.isdigit():
        raise InvalidRequest("a password needs letters and digits or symbols")
