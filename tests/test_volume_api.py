"""Server-side 3D over HTTP, on both index back ends: views, cross-hairs, latest request
wins, access (404 for another institution's study), clear refusals, saving as a series."""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Iterator
from typing import Any

import _auth
import numpy as np
import orjson
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from pydicom import dcmread

from radcloud.archive import ingest, retrieve
from radcloud.archive.service import Archive
from radcloud.auth import accounts
from radcloud.auth.access import SYSTEM
from radcloud.volume.phantom import Marker, marker_series
from radcloud.volume.service import Superseded, ViewRequest, VolumeService
from radcloud.web.app import create_app

A = (10.0, -7.0, -12.0)
B = (-14.0, 9.0, -27.0)
MARKERS = [Marker(A, 2.0, 1000.0), Marker(B, 2.0, 800.0)]


def _store(archive: Archive, institution: int = 1, **kw: Any) -> tuple[str, str]:
    principal = accounts.cli_principal(institution)
    kw.setdefault("rows", 48)
    kw.setdefault("columns", 52)
    kw.setdefault("n_slices", 36)
    result = None
    for ds in marker_series(MARKERS, body_radius=20, **kw):
        result = ingest.store_dataset(archive, ds, principal=principal)
    assert result is not None
    return result.study_uid, result.series_uid


@pytest.fixture
def client(archive: Archive) -> Iterator[TestClient]:
    with TestClient(create_app(archive), headers=_auth.headers(archive)) as c:
        yield c


def _base(study: str, series: str) -> str:
    return f"/api/volume/studies/{study}/series/{series}"


def _image(content: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(content)))


def _bright_centroid(img: np.ndarray, threshold: int = 200) -> tuple[float, float]:
    gray = img.mean(axis=-1) if img.ndim == 3 else img
    ys, xs = np.nonzero(gray > threshold)
    assert xs.size, "nothing bright in the image"
    return float(xs.mean()), float(ys.mean())


def test_open_describes_geometry_and_builds_once(archive: Archive, client: TestClient) -> None:
    study, series = _store(archive, tilt_deg=12.0)
    r = client.get(_base(study, series))
    assert r.status_code == 200, r.text
    info = r.json()
    assert info["geometry"]["shape"] == [36, 48, 52]
    assert info["geometry"]["tilt_deg"] == pytest.approx(12.0, abs=0.01)
    assert "bone" in info["presets"] and "anterior" in info["orientations"]
    client.get(_base(study, series))
    svc = VolumeService.of(archive)
    assert svc.cache.builds == 1 and len(svc.cache) == 1


@pytest.mark.parametrize("plane", ["axial", "coronal", "sagittal"])
def test_view_shows_the_marker_where_the_header_says(
    archive: Archive, client: TestClient, plane: str
) -> None:
    study, series = _store(archive)
    params = {"plane": plane, "cursor": ",".join(map(str, A)), "center": "0,0,-15",
              "pixel_mm": "0.5", "width": 128, "height": 112, "format": "png",
              "window": "500,1000"}  # fmt: skip
    r = client.get(_base(study, series) + "/view", params=params)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "image/png"
    info = orjson.loads(r.headers["x-radcloud-view"])
    x, y = info["crosshair"]["pixel"]
    assert info["crosshair"]["patient"] == list(A)
    cx, cy = _bright_centroid(_image(r.content))
    # marker A is at the cross-hair; 0.5 mm pixels: within 1 pixel
    assert abs(cx - x) <= 1.0 and abs(cy - y) <= 1.0
    # the header's plane maps that pixel back to A
    p = info["plane"]
    back = np.add(p["origin"], np.multiply(p["u"], x * p["pixel_mm"]))
    back += np.multiply(p["v"], y * p["pixel_mm"])
    assert np.allclose(back, A, atol=1e-3)


def test_oblique_slab_mip_and_formats(archive: Archive, client: TestClient) -> None:
    study, series = _store(archive)
    base = {"plane": "coronal", "angles": "20,-15,10", "cursor": ",".join(map(str, A)),
            "pixel_mm": "0.5", "width": 96, "height": 96}  # fmt: skip
    for fmt, mt in (("jpeg", "image/jpeg"), ("webp", "image/webp"), ("png", "image/png")):
        r = client.get(_base(study, series) + "/view", params={**base, "format": fmt})
        assert r.status_code == 200 and r.headers["content-type"] == mt
    # a 40 mm MIP slab shows both markers although they are 16 mm apart off the plane
    r = client.get(
        _base(study, series) + "/view",
        params={**base, "slab_mm": 40, "mode": "mip", "format": "png", "window": "500,1000"},
    )
    info = orjson.loads(r.headers["x-radcloud-view"])
    assert info["mode"] == "mip" and info["slab_mm"] == 40
    img = _image(r.content)
    plane = info["plane"]
    for point in (A, B):
        d = np.subtract(point, plane["center"])
        px = d @ plane["u"] / plane["pixel_mm"] + 47.5
        py = d @ plane["v"] / plane["pixel_mm"] + 47.5
        assert (
            img[
                int(round(py)) - 1 : int(round(py)) + 2, int(round(px)) - 1 : int(round(px)) + 2
            ].max()
            > 150
        )


