"""POST /api/upload: store files from people and tools that do not speak DICOMweb.

Accepts one file as the body (DICOM, a zip of a folder, a JPEG/PNG photo or
a PDF), or ``multipart/form-data`` with any number of such files.  Bodies
stream to spool files on the blob file system and zips are unpacked entry by
entry, so upload size never shows in server memory.  Every DICOM object goes
through the one ingest path; photos and PDFs become Secondary Capture /
Encapsulated PDF instances of the study named by ``?study=`` (DICOM files
keep the study they name themselves).
"""

from __future__ import annotations

import zipfile
from contextlib import aclosing
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path, PurePosixPath
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from pydicom.dataset import Dataset
from starlette.concurrency import run_in_threadpool

from radcloud.archive import ingest, query
from radcloud.archive.query import Level, Query
from radcloud.archive.service import Archive
from radcloud.dicom import wrap
from radcloud.dicom.uids import is_valid_uid, new_uid
from radcloud.errors import (
    BadQuery,
    MalformedBody,
    NotFound,
    PayloadTooLarge,
    RadcloudError,
    UnsupportedMediaType,
)
from radcloud.web.app import problem
from radcloud.web.deps import ArchiveDep
from radcloud.web.multipart import Part, iter_parts, multipart_boundary, parse_media_type, read_body

router = APIRouter()

_SINGLE_TYPES = {
    "", "application/dicom", "application/octet-stream", "application/zip",
    "application/x-zip-compressed", "image/jpeg", "image/png", "application/pdf",
}  # fmt: skip
_MAGIC = (
    (b"PK\x03\x04", "zip"), (b"PK\x05\x06", "zip"), (b"\xff\xd8\xff", "jpeg"),
    (b"\x89PNG\r\n\x1a\n", "png"), (b"%PDF-", "pdf"),
)  # fmt: skip
_WRAPPED = {"jpeg": "JPEG image", "png": "PNG image", "pdf": "PDF document"}

FileResult = dict[str, Any]


@dataclass
class Context:
    """What every file of one upload shares (files are stored one after another)."""

    archive: Archive
    source: str
    study_uid: str | None
    study_attrs: dict[str, Any] | None
    series: dict[str, str] = field(default_factory=dict)  # wrapped kind → its new series
    numbers: dict[str, int] = field(default_factory=dict)  # wrapped kind → last InstanceNumber


@router.post("/upload")
async def upload(request: Request, archive: ArchiveDep, study: str | None = None) -> Response:
    """Store the uploaded file(s); per-file outcome in the JSON answer."""
    attrs = await run_in_threadpool(study_attributes, archive, study) if study else None
    client = request.client.host if request.client else ""
    ctx = Context(archive, f"upload:{client}", study, attrs)
    results = await _receive(request, ctx)
    return _respond(results)


def study_attributes(archive: Archive, study_uid: str) -> dict[str, Any]:
    """The DICOM JSON patient/study attributes of a stored study (NotFound if absent)."""
    if not is_valid_uid(study_uid):
        raise BadQuery(f"study {study_uid!r} is not a valid Study Instance UID")
    q = Query(Level.STUDY, {"StudyInstanceUID": study_uid}, include_all=True)
    items = query.search(archive, q).items
    if not items:
        raise NotFound(f"study {study_uid} is not in the archive")
    return items[0]


async def _receive(request: Request, ctx: Context) -> list[FileResult]:
    content_type = request.headers.get("content-type", "")
    media, _ = parse_media_type(content_type)
    spool = partial(ingest.spool, ctx.archive)
    limit = ctx.archive.settings.max_upload_bytes
    if media in _SINGLE_TYPES:
        part = await read_body(request, spool, limit)
        return await run_in_threadpool(store_file, ctx, part.path, part.filename or "upload")
    if media != "multipart/form-data":
        raise UnsupportedMediaType(
            f"Content-Type {content_type!r}: send one file (application/dicom, application/zip, "
            "image/jpeg, image/png, application/pdf) or multipart/form-data"
        )
    boundary, _ = multipart_boundary(content_type, "form-data")
    results: list[FileResult] = []
    async with aclosing(iter_parts(request, boundary, spool, limit)) as parts:
        async for part in parts:
            if _is_file(part):
                name = part.filename or f"file{len(results) + 1}"
                results += await run_in_threadpool(store_file, ctx, part.path, name)
    return results


def _is_file(part: Part) -> bool:
    """Form parts carrying a file (a filename, or a non-text body)."""
    return bool(part.filename) or part.content_type not in ("", "text/plain")


# ---------------------------------------------------------------- per file (worker thread)


def store_file(ctx: Context, path: Path, name: str, *, in_zip: bool = False) -> list[FileResult]:
    """Store the spooled file at ``path`` (consumed) by what its content is."""
    try:
        kind = _sniff(path)
        if kind == "zip" and not in_zip:
            return _store_zip(ctx, path, name)
        if kind == "zip":
            return [_failed(name, MalformedBody("zip archives inside a zip are not unpacked"))]
        if kind in _WRAPPED:
            return [_store_wrapped(ctx, path, name, kind)]
        return [_store_dicom(ctx, path, name)]
    finally:
        path.unlink(missing_ok=True)


