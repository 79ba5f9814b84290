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

from contextlib import aclosing
from functools import partial

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from radcloud.archive import importer, ingest
from radcloud.errors import (
    MalformedBody,
    UnsupportedMediaType,
)
from radcloud.web.app import problem
from radcloud.web.deps import ArchiveDep, Who
from radcloud.web.multipart import Part, iter_parts, multipart_boundary, parse_media_type, read_body

router = APIRouter()

_SINGLE_TYPES = {
    "", "application/dicom", "application/octet-stream", "application/zip",
    "application/x-zip-compressed", "image/jpeg", "image/png", "application/pdf",
}  # fmt: skip


@router.post("/upload")
async def upload(
    request: Request, archive: ArchiveDep, who: Who, study: str | None = None
) -> Response:
    """Store the uploaded file(s); per-file outcome in the JSON answer."""
    attrs = (
        await run_in_threadpool(importer.study_attributes, archive, study, who) if study else None
    )
    ctx = importer.Context(archive, f"upload:{who.source}", study, attrs, who)
    results = await _receive(request, ctx)
    return _respond(results)


async def _receive(request: Request, ctx: importer.Context) -> list[importer.FileResult]:
    content_type = request.headers.get("content-type", "")
    media, _ = parse_media_type(content_type)
    spool = partial(ingest.spool, ctx.archive)
    limit = ctx.archive.settings.max_upload_bytes
    if media in _SINGLE_TYPES:
        part = await read_body(request, spool, limit)
        return await run_in_threadpool(
            importer.store_file, ctx, part.path, part.filename or "upload"
        )
    if media != "multipart/form-data":
        raise UnsupportedMediaType(
            f"Content-Type {content_type!r}: send one file (application/dicom, application/zip, "
            "image/jpeg, image/png, application/pdf) or multipart/form-data"
        )
    boundary, _ = multipart_boundary(content_type, "form-data")
    results: list[importer.FileResult] = []
    async with aclosing(iter_parts(request, boundary, spool, limit)) as parts:
        async for part in parts:
            if _is_file(part):
                name = part.filename or f"file{len(results) + 1}"
                results += await run_in_threadpool(importer.store_file, ctx, part.path, name)
    return results


def _is_file(part: Part) -> bool:
    """Form parts carrying a file (a filename, or a non-text body)."""
    return bool(part.filename) or part.content_type not in ("", "text/plain")


# ---------------------------------------------------------------- answer


def _respond(results: list[importer.FileResult]) -> Response:
    if not results:
        raise MalformedBody("the request holds no files")
    failed = [r for r in results if r["status"] == "failed"]
    counts = {
        "stored": sum(r["status"] in ("stored", "replaced") for r in results),
        "duplicates": sum(r["status"] == "duplicate" for r in results),
        "failed": len(failed),
        "skipped": sum(r["status"] == "skipped" for r in results),
    }
    if not counts["stored"] and not counts["duplicates"]:
        detail = f"none of the {len(results)} file(s) could be stored"
        return problem(422, "Nothing stored", detail, **counts, instances=results)
    status = "partial" if failed else "ok"
    return JSONResponse({"status": status, **counts, "instances": results})