def test_crosshair_pick_moves_the_cursor_in_every_view(
    archive: Archive, client: TestClient
) -> None:
    study, series = _store(archive)
    views = {n: {"plane": n, "pixel_mm": 0.5, "width": 100, "height": 100}
             for n in ("axial", "coronal", "sagittal")}  # fmt: skip
    r = client.post(_base(study, series) + "/crosshair", json={"views": views, "cursor": list(A)})
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["inside"] is True
    ax = out["views"]["axial"]
    x, y = ax["crosshair"]["pixel"]
    # the viewports now show planes through A; a click on that pixel of the axial one
    # puts the cursor on A again
    shown = {n: {**v, "cursor": list(A)} for n, v in views.items()}
    r2 = client.post(
        _base(study, series) + "/crosshair",
        json={"views": shown, "pick_view": "axial", "pick": [x, y], "cursor": [0, 0, 0]},
    )
    assert np.allclose(r2.json()["cursor"], A, atol=1e-3)
    for name in ("coronal", "sagittal"):
        p = r2.json()["views"][name]
        assert p["crosshair"]["distance_mm"] == pytest.approx(0.0, abs=1e-6)
        plane = p["plane"]
        px, py = p["crosshair"]["pixel"]
        back = np.add(plane["origin"], np.multiply(plane["u"], px * plane["pixel_mm"]))
        back += np.multiply(plane["v"], py * plane["pixel_mm"])
        assert np.allclose(back, A, atol=1e-3)


def test_an_older_request_of_the_same_viewport_is_dropped(
    archive: Archive, client: TestClient
) -> None:
    study, series = _store(archive)
    url = _base(study, series) + "/view"
    common = {"client": "tab1", "viewport": "ax", "width": 32, "height": 32}
    assert client.get(url, params={**common, "seq": 5}).status_code == 200
    stale = client.get(url, params={**common, "seq": 3})
    assert stale.status_code == 204 and stale.headers["x-radcloud-superseded-by"] == "5"
    assert client.get(url, params={**common, "viewport": "cor", "seq": 1}).status_code == 200
    assert client.get(url, params={**common, "seq": 6}).status_code == 200


def test_requests_waiting_for_a_render_slot_are_dropped_when_superseded(
    make_archive: Any,
) -> None:
    archive = make_archive(volume_render_threads=1)
    study, series = _store(archive)
    svc = VolumeService.of(archive)
    svc.volume(study, series, principal=SYSTEM)
    results: dict[int, object] = {}

    def ask(seq: int) -> None:
        req = ViewRequest(width=32, height=32, client="c", viewport="v", seq=seq)
        try:
            results[seq] = svc.view(study, series, req, principal=SYSTEM)
        except Superseded as exc:
            results[seq] = exc

    svc.slots.acquire()  # someone else's render is running
    first = threading.Thread(target=ask, args=(1,))
    first.start()
    time.sleep(0.3)  # 1 is now waiting for the slot
    second = threading.Thread(target=ask, args=(2,))
    second.start()
    time.sleep(0.3)
    svc.slots.release()
    first.join(20)
    second.join(20)
    assert isinstance(results[1], Superseded) and results[1].latest == 2
    assert not isinstance(results[2], Superseded)


def test_another_institutions_series_is_not_found(archive: Archive, client: TestClient) -> None:
    other = accounts.create_institution(archive, "other-hosp", "Other").id
    study, series = _store(archive, institution=other)
    headers = _auth.headers(archive, username="rad", roles=("radiologist",))
    for method, path, body in (
        ("GET", "", None),
        ("GET", "/view", None),
        ("POST", "/crosshair", {"views": {"a": {}}}),
        ("POST", "/derived", {"view": {}}),
    ):
        r = client.request(method, _base(study, series) + path, json=body, headers=headers)
        assert r.status_code == 404, (path, r.status_code)
        assert "Geometry" not in r.text
    assert client.get(_base(study, series), headers=headers).status_code == 404


