"""The viewer's study list (GET /api/worklist): filters, sort, paging, access, report status."""

from __future__ import annotations

from typing import Any

import pytest
from _auth import headers
from dicom_factory import make_ct
from fastapi.testclient import TestClient
from pydicom.uid import generate_uid
from sqlalchemy import insert, select

from radcloud.archive import ingest
from radcloud.archive.service import Archive
from radcloud.auth import accounts
from radcloud.report.models import Report
from radcloud.store.models import Study
from radcloud.web.app import create_app

# (name, patient ID, sex, birth date, study date, modality, body part, description)
STUDIES = [
    ("Li^Na", "P-A", "F", "19580412", "20240105", "CT", "CHEST", "CT chest"),  # 65
    ("Li^Na", "P-A", "F", "19580412", "20230101", "CR", "CHEST", "chest X-ray"),  # 64
    ("Chen^Gang", "P-B", "M", "19900101", "20240301", "MR", "HEAD", "MR brain"),  # 34
    ("王^芳", "P-C", "F", "20000630", "20240630", "CT", "ABDOMEN", "CT abdomen"),  # 24 today
]


@pytest.fixture
def world(archive: Archive) -> dict[str, Any]:
    uids = []
    for name, pid, sex, birth, date, modality, part, desc in STUDIES:
        data = make_ct(
            generate_uid(), generate_uid(), patient_name=name, patient_id=pid, study_date=date,
            modality=modality, accession=f"ACC-{pid}-{date}", PatientSex=sex,
            PatientBirthDate=birth, BodyPartExamined=part, StudyDescription=desc,
            SpecificCharacterSet="ISO_IR 192",
        )  # fmt: skip
        uids.append(ingest.store_bytes(archive, data).study_uid)
    other = accounts.create_institution(archive, "OTHER", "Other Hospital").id
    foreign_user = accounts.create_user(
        archive, "other-tech", "other-pass-123", roles=["technologist"], institution_id=other
    )
    foreign = ingest.store_bytes(
        archive,
        make_ct(generate_uid(), generate_uid(), patient_name="Zhou^Min", patient_id="P-X"),
        principal=accounts.principal_for_user(archive, foreign_user),
    ).study_uid
    with archive.write() as conn:
        ids = {u: conn.scalar(select(Study.id).where(Study.study_uid == u)) for u in uids}
        for uid, status in ((uids[0], "final"), (uids[2], "draft")):
            conn.execute(
                insert(Report).values(
                    study_fk=ids[uid], institution_fk=1, template="generic", status=status
                )
            )
    client = TestClient(create_app(archive))
    radiologist = headers(archive, username="reader", roles=["radiologist"])
    return {"uids": uids, "foreign": foreign, "other": other, "client": client, "h": radiologist}


def _list(world: dict[str, Any], **params: object) -> dict[str, Any]:
    r = world["client"].get("/api/worklist", params=params, headers=world["h"])
    assert r.status_code == 200, r.text
    return r.json()


def _uids(world: dict[str, Any], **params: object) -> list[str]:
    return [i["study_uid"] for i in _list(world, **params)["items"]]


def test_lists_what_the_user_may_see_newest_first(world: dict[str, Any]) -> None:
    page = _list(world)
    u = world["uids"]
    assert page["total"] == 4 and world["foreign"] not in _uids(world)
    assert _uids(world) == [u[3], u[2], u[0], u[1]]
    first = page["items"][2]
    assert first["patient_id"] == "P-A" and first["age"] == 65 and first["sex"] == "F"
    assert first["modalities"] == ["CT"] and first["body_parts"] == ["CHEST"]
    assert first["status"] == "signed" and first["series"] == 1


def test_filters(world: dict[str, Any]) -> None:
    u = world["uids"]
    assert set(_uids(world, sex="F")) == {u[0], u[1], u[3]}
    assert set(_uids(world, age_min=60)) == {u[0], u[1]}
    assert _uids(world, age_max=30) == [u[3]]  # 24 on the study date (a birthday)
    assert _uids(world, age_min=24, age_max=24) == [u[3]]
    assert set(_uids(world, modality="ct")) == {u[0], u[3]}
    assert set(_uids(world, body_part="chest")) == {u[0], u[1]}
    assert _uids(world, patient="wang") == [u[3]]  # pinyin of 王
    assert _uids(world, patient="王") == [u[3]]
    assert set(_uids(world, patient="P-A")) == {u[0], u[1]}
    assert _uids(world, date_from="20240101", date_to="20240131") == [u[0]]
    assert _uids(world, accession="ACC-P-B-20240301") == [u[2]]
    assert set(_uids(world, status="unread")) == {u[1], u[3]}
    assert _uids(world, status="in_progress") == [u[2]]
    assert _uids(world, status="signed") == [u[0]]
    assert _uids(world, sex="F", modality="CT", age_min=60) == [u[0]]


def test_sort_and_pages(world: dict[str, Any]) -> None:
    u = world["uids"]
    names = [i["patient_name"] for i in _list(world, sort="name")["items"]]
    assert names == sorted(names)
    page = _list(world, limit=2, offset=2)
    assert page["total"] == 4 and [i["study_uid"] for i in page["items"]] == [u[0], u[1]]
    assert _uids(world, sort="date")[0] == u[1]


def test_institution_filter(archive: Archive, world: dict[str, Any]) -> None:
    theirs = headers(archive, username="other-tech")  # a user of the other hospital
    r = world["client"].get("/api/worklist", params={"institution": world["other"]}, headers=theirs)
    assert [i["study_uid"] for i in r.json()["items"]] == [world["foreign"]]
    assert r.json()["items"][0]["institution"]["name"] == "Other Hospital"
    # asking for another hospital gives nothing of it, and 1 lists only its own
    assert _uids(world, institution=world["other"]) == []
    assert len(_uids(world, institution=1)) == 4


@pytest.mark.parametrize(
    "params, words",
    [
        ({"sex": "X"}, "sex must be one of"),
        ({"age_min": 200}, "age_min must be between"),
        ({"date_from": "2024-01-01"}, "YYYYMMDD"),
        ({"status": "lost"}, "status must be one of"),
        ({"sort": "size"}, "sort must be one of"),
        ({"limit": 0}, "limit must be"),
    ],
)
def test_bad_filters_are_problems(
    world: dict[str, Any], params: dict[str, Any], words: str
) -> None:
    r = world["client"].get("/api/worklist", params=params, headers=world["h"])
    assert r.status_code == 400 and r.headers["content-type"].startswith("application/problem+json")
    assert words in r.json()["detail"]


def test_not_a_number_is_a_problem_too(world: dict[str, Any]) -> None:
    r = world["client"].get("/api/worklist", params={"age_min": "old"}, headers=world["h"])
    assert r.status_code in (400, 422)
    assert r.headers["content-type"].startswith("application/problem+json")


def test_needs_a_signed_in_user(world: dict[str, Any]) -> None:
    assert world["client"].get("/api/worklist").status_code == 401
