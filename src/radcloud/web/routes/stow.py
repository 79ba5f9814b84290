"""STOW-RS (PS3.18 §10.5): store instances sent as multipart/related application/dicom.

Each part is streamed to a spool file and handed to the one ingest path in a
worker thread; the answer is the Store Instances Response Module as DICOM JSON.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Coroutine
from contextlib import aclosing
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from radcloud.archive import ingest
from radcloud.archive.ingest import StoreResult
from radcloud.archive.service import Archive
from radcloud.auth.access import Principal
from radcloud.errors import MalformedBody, PayloadTooLarge, RadcloudError, UnsupportedMediaType
from radcloud.web.deps import ArchiveDep, BaseUrlDep, Who
from radcloud.web.multipart import Part, iter_parts, multipart_boundary, negotiate, read_body

router = APIRouter()

SERVICE = "radcloud"
_OFFERED = ("application/dicom+json", "application/json")
_DICOM = "application/dicom"
_PART_TYPES = {"", _DICOM, "application/octet-stream"}
_MAX_WARNINGS = 20


@dataclass
class Outcome:
    """What happened to one part: a StoreResult or the error that refused it."""

    result: StoreResult | None = None
    error: RadcloudError | None = None


@router.post("/studies")
async def store_instances(
    request: Request, archive: ArchiveDep, who: Who, base: BaseUrlDep
) -> Response:
    return await _stow(request, archive, who, base, None)


@router.post("/studies/{study}")
async def store_study_instances(
    study: str, request: Request, archive: ArchiveDep, who: Who, base: BaseUrlDep
) -> Response:
    return await _stow(request, archive, who, base, study)


async def _stow(
    request: Request, archive: Archive, who: Principal, base: str, study: str | None
) -> Response:
    media = negotiate(request.headers.get("accept"), _OFFERED)
    outcomes = await _collect(_receive(request, archive, who, study))
    if not outcomes:
        raise MalformedBody("the request holds no instances")
    body = response_module(outcomes, base, study)
    response = Response(orjson.dumps(body), status_code=_status(outcomes), media_type=media)
    for text in _warnings(outcomes):
        response.headers.append("Warning", text)
    return response


async def _collect(outcomes: AsyncIterator[Outcome]) -> list[Outcome]:
    """All outcomes; a body that breaks off after something was stored is one more failure."""
    out: list[Outcome] = []
    try:
        async for o in outcomes:
            out.append(o)
    except (MalformedBody, PayloadTooLarge) as exc:
        if not any(o.result for o in out):
            raise
        out.append(Outcome(error=exc))
    return out


#: Parts being stored while the next one is received (ingest waits on disk syncs).
PIPELINE = 2


async def _receive(
    request: Request, archive: Archive, who: Principal, study: str | None
) -> AsyncIterator[Outcome]:
    """Store the parts of the body, yielding their Outcomes in body order.

    Up to :data:`PIPELINE` parts are stored while the next part is read off
    the connection; when the body breaks off, the parts already received are
    still stored and reported before the error.
    """
    content_type = request.headers.get("content-type", "")
    limit = archive.settings.max_upload_bytes
    spool = partial(ingest.spool, archive)
    if content_type.split(";")[0].strip().lower() == _DICOM:
        part = await read_body(request, spool, limit)
        yield await _store_part(archive, part, who, study)
        return
    boundary, params = multipart_boundary(content_type, "related")
    if params.get("type", _DICOM).lower() != _DICOM:
        raise UnsupportedMediaType(
            f"multipart/related type {params['type']!r} is not supported; send {_DICOM!r} parts"
        )
    pending: deque[asyncio.Task[Outcome]] = deque()
    try:
        async with aclosing(iter_parts(request, boundary, spool, limit)) as parts:
            async for part in parts:
                pending.append(asyncio.create_task(_store_part(archive, part, who, study)))
                while len(pending) >= PIPELINE:
                    yield await pending.popleft()
    except (MalformedBody, PayloadTooLarge):
        while pending:  # the body broke off: report the parts received before it
            yield await pending.popleft()
        raise
    while pending:
        yield await pending.popleft()


def _store_part(
    archive: Archive, part: Part, who: Principal, study: str | None
) -> Coroutine[Any, Any, Outcome]:
    """Take the part's spool file now (the reader deletes untaken ones), store it in a thread."""
    if part.content_type not in _PART_TYPES:
        part.discard()
        error = UnsupportedMediaType(f"part of type {part.content_type!r} is not DICOM")
        return _done(Outcome(error=error))
    return _store_file(archive, part.take(), who, study)


