"""The synthetic chest CT and generic instances used across the test suite."""

from __future__ import annotations

import io

import numpy as np
import pydicom
import pytest
from pydicom.uid import CTImageStorage, MRImageStorage, UltrasoundImageStorage

from radcloud.dicom.codecs import HTJ2K_LOSSLESS
from radcloud.testing.phantom import (
    HU,
    chest_ct_series,
    make_dataset,
    tiny_ct_series,
    write_series,
)


def _roundtrip(ds: pydicom.Dataset) -> pydicom.Dataset:
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    buf.seek(0)
    return pydicom.dcmread(buf)


def _hu(ds: pydicom.Dataset) -> np.ndarray:
    return ds.pixel_array.astype(np.float32) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)


def _disc(ds: pydicom.Dataset, x_mm: float, y_mm: float, r_mm: float) -> np.ndarray:
    """Mask of a disc given in patient mm (LPS) on an axial slice."""
    x0, y0 = float(ds.ImagePositionPatient[0]), float(ds.ImagePositionPatient[1])
    dy, dx = (float(v) for v in ds.PixelSpacing)
    rows = (np.arange(ds.Rows) * dy + y0)[:, None]
    cols = (np.arange(ds.Columns) * dx + x0)[None, :]
    return (rows - y_mm) ** 2 + (cols - x_mm) ** 2 <= r_mm**2


@pytest.fixture(scope="module")
def series() -> list[pydicom.Dataset]:
    """A 20-slice 256x256 chest at 1.4 mm pixels (same anatomy as 512x512 at 0.7)."""
    return list(chest_ct_series(20, 256, 256, seed=3, pixel_spacing=1.4))


def test_geometry_steps_by_slice_thickness(series: list[pydicom.Dataset]) -> None:
    z = np.array([float(ds.ImagePositionPatient[2]) for ds in series])
    assert np.allclose(np.diff(z), -1.25)
    assert [int(ds.InstanceNumber) for ds in series] == list(range(1, 21))
    for ds in series:
        assert [float(v) for v in ds.ImageOrientationPatient] == [1, 0, 0, 0, 1, 0]
        assert float(ds.SliceLocation) == pytest.approx(float(ds.ImagePositionPatient[2]))
        # the image is centred on the isocentre
        x0 = float(ds.ImagePositionPatient[0])
        assert x0 == pytest.approx(-(ds.Columns - 1) / 2 * 1.4)


def test_uids_and_modules(series: list[pydicom.Dataset]) -> None:
    first = series[0]
    assert first.SOPClassUID == CTImageStorage
    assert first.file_meta.MediaStorageSOPInstanceUID == first.SOPInstanceUID
    assert len({ds.SOPInstanceUID for ds in series}) == len(series)
    for key in ("StudyInstanceUID", "SeriesInstanceUID", "FrameOfReferenceUID"):
        assert len({ds[key].value for ds in series}) == 1
    assert first.Modality == "CT" and first.BodyPartExamined == "CHEST"
    assert first.Manufacturer == "radcloud phantom"
    assert (first.BitsAllocated, first.BitsStored, first.HighBit) == (16, 12, 11)
    assert (float(first.RescaleIntercept), float(first.RescaleSlope)) == (-1024, 1)
    assert [float(v) for v in first.WindowCenter] == [40, -600]
    assert [float(v) for v in first.WindowWidth] == [400, 1500]
    assert list(first.WindowCenterWidthExplanation) == ["MEDIASTINUM", "LUNG"]
    assert first.PatientName == "Demo^Chest" and first.PatientID == "DEMO0001"
    back = _roundtrip(first)
    assert np.array_equal(back.pixel_array, first.pixel_array)
    assert back.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian


def test_organs_have_their_hu(series: list[pydicom.Dataset]) -> None:
    mid = series[12]  # t = 0.625: both lungs, heart and descending aorta present
    hu = _hu(mid)
    for side in (-1, 1):  # lung parenchyma: median ignores the vessels
        assert np.median(hu[_disc(mid, side * 70, 5, 20)]) == pytest.approx(HU["lung"], abs=15)
    assert np.median(hu[_disc(mid, 0, 58, 8)]) == pytest.approx(HU["bone"], abs=15)
    assert np.median(hu[_disc(mid, 24, 42, 6)]) == pytest.approx(HU["aorta"], abs=10)
    assert np.median(hu[_disc(mid, 18, -32, 15)]) == pytest.approx(HU["heart"], abs=10)
    assert np.median(hu[_disc(mid, 0, -150, 6)]) == pytest.approx(HU["air"], abs=10)
    # noise sigma ~10 HU in uniform air
    assert 7 < float(np.std(hu[_disc(mid, 0, -150, 10)])) < 13
    # fat rim: laterally just inside the skin
    skin_x = 150 * (0.86 + 0.14 * 0.625)
    assert np.median(hu[_disc(mid, skin_x - 5, 5, 2.5)]) == pytest.approx(HU["fat"], abs=15)


