"""Share links over HTTP: managing a study's links, and the patient's side of a link.

Managers (``study.share``, the study visible to them)::

    POST   /api/studies/{study}/shares          create (body optional: defaults)
    GET    /api/studies/{study}/shares          list
    DELETE /api/studies/{study}/shares?id=N     revoke (and the links made from it)

The holder of a link, without an account.  The token travels in the query
(``?t=``) of GETs and in the JSON body of POSTs, never in a path, so it never
lands in the audit trail; content calls also need the share-session cookie
(``radcloud_share``, HttpOnly, SameSite=Strict) that ``POST /api/s/verify``
sets after the identity check::

    GET  /s?t=…                         the patient's page (static/patient; errors as HTML)
    GET  /s/assets/{name}               its script, style sheet and icon
    GET  /api/s/info?t=…                which question, expiry, views left
    POST /api/s/verify {token, answer}  identity check → cookie
    GET  /api/s/exams?t=…               the studies the link opens, newest first
    GET  /api/s/study?t=…&study=        summary;   GET /api/s/series?t=…&study=  series
    GET  /api/s/series/{series}/instances/{instance}/rendered?t=…&study=&frame=&format=&size=
         &window=
    GET  /api/s/dicom?t=…&study=        zip with DICOMDIR
    GET  /api/s/report?t=…&study=&lang=&format=pdf|json   report
    GET  /api/s/film?t=…&study=&format=png|pdf            e-film
    GET  /api/s/qr?t=…                  the link as a QR code (SVG)
    POST /api/s/reshare {token, study, all_exams, hours, max_views, verify}

``study`` names one study of the link's scope by the UID ``/api/s/exams`` gives
(de-identified for a de-identified link); left out, the link's own study.  A
study outside the scope answers 404, as an unknown one does.
    GET  /api/s/shares?t=…;  POST /api/s/revoke {token, id}

Errors are ``application/problem+json``: 404 for every unknown token alike,
410 expired/revoked/used up, 423 locked, 401 wrong answer or no session, 429
too many failures from one address.
"""

from __future__ import annotations

import gzip
import html
import re
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Query, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from pydantic import BaseModel, Field
from starlette.background import BackgroundTask

from radcloud.archive.service import Archive
from radcloud.auth import audit
from radcloud.errors import InvalidRequest, RadcloudError
from radcloud.share import content, links, publish, sms
from radcloud.web import compress, static_files
from radcloud.web.deps import ArchiveDep, Who, validated
from radcloud.web.routes.wado import parse_window

router = APIRouter()
COOKIE = "radcloud_share"
_STUDY = "/api/studies/{study}/shares"
#: No upper length: every unknown token, however long, gets the same 404 (the lookup skips
#: lengths no token has, and the header limit bounds the URL).
Token = Annotated[str, Query(alias="t", min_length=1, description="link token")]
StudyParam = Annotated[
    str | None, Query(max_length=64, description="a study of the link (UID from /api/s/exams)")
]
_PRIVATE = {"Cache-Control": "private, no-store", "Referrer-Policy": "no-referrer"}


class CreateBody(BaseModel):
    kind: Literal["patient", "share"] = "share"
    scope: Literal["study", "patient"] = Field(
        "study", description="study: this study; patient: the patient's published exams too"
    )
    hours: float | None = Field(None, gt=0, description="Expiry in hours (default setting)")
    max_views: int | None = Field(None, ge=1, description="Opens allowed (none: unlimited)")
    verify: Literal["none", "phone4", "id4", "code"] = "code"
    deidentify: bool | None = Field(None, description="Default: true for kind share")
    phone: str | None = Field(None, max_length=32, description="Patient phone (SMS, phone4)")
    send_sms: bool = Field(False, description="Text the link to `phone` (or the stored one)")


class VerifyBody(BaseModel):
    token: str = Field(min_length=1)
    answer: str | None = Field(None, max_length=64)


class ReshareBody(BaseModel):
    token: str = Field(min_length=1)
    study: str | None = Field(None, max_length=64, description="the exam (default: the link's)")
    all_exams: bool = Field(False, description="every exam of the link (a patient link only)")
    hours: float | None = Field(None, gt=0)
    max_views: int | None = Field(None, ge=1)
    verify: Literal["none", "code"] = "code"


class RevokeBody(BaseModel):
    token: str = Field(min_length=1)
    id: int


def _source(request: Request) -> str:
    return str(getattr(request.state, "source", "") or "")


def _base(request: Request, archive: Archive) -> str:
    return archive.settings.public_url or str(request.base_url).rstrip("/")


