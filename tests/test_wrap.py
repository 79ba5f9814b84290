"""Wrapping photos and PDFs into DICOM instances of an existing study."""

from __future__ import annotations

import copy
import io

import numpy as np
import pydicom
import pytest
import simplejpeg
from PIL import Image
from pydicom.encaps import generate_frames

from radcloud.dicom.wrap import (
    ENCAPSULATED_PDF_STORAGE,
    SECONDARY_CAPTURE_IMAGE_STORAGE,
    wrap_file,
    wrap_image,
    wrap_pdf,
)
from radcloud.errors import InvalidDicom, MissingAttribute
from radcloud.testing.phantom import tiny_ct_series

PDF = (
    b"%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\n"
    b"2 0 obj<</Type/Pages/Kids[]/Count 0>>endobj\ntrailer<</Root 1 0 R>>\n%%EOF\n"
)


@pytest.fixture(scope="module")
def study() -> pydicom.Dataset:
    ds = next(
        tiny_ct_series(
            1,
            patient_name="Wang^Xiaodong=王^小东",
            patient_id="P123",
            specific_character_set="ISO_IR 192",
            accession_number="A77",
        )
    )
    ds.PatientSex = "M"
    return ds


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    yy, xx = np.mgrid[0:60, 0:80]
    return np.stack([xx * 3, yy * 4, (xx + yy) * 2], axis=-1).clip(0, 255).astype(np.uint8)


def _reread(ds: pydicom.Dataset) -> pydicom.Dataset:
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    buf.seek(0)
    return pydicom.dcmread(buf)


def _meta_json(ds: pydicom.Dataset) -> dict:
    d = copy.deepcopy(ds)
    del d.PixelData
    return d.to_json_dict()


def _jpeg(arr: np.ndarray, **save: object) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", quality=92, **save)
    return buf.getvalue()


def _png(arr: np.ndarray, mode: str | None = None) -> bytes:
    buf = io.BytesIO()
    img = Image.fromarray(arr) if mode is None else Image.fromarray(arr, mode)
    img.save(buf, format="PNG")
    return buf.getvalue()


def _same_study(out: pydicom.Dataset, study: pydicom.Dataset) -> None:
    for kw in ("StudyInstanceUID", "PatientID", "AccessionNumber", "StudyDate", "PatientSex"):
        assert out[kw].value == study[kw].value, kw
    assert out.PatientName.ideographic == "王^小东"
    assert out.SeriesInstanceUID != study.SeriesInstanceUID


def test_baseline_jpeg_kept_as_is(study: pydicom.Dataset, photo: np.ndarray) -> None:
    data = simplejpeg.encode_jpeg(photo, 90, colorsubsampling="420")
    out = _reread(wrap_image(data, study, series_description="Wound photo"))
    assert out.SOPClassUID == SECONDARY_CAPTURE_IMAGE_STORAGE
    assert out.file_meta.TransferSyntaxUID == pydicom.uid.JPEGBaseline8Bit
    assert out.ConversionType == "WSD" and out.Modality == "OT"
    assert out.SeriesDescription == "Wound photo"
    assert out.PhotometricInterpretation == "YBR_FULL_422"
    assert (out.Rows, out.Columns, out.SamplesPerPixel) == (60, 80, 3)
    assert out.LossyImageCompression == "01"
    _same_study(out, study)
    frame = next(generate_frames(out.PixelData, number_of_frames=1))
    assert frame.rstrip(b"\x00") == data  # the codestream itself is untouched
    pixels = out.pixel_array  # decodes in plain pydicom, close to the photo
    assert pixels.shape == photo.shape
    assert np.abs(pixels.astype(int) - photo.astype(int)).mean() < 6


def test_exif_metadata_is_dropped(study: pydicom.Dataset, photo: np.ndarray) -> None:
    exif = Image.Exif()
    exif[0x010F] = "PhoneMakerCo"  # Make
    exif[0x0112] = 1  # upright
    data = _jpeg(photo, exif=exif.tobytes())
    assert b"PhoneMakerCo" in data
    out = wrap_image(data, study)
    assert out.file_meta.TransferSyntaxUID == pydicom.uid.JPEGBaseline8Bit
    assert b"PhoneMakerCo" not in out.PixelData and b"Exif" not in out.PixelData
    assert _reread(out).pixel_array.shape == photo.shape


def test_rotated_and_progressive_jpegs_are_decoded(
    study: pydicom.Dataset, photo: np.ndarray
) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    rotated = wrap_image(_jpeg(photo, exif=exif.tobytes()), study)
    assert rotated.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
    assert (rotated.Rows, rotated.Columns) == (80, 60)
    progressive = _reread(wrap_image(_jpeg(photo, progressive=True), study))
    assert progressive.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
    assert progressive.PhotometricInterpretation == "RGB"
    assert progressive.LossyImageCompression == "01"
    assert np.abs(progressive.pixel_array.astype(int) - photo).mean() < 6


