"""GET /healthz: 200 when every listener is up, 503 with the failing ones otherwise."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse
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


_LANDING = """<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>radcloud</title></head><body style="font-family:sans-serif;max-width:40em;margin:2em auto">
<h1>radcloud</h1><p>The archive is running. 归档服务运行中。</p><ul>
<li><a href="/login?next=/admin">Sign in / Admin · 登录 / 管理</a></li>
<li><a href="/dicom-web/studies">DICOMweb studies (QIDO-RS)</a></li>
<li><a href="/api/docs">REST / DICOMweb API</a></li>
<li><a href="/healthz">Health</a></li></ul>
<p>The web viewer arrives in a later release. 网页阅片器将在后续版本提供。</p></body></html>"""


@router.get("/", include_in_schema=False)
def landing() -> HTMLResponse:
    """Where the start-up banner points: links to what the server offers today."""
    return HTMLResponse(_LANDING)
