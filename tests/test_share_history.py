"""Patient links that open the exam history; one exam per call; de-identified report text.

A patient link (``scope`` patient, made when a study is published) opens every
study published to its patient at the institution, newest first; a study of
the same patient not yet published, and any other patient's study, answer 404
exactly like a study that does not exist.  A de-identified link shows the
report's text with the patient's, visit's and people's identifiers gone and
dates shifted by the images' shift.  Runs on SQLite and PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import pytest
from _report_world import ACCESSION, PATIENT, World, make_world
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydicom.uid import generate_uid
from sqlalchemy import select

from radcloud.archive import ingest
from radcloud.archive.service import Archive
from radcloud.auth import accounts
from radcloud.report import service
from radcloud.share import links, publish
from radcloud.share.models import Share
from radcloud.testing.phantom import chest_ct_series
from radcloud.web.app import create_app

ANSWER = "P100"  # last four of the patient ID (the phantom has no phone)


@pytest.fixture(autouse=True)
def _fresh_limits() -> Iterator[None]:
    links.FAILURES.reset()
    yield
    links.FAILURES.reset()


def _study(archive: Archive, patient: str, pid: str, day: str) -> str:
    series = list(chest_ct_series(2, 32, 32, patient_name=patient, patient_id=pid,
                                  study_date=day, accession_number=f"ACC-{day}"))  # fmt: skip
    for ds in series:
        ingest.store_dataset(archive, ds, principal=accounts.cli_principal(1))
    return str(series[0].StudyInstanceUID)


def _report(w: World, study: str, text: str, *, sign: bool = True) -> None:
    a = w.archive
    service.create(a, w.attending, study)
    service.save(a, w.attending, study, {"fields": {"findings": text, "impression": text}})
    if sign:
        service.sign(a, w.attending, study)


def _token(out: dict[str, Any]) -> str:
    assert out["published"], out
    return str(out["url"].split("t=")[1])


def _opened(app: FastAPI, token: str, answer: str | None = ANSWER) -> TestClient:
    """A browser of its own (one share cookie each) that passed the link's check."""
    client = TestClient(app)
    r = client.post("/api/s/verify", json={"token": token, "answer": answer})
    assert r.status_code == 200, r.text
    return client


@dataclass
class History:
    world: World
    app: FastAPI
    old: str  # 2024, published (signed)
    new: str  # 2026 (the world's study), published (signed)
    draft: str  # 2025, same patient, report not signed, not published
    other: str  # another patient's study, published
    token_old: str
    token_new: str


@pytest.fixture
def history(archive: Archive) -> History:
    w = make_world(archive, slices=2, size=32)  # Wang Fang, P100, 2026-01-01
    old = _study(archive, PATIENT, "P100", "20240105")
    draft = _study(archive, PATIENT, "P100", "20250301")
    other = _study(archive, "Li^Lei", "P200", "20251111")
    _report(w, old, "双肺未见异常。")
    _report(w, w.study, "右肺上叶结节。")
    _report(w, draft, "草稿。", sign=False)
    _report(w, other, "别人的报告。")
    token_old = _token(publish.publish_study(archive, old))
    token_new = _token(publish.publish_study(archive, w.study))
    publish.publish_study(archive, other)
    return History(w, create_app(archive), old, w.study, draft, other, token_old, token_new)


def test_a_patient_link_lists_the_published_exams_newest_first(history: History) -> None:
    h = history
    client = _opened(h.app, h.token_new)
    exams = client.get("/api/s/exams", params={"t": h.token_new}).json()
    assert [e["study"] for e in exams] == [h.new, h.old]  # not the draft, not Li Lei's
    assert [e["StudyDate"] for e in exams] == ["20260101", "20240105"]
    assert [(e["report"], e["modalities"]) for e in exams] == [("ready", ["CT"])] * 2
    assert [e["own"] for e in exams] == [True, False]
    assert exams[0]["StudyDescription"] and exams[1]["instances"] == 2  # images: not the SR, PDF
    # the link made for the older exam shows the exam published after it too
    older = _opened(h.app, h.token_old)
    assert [e["study"] for e in older.get("/api/s/exams", params={"t": h.token_old}).json()] \
        == [h.new, h.old]  # fmt: skip
    with h.world.archive.read() as conn:
        scopes = conn.execute(select(Share.scope, Share.kind).where(
            Share.created_by == links.PUBLISHER)).all()  # fmt: skip
    assert {tuple(s) for s in scopes} == {("patient", "patient")}


def test_each_call_reads_one_exam_of_the_scope_and_nothing_else(history: History) -> None:
    h = history
    client = _opened(h.app, h.token_new)
    t = h.token_new
    older = client.get("/api/s/study", params={"t": t, "study": h.old})
    assert older.status_code == 200 and older.json()["StudyDate"] == "20240105"
    assert client.get("/api/s/study", params={"t": t}).json()["StudyDate"] == "20260101"
    series = client.get("/api/s/series", params={"t": t, "study": h.old}).json()
    sop = series[0]["instances"][0]["SOPInstanceUID"]
    path = f"/api/s/series/{series[0]['SeriesInstanceUID']}/instances/{sop}/rendered"
    assert client.get(path, params={"t": t, "study": h.old}).status_code == 200
    assert client.get(path, params={"t": t}).status_code == 404  # not an image of the newer exam
    report = client.get("/api/s/report", params={"t": t, "study": h.old, "format": "json"})
    assert report.status_code == 200 and "双肺未见异常" in str(report.json()["texts"])
    film = client.get("/api/s/film", params={"t": t, "study": h.old})
    assert film.status_code == 200 and film.content.startswith(b"\x89PNG")
    # not yet published, another patient's, unknown: one and the same 404
    answers = []
    for study in (h.draft, h.other, generate_uid()):
        for what in ("study", "series", "report", "film", "dicom"):
            r = client.get(f"/api/s/{what}", params={"t": t, "study": study})
            answers.append((r.status_code, r.json()["detail"]))
    assert set(answers) == {(404, links.NO_EXAM)}


