"""The study list and viewer: the Vite build of ``web/`` shipped as package data.

``web/`` (TypeScript, Cornerstone3D) is built by ``scripts/setup`` into
``web/static/app/``: ``index.html`` plus content-hashed files under ``assets/``.
The page shell is public (it holds no patient data); the app asks
``/api/auth/me`` first and sends the browser to ``/login?next=…`` when nobody
is signed in, and all data comes from the DICOMweb API, which checks every
call.  Hashed assets are cached for a year, the page itself never.  The
Content-Security-Policy allows what Cornerstone needs and no more: WebAssembly
compilation for the codecs (``'wasm-unsafe-eval'``), module workers from this
origin, and blob:/data: images (cursors, the PNG export's burned-in overlay).
"""

from __future__ import annotations

import gzip
import re
from functools import lru_cache
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, HTMLResponse, Response

from radcloud.web import compress, static_files

router = APIRouter()

APP = Path(__file__).resolve().parent.parent / "static" / "app"
ASSETS = APP / "assets"
_ASSET = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}\.(js|css|wasm|svg|png|woff2|map)$")
_HASHED = re.compile(r"-[A-Za-z0-9_-]{8}\.[a-z0-9]+$")
CSP = (
    "default-src 'none'; script-src 'self' 'wasm-unsafe-eval'; worker-src 'self' blob:; "
    # Cornerstone sets style attributes on the elements it creates (CSS cannot run code)
    "style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; font-src 'self'; "
    "connect-src 'self'; "
    "form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
_FALLBACK = """<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>radcloud</title></head><body style="font-family:sans-serif;max-width:40em;margin:2em auto">
<h1>radcloud</h1><p>The archive is running. 归档服务运行中。</p>
<p>The web viewer is not built in this installation (run <code>scripts/setup</code>).
网页阅片器尚未构建。</p><ul>
<li><a href="/login?next=/admin">Sign in / Admin · 登录 / 管理</a></li>
<li><a href="/dicom-web/studies">DICOMweb studies (QIDO-RS)</a></li>
<li><a href="/api/docs">REST / DICOMweb API</a></li>
<li><a href="/healthz">Health</a></li></ul></body></html>"""


def _headers(cache: str) -> dict[str, str]:
    return static_files.security_headers(CSP, cache)


def _shell() -> Response:
    index = APP / "index.html"
    if not index.is_file():  # a checkout whose front end was never built
        return HTMLResponse(_FALLBACK, headers=_headers("no-cache"))
    return FileResponse(index, media_type="text/html; charset=utf-8", headers=_headers("no-cache"))


@router.get("/", include_in_schema=False)
def landing() -> Response:
    """The start page: the study list (links to the admin pages and the API in its header)."""
    return _shell()


@router.get("/viewer", include_in_schema=False)
def viewer_page() -> Response:
    """The viewer, ``/viewer?study=UID[&series=UID]``; the same page shell as ``/``."""
    return _shell()


@router.get("/report", include_in_schema=False)
def report_page() -> Response:
    """The report editor, ``/report?study=UID``; the same page shell as ``/``."""
    return _shell()


@lru_cache(maxsize=32)
def _gzipped(path: str, mtime_ns: int) -> bytes:
    """``path`` compressed once per build (the viewer's script is ~4.3 MB raw, ~1.2 MB gzip)."""
    return gzip.compress(Path(path).read_bytes(), 6, mtime=0)


@router.get("/app/assets/{name}", include_in_schema=False)
def app_asset(name: str, request: Request) -> Response:
    """A built script, style sheet, worker or WASM codec (only names that exist); gzip if asked."""
    path, media_type = static_files.asset(ASSETS, name, _ASSET)
    cache = "public, max-age=31536000, immutable" if _HASHED.search(name) else "no-cache"
    headers = {**_headers(cache), "Vary": "Accept-Encoding"}
    size = path.stat()
    if size.st_size > compress.MIN_BYTES and compress.accepts_gzip(request):
        body = _gzipped(str(path), size.st_mtime_ns)
        headers["Content-Encoding"] = "gzip"
        return Response(body, media_type=media_type, headers=headers)
    return FileResponse(path, media_type=media_type, headers=headers)
