"""Structured reports: the editor's calls, outputs (HTML, PDF, film, print) and the HIS API.

A study has one report, so report URLs hang off the study:
``/api/studies/{study}/report`` (+ ``/lock``, ``/submit``, ``/return``,
``/sign``, ``/amend``, ``/versions``, ``/html``, ``/pdf``, ``/film``,
``/print``, ``/screenshots``).  HIS/EMR systems search with
``GET /api/reports?accession=…`` or ``?patient_id=…``.  Only translation
here; the workflow lives in :mod:`radcloud.report.service`.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Query, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import BaseModel, Field

from radcloud.errors import InvalidRequest
from radcloud.report import events, phrases, service
from radcloud.web.deps import ArchiveDep, Who

router = APIRouter()
_S = "/studies/{study}/report"


def _needed(archive: Any, who: Any, study: str, body: Any) -> Any:
    """The body of a study call, checked only once the study is known to be visible.

    Bodies are optional at the FastAPI level so that a caller who may not see
    the study gets 404 whatever it sent, never a validation error that would
    answer differently for studies that exist.
    """
    service.check_study(archive, who, study)
    if body is None:
        raise InvalidRequest("this call needs a JSON body")
    return body


class CreateBody(BaseModel):
    template: str | None = Field(None, description="Template name; default: suggested by exam")


class EditBody(BaseModel):
    version: int | None = Field(None, description="The version the edit is based on")
    fields: dict[str, Any] = Field(default_factory=dict, description="Changed field values")
    key_images: list[dict[str, Any]] | None = None
    critical: dict[str, Any] | None = None
    accept: list[str] = Field(default_factory=list, description="AI-filled fields accepted")


class AmendBody(EditBody):
    reason: str = Field(min_length=1, max_length=2000)


class StepBody(BaseModel):
    version: int | None = None


class ReturnBody(BaseModel):
    reason: str = Field(min_length=1, max_length=2000)


class PrintBody(BaseModel):
    printer: str = Field(min_length=1, max_length=16, description="AE title of a DICOM printer")
    copies: int = Field(1, ge=1, le=10)


@router.get(_S)
def get_report(
    study: str, archive: ArchiveDep, who: Who, version: int | None = None
) -> dict[str, Any]:
    """The study's report (null before one is started) and the template that suits the exam."""
    report = service.get(archive, who, study, version)
    suggested = service.suggest_template(archive, who, study) if report is None else None
    return {"report": report, "suggested_template": suggested}


@router.post(_S, status_code=201)
def create_report(
    study: str, archive: ArchiveDep, who: Who, body: Annotated[CreateBody | None, Body()] = None
) -> Any:
    return service.create(archive, who, study, body.template if body else None)


@router.put(_S)
def save_report(
    study: str, archive: ArchiveDep, who: Who, body: Annotated[EditBody | None, Body()] = None
) -> Any:
    body = _needed(archive, who, study, body)
    edit = body.model_dump(exclude={"version"}, exclude_none=True)
    return service.save(archive, who, study, edit, base_version=body.version)


@router.post(_S + "/lock")
def lock_report(study: str, archive: ArchiveDep, who: Who) -> dict[str, Any]:
    return service.lock(archive, who, study)


@router.delete(_S + "/lock", status_code=204)
def unlock_report(study: str, archive: ArchiveDep, who: Who) -> None:
    service.unlock(archive, who, study)


@router.post(_S + "/submit")
def submit_report(
    study: str, archive: ArchiveDep, who: Who, body: Annotated[StepBody | None, Body()] = None
) -> Any:
    return service.submit(archive, who, study, base_version=body.version if body else None)


@router.post(_S + "/return")
def return_report(
    study: str, archive: ArchiveDep, who: Who, body: Annotated[ReturnBody | None, Body()] = None
) -> Any:
    body = _needed(archive, who, study, body)
    return service.return_to_author(archive, who, study, body.reason)


@router.post(_S + "/sign")
def sign_report(
    study: str, archive: ArchiveDep, who: Who, body: Annotated[StepBody | None, Body()] = None
) -> Any:
    return service.sign(archive, who, study, base_version=body.version if body else None)


@router.post(_S + "/amend")
def amend_report(
    study: str, archive: ArchiveDep, who: Who, body: Annotated[AmendBody | None, Body()] = None
) -> Any:
    body = _needed(archive, who, study, body)
    edit = body.model_dump(exclude={"version", "reason"}, exclude_none=True)
    return service.amend(archive, who, study, edit, body.reason, base_version=body.version)


@router.get(_S + "/versions")
def report_versions(study: str, archive: ArchiveDep, who: Who) -> list[dict[str, Any]]:
    return service.versions(archive, who, study)


Lang = Annotated[Literal["zh", "en"], Query()]
_NO_STORE = {"Cache-Control": "no-store"}
#: The report view is a document: inline styles and data: images, never scripts.
_VIEW_HEADERS = {
    **_NO_STORE,
    "Content-Security-Policy": "default-src 'none'; img-src data:; style-src 'unsafe-inline'; "
    "frame-ancestors 'self'",
    "X-Content-Type-Options": "nosniff",
}


@router.get(_S + "/html", response_class=HTMLResponse)
def report_html(
    study: str, archive: ArchiveDep, who: Who, version: int | None = None, lang: Lang = "zh"
) -> HTMLResponse:
    from radcloud.report import render

    return HTMLResponse(render.html(archive, who, study, version, lang), headers=_VIEW_HEADERS)


