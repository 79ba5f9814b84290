"""The analysis frame: accept rules, series-complete auto-run, jobs, results as JSON and
DICOM SEG in the same study, versions (AI vs human), report prefill, the REST API.

Runs on SQLite and PostgreSQL.  A small test module keeps most tests fast; one test
runs the real lung module end to end on a phantom chest CT.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any

import numpy as np
import pydicom
import pytest
from fastapi.testclient import TestClient
from pydicom.uid import generate_uid
from sqlalchemy import select

from radcloud.analysis import auto, registry, service
from radcloud.analysis.base import (
    Accepts,
    AnalysisOutput,
    Code,
    LabelMap,
    RunContext,
    Segment,
    SeriesInfo,
)
from radcloud.archive import ingest, retrieve
from radcloud.archive.service import Archive
from radcloud.auth import accounts, sessions
from radcloud.auth.access import SYSTEM
from radcloud.errors import Conflict, InvalidRequest
from radcloud.jobs import queue
from radcloud.jobs.models import DONE, FAILED
from radcloud.store.models import Series, Study
from radcloud.testing import phantom
from radcloud.volume.build import Volume
from radcloud.web.app import create_app

BODY = Segment(1, "Body", Code("38266002", "Entire body as a whole"))


class BodyModule:
    """Test module: labels everything denser than -400 HU as 'Body'."""

    name = "test-body"
    version = "1.0"
    title = "Test: body mask"
    auto = False
    accepts = Accepts(modalities=("CT",), min_instances=3)
    fail = False

    def recognise(self, info: SeriesInfo, volume: Volume) -> str | None:
        return None

    def run(self, volume: Volume, ctx: RunContext) -> AnalysisOutput:
        ctx.progress(0.5, "thresholding")
        if self.fail:
            raise RuntimeError("model file is corrupt")
        labels = (volume.data > -400).astype(np.uint8)
        n = int(labels.sum())
        return AnalysisOutput(
            findings={"body_voxels": n, "slices": int(volume.data.shape[0])},
            summary=f"{n} body voxels.",
            label_maps=[LabelMap("body", labels, [BODY])],
            report_values={"impression": "body found"},
        )


@pytest.fixture
def body_module() -> Iterator[BodyModule]:
    module = BodyModule()
    remove = registry.register(module)
    yield module
    remove()


def _store(archive: Archive, series: list[Any], institution: int = 1) -> tuple[str, str]:
    for ds in series:
        r = ingest.store_dataset(archive, ds, principal=accounts.cli_principal(institution))
    return r.study_uid, r.series_uid


def _tiny(archive: Archive, institution: int = 1, **kw: Any) -> tuple[str, str]:
    return _store(archive, list(phantom.tiny_ct_series(n=5, size=32, **kw)), institution)


def _run_all(archive: Archive) -> None:
    while queue.run_next(archive, "test-worker") is not None:
        pass


# ------------------------------------------------------------------ rules


def test_accept_rules_say_why_a_series_is_refused() -> None:
    rule = Accepts(modalities=("CT",), body_parts=("CHEST",), contrast=False,
                   max_slice_thickness_mm=3.0, min_instances=20)  # fmt: skip
    ok = SeriesInfo("1", "2", "CT", body_part="chest", contrast=False, slice_thickness=1.0,
                    instances=100)  # fmt: skip
    assert rule.reason(ok) is None
    cases = {
        "modality MR is not CT": {"modality": "MR"},
        "10 images; at least 20 needed": {"instances": 10},
        "body part HEAD is not CHEST": {"body_part": "HEAD"},
        "contrast-enhanced": {"contrast": True},
        "slices of 5 mm; at most 3 mm": {"slice_thickness": 5.0},
        "image type LOCALIZER": {"image_types": ("ORIGINAL", "LOCALIZER")},
    }
    for reason, change in cases.items():
        assert rule.reason(SeriesInfo(**{**ok.__dict__, **change})) == reason


def test_the_lung_module_is_registered_and_runs_by_itself_on_chest_ct() -> None:
    lung = registry.get("lung")
    assert lung.auto
    chest = SeriesInfo("1", "2", "CT", body_part="CHEST", slice_thickness=1.25, instances=300)
    assert lung in registry.automatic(chest)
    assert lung not in registry.automatic(SeriesInfo("1", "2", "MR", instances=300))
    assert lung not in registry.automatic(SeriesInfo("1", "2", "CT", instances=2))


# ------------------------------------------------------------------ a run, stored


def test_a_run_stores_findings_and_a_seg_in_the_same_study(
    archive: Archive, body_module: BodyModule
) -> None:
    study, series = _tiny(archive)
    [job_id] = service.request_run(archive, SYSTEM, study, series, "test-body")
    _run_all(archive)
    job = queue.get(archive, job_id)
    assert job["state"] == DONE, job["error"]
    [result] = service.results(archive, SYSTEM, study)
    assert result["module"] == "test-body" and result["origin"] == "ai"
    assert result["findings"]["slices"] == 5 and result["findings"]["body_voxels"] > 0
    assert result["version"] == result["ai_version"] == 1
    assert result["outputs"]["label_maps"][0]["segments"][0]["code"]["value"] == "38266002"
    # the SEG went through ingest into the same study, as its own series
    refs = retrieve.find_instances(archive, study, principal=SYSTEM)
    seg_refs = [r for r in refs if r.sop_uid == result["seg_sop_uid"]]
    assert len(seg_refs) == 1 and seg_refs[0].series_uid != series
    seg = pydicom.dcmread(io.BytesIO(retrieve.read_verified(archive, seg_refs[0])))
    assert seg.Modality == "SEG" and seg.StudyInstanceUID == study
    item = seg.SegmentSequence[0]
    assert item.SegmentLabel == "Body"
    assert item.SegmentedPropertyTypeCodeSequence[0].CodeValue == "38266002"
    assert item.SegmentedPropertyTypeCodeSequence[0].CodingSchemeDesignator == "SCT"
    referenced = {r.ReferencedSOPInstanceUID
                  for r in seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence}  # fmt: skip
    assert referenced == {r.sop_uid for r in refs if r.series_uid == series}


def test_a_failing_module_fails_its_job_with_the_reason_and_can_be_retried(
    archive: Archive, body_module: BodyModule
) -> None:
    study, series = _tiny(archive)
    body_module.fail = True
    [job_id] = service.request_run(archive, SYSTEM, study, series, "test-body")
    _run_all(archive)
    job = queue.get(archive, job_id)
    assert job["state"] == FAILED
    assert "RuntimeError: model file is corrupt" in job["error"]
    assert service.results(archive, SYSTEM, study) == []
    body_module.fail = False
    queue.retry(archive, job_id)
    _run_all(archive)
    assert queue.get(archive, job_id)["state"] == DONE
    assert len(service.results(archive, SYSTEM, study)) == 1


def test_a_module_that_does_not_take_the_series_is_refused(
    archive: Archive, body_module: BodyModule
) -> None:
    study, series = _store(archive, list(phantom.tiny_ct_series(n=2, size=32)))
    with pytest.raises(InvalidRequest, match="at least 3 needed"):
        service.request_run(archive, SYSTEM, study, series, "test-body")


# ------------------------------------------------------------------ human corrections


def test_a_correction_is_a_new_version_and_the_ai_version_is_kept(
    archive: Archive, body_module: BodyModule
) -> None:
    study, series = _tiny(archive)
    service.request_run(archive, SYSTEM, study, series, "test-body")
    _run_all(archive)
    ai = service.results(archive, SYSTEM, study)[0]
    edited = service.edit(archive, accounts.cli_principal(1), study, series, "test-body",
                          findings={**ai["findings"], "body_voxels": 1}, comment="table",
                          base_version=1)  # fmt: skip
    assert edited["version"] == 2 and edited["origin"] == "human"
    assert edited["ai_version"] == 1 and edited["findings"]["body_voxels"] == 1
    assert edited["seg_sop_uid"] == ai["seg_sop_uid"]
    history = service.versions(archive, SYSTEM, study, series, "test-body")
    assert [(v["version"], v["origin"]) for v in history] == [(1, "ai"), (2, "human")]
    assert history[0]["findings"] == ai["findings"]  # the AI's output untouched
    with pytest.raises(Conflict, match="now version 2"):
        service.edit(archive, SYSTEM, study, series, "test-body", findings={}, base_version=1)
    # a new AI run is the next version; the human correction stays in the history
    service.request_run(archive, SYSTEM, study, series, "test-body")
    _run_all(archive)
    history = service.versions(archive, SYSTEM, study, series, "test-body")
    assert [(v["version"], v["origin"]) for v in history] == [(1, "ai"), (2, "human"), (3, "ai")]


def test_results_are_offered_to_the_report_as_ai_prefill(
    archive: Archive, body_module: BodyModule
) -> None:
    study, series = _tiny(archive)
    service.request_run(archive, SYSTEM, study, series, "test-body")
    _run_all(archive)
    [found] = service.ResultsSource().results_for(archive, study)
    assert found.analysis == "test-body" and found.version == "1.0"
    assert found.values == {"impression": "body found"}
    assert service.ResultsSource().results_for(archive, "1.2.3.4") == []


# ------------------------------------------------------------------ series complete: auto-run


def _chest(archive: Archive, **kw: Any) -> tuple[str, str]:
    series = list(phantom.chest_ct_series(n_slices=24, rows=96, columns=96,
                                          pixel_spacing=round(0.7 * 512 / 96, 4),
                                          slice_thickness=5.0, **kw))  # fmt: skip
    return _store(archive, series)


def _numeric_items(ds: Any) -> list[tuple[str, float, str]]:
    """(concept code, value, unit code) of every NUM content item in an SR tree."""
    found = []
    for item in getattr(ds, "ContentSequence", []):
        if item.ValueType == "NUM":
            mv = item.MeasuredValueSequence[0]
            found.append((item.ConceptNameCodeSequence[0].CodeValue, float(mv.NumericValue),
                          mv.MeasurementUnitsCodeSequence[0].CodeValue))  # fmt: skip
        found += _numeric_items(item)
    return found


def test_a_complete_chest_ct_is_analysed_by_itself_once(make_archive: Any) -> None:
    archive = make_archive(analysis_quiet_seconds=0)
    study, series = _chest(archive)
    waiting = make_archive(analysis_quiet_seconds=3600)  # another node, still in quiet time
    assert auto.scan(waiting) == []
    ids = auto.scan(archive)
    assert len(ids) == 1
    _run_all(archive)
    job = queue.get(archive, ids[0])
    assert job["state"] == DONE, job["error"]
    assert job["requested_by"] == "analysis-auto"
    [result] = service.results(archive, SYSTEM, study)
    assert result["module"] == "lung"
    f = result["findings"]
    assert f["right_lung"]["volume_ml"] > 500 and f["left_lung"]["volume_ml"] > 500
    labels = [s["label"] for s in result["outputs"]["label_maps"][0]["segments"]]
    assert labels == ["Right lung", "Left lung", "Trachea"]
    assert "Lung volume" in result["summary"]
    assert result["seg_sop_uid"]
    # the measurements as a TID 1500 SR in the same study
    [sr_ref] = [r for r in retrieve.find_instances(archive, study, principal=SYSTEM)
                if r.sop_uid == result["sr_sop_uid"]]  # fmt: skip
    sr = pydicom.dcmread(io.BytesIO(retrieve.read_verified(archive, sr_ref)))
    assert sr.Modality == "SR" and sr.ContentTemplateSequence[0].TemplateIdentifier == "1500"
    numbers = _numeric_items(sr)
    assert ("118565006", f["right_lung"]["volume_ml"], "ml") in numbers
    assert ("118565006", f["left_lung"]["volume_ml"], "ml") in numbers
    # scanning again (this node after a restart, or another node) queues nothing new
    archive.caches.pop("analysis.scanned_until", None)
    assert auto.scan(archive) == ids
    _run_all(archive)
    assert len(service.versions(archive, SYSTEM, study, series, "lung")) == 1
    with archive.read() as conn:
        modalities = set(conn.scalars(
            select(Series.modality).join(Study).where(Study.study_uid == study)))  # fmt: skip
    assert modalities == {"CT", "SEG", "SR", "M3D"}  # M3D: the meshes as Encapsulated STL


def test_a_chest_without_a_header_saying_so_is_recognised_from_the_image(
    make_archive: Any,
) -> None:
    archive = make_archive(analysis_quiet_seconds=0)
    series = list(phantom.chest_ct_series(n_slices=24, rows=96, columns=96,
                                          pixel_spacing=round(0.7 * 512 / 96, 4),
                                          slice_thickness=5.0))  # fmt: skip
    for ds in series:
        for keyword in ("BodyPartExamined", "SeriesDescription", "StudyDescription"):
            if keyword in ds:
                delattr(ds, keyword)
    study, _series = _store(archive, series)
    [job_id] = auto.scan(archive)
    _run_all(archive)
    assert queue.get(archive, job_id)["state"] == DONE
    [result] = service.results(archive, SYSTEM, study)
    assert result["findings"]["is_chest_ct"] is True


def test_a_non_chest_ct_is_not_analysed_as_lungs(make_archive: Any) -> None:
    archive = make_archive(analysis_quiet_seconds=0)
    series = list(phantom.tiny_ct_series(n=24, size=32))
    for ds in series:
        ds.BodyPartExamined = "HEAD"
        ds.SeriesDescription = "Head routine"
        ds.StudyDescription = "CT HEAD"
    study, _series = _store(archive, series)
    [job_id] = auto.scan(archive)
    _run_all(archive)
    job = queue.get(archive, job_id)
    assert job["state"] == DONE and "HEAD is not the chest" in job["result"]["skipped"]
    assert service.results(archive, SYSTEM, study) == []


# ------------------------------------------------------------------ the REST API


@pytest.fixture
def api(archive: Archive, body_module: BodyModule) -> tuple[TestClient, dict[str, str]]:
    user = accounts.create_user(archive, "rad", "analysis-pass-1", roles=["radiologist"])
    token = sessions.issue(archive, user, sessions.API)
    return TestClient(create_app(archive)), {"Authorization": f"Bearer {token}"}


def test_the_api_runs_serves_and_corrects_results(
    archive: Archive, api: tuple[TestClient, dict[str, str]]
) -> None:
    client, auth = api
    study, series = _tiny(archive)
    base = f"/api/analysis/studies/{study}/series/{series}"
    modules = client.get("/api/analysis/modules", headers=auth).json()
    assert {"lung", "test-body"} <= {m["name"] for m in modules}
    r = client.post(base + "/run", params={"module": "test-body"}, headers=auth)
    assert r.status_code == 202, r.text
    assert r.json()["jobs"][0]["state"] == "queued"
    _run_all(archive)
    jobs = client.get(f"/api/analysis/studies/{study}/jobs", headers=auth).json()
    assert jobs[0]["state"] == "done"
    [result] = client.get(base, headers=auth).json()
    assert result["findings"]["slices"] == 5
    r = client.put(base + "/result", params={"module": "test-body"}, headers=auth,
                   json={"findings": {"slices": 5, "body_voxels": 0}, "base_version": 1,
                         "comment": "no body"})  # fmt: skip
    assert r.status_code == 200, r.text
    assert r.json()["origin"] == "human" and r.json()["author"] == "rad"
    versions = client.get(base + "/versions", params={"module": "test-body"}, headers=auth)
    assert [v["origin"] for v in versions.json()] == ["ai", "human"]
    bad = client.put(base + "/result", params={"module": "test-body"}, headers=auth,
                     json={"findings": "not an object"})  # fmt: skip
    assert bad.status_code == 422
    stale = client.put(base + "/result", params={"module": "test-body"}, headers=auth,
                       json={"findings": {}, "base_version": 1})  # fmt: skip
    assert stale.status_code == 409


def test_the_api_cancels_and_retries_the_newest_job(
    archive: Archive, api: tuple[TestClient, dict[str, str]]
) -> None:
    client, auth = api
    study, series = _tiny(archive)
    base = f"/api/analysis/studies/{study}/series/{series}"
    assert client.post(base + "/cancel", headers=auth).status_code == 409  # nothing to cancel
    client.post(base + "/run", params={"module": "test-body"}, headers=auth)
    r = client.post(base + "/cancel", params={"module": "test-body"}, headers=auth)
    assert r.json()["state"] == "cancelled"
    r = client.post(base + "/retry", params={"module": "test-body"}, headers=auth)
    assert r.json()["state"] == "queued"
    _run_all(archive)
    assert client.get(f"/api/analysis/studies/{study}/jobs", headers=auth).json()[0]["state"] == (
        "done"
    )


def test_another_institutions_study_answers_404_before_the_body_is_read(
    archive: Archive, api: tuple[TestClient, dict[str, str]]
) -> None:
    client, auth = api
    other = accounts.create_institution(archive, "other", "Other Hospital").id
    study, series = _tiny(archive, institution=other, patient_id="OTHER1",
                          study_uid=generate_uid())  # fmt: skip
    service.request_run(archive, SYSTEM, study, series, "test-body")
    _run_all(archive)
    base = f"/api/analysis/studies/{study}/series/{series}"
    assert client.get(f"/api/analysis/studies/{study}", headers=auth).status_code == 404
    assert client.get(f"/api/analysis/studies/{study}/jobs", headers=auth).status_code == 404
    assert client.post(base + "/run", headers=auth).status_code == 404
    assert client.put(base + "/result", params={"module": "test-body"}, headers=auth,
                      json={"findings": "not an object"}).status_code == 404  # fmt: skip
    assert client.put(base + "/result", params={"module": "test-body"}, headers=auth,
                      json={"findings": {}}).status_code == 404  # fmt: skip


def test_the_server_runtime_analyses_a_new_chest_ct_by_itself(make_archive: Any) -> None:
    """What ``radcloud serve`` starts: the worker thread, its scan, the prefill source."""
    import time

    from radcloud.analysis import runtime
    from radcloud.report import prefill

    archive = make_archive(analysis_quiet_seconds=0, jobs_poll_seconds=0.1)
    stop = runtime.start(archive)
    try:
        study, _series = _chest(archive)
        deadline = time.monotonic() + 120
        while not service.results(archive, SYSTEM, study):
            assert time.monotonic() < deadline, service.jobs(archive, SYSTEM, study)
            time.sleep(0.1)
        values = {r.analysis: r.values for r in prefill.results(archive, study)}
        assert values["lung"]["lung_volume_ml"] > 1000
    finally:
        stop()
    assert "jobs.worker" not in archive.caches
    assert prefill.results(archive, study) == []  # the source went away with the runtime
