"""WADO-RS over HTTP: instances with transfer-syntax negotiation, metadata, frames, bulk data,
rendered images and thumbnails, and the errors a client sees."""

from __future__ import annotations

import hashlib
import io
import random
import time
from collections.abc import Iterator
from typing import Any

import _auth
import anyio
import imagecodecs
import numpy as np
import orjson
import pytest
from _wado_data import (
    ELE,
    HTJ2K,
    J2K,
    JLS,
    RLE,
    Part,
    bundled,
    instance_path,
    parse_multipart,
    part10,
    pixels_of,
    read,
    store,
)
from fastapi.testclient import TestClient
from PIL import Image
from pydicom.encaps import generate_frames
from sqlalchemy import func, select

from radcloud.archive import render_service, retrieve
from radcloud.archive.ingest import StoreResult
from radcloud.archive.service import Archive
from radcloud.auth.access import SYSTEM
from radcloud.errors import IntegrityError
from radcloud.store.models import Thumbnail
from radcloud.testing.phantom import make_dataset, tiny_ct_series
from radcloud.web.app import create_app
from radcloud.web.routes import wado


@pytest.fixture
def client(archive: Archive) -> Iterator[TestClient]:
    with TestClient(create_app(archive), headers=_auth.headers(archive)) as c:
        yield c


def dicom_accept(*syntaxes: str) -> str:
    return ", ".join(
        f'multipart/related; type="application/dicom"; transfer-syntax={ts}' for ts in syntaxes
    )


def get_parts(client: TestClient, url: str, accept: str | None = None) -> list[Part]:
    resp = client.get(url, headers={"Accept": accept} if accept else {})
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"].startswith("multipart/related; type=")
    return parse_multipart(resp.headers["content-type"], resp.content)


def problem(resp: Any, status: int) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = resp.json()
    assert body["status"] == status
    return body


def ct_series(archive: Archive, n: int = 5, size: int = 32) -> tuple[list[bytes], StoreResult]:
    """A phantom CT series stored in shuffled order; files returned in instance order."""
    files = [part10(ds) for ds in tiny_ct_series(n, size=size)]
    results = [store(archive, f) for f in random.Random(4).sample(files, n)]
    return files, results[0]


def series_path(r: StoreResult) -> str:
    return f"/dicom-web/studies/{r.study_uid}/series/{r.series_uid}"


# ------------------------------------------------------------------ instances


def test_transfer_syntax_star_returns_the_file_as_received(
    client: TestClient, archive: Archive
) -> None:
    data = bundled("MR_small_jpeg_ls_lossless.dcm")
    r = store(archive, data)
    (part,) = get_parts(client, instance_path(r), dicom_accept("*"))
    assert hashlib.sha256(part.body).hexdigest() == hashlib.sha256(data).hexdigest()
    assert part.content_type == f"application/dicom; transfer-syntax={JLS}"
    assert part.headers["content-location"].endswith(instance_path(r))


def test_default_is_explicit_vr_le_even_for_a_jpeg_ls_file(
    client: TestClient, archive: Archive
) -> None:
    data = bundled("MR_small_jpeg_ls_lossless.dcm")
    r = store(archive, data)
    (part,) = get_parts(client, instance_path(r))
    assert part.transfer_syntax == ELE
    out = read(part.body)
    assert out.file_meta.TransferSyntaxUID == ELE
    assert out.SOPInstanceUID == r.sop_uid
    np.testing.assert_array_equal(out.pixel_array, pixels_of(data))


@pytest.mark.parametrize("ts", [JLS, J2K, RLE, HTJ2K])
@pytest.mark.parametrize("source", ["MR_small.dcm", "MR_small_jpeg_ls_lossless.dcm"])
def test_requested_syntax_keeps_every_pixel(
    client: TestClient, archive: Archive, ts: str, source: str
) -> None:
    data = bundled(source)
    r = store(archive, data)
    (part,) = get_parts(client, instance_path(r), dicom_accept(ts))
    assert part.transfer_syntax == ts
    out = read(part.body)
    assert out.file_meta.TransferSyntaxUID == ts
    np.testing.assert_array_equal(out.pixel_array, pixels_of(data))


def test_q_values_pick_the_preferred_syntax(client: TestClient, archive: Archive) -> None:
    r = store(archive, bundled("MR_small.dcm"))
    accept = (
        f'multipart/related; type="application/dicom"; transfer-syntax={J2K}; q=0.5, '
        f'multipart/related; type="application/dicom"; transfer-syntax={HTJ2K}; q=0.9'
    )
    (part,) = get_parts(client, instance_path(r), accept)
    assert part.transfer_syntax == HTJ2K


