"""Transfer syntaxes, frame codecs and lossless transcoding."""

from __future__ import annotations

import io

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.encaps import generate_fragments
from pydicom.uid import CTImageStorage, MRImageStorage, UltrasoundImageStorage

from radcloud.dicom import codecs as C
from radcloud.errors import UnsupportedTransferSyntax
from radcloud.testing.phantom import chest_ct_series, make_dataset

LOSSLESS_TARGETS = [
    C.EXPLICIT_VR_LE,
    C.IMPLICIT_VR_LE,
    C.DEFLATED_EXPLICIT_VR_LE,
    C.RLE_LOSSLESS,
    C.JPEG_LS_LOSSLESS,
    C.JPEG2000_LOSSLESS,
    C.HTJ2K_LOSSLESS,
    C.HTJ2K_LOSSLESS_RPCL,
]
FRAME_TARGETS = [
    C.RLE_LOSSLESS,
    C.JPEG_LS_LOSSLESS,
    C.JPEG2000_LOSSLESS,
    C.HTJ2K_LOSSLESS,
    C.HTJ2K_LOSSLESS_RPCL,
    C.EXPLICIT_VR_LE,
]


def _bundled(name: str) -> pydicom.Dataset:
    """A file shipped inside the pydicom wheel; never downloads."""
    path = get_testdata_file(name, download=False)
    assert path is not None, f"{name} is not bundled with pydicom"
    return pydicom.dcmread(path)


def _reread(ds: pydicom.Dataset) -> pydicom.Dataset:
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    buf.seek(0)
    return pydicom.dcmread(buf)


@pytest.fixture(scope="module")
def ct512() -> pydicom.Dataset:
    return next(chest_ct_series(1, 512, 512, seed=1))


def _sources(ct512: pydicom.Dataset) -> dict[str, pydicom.Dataset]:
    return {
        "phantom512": ct512,
        "CT_small": _bundled("CT_small.dcm"),
        "MR_small": _bundled("MR_small.dcm"),
        "MR_small_RLE": _bundled("MR_small_RLE.dcm"),
        "MR_small_jls": _bundled("MR_small_jpeg_ls_lossless.dcm"),
        "MR_small_j2k": _bundled("MR_small_jp2klossless.dcm"),
        "MR_small_bigendian": _bundled("MR_small_bigendian.dcm"),
        "SC_rgb_rle_2frame": _bundled("SC_rgb_rle_2frame.dcm"),
        "SC_rgb_rle_16bit_2frame": _bundled("SC_rgb_rle_16bit_2frame.dcm"),
        "SC_rgb_small_odd": _bundled("SC_rgb_small_odd.dcm"),
        "examples_palette": _bundled("examples_palette.dcm"),
        "mr_3frames": make_dataset(MRImageStorage, "MR", NumberOfFrames=3),
        "ct_signed12": make_dataset(CTImageStorage, "CT", BitsStored=12),
        "us_rgb": make_dataset(UltrasoundImageStorage, "US"),
    }


SOURCE_NAMES = [
    "phantom512",
    "CT_small",
    "MR_small",
    "MR_small_RLE",
    "MR_small_jls",
    "MR_small_j2k",
    "MR_small_bigendian",
    "SC_rgb_rle_2frame",
    "SC_rgb_rle_16bit_2frame",
    "SC_rgb_small_odd",
    "examples_palette",
    "mr_3frames",
    "ct_signed12",
    "us_rgb",
]


@pytest.fixture(scope="module")
def sources(ct512: pydicom.Dataset) -> dict[str, pydicom.Dataset]:
    return _sources(ct512)


@pytest.mark.parametrize("target", LOSSLESS_TARGETS)
@pytest.mark.parametrize("name", SOURCE_NAMES)
def test_transcode_round_trips_bit_exactly(
    sources: dict[str, pydicom.Dataset], name: str, target: str
) -> None:
    src = sources[name]
    want = src.pixel_array
    out = C.transcode(src, target)
    assert out.file_meta.TransferSyntaxUID == target
    assert out.SOPInstanceUID == src.SOPInstanceUID
    back = _reread(out)  # through a Part-10 file and plain pydicom decoding
    got = back.pixel_array
    assert got.shape == want.shape
    assert got.dtype.newbyteorder("=") == want.dtype.newbyteorder("=")  # source may be BE
    assert np.array_equal(got, want)


def test_htj2k_file_decodes_in_plain_pydicom(ct512: pydicom.Dataset, tmp_path) -> None:
    path = tmp_path / "ct.dcm"
    C.transcode(ct512, C.HTJ2K_LOSSLESS).save_as(path, enforce_file_format=True)
    read = pydicom.dcmread(path)
    assert read.file_meta.TransferSyntaxUID == C.HTJ2K_LOSSLESS
    assert np.array_equal(read.pixel_array, ct512.pixel_array)
    assert path.stat().st_size < 0.5 * len(ct512.PixelData)  # it really is compressed


