"""The shared query engine (QIDO-RS and C-FIND) at the service level."""

from __future__ import annotations

import io

import pytest
from pydicom.filewriter import dcmwrite

from radcloud.archive.ingest import store_bytes
from radcloud.archive.query import Level, Query, search
from radcloud.archive.service import Archive
from radcloud.auth.access import SYSTEM
from radcloud.errors import BadQuery
from radcloud.testing.phantom import make_dataset


def put(archive: Archive, **attrs: object) -> str:
    ds = make_dataset(
        sop_class_uid="1.2.840.10008.5.1.4.1.1.2",
        modality=str(attrs.pop("Modality", "CT")),
        Rows=4,
        Columns=4,
        **attrs,
    )
    buf = io.BytesIO()
    dcmwrite(buf, ds, enforce_file_format=True)
    store_bytes(archive, buf.getvalue())
    return str(ds.StudyInstanceUID)


def uids(archive: Archive, **filters: str) -> set[str]:
    fuzzy = filters.pop("fuzzy", "") == "1"
    res = search(archive, Query(Level.STUDY, filters, fuzzy=fuzzy), principal=SYSTEM)
    return {item["0020000D"]["Value"][0] for item in res.items}


@pytest.fixture
def studies(archive: Archive) -> dict[str, str]:
    return {
        "wang": put(
            archive,
            PatientName="Wang^Xiaodong=王^小东",
            PatientID="P001",
            SpecificCharacterSet="ISO_IR 192",
            StudyDate="20240105",
            AccessionNumber="A1",
        ),
        "li": put(
            archive,
            PatientName="Li^Na=李^娜",
            PatientID="P002",
            SpecificCharacterSet="ISO_IR 192",
            StudyDate="20240110",
            Modality="MR",
        ),
        "smith": put(archive, PatientName="Smith^John", PatientID="Q003", StudyDate="20231231"),
        "zhang": put(
            archive,
            PatientName="张^三",
            PatientID="P004",
            SpecificCharacterSet="ISO_IR 192",
            StudyDate="20240201",
        ),
    }


def test_exact_wildcard_and_lists(archive: Archive, studies: dict[str, str]) -> None:
    assert uids(archive, PatientID="P001") == {studies["wang"]}
    assert uids(archive, PatientID="P00*") == {studies["wang"], studies["li"], studies["zhang"]}
    assert uids(archive, PatientID="P00?") == {studies["wang"], studies["li"], studies["zhang"]}
    assert uids(archive, PatientID="p001") == set()  # IDs are case-sensitive
    both = f"{studies['li']}\\{studies['smith']}"
    assert uids(archive, StudyInstanceUID=both) == {studies["li"], studies["smith"]}
    assert uids(archive, AccessionNumber="A1") == {studies["wang"]}


def test_date_ranges(archive: Archive, studies: dict[str, str]) -> None:
    assert uids(archive, StudyDate="20240101-20240131") == {studies["wang"], studies["li"]}
    assert uids(archive, StudyDate="-20231231") == {studies["smith"]}
    assert uids(archive, StudyDate="20240201-") == {studies["zhang"]}
    with pytest.raises(BadQuery):
        uids(archive, StudyDate="2024-01")


def test_modalities_in_study(archive: Archive, studies: dict[str, str]) -> None:
    assert uids(archive, ModalitiesInStudy="MR") == {studies["li"]}
    assert uids(archive, ModalitiesInStudy="MR\\XA") == {studies["li"]}


def test_person_names_incl_chinese(archive: Archive, studies: dict[str, str]) -> None:
    assert uids(archive, PatientName="wang^xiaodong") == {studies["wang"]}  # case-insensitive
    assert uids(archive, PatientName="王^小东") == {studies["wang"]}  # ideographic group
    assert uids(archive, PatientName="Wang*") == {studies["wang"]}
    for q in ("王小东", "王", "wang", "xiaodong", "wang xiaodong", "XIAO"):
        assert uids(archive, PatientName=q, fuzzy="1") == {studies["wang"]}, q
    assert uids(archive, PatientName="zhang", fuzzy="1") == {studies["zhang"]}  # pinyin of 张
    assert uids(archive, PatientName="san", fuzzy="1") == {studies["zhang"]}
    assert uids(archive, PatientName="na", fuzzy="1") == {studies["li"]}


def test_paging_is_stable_and_counts_remaining(archive: Archive, studies: dict[str, str]) -> None:
    first = search(archive, Query(Level.STUDY, {}, limit=3), principal=SYSTEM)
    rest = search(archive, Query(Level.STUDY, {}, limit=3, offset=3), principal=SYSTEM)
    assert first.remaining == 1 and rest.remaining == 0
    got = [i["0020000D"]["Value"][0] for i in first.items + rest.items]
    assert sorted(got) == sorted(studies.values())
    dates = [i["00080020"]["Value"][0] for i in first.items + rest.items]
    assert dates == sorted(dates, reverse=True)


def test_returned_attributes(archive: Archive, studies: dict[str, str]) -> None:
    (item,) = search(
        archive, Query(Level.STUDY, {"PatientID": "P001"}), "http://h/dicom-web", principal=SYSTEM
    ).items
    assert item["00080061"]["Value"] == ["CT"]
    assert item["00201206"]["Value"] == [1] and item["00201208"]["Value"] == [1]
    assert item["00081190"]["Value"][0].endswith(studies["wang"])
    assert item["00100010"]["Value"][0]["Ideographic"] == "王^小东"
    assert "00080060" not in item
    (item,) = search(
        archive,
        Query(Level.STUDY, {"PatientID": "P001"}, include={"Manufacturer"}),
        principal=SYSTEM,
    ).items
    assert item["00080070"]["Value"] == ["radcloud phantom"]


def test_unknown_keyword_is_a_bad_query(archive: Archive) -> None:
    with pytest.raises(BadQuery, match="NotAKeyword"):
        search(archive, Query(Level.STUDY, {"NotAKeyword": "x"}), principal=SYSTEM)


def test_series_and_instance_levels(archive: Archive, studies: dict[str, str]) -> None:
    res = search(
        archive, Query(Level.SERIES, {"Modality": "MR"}, relational=True), principal=SYSTEM
    )
    assert len(res.items) == 1 and res.items[0]["00100020"]["Value"] == ["P002"]
    res = search(archive, Query(Level.IMAGE, {}, study_uid=studies["smith"]), principal=SYSTEM)
    assert len(res.items) == 1 and res.items[0]["00280010"]["Value"] == [4]
    res = search(archive, Query(Level.PATIENT, {"PatientID": "P*"}), principal=SYSTEM)
    assert {i["00100020"]["Value"][0] for i in res.items} == {"P001", "P002", "P004"}