def _sniff(path: Path) -> str:
    with open(path, "rb") as fh:
        head = fh.read(16)
    for magic, kind in _MAGIC:
        if head.startswith(magic):
            return kind
    return "dicom"


def _store_dicom(ctx: Context, path: Path, name: str) -> FileResult:
    try:
        r = ingest.store(ctx.archive, path, source=ctx.source)
    except RadcloudError as exc:
        return _failed(name, exc)
    return _stored(name, r)


def _stored(name: str, r: ingest.StoreResult) -> FileResult:
    return {
        "file": name,
        "status": r.status,
        "sopInstanceUID": r.sop_uid,
        "studyInstanceUID": r.study_uid,
    }


def _failed(name: str, exc: RadcloudError) -> FileResult:
    out: FileResult = {"file": name, "status": "failed", "reason": f"{exc.title}: {exc.detail}"}
    if exc.sop_uid:
        out["sopInstanceUID"] = exc.sop_uid
    return out


def _store_wrapped(ctx: Context, path: Path, name: str, kind: str) -> FileResult:
    """A photo or PDF as a new instance of the chosen study (one series per kind per upload)."""
    if ctx.study_attrs is None:
        detail = (
            f"a {_WRAPPED[kind]} is not DICOM; name the study to attach it to with "
            "?study=<StudyInstanceUID>"
        )
        return _failed(name, UnsupportedMediaType(detail))
    try:
        ds = _wrap(ctx, path.read_bytes(), name, kind)
    except RadcloudError as exc:
        return _failed(name, exc)
    fh, spooled = ingest.spool(ctx.archive)
    with fh:
        ds.save_as(fh, enforce_file_format=True)
    try:
        r = ingest.store(ctx.archive, spooled, source=ctx.source, expected_study_uid=ctx.study_uid)
    except RadcloudError as exc:
        return _failed(name, exc)
    return _stored(name, r)


def _wrap(ctx: Context, data: bytes, name: str, kind: str) -> Dataset:
    group = "pdf" if kind == "pdf" else "image"
    series_uid = ctx.series.setdefault(group, new_uid())
    number = ctx.numbers[group] = ctx.numbers.get(group, 0) + 1
    kw: dict[str, Any] = {"series_uid": series_uid, "instance_number": number}
    if group == "pdf":
        return wrap.wrap_pdf(data, ctx.study_attrs or {}, title=PurePosixPath(name).stem, **kw)
    return wrap.wrap_image(data, ctx.study_attrs or {}, series_description="Photos", **kw)


def _store_zip(ctx: Context, path: Path, name: str) -> list[FileResult]:
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        return [_failed(name, MalformedBody(f"not a readable zip archive: {exc}"))]
    results: list[FileResult] = []
    with zf:
        for info in zf.infolist():
            if _skip_entry(info):
                continue
            entry = f"{name}/{info.filename}"
            try:
                spooled = _extract(ctx, zf, info)
            except RadcloudError as exc:
                results.append(_failed(entry, exc))
                continue
            results += store_file(ctx, spooled, entry, in_zip=True)
    return results


def _skip_entry(info: zipfile.ZipInfo) -> bool:
    """Folders, DICOMDIR, and the metadata files desktop zip tools add."""
    parts = PurePosixPath(info.filename.replace("\\", "/")).parts
    if info.is_dir() or not parts:
        return True
    base = parts[-1]
    return base.upper() == "DICOMDIR" or base.startswith(".") or "__MACOSX" in parts


def _extract(ctx: Context, zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> Path:
    """One zip entry into a spool file, never more than the upload limit."""
    limit = ctx.archive.settings.max_upload_bytes
    if info.file_size > limit:
        raise PayloadTooLarge(f"entry of {info.file_size} bytes exceeds the limit of {limit}")
    fh, spooled = ingest.spool(ctx.archive)
    try:
        with fh, zf.open(info) as src:
            _copy_limited(src, fh, limit)
    except RadcloudError:
        spooled.unlink(missing_ok=True)
        raise
    except Exception as exc:  # noqa: BLE001 - corrupt, encrypted or unsupported entry
        spooled.unlink(missing_ok=True)
        raise MalformedBody(f"cannot unpack the entry: {exc}") from exc
    return spooled


def _copy_limited(src: Any, dst: Any, limit: int) -> None:
    copied = 0
    while chunk := src.read(1024 * 1024):
        copied += len(chunk)
        if copied > limit:
            raise PayloadTooLarge(f"entry unpacks to more than the limit of {limit} bytes")
        dst.write(chunk)


# ---------------------------------------------------------------- answer


def _respond(results: list[FileResult]) -> Response:
    if not results:
        raise MalformedBody("the request holds no files")
    failed = [r for r in results if r["status"] == "failed"]
    counts = {
        "stored": sum(r["status"] in ("stored", "replaced") for r in results),
        "duplicates": sum(r["status"] == "duplicate" for r in results),
        "failed": len(failed),
    }
    if len(failed) == len(results):
        detail = f"none of the {len(results)} file(s) could be stored"
        return problem(422, "Nothing stored", detail, **counts, instances=results)
    status = "partial" if failed else "ok"
    return JSONResponse({"status": status, **counts, "instances": results})
