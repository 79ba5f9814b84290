"""The audit trail: every access recorded with its result, chained, searchable, exportable."""

from __future__ import annotations

import threading
import xml.etree.ElementTree as ET

from dicom_factory import make_ct
from fastapi.testclient import TestClient
from pydicom.uid import generate_uid

from radcloud.archive import ingest
from radcloud.archive.service import Archive
from radcloud.auth import accounts, audit, sessions
from radcloud.auth.access import SYSTEM
from radcloud.web.app import create_app

PW = "audit-pass-123"


def _bearer(archive: Archive, name: str, role: str, inst: int = 1) -> dict[str, str]:
    uid = accounts.create_user(archive, name, PW, roles=[role], institution_id=inst)
    return {"Authorization": "Bearer " + sessions.issue(archive, uid, "api")}


def test_http_accesses_are_recorded_with_who_what_where_result(archive: Archive) -> None:
    r = ingest.store_bytes(archive, make_ct(generate_uid(), generate_uid()))
    client = TestClient(create_app(archive))
    h = _bearer(archive, "reader", "clinician")
    base = f"/dicom-web/studies/{r.study_uid}/series/{r.series_uid}/instances/{r.sop_uid}"
    assert client.get(f"/dicom-web/studies/{r.study_uid}/metadata", headers=h).status_code == 200
    for _ in range(5):  # image reads fold into one row with a count
        assert client.get(base + "/rendered", headers=h).status_code == 200
    assert client.get("/api/users", headers=h).status_code == 403
    assert client.get("/dicom-web/studies").status_code == 401
    audit.auditor(archive).flush()
    events = audit.search(archive, SYSTEM)
    meta = [e for e in events if e["action"] == "study.metadata"]
    assert meta and meta[0]["actor"] == "reader" and meta[0]["study_uid"] == r.study_uid
    assert meta[0]["source"] == "testclient" and meta[0]["result"] == "success"
    views = [e for e in events if e["action"] == "study.view"]
    assert sum(e["count"] for e in views) == 5 and len(views) <= 2
    denied = {(e["actor"], e["action"]) for e in events if e["result"] == "denied"}
    assert ("reader", "user.list") in denied and ("anonymous", "study.search") in denied
    assert audit.verify(archive).ok


def test_chain_holds_under_concurrent_writers(archive: Archive) -> None:
    def write(n: int) -> None:
        for i in range(40):
            audit.record(archive, SYSTEM, "test.write", target=f"{n}:{i}", wait=i % 7 == 0)

    threads = [threading.Thread(target=write, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    report = audit.verify(archive)
    assert report.ok, report.problems
    assert report.checked == 160 and len(report.head) == 64


def test_auditors_see_their_institution_only(archive: Archive) -> None:
    other = accounts.create_institution(archive, "aud-b", "Audited B").id
    a_auditor = accounts.principal_for_user(
        archive, accounts.create_user(archive, "aud-a", PW, roles=["auditor"])
    )
    b_user = accounts.principal_for_user(
        archive, accounts.create_user(archive, "b-doc", PW, institution_id=other)
    )
    audit.record(archive, b_user, "study.metadata", study_uid="1.2.3", wait=True)
    audit.record(archive, a_auditor, "study.metadata", study_uid="1.2.4", wait=True)
    seen = {e["study_uid"] for e in audit.search(archive, a_auditor)}
    assert "1.2.4" in seen and "1.2.3" not in seen
    client = TestClient(create_app(archive))
    h = _bearer(archive, "aud-http", "auditor")
    r = client.get("/api/audit", params={"study": "1.2.3"}, headers=h)
    assert r.status_code == 200 and r.json() == []
    assert client.get("/api/audit/verify", headers=h).json()["ok"] is True


def test_atna_export_is_dicom_audit_xml_in_syslog(archive: Archive) -> None:
    client = TestClient(create_app(archive))
    h = _bearer(archive, "root", "platform_admin")
    client.post("/api/auth/login", json={"username": "root", "password": "wrong-one-1"})
    r = ingest.store_bytes(archive, make_ct(generate_uid(), generate_uid()))
    client.get(f"/dicom-web/studies/{r.study_uid}/metadata", headers=h)
    out = client.get("/api/audit/export", params={"format": "atna"}, headers=h)
    assert out.status_code == 200
    lines = out.text.strip().splitlines()
    assert lines and all(line.startswith(("<84>1 ", "<85>1 ")) for line in lines)
    messages = [ET.fromstring(line.split(" - IHE+RFC-3881 - ", 1)[1]) for line in lines]
    ids = {m.find("EventIdentification/EventID").get("csd-code") for m in messages}  # type: ignore[union-attr]
    assert {"110114", "110103"} <= ids  # User Authentication, DICOM Instances Accessed
    accessed = next(
        m for m in messages
        if m.find("EventIdentification/EventID").get("csd-code") == "110103"  # type: ignore[union-attr]
    )  # fmt: skip
    obj = accessed.find("ParticipantObjectIdentification")
    assert obj is not None and obj.get("ParticipantObjectID") == r.study_uid
    failed_login = next(m for m in messages
                        if m.find("EventIdentification").get("EventOutcomeIndicator") == "4")  # type: ignore[union-attr]  # fmt: skip
    assert failed_login.find("ActiveParticipant").get("UserID") == "root"  # type: ignore[union-attr]
    jsonl = client.get("/api/audit/export", headers=h)
    assert jsonl.headers["content-type"] == "application/x-ndjson"
    exported = [line for line in jsonl.text.strip().splitlines()]
    assert len(exported) == len(lines) + 1  # + the first export itself, audited too
    assert '"action":"audit.export"' in exported[-1]
