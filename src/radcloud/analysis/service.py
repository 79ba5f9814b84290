"""Running modules on series, storing what they return, serving and correcting results.

The task ``analysis.run`` (args ``study_uid``, ``series_uid``, ``module``) is
what both job runners execute: it checks the module accepts the series, builds
the volume (:class:`radcloud.volume.service.VolumeService`), runs the module,
writes label maps as DICOM SEG into the same study through the one ingest path,
and stores findings and summary as version 1 (or the next version) with
``origin = "ai"``.  A person's correction is a new version with
``origin = "human"``; the AI's version is never overwritten, and
``ai_version`` keeps pointing at it.
"""

from __future__ import annotations

import logging
from typing import Any

import orjson
from sqlalchemy import func, insert, select, update

from radcloud.analysis import registry
from radcloud.analysis.base import AnalysisModule, AnalysisOutput, RunContext, SeriesInfo
from radcloud.analysis.models import AnalysisResult, AnalysisVersion
from radcloud.archive.service import Archive
from radcloud.auth.access import SYSTEM, Principal, study_filter
from radcloud.auth.permissions import Perm
from radcloud.errors import Conflict, Forbidden, InvalidRequest, NotFound
from radcloud.jobs import queue
from radcloud.jobs.models import Job
from radcloud.store.db import as_utc
from radcloud.store.models import Instance, Series, Study

log = logging.getLogger(__name__)

TASK = "analysis.run"
AI, HUMAN = "ai", "human"


# ------------------------------------------------------------------ series facts


def _first(meta: dict[str, Any], tag: str) -> Any:
    values = meta.get(tag, {}).get("Value") or [None]
    return values[0]


def series_info(archive: Archive, study_uid: str, series_uid: str) -> SeriesInfo:
    """The header facts accept rules look at, from the index (no file is read)."""
    with archive.read() as conn:
        row = conn.execute(
            select(Series.id, Series.modality, Series.body_part, Series.series_description,
                   Study.study_description)
            .join(Study, Series.study_fk == Study.id)
            .where(Series.series_uid == series_uid, Study.study_uid == study_uid)
        ).first()  # fmt: skip
        if row is None:
            raise NotFound("no such series in the archive")
        count = conn.scalar(select(func.count(Instance.id)).where(Instance.series_fk == row.id))
        meta_text = conn.scalar(
            select(Instance.metadata_json).where(Instance.series_fk == row.id).limit(1)
        )
    meta = orjson.loads(meta_text) if meta_text else {}
    thickness = _first(meta, "00180050")
    image_type = meta.get("00080008", {}).get("Value") or []
    contrast = None
    if meta:
        contrast = bool(_first(meta, "00180010") or _first(meta, "00181040"))
    return SeriesInfo(
        study_uid=study_uid,
        series_uid=series_uid,
        modality=row.modality or "",
        body_part=row.body_part or "",
        series_description=row.series_description or "",
        study_description=row.study_description or "",
        contrast=contrast,
        slice_thickness=float(thickness) if thickness not in (None, "") else None,
        instances=int(count or 0),
        image_types=tuple(str(t).upper() for t in image_type),
    )


# ------------------------------------------------------------------ the task