def _created(request: Request, archive: Archive, created: links.Created) -> dict[str, Any]:
    url = publish.link_url(_base(request, archive), created.token)
    return {"share": created.share, "token": created.token, "url": url, "code": created.code,
            "qr_svg": sms.qr_svg(url).decode()}  # fmt: skip


# ------------------------------------------------------------------ managers


@router.post(_STUDY, status_code=201)
def create_share(
    study: str, request: Request, archive: ArchiveDep, who: Who,
    body: Annotated[dict[str, Any] | None, Body()] = None,
) -> dict[str, Any]:  # fmt: skip
    """A new link (token, URL, QR code and one-time code shown once); optionally texted."""
    links.check_study(archive, who, study)  # 404 before the body is looked at
    b = validated(CreateBody, body or {})
    number = None
    if b.send_sms:  # a number that cannot be texted is refused before anything is made
        number = sms.normalise(b.phone or links.study_phone(archive, study) or "-")
    created = links.create(archive, who, study, kind=b.kind, hours=b.hours, max_views=b.max_views,
                           verify=b.verify, deidentify=b.deidentify, phone=b.phone,
                           scope=b.scope)  # fmt: skip
    out = _created(request, archive, created)
    out["sms"] = False
    if number:
        out["sms"] = _text_link(archive, who, study, created, out["url"], number)
    return out


def _text_link(archive: Archive, who: Any, study: str, created: links.Created, url: str,
               number: str) -> bool:  # fmt: skip
    """Text the link; a failed SMS is reported (``sms: false``), the link stays."""
    s = archive.settings
    kind = "published" if created.share["kind"] == "patient" else "shared"
    text = sms.message(kind, sign=s.sms_sign, url=url, until=created.share["expires_at"],
                       code=created.code)  # fmt: skip
    try:
        sms.provider(s).send(number, text)
        sent = True
    except sms.SmsFailed:
        sent = False
    audit.record(archive, who, "share.sms", audit.SUCCESS if sent else audit.FAILED,
                 study_uid=study, target=f"share:{created.share['id']}",
                 detail={"phone": sms.mask(number)})  # fmt: skip
    return sent


@router.get(_STUDY)
def list_shares(study: str, archive: ArchiveDep, who: Who) -> list[dict[str, Any]]:
    """The study's links, newest first, with views, expiry and state."""
    return links.list_for_study(archive, who, study)


@router.delete(_STUDY)
def revoke_share(
    study: str, archive: ArchiveDep, who: Who,
    share_id: Annotated[int | None, Query(alias="id")] = None,
) -> dict[str, Any]:  # fmt: skip
    """Revoke one link of the study and every link made from it."""
    links.check_study(archive, who, study)  # 404 before any parameter check
    if share_id is None:
        raise InvalidRequest("name the link to revoke: ?id=<share id>")
    return links.revoke(archive, who, study, share_id)


# ------------------------------------------------------------------ the holder of a link


def _open(request: Request, archive: Archive, token: str, study: str | None = None) -> Any:
    """The link reading ``study`` (of its scope), its session checked; every read audited."""
    r = links.session_share(archive, token, request.cookies.get(COOKIE), _source(request))
    r = content.choose(archive, r, study)
    audit.record(archive, links.share_principal(r), "share.view",
                 study_uid=content.study_uid(archive, r), target=f"share:{r.id}",
                 source=_source(request), detail={"what": request.url.path}, fold=True)  # fmt: skip
    return r


@router.get("/api/s/info")
def share_info(t: Token, request: Request, archive: ArchiveDep) -> dict[str, Any]:
    """What the entry page asks before showing anything."""
    return links.describe(archive, t, _source(request))


@router.post("/api/s/verify")
def share_verify(
    request: Request, archive: ArchiveDep, body: Annotated[VerifyBody | None, Body()] = None
) -> Response:
    """The identity check; on success a short-lived share-session cookie for this link."""
    if body is None:
        raise InvalidRequest("send {token, answer}")
    session = links.verify(archive, body.token, body.answer, _source(request))
    minutes = archive.settings.share_session_minutes
    response = JSONResponse({"ok": True, "session_minutes": minutes}, headers=_PRIVATE)
    response.set_cookie(
        COOKIE, session, httponly=True, samesite="strict", path="/",
        secure=request.url.scheme == "https", max_age=minutes * 60,
    )  # fmt: skip
    return response


@router.get("/api/s/exams")
def share_exams(t: Token, request: Request, archive: ArchiveDep) -> list[dict[str, Any]]:
    """The studies the link opens, newest first (date, modalities, description, report)."""
    return content.exams(archive, _open(request, archive, t))