async def _done(outcome: Outcome) -> Outcome:
    return outcome


async def _store_file(archive: Archive, path: Path, who: Principal, study: str | None) -> Outcome:
    try:
        result = await run_in_threadpool(
            ingest.store, archive, path, source=f"stow:{who.source}",
            expected_study_uid=study, principal=who,
        )  # fmt: skip
    except RadcloudError as exc:
        return Outcome(error=exc)
    return Outcome(result=result)


def _el(vr: str, value: Any) -> dict[str, Any]:
    return {"vr": vr, "Value": [value]} if value not in (None, "") else {"vr": vr}


def _instance_url(base: str, r: StoreResult) -> str:
    return f"{base}/studies/{r.study_uid}/series/{r.series_uid}/instances/{r.sop_uid}"


def response_module(outcomes: list[Outcome], base: str, study: str | None) -> dict[str, Any]:
    """The Store Instances Response Module (PS3.18 Table 10.5.3-3) as DICOM JSON."""
    stored = [o.result for o in outcomes if o.result is not None]
    errors = [o.error for o in outcomes if o.error is not None]
    studies = {r.study_uid for r in stored} | ({study} if study else set())
    body: dict[str, Any] = {}
    if len(studies) == 1:
        body["00081190"] = _el("UR", f"{base}/studies/{studies.pop()}")
    failed = [e for e in errors if e.sop_class_uid or e.sop_uid]
    other = [e for e in errors if not (e.sop_class_uid or e.sop_uid)]
    if failed:
        body["00081198"] = {"vr": "SQ", "Value": [_failed_item(e) for e in failed]}
    if stored:
        body["00081199"] = {"vr": "SQ", "Value": [_stored_item(r, base) for r in stored]}
    if other:
        body["0008119A"] = {
            "vr": "SQ",
            "Value": [{"00081197": _el("US", e.failure_reason)} for e in other],
        }
    return body


def _failed_item(e: RadcloudError) -> dict[str, Any]:
    return {
        "00081150": _el("UI", e.sop_class_uid),
        "00081155": _el("UI", e.sop_uid),
        "00081197": _el("US", e.failure_reason),
    }


def _stored_item(r: StoreResult, base: str) -> dict[str, Any]:
    return {
        "00081150": _el("UI", r.sop_class_uid),
        "00081155": _el("UI", r.sop_uid),
        "00081190": _el("UR", _instance_url(base, r)),
    }


def _status(outcomes: list[Outcome]) -> int:
    """200 all stored, 202 some, 409 none for conflicts only, 400 (or 503) none otherwise."""
    errors = [o.error for o in outcomes if o.error is not None]
    if not errors:
        return 200
    if len(errors) < len(outcomes):
        return 202
    statuses = {e.http_status for e in errors}
    if statuses == {409}:
        return 409
    if all(s >= 500 for s in statuses):
        return 503
    return 400


def _warnings(outcomes: list[Outcome]) -> list[str]:
    """``Warning: <reason> radcloud: <text>`` per failed part (PS3.18 §8.6.1.3)."""
    out = []
    for o in outcomes:
        if o.error is None:
            continue
        e = o.error
        what = f" ({e.sop_uid})" if e.sop_uid else ""
        text = f"{e.failure_reason:04X} {SERVICE}: {e.title}{what}: {e.detail}"
        out.append(_header_safe(text))
        if len(out) == _MAX_WARNINGS:
            break
    return out


def _header_safe(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())[:limit]
    return text.encode("latin-1", "replace").decode("latin-1")
