"""Helpers for WADO-RS and render service tests: test files, Part-10 bytes, multipart."""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydicom import dcmread
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.filewriter import dcmwrite

from radcloud.archive.ingest import StoreResult, store_bytes
from radcloud.archive.service import Archive

ELE = "1.2.840.10008.1.2.1"
JLS = "1.2.840.10008.1.2.4.80"
J2K = "1.2.840.10008.1.2.4.90"
RLE = "1.2.840.10008.1.2.5"
HTJ2K = "1.2.840.10008.1.2.4.201"


def bundled(name: str) -> bytes:
    """A file bundled with pydicom (only names present in its test_files folder)."""
    path = get_testdata_file(name, download=False)
    assert path is not None, f"{name} is not bundled with pydicom"
    return Path(str(path)).read_bytes()


def part10(ds: Dataset) -> bytes:
    buf = io.BytesIO()
    dcmwrite(buf, ds, enforce_file_format=True)
    return buf.getvalue()


def read(data: bytes) -> Dataset:
    return dcmread(io.BytesIO(data))


def pixels_of(data: bytes) -> np.ndarray:
    return read(data).pixel_array


def store(archive: Archive, data: bytes) -> StoreResult:
    return store_bytes(archive, data, source="test")


def instance_path(r: StoreResult) -> str:
    return f"/dicom-web/studies/{r.study_uid}/series/{r.series_uid}/instances/{r.sop_uid}"


@dataclass
class Part:
    headers: dict[str, str]
    body: bytes

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "")

    @property
    def transfer_syntax(self) -> str:
        m = re.search(r"transfer-syntax=([0-9.]+)", self.content_type)
        return m.group(1) if m else ""


def parse_multipart(content_type: str, body: bytes) -> list[Part]:
    """Split a multipart/related body into parts (strict about framing)."""
    m = re.search(r'boundary="?([^";]+)"?', content_type)
    assert m, f"no boundary in {content_type!r}"
    delim = b"--" + m.group(1).encode()
    assert body.endswith(delim + b"--\r\n"), "multipart body is not closed"
    chunks = body[: -len(delim) - 4].split(delim)
    assert chunks[0] == b"", "data before the first boundary"
    parts = []
    for chunk in chunks[1:]:
        assert chunk.startswith(b"\r\n") and chunk.endswith(b"\r\n")
        head, _, payload = chunk[2:-2].partition(b"\r\n\r\n")
        headers = {}
        for line in head.decode().split("\r\n"):
            key, _, value = line.partition(":")
            headers[key.strip().lower()] = value.strip()
        parts.append(Part(headers, payload))
    return parts


def text_sr(study_uid: str, series_number: int = 1) -> Dataset:
    """A Basic Text SR (no pixel data) in ``study_uid``."""
    from radcloud.testing.phantom import make_dataset

    ds = make_dataset(StudyInstanceUID=study_uid, SeriesNumber=series_number)
    for kw in (
        "PixelData",
        "Rows",
        "Columns",
        "BitsAllocated",
        "BitsStored",
        "HighBit",
        "PixelRepresentation",
        "SamplesPerPixel",
        "PhotometricInterpretation",
    ):
        delattr(ds, kw)
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.88.11"
    ds.Modality = "SR"
    return ds