def test_equal_q_prefers_no_conversion(client: TestClient, archive: Archive) -> None:
    data = bundled("MR_small_jpeg_ls_lossless.dcm")
    r = store(archive, data)
    (part,) = get_parts(client, instance_path(r), dicom_accept(J2K, JLS))
    assert part.transfer_syntax == JLS
    assert part.body == data


def test_unencodable_choice_falls_back_to_the_next_range(
    client: TestClient, archive: Archive
) -> None:
    r = store(archive, bundled("MR_small.dcm"))
    accept = (
        'multipart/related; type="application/dicom"; transfer-syntax=1.2.840.10008.1.2.4.50, '
        f'multipart/related; type="application/dicom"; transfer-syntax={RLE}; q=0.2'
    )
    (part,) = get_parts(client, instance_path(r), accept)
    assert part.transfer_syntax == RLE


def test_compressed_at_rest_star_and_default_give_the_received_file(
    make_archive: Any,
) -> None:
    archive = make_archive(compression="jpeg-ls")
    data = part10(next(tiny_ct_series(1, size=32)))
    r = store(archive, data)
    (ref,) = retrieve.find_instances(archive, r.study_uid, principal=SYSTEM)
    assert ref.transfer_syntax_uid == JLS and ref.received_ts == ELE
    with TestClient(create_app(archive), headers=_auth.headers(archive)) as client:
        (star,) = get_parts(client, instance_path(r), dicom_accept("*"))
        (default,) = get_parts(client, instance_path(r))
        (jls,) = get_parts(client, instance_path(r), dicom_accept(JLS))
    assert star.body == data and star.transfer_syntax == ELE
    assert default.body == data
    assert jls.transfer_syntax == JLS
    np.testing.assert_array_equal(pixels_of(jls.body), pixels_of(data))


def test_series_parts_come_in_instance_order(client: TestClient, archive: Archive) -> None:
    files, r = ct_series(archive, 5)
    parts = get_parts(client, series_path(r))
    assert [read(p.body).SOPInstanceUID for p in parts] == [read(f).SOPInstanceUID for f in files]
    assert [p.body for p in parts] == files  # ELE as stored: the very same bytes
    assert [p.headers["content-location"].rsplit("/", 1)[1] for p in parts] == [
        read(f).SOPInstanceUID for f in files
    ]


def test_study_retrieve_spans_its_series(client: TestClient, archive: Archive) -> None:
    ct, r = ct_series(archive, 2)
    other = make_dataset(modality="MR", StudyInstanceUID=r.study_uid, SeriesNumber=9)
    store(archive, part10(other))
    parts = get_parts(client, f"/dicom-web/studies/{r.study_uid}")
    uids = [read(p.body).SOPInstanceUID for p in parts]
    assert uids == [read(f).SOPInstanceUID for f in ct] + [other.SOPInstanceUID]


