"""Case-level access: care-team restriction, break the glass, sharing by grants."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from dicom_factory import make_ct
from fastapi.testclient import TestClient
from pydicom.uid import generate_uid

from radcloud.archive import ingest, retrieve
from radcloud.archive.query import Level, Query, search
from radcloud.archive.service import Archive
from radcloud.auth import accounts, audit, studies
from radcloud.auth.access import SYSTEM, Principal
from radcloud.errors import Forbidden, NotFound
from radcloud.web.app import create_app

PW = "access-pass-12"


def _who(archive: Archive, name: str, role: str = "radiologist", inst: int = 1) -> Principal:
    return accounts.principal_for_user(
        archive, accounts.create_user(archive, name, PW, roles=[role], institution_id=inst)
    )


def _sees(archive: Archive, p: Principal, study_uid: str) -> bool:
    q = Query(Level.STUDY, {"StudyInstanceUID": study_uid})
    found = bool(search(archive, q, principal=p).items)
    try:
        retrieve.find_instances(archive, study_uid, principal=p)
        fetched = True
    except NotFound:
        fetched = False
    assert found == fetched  # search and retrieve apply the same rule
    return found


@pytest.fixture
def study(archive: Archive) -> str:
    return ingest.store_bytes(archive, make_ct(generate_uid(), generate_uid())).study_uid


def test_care_team_restriction_hides_the_case_from_everyone_else(
    archive: Archive, study: str
) -> None:
    surgeon = _who(archive, "surgeon", "clinician")
    other_doc = _who(archive, "other-doc")
    admin = _who(archive, "inst-admin", "institution_admin")
    team = accounts.create_group(archive, 1, "thoracic surgery", "care_team")
    accounts.set_member(archive, team, surgeon.user_id or 0, True)
    surgeon = accounts.principal_for_user(archive, surgeon.user_id or 0)
    assert _sees(archive, other_doc, study) and _sees(archive, admin, study)
    studies.restrict(archive, admin, study, team)
    assert _sees(archive, surgeon, study)
    assert not _sees(archive, other_doc, study)
    assert not _sees(archive, admin, study)  # admins included
    # a restricted case cannot be lifted by someone who cannot see it
    with pytest.raises(NotFound):
        studies.restrict(archive, admin, study, None)


def test_break_the_glass_is_granted_audited_and_flagged(archive: Archive, study: str) -> None:
    team = accounts.create_group(archive, 1, "transplant", "care_team")
    studies.restrict(archive, SYSTEM, study, team)
    er_doc = _who(archive, "er-doc", "clinician")
    tech = _who(archive, "tech", "technologist")
    assert not _sees(archive, er_doc, study)
    with pytest.raises(Forbidden):
        studies.break_glass(archive, tech, study, "curious about it")  # no permission
    until = studies.break_glass(archive, er_doc, study, "unconscious patient, prior CT needed")
    assert until > datetime.now(UTC) + timedelta(hours=3)
    assert _sees(archive, er_doc, study)
    assert not _sees(archive, tech, study)
    (event,) = audit.search(archive, SYSTEM, action="study.break_glass", result="success")
    assert event["flagged"] and event["actor"] == "er-doc" and event["study_uid"] == study
    assert event["detail"]["reason"].startswith("unconscious patient")
    # over HTTP too, and a break-glass on another hospital's study is refused
    other = accounts.create_institution(archive, "far-away", "Far Away Hospital").id
    foreign = ingest.store_bytes(
        archive, make_ct(generate_uid(), generate_uid()), principal=accounts.cli_principal(other)
    ).study_uid
    client = TestClient(create_app(archive))
    from radcloud.auth import sessions

    h = {"Authorization": "Bearer " + sessions.issue(archive, er_doc.user_id or 0, "api")}
    r = client.post(
        f"/api/studies/{foreign}/break-glass", json={"reason": "want to see"}, headers=h
    )
    assert r.status_code == 404
    assert not _sees(archive, er_doc, foreign)
    flagged = _events(archive, action="study.break_glass", flagged=True, want=2)
    assert {e["result"] for e in flagged} == {"success", "failed"}
    refused = next(e for e in flagged if e["result"] == "failed")
    assert refused["detail"]["reason"] == "want to see" and refused["study_uid"] == foreign


def test_grants_share_a_study_across_institutions_until_they_end(
    archive: Archive, study: str
) -> None:
    partner = accounts.create_institution(archive, "partner", "Partner Clinic", kind="clinic").id
    expert = _who(archive, "expert", "consultant", partner)
    colleague = _who(archive, "colleague", "consultant", partner)
    owner = _who(archive, "owner", "radiologist")
    assert not _sees(archive, expert, study)
    gid = studies.grant(archive, owner, study, "user", expert.user_id or 0, reason="consultation")
    assert _sees(archive, expert, study) and not _sees(archive, colleague, study)
    # the partner cannot pass the study on: sharing is the owner's business
    p_rad = _who(archive, "p-rad", "radiologist", partner)
    studies.grant(archive, owner, study, "user", p_rad.user_id or 0, reason="consultation")
    with pytest.raises(Forbidden, match="owning institution"):
        studies.grant(archive, p_rad, study, "user", colleague.user_id or 0)
    studies.revoke_grant(archive, owner, study, gid)
    assert not _sees(archive, expert, study)
    # an institution-wide grant with an expiry
    soon = datetime.now(UTC) + timedelta(seconds=1)
    studies.grant(archive, owner, study, "institution", partner, expires_at=soon)
    assert _sees(archive, colleague, study)
    assert not _sees(archive, colleague, study) if _wait_until(soon) else False
    access = studies.access(archive, owner, study)
    # the expired grant is gone from the list; p-rad's consultation grant remains
    assert access.institution_id == 1
    assert [(g["grantee_kind"], g["grantee_id"]) for g in access.grants] == [
        ("user", p_rad.user_id)
    ]


def _events(archive: Archive, want: int, **kw: object) -> list[dict[str, object]]:
    """Audit events, waiting briefly for the ones the HTTP middleware writes after answering."""
    import time

    deadline = time.monotonic() + 5
    while True:
        found = audit.search(archive, SYSTEM, **kw)  # type: ignore[arg-type]
        if len(found) >= want or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def _wait_until(ts: datetime) -> bool:
    import time

    while datetime.now(UTC) <= ts:
        time.sleep(0.05)
    return True


def test_writing_into_a_foreign_study_is_refused(archive: Archive, study: str) -> None:
    other = accounts.create_institution(archive, "b-hosp", "B Hospital").id
    b_tech = _who(archive, "b-tech", "technologist", other)
    data = make_ct(study, generate_uid())
    with pytest.raises(Forbidden):
        ingest.store_bytes(archive, data, principal=b_tech)
    assert len(retrieve.find_instances(archive, study, principal=SYSTEM)) == 1
    assert list(archive.settings.tmp_dir.iterdir()) == []  # nothing half-written


def test_the_same_patient_id_at_two_hospitals_is_two_patients(archive: Archive) -> None:
    other = accounts.create_institution(archive, "twin-b", "Twin B").id
    ingest.store_bytes(archive, make_ct(generate_uid(), generate_uid(), patient_id="P1",
                                        patient_name="Alpha^Ann"))  # fmt: skip
    ingest.store_bytes(
        archive,
        make_ct(generate_uid(), generate_uid(), patient_id="P1", patient_name="Secret^Sam"),
        principal=accounts.cli_principal(other),
    )
    a_doc, b_doc = _who(archive, "a-doc"), _who(archive, "b-doc", inst=other)
    secret = Query(Level.STUDY, {"PatientName": "Secret*"})
    assert search(archive, secret, principal=a_doc).items == []
    assert len(search(archive, secret, principal=b_doc).items) == 1
    for who, name in ((a_doc, "Alpha^Ann"), (b_doc, "Secret^Sam")):
        (patient,) = search(archive, Query(Level.PATIENT, {"PatientID": "P1"}), principal=who).items
        assert patient["00100010"]["Value"][0]["Alphabetic"] == name
        assert patient["00201200"]["Value"] == [1]  # one study each
