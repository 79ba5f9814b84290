"""STOW-RS: Store Instances Response, status codes, failures, concurrency — both back ends."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import _auth
import httpx
import pytest
from dicom_factory import make_ct, multipart_related
from pydicom.uid import generate_uid
from sqlalchemy import func, select

from radcloud.archive.service import Archive
from radcloud.store.models import Instance
from radcloud.web.app import create_app
from radcloud.web.multipart import multipart_writer

pytestmark = pytest.mark.anyio

CT = "1.2.840.10008.5.1.4.1.1.2"


@pytest.fixture
async def client(archive: Archive) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(archive))
    async with httpx.AsyncClient(
        transport=transport, base_url="http://test/dicom-web", headers=_auth.headers(archive)
    ) as c:
        yield c


async def stow(client: httpx.AsyncClient, parts: list[bytes], url: str = "/studies",
               **headers: str) -> httpx.Response:  # fmt: skip
    body, content_type = multipart_related(parts)
    return await client.post(url, content=body, headers={"Content-Type": content_type, **headers})


def seq(body: dict[str, Any], tag: str) -> list[dict[str, Any]]:
    return list(body.get(tag, {}).get("Value", []))


def val(item: dict[str, Any], tag: str) -> Any:
    vals = item.get(tag, {}).get("Value", [])
    return vals[0] if vals else None


def instance_count(archive: Archive) -> int:
    with archive.read() as conn:
        return int(conn.scalar(select(func.count(Instance.id))) or 0)


def spool_files(archive: Archive) -> list[str]:
    return [p.name for p in archive.settings.tmp_dir.iterdir()]


async def test_several_instances_in_one_request(
    client: httpx.AsyncClient, archive: Archive
) -> None:
    study, series = generate_uid(), generate_uid()
    sops = [generate_uid() for _ in range(3)]
    parts = [make_ct(study, series, sop_uid=s, instance_number=i) for i, s in enumerate(sops, 1)]
    r = await stow(client, parts)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/dicom+json"
    assert "warning" not in r.headers
    body = r.json()
    assert val(body, "00081190") == f"http://test/dicom-web/studies/{study}"
    refs = seq(body, "00081199")
    assert [val(i, "00081155") for i in refs] == sops
    assert {val(i, "00081150") for i in refs} == {CT}
    assert val(refs[0], "00081190").endswith(
        f"/studies/{study}/series/{series}/instances/{sops[0]}"
    )
    assert "00081198" not in body and "0008119A" not in body
    found = await client.get(f"/studies/{study}/instances")
    assert len(found.json()) == 3
    assert spool_files(archive) == []


async def test_single_application_dicom_body(client: httpx.AsyncClient, archive: Archive) -> None:
    sop = generate_uid()
    r = await client.post(
        "/studies", content=make_ct(sop_uid=sop), headers={"Content-Type": "application/dicom"}
    )
    assert r.status_code == 200
    assert [val(i, "00081155") for i in seq(r.json(), "00081199")] == [sop]
    assert instance_count(archive) == 1


async def test_mixed_good_and_bad_parts(client: httpx.AsyncClient, archive: Archive) -> None:
    good, no_uid_class, bad_class_sop = generate_uid(), CT, generate_uid()
    parts = [
        make_ct(sop_uid=good),
        b"this is a text file, not DICOM at all\n" * 10,
        make_ct(drop=("SOPInstanceUID",)),
        make_ct(sop_uid=bad_class_sop, sop_class_uid="1.2.3.4"),
    ]
    r = await stow(client, parts)
    assert r.status_code == 202, r.text
    body = r.json()
    assert [val(i, "00081155") for i in seq(body, "00081199")] == [good]
    failed = {val(i, "00081197"): i for i in seq(body, "00081198")}
    assert set(failed) == {0xA900, 0x0122}
    assert val(failed[0xA900], "00081150") == no_uid_class
    assert val(failed[0xA900], "00081155") is None
    assert val(failed[0x0122], "00081150") == "1.2.3.4"
    assert val(failed[0x0122], "00081155") == bad_class_sop
    (other,) = seq(body, "0008119A")
    assert val(other, "00081197") & 0xF000 == 0xC000
    warnings = r.headers.get_list("warning")
    assert len(warnings) == 3
    assert any(w.startswith("0122 radcloud: SOP class not supported") for w in warnings)
    assert any(w.startswith("A900 radcloud:") and "SOPInstanceUID" in w for w in warnings)
    assert instance_count(archive) == 1
    assert spool_files(archive) == []


async def test_unsupported_sop_class_alone_is_409(
    client: httpx.AsyncClient, archive: Archive
) -> None:
    r = await stow(client, [make_ct(sop_class_uid="1.2.3.4")])
    assert r.status_code == 409
    (item,) = seq(r.json(), "00081198")
    assert val(item, "00081197") == 0x0122
    assert instance_count(archive) == 0


async def test_study_mismatch_is_409(client: httpx.AsyncClient, archive: Archive) -> None:
    other, sop = generate_uid(), generate_uid()
    r = await stow(client, [make_ct(sop_uid=sop)], url=f"/studies/{other}")
    assert r.status_code == 409
    body = r.json()
    assert val(body, "00081190") == f"http://test/dicom-web/studies/{other}"
    (item,) = seq(body, "00081198")
    assert val(item, "00081197") == 0xA900
    assert val(item, "00081155") == sop
    assert instance_count(archive) == 0


async def test_post_to_the_right_study(client: httpx.AsyncClient, archive: Archive) -> None:
    study = generate_uid()
    r = await stow(client, [make_ct(study), make_ct(generate_uid())], url=f"/studies/{study}")
    assert r.status_code == 202
    assert len(seq(r.json(), "00081199")) == 1
    assert val(seq(r.json(), "00081198")[0], "00081197") == 0xA900


async def test_duplicate_within_one_request(client: httpx.AsyncClient, archive: Archive) -> None:
    sop = generate_uid()
    data = make_ct(sop_uid=sop)
    r = await stow(client, [data, data])
    assert r.status_code == 200
    assert [val(i, "00081155") for i in seq(r.json(), "00081199")] == [sop, sop]
    assert instance_count(archive) == 1
    assert len(list(archive.storage.keys())) == 1


async def test_truncated_file(client: httpx.AsyncClient, archive: Archive) -> None:
    data = make_ct(n_rows=64)
    r = await stow(client, [data[: len(data) - 3000]])
    assert r.status_code == 400
    body = r.json()
    reasons = [val(i, "00081197") for i in seq(body, "00081198") + seq(body, "0008119A")]
    assert len(reasons) == 1 and reasons[0] & 0xF000 == 0xC000
    assert "runcated" in r.headers["warning"] or "missing" in r.headers["warning"]
    assert instance_count(archive) == 0
    assert list(archive.storage.keys()) == []


@pytest.mark.parametrize(
    "content_type",
    [
        "application/json",
        'multipart/related; type="application/dicom+json"; boundary=x',
        "multipart/form-data; boundary=x",
    ],
)
async def test_wrong_content_type_is_415(client: httpx.AsyncClient, content_type: str) -> None:
    r = await client.post("/studies", content=b"{}", headers={"Content-Type": content_type})
    assert r.status_code == 415
    assert r.headers["content-type"] == "application/problem+json"


async def test_non_dicom_part_type_fails_that_part(client: httpx.AsyncClient) -> None:
    boundary = "b0undary"
    body = (
        (
            f"--{boundary}\r\nContent-Type: text/plain\r\n\r\nhello\r\n"
            f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n"
        ).encode()
        + make_ct()
        + f"\r\n--{boundary}--".encode()
    )
    ctype = f"multipart/related; type=application/dicom; boundary={boundary}"
    r = await client.post("/studies", content=body, headers={"Content-Type": ctype})
    assert r.status_code == 202
    assert len(seq(r.json(), "00081199")) == 1
    assert val(seq(r.json(), "0008119A")[0], "00081197") == 0xC000


async def test_malformed_multipart_is_400_and_leaves_nothing(
    client: httpx.AsyncClient, archive: Archive
) -> None:
    body, ctype = multipart_related([make_ct()])
    cut = body[: body.rindex(b"\r\n--")]  # no closing delimiter
    r = await client.post("/studies", content=cut, headers={"Content-Type": ctype})
    assert r.status_code == 400
    assert "closing boundary" in r.json()["detail"]
    assert spool_files(archive) == []
    assert instance_count(archive) == 0
    r = await client.post("/studies", content=b"x", headers={"Content-Type": "multipart/related"})
    assert r.status_code == 400 and "boundary" in r.json()["detail"]


async def test_empty_multipart_is_400(client: httpx.AsyncClient) -> None:
    body, ctype = multipart_related([])
    r = await client.post("/studies", content=body, headers={"Content-Type": ctype})
    assert r.status_code == 400
    assert "no instances" in r.json()["detail"]


async def test_unacceptable_response_type_is_406(
    client: httpx.AsyncClient, archive: Archive
) -> None:
    r = await stow(client, [make_ct()], Accept="application/dicom+xml")
    assert r.status_code == 406
    assert instance_count(archive) == 0


async def test_request_over_the_size_limit_is_413(make_archive: Any) -> None:
    archive = make_archive(max_upload_bytes=4096)
    transport = httpx.ASGITransport(app=create_app(archive))
    async with httpx.AsyncClient(
        transport=transport, base_url="http://test/dicom-web", headers=_auth.headers(archive)
    ) as c:
        r = await stow(c, [make_ct(n_rows=64)])
    assert r.status_code == 413
    assert instance_count(archive) == 0
    assert spool_files(archive) == []


async def test_concurrent_duplicates_end_with_one_instance(
    client: httpx.AsyncClient, archive: Archive
) -> None:
    data = make_ct(sop_uid=generate_uid())
    responses = await asyncio.gather(*[stow(client, [data]) for _ in range(8)])
    assert [r.status_code for r in responses] == [200] * 8
    assert instance_count(archive) == 1
    assert len(list(archive.storage.keys())) == 1
    assert spool_files(archive) == []


# ---------------------------------------------------------------- multipart framing


async def _dribble(data: bytes, size: int) -> AsyncIterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


@pytest.mark.parametrize("chunk", [1, 7, 4096])
async def test_writer_output_reads_back_in_any_chunking(
    client: httpx.AsyncClient, archive: Archive, chunk: int
) -> None:
    """Delimiters split across network chunks; a boundary with ';' and '=' in quotes."""
    sops = [generate_uid(), generate_uid()]
    parts = [({"Content-Type": "application/dicom", "Content-Location": f"im{i}.dcm"},
              make_ct(sop_uid=s)) for i, s in enumerate(sops)]  # fmt: skip
    ctype, body = multipart_writer(parts, media_type="application/dicom", boundary="a;b=c--x")
    assert ctype == 'multipart/related; type="application/dicom"; boundary="a;b=c--x"'
    data = b"".join(body)  # type: ignore[arg-type]
    r = await client.post(
        "/studies", content=_dribble(data, chunk), headers={"Content-Type": ctype}
    )
    assert r.status_code == 200, r.text
    assert [val(i, "00081155") for i in seq(r.json(), "00081199")] == sops


async def test_async_writer_matches_sync_writer() -> None:
    parts = [({"Content-Type": "application/octet-stream"}, b"abc"),
             ({"Content-Type": "application/octet-stream"}, [b"de", b"f"])]  # fmt: skip

    async def aparts() -> AsyncIterator[tuple[dict[str, str], Any]]:
        yield parts[0]
        yield parts[1][0], _dribble(b"def", 1)

    ctype, sync_body = multipart_writer(parts, boundary="B")
    actype, async_body = multipart_writer(aparts(), boundary="B")
    assert ctype == actype == "multipart/related; boundary=B"
    expected = b"".join(sync_body)  # type: ignore[arg-type]
    assert b"".join([c async for c in async_body]) == expected  # type: ignore[union-attr]
    assert expected == (
        b"--B\r\nContent-Type: application/octet-stream\r\n\r\nabc\r\n"
        b"--B\r\nContent-Type: application/octet-stream\r\n\r\ndef\r\n--B--\r\n"
    )
