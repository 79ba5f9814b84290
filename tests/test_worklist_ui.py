"""The study list page on ``/api/worklist`` (issue 4): what the page asks of the API, and the
page itself in a real browser.

API: the patient-ID filter (exact, or a prefix ending in ``*``, which the time line and the
ID field use), the "AI done" status (an analysis result and no report), and sorting by
description.

Browser: ``tests/js/worklist.spec.mjs`` against ``radcloud serve`` holding seven generated
studies of two patients (张伟 Zhang Wei, M; 李娜 Li Na, F) on different dates (relative to
today, for the quick date buttons), modalities and report states.  It filters by pinyin,
modality and the quick date buttons, sorts by date both ways, pages, opens a row's series
thumbnails, opens a patient's time line and a study from it, and checks that the back button
restores the filters.  Screenshots go to ``/tmp/radcloud-shots/worklist-*.png``.
"""

from __future__ import annotations

import datetime as dt
import io
import json
from pathlib import Path
from typing import Any

import _browser
import numpy as np
import pytest
from _auth import headers
from dicom_factory import make_ct, make_ct_dataset
from fastapi.testclient import TestClient
from pydicom.uid import generate_uid
from sqlalchemy import insert, select

from radcloud.analysis.models import AnalysisResult
from radcloud.archive import ingest
from radcloud.archive.service import Archive
from radcloud.config import Settings
from radcloud.report.models import Report
from radcloud.store.models import Series, Study
from radcloud.web.app import create_app
from radcloud.web.routes import app_pages

SPEC = _browser.JS / "worklist.spec.mjs"
ZHANG = ("Zhang^Wei=张^伟", "WL-1001", "M", "19650310")
LI = ("Li^Na=李^娜", "WL-2002", "F", "19880720")

#: (key, patient, days ago, modality, body part, description, series count, status)
STUDIES = [
    ("a1", ZHANG, 0, "CT", "CHEST", "CT chest plain", 2, "unread"),
    ("a2", ZHANG, 2, "CR", "CHEST", "Chest PA", 1, "ai_done"),
    ("a3", ZHANG, 30, "MR", "HEAD", "MR brain", 2, "in_progress"),
    ("a4", ZHANG, 400, "CT", "ABDOMEN", "CT abdomen enhanced", 1, "signed"),
    ("b1", LI, 5, "US", "ABDOMEN", "US liver", 1, "unread"),
    ("b2", LI, 1, "DX", "CHEST", "Chest AP", 1, "signed"),
    ("b3", LI, 0, "CT", "HEAD", "CT head", 1, "unread"),
]
REPORT_STATUS = {"in_progress": "draft", "signed": "final"}


def _picture(seed: int, size: int = 96) -> np.ndarray:
    """A body-like disc with an offset bright spot, different for each series."""
    rows, cols = np.mgrid[0:size, 0:size]
    c = size / 2
    img = np.where((rows - c) ** 2 + (cols - c) ** 2 <= (0.42 * size) ** 2, 1064, 24)
    sx, sy = c + 0.2 * size * np.cos(seed), c + 0.2 * size * np.sin(seed)
    img[(rows - sy) ** 2 + (cols - sx) ** 2 <= (0.1 * size) ** 2] = 2024
    return img.astype(np.uint16)


def study_files(today: dt.date) -> dict[str, tuple[str, list[bytes]]]:
    """Each study's UID and its instances (Part 10 bytes), by key."""
    out: dict[str, tuple[str, list[bytes]]] = {}
    for n, (key, (name, pid, sex, birth), ago, modality, part, desc, nseries, _) in enumerate(
        STUDIES
    ):
        study, files = generate_uid(), []
        date = (today - dt.timedelta(days=ago)).strftime("%Y%m%d")
        for s in range(nseries):
            ds = make_ct_dataset(
                study, generate_uid(), patient_name=name, patient_id=pid, study_date=date,
                study_time=f"{9 + n:02d}0000", modality=modality, accession=f"ACC-{key.upper()}",
                series_number=s + 1, n_rows=96, charset="ISO_IR 192", PatientSex=sex,
                PatientBirthDate=birth, BodyPartExamined=part, StudyDescription=desc,
                SeriesDescription=f"{desc} {s + 1}", WindowCenter=40, WindowWidth=400,
                InstitutionName="radcloud test hospital",
            )  # fmt: skip
            ds.PixelData = _picture(n * 3 + s).tobytes()
            buf = io.BytesIO()
            ds.save_as(buf, enforce_file_format=True)
            files.append(buf.getvalue())
        out[key] = (study, files)
    return out