@router.get(_S + "/pdf")
def report_pdf(
    study: str, archive: ArchiveDep, who: Who, version: int | None = None, lang: Lang = "zh"
) -> Response:
    from radcloud.report import render

    data = render.pdf(archive, who, study, version, lang)
    headers = {**_NO_STORE, "Content-Disposition": 'inline; filename="report.pdf"'}
    return Response(data, media_type="application/pdf", headers=headers)


@router.get(_S + "/film")
def report_film(
    study: str, archive: ArchiveDep, who: Who, format: Literal["png", "pdf"] = "png"
) -> Response:
    """The print layout (key images grid under a report header) as PNG or PDF."""
    from radcloud.report import film

    data = film.export(archive, who, study, format)
    media = "image/png" if format == "png" else "application/pdf"
    return Response(data, media_type=media, headers=_NO_STORE)


@router.post(_S + "/print")
def print_report(
    study: str, archive: ArchiveDep, who: Who, body: Annotated[PrintBody | None, Body()] = None
) -> dict[str, Any]:
    """Send the film to a DICOM printer (Basic Grayscale Print Management)."""
    from radcloud.report import film

    body = _needed(archive, who, study, body)
    return film.print_film(archive, who, study, body.printer, copies=body.copies)


@router.post(_S + "/screenshots", status_code=201)
async def add_screenshot(study: str, request: Request, archive: ArchiveDep, who: Who) -> Any:
    """A viewer screenshot (PNG/JPEG body) filed in the study, to attach as a key image."""
    from radcloud.report import film

    data = await request.body()
    return film.store_screenshot(archive, who, study, data)


# ------------------------------------------------------------------ HIS / EMR


@router.get("/reports")
def find_reports(
    archive: ArchiveDep, who: Who, accession: str | None = None, patient_id: str | None = None,
    study: str | None = None, status: str | None = None, limit: int = 100,
) -> list[dict[str, Any]]:  # fmt: skip
    """Reports by accession number, patient ID, study or status (signed only for readers).

    Each carries ``links`` to its PDF and HTML view (of exactly that version).
    """
    found = service.find(archive, who, accession=accession, patient_id=patient_id,
                         study_uid=study, status=status, limit=limit)  # fmt: skip
    for r in found:
        base = f"/api/studies/{r['study_uid']}/report"
        r["links"] = {"pdf": f"{base}/pdf?version={r['version']}",
                      "html": f"{base}/html?version={r['version']}"}  # fmt: skip
    return found


@router.get("/report-events")
def report_events(
    archive: ArchiveDep, who: Who, after: int = 0, limit: int = Query(100, ge=1, le=1000)
) -> list[dict[str, Any]]:
    """The outbox (signed, amended, critical...) of the caller's institutions, after an id."""
    found = events.read(archive, after=after, limit=limit, institution_ids=who.institution_ids)
    return [e.as_dict() for e in found]


@router.get("/report-notifications")
def critical_notifications(archive: ArchiveDep, who: Who, all: bool = False) -> Any:
    """Critical findings not yet acknowledged (``all``: acknowledged ones too)."""
    found = events.notifications(archive, who.institution_ids, include_acknowledged=all)
    return [e.as_dict() for e in found]


class AckBody(BaseModel):
    id: int


@router.post("/report-notifications/ack")
def acknowledge(body: AckBody, archive: ArchiveDep, who: Who) -> dict[str, Any]:
    return events.acknowledge(archive, body.id, who.name, who.institution_ids).as_dict()


# ------------------------------------------------------------------ templates and phrases


@router.get("/report-templates")
def list_templates(archive: ArchiveDep, who: Who) -> list[dict[str, Any]]:
    """The templates; category fields carry their scale's values, so an editor can offer them."""
    from radcloud.report import templates as tpl

    found = list(service.templates(archive, who).values())
    for t in found:
        for f in t["fields"]:
            if f.get("type") == "category" and f.get("system") in tpl.CATEGORY_SYSTEMS:
                f["options"] = tpl.options(f)
                f["system_label"] = tpl.CATEGORY_SYSTEMS[f["system"]].label
    return found


@router.post("/report-templates", status_code=201)
def save_template(body: dict[str, Any], archive: ArchiveDep, who: Who) -> dict[str, Any]:
    """Add a template, or replace one of the same name, for the caller's institution."""
    return service.save_template(archive, who, body)


class PhraseBody(BaseModel):
    title: str = Field(min_length=1, max_length=128)
    text: str = Field(min_length=1, max_length=5000)
    field: str = Field("", max_length=64)
    shared: bool = Field(False, description="A department phrase (templates.manage)")


@router.get("/report-phrases")
def list_phrases(archive: ArchiveDep, who: Who, field: str | None = None) -> Any:
    """The caller's own phrases and the department's."""
    return phrases.list_phrases(archive, who, field)


@router.post("/report-phrases", status_code=201)
def add_phrase(body: PhraseBody, archive: ArchiveDep, who: Who) -> dict[str, Any]:
    return phrases.add(archive, who, body.title, body.text, field=body.field, shared=body.shared)


@router.delete("/report-phrases", status_code=204)
def delete_phrase(archive: ArchiveDep, who: Who, id: int = Query(...)) -> None:
    phrases.delete_phrase(archive, who, id)