@queue.task(TASK)
def run_task(archive: Archive, args: dict[str, Any], ctx: queue.JobContext) -> dict[str, Any]:
    """Run one module on one series and store the result (see the module docstring)."""
    from radcloud.volume.service import VolumeService

    module = registry.get(str(args["module"]))
    study_uid, series_uid = str(args["study_uid"]), str(args["series_uid"])
    info = series_info(archive, study_uid, series_uid)
    refused = module.accepts.reason(info)
    if refused:
        return {"skipped": refused}
    ctx.progress(0.02, "building the volume")
    volume = VolumeService.of(archive).volume(study_uid, series_uid, principal=SYSTEM)
    refused = module.recognise(info, volume)
    if refused:
        return {"skipped": refused}
    ctx.progress(0.1, f"running {module.name}")

    def progress(fraction: float, message: str) -> None:
        ctx.progress(0.1 + 0.8 * max(0.0, min(1.0, fraction)), message)

    output = module.run(volume, RunContext(progress=progress, info=info, options=args))
    if not output.label_maps and not output.findings.get("is_chest_ct", True):
        return {"skipped": output.summary, "findings": output.findings}
    ctx.progress(0.9, "storing the results")
    outputs: dict[str, Any] = {"label_maps": [], "meshes": []}
    seg_uid = ""
    if output.label_maps:
        from radcloud.analysis import dicom_out

        seg_uid = dicom_out.store_seg(archive, volume, module, output.label_maps)
        outputs["label_maps"] = [
            {"name": lm.name, "segments": [_segment_json(s) for s in lm.segments]}
            for lm in output.label_maps
        ]
        outputs["label_maps"][0]["seg_sop_uid"] = seg_uid
        for lm, entry in zip(output.label_maps[1:], outputs["label_maps"][1:], strict=True):
            entry["seg_sop_uid"] = dicom_out.store_seg(archive, volume, module, [lm])
    sr_uid = ""
    if output.measurements:
        from radcloud.analysis import dicom_out

        sr_uid = dicom_out.store_sr(archive, volume, module, output.measurements)
    if output.meshes:  # as Encapsulated STL in the study; GLB / OBJ made on request
        from radcloud.analysis import mesh_dicom

        outputs["meshes"] = mesh_dicom.store_meshes(archive, volume, module, output.meshes)
    version = save_ai_result(archive, info, module, output, seg_uid=seg_uid, sr_uid=sr_uid,
                             outputs=outputs, job_id=ctx.job_id)  # fmt: skip
    return {"module": module.name, "version": version, "seg_sop_uid": seg_uid,
            "sr_sop_uid": sr_uid, "summary": output.summary}  # fmt: skip


def _segment_json(s: Any) -> dict[str, Any]:
    return {"number": s.number, "label": s.label, "code": s.code.as_json(),
            "category": s.category.as_json()}  # fmt: skip


# ------------------------------------------------------------------ storing


def _series_fks(conn: Any, series_uid: str) -> tuple[int, int]:
    row = conn.execute(
        select(Series.id, Series.study_fk).where(Series.series_uid == series_uid)
    ).first()
    if row is None:
        raise NotFound("no such series in the archive")
    return int(row[0]), int(row[1])


def _add_version(conn: Any, result_id: int, version: int, **values: Any) -> None:
    conn.execute(insert(AnalysisVersion).values(result_fk=result_id, version=version, **values))


def save_ai_result(
    archive: Archive,
    info: SeriesInfo,
    module: AnalysisModule,
    output: AnalysisOutput,
    *,
    seg_uid: str = "",
    sr_uid: str = "",
    outputs: dict[str, Any] | None = None,
    job_id: int | None = None,
) -> int:
    """Store a module's output as the next version (origin ``ai``); returns its number."""
    report = {"template": output.report_template, "values": output.report_values}

    def write() -> int:
        with archive.write() as conn:
            series_fk, study_fk = _series_fks(conn, info.series_uid)
            row = conn.execute(
                select(AnalysisResult.id, AnalysisResult.version).where(
                    AnalysisResult.series_fk == series_fk, AnalysisResult.module == module.name
                )
            ).first()
            t = queue.now()
            if row is None:
                result_id: Any = conn.scalar(
                    insert(AnalysisResult)
                    .values(series_fk=series_fk, study_fk=study_fk, module=module.name,
                            module_version=module.version, version=1, ai_version=1,
                            job_fk=job_id, created_at=t, updated_at=t)
                    .returning(AnalysisResult.id)
                )  # fmt: skip
                version = 1
            else:
                result_id, version = int(row[0]), int(row[1]) + 1
                conn.execute(
                    update(AnalysisResult)
                    .where(AnalysisResult.id == result_id)
                    .values(version=version, ai_version=version, module_version=module.version,
                            job_fk=job_id, updated_at=t)
                )  # fmt: skip
            _add_version(
                conn, int(result_id), version, origin=AI,
                author=f"{module.name} {module.version}", comment="",
                findings_json=_dumps(output.findings), summary=output.summary,
                report_json=_dumps(report), seg_sop_uid=seg_uid, sr_sop_uid=sr_uid,
                outputs_json=_dumps(outputs or {}), created_at=t,
            )  # fmt: skip
            return version

    return int(archive.retrying(write))


def _dumps(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY).decode()


# ------------------------------------------------------------------ reading