def test_vessels_branch_and_move(series: list[pydicom.Dataset]) -> None:
    lung = _disc(series[0], 70, 5, 30)
    masks = [(_hu(ds) > -400) & lung for ds in series[8:14]]
    counts = [int(m.sum()) for m in masks]
    assert min(counts) > 10  # vessels present in the lung on every mid slice
    assert all(not np.array_equal(a, b) for a, b in zip(masks, masks[1:], strict=False))


def test_padding_outside_fov(series: list[pydicom.Dataset]) -> None:
    ds = series[5]
    px = ds.pixel_array
    assert px[0, 0] == ds.PixelPaddingValue == 0
    assert px[128, 128] != 0 and px.min() == 0
    inside = px[_disc(ds, 0, 0, 170)]
    assert inside.min() >= 1  # padding value never occurs inside the FOV


def test_seed_determinism() -> None:
    a = [ds.pixel_array for ds in tiny_ct_series(3, 48, seed=5)]
    b = [ds.pixel_array for ds in tiny_ct_series(3, 48, seed=5)]
    c = [ds.pixel_array for ds in tiny_ct_series(3, 48, seed=6)]
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert not all(np.array_equal(x, y) for x, y in zip(a, c, strict=True))
    uids = {next(tiny_ct_series(1)).StudyInstanceUID for _ in range(2)}
    assert len(uids) == 2  # fresh UIDs per call unless given


def test_given_uids_and_names() -> None:
    ds = next(
        tiny_ct_series(
            1,
            study_uid="1.2.3.4",
            series_uid="1.2.3.4.5",
            patient_name="Wang^Xiaodong=王^小东",
            specific_character_set="ISO_IR 192",
            accession_number="ACC42",
        )
    )
    back = _roundtrip(ds)
    assert back.StudyInstanceUID == "1.2.3.4" and back.SeriesInstanceUID == "1.2.3.4.5"
    assert back.SpecificCharacterSet == "ISO_IR 192"
    assert back.PatientName.ideographic == "王^小东"
    assert back.PatientName.family_name == "Wang"
    assert back.AccessionNumber == "ACC42"
    auto = next(tiny_ct_series(1, patient_name="李^雷"))
    assert auto.SpecificCharacterSet == "ISO_IR 192"
    assert str(_roundtrip(auto).PatientName) == "李^雷"


def test_write_series(tmp_path) -> None:
    paths = write_series(tmp_path / "ct", n_slices=3, rows=32, columns=32, pixel_spacing=11.2)
    assert [p.name for p in paths] == ["CT00001.dcm", "CT00002.dcm", "CT00003.dcm"]
    read = [pydicom.dcmread(p) for p in paths]
    assert read[0].file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
    assert read[2].pixel_array.shape == (32, 32)


def test_compressed_transfer_syntax_keeps_pixels() -> None:
    plain = next(tiny_ct_series(1, 64, seed=2))
    packed = next(tiny_ct_series(1, 64, seed=2, transfer_syntax=HTJ2K_LOSSLESS))
    assert packed.file_meta.TransferSyntaxUID == HTJ2K_LOSSLESS
    assert np.array_equal(_roundtrip(packed).pixel_array, plain.pixel_array)


@pytest.mark.parametrize(
    ("sop", "modality", "attrs", "pi", "shape", "dtype"),
    [
        (MRImageStorage, "MR", {}, "MONOCHROME2", (64, 64), np.uint16),
        ("1.2.840.10008.5.1.4.1.1.1", "CR", {}, "MONOCHROME1", (64, 64), np.uint16),
        (UltrasoundImageStorage, "US", {}, "RGB", (64, 64, 3), np.uint8),
        (CTImageStorage, "CT", {}, "MONOCHROME2", (64, 64), np.int16),
        (
            MRImageStorage,
            "MR",
            {"NumberOfFrames": 3, "Rows": 40},
            "MONOCHROME2",
            (3, 40, 64),
            np.uint16,
        ),
        (
            "1.2.840.10008.5.1.4.1.1.7",
            "OT",
            {"PhotometricInterpretation": "PALETTE COLOR"},
            "PALETTE COLOR",
            (64, 64),
            np.uint8,
        ),
    ],
)
def test_make_dataset(sop, modality, attrs, pi, shape, dtype) -> None:
    ds = make_dataset(sop, modality, **attrs)
    back = _roundtrip(ds)
    assert back.SOPClassUID == sop and back.Modality == modality
    assert back.PhotometricInterpretation == pi
    px = back.pixel_array if pi != "PALETTE COLOR" else pydicom.pixels.pixel_array(back, raw=True)
    assert px.shape == shape and px.dtype == dtype
    # the test pattern rises from left to right (MONOCHROME1 renders inverted)
    plane = px if px.ndim == 2 else px[0] if len(shape) == 3 and shape[-1] != 3 else px[..., 0]
    assert plane[:, -5:].mean() > plane[:, :5].mean()


def test_make_dataset_with_pixels() -> None:
    arr = np.arange(12 * 10, dtype=np.uint16).reshape(12, 10)
    ds = make_dataset(MRImageStorage, "MR", pixels=arr, PatientID="X1")
    assert (ds.Rows, ds.Columns) == (12, 10) and ds.PatientID == "X1"
    assert np.array_equal(_roundtrip(ds).pixel_array, arr)
