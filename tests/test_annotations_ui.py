"""The viewer's saved measurements and key images, image filters, layouts, zoom modes,
multi-frame playback, export formats and hanging protocols, in a real browser.

``tests/js/viewer_tools.spec.mjs`` (playwright-core driving Debian Chromium)
against ``radcloud serve`` holding the CT phantom of ``test_viewer_ui`` plus a
DX chest-like radiograph and a 12-frame XA run in the same study.  Draws
measurements, marks key images, saves, reopens; here the stored GSPS and KOS
are fetched over WADO-RS and read with pydicom: the length's graphic sits on
the drawn image pixels, its text holds the drawn value, and the KOS names the
key images.  Screenshots go to ``/tmp/radcloud-shots/tools-*.png``.
"""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path
from typing import Any

import _browser
import httpx
import numpy as np
import pydicom
import pytest
from _wado_data import parse_multipart
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from test_viewer_ui import (
    CORONAL_TOP,
    DISC,
    DISC_HU,
    SIZE,
    SLICES,
    SPACING,
    _built,
    _series,
    phantom_series,
)

SPEC = _browser.JS / "viewer_tools.spec.mjs"
ADMIN_PASSWORD = _browser.ADMIN_PASSWORD
XA_FRAMES = 12
DX_ROWS, DX_COLS = 400, 320


def _base(template: Dataset, modality: str, number: int, description: str) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    for keyword in (
        "SpecificCharacterSet", "PatientName", "PatientID", "PatientSex", "PatientBirthDate",
        "StudyInstanceUID", "StudyDate", "StudyTime", "AccessionNumber", "StudyDescription",
        "StudyID", "InstitutionName",
    ):  # fmt: skip
        setattr(ds, keyword, getattr(template, keyword))
    ds.SeriesInstanceUID, ds.SeriesNumber, ds.InstanceNumber = generate_uid(), number, 1
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.Modality, ds.SeriesDescription = modality, description
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    return ds


def radiograph(template: Dataset) -> Dataset:
    """A chest-like DX: soft lung fields, a brighter mediastinum, fine rib lines (low contrast)."""
    ds = _base(template, "DX", 5, "Chest PA")
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = (
        pydicom.uid.DigitalXRayImageStorageForPresentation
    )
    rows, cols = np.mgrid[0:DX_ROWS, 0:DX_COLS]
    img = np.full((DX_ROWS, DX_COLS), 1400.0)
    for cx in (95, 225):  # lungs: darker ellipses
        img -= 500 * np.exp(-((((cols - cx) / 60.0) ** 2 + ((rows - 200) / 130.0) ** 2) ** 2))
    img += 250 * np.exp(-(((cols - 160) / 28.0) ** 2))  # mediastinum
    img += 60 * (np.sin(rows / 9.0) > 0.8)  # rib-like lines
    ds.Rows, ds.Columns = DX_ROWS, DX_COLS
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.ImagerPixelSpacing = ds.PixelSpacing = [0.5, 0.5]
    ds.WindowCenter, ds.WindowWidth = 1200, 1600
    ds.PresentationIntentType, ds.ImageType = "FOR PRESENTATION", ["ORIGINAL", "PRIMARY"]
    ds.PixelData = img.clip(0, 4095).astype("<u2").tobytes()
    return ds


def angiography(template: Dataset) -> Dataset:
    """A 12-frame XA run: a dark disc (contrast) moving left to right, 15 frames/s."""
    ds = _base(template, "XA", 6, "Coronary run")
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = pydicom.uid.XRayAngiographicImageStorage
    rows, cols = np.mgrid[0:128, 0:128]
    frames = []
    for f in range(XA_FRAMES):
        img = np.full((128, 128), 200, np.uint8)
        img[(rows - 64) ** 2 + (cols - (14 + 9 * f)) ** 2 <= 100] = 40
        frames.append(img)
    ds.Rows = ds.Columns = 128
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.NumberOfFrames, ds.FrameTime, ds.CineRate = XA_FRAMES, 66.7, 15
    ds.FrameIncrementPointer = pydicom.tag.Tag("FrameTime")
    ds.PixelData = np.stack(frames).tobytes()
    return ds


#: Mammography views: (laterality, view, Patient Orientation) — two of them need a flip on screen.
MG_VIEWS = (
    ("R", "CC", ["A", "R"]),
    ("L", "CC", ["A", "L"]),
    ("R", "MLO", ["P", "F"]),
    ("L", "MLO", ["P", "F"]),
)


