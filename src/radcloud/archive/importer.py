"""Import files of any kind a department keeps: DICOM, zips of folders, photos, PDFs.

Used by the REST upload and by ``radcloud import``.  Every DICOM object goes
through the one ingest path; photos (JPEG/PNG) and PDF documents become
Secondary Capture / Encapsulated PDF instances of a chosen study; zips are
unpacked entry by entry into spool files, so their size never shows in memory.
"""

from __future__ import annotations

import shutil
import threading
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from pydicom.dataset import Dataset

from radcloud.archive import ingest, query
from radcloud.archive.query import Level, Query
from radcloud.archive.service import Archive
from radcloud.auth.access import Principal
from radcloud.dicom import wrap
from radcloud.dicom.parse import looks_like_dicom
from radcloud.dicom.uids import is_valid_uid, new_uid
from radcloud.errors import (
    BadQuery,
    MalformedBody,
    NotFound,
    PayloadTooLarge,
    RadcloudError,
    UnsupportedMediaType,
)

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
    principal: Principal  # owner of new studies; must see the study files are added to
    series: dict[str, str] = field(default_factory=dict)  # wrapped kind → its new series
    numbers: dict[str, int] = field(default_factory=dict)  # wrapped kind → last InstanceNumber
    lock: threading.Lock = field(default_factory=threading.Lock)  # files may import in parallel


def study_attributes(archive: Archive, study_uid: str, principal: Principal) -> dict[str, Any]:
    """The DICOM JSON patient/study attributes of a stored study ``principal`` may see."""
    if not is_valid_uid(study_uid):
        raise BadQuery(f"study {study_uid!r} is not a valid Study Instance UID")
    q = Query(Level.STUDY, {"StudyInstanceUID": study_uid}, include_all=True)
    items = query.search(archive, q, principal=principal).items
    if not items:
        raise NotFound(f"study {study_uid} is not in the archive")
    return items[0]


def store_file(
    ctx: Context, path: Path, name: str, *, in_zip: bool = False, named: bool = True
) -> list[FileResult]:
    """Store the spooled file at ``path`` (consumed) by what its content is.

    ``named`` is False for files met inside a folder or zip: those that are
    plainly not DICOM (a viewer's files on a patient CD, a README) are
    skipped, where a file the user named gets a clear failure.
    """
    try:
        kind = kind_of(path)
        if kind == "zip" and not in_zip:
            return _store_zip(ctx, path, name)
        if kind == "zip":
            return [_failed(name, MalformedBody("zip archives inside a zip are not unpacked"))]
        if not named and (kind == "other" or (kind in _WRAPPED and ctx.study_attrs is None)):
            return [_skipped(name, kind)]
        if kind in _WRAPPED:
            return [_store_wrapped(ctx, path, name, kind)]
        return [_store_dicom(ctx, path, name)]
    finally:
        path.unlink(missing_ok=True)


def store_copy(ctx: Context, src: Path, *, named: bool = True) -> list[FileResult]:
    """Import a copy of a file the caller keeps (``radcloud import``); see :func:`store_file`."""
    try:
        fh, spooled = ingest.spool(ctx.archive)
        with fh, open(src, "rb") as inp:
            shutil.copyfileobj(inp, fh, 1024 * 1024)
    except OSError as exc:
        return [{"file": str(src), "status": "failed", "reason": f"cannot read: {exc}"}]
    return store_file(ctx, spooled, str(src), named=named)


def kind_of(path: Path) -> str:
    """``zip``, ``jpeg``, ``png``, ``pdf``, ``dicom`` or ``other``, from the first bytes."""
    with open(path, "rb") as fh:
        head = fh.read(132)
    for magic, kind in _MAGIC:
        if head.startswith(magic):
            return kind
    if looks_like_dicom(head):
        return "dicom"
    return "other"


def _skipped(name: str, kind: str) -> FileResult:
    what = _WRAPPED.get(kind, "not a DICOM file")
    reason = (
        f"{what}: skipped (name a study to attach photos and documents)"
        if kind in _WRAPPED
        else f"{what}: skipped"
    )
    return {"file": name, "status": "skipped", "reason": reason}


def _store_dicom(ctx: Context, path: Path, name: str) -> FileResult:
    try:
        r = ingest.store(ctx.archive, path, source=ctx.source, principal=ctx.principal)
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
    out: FileResult = {
        "file": name,
        "status": "failed",
        "reason": f"{exc.title}: {exc.detail}",
        "detail": exc.detail,
    }
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
        r = ingest.store_dataset(
            ctx.archive, ds, source=ctx.source, expected_study_uid=ctx.study_uid,
            principal=ctx.principal,
        )  # fmt: skip
    except RadcloudError as exc:
        return _failed(name, exc)
    return _stored(name, r)


def _wrap(ctx: Context, data: bytes, name: str, kind: str) -> Dataset:
    group = "pdf" if kind == "pdf" else "image"
    with ctx.lock:
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
            results += store_file(ctx, spooled, entry, in_zip=True, named=False)
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