def _visible_series(archive: Archive, p: Principal, study_uid: str, series_uid: str | None) -> Any:
    """NotFound unless ``p`` sees the study (and the series, when given)."""
    stmt = select(Study.id).where(Study.study_uid == study_uid, study_filter(p))
    with archive.read() as conn:
        study_fk = conn.scalar(stmt)
        if study_fk is None:
            raise NotFound("no such study in the archive")
        if series_uid is None:
            return int(study_fk), None
        series_fk = conn.scalar(
            select(Series.id).where(Series.series_uid == series_uid, Series.study_fk == study_fk)
        )
    if series_fk is None:
        raise NotFound("no such series in the study")
    return int(study_fk), int(series_fk)


def check_series(archive: Archive, p: Principal, study_uid: str, series_uid: str) -> None:
    _visible_series(archive, p, study_uid, series_uid)


def _version_json(r: Any) -> dict[str, Any]:
    created = as_utc(r.created_at)
    return {
        "module": r.module,
        "module_version": r.module_version,
        "series_uid": r.series_uid,
        "version": r.version,
        "current_version": r.current_version,
        "ai_version": r.ai_version,
        "origin": r.origin,
        "author": r.author,
        "comment": r.comment,
        "findings": orjson.loads(r.findings_json),
        "summary": r.summary,
        "report": orjson.loads(r.report_json),
        "seg_sop_uid": r.seg_sop_uid,
        "sr_sop_uid": r.sr_sop_uid,
        "outputs": orjson.loads(r.outputs_json),
        "created_at": created.isoformat() if created else None,
    }


def _query(study_fk: int, series_fk: int | None, module: str | None, current: bool) -> Any:
    R, V = AnalysisResult, AnalysisVersion  # noqa: N806
    stmt = (
        select(R.module, R.module_version, R.version.label("current_version"), R.ai_version,
               V.version, V.origin, V.author, V.comment, V.findings_json, V.summary,
               V.report_json, V.seg_sop_uid, V.sr_sop_uid, V.outputs_json, V.created_at,
               Series.series_uid)
        .join(V, V.result_fk == R.id)
        .join(Series, Series.id == R.series_fk)
        .where(R.study_fk == study_fk)
    )  # fmt: skip
    if current:
        stmt = stmt.where(V.version == R.version)
    if series_fk is not None:
        stmt = stmt.where(R.series_fk == series_fk)
    if module is not None:
        stmt = stmt.where(R.module == module)
    return stmt.order_by(Series.series_uid, R.module, V.version)


def results(
    archive: Archive, p: Principal, study_uid: str, series_uid: str | None = None
) -> list[dict[str, Any]]:
    """Current version of every result in the study (or series) that ``p`` sees."""
    study_fk, series_fk = _visible_series(archive, p, study_uid, series_uid)
    with archive.read() as conn:
        rows = conn.execute(_query(study_fk, series_fk, None, True)).all()
    return [_version_json(r) for r in rows]


def versions(
    archive: Archive, p: Principal, study_uid: str, series_uid: str, module: str
) -> list[dict[str, Any]]:
    """Every version of one result, oldest first (the AI's and each correction)."""
    study_fk, series_fk = _visible_series(archive, p, study_uid, series_uid)
    with archive.read() as conn:
        rows = conn.execute(_query(study_fk, series_fk, module, False)).all()
    return [_version_json(r) for r in rows]


# ------------------------------------------------------------------ human edits


