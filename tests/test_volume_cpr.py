"""Curved planar reformats: points on a curved path land on the centre column at the row of
their arc length, in both the straightened and the stretched form; and over HTTP."""

from __future__ import annotations

import io
import math

import _auth
import numpy as np
import orjson
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from radcloud.archive import ingest
from radcloud.archive.service import Archive
from radcloud.volume import build, cpr
from radcloud.volume.phantom import Marker, marker_series
from radcloud.web.app import create_app

R = 18.0  # radius (mm) of the quarter-circle path, in the coronal (x-z) plane
ORIGIN = np.array([8.0, -3.0, -6.0])
THETAS = (0.0, math.pi / 4, math.pi / 2)


def _arc(theta: float) -> np.ndarray:
    return ORIGIN + np.array([R * math.cos(theta) - R, 0.0, -R * math.sin(theta)])


SPAN = np.linspace(-0.3, math.pi / 2 + 0.3, 48)  # beyond the first and last marker
PATH = [_arc(t) for t in SPAN]
MARKERS = [Marker(tuple(_arc(t)), 1.5, 1000.0) for t in THETAS]  # type: ignore[arg-type]


def _series(**kw: object) -> list:  # type: ignore[type-arg]
    return list(marker_series(MARKERS, rows=56, columns=56, n_slices=32, **kw))  # type: ignore[arg-type]


def _blobs(img: np.ndarray, threshold: float) -> list[tuple[float, float]]:
    """Centroids (column, row) of bright blobs, top to bottom."""
    from scipy import ndimage

    labels, n = ndimage.label(np.nan_to_num(img, nan=-2000) > threshold)
    found = ndimage.center_of_mass(np.ones_like(img), labels, range(1, n + 1))
    return sorted(((c, r) for r, c in found), key=lambda p: p[1])


@pytest.mark.parametrize("kind", ["straightened", "stretched"])
@pytest.mark.parametrize("tilt", [0.0, 14.0])
def test_points_on_the_path_land_at_their_arc_length(kind: str, tilt: float) -> None:
    vol = build.from_datasets(_series(tilt_deg=tilt))
    out = cpr.curved(vol.data, vol.geometry, PATH, kind=kind, width=41, pixel_mm=0.5,
                     direction=(0.0, 1.0, 0.0))  # fmt: skip
    chord = np.linalg.norm(np.diff(np.asarray(PATH), axis=0), axis=1).sum()
    assert out.length_mm == pytest.approx(chord, abs=0.5)
    blobs = _blobs(out.values, 400)
    assert len(blobs) == 3
    arc = np.concatenate([[0], np.cumsum(np.linalg.norm(np.diff(PATH, axis=0), axis=1))])
    # stretched CPR is true along the path only: blobs off it are sheared a little
    tolerance = 1.0 if kind == "straightened" else 2.0
    for (col, row), theta in zip(blobs, THETAS, strict=True):
        # arc length along the (polyline) path to the marker, in rows of 0.5 mm
        at = np.interp(theta, SPAN, arc) / 0.5
        row_at = min(int(round(at)), out.values.shape[0] - 1)
        assert out.values[row_at, 20] > 400  # the centre column runs through it
        assert abs(col - 20) <= tolerance and abs(row - at) <= tolerance, (kind, col, row, at)
    # the straightened frame stays perpendicular to the path
    t = np.gradient(out.centerline, axis=0)
    t /= np.linalg.norm(t, axis=1, keepdims=True)
    if kind == "straightened":
        assert np.abs((t * out.lateral).sum(axis=1)).max() < 1e-6


def test_bad_paths_are_refused() -> None:
    vol = build.from_datasets(_series())
    from radcloud.errors import BadQuery

    with pytest.raises(BadQuery):
        cpr.curved(vol.data, vol.geometry, [PATH[0]])
    with pytest.raises(BadQuery):
        cpr.curved(vol.data, vol.geometry, [PATH[0], PATH[0]])
    with pytest.raises(BadQuery):
        cpr.curved(vol.data, vol.geometry, PATH, kind="bent")


def test_cpr_over_http(archive: Archive) -> None:
    result = None
    for ds in _series():
        result = ingest.store_dataset(archive, ds)
    assert result is not None
    url = f"/api/volume/studies/{result.study_uid}/series/{result.series_uid}/cpr"
    body = {
        "path": [list(map(float, p)) for p in PATH],
        "width": 41,
        "pixel_mm": 0.5,
        "format": "png",
        "window": [500, 1000],
        "client": "c",
        "viewport": "cpr",
        "seq": 2,
    }
    with TestClient(create_app(archive), headers=_auth.headers(archive)) as client:
        r = client.post(url, json=body)
        assert r.status_code == 200, r.text
        info = orjson.loads(r.headers["x-radcloud-view"])
        assert info["kind"] == "cpr" and info["center_column"] == 20
        img = np.asarray(Image.open(io.BytesIO(r.content)))
        assert img.shape == (info["rows"], 41)
        assert [round(c) for c, _ in _blobs(img.astype(float), 200)] == [20, 20, 20]
        stale = client.post(url, json={**body, "seq": 1})
        assert stale.status_code == 204
        assert client.post(url, json={**body, "path": [[0, 0, 0]]}).status_code == 400


def test_save_cpr_as_a_derived_series(archive: Archive) -> None:
    from pydicom import dcmread

    from radcloud.archive import retrieve
    from radcloud.auth.access import SYSTEM

    result = None
    for ds in _series():
        result = ingest.store_dataset(archive, ds)
    assert result is not None
    study, series = result.study_uid, result.series_uid
    url = f"/api/volume/studies/{study}/series/{series}/derived"
    cpr_body = {"path": [list(map(float, p)) for p in PATH], "width": 41, "pixel_mm": 0.5}
    with TestClient(create_app(archive), headers=_auth.headers(archive)) as client:
        r = client.post(url, json={"cpr": cpr_body, "count": 3, "angle_step": 60})
        assert r.status_code == 201, r.text
    saved = r.json()
    refs = retrieve.find_instances(archive, study, saved["series_uid"], principal=SYSTEM)
    images = [dcmread(io.BytesIO(retrieve.read_verified(archive, ref))) for ref in refs]
    assert len(images) == 3
    for ds in images:
        assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.7"
        assert ds.DerivationCodeSequence[0].CodeValue == "113073"
        assert [float(v) for v in ds.NominalScannedPixelSpacing] == [0.5, 0.5]
        hu = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
        # the path runs through the markers whatever the angle about it
        assert [round(c) for c, _ in _blobs(hu, 400)] == [20, 20, 20]
