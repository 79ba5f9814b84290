"""REST upload: single file, form-data, zip, wrapped photos/PDFs, size limit — both back ends."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import _auth
import httpx
import pytest
from dicom_factory import make_ct, make_jpeg, make_pdf, make_zip
from pydicom.uid import generate_uid
from sqlalchemy import func, select

from radcloud.archive import ingest
from radcloud.archive.service import Archive
from radcloud.store.models import Instance
from radcloud.web.app import create_app

pytestmark = pytest.mark.anyio

SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"
ENCAPSULATED_PDF = "1.2.840.10008.5.1.4.1.1.104.1"


def _client(archive: Archive) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=create_app(archive))
    return httpx.AsyncClient(
        transport=transport, base_url="http://test", headers=_auth.headers(archive)
    )


@pytest.fixture
async def client(archive: Archive) -> AsyncIterator[httpx.AsyncClient]:
    async with _client(archive) as c:
        yield c


def instance_count(archive: Archive) -> int:
    with archive.read() as conn:
        return int(conn.scalar(select(func.count(Instance.id))) or 0)


def spool_files(archive: Archive) -> list[str]:
    return [p.name for p in archive.settings.tmp_dir.iterdir()]


def by_file(body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {i["file"]: i for i in body["instances"]}


async def test_single_dicom_body(client: httpx.AsyncClient, archive: Archive) -> None:
    sop, study = generate_uid(), generate_uid()
    data = make_ct(study, sop_uid=sop)
    r = await client.post(
        "/api/upload", content=data, headers={"Content-Type": "application/dicom"}
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["status"], body["stored"], body["duplicates"], body["failed"]) == ("ok", 1, 0, 0)
    (item,) = body["instances"]
    assert item == {"file": "upload", "status": "stored", "sopInstanceUID": sop,
                    "studyInstanceUID": study}  # fmt: skip
    again = await client.post(
        "/api/upload", content=data, headers={"Content-Type": "application/octet-stream"}
    )
    assert again.status_code == 200
    assert again.json()["duplicates"] == 1 and again.json()["instances"][0]["status"] == "duplicate"
    assert instance_count(archive) == 1
    assert spool_files(archive) == []


async def test_multipart_form_data_many_files(client: httpx.AsyncClient, archive: Archive) -> None:
    study = generate_uid()
    files = [("files", (f"im{i}.dcm", make_ct(study, instance_number=i), "application/dicom"))
             for i in range(3)]  # fmt: skip
    r = await client.post("/api/upload", files=files, data={"note": "not a file"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["stored"] == 3 and body["failed"] == 0
    assert sorted(by_file(body)) == ["im0.dcm", "im1.dcm", "im2.dcm"]
    assert {i["studyInstanceUID"] for i in body["instances"]} == {study}
    assert instance_count(archive) == 3


async def test_zip_of_a_folder(client: httpx.AsyncClient, archive: Archive) -> None:
    study = generate_uid()
    archive_bytes = make_zip({
        "CT/": b"",
        "CT/DICOMDIR": b"not an instance",
        "CT/SER1/IM1": make_ct(study, instance_number=1),
        "CT/SER1/IM2": make_ct(study, instance_number=2),
        "__MACOSX/CT/._IM1": b"resource fork",
        "CT/.DS_Store": b"finder",
    })  # fmt: skip
    r = await client.post(
        "/api/upload", content=archive_bytes, headers={"Content-Type": "application/zip"}
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "ok" and body["stored"] == 2 and body["failed"] == 0
    assert sorted(by_file(body)) == ["upload/CT/SER1/IM1", "upload/CT/SER1/IM2"]
    found = await client.get(f"/dicom-web/studies/{study}/instances")
    assert len(found.json()) == 2
    assert spool_files(archive) == []


async def test_zip_among_form_files_with_a_bad_entry(
    client: httpx.AsyncClient, archive: Archive
) -> None:
    zipped = make_zip({"a.dcm": make_ct(), "readme.txt": b"hello, just text"})
    files = [
        ("file", ("study.zip", zipped, "application/zip")),
        ("file", ("loose.dcm", make_ct(), "application/octet-stream")),
    ]
    r = await client.post("/api/upload", files=files)
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "ok"  # plainly non-DICOM members of a zip are skipped, not failed
    assert (body["stored"], body["failed"], body["skipped"]) == (2, 0, 1)
    bad = by_file(body)["study.zip/readme.txt"]
    assert bad["status"] == "skipped" and "not a DICOM file" in bad["reason"]
    assert by_file(body)["loose.dcm"]["status"] == "stored"
    assert instance_count(archive) == 2


async def test_nothing_stored_is_422_problem(client: httpx.AsyncClient, archive: Archive) -> None:
    files = [("f", ("x.dcm", b"garbage" * 50, "application/dicom")),
             ("f", ("y.dcm", make_ct(sop_class_uid="1.2.3.4"), "application/dicom"))]  # fmt: skip
    r = await client.post("/api/upload", files=files)
    assert r.status_code == 422
    assert r.headers["content-type"] == "application/problem+json"
    body = r.json()
    assert body["failed"] == 2 and body["stored"] == 0
    reasons = {i["file"]: i["reason"] for i in body["instances"]}
    assert "not a DICOM file" in reasons["x.dcm"]
    assert "1.2.3.4" in reasons["y.dcm"]
    assert instance_count(archive) == 0


async def test_photo_without_study_fails_clearly(
    client: httpx.AsyncClient, archive: Archive
) -> None:
    r = await client.post(
        "/api/upload", content=make_jpeg(), headers={"Content-Type": "image/jpeg"}
    )
    assert r.status_code == 422
    (item,) = r.json()["instances"]
    assert item["status"] == "failed" and "?study=" in item["reason"]
    assert instance_count(archive) == 0


async def test_unknown_study_is_404(client: httpx.AsyncClient, archive: Archive) -> None:
    r = await client.post(
        f"/api/upload?study={generate_uid()}", content=make_jpeg(),
        headers={"Content-Type": "image/jpeg"},
    )  # fmt: skip
    assert r.status_code == 404
    r = await client.post("/api/upload?study=not-a-uid", content=make_jpeg(),
                          headers={"Content-Type": "image/jpeg"})  # fmt: skip
    assert r.status_code == 400


async def test_photo_and_pdf_wrapped_into_the_study(
    client: httpx.AsyncClient, archive: Archive
) -> None:
    study = generate_uid()
    ingest.store_bytes(archive, make_ct(study, patient_name="Li^Na", patient_id="PWRAP"))
    files = [
        ("files", ("photo.jpg", make_jpeg(), "image/jpeg")),
        ("files", ("referral.pdf", make_pdf(), "application/pdf")),
        ("files", ("photo2.jpg", make_jpeg(32, 32), "image/jpeg")),
    ]
    r = await client.post(f"/api/upload?study={study}", files=files)
    assert r.status_code == 200, r.text
    items = by_file(r.json())
    assert {i["status"] for i in items.values()} == {"stored"}
    assert {i["studyInstanceUID"] for i in items.values()} == {study}
    found = await client.get(f"/dicom-web/studies/{study}/instances")
    classes = sorted(i["00080016"]["Value"][0] for i in found.json())
    expected = ["1.2.840.10008.5.1.4.1.1.2", SECONDARY_CAPTURE, SECONDARY_CAPTURE, ENCAPSULATED_PDF]
    assert classes == sorted(expected)
    series = (await client.get(f"/dicom-web/studies/{study}/series")).json()
    sizes = sorted(s["00201209"]["Value"][0] for s in series)
    assert sizes == [1, 1, 2]  # both photos in one new series, the PDF in another
    pdf = await client.get("/dicom-web/instances", params={"SOPClassUID": ENCAPSULATED_PDF})
    (item,) = pdf.json()
    assert item["00100020"]["Value"] == ["PWRAP"]
    assert item["00080018"]["Value"] == [items["referral.pdf"]["sopInstanceUID"]]


async def test_unsupported_content_type_is_415(client: httpx.AsyncClient) -> None:
    r = await client.post("/api/upload", content=b"hi", headers={"Content-Type": "text/plain"})
    assert r.status_code == 415
    assert r.headers["content-type"] == "application/problem+json"


async def test_empty_form_is_400(client: httpx.AsyncClient) -> None:
    body = b'--zz\r\nContent-Disposition: form-data; name="only"\r\n\r\nfields\r\n--zz--\r\n'
    ctype = "multipart/form-data; boundary=zz"
    r = await client.post("/api/upload", content=body, headers={"Content-Type": ctype})
    assert r.status_code == 400
    assert "no files" in r.json()["detail"]


async def _chunks(total: int, prefix: bytes, size: int = 64 * 1024) -> AsyncIterator[bytes]:
    yield prefix
    sent = 0
    while sent < total:
        n = min(size, total - sent)
        sent += n
        yield b"\0" * n


@pytest.mark.parametrize("content_type", ["application/dicom", "multipart/form-data; boundary=zz"])
async def test_streamed_upload_over_the_limit_is_413(make_archive: Any, content_type: str) -> None:
    archive = make_archive(max_upload_bytes=256 * 1024)
    prefix = b""
    if content_type.startswith("multipart"):
        prefix = b'--zz\r\nContent-Disposition: form-data; name="f"; filename="a.dcm"\r\n\r\n'
    async with _client(archive) as c:
        r = await c.post("/api/upload", content=_chunks(2 * 1024 * 1024, prefix),
                         headers={"Content-Type": content_type})  # fmt: skip
    assert "content-length" not in r.request.headers  # really streamed (chunked)
    assert r.status_code == 413
    assert r.headers["content-type"] == "application/problem+json"
    assert spool_files(archive) == []
    assert list(archive.storage.keys()) == []
    assert instance_count(archive) == 0


async def test_declared_length_over_the_limit_is_413_at_once(make_archive: Any) -> None:
    archive = make_archive(max_upload_bytes=1024)
    async with _client(archive) as c:
        r = await c.post("/api/upload", content=make_ct(),
                         headers={"Content-Type": "application/dicom"})  # fmt: skip
    assert r.status_code == 413
    assert "1024" in r.json()["detail"]
    assert spool_files(archive) == []