def edit(
    archive: Archive,
    p: Principal,
    study_uid: str,
    series_uid: str,
    module: str,
    *,
    findings: dict[str, Any],
    summary: str | None = None,
    comment: str = "",
    base_version: int | None = None,
) -> dict[str, Any]:
    """A person's correction: a new version (``origin = human``); the AI's stays as it was.

    ``base_version`` (the version the person edited) guards against two people
    overwriting each other: it must be the current one.
    """
    if not (p.can(Perm.STUDY_ANNOTATE) or p.can(Perm.STUDY_WRITE)):
        raise Forbidden(f"{p.describe()} may not correct analysis results")
    study_fk, series_fk = _visible_series(archive, p, study_uid, series_uid)
    if not isinstance(findings, dict):
        raise InvalidRequest("findings must be a JSON object")

    def write() -> int:
        with archive.write() as conn:
            cur = conn.execute(
                select(AnalysisResult.id, AnalysisResult.version, AnalysisVersion.summary,
                       AnalysisVersion.report_json, AnalysisVersion.seg_sop_uid,
                       AnalysisVersion.sr_sop_uid, AnalysisVersion.outputs_json)
                .join(AnalysisVersion, AnalysisVersion.result_fk == AnalysisResult.id)
                .where(AnalysisResult.series_fk == series_fk, AnalysisResult.module == module,
                       AnalysisVersion.version == AnalysisResult.version)
            ).first()  # fmt: skip
            if cur is None:
                raise NotFound(f"no {module} result for this series")
            res = cur
            if base_version is not None and base_version != res.version:
                raise Conflict(
                    f"the result changed meanwhile (now version {res.version}, "
                    f"edited {base_version}); reload and edit again"
                )
            version = res.version + 1
            t = queue.now()
            got = conn.execute(
                update(AnalysisResult)
                .where(AnalysisResult.id == res.id, AnalysisResult.version == res.version)
                .values(version=version, updated_at=t)
            ).rowcount
            if got != 1:
                raise Conflict("the result changed meanwhile; reload and edit again")
            _add_version(
                conn, res.id, version, origin=HUMAN, author=p.name[:128], comment=comment,
                findings_json=_dumps(findings),
                summary=cur.summary if summary is None else summary,
                report_json=cur.report_json, seg_sop_uid=cur.seg_sop_uid,
                sr_sop_uid=cur.sr_sop_uid, outputs_json=cur.outputs_json, created_at=t,
            )  # fmt: skip
            return version

    version = int(archive.retrying(write))
    from radcloud.auth import audit

    audit.record(archive, p, "analysis.edit", study_uid=study_uid, target=series_uid,
                 detail={"module": module, "version": version})  # fmt: skip
    return versions(archive, p, study_uid, series_uid, module)[-1]


# ------------------------------------------------------------------ requests and jobs


def request_run(
    archive: Archive,
    p: Principal,
    study_uid: str,
    series_uid: str,
    module: str | None = None,
    *,
    auto: bool = False,
) -> list[int]:
    """Queue ``module`` (default: every module that accepts the series) on a series."""
    info = series_info(archive, study_uid, series_uid)
    if module is not None:
        chosen = [registry.get(module)]
        refused = chosen[0].accepts.reason(info)
        if refused:
            raise InvalidRequest(f"{module} does not take this series: {refused}")
    else:
        chosen = registry.automatic(info) if auto else [
            m for m in registry.modules() if m.accepts.reason(info) is None
        ]  # fmt: skip
        if not chosen and not auto:
            raise InvalidRequest("no analysis module takes this series")
    ids = []
    for m in chosen:
        key = f"{'auto' if auto else 'run'}:{m.name}:{series_uid}:{info.instances}"
        ids.append(
            queue.enqueue(
                archive, TASK, {"study_uid": study_uid, "series_uid": series_uid,
                                "module": m.name},
                study_uid=study_uid, series_uid=series_uid, dedupe_key=key,
                requested_by=p.name, once=auto,
            )
        )  # fmt: skip
    return ids


def jobs(
    archive: Archive, p: Principal, study_uid: str, series_uid: str | None = None
) -> list[dict[str, Any]]:
    """The analysis jobs of a study (or series) that ``p`` sees, newest first."""
    _visible_series(archive, p, study_uid, series_uid)
    stmt = select(Job).where(Job.study_uid == study_uid, Job.kind == TASK)
    if series_uid is not None:
        stmt = stmt.where(Job.series_uid == series_uid)
    with archive.read() as conn:
        rows = conn.execute(stmt.order_by(Job.id.desc()).limit(200)).all()
    return [queue.describe(r) for r in rows]


def latest_job(
    archive: Archive, p: Principal, study_uid: str, series_uid: str, module: str | None
) -> int:
    """The newest analysis job on the series (of ``module``, when given)."""
    for job in jobs(archive, p, study_uid, series_uid):
        if module is None or job["args"].get("module") == module:
            return int(job["id"])
    raise Conflict("there is no analysis job on this series")


# ------------------------------------------------------------------ report prefill


class ResultsSource:
    """Current analysis results of a study, offered to the report editor as AI prefill."""

    def results_for(self, archive: Archive, study_uid: str) -> list[Any]:
        from radcloud.report.prefill import AnalysisResult as Prefill

        try:
            found = results(archive, SYSTEM, study_uid)
        except NotFound:
            return []
        out = []
        for r in found:
            values = (r.get("report") or {}).get("values") or {}
            if values:
                template = r["report"].get("template")
                out.append(Prefill(r["module"], r["module_version"], dict(values), template))
        return out
