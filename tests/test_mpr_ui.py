"""The viewer's MPR / 3D layout (``web/src/mpr.ts``) on the server-side volume service (issue 5).

HTTP: the cross-hair reply carries the CT value under the cursor (the layout's probe).

Browser: ``tests/js/mpr.spec.mjs`` (playwright-core driving Debian Chromium) against
``radcloud serve`` holding a CT phantom of known geometry: 96×96 pixels of 1 mm, 61 slices
1 mm apart (z = 0 … −60), a water cylinder (radius 40 mm) in air, a 1000 HU sphere of radius
8 mm centred at patient (12, −10, −30) mm and two 1000 HU beads (radius 2.5 mm) 40 mm apart at
(−25, 20, −30) and (15, 20, −30).  The scenario enters MPR from the viewer's toolbar, clicks
the sphere's centre found in the axial picture and checks that the reported cursor lies within
a voxel of the true centre and that the coronal and sagittal cross-hairs land on the sphere
found in their own pictures; it measures the beads (40 mm), probes the sphere (1000 HU),
compares a thin slice with a 20 mm MIP and MinIP slab, rotates a plane, opens VR, applies a
preset, turns the camera, cuts with the scalpel and undoes it, saves the plane as a series and
finds it through QIDO; edits the VR's opacity curve on the transfer-function editor (the picture
changes; reset brings the preset's picture back); then the phone layout (one plane at a time,
tabs) in Chinese.  A second series of the same study holds a curved tube (a quarter circle of
radius 25 mm in the axial plane z = −30, 5 mm across, 1000 HU) for the CPR scenario: points
clicked along it give a CPR whose length is the clicked path's and whose straightened picture
shows the tube as a straight vertical band.
Screenshots are copied to ``/tmp/radcloud-shots/mpr-*.png``.
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Iterator
from pathlib import Path

import _auth
import _browser
import httpx
import pytest
from fastapi.testclient import TestClient

from radcloud.archive import ingest
from radcloud.archive.service import Archive
from radcloud.auth import accounts
from radcloud.volume.phantom import Marker, marker_series
from radcloud.web.app import create_app
from radcloud.web.routes import app_pages

SPEC = _browser.JS / "mpr.spec.mjs"
ADMIN_PASSWORD = _browser.ADMIN_PASSWORD

SPHERE = Marker((12.0, -10.0, -30.0), 8.0, 1000.0)
BEADS = [Marker((-25.0, 20.0, -30.0), 2.5, 1000.0), Marker((15.0, 20.0, -30.0), 2.5, 1000.0)]
SIZE, SLICES, BODY_RADIUS = 96, 61, 40.0
#: The CPR phantom's tube: centre line a quarter circle (radius, z, degrees from, to), radius.
ARC_RADIUS, ARC_Z, ARC_FROM, ARC_TO, TUBE_RADIUS = 25.0, -30.0, 0.0, 90.0, 2.5


def arc_point(deg: float) -> tuple[float, float, float]:
    a = math.radians(deg)
    return (ARC_RADIUS * math.cos(a) - 5.0, ARC_RADIUS * math.sin(a) - 10.0, ARC_Z)


def tube_phantom(study_uid: str) -> list:  # type: ignore[type-arg]
    """The CPR phantom: the tube drawn as overlapping balls every 0.5 mm along its centre line."""
    n = int(math.radians(ARC_TO - ARC_FROM) * ARC_RADIUS / 0.5) + 1
    balls = [Marker(arc_point(ARC_FROM + (ARC_TO - ARC_FROM) * i / (n - 1)), TUBE_RADIUS, 1000.0)
             for i in range(n)]  # fmt: skip
    out = []
    for ds in marker_series(
        balls, rows=SIZE, columns=SIZE, n_slices=SLICES, body_radius=BODY_RADIUS,
        patient_id="MPR0001", study_uid=study_uid,
    ):  # fmt: skip
        ds.SeriesDescription = "CPR tube phantom"
        ds.StudyDescription = "CT MPR PHANTOM"
        ds.SeriesNumber = 4
        out.append(ds)
    return out


def phantom() -> list:  # type: ignore[type-arg]
    """The phantom's slices (see the module docstring)."""
    out = []
    for ds in marker_series(
        [SPHERE, *BEADS], rows=SIZE, columns=SIZE, n_slices=SLICES, body_radius=BODY_RADIUS,
        patient_id="MPR0001",
    ):  # fmt: skip
        ds.SeriesDescription = "MPR phantom 1 mm"
        ds.StudyDescription = "CT MPR PHANTOM"
        out.append(ds)
    return out


# ------------------------------------------------------------------ HTTP


@pytest.fixture
def client(archive: Archive) -> Iterator[TestClient]:
    with TestClient(create_app(archive), headers=_auth.headers(archive)) as c:
        yield c


