"""Wrap the non-DICOM files a department keeps (photos, scanned PDFs) into DICOM.

A clinical photo becomes a Secondary Capture Image (PS3.3 A.8.1) and a PDF an
Encapsulated PDF (PS3.3 A.45.1), both filed under an existing study so that every
DICOM viewer and archive shows them next to the images.  Patient and study
attributes are copied from ``study`` (a pydicom Dataset, a DICOM JSON object, or
a plain ``{keyword: value}`` dict); each call opens a new series unless
``series_uid`` is given.

A baseline 8-bit JPEG keeps its compressed bytes (JPEG Baseline transfer syntax),
with metadata segments such as EXIF/GPS dropped; anything else is decoded with
Pillow and stored natively.  Input that is not JPEG, PNG or PDF (by magic bytes)
raises :class:`radcloud.errors.InvalidDicom` with a message saying what it is.
"""

from __future__ import annotations

import datetime as dt
import io
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError
from pydicom.datadict import keyword_for_tag, tag_for_keyword
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    UID,
    ExplicitVRLittleEndian,
    JPEGBaseline8Bit,
    generate_uid,
)

from radcloud.errors import InvalidDicom, MissingAttribute

__all__ = [
    "ENCAPSULATED_PDF_STORAGE",
    "SECONDARY_CAPTURE_IMAGE_STORAGE",
    "STUDY_KEYWORDS",
    "sniff",
    "study_attributes",
    "wrap_file",
    "wrap_image",
    "wrap_pdf",
]

SECONDARY_CAPTURE_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.7"
ENCAPSULATED_PDF_STORAGE = "1.2.840.10008.5.1.4.1.1.104.1"

#: Patient and study attributes copied from ``study`` (Patient and General Study modules).
STUDY_KEYWORDS = (
    "SpecificCharacterSet",
    "PatientName",
    "PatientID",
    "IssuerOfPatientID",
    "PatientBirthDate",
    "PatientSex",
    "StudyInstanceUID",
    "StudyDate",
    "StudyTime",
    "AccessionNumber",
    "StudyID",
    "ReferringPhysicianName",
    "StudyDescription",
)
#: Type 2 attributes that must be present even when unknown.
_TYPE2 = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "StudyDate",
    "StudyTime",
    "AccessionNumber",
    "StudyID",
    "ReferringPhysicianName",
)

IMAGE_SERIES_NUMBER = 900
PDF_SERIES_NUMBER = 901
_DEVICE = "radcloud"

_JPEG_MAGIC = b"\xff\xd8\xff"
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_PDF_MAGIC = b"%PDF-"


# --------------------------------------------------------------------- detection


def sniff(data: bytes) -> str | None:
    """'jpeg', 'png' or 'pdf' from the magic bytes, else None."""
    if data.startswith(_JPEG_MAGIC):
        return "jpeg"
    if data.startswith(_PNG_MAGIC):
        return "png"
    if _PDF_MAGIC in data[:1024]:  # PDF readers accept junk before the header
        return "pdf"
    return None


def _not_supported(data: bytes, wanted: str) -> InvalidDicom:
    """A clear error naming what ``data`` looks like instead of ``wanted``."""
    kind = sniff(data)
    if not data:
        return InvalidDicom(f"cannot wrap an empty file as {wanted}")
    if kind:
        other = "wrap_pdf" if kind == "pdf" else "wrap_image"
        return InvalidDicom(f"this file is a {kind.upper()}, not {wanted}; use {other}")
    head = data[:8].hex(" ")
    return InvalidDicom(
        f"cannot wrap this file as {wanted}: it is not a JPEG, PNG or PDF "
        f"(starts with bytes {head})"
    )


# ------------------------------------------------------------- study attributes


def _from_json(study: Mapping[str, Any]) -> Dataset:
    """Study attributes from DICOM JSON (tag keys) or a ``{keyword: value}`` dict."""
    wanted = {f"{tag_for_keyword(k):08X}": k for k in STUDY_KEYWORDS}
    json_part: dict[str, Any] = {}
    ds = Dataset()
    for key, value in study.items():
        tag = key.upper()
        if tag in wanted and isinstance(value, Mapping) and "vr" in value:
            json_part[tag] = value
        elif key in STUDY_KEYWORDS:
            setattr(ds, key, value)
    try:
        parsed = Dataset.from_json(json_part)
    except Exception as exc:
        raise InvalidDicom(f"study attributes are not valid DICOM JSON: {exc}") from exc
    for elem in parsed:
        ds[elem.tag] = elem
    return ds