def test_gray_jpeg_is_monochrome(study: pydicom.Dataset, photo: np.ndarray) -> None:
    out = wrap_image(_jpeg(photo[..., 0]), study)
    assert out.PhotometricInterpretation == "MONOCHROME2" and out.SamplesPerPixel == 1
    assert _reread(out).pixel_array.shape == (60, 80)


def test_png_is_stored_natively_and_exactly(study: pydicom.Dataset, photo: np.ndarray) -> None:
    out = _reread(wrap_image(_png(photo), _meta_json(study), modality="XC"))
    assert out.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
    assert out.PhotometricInterpretation == "RGB" and out.Modality == "XC"
    assert out.LossyImageCompression == "00"
    assert np.array_equal(out.pixel_array, photo)
    _same_study(out, study)


def test_png_variants(study: pydicom.Dataset, photo: np.ndarray) -> None:
    gray16 = (np.arange(30 * 40, dtype=np.uint16).reshape(30, 40) * 50).astype(np.uint16)
    out = _reread(wrap_image(_png(gray16), study))
    assert (out.BitsAllocated, out.BitsStored, out.PhotometricInterpretation) == (
        16,
        16,
        "MONOCHROME2",
    )
    assert np.array_equal(out.pixel_array, gray16)
    rgba = np.dstack([photo, np.zeros(photo.shape[:2], np.uint8)])  # fully transparent
    flat = _reread(wrap_image(_png(rgba), study))
    assert flat.PhotometricInterpretation == "RGB"
    assert (flat.pixel_array == 255).all()  # flattened onto white


def test_pdf_round_trips_exactly(study: pydicom.Dataset) -> None:
    assert len(PDF) % 2 == 1  # exercises the padding byte
    out = _reread(wrap_pdf(PDF, study, title="出院小结 Discharge summary"))
    assert out.SOPClassUID == ENCAPSULATED_PDF_STORAGE
    assert out.MIMETypeOfEncapsulatedDocument == "application/pdf"
    assert out.DocumentTitle == "出院小结 Discharge summary"
    assert out.BurnedInAnnotation == "YES" and out.Modality == "DOC"
    assert out.ConversionType == "WSD"
    assert len(out.EncapsulatedDocument) % 2 == 0
    assert out.EncapsulatedDocumentLength == len(PDF)
    assert out.EncapsulatedDocument[: out.EncapsulatedDocumentLength] == PDF
    _same_study(out, study)


def test_series_uid_per_call_or_given(study: pydicom.Dataset) -> None:
    a, b = wrap_pdf(PDF, study), wrap_pdf(PDF, study)
    assert a.SeriesInstanceUID != b.SeriesInstanceUID
    assert a.SOPInstanceUID != b.SOPInstanceUID
    c = wrap_pdf(PDF, study, series_uid=a.SeriesInstanceUID, instance_number=2)
    assert c.SeriesInstanceUID == a.SeriesInstanceUID and c.InstanceNumber == 2


def test_study_as_keyword_dict(photo: np.ndarray) -> None:
    study = {"StudyInstanceUID": "1.2.826.0.1.99", "PatientID": "K9", "PatientName": "Li^Lei"}
    out = _reread(wrap_file(_png(photo), study, title="Photo"))
    assert out.StudyInstanceUID == "1.2.826.0.1.99" and out.PatientID == "K9"
    assert out.SeriesDescription == "Photo"
    assert "PatientBirthDate" in out and out.PatientBirthDate == ""  # type 2, present
    assert wrap_file(PDF, study).SOPClassUID == ENCAPSULATED_PDF_STORAGE


def test_bad_input_is_refused_clearly(study: pydicom.Dataset, photo: np.ndarray) -> None:
    with pytest.raises(InvalidDicom, match="not a JPEG, PNG or PDF"):
        wrap_image(b"GIF89a....", study)
    with pytest.raises(InvalidDicom, match="use wrap_pdf"):
        wrap_image(PDF, study)
    with pytest.raises(InvalidDicom, match="use wrap_image"):
        wrap_pdf(_png(photo), study)
    with pytest.raises(InvalidDicom, match="empty"):
        wrap_pdf(b"", study)
    truncated = simplejpeg.encode_jpeg(photo, 90)[:300]
    with pytest.raises(InvalidDicom, match="corrupt JPEG"):
        wrap_image(truncated, study)
    with pytest.raises(InvalidDicom):
        wrap_image(_png(photo)[:60], study)
    with pytest.raises(MissingAttribute, match="StudyInstanceUID"):
        wrap_pdf(PDF, {"PatientID": "X"})
    assert issubclass(MissingAttribute, InvalidDicom)


def test_a_truncated_png_is_refused_after_weasyprint_is_loaded(
    study: pydicom.Dataset, photo: np.ndarray
) -> None:
    """WeasyPrint (report PDFs) sets Pillow's LOAD_TRUNCATED_IMAGES on import."""
    import weasyprint  # noqa: F401
    from PIL import ImageFile

    ImageFile.LOAD_TRUNCATED_IMAGES = True  # as WeasyPrint leaves it
    with pytest.raises(InvalidDicom, match="cannot decode"):
        wrap_image(_png(photo)[:60], study)