@router.get("/api/s/study")
def share_study(
    t: Token, request: Request, archive: ArchiveDep, study: StudyParam = None
) -> dict[str, Any]:
    return content.summary(archive, _open(request, archive, t, study))


@router.get("/api/s/series")
def share_series(
    t: Token, request: Request, archive: ArchiveDep, study: StudyParam = None
) -> list[dict[str, Any]]:
    return content.series(archive, _open(request, archive, t, study))


@router.get("/api/s/series/{series}/instances/{instance}/rendered")
def share_rendered(
    series: str, instance: str, t: Token, request: Request, archive: ArchiveDep,
    study: StudyParam = None, frame: Annotated[int, Query(ge=1)] = 1,
    format: Literal["jpeg", "png"] = "jpeg",  # noqa: A002 - the query parameter's name
    size: Annotated[int | None, Query(ge=16, le=4096)] = None,
    window: Annotated[str | None, Query(description="center,width[,function]")] = None,
) -> Response:  # fmt: skip
    """One frame, fitted into ``size`` pixels, windowed as asked (default: its own window)."""
    win = parse_window(window)  # a bad window is refused before the link is looked at
    r = _open(request, archive, t, study)
    data = content.rendered(archive, r, series, instance, frame=frame, fmt=format, size=size,
                            window=win)  # fmt: skip
    return Response(data, media_type=f"image/{format}", headers=_PRIVATE)


@router.get("/api/s/dicom")
def share_dicom(
    t: Token, request: Request, archive: ArchiveDep, study: StudyParam = None
) -> Response:
    """The study's DICOM files (de-identified when the link is) with a DICOMDIR, as a zip."""
    r = _open(request, archive, t, study)
    holder = content.dicom_zip(archive, r)
    path: Path = holder.__enter__()
    return FileResponse(
        path, media_type="application/zip", filename="study.zip", headers=_PRIVATE,
        background=BackgroundTask(holder.__exit__, None, None, None),
    )  # fmt: skip


@router.get("/api/s/report")
def share_report(
    t: Token, request: Request, archive: ArchiveDep, lang: Literal["zh", "en"] = "zh",
    format: Literal["pdf", "json"] = "pdf",  # noqa: A002
    study: StudyParam = None,
) -> Response:  # fmt: skip
    """The signed report: PDF (identified links), or as data for the phone page
    (``format=json``; de-identified text for a de-identified link)."""
    r = _open(request, archive, t, study)
    if format == "json":
        return JSONResponse(content.report_view(archive, r, lang), headers=_PRIVATE)
    data = content.report_pdf(archive, r, lang)
    return Response(data, media_type="application/pdf", headers=_PRIVATE)


@router.get("/api/s/film")
def share_film(
    t: Token,
    request: Request,
    archive: ArchiveDep,
    format: Literal["png", "pdf"] = "png",  # noqa: A002
    study: StudyParam = None,
) -> Response:
    data = content.film(archive, _open(request, archive, t, study), format)
    media = "image/png" if format == "png" else "application/pdf"
    return Response(data, media_type=media, headers=_PRIVATE)


@router.get("/api/s/qr")
def share_qr(t: Token, request: Request, archive: ArchiveDep) -> Response:
    """The link as a QR code (for the exam slip); the token must name a usable link."""
    links.describe(archive, t, _source(request))
    svg = sms.qr_svg(publish.link_url(_base(request, archive), t))
    return Response(svg, media_type="image/svg+xml", headers=_PRIVATE)


@router.post("/api/s/reshare", status_code=201)
def share_reshare(
    request: Request, archive: ArchiveDep, body: Annotated[ReshareBody | None, Body()] = None
) -> dict[str, Any]:
    """A de-identified link made from this one, within its expiry and views left: to one
    exam (``study``, default the link's own), or to all of them (``all_exams``)."""
    if body is None:
        raise InvalidRequest("send {token, study?, all_exams?, hours?, max_views?, verify?}")
    r = _open(request, archive, body.token, None if body.all_exams else body.study)
    created = links.reshare(archive, r, hours=body.hours, max_views=body.max_views,
                            verify=body.verify, source=_source(request), study_fk=r.study_fk,
                            all_exams=body.all_exams)  # fmt: skip
    return _created(request, archive, created)


@router.get("/api/s/shares")
def share_children(t: Token, request: Request, archive: ArchiveDep) -> list[dict[str, Any]]:
    """The links made from this one."""
    return links.children(archive, _open(request, archive, t))


@router.post("/api/s/revoke")
def share_revoke(
    request: Request, archive: ArchiveDep, body: Annotated[RevokeBody | None, Body()] = None
) -> dict[str, Any]:
    """Revoke a link made from this one."""
    if body is None:
        raise InvalidRequest("send {token, id}")
    r = _open(request, archive, body.token)
    return links.revoke_child(archive, r, body.id, _source(request))