def mammograms(template: Dataset) -> list[Dataset]:
    """A 4-view screening mammogram (another study of the same patient): each breast a bright
    half-ellipse against its chest wall, at the image's left or right edge as its orientation
    says."""
    study, series = generate_uid(), generate_uid()
    rows, cols = np.mgrid[0:160, 0:128]
    out = []
    for n, (side, view, orientation) in enumerate(MG_VIEWS):
        ds = _base(template, "MG", 1, "Screening mammogram")
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.InstanceNumber = study, series, n + 1
        ds.StudyDescription, ds.AccessionNumber = "MAMMO SCREENING", "ACC-MG"
        ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = (
            pydicom.uid.DigitalMammographyXRayImageStorageForPresentation
        )
        wall = (
            0 if orientation[0] == "A" else 127
        )  # rows run towards the nipple: chest wall at column 0
        breast = ((cols - wall) / 100.0) ** 2 + ((rows - 80) / 70.0) ** 2 <= 1
        img = np.where(breast, 1500, 50)
        ds.Rows, ds.Columns = 160, 128
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
        ds.ImagerPixelSpacing = ds.PixelSpacing = [0.1, 0.1]
        ds.ImageLaterality, ds.ViewPosition, ds.PatientOrientation = side, view, orientation
        ds.WindowCenter, ds.WindowWidth = 800, 1600
        ds.PresentationIntentType, ds.ImageType = "FOR PRESENTATION", ["ORIGINAL", "PRIMARY"]
        ds.PixelData = img.astype("<u2").tobytes()
        out.append(ds)
    return out


#: The prior CT lies 50 mm higher in its own frame of reference (another day, another table).
PRIOR_SHIFT = 50.0


def prior_ct() -> list[Dataset]:
    """The same patient's CT from a year before: 12 slices of 5 mm, its own frame of reference."""
    study = generate_uid()
    out = _series(study, generate_uid(), generate_uid(), 2, SLICES // 2, 5.0, False)
    for ds in out:
        ds.StudyDate, ds.AccessionNumber = "20250310", "ACC-PRIOR"
        ds.StudyDescription = "CT CHEST PRIOR"
        x, y, z = ds.ImagePositionPatient
        ds.ImagePositionPatient = [x, y, z + PRIOR_SHIFT]
        ds.SliceLocation = z + PRIOR_SHIFT
    return out


def _store(base: str) -> tuple[str, list[Dataset]]:
    series = phantom_series()
    series += [radiograph(series[0]), angiography(series[0]), *prior_ct(), *mammograms(series[0])]
    _browser.stow(base, series)
    return str(series[0].StudyInstanceUID), series


def _auth(base: str) -> dict[str, str]:
    with httpx.Client(base_url=base, timeout=30) as http:
        login = http.post("/api/auth/login", json={"username": "admin", "password": ADMIN_PASSWORD})
        assert login.status_code == 200, login.text
    return {"Authorization": f"Bearer {login.json()['token']}"}


def _instance(http: httpx.Client, study: str, modality: str, sop: str) -> Dataset:
    """The stored instance ``sop`` of the study's ``modality`` series, over WADO-RS."""
    series = http.get(f"/dicom-web/studies/{study}/series", params={"Modality": modality}).json()
    for s in series:
        uid = s["0020000E"]["Value"][0]
        r = http.get(
            f"/dicom-web/studies/{study}/series/{uid}/instances/{sop}",
            headers={"Accept": 'multipart/related; type="application/dicom"'},
        )
        if r.status_code == 200:
            [part] = parse_multipart(r.headers["content-type"], r.content)
            return pydicom.dcmread(io.BytesIO(part.body))
    raise AssertionError(f"no {modality} instance {sop} in the study")


def _saved(stdout: str) -> dict[str, Any]:
    line = next((x for x in stdout.splitlines() if x.startswith("SAVED ")), None)
    assert line, "the scenario printed no SAVED line"
    saved: dict[str, Any] = json.loads(line[len("SAVED ") :])
    return saved


@pytest.mark.slow
def test_viewer_tools_in_a_real_browser(tmp_path: Path) -> None:
    from _server import Server

    _built()
    _browser.node()
    server = Server(tmp_path / "data", RADCLOUD_ADMIN_PASSWORD=ADMIN_PASSWORD)
    server.start()
    try:
        base = f"http://127.0.0.1:{server.http_port}"
        study, stored = _store(base)
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
                    "imageSeries": 5,
                    "xaFrames": XA_FRAMES,
                    "dx": [DX_ROWS, DX_COLS],
                    "coronalTop": CORONAL_TOP,
                    "mgStudy": str(stored[-1].StudyInstanceUID),
                    "priorStudy": str(stored[-5].StudyInstanceUID),
                    "downloads": str(tmp_path / "downloads"),
                }
            ),  # fmt: skip
        }
        run = _browser.run_spec(SPEC, base, shots, tmp_path, env, 420)
        _browser.keep_shots(shots, {p.stem: f"tools-{p.stem}" for p in shots.glob("*.png")})
        assert run.returncode == 0, f"browser scenario failed:\n{run.stdout}\n{run.stderr}"
        assert "ok: viewer tools passed" in run.stdout
        saved = _saved(run.stdout)
        with httpx.Client(base_url=base, timeout=60, headers=_auth(base)) as http:
            ps = _instance(http, study, "PR", saved["pr"])
            ko = _instance(http, study, "KO", saved["ko"])
        _check_gsps(ps, saved, stored)
        _check_exports(run.stdout, tmp_path / "downloads")
        first_ct = stored[0]
        named = {
            ref.ReferencedSOPInstanceUID
            for item in ko.ContentSequence
            for ref in item.get("ReferencedSOPSequence", [])
        }
        want = {k["sop"] for k in saved["keyImages"]}
        assert named == want and first_ct.SOPInstanceUID in named and len(named) == 2
    finally:
        server.stop()


