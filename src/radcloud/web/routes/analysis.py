"""AI analysis results, runs and corrections, per study and series.

``/api/analysis/modules`` lists the modules; results, versions, runs,
cancel / retry and human corrections hang off
``/api/analysis/studies/{study}[/series/{series}]`` (``?module=`` names the
module where one is meant).  Label maps are DICOM SEG objects in the same
study, fetched over DICOMweb by the UIDs the results carry; meshes are
Encapsulated STL instances there too, and ``/model`` serves them as one GLB or
OBJ scene (or one mesh as STL).  Only translation
here; the work is in :mod:`radcloud.analysis.service` and :mod:`radcloud.jobs`.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Query, Response
from pydantic import BaseModel, Field

from radcloud.analysis import registry, service
from radcloud.errors import InvalidRequest
from radcloud.jobs import queue
from radcloud.web.deps import ArchiveDep, Who, validated

router = APIRouter()
_S = "/analysis/studies/{study}"
_SE = _S + "/series/{series}"
Module = Annotated[str | None, Query(max_length=64, description="module name, e.g. lung")]


class EditBody(BaseModel):
    findings: dict[str, Any] = Field(description="the corrected findings (whole object)")
    summary: str | None = Field(None, max_length=20000)
    comment: str = Field("", max_length=2000, description="why it was corrected")
    base_version: int | None = Field(None, description="the version the correction is based on")


@router.get("/analysis/modules")
def list_modules() -> list[dict[str, Any]]:
    """The analysis modules this server runs, with what series each accepts."""
    return [registry.describe(m) for m in registry.modules()]


@router.get(_S)
def study_results(study: str, archive: ArchiveDep, who: Who) -> list[dict[str, Any]]:
    """Current results (newest version) of every series of the study."""
    return service.results(archive, who, study)


@router.get(_S + "/jobs")
def study_jobs(study: str, archive: ArchiveDep, who: Who) -> list[dict[str, Any]]:
    """Analysis jobs of the study (state, progress, failure reason), newest first."""
    return service.jobs(archive, who, study)


@router.get(_SE)
def series_results(study: str, series: str, archive: ArchiveDep, who: Who) -> list[dict[str, Any]]:
    return service.results(archive, who, study, series)


@router.get(_SE + "/versions")
def result_versions(
    study: str, series: str, archive: ArchiveDep, who: Who, module: Module = None
) -> list[dict[str, Any]]:
    """Every version of one result: the AI's and each human correction, oldest first."""
    service.check_series(archive, who, study, series)
    if not module:
        raise InvalidRequest("name the module: ?module=")
    return service.versions(archive, who, study, series, module)


@router.get(_SE + "/model", response_class=Response)
def model(
    study: str,
    series: str,
    archive: ArchiveDep,
    who: Who,
    module: Module = None,
    format: Annotated[str, Query(pattern="^(glb|obj|stl)$")] = "glb",  # noqa: A002
    mesh: Annotated[int | None, Query(ge=0, description="index of one mesh (STL)")] = None,
) -> Response:
    """The result's 3D model: every mesh as GLB (default) or OBJ, or one mesh as STL."""
    from radcloud.analysis import mesh_dicom

    service.check_series(archive, who, study, series)
    data, media, name = mesh_dicom.model_file(archive, who, study, series, module or "lung",
                                              format, mesh)  # fmt: skip
    return Response(data, media_type=media,
                    headers={"Content-Disposition": f'attachment; filename="{name}"'})  # fmt: skip


@router.post(_SE + "/run", status_code=202)
def run(
    study: str, series: str, archive: ArchiveDep, who: Who, module: Module = None
) -> dict[str, Any]:
    """Queue ``module`` (default: every module that takes the series)."""
    service.check_series(archive, who, study, series)
    ids = service.request_run(archive, who, study, series, module or None)
    return {"jobs": [queue.get(archive, i) for i in ids]}


@router.post(_SE + "/cancel")
def cancel(
    study: str, series: str, archive: ArchiveDep, who: Who, module: Module = None
) -> dict[str, Any]:
    """Cancel the newest analysis job on the series (of ``module``)."""
    job_id = service.latest_job(archive, who, study, series, module)
    return queue.cancel(archive, job_id)


@router.post(_SE + "/retry")
def retry(
    study: str, series: str, archive: ArchiveDep, who: Who, module: Module = None
) -> dict[str, Any]:
    """Run the newest failed or cancelled analysis job on the series again."""
    job_id = service.latest_job(archive, who, study, series, module)
    return queue.retry(archive, job_id)


@router.put(_SE + "/result")
def correct(
    study: str,
    series: str,
    archive: ArchiveDep,
    who: Who,
    module: Module = None,
    body: Annotated[Any, Body()] = None,
) -> dict[str, Any]:
    """A person's correction: stored as a new version, the AI's version kept as it was.

    The body is checked only once the series is known to be visible, so a study
    the caller may not see answers 404 whatever was sent.
    """
    service.check_series(archive, who, study, series)
    if body is None or not module:
        raise InvalidRequest("send ?module= and a JSON body with the corrected findings")
    edit = validated(EditBody, body, InvalidRequest)
    return service.edit(
        archive, who, study, series, module, findings=edit.findings, summary=edit.summary,
        comment=edit.comment, base_version=edit.base_version,
    )  # fmt: skip
