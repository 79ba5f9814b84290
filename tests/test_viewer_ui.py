"""The study list and viewer (``web/``, Cornerstone3D): served right, and used in a real browser.

HTTP: ``/`` and ``/viewer`` serve the built page shell with its CSP and cache
headers, the hashed assets (WASM as ``application/wasm``) are cached for good,
and nothing outside the build folder can be fetched.

Browser: ``tests/js/viewer.spec.mjs`` (playwright-core driving Debian Chromium)
against ``radcloud serve`` holding a synthetic CT series of known geometry
(built here): 256×256 pixels of 0.75 mm, 24 slices; air outside a 40 HU body,
and a 100 HU disc (radius 30 pixels) at column 90, row 128.  It signs in,
searches, opens the study, and checks pixels, the overlay, presets, a length
(160 pixels = 120 mm) and an ellipse ROI mean (100 HU), the PNG export, and the
phone layout.  Then (issue 4) a Cobb angle (14.04°), a polyline (160 pixels =
120 mm), a closed freehand area (40×40 pixels = 900 mm²), a cardiothoracic ratio
(150 mm / 60 mm → 0.40), an arrow with text, the magnifier's power, colour maps,
linked scrolling by position against a second 5 mm series numbered in reverse,
and the user's settings on the server (custom W/L preset, layout, last tool,
overlay fields per modality) after a reload and in a second browser.
Screenshots are copied to ``/tmp/radcloud-shots/viewer-*.png`` and ``viewer2-*.png``.
"""

from __future__ import annotations

import copy
import gzip
import json
import re
from collections.abc import Iterator
from pathlib import Path

import _browser
import numpy as np
import pydicom
import pytest
from fastapi.testclient import TestClient
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from radcloud.archive.service import Archive
from radcloud.config import Settings
from radcloud.web.app import create_app
from radcloud.web.routes import app_pages

SPEC = _browser.JS / "viewer.spec.mjs"
ADMIN_PASSWORD = _browser.ADMIN_PASSWORD

#: The phantom's geometry, shared with the browser scenario through the environment.
SIZE, SPACING, SLICES = 256, 0.75, 24
BODY_HU, DISC_HU, DISC = 40, 100, (90, 128, 30)  # disc: column, row, radius (pixels)
PATIENT_ID, PATIENT_NAME = "RCV-0042", "Wang^Xiaoming=王^小明"


def _built() -> None:
    if not (app_pages.APP / "index.html").is_file():
        pytest.fail("the front end is not built: run scripts/setup (npm ci + vite build in web/)")


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    archive = Archive.open(Settings(data_dir=tmp_path / "data", dicom_port=0))  # type: ignore[call-arg]
    with TestClient(create_app(archive)) as c:
        yield c
    archive.close()


def test_page_shell_and_headers(client: TestClient) -> None:
    _built()
    for path in ("/", "/viewer", "/viewer?study=1.2.3"):
        r = client.get(path)
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
        csp = r.headers["content-security-policy"]
        assert (
            "'wasm-unsafe-eval'" in csp
            and "worker-src 'self'" in csp
            and "script-src 'self' 'wasm-unsafe-eval';" in csp
        )
        assert r.headers["cache-control"] == "no-cache"
        assert 'href="/admin"' in r.text and 'href="/api/docs"' in r.text
        assert re.search(r'src="/app/assets/index-[\w-]{8}\.js"', r.text)


def test_assets_media_types_and_caching(client: TestClient) -> None:
    _built()
    names = {p.suffix: p.name for p in app_pages.ASSETS.iterdir()}
    for suffix, media in (
        (".js", "text/javascript"),
        (".css", "text/css"),
        (".wasm", "application/wasm"),
    ):
        r = client.get(f"/app/assets/{names[suffix]}")
        assert r.status_code == 200, suffix
        assert r.headers["content-type"].startswith(media)
        assert r.headers["cache-control"] == "public, max-age=31536000, immutable"
        assert r.headers["x-content-type-options"] == "nosniff"
        assert r.content == (app_pages.ASSETS / names[suffix]).read_bytes()
        if len(r.content) > 1024:
            assert r.headers["content-encoding"] == "gzip"  # httpx asked for it and unpacked it
        plain = client.get(f"/app/assets/{names[suffix]}", headers={"Accept-Encoding": "identity"})
        assert "content-encoding" not in plain.headers and plain.content == r.content
    for bad in (
        "../index.html",
        "..%2Findex.html",
        "nope-12345678.js",
        "index.html",
        ".radcloud-build.sha256",
    ):
        assert client.get(f"/app/assets/{bad}").status_code == 404, bad