def test_series_response_streams_part_by_part(
    archive: Archive, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, r = ct_series(archive, 12)
    made: list[str] = []
    real = render_service.instance_in

    def counting(a: Archive, ref: retrieve.InstanceRef, ts: str) -> bytes:
        made.append(ref.sop_uid)
        return real(a, ref, ts)

    monkeypatch.setattr(render_service, "instance_in", counting)
    resp = wado.retrieve_series(
        r.study_uid, r.series_uid, archive, SYSTEM, "http://x/dicom-web", None
    )
    time.sleep(0.2)  # let the read-ahead threads run as far as they may
    # the first part is ready before the response starts; read-ahead is bounded
    assert 1 <= len(made) <= 4

    async def first_chunks(n: int) -> list[bytes]:
        it = resp.body_iterator  # type: ignore[attr-defined]
        return [await it.__anext__() for _ in range(n)]

    chunks = anyio.run(first_chunks, 3)  # head, body and CRLF of part 1
    assert chunks[1].startswith(b"\0" * 128 + b"DICM")
    time.sleep(0.2)
    assert len(made) <= 5 < 12


def test_corrupted_blob_is_a_500_not_data(client: TestClient, archive: Archive) -> None:
    _, r = ct_series(archive, 2)
    refs = retrieve.find_instances(archive, r.study_uid, principal=SYSTEM)
    path = archive.storage.path(refs[0].blob_key)  # type: ignore[attr-defined]
    raw = bytearray(path.read_bytes())
    raw[-10] ^= 0xFF
    path.write_bytes(bytes(raw))
    url = f"{series_path(r)}/instances/{refs[0].sop_uid}"
    body = problem(client.get(url), 500)
    assert body["title"] == "Stored object failed its integrity check"
    assert refs[0].sop_uid in body["detail"]
    assert client.get(f"{series_path(r)}/instances/{refs[1].sop_uid}").status_code == 200


def test_corruption_mid_series_aborts_the_stream(client: TestClient, archive: Archive) -> None:
    _, r = ct_series(archive, 3)
    last = retrieve.find_instances(archive, r.study_uid, principal=SYSTEM)[-1]
    path = archive.storage.path(last.blob_key)  # type: ignore[attr-defined]
    raw = bytearray(path.read_bytes())
    raw[200] ^= 0x01
    path.write_bytes(bytes(raw))
    with pytest.raises(wado.StreamAborted) as caught:  # the connection drops mid-body
        client.get(series_path(r))
    assert isinstance(caught.value.__cause__, IntegrityError)


# ------------------------------------------------------------------ metadata and bulk data


def test_metadata_is_the_stored_json(client: TestClient, archive: Archive) -> None:
    files, r = ct_series(archive, 3)
    for url, uids in (
        (f"/dicom-web/studies/{r.study_uid}/metadata", (r.study_uid,)),
        (f"{series_path(r)}/metadata", (r.study_uid, r.series_uid)),
        (f"{instance_path(r)}/metadata", (r.study_uid, r.series_uid, r.sop_uid)),
    ):
        resp = client.get(url)
        assert resp.status_code == 200
        assert resp.headers["content-type"] == "application/dicom+json"
        assert resp.content == retrieve.metadata(archive, *uids, principal=SYSTEM)
    items = orjson.loads(client.get(f"{series_path(r)}/metadata").content)
    assert [i["00080018"]["Value"][0] for i in items] == [read(f).SOPInstanceUID for f in files]


def test_pixel_bulkdata_uri_from_metadata_serves_the_pixels(
    client: TestClient, archive: Archive
) -> None:
    files, r = ct_series(archive, 2)
    items = orjson.loads(client.get(f"{series_path(r)}/metadata").content)
    for item, f in zip(items, files, strict=True):
        uri = item["7FE00010"]["BulkDataURI"]
        assert uri.endswith("/bulkdata/7FE00010")
        (part,) = get_parts(client, uri)
        assert part.content_type == f"application/octet-stream; transfer-syntax={ELE}"
        assert part.body == read(f).PixelData


def test_other_bulkdata_is_the_element_value(client: TestClient, archive: Archive) -> None:
    ds = make_dataset(modality="MR")
    overlay = bytes(range(256)) * 16
    ds.add_new(0x60003000, "OW", overlay)
    r = store(archive, part10(ds))
    meta = orjson.loads(client.get(f"{instance_path(r)}/metadata").content)[0]
    (part,) = get_parts(client, meta["60003000"]["BulkDataURI"])
    assert part.body == overlay
    assert problem(client.get(f"{instance_path(r)}/bulkdata/00100010"), 404)
    assert problem(client.get(f"{instance_path(r)}/bulkdata/xyz"), 400)


def test_multiframe_compressed_pixel_bulkdata_is_one_part_per_frame(
    client: TestClient, archive: Archive
) -> None:
    data = bundled("SC_rgb_rle_2frame.dcm")
    r = store(archive, data)
    accept = 'multipart/related; type="application/octet-stream"; transfer-syntax=*'
    parts = get_parts(client, f"{instance_path(r)}/bulkdata/7FE00010", accept)
    want = list(generate_frames(read(data).PixelData, number_of_frames=2))
    assert [p.body for p in parts] == want
    assert {p.content_type for p in parts} == {f"image/dicom-rle; transfer-syntax={RLE}"}


# ------------------------------------------------------------------ frames


def test_native_frames_are_the_frame_bytes(client: TestClient, archive: Archive) -> None:
    ds = make_dataset(modality="MR", NumberOfFrames=3, Rows=16, Columns=12)
    r = store(archive, part10(ds))
    arr = ds.pixel_array
    (two,) = get_parts(client, f"{instance_path(r)}/frames/2")
    assert two.content_type == f"application/octet-stream; transfer-syntax={ELE}"
    assert two.body == arr[1].astype("<u2").tobytes()
    parts = get_parts(client, f"{instance_path(r)}/frames/3,1")
    assert [p.body for p in parts] == [arr[2].tobytes(), arr[0].tobytes()]
    assert parts[0].headers["content-location"].endswith(f"{instance_path(r)}/frames/3")


def test_compressed_frames_as_stored_or_decoded(client: TestClient, archive: Archive) -> None:
    data = bundled("SC_rgb_rle_2frame.dcm")
    r = store(archive, data)
    arr = pixels_of(data)
    (native,) = get_parts(client, f"{instance_path(r)}/frames/2")
    assert native.transfer_syntax == ELE
    assert native.body == arr[1].tobytes()
    accept = 'multipart/related; type="application/octet-stream"; transfer-syntax=*'
    (stored,) = get_parts(client, f"{instance_path(r)}/frames/2", accept)
    assert stored.content_type == f"image/dicom-rle; transfer-syntax={RLE}"
    assert stored.body == list(generate_frames(read(data).PixelData, number_of_frames=2))[1]


_DECODERS = {
    "image/jls": (JLS, imagecodecs.jpegls_decode),
    "image/jp2": (J2K, imagecodecs.jpeg2k_decode),
    "image/jphc": (HTJ2K, imagecodecs.htj2k_decode),
}


@pytest.mark.parametrize("media_type", sorted(_DECODERS))
def test_frames_in_a_compressed_media_type(
    client: TestClient, archive: Archive, media_type: str
) -> None:
    data = bundled("MR_small.dcm")
    r = store(archive, data)
    ts, decode = _DECODERS[media_type]
    accept = f'multipart/related; type="{media_type}"'
    (part,) = get_parts(client, f"{instance_path(r)}/frames/1", accept)
    assert part.content_type == f"{media_type}; transfer-syntax={ts}"
    got = decode(part.body).astype(np.int16)
    np.testing.assert_array_equal(got, pixels_of(data))


def test_frames_errors(client: TestClient, archive: Archive) -> None:
    r = store(archive, bundled("MR_small.dcm"))
    assert "no frame 2" in problem(client.get(f"{instance_path(r)}/frames/1,2"), 404)["detail"]
    problem(client.get(f"{instance_path(r)}/frames/0"), 400)
    problem(client.get(f"{instance_path(r)}/frames/one"), 400)
    jpeg = 'multipart/related; type="image/jpeg"'  # lossless JPEG: no encoder here
    problem(client.get(f"{instance_path(r)}/frames/1", headers={"Accept": jpeg}), 406)
    problem(client.get(f"{instance_path(r)}/frames/1", headers={"Accept": "text/html"}), 406)


# ------------------------------------------------------------------ rendered and thumbnails


def image(resp: Any, fmt: str) -> np.ndarray:
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"] == f"image/{fmt}"
    img = Image.open(io.BytesIO(resp.content))
    assert img.format == fmt.upper()
    return np.asarray(img.convert("L"), dtype=np.float64)


def test_rendered_jpeg_and_png_sizes(client: TestClient, archive: Archive) -> None:
    _, r = ct_series(archive, 3, size=64)
    url = f"{instance_path(r)}/rendered"
    assert image(client.get(url), "jpeg").shape == (64, 64)
    assert image(client.get(url, headers={"Accept": "image/png"}), "png").shape == (64, 64)
    assert image(client.get(url, params={"viewport": "32,32"}), "jpeg").shape == (32, 32)
    assert image(client.get(url, params={"viewport": "200,100"}), "jpeg").shape == (100, 100)


def test_window_changes_brightness_as_expected(client: TestClient, archive: Archive) -> None:
    _, r = ct_series(archive, 3, size=64)
    url = f"{instance_path(r)}/rendered"
    png = {"Accept": "image/png"}
    lung = image(client.get(url, params={"window": "-600,1500"}, headers=png), "png")
    bone = image(client.get(url, params={"window": "400,1800"}, headers=png), "png")
    assert lung.mean() > bone.mean() + 40  # soft tissue is near white in a lung window
    sigmoid = image(client.get(url, params={"window": "-600,1500,sigmoid"}, headers=png), "png")
    assert not np.array_equal(sigmoid, lung)


def test_rendered_quality_and_frames(client: TestClient, archive: Archive) -> None:
    ds = make_dataset(modality="MR", NumberOfFrames=3, Rows=48, Columns=48)
    r = store(archive, part10(ds))
    url = f"{instance_path(r)}"
    low = client.get(f"{url}/rendered", params={"quality": "5"})
    high = client.get(f"{url}/rendered", params={"quality": "100"})
    assert len(low.content) < len(high.content)
    one = image(client.get(f"{url}/frames/3/rendered", headers={"Accept": "image/png"}), "png")
    first = image(client.get(f"{url}/frames/1/rendered", headers={"Accept": "image/png"}), "png")
    assert not np.array_equal(one, first)  # the pattern moves from frame to frame
    parts = get_parts(client, f"{url}/frames/1,3/rendered", "image/png")
    assert [p.content_type for p in parts] == ["image/png", "image/png"]


def test_series_and_study_rendered_use_a_middle_image(client: TestClient, archive: Archive) -> None:
    files, r = ct_series(archive, 5)
    middle = read(files[2]).SOPInstanceUID
    png = {"Accept": "image/png"}
    want = client.get(f"{series_path(r)}/instances/{middle}/rendered", headers=png).content
    assert client.get(f"{series_path(r)}/rendered", headers=png).content == want
    assert client.get(f"/dicom-web/studies/{r.study_uid}/rendered", headers=png).content == want


@pytest.mark.parametrize(
    ("params", "accept", "status"),
    [
        ({"window": "abc"}, None, 400),
        ({"window": "40,0"}, None, 400),
        ({"window": "40,400,cubic"}, None, 400),
        ({"viewport": "0,10"}, None, 400),
        ({"viewport": "10"}, None, 400),
        ({"quality": "101"}, None, 400),
        ({}, "image/gif", 406),
        ({}, 'multipart/related; type="application/dicom"', 406),
    ],
)
def test_rendered_refuses_bad_requests(
    client: TestClient, archive: Archive, params: dict[str, str], accept: str | None, status: int
) -> None:
    r = store(archive, bundled("CT_small.dcm"))
    headers = {"Accept": accept} if accept else {}
    problem(client.get(f"{instance_path(r)}/rendered", params=params, headers=headers), status)


def thumbnail_rows(archive: Archive) -> list[tuple[int, str]]:
    with archive.read() as conn:
        return [tuple(r) for r in conn.execute(select(Thumbnail.instance_fk, Thumbnail.variant))]


def test_thumbnail_is_rendered_once_then_read_from_the_cache(
    client: TestClient, archive: Archive, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, r = ct_series(archive, 1, size=256)
    url = f"{instance_path(r)}/thumbnail"
    first = client.get(url)
    assert image(first, "jpeg").shape == (128, 128)
    (ref,) = retrieve.find_instances(archive, r.study_uid, principal=SYSTEM)
    assert thumbnail_rows(archive) == [(ref.id, "jpeg128")]

    def fail(*_a: object, **_k: object) -> bytes:
        raise AssertionError("the cached thumbnail should have been used")

    monkeypatch.setattr(render_service.pixels, "render", fail)
    assert client.get(url).content == first.content
    assert len(thumbnail_rows(archive)) == 1


def test_series_and_study_thumbnails_cache_the_middle_instance(
    client: TestClient, archive: Archive
) -> None:
    files, r = ct_series(archive, 5)
    middle = read(files[2]).SOPInstanceUID
    ref = retrieve.find_instances(archive, r.study_uid, r.series_uid, middle, principal=SYSTEM)[0]
    a = client.get(f"{series_path(r)}/thumbnail")
    b = client.get(f"/dicom-web/studies/{r.study_uid}/thumbnail")
    assert image(a, "jpeg").shape == (32, 32)  # small images are not enlarged
    assert a.content == b.content
    assert thumbnail_rows(archive) == [(ref.id, "jpeg128")]
    with archive.read() as conn:
        assert conn.scalar(select(func.count()).select_from(Thumbnail)) == 1


def test_thumbnail_viewport_and_media_type(client: TestClient, archive: Archive) -> None:
    _, r = ct_series(archive, 1, size=256)
    url = f"{instance_path(r)}/thumbnail"
    assert image(client.get(url, params={"viewport": "64,64"}), "jpeg").shape == (64, 64)
    problem(client.get(url, headers={"Accept": "image/png"}), 406)
    frame = client.get(f"{instance_path(r)}/frames/1/thumbnail", params={"viewport": "50,50"})
    assert image(frame, "jpeg").shape == (50, 50)


# ------------------------------------------------------------------ not found / not acceptable


def test_unknown_uids_are_404(client: TestClient, archive: Archive) -> None:
    r = store(archive, bundled("CT_small.dcm"))
    for url in (
        "/dicom-web/studies/1.2.3",
        f"/dicom-web/studies/{r.study_uid}/series/1.2.3",
        f"{series_path(r)}/instances/1.2.3",
        f"{series_path(r)}/instances/1.2.3/frames/1",
        "/dicom-web/studies/1.2.3/metadata",
        "/dicom-web/studies/1.2.3/rendered",
        f"{series_path(r)}/instances/1.2.3/thumbnail",
    ):
        assert problem(client.get(url), 404)["title"] == "Not found", url


@pytest.mark.parametrize(
    "accept",
    [
        dicom_accept("1.2.840.10008.1.2"),  # Implicit VR LE is not used in DICOMweb
        dicom_accept("1.2.840.10008.1.2.4.50"),  # lossy: never produced
        "image/png",
        'multipart/related; type="application/dicom+xml"',
        f"{dicom_accept(JLS)}; q=0",
    ],
)
def test_unacceptable_instance_requests_are_406(
    client: TestClient, archive: Archive, accept: str
) -> None:
    r = store(archive, bundled("CT_small.dcm"))
    body = problem(client.get(instance_path(r), headers={"Accept": accept}), 406)
    assert body["title"] == "Not acceptable"


def test_metadata_only_as_json(client: TestClient, archive: Archive) -> None:
    r = store(archive, bundled("CT_small.dcm"))
    url = f"{instance_path(r)}/metadata"
    xml = {"Accept": 'multipart/related; type="application/dicom+xml"'}
    problem(client.get(url, headers=xml), 406)
    assert client.get(url, headers={"Accept": "application/json"}).status_code == 200


# ------------------------------------------------------------------ a real client


@pytest.fixture
def dicomweb(base_url: str, archive: Archive) -> Any:
    """dicomweb-client talking to a uvicorn server on a free port."""
    from dicomweb_client.api import DICOMwebClient

    return DICOMwebClient(url=base_url, headers=_auth.headers(archive))


def test_dicomweb_client_retrieves_everything(dicomweb: Any, archive: Archive) -> None:
    jls = bundled("MR_small_jpeg_ls_lossless.dcm")
    r = store(archive, jls)
    rgb = bundled("SC_rgb_rle_2frame.dcm")
    r2 = store(archive, rgb)
    uids = (r.study_uid, r.series_uid, r.sop_uid)
    as_j2k = dicomweb.retrieve_instance(*uids, media_types=(("application/dicom", J2K),))
    assert as_j2k.file_meta.TransferSyntaxUID == J2K
    np.testing.assert_array_equal(as_j2k.pixel_array, pixels_of(jls))
    star = (("application/dicom", "*"),)
    (whole,) = dicomweb.retrieve_series(r.study_uid, r.series_uid, media_types=star)
    assert whole.file_meta.TransferSyntaxUID == JLS
    (default,) = dicomweb.retrieve_series(r.study_uid, r.series_uid)
    assert default.file_meta.TransferSyntaxUID == ELE
    frames = dicomweb.retrieve_instance_frames(r2.study_uid, r2.series_uid, r2.sop_uid, [1, 2])
    assert frames == [f.tobytes() for f in pixels_of(rgb)]
    (meta,) = dicomweb.retrieve_series_metadata(r.study_uid, r.series_uid)
    assert meta["00080018"]["Value"] == [r.sop_uid]
    png = dicomweb.retrieve_instance_rendered(*uids, media_types=("image/png",))
    assert png.startswith(b"\x89PNG")


def test_metadata_and_searches_are_gzipped_for_clients_that_accept_it(
    client: TestClient, archive: Archive
) -> None:
    """Series metadata is repetitive JSON: on a thin link it goes gzip-encoded."""
    _, r = ct_series(archive, 12)
    url = f"/dicom-web/studies/{r.study_uid}/series/{r.series_uid}/metadata"
    plain = client.get(url, headers={"Accept-Encoding": "identity"})
    assert "content-encoding" not in plain.headers
    packed = client.get(url, headers={"Accept-Encoding": "gzip, deflate"})
    assert packed.headers["content-encoding"] == "gzip"
    assert packed.headers["vary"] == "Accept-Encoding"
    assert packed.json() == plain.json()  # httpx undoes the gzip
    assert packed.num_bytes_downloaded * 4 < plain.num_bytes_downloaded
    q = client.get("/dicom-web/studies", headers={"Accept-Encoding": "gzip;q=0"})
    assert "content-encoding" not in q.headers
    q = client.get("/dicom-web/instances", headers={"Accept-Encoding": "gzip"})
    assert q.headers["content-encoding"] == "gzip" and len(q.json()) == 12