def study_attributes(study: Dataset | Mapping[str, Any]) -> Dataset:
    """The patient/study attributes of ``study`` to file a new instance under.

    Raises :class:`MissingAttribute` without a Study Instance UID, since the whole
    point is to join an existing study.
    """
    src = study if isinstance(study, Dataset) else _from_json(study)
    out = Dataset()
    for kw in STUDY_KEYWORDS:
        if kw in src and src[kw].value not in (None, ""):
            out.add(src[kw])
    if not str(out.get("StudyInstanceUID", "")).strip():
        raise MissingAttribute("study must carry a StudyInstanceUID to file the document under")
    for kw in _TYPE2:
        if kw not in out:
            setattr(out, kw, "")
    if "SpecificCharacterSet" not in out and not _all_ascii(out):
        out.SpecificCharacterSet = "ISO_IR 192"
    return out


def _all_ascii(ds: Dataset) -> bool:
    return all(str(e.value).isascii() for e in ds if keyword_for_tag(e.tag))


# ------------------------------------------------------------------ common parts


def _new_instance(
    study: Dataset | Mapping[str, Any],
    sop_class: str,
    ts: str,
    *,
    modality: str,
    series_uid: str | None,
    series_number: int,
    series_description: str,
    instance_number: int,
) -> Dataset:
    """SOP Common, Patient, General Study, Series, Equipment and SC Equipment modules."""
    now = dt.datetime.now()
    ds = Dataset()
    sop_uid = generate_uid()
    meta = FileMetaDataset()
    meta.FileMetaInformationVersion = b"\x00\x01"
    meta.MediaStorageSOPClassUID = UID(sop_class)
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = UID(ts)
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    meta.ImplementationVersionName = "RADCLOUD_WRAP"
    ds.file_meta = meta
    ds.update(study_attributes(study))
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop_uid
    ds.Modality = modality
    ds.SeriesInstanceUID = series_uid or generate_uid()
    ds.SeriesNumber = series_number
    if series_description:
        ds.SeriesDescription = series_description
    ds.InstanceNumber = instance_number
    ds.ContentDate = ds.InstanceCreationDate = now.strftime("%Y%m%d")
    ds.ContentTime = ds.InstanceCreationTime = now.strftime("%H%M%S")
    ds.Manufacturer = ""
    ds.ConversionType = "WSD"  # workstation: converted by software, not a scanner
    ds.SecondaryCaptureDeviceManufacturer = _DEVICE
    ds.SecondaryCaptureDeviceManufacturerModelName = "radcloud.dicom.wrap"
    return ds


# ------------------------------------------------------------------------ images


@dataclass(frozen=True)
class _JpegInfo:
    """What the frame header of a JPEG says, plus the stream without metadata."""

    sof: int
    precision: int
    rows: int
    columns: int
    ids: tuple[int, ...]
    sampling: tuple[int, ...]
    adobe_transform: int | None
    jfif: bool
    orientation: int
    clean: bytes


_KEEP_APP = {0xE0, 0xEE}  # JFIF and Adobe segments carry colour information


def _exif_orientation(segment: bytes) -> int:
    """Orientation tag (0x0112) of an APP1 Exif payload, 1 when absent."""
    if not segment.startswith(b"Exif\x00\x00"):
        return 1
    tiff = segment[6:]
    order: Literal["little", "big"] = "little" if tiff[:2] == b"II" else "big"
    try:
        ifd = int.from_bytes(tiff[4:8], order)
        count = int.from_bytes(tiff[ifd : ifd + 2], order)
        for i in range(count):
            entry = tiff[ifd + 2 + 12 * i : ifd + 14 + 12 * i]
            if int.from_bytes(entry[:2], order) == 0x0112:
                return int.from_bytes(entry[8:10], order)
    except (IndexError, ValueError):
        pass
    return 1


