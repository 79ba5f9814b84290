"""GET /healthz: 200 when every listener is up, 503 with the failing ones otherwise."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import text

router = APIRouter()


@router.get("/healthz")
def healthz(request: Request) -> JSONResponse:
    checks: dict[str, str] = {"http": "up"}
    try:
        with request.app.state.archive.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        checks["database"] = "up"
    except Exception as exc:  # noqa: BLE001 - report, don't raise
        checks["database"] = f"down: {type(exc).__name__}"
    probe = request.app.state.health
    if probe is not None:
        checks.update(probe())
    ok = all(v == "up" for v in checks.values())
    return JSONResponse({"status": "up" if ok else "down", "checks": checks}, 200 if ok else 503)


# The start page ("/") is the study list: radcloud.web.routes.app_pages.
