"""The FastAPI application: DICOMweb under /dicom-web, REST under /api, health.

Every route passes :func:`radcloud.web.security.enforce` (sign-in and the
endpoint's permission) and :class:`~radcloud.web.security.AuditMiddleware`.

Built by a factory around an :class:`Archive` (no engine at import time), so
tests hand in their own archive and any number of API nodes share one index.
Errors from :mod:`radcloud.errors` become ``application/problem+json``.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from sqlalchemy.exc import DataError

from radcloud import __version__
from radcloud.archive.service import Archive
from radcloud.errors import RadcloudError
from radcloud.web.security import AuditMiddleware, HeaderLimitMiddleware, enforce, route_rules

log = logging.getLogger(__name__)

DICOMWEB = "/dicom-web"


def problem(status: int, title: str, detail: str, **extra: Any) -> JSONResponse:
    """An RFC 9457 problem response."""
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail, **extra}
    return JSONResponse(body, status_code=status, media_type="application/problem+json")


def create_app(archive: Archive, *, health: Any = None) -> FastAPI:
    """The HTTP application for ``archive``; ``health()`` -> dict of listener states."""
    from radcloud.web.routes import (
        access,
        admin,
        analysis,
        annotations,
        app_pages,
        audit_log,
        auth,
        oidc,
        pages,
        qido,
        reports,
        shares,
        stow,
        upload,
        volume,
        wado,
        worklist,
    )  # fmt: skip
    from radcloud.web.routes import health as health_routes

    app = FastAPI(
        title="radcloud", version=__version__, docs_url="/api/docs",
        dependencies=[Depends(enforce)],
    )  # fmt: skip
    app.state.archive = archive
    app.state.health = health
    app.include_router(health_routes.router)
    app.include_router(qido.router, prefix=DICOMWEB, tags=["QIDO-RS"])
    app.include_router(stow.router, prefix=DICOMWEB, tags=["STOW-RS"])
    app.include_router(wado.router, prefix=DICOMWEB, tags=["WADO-RS"])
    for router, tag in (
        (upload.router, "upload"),
        (auth.router, "sign-in"),
        (oidc.router, "sign-in"),
        (admin.router, "admin"),
        (access.router, "study access"),
        (annotations.router, "annotations"),
        (audit_log.router, "audit"),
        (worklist.router, "study list"),
        (reports.router, "reports"),
        (volume.router, "3D"),
        (analysis.router, "analysis"),
    ):
        app.include_router(router, prefix="/api", tags=[tag])
    app.include_router(pages.router)
    app.include_router(app_pages.router)  # the study list at / and the viewer
    app.include_router(shares.router, tags=["share links"])  # /s and /api/s (public)
    app.add_middleware(AuditMiddleware)
    app.add_middleware(HeaderLimitMiddleware)  # outermost: before anything reads the headers
    app.state.rules = route_rules(app)

    @app.exception_handler(RadcloudError)
    async def _domain_error(request: Request, exc: RadcloudError) -> Response:
        response = problem(exc.http_status, exc.title, exc.detail)
        if exc.http_status == 401:
            response.headers["WWW-Authenticate"] = 'Bearer realm="radcloud"'
        return response

    @app.exception_handler(DataError)
    async def _unstorable(request: Request, exc: DataError) -> Response:
        # e.g. a NUL character, which PostgreSQL text refuses: the caller's input, not our fault
        return problem(400, "Bad request", "a value in the request cannot be stored as given")

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> Response:
        return problem(400, "Bad request", "; ".join(str(e.get("msg")) for e in exc.errors()))

    return app
