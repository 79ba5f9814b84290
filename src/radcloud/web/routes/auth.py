"""Sign-in: login and logout, the caller's own account, TOTP, API tokens."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field

from radcloud.auth import accounts, audit, preferences, sessions
from radcloud.auth.access import Principal
from radcloud.errors import (
    Forbidden,
    MalformedBody,
    PayloadTooLarge,
    RadcloudError,
)  # fmt: skip
from radcloud.web.deps import ArchiveDep, Who
from radcloud.web.security import COOKIE

router = APIRouter()


class LoginBody(BaseModel):
    username: str = Field(max_length=64)
    password: str = Field(max_length=256)
    code: str | None = Field(None, max_length=10, description="TOTP code, when enabled")


def me(archive: ArchiveDep, p: Principal) -> dict[str, Any]:
    info = accounts.get_user(archive, p.user_id) if p.user_id is not None else None
    return {
        "username": p.name,
        "kind": p.kind,
        "display_name": info.display_name if info else "",
        "institution_id": p.institution_id,
        "roles": list(p.roles),
        "permissions": sorted(p.permissions),
        "totp_enabled": info.totp_enabled if info else False,
        "token_id": p.token_id,  # the session or token this request came with
    }


def set_session_cookie(request: Request, response: Response, token: str, expires: datetime) -> None:
    response.set_cookie(
        COOKIE, token, httponly=True, samesite="strict", path="/",
        secure=request.url.scheme == "https",
        max_age=int((expires - datetime.now(UTC)).total_seconds()),
    )  # fmt: skip


@router.post("/auth/login")
async def login(body: LoginBody, request: Request, archive: ArchiveDep) -> Response:
    """Password (+ TOTP) login: a session token in the answer and as an HttpOnly cookie."""
    source = request.state.source
    try:
        done = await run_in_threadpool(
            sessions.login, archive, body.username, body.password, code=body.code, source=source
        )
    except RadcloudError as exc:
        who = Principal(kind="user", name=body.username.strip()[:64] or "?",
                        institution_id=_institution_of(archive, body.username))  # fmt: skip
        audit.record(archive, who, "login", audit.DENIED, source=source,
                     detail={"reason": exc.detail[:120]}, wait=True)  # fmt: skip
        raise
    p = accounts.principal_for_user(archive, done.user_id)
    audit.record(archive, p, "login", source=source, wait=True)
    response = JSONResponse(
        {"token": done.token, "expires_at": done.expires_at.isoformat(), "user": me(archive, p)}
    )
    set_session_cookie(request, response, done.token, done.expires_at)
    return response


def _institution_of(archive: ArchiveDep, username: str) -> int:
    """The institution of a (failed) login's user, so its auditors see it; 0 if unknown."""
    try:
        return accounts.get_user(archive, username.strip()).institution_id
    except RadcloudError:
        return 0


@router.post("/auth/logout")
def logout(archive: ArchiveDep, who: Who) -> Response:
    if who.token_id is not None:
        sessions.revoke(archive, who.token_id)
    response = Response(status_code=204)
    response.delete_cookie(COOKIE, path="/")
    return response


@router.get("/auth/me")
def whoami(archive: ArchiveDep, who: Who) -> dict[str, Any]:
    return me(archive, who)


class PasswordBody(BaseModel):
    current: str = Field(max_length=256)
    new: str = Field(max_length=256)


@router.post("/auth/password", status_code=204)
def change_password(body: PasswordBody, archive: ArchiveDep, who: Who) -> None:
    if who.user_id is None:
        raise Forbidden("only users have passwords")
    sessions.change_password(archive, who.user_id, body.current, body.new)


@router.post("/auth/totp/setup")
def totp_setup(archive: ArchiveDep, who: Who) -> dict[str, str]:
    """A new secret (shown once) to put into an authenticator app; enable with a code."""
    if who.user_id is None:
        raise Forbidden("only users have a second factor")
    secret, uri = sessions.totp_begin(archive, who.user_id)
    return {"secret": secret, "otpauth_uri": uri}


class CodeBody(BaseModel):
    code: str = Field(max_length=10)


@router.post("/auth/totp/enable", status_code=204)
def totp_enable(body: CodeBody, archive: ArchiveDep, who: Who) -> None:
    if who.user_id is None:
        raise Forbidden("only users have a second factor")
    sessions.totp_enable(archive, who.user_id, body.code)


@router.post("/auth/totp/disable", status_code=204)
def totp_disable(body: CodeBody, archive: ArchiveDep, who: Who) -> None:
    if who.user_id is None:
        raise Forbidden("only users have a second factor")
    sessions.totp_disable(archive, who.user_id, body.code)


# ------------------------------------------------------------------ API tokens


class TokenBody(BaseModel):
    name: str = Field(max_length=128)
    user: str | None = Field(None, description="For another user (needs users.manage)")
    days: int | None = Field(None, ge=1, le=3650, description="Expiry; none = until revoked")


@router.get("/tokens")
def list_tokens(archive: ArchiveDep, who: Who) -> list[dict[str, Any]]:
    if who.user_id is None:
        return []
    return sessions.list_tokens(archive, who.user_id)


@router.post("/tokens", status_code=201)
def create_token(body: TokenBody, archive: ArchiveDep, who: Who) -> dict[str, Any]:
    """An API token for systems (``Authorization: Bearer``); the secret is shown only now."""
    secret, expires = sessions.issue_api_token(
        archive, who, body.name, user=body.user, days=body.days
    )
    return {"token": secret, "name": body.name, "expires_at": expires}


@router.delete("/tokens/{token_id}", status_code=204)
def revoke_token(token_id: int, archive: ArchiveDep, who: Who) -> None:
    sessions.revoke_as(archive, who, token_id)


# ------------------------------------------------------------------ my settings


def _settings_owner(who: Principal) -> int:
    if who.user_id is None:
        raise Forbidden("settings belong to users")
    return who.user_id


@router.get("/me/settings")
def my_settings(archive: ArchiveDep, who: Who) -> dict[str, Any]:
    """The caller's viewer settings ({} until saved once)."""
    return preferences.get(archive, _settings_owner(who))


@router.put("/me/settings")
async def replace_settings(request: Request, archive: ArchiveDep, who: Who) -> dict[str, Any]:
    return preferences.put(archive, _settings_owner(who), await _json(request))


@router.patch("/me/settings")
async def change_settings(request: Request, archive: ArchiveDep, who: Who) -> dict[str, Any]:
    """Set some top-level keys (null removes one), keep the others."""
    return preferences.merge(archive, _settings_owner(who), await _json(request))


async def _json(request: Request) -> Any:
    body = await request.body()
    if len(body) > preferences.MAX_BYTES:
        raise PayloadTooLarge(f"settings are limited to {preferences.MAX_BYTES // 1024} KiB")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise MalformedBody(f"the body is not JSON: {exc}") from None
