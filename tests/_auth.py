"""Signing tests in: users, tokens and headers for the HTTP API; open DIMSE for peers."""

from __future__ import annotations

from collections.abc import Iterable

from radcloud.archive.service import Archive
from radcloud.auth import accounts, sessions


def token(
    archive: Archive,
    username: str = "tester",
    roles: Iterable[str] = ("platform_admin",),
    institution_id: int = 1,
) -> str:
    """An API token for ``username`` (created with ``roles`` in the institution if new)."""
    try:
        uid = accounts.get_user(archive, username).id
    except Exception:
        uid = accounts.create_user(
            archive, username, "test-password-1", institution_id=institution_id, roles=roles
        )
    return sessions.issue(archive, uid, sessions.API, name="tests")


def headers(archive: Archive, **kw: object) -> dict[str, str]:
    """``Authorization: Bearer`` for a platform admin (or the user ``kw`` describe)."""
    return {"Authorization": f"Bearer {token(archive, **kw)}"}  # type: ignore[arg-type]


def accept_any_calling_ae(archive: Archive) -> None:
    """Let unknown calling AEs in (as the default institution): for tests about DIMSE itself."""
    accounts.set_institution(archive, 1, accept_unknown_aes=True)
