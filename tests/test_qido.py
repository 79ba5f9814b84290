"""QIDO-RS: matching, returned attributes, paging, errors — on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import _auth
import httpx
import pytest
from dicom_factory import make_ct
from pydicom.uid import generate_uid

from radcloud.archive import ingest
from radcloud.archive.service import Archive
from radcloud.web.app import create_app

pytestmark = pytest.mark.anyio

CHINESE = "Wang^Xiaodong=王^小东"


@dataclass
class Seed:
    """UIDs of the seeded studies: A (CT+PT, Chinese name), B (MR), C (CT)."""

    a: str
    a_ct: str
    a_pt: str
    b: str
    c: str
    a_ct_sops: list[str]


def _seed(archive: Archive) -> Seed:
    s = Seed(generate_uid(), generate_uid(), generate_uid(), generate_uid(), generate_uid(), [])
    common = dict(patient_name=CHINESE, patient_id="PAT100", charset="ISO_IR 192")
    common |= dict(study_date="20240105", study_time="101500", PatientAge="045Y")
    for n in (3, 1, 2):  # stored out of order: answers must still be in InstanceNumber order
        sop = generate_uid()
        s.a_ct_sops.append(sop)
        ingest.store_bytes(archive, make_ct(s.a, s.a_ct, sop_uid=sop, instance_number=n, **common))
    s.a_ct_sops = [s.a_ct_sops[i] for i in (1, 2, 0)]
    pt = make_ct(s.a, s.a_pt, modality="PT", series_number=2, **common)
    ingest.store_bytes(archive, pt)
    b = make_ct(s.b, patient_name="Doe^John", patient_id="PAT200", study_date="20230301",
                study_time="083000", modality="MR", accession="ACC-B")  # fmt: skip
    ingest.store_bytes(archive, b)
    c = make_ct(s.c, patient_name="Smith^Anna", patient_id="OTHER1", study_date="20240220",
                study_time="153000", accession="ACC-C")  # fmt: skip
    ingest.store_bytes(archive, c)
    return s


@pytest.fixture
def seed(archive: Archive) -> Seed:
    return _seed(archive)


@pytest.fixture
async def client(archive: Archive) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(archive))
    async with httpx.AsyncClient(
        transport=transport, base_url="http://test/dicom-web", headers=_auth.headers(archive)
    ) as c:
        yield c


def values(item: dict[str, Any], tag: str) -> list[Any]:
    return list(item.get(tag, {}).get("Value", []))


def uids(items: list[dict[str, Any]], tag: str = "0020000D") -> list[str]:
    return [values(i, tag)[0] for i in items]


async def studies(client: httpx.AsyncClient, **params: str) -> list[dict[str, Any]]:
    r = await client.get("/studies", params=params)
    if r.status_code == 204:
        return []
    assert r.status_code == 200, r.text
    return list(r.json())


# ---------------------------------------------------------------- study matching


async def test_exact_patient_id(client: httpx.AsyncClient, seed: Seed) -> None:
    r = await client.get("/studies", params={"PatientID": "PAT200"})
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/dicom+json"
    (item,) = r.json()
    assert values(item, "0020000D") == [seed.b]
    assert values(item, "00080061") == ["MR"]
    assert values(item, "00201208") == [1]
    assert values(item, "00081190")[0].endswith(f"/dicom-web/studies/{seed.b}")


async def test_wildcard_patient_id(client: httpx.AsyncClient, seed: Seed) -> None:
    assert sorted(uids(await studies(client, PatientID="PAT*"))) == sorted([seed.a, seed.b])
    assert uids(await studies(client, PatientID="?THER1")) == [seed.c]


async def test_date_ranges(client: httpx.AsyncClient, seed: Seed) -> None:
    found = uids(await studies(client, StudyDate="20240101-20241231"))
    assert sorted(found) == sorted([seed.a, seed.c])
    assert uids(await studies(client, StudyDate="20240201-")) == [seed.c]
    assert uids(await studies(client, StudyDate="-20231231")) == [seed.b]
    assert uids(await studies(client, StudyDate="20230301")) == [seed.b]


async def test_study_time_range(client: httpx.AsyncClient, seed: Seed) -> None:
    assert uids(await studies(client, StudyTime="1000-1200")) == [seed.a]
    assert uids(await studies(client, StudyTime="150000-")) == [seed.c]


async def test_uid_list(client: httpx.AsyncClient, seed: Seed) -> None:
    found = uids(await studies(client, StudyInstanceUID=f"{seed.a},{seed.c}"))
    assert sorted(found) == sorted([seed.a, seed.c])


async def test_modalities_in_study(client: httpx.AsyncClient, seed: Seed) -> None:
    (item,) = await studies(client, ModalitiesInStudy="PT")
    assert values(item, "0020000D") == [seed.a]
    assert values(item, "00080061") == ["CT", "PT"]
    assert values(item, "00201206") == [2]
    assert values(item, "00201208") == [4]
    found = uids(await studies(client, ModalitiesInStudy="MR,PT"))
    assert sorted(found) == sorted([seed.a, seed.b])


@pytest.mark.parametrize("name", ["王小东", "wang", "xiaodong", "王", "Wang^Xiaodong", "XIAOD"])
async def test_fuzzy_chinese_name(client: httpx.AsyncClient, seed: Seed, name: str) -> None:
    found = await studies(client, PatientName=name, fuzzymatching="true")
    assert uids(found) == [seed.a]
    assert values(found[0], "00100010") == [
        {"Alphabetic": "Wang^Xiaodong", "Ideographic": "王^小东"}
    ]


async def test_without_fuzzy_the_ideographic_run_does_not_match(
    client: httpx.AsyncClient, seed: Seed
) -> None:
    assert await studies(client, PatientName="王小东") == []
    assert uids(await studies(client, PatientName="wang^*")) == [seed.a]
    assert uids(await studies(client, PatientName="王^小东")) == [seed.a]


async def test_includefield(client: httpx.AsyncClient, seed: Seed) -> None:
    (plain,) = await studies(client, StudyInstanceUID=seed.a)
    assert "00101010" not in plain  # PatientAge is not a default return key
    (asked,) = await studies(client, StudyInstanceUID=seed.a, includefield="PatientAge,00280010")
    assert values(asked, "00101010") == ["045Y"]
    assert values(asked, "00280010") == [16]  # Rows, from the study's first instance
    (everything,) = await studies(client, StudyInstanceUID=seed.a, includefield="all")
    assert values(everything, "00101010") == ["045Y"]
    assert values(everything, "00080005") == ["ISO_IR 192"]


async def test_repeated_includefield(client: httpx.AsyncClient, seed: Seed) -> None:
    r = await client.get(
        "/studies", params=[("PatientID", "PAT100"), ("includefield", "PatientAge"),
                            ("includefield", "StudyDescription")]
    )  # fmt: skip
    assert r.status_code == 200
    assert values(r.json()[0], "00101010") == ["045Y"]


async def test_limit_offset_warning_and_stable_order(client: httpx.AsyncClient, seed: Seed) -> None:
    full = uids(await studies(client))
    assert full == [seed.c, seed.a, seed.b]  # newest first
    r1 = await client.get("/studies", params={"limit": "2"})
    assert r1.headers.get_list("warning") == [
        "299 radcloud: There are 1 additional results that can be requested"
    ]
    r2 = await client.get("/studies", params={"limit": "2", "offset": "2"})
    assert r2.status_code == 200 and "warning" not in r2.headers
    assert uids(r1.json()) + uids(r2.json()) == full
    again = await client.get("/studies", params={"limit": "2"})
    assert uids(again.json()) == uids(r1.json())


async def test_no_match_is_204(client: httpx.AsyncClient, seed: Seed) -> None:
    r = await client.get("/studies", params={"PatientID": "NOBODY"})
    assert r.status_code == 204
    assert r.content == b""


async def test_unsupported_key_gets_a_warning(client: httpx.AsyncClient, seed: Seed) -> None:
    r = await client.get("/studies", params={"PatientID": "PAT200", "PatientWeight": "70"})
    assert r.status_code == 200
    assert uids(r.json()) == [seed.b]
    assert r.headers.get_list("warning") == [
        "299 radcloud: The following attributes were not supported for matching: PatientWeight"
    ]


@pytest.mark.parametrize(
    ("params", "words"),
    [
        ({"NoSuchKeyword": "1"}, "NoSuchKeyword"),
        ({"StudyDate": "2024-01"}, "date"),
        ({"StudyDate": "2024010a"}, "date"),
        ({"limit": "ten"}, "limit"),
        ({"limit": "0"}, "limit"),
        ({"offset": "-1"}, "offset"),
        ({"fuzzymatching": "maybe"}, "fuzzymatching"),
        ({"includefield": "NotAnAttribute"}, "NotAnAttribute"),
        ({"InstanceNumber": "x"}, "integer"),
    ],
)
async def test_bad_query_is_400_problem(
    client: httpx.AsyncClient, seed: Seed, params: dict[str, str], words: str
) -> None:
    r = await client.get("/studies" if "InstanceNumber" not in params else "/instances",
                         params=params)  # fmt: skip
    assert r.status_code == 400
    assert r.headers["content-type"] == "application/problem+json"
    body = r.json()
    assert body["status"] == 400 and words in body["detail"]


async def test_accept_negotiation(client: httpx.AsyncClient, seed: Seed) -> None:
    r = await client.get("/studies", headers={"Accept": "application/json"})
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    r = await client.get("/studies", headers={"Accept": "image/png, application/*;q=0.5"})
    assert r.status_code == 200 and r.headers["content-type"] == "application/dicom+json"
    r = await client.get(
        "/studies", headers={"Accept": 'multipart/related; type="application/dicom+xml"'}
    )
    assert r.status_code == 406
    assert r.headers["content-type"] == "application/problem+json"


# ---------------------------------------------------------------- series and instances


async def test_study_series(client: httpx.AsyncClient, seed: Seed) -> None:
    r = await client.get(f"/studies/{seed.a}/series")
    assert r.status_code == 200
    items = r.json()
    assert uids(items, "0020000E") == [seed.a_ct, seed.a_pt]  # SeriesNumber order
    assert [values(i, "00201209") for i in items] == [[3], [1]]
    assert values(items[0], "00081190")[0].endswith(f"/studies/{seed.a}/series/{seed.a_ct}")
    r = await client.get(f"/studies/{seed.a}/series", params={"Modality": "PT"})
    assert uids(r.json(), "0020000E") == [seed.a_pt]
    assert (
        await client.get(f"/studies/{seed.b}/series", params={"Modality": "PT"})
    ).status_code == 204


async def test_series_instances_in_order(client: httpx.AsyncClient, seed: Seed) -> None:
    r = await client.get(f"/studies/{seed.a}/series/{seed.a_ct}/instances")
    items = r.json()
    assert uids(items, "00080018") == seed.a_ct_sops
    assert [values(i, "00200013") for i in items] == [[1], [2], [3]]
    assert values(items[0], "00080016") == ["1.2.840.10008.5.1.4.1.1.2"]
    assert values(items[0], "00280010") == [16]
    r = await client.get(
        f"/studies/{seed.a}/series/{seed.a_ct}/instances",
        params={"SOPInstanceUID": seed.a_ct_sops[1]},
    )
    assert uids(r.json(), "00080018") == [seed.a_ct_sops[1]]
    r = await client.get(f"/studies/{seed.a}/series/{seed.a_ct}/instances",
                         params={"InstanceNumber": "3"})  # fmt: skip
    assert uids(r.json(), "00080018") == [seed.a_ct_sops[2]]


async def test_study_instances(client: httpx.AsyncClient, seed: Seed) -> None:
    r = await client.get(f"/studies/{seed.a}/instances")
    items = r.json()
    assert len(items) == 4
    assert {values(i, "0020000E")[0] for i in items} == {seed.a_ct, seed.a_pt}
    assert {values(i, "00080060")[0] for i in items} == {"CT", "PT"}  # series-level attributes


async def test_relational_series(client: httpx.AsyncClient, seed: Seed) -> None:
    r = await client.get("/series", params={"PatientID": "PAT100"})
    items = r.json()
    assert sorted(uids(items, "0020000E")) == sorted([seed.a_ct, seed.a_pt])
    for item in items:
        assert values(item, "0020000D") == [seed.a]
        assert values(item, "00100020") == ["PAT100"]
        assert values(item, "00080020") == ["20240105"]
    r = await client.get("/series", params={"Modality": "MR"})
    assert uids(r.json(), "0020000D") == [seed.b]


async def test_relational_instances(client: httpx.AsyncClient, seed: Seed) -> None:
    r = await client.get("/instances", params={"Modality": "MR"})
    (item,) = r.json()
    assert values(item, "0020000D") == [seed.b]
    assert values(item, "00100020") == ["PAT200"]
    assert values(item, "00080020") == ["20230301"]
    r = await client.get("/instances", params={"StudyDate": "20240101-", "limit": "3"})
    assert len(r.json()) == 3
    assert r.headers.get_list("warning") == [
        "299 radcloud: There are 2 additional results that can be requested"
    ]


def test_landing_page_links_the_services(archive: Archive) -> None:
    from fastapi.testclient import TestClient

    from radcloud.web.app import create_app

    r = TestClient(create_app(archive)).get("/")
    assert r.status_code == 200 and "/dicom-web/studies" in r.text and "/healthz" in r.text