def _check_exports(stdout: str, downloads: Path) -> None:
    """The exported files, read by Pillow: same picture in every lossless format."""
    line = next((x for x in stdout.splitlines() if x.startswith("EXPORTS ")), None)
    assert line, "the scenario printed no EXPORTS line"
    info = json.loads(line[len("EXPORTS ") :])
    files, (w, h) = info["files"], info["size"]
    pictures = {}
    for fmt, want in (("png", "PNG"), ("jpeg", "JPEG"), ("bmp", "BMP"), ("tiff", "TIFF")):
        with Image.open(downloads / files[fmt]) as im:
            assert im.format == want and im.size == (w, h), (fmt, im.format, im.size)
            pictures[fmt] = np.asarray(im.convert("RGB"), dtype=np.int16)
    assert np.array_equal(pictures["bmp"], pictures["png"]), "BMP differs from PNG"
    assert np.array_equal(pictures["tiff"], pictures["png"]), "TIFF differs from PNG"
    assert np.abs(pictures["jpeg"] - pictures["png"]).mean() < 3
    png = pictures["png"]
    assert (png[..., 0] > 200).sum() > 50 and png.std() > 20  # a picture, not a blank
    yellow = (png[..., 0] > 180) & (png[..., 1] > 180) & (png[..., 2] < 80)
    assert yellow.sum() > 100, "the measurements are not burnt in"
    with zipfile.ZipFile(downloads / files["series"]) as z:
        assert z.testzip() is None
        names = z.namelist()
        assert (
            len(names) == SLICES and names[0].endswith("-01.png") and names[-1].endswith("-24.png")
        )
        first, last = (
            np.asarray(Image.open(io.BytesIO(z.read(n))).convert("L"))
            for n in (names[0], names[-1])
        )
    assert first.shape == (h, w) and not np.array_equal(first, last)


def _check_gsps(ps: Dataset, saved: dict[str, Any], stored: list[Dataset]) -> None:
    """The length drawn in the browser, as any DICOM viewer reads it from the GSPS."""
    assert ps.SOPClassUID == "1.2.840.10008.5.1.4.1.1.11.1" and ps.Modality == "PR"
    length = saved["length"]
    item = next(
        i for i in ps.GraphicAnnotationSequence
        if "TextObjectSequence" in i
        and i.TextObjectSequence[0].UnformattedTextValue.endswith(" mm")
        and i.GraphicObjectSequence[0].NumberOfGraphicPoints == 2
    )  # fmt: skip
    sop = item.ReferencedImageSequence[0].ReferencedSOPInstanceUID
    assert sop == length["image"]["sop"] == stored[0].SOPInstanceUID  # image 1 of the 2.5 mm CT
    [g] = item.GraphicObjectSequence
    drawn = [c for p in length["points"] for c in p]
    assert g.GraphicType == "POLYLINE" and g.GraphicAnnotationUnits == "PIXEL"
    assert g.GraphicData == pytest.approx(drawn, abs=1e-3)
    assert abs(drawn[0] - 40) < 1.5 and abs(drawn[2] - 200) < 1.5 and abs(drawn[1] - 200) < 1.5
    value = float(item.TextObjectSequence[0].UnformattedTextValue.split()[0])
    assert value == length["mm"]  # the full-precision value, not a rounded display
    assert abs(value - 160 * SPACING) <= SPACING