def test_rpcl_codestream_has_rpcl_order_and_tlm(ct512: pydicom.Dataset) -> None:
    arr = ct512.pixel_array
    data = C.encode_frame(
        arr, C.HTJ2K_LOSSLESS_RPCL, bits_stored=12, signed=False, photometric="MONOCHROME2"
    )
    cod = data.find(b"\xff\x52")
    assert data[cod + 5] == 2  # progression order RPCL
    assert b"\xff\x55" in data[: data.find(b"\xff\x90")]  # TLM in the main header
    assert data[cod + 8] == 0  # no multi-component transform


def test_multiframe_is_encapsulated_frame_by_frame(sources: dict[str, pydicom.Dataset]) -> None:
    src = sources["mr_3frames"]
    out = C.transcode(src, C.JPEG_LS_LOSSLESS)
    assert out["PixelData"].is_undefined_length and out["PixelData"].VR == "OB"
    assert out.NumberOfFrames == 3
    assert len(list(generate_fragments(out.PixelData))) == 4  # offset table + 3 frames
    assert np.array_equal(_reread(out).pixel_array, src.pixel_array)


def test_transcode_leaves_input_alone(ct512: pydicom.Dataset) -> None:
    before = bytes(ct512.PixelData)
    out = C.transcode(ct512, C.RLE_LOSSLESS, verify=True)
    assert ct512.file_meta.TransferSyntaxUID == C.EXPLICIT_VR_LE
    assert bytes(ct512.PixelData) == before
    back = C.transcode(out, C.EXPLICIT_VR_LE)
    assert bytes(back.PixelData) == before


@pytest.mark.parametrize(
    "name",
    [
        "examples_ybr_color.dcm",
        "SC_rgb_jpeg_dcmtk.dcm",
        "SC_rgb_jpeg_gdcm.dcm",
        "JPEGLSNearLossless_16.dcm",
        "JPEG2000.dcm",
        "GDCMJ2K_TextGBR.dcm",
    ],
)
def test_lossy_and_other_sources_keep_decoded_values(name: str) -> None:
    """Lossy or YBR sources: the lossless copy holds exactly what the source decodes to."""
    src = _bundled(name)
    ts = str(src.file_meta.TransferSyntaxUID)
    kw = C.frame_kwargs(src)
    want = np.stack([C.decode_frame(f, ts, **kw) for f in C.iter_frame_bytes(src)])
    out = _reread(C.transcode(src, C.HTJ2K_LOSSLESS))
    assert out.PhotometricInterpretation == C.decoded_photometric(ts, kw["photometric"])
    got = out.pixel_array.reshape(want.shape)
    assert np.array_equal(got, want)
    if ts in (C.JPEG_BASELINE, C.JPEG_LOSSLESS_SV1):
        assert out.PhotometricInterpretation == "RGB"
        # and our decoder agrees with pydicom's own within JPEG decoder rounding
        ref = src.pixel_array.reshape(want.shape).astype(int)
        assert np.abs(ref - want.astype(int)).max() <= 3


def test_jpeg_extended_12bit_decodes() -> None:
    src = _bundled("JPEG-lossy.dcm")  # 12-bit DCT JPEG that pydicom itself cannot decode
    frame = next(C.iter_frame_bytes(src))
    arr = C.decode_frame(frame, C.JPEG_EXTENDED, **C.frame_kwargs(src))
    assert arr.shape == (1024, 256) and arr.dtype == np.uint16
    assert 0 < arr.max() < 4096


@pytest.mark.parametrize("ts", FRAME_TARGETS)
def test_frame_codecs_round_trip(ct512: pydicom.Dataset, ts: str) -> None:
    arr = ct512.pixel_array
    hu = arr.astype(np.int16) - 1024  # signed data, 12 bits stored
    for data, signed in ((arr, False), (hu, True)):
        enc = C.encode_frame(
            data, ts, bits_stored=12 if not signed else 13, signed=signed, photometric="MONOCHROME2"
        )
        dec = C.decode_frame(
            enc,
            ts,
            rows=512,
            columns=512,
            samples_per_pixel=1,
            bits_allocated=16,
            bits_stored=12 if not signed else 13,
            pixel_representation=int(signed),
            photometric="MONOCHROME2",
        )
        assert dec.dtype == data.dtype and np.array_equal(dec, data)
        if ts != C.EXPLICIT_VR_LE:
            assert len(enc) < data.nbytes * 0.7


def test_frame_rgb_round_trip() -> None:
    rgb = make_dataset(UltrasoundImageStorage, "US", Rows=33, Columns=47).pixel_array
    for ts in FRAME_TARGETS:
        enc = C.encode_frame(rgb, ts, bits_stored=8, signed=False, photometric="RGB")
        dec = C.decode_frame(
            enc,
            ts,
            rows=33,
            columns=47,
            samples_per_pixel=3,
            bits_allocated=8,
            bits_stored=8,
            pixel_representation=0,
            photometric="RGB",
        )
        assert np.array_equal(dec, rgb), ts


