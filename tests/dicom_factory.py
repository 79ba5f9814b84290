"""Small synthetic DICOM objects for web tests (Part 10 bytes, built with pydicom)."""

from __future__ import annotations

import io
import zipfile
from typing import Any

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid


def make_ct_dataset(
    study_uid: str | None = None,
    series_uid: str | None = None,
    sop_uid: str | None = None,
    *,
    patient_name: str = "Doe^Jane",
    patient_id: str = "PAT001",
    study_date: str = "20240105",
    study_time: str = "101500",
    modality: str = "CT",
    accession: str = "ACC1",
    series_number: int = 1,
    instance_number: int = 1,
    n_rows: int = 16,
    sop_class_uid: str = CTImageStorage,
    charset: str | None = None,
    drop: tuple[str, ...] = (),
    **extra: Any,
) -> Dataset:
    """A tiny valid CT image; ``drop`` removes attributes, ``extra`` sets more keywords."""
    ds = Dataset()
    if charset:
        ds.SpecificCharacterSet = charset
    ds.SOPClassUID = sop_class_uid
    ds.SOPInstanceUID = sop_uid or generate_uid()
    ds.StudyInstanceUID = study_uid or generate_uid()
    ds.SeriesInstanceUID = series_uid or generate_uid()
    ds.PatientName = patient_name
    ds.PatientID = patient_id
    ds.PatientBirthDate = "19700101"
    ds.PatientSex = "F"
    ds.StudyDate, ds.StudyTime = study_date, study_time
    ds.AccessionNumber, ds.StudyID = accession, "1"
    ds.ReferringPhysicianName = "Ref^Doc"
    ds.Modality = modality
    ds.SeriesNumber, ds.InstanceNumber = series_number, instance_number
    _pixels(ds, n_rows)
    for keyword, value in extra.items():
        setattr(ds, keyword, value)
    for keyword in drop:
        delattr(ds, keyword)
    ds.file_meta = _meta(ds)
    return ds


def _pixels(ds: Dataset, n_rows: int) -> None:
    ds.Rows = ds.Columns = n_rows
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.RescaleIntercept, ds.RescaleSlope = -1024, 1
    ds.PixelData = (np.arange(n_rows * n_rows, dtype=np.uint16) % 4096).tobytes()


def _meta(ds: Dataset) -> FileMetaDataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.get("SOPClassUID", CTImageStorage)
    meta.MediaStorageSOPInstanceUID = ds.get("SOPInstanceUID", generate_uid())
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    return meta


def to_bytes(ds: Dataset) -> bytes:
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def make_ct(study_uid: str | None = None, series_uid: str | None = None, **kw: Any) -> bytes:
    """:func:`make_ct_dataset` as Part 10 file bytes."""
    return to_bytes(make_ct_dataset(study_uid, series_uid, **kw))


def make_zip(files: dict[str, bytes]) -> bytes:
    """A zip archive holding ``files`` (name → bytes); names ending in '/' are folders."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            if name.endswith("/"):
                zf.writestr(zipfile.ZipInfo(name), b"")
            else:
                zf.writestr(name, data)
    return buf.getvalue()


def make_jpeg(width: int = 64, height: int = 48) -> bytes:
    from PIL import Image

    img = Image.new("RGB", (width, height), (200, 30, 30))
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def make_pdf(text: str = "radcloud test") -> bytes:
    """A minimal one-page PDF."""
    stream = f"BT /F1 12 Tf 20 50 Td ({text}) Tj ET".encode()
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 200 100] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = io.BytesIO()
    out.write(b"%PDF-1.4\n")
    offsets = []
    for i, obj in enumerate(objects, 1):
        offsets.append(out.tell())
        out.write(b"%d 0 obj\n" % i + obj + b"\nendobj\n")
    xref = out.tell()
    out.write(b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1))
    for off in offsets:
        out.write(b"%010d 00000 n \n" % off)
    out.write(
        b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    )
    return out.getvalue()


def multipart_related(
    parts: list[bytes],
    boundary: str = "radcloud-test-boundary",
    part_type: str = "application/dicom",
) -> tuple[bytes, str]:
    """(body, Content-Type) of a STOW-RS request carrying ``parts``."""
    body = b""
    for data in parts:
        body += f"--{boundary}\r\nContent-Type: {part_type}\r\n\r\n".encode() + data + b"\r\n"
    body += f"--{boundary}--\r\n".encode()
    return body, f'multipart/related; type="application/dicom"; boundary="{boundary}"'