def _parse_jpeg(data: bytes) -> _JpegInfo:
    """Walk the marker segments up to SOS; keep JFIF/Adobe, drop EXIF and the like."""
    pos, kept = 2, [b"\xff\xd8"]
    sof = precision = rows = cols = 0
    ids: tuple[int, ...] = ()
    sampling: tuple[int, ...] = ()
    adobe: int | None = None
    jfif, orientation = False, 1
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            raise InvalidDicom(f"corrupt JPEG: expected a marker at byte {pos}")
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        length = int.from_bytes(data[pos + 2 : pos + 4], "big")
        seg = data[pos + 4 : pos + 2 + length]
        if marker == 0xDA:  # start of scan: the rest is entropy-coded data
            end = data.find(b"\xff\xd9", pos)
            if end < 0:
                raise InvalidDicom("corrupt JPEG: no end-of-image marker (truncated file?)")
            kept.append(data[pos : end + 2])
            break
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            sof, precision = marker, seg[0]
            rows, cols = int.from_bytes(seg[1:3], "big"), int.from_bytes(seg[3:5], "big")
            n = seg[5]
            ids = tuple(seg[6 + 3 * i] for i in range(n))
            sampling = tuple(seg[7 + 3 * i] for i in range(n))
        if marker == 0xE0 and seg.startswith(b"JFIF\x00"):
            jfif = True
        if marker == 0xEE and seg.startswith(b"Adobe") and len(seg) >= 12:
            adobe = seg[11]
        if marker == 0xE1:
            orientation = _exif_orientation(seg)
        if not (0xE0 <= marker <= 0xEF or marker == 0xFE) or marker in _KEEP_APP:
            kept.append(data[pos : pos + 2 + length])
        pos += 2 + length
    else:
        raise InvalidDicom("corrupt JPEG: no image data (start-of-scan marker missing)")
    if not sof:
        raise InvalidDicom("corrupt JPEG: no frame header")
    return _JpegInfo(
        sof, precision, rows, cols, ids, sampling, adobe, jfif, orientation, b"".join(kept)
    )


def _jpeg_photometric(info: _JpegInfo) -> str:
    """Photometric Interpretation of a kept baseline JPEG (PS3.5 8.2.1)."""
    if len(info.ids) == 1:
        return "MONOCHROME2"
    rgb_ids = info.ids == (ord("R"), ord("G"), ord("B"))
    if info.adobe_transform == 0 or (not info.jfif and info.adobe_transform is None and rgb_ids):
        return "RGB"
    luma, chroma = info.sampling[0], info.sampling[1:]
    return "YBR_FULL_422" if any(c != luma for c in chroma) else "YBR_FULL"


def _keep_as_jpeg(info: _JpegInfo) -> bool:
    """Baseline 8-bit gray/colour JPEG that needs no rotation can be stored as is."""
    return (
        info.sof == 0xC0
        and info.precision == 8
        and len(info.ids) in (1, 3)
        and info.orientation == 1
    )


def _pixel_module(ds: Dataset, rows: int, cols: int, spp: int, bits: int, pi: str) -> None:
    """Image Pixel module (PS3.3 C.7.6.3) for unsigned samples."""
    ds.SamplesPerPixel = spp
    ds.PhotometricInterpretation = pi
    ds.Rows, ds.Columns = rows, cols
    ds.BitsAllocated = 8 if bits <= 8 else 16
    ds.BitsStored = bits
    ds.HighBit = bits - 1
    ds.PixelRepresentation = 0
    if spp > 1:
        ds.PlanarConfiguration = 0


def _decode_with_pillow(data: bytes) -> np.ndarray:
    """Decoded, upright pixels: uint8 gray/RGB or uint16 gray; alpha flattened on white."""
    ImageFile.LOAD_TRUNCATED_IMAGES = False  # a cut-off file is refused (other libraries flip it)
    try:
        img: Image.Image = Image.open(io.BytesIO(data))
        img = ImageOps.exif_transpose(img)
        img.load()
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise InvalidDicom(f"cannot decode the image: {exc}") from exc
    if img.mode in ("I;16", "I;16L", "I;16B", "I"):
        return np.clip(np.asarray(img), 0, 65535).astype(np.uint16)
    if img.mode in ("RGBA", "LA", "PA") or "transparency" in img.info:
        rgba = img.convert("RGBA")
        flat = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        flat.alpha_composite(rgba)
        img = flat.convert("L" if img.mode == "LA" else "RGB")
    elif img.mode in ("1", "L"):
        img = img.convert("L")
    else:
        img = img.convert("RGB")
    return np.asarray(img)


def _store_native(ds: Dataset, arr: np.ndarray) -> None:
    """Native Explicit VR LE pixel data from a decoded array."""
    bits = 16 if arr.dtype == np.uint16 else 8
    spp = 3 if arr.ndim == 3 else 1
    _pixel_module(ds, arr.shape[0], arr.shape[1], spp, bits, "RGB" if spp == 3 else "MONOCHROME2")
    ds.PixelData = np.ascontiguousarray(arr, dtype=arr.dtype.newbyteorder("<")).tobytes()
    ds["PixelData"].VR = "OW" if bits > 8 else "OB"