def test_crosshair_reports_the_value_under_the_cursor(archive: Archive, client: TestClient) -> None:
    principal = accounts.cli_principal(1)
    result = None
    for ds in marker_series([SPHERE], rows=48, columns=48, n_slices=48, body_radius=22):
        result = ingest.store_dataset(archive, ds, principal=principal)
    assert result is not None
    base = f"/api/volume/studies/{result.study_uid}/series/{result.series_uid}"
    views = {"axial": {"plane": "axial", "width": 64, "height": 64}}
    for cursor, value in (
        (SPHERE.center, 1000.0),  # the sphere
        ((0.0, 0.0, -10.0), 0.0),  # water, on the cylinder's axis
        ((0.0, -23.4, -10.0), -1000.0),  # air: the nearest voxel is 23.5 mm from the axis
    ):
        r = client.post(base + "/crosshair", json={"views": views, "cursor": list(cursor)})
        assert r.status_code == 200, r.text
        assert r.json()["inside"] is True and r.json()["value"] == value, cursor
    r = client.post(base + "/crosshair", json={"views": views, "cursor": [500.0, 0.0, 0.0]})
    assert r.json()["inside"] is False and r.json()["value"] is None


def test_volume_facts_carry_a_histogram_for_the_transfer_function_editor(
    archive: Archive, client: TestClient
) -> None:
    principal = accounts.cli_principal(1)
    result = None
    for ds in marker_series([SPHERE], rows=48, columns=48, n_slices=48, body_radius=22):
        result = ingest.store_dataset(archive, ds, principal=principal)
    assert result is not None
    r = client.get(f"/api/volume/studies/{result.study_uid}/series/{result.series_uid}")
    assert r.status_code == 200, r.text
    hist = r.json()["histogram"]
    lo, hi = hist["range"]
    assert (lo, hi) == tuple(r.json()["value_range"])
    counts = hist["counts"]
    assert len(counts) == 128 and sum(counts) == 24 * 24 * 24  # every 2nd voxel of each axis

    def count_at(value: float) -> int:
        return int(counts[min(127, int((value - lo) / (hi - lo) * 128))])

    # air around the body, water inside it, the bright sphere: three peaks, nothing between
    assert min(count_at(-1000), count_at(0)) > count_at(1000) > 0
    assert count_at(-500) == 0 and count_at(500) == 0


# ------------------------------------------------------------------ the browser


def _store(base: str) -> tuple[str, str, str]:
    from dicom_factory import multipart_related

    series = phantom()
    tube = tube_phantom(str(series[0].StudyInstanceUID))
    parts = []
    for ds in [*series, *tube]:
        buf = io.BytesIO()
        ds.save_as(buf, enforce_file_format=True)
        parts.append(buf.getvalue())
    with httpx.Client(base_url=base, timeout=60) as http:
        login = http.post("/api/auth/login", json={"username": "admin", "password": ADMIN_PASSWORD})
        assert login.status_code == 200, login.text
        body, content_type = multipart_related(parts)
        auth = f"Bearer {login.json()['token']}"
        r = http.post(
            "/dicom-web/studies", content=body,
            headers={"Content-Type": content_type, "Authorization": auth},
        )  # fmt: skip
        assert r.status_code == 200, r.text
    return (
        str(series[0].StudyInstanceUID),
        str(series[0].SeriesInstanceUID),
        str(tube[0].SeriesInstanceUID),
    )


@pytest.mark.slow
def test_mpr_layout_in_a_real_browser(tmp_path: Path) -> None:
    from _server import Server

    if not (app_pages.APP / "index.html").is_file():
        pytest.fail("the front end is not built: run scripts/setup (npm ci + vite build in web/)")
    _browser.node()
    server = Server(tmp_path / "data", RADCLOUD_ADMIN_PASSWORD=ADMIN_PASSWORD)
    server.start()
    try:
        base = f"http://127.0.0.1:{server.http_port}"
        study, series, tube = _store(base)
        shots = tmp_path / "shots"
        env = {
            "STUDY_UID": study,
            "PHANTOM": json.dumps(
                {
                    "size": SIZE,
                    "series": series,
                    "sphere": list(SPHERE.center),
                    "sphereRadius": SPHERE.radius,
                    "beads": [list(b.center) for b in BEADS],
                    "downloads": str(tmp_path / "downloads"),
                    "tube": {
                        "series": tube,
                        "arc": [
                            arc_point(ARC_FROM + (ARC_TO - ARC_FROM) * i / 6) for i in range(7)
                        ],
                        "arcLength": math.radians(ARC_TO - ARC_FROM) * ARC_RADIUS,
                        "radius": TUBE_RADIUS,
                    },
                }
            ),
        }
        run = _browser.run_spec(SPEC, base, shots, tmp_path, env, 600)
        _browser.keep_shots(shots, {p.stem: f"mpr-{p.stem}" for p in shots.glob("*.png")})
        assert run.returncode == 0, f"browser scenario failed:\n{run.stdout}\n{run.stderr}"
        assert "ok: MPR / 3D layout passed" in run.stdout
        made = {p.stem for p in shots.glob("*.png")}
        assert {"desktop", "crosshair", "slab-mip", "rotated", "vr-cut", "saved", "phone"} <= made
        assert {"vr-tf", "cpr-straightened", "cpr-stretched"} <= made
    finally:
        server.stop()