def set_states(archive: Archive, uids: dict[str, str]) -> None:
    """Reports (draft / final) and an AI result as the table ``STUDIES`` says."""
    with archive.write() as conn:
        for key, *_, status in STUDIES:
            study_fk = conn.scalar(select(Study.id).where(Study.study_uid == uids[key]))
            if status in REPORT_STATUS:
                conn.execute(
                    insert(Report).values(
                        study_fk=study_fk, institution_fk=1, template="generic",
                        status=REPORT_STATUS[status], critical=key == "b2",
                    )
                )  # fmt: skip
            elif status == "ai_done":
                series_fk = conn.scalar(select(Series.id).where(Series.study_fk == study_fk))
                conn.execute(
                    insert(AnalysisResult).values(
                        series_fk=series_fk, study_fk=study_fk, module="lung", module_version="1"
                    )
                )


# ------------------------------------------------------------------ the API the page uses


@pytest.fixture
def world(archive: Archive) -> dict[str, Any]:
    today = dt.date(2026, 3, 15)
    uids = {}
    for key, (study, files) in study_files(today).items():
        for data in files:
            ingest.store_bytes(archive, data)
        uids[key] = study
    other = make_ct(generate_uid(), generate_uid(), patient_id="WL-10010", patient_name="X^Y")
    uids["other"] = ingest.store_bytes(archive, other).study_uid  # an ID that starts alike
    set_states(archive, uids)
    client = TestClient(create_app(archive))
    return {"uids": uids, "client": client, "h": headers(archive, roles=["radiologist"])}


def _items(world: dict[str, Any], **params: object) -> list[dict[str, Any]]:
    r = world["client"].get("/api/worklist", params=params, headers=world["h"])
    assert r.status_code == 200, r.text
    return list(r.json()["items"])


def _keys(world: dict[str, Any], **params: object) -> list[str]:
    by_uid = {v: k for k, v in world["uids"].items()}
    return [by_uid[i["study_uid"]] for i in _items(world, **params)]


def test_patient_id_exact_or_prefix(world: dict[str, Any]) -> None:
    assert _keys(world, patient_id="WL-1001") == ["a1", "a2", "a3", "a4"]  # not WL-10010
    assert set(_keys(world, patient_id="WL-1001*")) == {"a1", "a2", "a3", "a4", "other"}
    assert set(_keys(world, patient_id="WL-2*")) == {"b1", "b2", "b3"}
    assert _keys(world, patient_id="WL_1*") == []  # "_" is no wildcard
    assert _keys(world, patient_id="WL-1001", patient="li") == []  # both must hold


def test_ai_done_is_its_own_status(world: dict[str, Any]) -> None:
    assert _keys(world, status="ai_done") == ["a2"]
    assert "a2" not in _keys(world, status="unread")
    by_key = {k: i for k, i in zip(_keys(world), _items(world), strict=True)}
    assert by_key["a2"]["status"] == "ai_done" and by_key["a2"]["ai_done"] is True
    assert by_key["a4"]["status"] == "signed" and by_key["a4"]["ai_done"] is False
    assert by_key["b2"]["critical"] is True


def test_sort_by_description(world: dict[str, Any]) -> None:
    up = [i["description"] for i in _items(world, sort="description", patient_id="WL-*")]
    assert up == sorted(up) and up[:2] == ["", "CT abdomen enhanced"]  # "other": none
    down = [i["description"] for i in _items(world, sort="-description", patient_id="WL-*")]
    assert down == up[::-1]


# ------------------------------------------------------------------ the browser


def _store(base: str, files: dict[str, tuple[str, list[bytes]]]) -> None:
    _browser.stow(base, [data for _, instances in files.values() for data in instances])


@pytest.mark.slow
def test_worklist_in_a_real_browser(tmp_path: Path) -> None:
    from _server import Server

    if not (app_pages.APP / "index.html").is_file():
        pytest.fail("the front end is not built: run scripts/setup")
    _browser.node()
    data = tmp_path / "data"
    server = Server(data, RADCLOUD_ADMIN_PASSWORD=_browser.ADMIN_PASSWORD)
    server.start()
    try:
        base = f"http://127.0.0.1:{server.http_port}"
        files = study_files(dt.date.today())
        _store(base, files)
        uids = {k: v[0] for k, v in files.items()}
        archive = Archive.open(Settings(data_dir=data, dicom_port=0))  # type: ignore[call-arg]
        try:
            set_states(archive, uids)
        finally:
            archive.close()
        shots = tmp_path / "shots"
        env = {
            "STUDY_UID": uids["a1"],
            "PHANTOM": json.dumps(
                {
                    "size": 96,
                    "downloads": str(tmp_path / "downloads"),
                    "uids": uids,
                    "today": dt.date.today().isoformat(),
                }
            ),  # fmt: skip
        }
        run = _browser.run_spec(SPEC, base, shots, tmp_path, env, 240)
        _browser.keep_shots(shots, {p.stem: f"worklist-{p.stem}" for p in shots.glob("*.png")})
        assert run.returncode == 0, f"browser scenario failed:\n{run.stdout}\n{run.stderr}"
        assert "ok: worklist passed" in run.stdout
        made = {p.stem for p in shots.glob("*.png")}
        assert {"desktop", "timeline", "phone", "phone-timeline"} <= made
    finally:
        server.stop()