# ------------------------------------------------------------------ the entry page

PATIENT = Path(__file__).resolve().parent.parent / "static" / "patient"
_ASSET = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}\.(js|css|svg)$")
_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'none'; base-uri 'none'; frame-ancestors 'none'"
)
#: The page and its assets never go to another site, not even as a referrer.
_PAGE_HEADERS = static_files.security_headers(_CSP, "no-store") | {"Referrer-Policy": "no-referrer"}
#: Why a link does not open, in both languages: (title, text), by status and English detail.
_WHY: dict[str, tuple[str, str, str, str]] = {
    "landing": ("打开检查结果", "Open your results",
                "请扫描检查单上的二维码，或打开短信中的链接。",
                "Scan the QR code on your exam slip or open the link in your SMS."),
    "404": ("链接无效", "Link not found",
            "此链接不存在，请检查是否完整复制。", ""),
    "expired": ("链接已过期", "Link expired",
                "此链接已过有效期，请向医院或分享人索取新链接。", ""),
    "withdrawn": ("链接已撤回", "Link withdrawn", "分享人已撤回此链接。", ""),
    "opened as often": ("链接次数已用完", "Link used up",
                        "此链接已达到分享人允许的打开次数。", ""),
    "410": ("链接已失效", "Link no longer valid", "此链接已失效。", ""),
    "423": ("链接已锁定", "Link locked",
            "验证错误次数过多，此链接已锁定，请向医院索取新链接。", ""),
    "429": ("尝试次数过多", "Too many attempts",
            "此网络的失败尝试过多，请稍后再试。", ""),
}  # fmt: skip


def _why(status: int, detail: str) -> tuple[str, str, str, str]:
    if status == 410:
        return next((v for k, v in _WHY.items() if k in detail), _WHY["410"])
    return _WHY.get(str(status), (f"无法打开 ({status})", f"Cannot open ({status})", "", ""))


def _page(status: int, key: str, detail: str = "") -> HTMLResponse:
    """A page that says, in Chinese and English, why there is nothing to show (and nothing else)."""
    zh_title, en_title, zh, en = _WHY[key] if key in _WHY else _why(status, detail)
    en = en or detail[:1].upper() + detail[1:]
    e = html.escape
    body = (
        '<!doctype html><html lang="zh-CN"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{e(zh_title)} · {e(en_title)}</title>"
        '<link rel="stylesheet" href="/s/assets/style.css"></head>'
        f'<body><main class="stop" data-status="{status}"><div class="stop-icon">!</div>'
        f'<h1>{e(zh_title)}</h1><p lang="zh-CN">{e(zh)}</p>'
        f'<h2 lang="en">{e(en_title)}</h2><p lang="en">{e(en)}</p>'
        "</main></body></html>"
    )
    return HTMLResponse(body, status_code=status, headers=_PAGE_HEADERS)


@router.get("/s")
def share_page(
    request: Request, archive: ArchiveDep,
    t: str | None = None,
) -> Response:  # fmt: skip
    """The patient's page of a link (static; its data comes from ``/api/s/…`` after the
    identity check), or a page saying why the link no longer opens."""
    if not t:
        return _page(200, "landing")
    try:
        links.describe(archive, t, _source(request))
    except RadcloudError as exc:
        return _page(exc.http_status, "", exc.detail)
    return FileResponse(
        PATIENT / "index.html", media_type="text/html; charset=utf-8", headers=_PAGE_HEADERS
    )


@lru_cache(maxsize=8)
def _gzipped(path: str, mtime_ns: int) -> bytes:
    return gzip.compress(Path(path).read_bytes(), 9, mtime=0)


@router.get("/s/assets/{name}", include_in_schema=False)
def share_asset(name: str, request: Request) -> Response:
    """A script, style sheet or icon of the patient's page (only names in its folder);
    gzip when asked (the script shrinks ~4×: it travels on thin links)."""
    path, media_type = static_files.asset(PATIENT, name, _ASSET)
    headers = static_files.security_headers(_CSP, "no-cache") | {
        "Referrer-Policy": "no-referrer", "Vary": "Accept-Encoding"}  # fmt: skip
    stat = path.stat()
    if stat.st_size > compress.MIN_BYTES and compress.accepts_gzip(request):
        headers["Content-Encoding"] = "gzip"
        return Response(_gzipped(str(path), stat.st_mtime_ns), media_type=media_type,
                        headers=headers)  # fmt: skip
    return FileResponse(path, media_type=media_type, headers=headers)
