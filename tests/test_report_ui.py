"""The report editor (``/report?study=…``, web/src/report.ts) used in a real browser.

The archive is prepared in-process (the same service functions the API calls):
two synthetic chest CTs, a resident, an attending, a department phrase, one
key image flagged in the viewer (KOS), and for the second study a draft that
an analysis source pre-filled (no analysis module runs inside ``radcloud
serve`` yet, so the AI values are written before the server starts).  Then
``tests/js/report.spec.mjs`` drives Chromium against ``radcloud serve``:

- the resident starts the chest CT report from the suggested template, fills
  structured fields and free text, inserts a department phrase at the cursor,
  adds a phrase of their own, flags a critical finding, drags the key image in,
  saves, submits; their "Sign" is refused with the server's words;
- the attending (Chinese UI) signs; the page turns read-only; the PDF preview
  link answers a PDF; a tablet-sized view is captured;
- on the AI-prefilled study the attending's lock shows on the resident's page,
  the AI values are marked, signing is refused until they are accepted or
  edited, then the report is signed and amended with a reason.

Afterwards the API is asked what was stored.  Screenshots are copied to
``/tmp/radcloud-shots/report-*.png``.
"""

from __future__ import annotations

import json
from pathlib import Path

import _browser
import httpx
import pytest
from _report_world import FakeAnalysis, World, make_world
from fastapi.testclient import TestClient

from radcloud.archive import annotations as marks
from radcloud.archive import ingest
from radcloud.archive.service import Archive
from radcloud.auth import accounts, sessions
from radcloud.config import Settings
from radcloud.report import phrases, prefill, service
from radcloud.testing.phantom import chest_ct_series
from radcloud.web.app import create_app
from radcloud.web.routes import app_pages

SPEC = _browser.JS / "report.spec.mjs"
PASSWORD = "report-pass-1"  # the people of _report_world
FINDINGS = "Right upper lobe: one solid nodule, mean diameter 9.5 mm, smooth margin."
IMPRESSION = "Solid nodule of the right upper lobe, Lung-RADS 4A."
PHRASE = "Low-dose CT in 3 months is recommended."
AI_VALUES = {"nodule_count": 2, "lung_rads": "3", "largest_nodule_mm": 7.5}


def _prepare(data: Path) -> dict[str, str]:
    """The archive the server will open: studies, people, phrase, key image, an AI draft."""
    archive = Archive.open(Settings(data_dir=data, dicom_port=0))  # type: ignore[call-arg]
    try:
        w = make_world(archive, slices=5, size=128)
        phrases.add(archive, w.admin, "LDCT 3 months", PHRASE, field="recommendation", shared=True)
        series = _series_of(archive, w)
        marks.save(
            archive, w.study, {"keyImages": [{"series": series, "sop": w.sops[2], "frame": 1}]},
            principal=w.resident,
        )  # fmt: skip
        second = list(
            chest_ct_series(3, 96, 96, seed=1, patient_name="Li^Lei=李雷", patient_id="P200",
                            accession_number="ACC-R2")
        )  # fmt: skip
        for ds in second:
            ingest.store_dataset(archive, ds, principal=accounts.cli_principal(1))
        ai_study = str(second[0].StudyInstanceUID)
        remove = prefill.register_source(FakeAnalysis(ai_study, AI_VALUES))
        try:
            draft = service.create(archive, w.resident, ai_study, "chest_ct")
        finally:
            remove()
        assert draft["ai_pending"] == sorted(AI_VALUES)
        service.save(archive, w.resident, ai_study, {"fields": {"impression": IMPRESSION}})
        service.unlock(archive, w.resident, ai_study)
        return {"STUDY_UID": w.study, "AI_STUDY_UID": ai_study, "KEY_SOP": w.sops[2]}
    finally:
        archive.close()


def _series_of(archive: Archive, w: World) -> str:
    """The series UID of the first study (the world knows its instances only)."""
    from sqlalchemy import select

    from radcloud.store.models import Instance, Series

    with archive.read() as conn:
        uid = conn.scalar(
            select(Series.series_uid)
            .join(Instance, Instance.series_fk == Series.id)
            .where(Instance.sop_uid == w.sops[0])
        )  # fmt: skip
    return str(uid)