def _store_jpeg(ds: Dataset, info: _JpegInfo) -> None:
    """Encapsulated JPEG Baseline pixel data from an untouched codestream."""
    spp = len(info.ids)
    _pixel_module(ds, info.rows, info.columns, spp, 8, _jpeg_photometric(info))
    ds.PixelData = encapsulate([info.clean])
    ds["PixelData"].VR = "OB"
    ds["PixelData"].is_undefined_length = True
    ratio = info.rows * info.columns * spp / max(len(info.clean), 1)
    ds.LossyImageCompressionRatio = f"{ratio:.2f}"[:16]


def wrap_image(
    data: bytes,
    study: Dataset | Mapping[str, Any],
    *,
    series_description: str = "",
    modality: str = "OT",
    series_uid: str | None = None,
    series_number: int = IMAGE_SERIES_NUMBER,
    instance_number: int = 1,
) -> Dataset:
    """A JPEG or PNG photo as a Secondary Capture Image instance of ``study``.

    Baseline 8-bit JPEGs keep their bytes (transfer syntax JPEG Baseline); PNGs,
    progressive/12-bit/rotated JPEGs are decoded and stored natively as RGB or
    MONOCHROME2 (8 or 16 bits).
    """
    kind = sniff(data)
    if kind not in ("jpeg", "png"):
        raise _not_supported(data, "an image (JPEG or PNG)")
    info = _parse_jpeg(data) if kind == "jpeg" else None
    keep = info is not None and _keep_as_jpeg(info)
    ds = _new_instance(
        study,
        SECONDARY_CAPTURE_IMAGE_STORAGE,
        JPEGBaseline8Bit if keep else ExplicitVRLittleEndian,
        modality=modality,
        series_uid=series_uid,
        series_number=series_number,
        series_description=series_description,
        instance_number=instance_number,
    )
    ds.ImageType = ["DERIVED", "SECONDARY"]
    ds.PatientOrientation = ""
    ds.DateOfSecondaryCapture = ds.ContentDate
    ds.TimeOfSecondaryCapture = ds.ContentTime
    if keep and info is not None:
        _store_jpeg(ds, info)
    else:
        _store_native(ds, _decode_with_pillow(data))
    ds.LossyImageCompression = "01" if kind == "jpeg" else "00"
    if kind == "jpeg":
        ds.LossyImageCompressionMethod = "ISO_10918_1"
    return ds


# --------------------------------------------------------------------------- PDF


def wrap_pdf(
    data: bytes,
    study: Dataset | Mapping[str, Any],
    *,
    title: str = "",
    series_description: str | None = None,
    series_uid: str | None = None,
    series_number: int = PDF_SERIES_NUMBER,
    instance_number: int = 1,
) -> Dataset:
    """A PDF as an Encapsulated PDF instance of ``study`` (PS3.3 A.45.1, C.24.2).

    The document bytes are kept exactly; Encapsulated Document Length records the
    true size so the even-length padding byte can be stripped on the way out.
    """
    if sniff(data) != "pdf":
        raise _not_supported(data, "a PDF document")
    ds = _new_instance(
        study,
        ENCAPSULATED_PDF_STORAGE,
        ExplicitVRLittleEndian,
        modality="DOC",
        series_uid=series_uid,
        series_number=series_number,
        series_description=title if series_description is None else series_description,
        instance_number=instance_number,
    )
    ds.AcquisitionDateTime = ""
    ds.BurnedInAnnotation = "YES"  # a document shows identifying text by nature
    ds.RecognizableVisualFeatures = "NO"
    ds.DocumentTitle = title
    ds.ConceptNameCodeSequence = []
    ds.MIMETypeOfEncapsulatedDocument = "application/pdf"
    ds.EncapsulatedDocument = bytes(data) + (b"\x00" if len(data) % 2 else b"")
    ds.EncapsulatedDocumentLength = len(data)
    return ds


def wrap_file(data: bytes, study: Dataset | Mapping[str, Any], **kw: Any) -> Dataset:
    """Wrap a JPEG, PNG or PDF, choosing :func:`wrap_image` or :func:`wrap_pdf` by content.

    ``title`` goes to the PDF's Document Title or the image's Series Description.
    """
    kind = sniff(data)
    if kind == "pdf":
        return wrap_pdf(data, study, **kw)
    if kind in ("jpeg", "png"):
        title = kw.pop("title", "")
        kw.setdefault("series_description", title)
        return wrap_image(data, study, **kw)
    raise _not_supported(data, "DICOM")