def test_a_series_that_is_not_a_volume_is_refused_clearly(
    archive: Archive, client: TestClient
) -> None:
    study, series = _store(archive, positions=[0, 1, 2, 3, 10, 11, 12])
    r = client.get(_base(study, series) + "/view")
    assert r.status_code == 422
    assert r.headers["content-type"] == "application/problem+json"
    assert "slices are missing" in r.json()["detail"]


def test_bad_parameters_are_bad_requests(archive: Archive, client: TestClient) -> None:
    study, series = _store(archive)
    url = _base(study, series) + "/view"
    for params in ({"angles": "1,2"}, {"plane": "diagonal"}, {"width": 0}, {"mode": "max"},
                   {"cuts": "{"}, {"kind": "vr", "preset": "nothing"},
                   {"kind": "vr", "orientation": "up"}, {"angles": "nan,0,0"},
                   {"kind": "vr", "azimuth": "nan"}, {"cursor": "0,inf,0"}, {"cuts": "[1]"},
                   {"kind": "vr", "cuts": '[{"kind": "sphere"}]'}, {"window": "40,0"}):  # fmt: skip
        r = client.get(url, params=params)
        assert r.status_code == 400, (params, r.status_code, r.text)


def _stored(archive: Archive, study: str, series: str) -> list[Any]:
    refs = retrieve.find_instances(archive, study, series, principal=SYSTEM)
    return [dcmread(io.BytesIO(retrieve.read_verified(archive, r))) for r in refs]


def test_save_mpr_as_a_derived_series(archive: Archive, client: TestClient) -> None:
    study, series = _store(archive)
    view = {"plane": "coronal", "angles": [0, 0, 20], "cursor": list(A), "pixel_mm": 0.5,
            "width": 80, "height": 72, "slab_mm": 3, "mode": "avg"}  # fmt: skip
    body = {"view": view, "count": 5, "step_mm": 2.0, "description": "Coronal oblique"}
    r = client.post(_base(study, series) + "/derived", json=body)
    assert r.status_code == 201, r.text
    saved = r.json()
    assert saved["instances"] == 5 and saved["sop_class_uid"] == "1.2.840.10008.5.1.4.1.1.2"
    # in the study list like any other series
    listed = client.get(f"/dicom-web/studies/{study}/series").json()
    assert saved["series_uid"] in {s["0020000E"]["Value"][0] for s in listed}
    images = sorted(_stored(archive, study, saved["series_uid"]), key=lambda d: d.InstanceNumber)
    sources = {r.sop_uid for r in retrieve.find_instances(archive, study, series, principal=SYSTEM)}
    normals = []
    for ds in images:
        assert list(ds.ImageType[:3]) == ["DERIVED", "SECONDARY", "REFORMATTED"]
        assert ds.SeriesDescription == "Coronal oblique"
        assert ds.StudyInstanceUID == study and ds.Modality == "CT"
        assert ds.DerivationCodeSequence[0].CodeValue == "113072"
        refs = {item.ReferencedSOPInstanceUID for item in ds.SourceImageSequence}
        assert refs and refs <= sources
        assert ds.ReferencedSeriesSequence[0].SeriesInstanceUID == series
        assert ds.SourceImageSequence[0].PurposeOfReferenceCodeSequence[0].CodeValue == "121322"
        assert "3 mm" in ds.DerivationDescription
        row, col = (
            np.array(ds.ImageOrientationPatient[:3]),
            np.array(ds.ImageOrientationPatient[3:]),
        )
        normals.append(np.cross(row, col))
        assert [float(v) for v in ds.PixelSpacing] == [0.5, 0.5]
    # the middle image passes through A: A is at the pixel its IPP/IOP/PixelSpacing give
    mid = images[2]
    ipp = np.array(mid.ImagePositionPatient, float)
    row, col = np.array(mid.ImageOrientationPatient[:3]), np.array(mid.ImageOrientationPatient[3:])
    px = (np.subtract(A, ipp) @ row) / 0.5
    py = (np.subtract(A, ipp) @ col) / 0.5
    hu = mid.pixel_array * float(mid.RescaleSlope) + float(mid.RescaleIntercept)
    ys, xs = np.nonzero(hu > 400)
    assert abs(xs.mean() - px) <= 1.0 and abs(ys.mean() - py) <= 1.0
    # images are 2 mm apart along their normal
    gaps = np.diff([float(np.array(d.ImagePositionPatient, float) @ normals[0]) for d in images])
    assert np.allclose(np.abs(gaps), 2.0, atol=1e-3)


