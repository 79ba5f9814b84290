"""Rendering frames to JPEG/PNG: modality LUT, windowing, colour models, viewport."""

from __future__ import annotations

import base64
import copy
import io

import numpy as np
import pydicom
import pytest
import simplejpeg
from PIL import Image
from pydicom.uid import UltrasoundImageStorage

from radcloud.render import pixels as P
from radcloud.testing.phantom import chest_ct_series, make_dataset


def meta_of(ds: pydicom.Dataset) -> dict:
    """DICOM JSON of an instance without its bulk pixel data, like the archive index."""
    d = copy.deepcopy(ds)
    del d.PixelData
    return d.to_json_dict()


def _png_pixels(data: bytes) -> np.ndarray:
    assert data.startswith(b"\x89PNG")
    return np.asarray(Image.open(io.BytesIO(data)))


def _jpeg_pixels(data: bytes) -> np.ndarray:
    assert simplejpeg.is_jpeg(data)
    return np.asarray(Image.open(io.BytesIO(data)))


def _mm_to_px(ds: pydicom.Dataset, x: float, y: float) -> tuple[int, int]:
    ps = float(ds.PixelSpacing[0])
    return (
        round((y - float(ds.ImagePositionPatient[1])) / ps),
        round((x - float(ds.ImagePositionPatient[0])) / ps),
    )


@pytest.fixture(scope="module")
def ct() -> pydicom.Dataset:
    series = list(chest_ct_series(8, 256, 256, seed=4, pixel_spacing=1.4))
    return series[5]  # t = 0.69: lungs, heart, spine


def test_accessors(ct: pydicom.Dataset) -> None:
    meta = meta_of(ct)
    assert P.first(meta, "00280010") == 256
    assert P.first(meta, 0x00281050) == 40
    assert P.values(meta, "00281051") == [400, 1500]
    assert P.first(meta, "00091234", "x") == "x"


def test_lung_window_dark_lungs_bright_bone(ct: pydicom.Dataset) -> None:
    meta = meta_of(ct)
    img = _png_pixels(P.render(ct.pixel_array, meta, window=(-600, 1500), fmt="png"))
    assert img.shape == (256, 256) and img.dtype == np.uint8
    lung = img[
        _mm_to_px(ct, -75, 0)[0] - 3 : _mm_to_px(ct, -75, 0)[0] + 3,
        _mm_to_px(ct, -75, 0)[1] - 3 : _mm_to_px(ct, -75, 0)[1] + 3,
    ]
    r, c = _mm_to_px(ct, 0, 58)
    bone = img[r - 3 : r + 3, c - 3 : c + 3]
    r, c = _mm_to_px(ct, 0, -130)
    air = img[r - 3 : r + 3, c - 3 : c + 3]
    assert np.median(lung) < 110 and np.median(bone) > 240
    assert np.median(air) < np.median(lung)  # air darker than lung in a lung window


def test_default_window_is_first_instance_window(ct: pydicom.Dataset) -> None:
    meta = meta_of(ct)
    assert P.default_window(ct.pixel_array, meta) == (40.0, 400.0)
    img = _jpeg_pixels(P.render(ct.pixel_array, meta))  # mediastinal window
    assert img.shape == (256, 256)
    r, c = _mm_to_px(ct, -75, 0)
    assert np.median(img[r - 3 : r + 3, c - 3 : c + 3]) < 15  # lungs black
    r, c = _mm_to_px(ct, 18, -32)
    assert 100 < np.median(img[r - 3 : r + 3, c - 3 : c + 3]) < 160  # heart mid-gray


def test_default_window_ignores_padding(ct: pydicom.Dataset) -> None:
    meta = meta_of(ct)
    del meta["00281050"], meta["00281051"]
    hu = P.apply_modality_lut(ct.pixel_array, meta)
    c, w = P.default_window(hu, meta)
    inside = ct.pixel_array[ct.pixel_array != ct.PixelPaddingValue].astype(float) - 1024
    assert c - 0.5 - (w - 1) / 2 == pytest.approx(inside.min())
    assert c - 0.5 + (w - 1) / 2 == pytest.approx(inside.max())
    out = P.apply_voi(hu, c, w)
    assert out.min() == 0.0 and out.max() == 1.0


def test_modality_lut() -> None:
    stored = np.array([[0, 1024, 2048]], np.uint16)
    meta = {"00281052": {"vr": "DS", "Value": [-1024]}, "00281053": {"vr": "DS", "Value": [2]}}
    assert P.apply_modality_lut(stored, meta).tolist() == [[-1024, 1024, 3072]]
    table = np.array([10, 20, 30, 40], "<u2")
    lut = {
        "00283000": {
            "vr": "SQ",
            "Value": [
                {
                    "00283002": {"vr": "US", "Value": [4, 100, 16]},
                    "00283006": {
                        "vr": "OW",
                        "InlineBinary": base64.b64encode(table.tobytes()).decode(),
                    },
                }
            ],
        }
    }
    out = P.apply_modality_lut(np.array([99, 100, 102, 200]), lut)
    assert out.tolist() == [10, 10, 30, 40]  # below / in / out of range clamp