def test_page_shell_and_template_scales(archive: Archive) -> None:
    """``/report`` is the public page shell; templates carry their category scales."""
    w = make_world(archive, slices=1, size=32)
    client = TestClient(create_app(archive))
    r = client.get("/report?study=1.2.3")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert "default-src 'none'" in r.headers["content-security-policy"]
    assert w.resident.user_id is not None
    token = sessions.issue(archive, w.resident.user_id, sessions.API)
    found = client.get("/api/report-templates", headers={"Authorization": f"Bearer {token}"})
    chest = next(t for t in found.json() if t["name"] == "chest_ct")
    lung = next(f for f in chest["fields"] if f["key"] == "lung_rads")
    assert lung["system_label"] == "Lung-RADS"
    assert list(lung["options"]) == ["0", "1", "2", "3", "4A", "4B", "4X"]
    assert lung["options"]["4A"] == {"en": "Suspicious", "zh": "可疑"}
    cta = next(t for t in found.json() if t["name"] == "coronary_cta")
    assert "5" in next(f for f in cta["fields"] if f["key"] == "cad_rads")["options"]


def _login(http: httpx.Client, user: str) -> dict[str, str]:
    r = http.post("/api/auth/login", json={"username": user, "password": PASSWORD})
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['token']}"}


@pytest.mark.slow
def test_report_editor_in_a_real_browser(tmp_path: Path) -> None:
    from _server import Server

    if not (app_pages.APP / "index.html").is_file():
        pytest.fail("the front end is not built: run scripts/setup (npm ci + vite build in web/)")
    _browser.node()
    ids = _prepare(tmp_path / "data")
    server = Server(tmp_path / "data")
    server.start()
    try:
        base = f"http://127.0.0.1:{server.http_port}"
        shots = tmp_path / "shots"
        env = {
            **ids,
            "PASSWORD": PASSWORD,
            "TEXTS": json.dumps({"findings": FINDINGS, "impression": IMPRESSION, "phrase": PHRASE}),
            "PHANTOM": json.dumps({"size": 128, "downloads": str(tmp_path / "downloads")}),
        }
        run = _browser.run_spec(SPEC, base, shots, tmp_path, env, 300)
        _browser.keep_shots(shots, {p.stem: f"report-{p.stem}" for p in shots.glob("*.png")})
        assert run.returncode == 0, f"browser scenario failed:\n{run.stdout}\n{run.stderr}"
        assert "ok: report editor passed" in run.stdout

        with httpx.Client(base_url=base, timeout=60) as http:
            att = _login(http, "att.zhang")
            url = f"/api/studies/{ids['STUDY_UID']}/report"
            report = http.get(url, headers=att).json()["report"]
            assert report["status"] == "final" and report["signer"] == "张主任"
            assert report["author"] == "李住院"
            fields = report["content"]["fields"]
            assert fields["findings"] == FINDINGS and fields["impression"] == IMPRESSION
            assert fields["nodule_count"] == 1 and fields["largest_nodule_mm"] == 9.5
            assert fields["nodule_type"] == "solid" and fields["lung_rads"] == "4A"
            assert PHRASE in fields["recommendation"]
            keys = report["content"]["key_images"]
            assert [k["sop_uid"] for k in keys] == [ids["KEY_SOP"]]
            assert keys[0]["caption"] == "RUL nodule" and keys[0]["mode"] == "original"
            assert report["critical"] and report["content"]["critical"]["flag"]
            assert report["sr_sop_uid"] and report["pdf_sop_uid"]
            actions = [v["action"] for v in http.get(url + "/versions", headers=att).json()]
            assert actions[0] == "create" and actions[-2:] == ["submit", "sign"]
            assert "save" in actions
            pdf = http.get(url + "/pdf", headers=att)
            assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF")
            res = _login(http, "res.li")
            mine = http.get("/api/report-phrases", headers=res).json()
            assert any(p["title"] == "My follow-up" and not p["shared"] for p in mine)

            ai = http.get(f"/api/studies/{ids['AI_STUDY_UID']}/report", headers=att).json()
            ai = ai["report"]
            assert ai["status"] == "amended" and ai["ai_pending"] == []
            states = {k: m["state"] for k, m in ai["content"]["marks"].items()}
            assert states == {"nodule_count": "accepted", "lung_rads": "edited",
                              "largest_nodule_mm": "accepted"}  # fmt: skip
            assert ai["content"]["fields"]["lung_rads"] == "4A"
            shot = ai["content"]["key_images"]
            assert len(shot) == 1 and shot[0]["mode"] == "screenshot"
            assert shot[0]["sop_class_uid"].startswith("1.2.840.10008.5.1.4.1.1.7")  # sec. capture
            assert ai["content"]["fields"]["nodule_count"] == 2
            assert "amended in the browser" in ai["content"]["fields"]["impression"]
            ai_versions = http.get(
                f"/api/studies/{ids['AI_STUDY_UID']}/report/versions", headers=att
            ).json()
            assert ai_versions[-1]["action"] == "amend"
            assert ai_versions[-1]["reason"] == "Nodule size corrected after review"
        made = {p.stem for p in shots.glob("*.png")}
        assert {"resident-draft", "resident-refused", "signed", "tablet", "ai-pending"} <= made
    finally:
        server.stop()
