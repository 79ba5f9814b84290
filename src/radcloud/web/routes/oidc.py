"""Single sign-on with the hospital's OpenID Connect provider (see :mod:`radcloud.auth.oidc`).

``GET /api/auth/oidc/login?next=/path`` sends the browser to the provider;
``GET /api/auth/oidc/callback`` comes back from it, opens a session (the same
``radcloud_session`` cookie as a password login) and sends the browser on to
``next`` — a path on this site only.  Failures answer a problem document.
"""

from __future__ import annotations

from fastapi import APIRouter, Query, Request
from fastapi.responses import RedirectResponse, Response

from radcloud.auth import oidc
from radcloud.errors import RadcloudError
from radcloud.web.app import problem
from radcloud.web.deps import ArchiveDep
from radcloud.web.routes.auth import set_session_cookie

router = APIRouter()


def _secure(request: Request, public_url: str | None) -> bool:
    return request.url.scheme == "https" or (public_url or "").startswith("https://")


@router.get("/auth/oidc/login", response_class=RedirectResponse, status_code=302)
def oidc_login(
    request: Request,
    archive: ArchiveDep,
    next_path: str | None = Query(None, alias="next", max_length=2000,
                                  description="Where to go after signing in (a path here)"),
) -> Response:  # fmt: skip
    """Start single sign-on: a redirect to the identity provider."""
    settings = archive.settings
    start = oidc.begin(settings, request_base=str(request.base_url), next_path=next_path)
    response = RedirectResponse(start.url, status_code=302)
    response.set_cookie(
        oidc.STATE_COOKIE, start.cookie, max_age=oidc.STATE_TTL, path=oidc.STATE_COOKIE_PATH,
        httponly=True, samesite="lax", secure=_secure(request, settings.public_url),
    )  # fmt: skip
    response.headers["Cache-Control"] = "no-store"
    return response


@router.get("/auth/oidc/callback", response_class=RedirectResponse, status_code=302)
def oidc_callback(request: Request, archive: ArchiveDep) -> Response:
    """The identity provider's answer: a session cookie and a redirect to ``next``."""
    params = dict(request.query_params)
    cookie = request.cookies.get(oidc.STATE_COOKIE)
    try:
        done = oidc.complete(archive, params, cookie, source=request.state.source)
    except RadcloudError as exc:
        response: Response = problem(exc.http_status, exc.title, exc.detail)
        if exc.http_status == 401:
            response.headers["WWW-Authenticate"] = 'Bearer realm="radcloud"'
    else:
        response = RedirectResponse(done.next_path, status_code=302)
        set_session_cookie(request, response, done.token, done.expires_at)
    response.delete_cookie(oidc.STATE_COOKIE, path=oidc.STATE_COOKIE_PATH)
    response.headers["Cache-Control"] = "no-store"
    return response
