"""A 2 GiB upload to a real ``radcloud serve``: streamed to disk, memory stays bounded.

The body is generated on the fly (a multi-frame Secondary Capture whose
Pixel Data is 2 GiB) and sent with chunked transfer encoding; the server's
resident memory is sampled from /proc while it receives, stores and indexes
it.  Afterwards one frame near the end is read back through WADO-RS.
"""

from __future__ import annotations

import io
import shutil
import struct
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filewriter import dcmwrite
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

pytestmark = pytest.mark.slow

ROWS = COLUMNS = 1024
FRAMES = 2048  # 2048 x 1 MiB = 2 GiB of pixel data
CHUNK = 1024 * 1024
MULTIFRAME_GRAYSCALE_BYTE_SC = "1.2.840.10008.5.1.4.1.1.7.2"


def header(study: str, series: str, sop: str) -> bytes:
    """Everything of the Part 10 file up to and including the Pixel Data element header."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = MULTIFRAME_GRAYSCALE_BYTE_SC
    ds.file_meta.MediaStorageSOPInstanceUID = sop
    ds.SOPClassUID, ds.SOPInstanceUID = MULTIFRAME_GRAYSCALE_BYTE_SC, sop
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
    ds.PatientName, ds.PatientID, ds.Modality = "Big^Upload", "BIG0001", "OT"
    ds.Rows, ds.Columns, ds.NumberOfFrames = ROWS, COLUMNS, FRAMES
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    buf = io.BytesIO()
    dcmwrite(buf, ds, enforce_file_format=True)
    pixel_len = ROWS * COLUMNS * FRAMES
    return buf.getvalue() + struct.pack("<HH2sHI", 0x7FE0, 0x0010, b"OB", 0, pixel_len)


def frame_bytes(n: int) -> bytes:
    """Frame n (0-based) is filled with the byte n % 251, so frames are told apart."""
    return bytes([n % 251]) * (ROWS * COLUMNS)


def body(head: bytes) -> Iterator[bytes]:
    yield head
    for n in range(FRAMES):
        yield frame_bytes(n)


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def test_two_gib_upload_is_streamed_with_bounded_memory(server) -> None:  # type: ignore[no-untyped-def]
    server.start()
    base = f"http://127.0.0.1:{server.http_port}"
    pid = server.proc.pid
    baseline = rss_kib(pid)
    peak = [baseline]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], rss_kib(pid))
            time.sleep(0.05)

    sampler = threading.Thread(target=sample)
    sampler.start()
    study, series, sop = generate_uid(), generate_uid(), generate_uid()
    try:
        with httpx.Client(timeout=600, headers=server.headers()) as client:
            r = client.post(
                f"{base}/api/upload",
                content=body(header(study, series, sop)),
                headers={"Content-Type": "application/dicom"},
            )
            assert r.status_code == 200, r.text
            assert r.json()["instances"][0]["sopInstanceUID"] == sop
            done.set()
            sampler.join()
            # read back one frame near the end with a ranged read
            f = client.get(
                f"{base}/dicom-web/studies/{study}/series/{series}/instances/{sop}/frames/2000",
                headers={"Accept": 'multipart/related; type="application/octet-stream"'},
            )
            assert f.status_code == 200
            assert frame_bytes(1999) in f.content
    finally:
        done.set()
        sampler.join()
    grew_mib = (peak[0] - baseline) / 1024
    assert grew_mib < 200, f"server memory grew by {grew_mib:.0f} MiB for a 2 GiB upload"
    server.stop()
    shutil.rmtree(server.env["RADCLOUD_DATA_DIR"], ignore_errors=True)