def test_voi_functions() -> None:
    x = np.array([-161, -160.5, 39.5, 239, 240, 1000], np.float32)
    lin = P.apply_voi(x, 40, 400, "linear")
    assert lin[0] == 0 and lin[1] == 0 and lin[2] == 0.5 and lin[4] == 1 and lin[5] == 1
    exact = P.apply_voi(np.array([-160, 40, 240], np.float32), 40, 400, "linear-exact")
    assert exact.tolist() == [0.0, 0.5, 1.0]
    sig = P.apply_voi(np.array([-500, 40, 500], np.float32), 40, 400, "sigmoid")
    assert sig[1] == pytest.approx(0.5) and sig[0] < 0.01 and sig[2] > 0.99
    with pytest.raises(ValueError):
        P.apply_voi(x, 0, 1, "gamma")
    assert P.to_uint8(np.array([0.0, 0.5, 1.0])).tolist() == [0, 128, 255]


def test_monochrome1_is_inverted() -> None:
    cr = make_dataset("1.2.840.10008.5.1.4.1.1.1", "CR")  # stored values rise left to right
    meta = meta_of(cr)
    m1 = _png_pixels(P.render(cr.pixel_array, meta, fmt="png"))
    assert m1[:, :5].mean() > m1[:, -5:].mean()  # MONOCHROME1: high values dark
    meta["00280004"]["Value"] = ["MONOCHROME2"]
    m2 = _png_pixels(P.render(cr.pixel_array, meta, fmt="png"))
    assert np.abs(m1.astype(int) + m2.astype(int) - 255).max() <= 1


def test_viewport_keeps_aspect(ct: pydicom.Dataset) -> None:
    wide = np.hstack([ct.pixel_array, ct.pixel_array])  # 256 x 512
    meta = meta_of(ct)
    img = _jpeg_pixels(P.render(wide, meta, viewport=(128, 128)))
    assert img.shape == (64, 128)
    img = _png_pixels(P.render(ct.pixel_array, meta, viewport=(600, 300), fmt="png"))
    assert img.shape == (300, 300)
    thumb = _jpeg_pixels(P.thumbnail(wide, meta, size=100))
    assert thumb.shape == (50, 100)
    with pytest.raises(ValueError):
        P.render(ct.pixel_array, meta, viewport=(0, 10))


def test_non_square_pixels_are_made_square(ct: pydicom.Dataset) -> None:
    meta = meta_of(ct)
    meta["00280030"]["Value"] = [2.8, 1.4]  # rows twice as far apart as columns
    img = _png_pixels(P.render(ct.pixel_array[:100, :], meta, fmt="png"))
    assert img.shape == (200, 256)


def test_rgb_png_is_exact() -> None:
    us = make_dataset(UltrasoundImageStorage, "US", Rows=30, Columns=50)
    img = _png_pixels(P.render(us.pixel_array, meta_of(us), fmt="png"))
    assert np.array_equal(img, us.pixel_array)


def test_palette_color() -> None:
    ds = make_dataset("1.2.840.10008.5.1.4.1.1.7", "OT", PhotometricInterpretation="PALETTE COLOR")
    idx = np.array([[0, 85, 255]], np.uint8)
    rgb = P.apply_palette(idx, meta_of(ds))  # 'hot iron': black -> red -> white
    assert rgb.tolist() == [[[0, 0, 0], [255, 0, 0], [255, 255, 255]]]
    img = _png_pixels(P.render(idx, meta_of(ds), fmt="png"))
    assert img.shape == (1, 3, 3)


def test_ybr_full_to_rgb() -> None:
    ybr = np.array([[[128, 128, 128], [76, 85, 255], [255, 128, 128]]], np.uint8)
    rgb = P.ybr_to_rgb(ybr)
    assert rgb[0, 0].tolist() == [128, 128, 128]
    assert rgb[0, 1, 0] >= 250 and rgb[0, 1, 1] <= 5 and rgb[0, 1, 2] <= 5  # pure red
    assert rgb[0, 2].tolist() == [255, 255, 255]
    meta = {"00280004": {"vr": "CS", "Value": ["YBR_FULL_422"]}}
    img = _png_pixels(P.render(ybr, meta, fmt="png"))
    assert np.array_equal(img, rgb)
    # a caller whose decoder already returned RGB says so
    same = _png_pixels(P.render(rgb, meta, fmt="png", photometric="RGB"))
    assert np.array_equal(same, rgb)


def test_bundled_palette_file_renders() -> None:
    path = pydicom.data.get_testdata_file("examples_palette.dcm", download=False)
    ds = pydicom.dcmread(path)
    meta = meta_of(ds)
    img = _jpeg_pixels(P.render(pydicom.pixels.pixel_array(ds, raw=True), meta))
    assert img.shape == (ds.Rows, ds.Columns, 3)
    idx = pydicom.pixels.pixel_array(ds, raw=True)
    ref = pydicom.pixels.apply_color_lut(idx, ds)  # pydicom's own lookup, 16-bit entries
    mine = P.apply_palette(idx, meta)
    assert np.array_equal(mine, (ref >> 8).astype(np.uint8))
    assert len(np.unique(mine.reshape(-1, 3), axis=0)) > 20  # really in colour


def test_errors(ct: pydicom.Dataset) -> None:
    with pytest.raises(ValueError, match="format"):
        P.render(ct.pixel_array, meta_of(ct), fmt="tiff")
    with pytest.raises(ValueError, match="rows, cols"):
        P.render(np.zeros((2, 4, 4)), meta_of(ct))