def test_save_vr_as_secondary_capture_with_scalpel(archive: Archive, client: TestClient) -> None:
    study, series = _store(archive)
    view = {"kind": "vr", "preset": "bone", "orientation": "anterior", "width": 64, "height": 64,
            "cuts": [{"kind": "box", "min": [0, -30, -20], "max": [30, 30, 0]}]}  # fmt: skip
    r = client.post(_base(study, series) + "/derived", json={"view": view, "count": 2})
    assert r.status_code == 201, r.text
    images = _stored(archive, study, r.json()["series_uid"])
    assert len(images) == 2
    for ds in images:
        assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.7"
        assert ds.PhotometricInterpretation == "RGB" and ds.pixel_array.shape == (64, 64, 3)
        codes = [c.CodeValue for c in ds.DerivationCodeSequence]
        assert codes == ["113074", "113077"]
        assert len(ds.SourceImageSequence) == 36


def test_vr_view_presets_orientations_and_undoable_scalpel(
    archive: Archive, client: TestClient
) -> None:
    study, series = _store(archive)
    url = _base(study, series) + "/view"
    params = {"kind": "vr", "preset": "bone", "width": 96, "height": 96, "format": "png"}
    r = client.get(url, params=params)
    assert r.status_code == 200, r.text
    info = orjson.loads(r.headers["x-radcloud-view"])
    cam = info["camera"]

    def at(img: np.ndarray, point: tuple[float, float, float]) -> float:
        d = np.subtract(point, cam["center"])
        x = int(round(d @ cam["u"] / cam["pixel_mm"] + 47.5))
        y = int(round(d @ cam["v"] / cam["pixel_mm"] + 47.5))
        return float(img[y - 1 : y + 2, x - 1 : x + 2].mean(axis=-1).max())

    full = _image(r.content)
    assert at(full, A) > 60 and at(full, B) > 60
    # a polygon around A drawn on this image, cut through the whole depth
    d = np.subtract(A, cam["center"])
    ax = float(d @ cam["u"] / cam["pixel_mm"] + 47.5)
    ay = float(d @ cam["v"] / cam["pixel_mm"] + 47.5)
    poly = [[ax - 6, ay - 6], [ax + 6, ay - 6], [ax + 6, ay + 6], [ax - 6, ay + 6]]
    cuts = [{"kind": "polygon", "points": poly, "camera": cam}]
    cut = _image(client.get(url, params={**params, "cuts": orjson.dumps(cuts).decode()}).content)
    assert at(cut, A) < 10 and at(cut, B) > 60
    # keep only the inside of a box around B
    box = [{"kind": "box", "min": [c - 5 for c in B], "max": [c + 5 for c in B],
            "remove": "outside"}]  # fmt: skip
    only_b = _image(client.get(url, params={**params, "cuts": orjson.dumps(box).decode()}).content)
    assert at(only_b, A) < 10 and at(only_b, B) > 60
    # undo = the same request without the cut
    again = _image(client.get(url, params=params).content)
    assert np.array_equal(again, full)
    for preset in ("lung", "vessels", "skin", "mra"):
        assert client.get(url, params={**params, "preset": preset}).status_code == 200
    side = client.get(url, params={**params, "orientation": "left", "azimuth": 15})
    assert orjson.loads(side.headers["x-radcloud-view"])["camera"]["forward"][0] < -0.9
    edited = client.get(url, params={**params, "opacity": "-2000:0,500:0,600:0.9",
                                     "colors": "0:#ff0000,1000:#ff0000"})  # fmt: skip
    img = _image(edited.content)
    assert at(img, A) > 60 and img[..., 1].max() < 80  # red only


def test_renders_are_limited_to_the_configured_slots(
    make_archive: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    archive = make_archive(volume_render_threads=2)
    study, series = _store(archive)
    svc = VolumeService.of(archive)
    svc.volume(study, series, principal=SYSTEM)
    from radcloud.volume import mpr

    active, peak = [0], [0]
    lock = threading.Lock()
    real = mpr.sample

    def counting(*args: Any, **kw: Any) -> Any:
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        time.sleep(0.05)
        try:
            return real(*args, **kw)
        finally:
            with lock:
                active[0] -= 1

    monkeypatch.setattr(mpr, "sample", counting)
    threads = [
        threading.Thread(
            target=svc.view, args=(study, series, ViewRequest(width=32, height=32)),
            kwargs={"principal": SYSTEM},
        )
        for _ in range(8)
    ]  # fmt: skip
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert peak[0] == 2