def test_native_frames_honour_planar_configuration() -> None:
    rgb = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    planar = np.moveaxis(rgb, -1, 0).tobytes()
    dec = C.decode_frame(
        planar,
        C.EXPLICIT_VR_LE,
        rows=2,
        columns=3,
        samples_per_pixel=3,
        bits_allocated=8,
        bits_stored=8,
        pixel_representation=0,
        photometric="RGB",
        planar_configuration=1,
    )
    assert np.array_equal(dec, rgb)


def test_transcode_frame(ct512: pydicom.Dataset) -> None:
    kw = C.frame_kwargs(ct512)
    native = bytes(ct512.PixelData)
    jls = C.transcode_frame(native, C.EXPLICIT_VR_LE, C.JPEG_LS_LOSSLESS, **kw)
    assert C.transcode_frame(jls, C.JPEG_LS_LOSSLESS, C.JPEG_LS_LOSSLESS, **kw) is jls
    ht = C.transcode_frame(jls, C.JPEG_LS_LOSSLESS, C.HTJ2K_LOSSLESS, **kw)
    assert C.transcode_frame(ht, C.HTJ2K_LOSSLESS, C.EXPLICIT_VR_LE, **kw) == native


def test_syntax_tables() -> None:
    assert C.is_lossless(C.HTJ2K_LOSSLESS) and C.is_lossless(C.RLE_LOSSLESS)
    assert C.is_lossless(C.EXPLICIT_VR_LE) and C.is_lossless(C.JPEG_LOSSLESS_SV1)
    assert not C.is_lossless(C.JPEG_BASELINE) and not C.is_lossless(C.JPEG2000)
    expected = {
        C.JPEG_LS_LOSSLESS: "image/jls",
        C.JPEG2000_LOSSLESS: "image/jp2",
        C.HTJ2K_LOSSLESS: "image/jphc",
        C.HTJ2K_LOSSLESS_RPCL: "image/jphc",
        C.RLE_LOSSLESS: "image/dicom-rle",
        C.JPEG_BASELINE: "image/jpeg",
        C.JPEG_LOSSLESS_SV1: "image/jpeg",
        C.EXPLICIT_VR_LE: "application/octet-stream",
        C.IMPLICIT_VR_LE: "application/octet-stream",
    }
    for ts, mt in expected.items():
        assert C.media_type_for(ts) == mt
    assert C.ts_for_media_type("image/jls") == C.JPEG_LS_LOSSLESS
    assert C.ts_for_media_type("image/jphc") == C.HTJ2K_LOSSLESS
    assert C.ts_for_media_type("application/octet-stream") == C.EXPLICIT_VR_LE
    assert C.ts_for_media_type("image/dicom-rle") == C.RLE_LOSSLESS
    assert (
        C.ts_for_media_type('image/jphc; transfer-syntax="1.2.840.10008.1.2.4.202"')
        == C.HTJ2K_LOSSLESS_RPCL
    )
    assert C.ts_for_media_type("image/jpeg", C.JPEG_BASELINE) == C.JPEG_BASELINE
    with pytest.raises(UnsupportedTransferSyntax):
        C.ts_for_media_type("image/jls", C.HTJ2K_LOSSLESS)
    with pytest.raises(UnsupportedTransferSyntax):
        C.ts_for_media_type("image/webp")


def test_can_transcode() -> None:
    assert C.can_transcode(C.JPEG_BASELINE, C.HTJ2K_LOSSLESS)
    assert C.can_transcode(C.JPEG_LOSSLESS_SV1, C.JPEG_LS_LOSSLESS)
    assert C.can_transcode(C.JPEG_BASELINE, C.JPEG_BASELINE)  # identity
    assert not C.can_transcode(C.EXPLICIT_VR_LE, C.JPEG_BASELINE)  # lossy target
    assert not C.can_transcode(C.EXPLICIT_VR_LE, C.JPEG_LOSSLESS_SV1)  # no encoder
    assert not C.can_transcode("1.2.3.4", C.EXPLICIT_VR_LE)


def test_clear_errors(ct512: pydicom.Dataset) -> None:
    with pytest.raises(UnsupportedTransferSyntax, match="lossless"):
        C.transcode(ct512, C.JPEG_BASELINE)
    with pytest.raises(UnsupportedTransferSyntax, match="not supported"):
        C.transcode(ct512, "1.2.840.10008.1.2.4.100")  # MPEG2
    with pytest.raises(UnsupportedTransferSyntax):
        C.encode_frame(
            ct512.pixel_array, C.JPEG2000, bits_stored=12, signed=False, photometric="MONOCHROME2"
        )
    with pytest.raises(UnsupportedTransferSyntax, match="cannot decode"):
        C.decode_frame(
            b"\xff\xd8\xff\xd9",
            C.JPEG_LS_LOSSLESS,
            rows=4,
            columns=4,
            samples_per_pixel=1,
            bits_allocated=8,
            bits_stored=8,
            pixel_representation=0,
            photometric="MONOCHROME2",
        )
