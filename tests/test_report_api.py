"""The report REST API: the editor's calls with real tokens, the HIS/EMR fetch, notices."""

from __future__ import annotations

import pytest
from _report_world import FINDINGS, IMPRESSION, World, make_world
from fastapi.testclient import TestClient

from radcloud.archive.service import Archive
from radcloud.auth import sessions
from radcloud.web.app import create_app


@pytest.fixture
def world(archive: Archive) -> World:
    return make_world(archive, slices=2, size=64)


def _h(w: World, who: str) -> dict[str, str]:
    p = getattr(w, who)
    return {"Authorization": "Bearer " + sessions.issue(w.archive, p.user_id, sessions.API)}


def test_report_workflow_over_http(world: World) -> None:
    client = TestClient(create_app(world.archive))
    url = f"/api/studies/{world.study}/report"
    res, att, doc = _h(world, "resident"), _h(world, "attending"), _h(world, "clinician")
    empty = client.get(url, headers=res).json()
    assert empty == {"report": None, "suggested_template": "chest_ct"}
    r = client.post(url, json={}, headers=res)
    assert r.status_code == 201 and r.json()["status"] == "draft"
    assert client.post(url, json={}, headers=res).status_code == 409  # one report per study
    edit = {"version": 1, "fields": {"findings": FINDINGS, "impression": IMPRESSION,
                                     "lung_rads": "4A"}}  # fmt: skip
    r = client.put(url, json=edit, headers=res)
    assert r.status_code == 200 and r.json()["version"] == 2
    assert client.put(url, json=edit, headers=res).status_code == 409  # stale version
    r = client.put(url, json={"fields": {"lung_rads": "9"}}, headers=res)
    assert r.status_code == 422 and r.headers["content-type"] == "application/problem+json"
    assert client.put(url, json={"fields": {"findings": "x"}}, headers=att).status_code == 423
    assert client.post(url + "/submit", json={}, headers=res).json()["status"] == "preliminary"
    r = client.post(url + "/sign", json={}, headers=res)
    assert r.status_code == 403  # a resident cannot sign
    assert client.get(url, headers=doc).json()["report"] is None  # not signed yet
    r = client.post(url + "/sign", json={}, headers=att)
    assert r.status_code == 200 and r.json()["status"] == "final", r.text
    assert r.json()["sr_sop_uid"] and r.json()["pdf_sop_uid"]
    r = client.put(url, json={"fields": {"findings": "later"}}, headers=att)
    assert r.status_code == 409  # a signed report cannot be edited
    r = client.post(url + "/amend", json={"fields": {"lung_rads": "4B"}, "reason": "更正"},
                    headers=att)  # fmt: skip
    assert r.status_code == 200 and r.json()["status"] == "amended"
    versions = client.get(url + "/versions", headers=att).json()
    assert [v["action"] for v in versions] == ["create", "save", "submit", "sign", "amend"]
    assert [v["action"] for v in client.get(url + "/versions", headers=doc).json()] == [
        "sign", "amend"]  # fmt: skip
    page = client.get(url + "/html", params={"lang": "zh"}, headers=doc)
    assert page.status_code == 200 and "王芳" in page.text and "修订报告" in page.text
    assert "default-src 'none'" in page.headers["content-security-policy"]
    pdf = client.get(url + "/pdf", headers=doc)
    assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF-")
    film = client.get(url + "/film", params={"format": "png"}, headers=doc)
    assert film.status_code == 200 and film.content.startswith(b"\x89PNG")


def test_his_fetches_signed_reports_by_accession_or_patient(world: World) -> None:
    client = TestClient(create_app(world.archive))
    url = f"/api/studies/{world.study}/report"
    att, doc, far = _h(world, "attending"), _h(world, "clinician"), _h(world, "stranger")
    client.post(url, json={}, headers=att)
    client.put(url, json={"fields": {"impression": IMPRESSION},
                          "critical": {"flag": True, "note": "气胸"}}, headers=att)  # fmt: skip
    assert client.get("/api/reports", params={"accession": "ACC-R1"}, headers=doc).json() == []
    notices = client.get("/api/report-notifications", headers=doc).json()
    assert [n["payload"]["note"] for n in notices] == ["气胸"]
    r = client.post("/api/report-notifications/ack", json={"id": notices[0]["id"]}, headers=doc)
    assert r.status_code == 200 and r.json()["acknowledged_by"] == "dr.ward"
    assert client.get("/api/report-notifications", headers=doc).json() == []
    assert client.post(url + "/sign", json={}, headers=att).status_code == 200
    by_acc = client.get("/api/reports", params={"accession": "ACC-R1"}, headers=doc).json()
    by_pid = client.get("/api/reports", params={"patient_id": "P100"}, headers=doc).json()
    assert [r["study_uid"] for r in by_acc] == [r["study_uid"] for r in by_pid] == [world.study]
    assert by_acc[0]["content"]["fields"]["impression"] == IMPRESSION
    assert by_acc[0]["status"] == "final" and by_acc[0]["signer"] == "张主任"
    pdf = client.get(by_acc[0]["links"]["pdf"], headers=doc)
    assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF-")
    assert pdf.headers["cache-control"] == "no-store"
    assert client.get("/api/reports", params={"patient_id": "P100"}, headers=far).json() == []
    assert client.get(url, headers=far).status_code == 404  # not 403: existence not revealed
    kinds = [e["kind"] for e in client.get("/api/report-events", headers=doc).json()]
    assert kinds == ["report.created", "report.critical", "report.final"]
    assert client.get("/api/report-events", headers=far).json() == []


def test_templates_and_phrases_over_http(world: World) -> None:
    client = TestClient(create_app(world.archive))
    res, boss = _h(world, "resident"), _h(world, "admin")
    names = [t["name"] for t in client.get("/api/report-templates", headers=res).json()]
    assert {"generic", "chest_ct", "chest_xray", "coronary_cta", "calcium_score"} <= set(names)
    tpl = {"name": "knee_mr", "title": {"en": "MR Knee", "zh": "膝关节 MR"},
           "fields": [{"key": "findings", "type": "text"}]}  # fmt: skip
    assert client.post("/api/report-templates", json=tpl, headers=res).status_code == 403
    assert client.post("/api/report-templates", json=tpl, headers=boss).status_code == 201
    r = client.post("/api/report-phrases", json={"title": "正常", "text": "未见异常。"},
                    headers=res)  # fmt: skip
    assert r.status_code == 201
    assert [p["title"] for p in client.get("/api/report-phrases", headers=res).json()] == ["正常"]
    r = client.delete("/api/report-phrases", params={"id": r.json()["id"]}, headers=res)
    assert r.status_code == 204
    assert client.get("/api/report-phrases", headers=res).json() == []