def test_viewer_needs_no_session_but_data_does(client: TestClient) -> None:
    _built()
    assert client.get("/viewer").status_code == 200  # the shell: no patient data in it
    assert client.get("/dicom-web/studies").status_code == 401


# ------------------------------------------------------------------ the browser


def phantom_series() -> list[Dataset]:
    """24 axial CT slices of known geometry (see the module docstring); slice n has a
    bright marker that moves with n, so scrolling visibly changes the picture.

    Then a second series of the same volume (same frame of reference): 12 slices of 5 mm
    (every other position), numbered bottom-up (instance 1 is the highest slice), so
    linked scrolling has to go by position, not by image number.  And a coronal series
    (3 images) for the reference lines."""
    study, frame_of_reference = generate_uid(), generate_uid()
    axial = _series(study, frame_of_reference, generate_uid(), 2, SLICES, 2.5, False)
    thick = _series(study, frame_of_reference, generate_uid(), 3, SLICES // 2, 5.0, True)
    return axial + thick + _coronal(axial[0], generate_uid())


#: The coronal series: row 0 lies at z = CORONAL_TOP mm, rows go down (−z) by SPACING.
CORONAL_TOP = 66.0


def _coronal(template: Dataset, series: str) -> list[Dataset]:
    rows = np.arange(SIZE)[:, None]
    cols = np.arange(SIZE)[None, :]
    z = CORONAL_TOP - SPACING * rows
    inside = (np.abs(cols - 128) <= 110) & (z >= -30) & (z <= -30 + 2.5 * (SLICES - 1))
    out = []
    for n, y in enumerate((-10.0, 0.0, 10.0)):
        hu = np.where(inside, BODY_HU, -1000).astype(np.int32)
        ds = copy.deepcopy(template)  # Dataset.update would share (and then change) its elements
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID = generate_uid()
        ds.SeriesInstanceUID, ds.SeriesNumber, ds.InstanceNumber = series, 4, n + 1
        ds.SeriesDescription = "Phantom coronal"
        ds.ImageType = ["ORIGINAL", "PRIMARY", "CORONAL"]
        ds.ImagePositionPatient = [-SIZE * SPACING / 2, y, CORONAL_TOP]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 0, -1]
        ds.SliceLocation = y
        ds.PixelData = (hu + 1024).astype("<u2").tobytes()
        out.append(ds)
    return out


