"""The sign-in and admin pages: plain HTML, ES modules and CSS shipped as package data.

No build step and nothing fetched at run time: the files under
``web/static/admin/`` are served as they are.  The pages are public (their data
comes from the JSON API, which checks every call); ``/admin`` without a valid
session sends the browser to ``/login?next=/admin``.  Every page and asset goes
out with a strict Content-Security-Policy (scripts and styles from this origin
only, no inline code), so data that slipped into the DOM could not run.
"""

from __future__ import annotations

import re
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, RedirectResponse, Response

from radcloud.auth import oidc
from radcloud.web import static_files
from radcloud.web.deps import ArchiveDep

router = APIRouter()

STATIC = Path(__file__).resolve().parent.parent / "static" / "admin"
_ASSET = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}\.(js|css|svg)$")
_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)


def _headers(cache: str) -> dict[str, str]:
    return static_files.security_headers(_CSP, cache)


def _page(name: str) -> Response:
    return FileResponse(
        STATIC / name, media_type="text/html; charset=utf-8", headers=_headers("no-store")
    )


@router.get("/login", include_in_schema=False)
def login_page() -> Response:
    """User name, password, one-time code when asked for, and SSO when configured."""
    return _page("login.html")


@router.get("/admin", include_in_schema=False)
def admin_page(request: Request) -> Response:
    """The admin one-page app; without a valid session, the sign-in page first."""
    if getattr(request.state, "principal", None) is None:
        return RedirectResponse("/login?next=/admin", status_code=303, headers=_headers("no-store"))
    return _page("admin.html")


@router.get("/admin/assets/{name}", include_in_schema=False)
def asset(name: str) -> Response:
    """A script, style sheet or icon of the pages (only names that exist in the folder)."""
    path, media_type = static_files.asset(STATIC, name, _ASSET)
    return FileResponse(path, media_type=media_type, headers=_headers("no-cache"))


@router.get("/api/auth/methods", tags=["sign-in"])
def methods(archive: ArchiveDep) -> dict[str, bool]:
    """Which sign-in methods this server offers (the sign-in page shows only those)."""
    return {"password": True, "sso": oidc.configured(archive.settings)}