def test_reshares_are_one_exam_unless_all_are_asked_for(history: History) -> None:
    h = history
    client = _opened(h.app, h.token_new)
    one = client.post("/api/s/reshare", json={"token": h.token_new, "study": h.old,
                                              "verify": "none", "hours": 24})  # fmt: skip
    assert one.status_code == 201, one.text
    assert one.json()["share"]["scope"] == "study"
    child = _opened(h.app, one.json()["token"], None)
    exams = child.get("/api/s/exams", params={"t": one.json()["token"]}).json()
    assert len(exams) == 1 and exams[0]["StudyDate"] != "20240105"  # de-identified, shifted
    assert exams[0]["study"] not in (h.old, h.new)
    # the one exam is all it opens (by the parent's UIDs or its own)
    for study in (h.new, h.old):
        r = child.get("/api/s/study", params={"t": one.json()["token"], "study": study})
        assert r.status_code == 404
    # "all exams": the parent's whole scope, dates shifted by one offset (intervals kept)
    every = client.post("/api/s/reshare", json={"token": h.token_new, "all_exams": True,
                                                "verify": "none"})  # fmt: skip
    assert every.status_code == 201 and every.json()["share"]["scope"] == "patient"
    token = every.json()["token"]
    both = _opened(h.app, token, None).get("/api/s/exams", params={"t": token}).json()
    days = [datetime.strptime(e["StudyDate"], "%Y%m%d").date() for e in both]
    assert len(both) == 2 and days[0] - days[1] == date(2026, 1, 1) - date(2024, 1, 5)
    # never outlives the parent; a study link cannot widen to all exams
    parent = links.get(h.world.archive, every.json()["share"]["parent_id"])
    assert datetime.fromisoformat(every.json()["share"]["expires_at"]) <= parent["expires_at"]
    r = child.post("/api/s/reshare", json={"token": one.json()["token"], "all_exams": True})
    assert r.status_code == 422
    # a study outside the parent's scope cannot be re-shared
    r = client.post("/api/s/reshare", json={"token": h.token_new, "study": h.draft})
    assert (r.status_code, r.json()["detail"]) == (404, links.NO_EXAM)


def test_a_manager_makes_a_patient_scope_link(history: History) -> None:
    h = history
    w = h.world
    made = links.create(w.archive, w.attending, h.draft, kind="patient", verify="id4",
                        deidentify=False, scope="patient")  # fmt: skip
    client = _opened(h.app, made.token)
    exams = client.get("/api/s/exams", params={"t": made.token}).json()
    # its own study (not published) and the published ones, newest first
    assert [e["study"] for e in exams] == [h.new, h.draft, h.old]
    assert exams[1]["report"] == "pending" and exams[1]["own"]


# ------------------------------------------------------------------ de-identified report text


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield str(k)
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)


def test_a_deidentified_link_shows_the_report_text_without_identifiers(archive: Archive) -> None:
    w = make_world(archive, slices=2, size=32)  # Wang^Fang=王芳, P100, ACC-R1, 2026-01-01
    text = (f"患者王芳（ID P100，检查号 {ACCESSION}）于 2026-01-01 行胸部 CT，"
            "与 2025年12月3日 及 20251203 片比较，Wang Fang 右肺结节稳定。"
            "张主任 审核，radcloud。")  # fmt: skip
    _report(w, w.study, text)
    made = links.create(archive, w.attending, w.study, kind="share", verify="none")
    assert made.share["deidentify"] is True
    app = create_app(archive)
    client = _opened(app, made.token, None)
    t = made.token
    shared_date = client.get("/api/s/study", params={"t": t}).json()["StudyDate"]
    delta = datetime.strptime(shared_date, "%Y%m%d").date() - date(2026, 1, 1)
    assert delta.days < 0  # the images' dates moved
    view = client.get("/api/s/report", params={"t": t, "format": "json", "lang": "zh"})
    assert view.status_code == 200, view.text
    body = view.json()
    forbidden = [
        "王芳",
        "Wang",
        "Fang",
        "P100",
        ACCESSION,
        "2026-01-01",
        "20260101",
        "2025年12月3日",
        "20251203",
        "2025-12-03",
        "张主任",
        "att.zhang",
        "radcloud",
    ]
    leaks = [(s, f) for s in _strings(body) for f in forbidden if f.lower() in s.lower()]
    assert not leaks
    # dates in the text moved by the images' offset (both spellings), the header's too
    prose = " ".join(_strings(body["texts"]))
    assert f"{date(2026, 1, 1) + delta:%Y-%m-%d}" in prose
    moved = date(2025, 12, 3) + delta
    assert f"{moved.year}年{moved.month}月{moved.day}日" in prose and f"{moved:%Y%m%d}" in prose
    assert body["study"]["study_date_display"] == f"{date(2026, 1, 1) + delta:%Y-%m-%d}"
    assert body["study"]["patient_id"].startswith("ANON-") and body["deidentified"] is True
    assert "右肺结节稳定" in prose
    # the identified forms stay with the patient's own link: PDF and e-film refused here
    assert client.get("/api/s/report", params={"t": t}).status_code == 404
    assert client.get("/api/s/film", params={"t": t}).status_code == 404
    summary = client.get("/api/s/study", params={"t": t}).json()
    assert (summary["report"], summary["report_pdf"], summary["film"]) == (True, False, False)