def _series(
    study: str,
    frame_of_reference: str,
    series: str,
    number: int,
    count: int,
    step: float,
    reverse: bool,
) -> list[Dataset]:
    rows = np.arange(SIZE)[:, None]
    cols = np.arange(SIZE)[None, :]
    body = (rows - 128) ** 2 + (cols - 128) ** 2 <= 110**2
    cx, cy, r = DISC
    disc = (rows - cy) ** 2 + (cols - cx) ** 2 <= r**2
    out = []
    for n in range(count):
        z = -30 + step * n
        hu = np.full((SIZE, SIZE), -1000, np.int32)
        hu[body] = BODY_HU
        hu[disc] = DISC_HU
        marker = (rows - (60 + 6 * round((z + 30) / 2.5))) ** 2 + (cols - 175) ** 2 <= 8**2
        hu[marker] = 1000
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.MediaStorageSOPClassUID = pydicom.uid.CTImageStorage
        ds.file_meta.MediaStorageSOPInstanceUID = sop = generate_uid()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.SpecificCharacterSet = "ISO_IR 192"
        ds.SOPClassUID, ds.SOPInstanceUID = pydicom.uid.CTImageStorage, sop
        ds.PatientName, ds.PatientID, ds.PatientSex = PATIENT_NAME, PATIENT_ID, "M"
        ds.PatientBirthDate = "19700101"
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
        ds.StudyDate, ds.StudyTime, ds.AccessionNumber = "20260315", "093000", "ACC-777"
        ds.StudyDescription, ds.SeriesDescription = "CT CHEST", f"Phantom {step:g} mm"
        ds.StudyID, ds.SeriesNumber = "1", number
        ds.InstanceNumber = count - n if reverse else n + 1
        ds.Modality, ds.Manufacturer, ds.InstitutionName = "CT", "radcloud phantom", "Test Hospital"
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.PixelSpacing = [SPACING, SPACING]
        ds.SliceThickness = step
        ds.ImagePositionPatient = [-SIZE * SPACING / 2, -SIZE * SPACING / 2, z]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.SliceLocation = z
        ds.FrameOfReferenceUID = frame_of_reference
        ds.Rows = ds.Columns = SIZE
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
        ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = -1024, 1, "HU"
        ds.WindowCenter, ds.WindowWidth = 40, 400
        ds.PixelData = (hu + 1024).astype("<u2").tobytes()
        out.append(ds)
    return out


def _store(base: str) -> str:
    series = phantom_series()
    _browser.stow(base, series)
    return str(series[0].StudyInstanceUID)


def _bundle_report(stdout: str) -> None:
    """Raw and gzip sizes of what the viewer loaded at start (names printed by the spec)."""
    line = next((x for x in stdout.splitlines() if x.startswith("BUNDLE ")), None)
    assert line, "the scenario printed no bundle list"
    names = json.loads(line[len("BUNDLE ") :])
    raw = gz = 0
    for name in names:
        data = (app_pages.ASSETS / name).read_bytes()
        raw += len(data)
        gz += len(gzip.compress(data, 6))
        print(f"  {name}: {len(data) / 1024:.0f} KiB raw")
    size = f"{raw / 1024:.0f} KiB raw, {gz / 1024:.0f} KiB gzip"
    print(f"bundle at viewer start: {len(names)} files, {size}")
    assert any(n.endswith(".js") for n in names)


@pytest.mark.slow
def test_viewer_in_a_real_browser(tmp_path: Path) -> None:
    from _server import Server

    _built()
    _browser.node()
    server = Server(tmp_path / "data", RADCLOUD_ADMIN_PASSWORD=ADMIN_PASSWORD)
    server.start()
    try:
        base = f"http://127.0.0.1:{server.http_port}"
        study = _store(base)
        shots = tmp_path / "shots"
        env = {
            "STUDY_UID": study,
            "PHANTOM": json.dumps(
                {
                    "size": SIZE,
                    "spacing": SPACING,
                    "slices": SLICES,
                    "disc": DISC,
                    "discHU": DISC_HU,
                    "coronalTop": CORONAL_TOP,
                    "patientId": PATIENT_ID,
                    "downloads": str(tmp_path / "downloads"),
                }
            ),  # fmt: skip
        }
        run = _browser.run_spec(SPEC, base, shots, tmp_path, env, 300)
        _browser.keep_shots(shots, {
            p.stem: p.stem if p.stem.startswith("viewer2-") else f"viewer-{p.stem}"
            for p in shots.glob("*.png")
        })  # fmt: skip
        assert run.returncode == 0, f"browser scenario failed:\n{run.stdout}\n{run.stderr}"
        assert "ok: study list and viewer passed" in run.stdout
        _bundle_report(run.stdout)
        exported = list((tmp_path / "downloads").glob("*.png"))
        assert exported, "no PNG was exported"
        head = exported[0].read_bytes()
        assert head[:8] == b"\x89PNG\r\n\x1a\n" and len(head) > 2000
        made = {p.stem for p in shots.glob("*.png")}
        assert {"desktop-list", "desktop-viewer", "phone-viewer"} <= made
    finally:
        server.stop()
