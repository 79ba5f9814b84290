"""Small phantom CT series and DCMTK helpers for the DIMSE tests."""

from __future__ import annotations

import os
import shutil
import socket
import struct
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from pydicom.uid import generate_uid

from radcloud.testing.phantom import chest_ct_series

TEST_FILES = Path(__import__("pydicom").__file__).parent / "data" / "test_files"
DCMTK_ENV = {**os.environ, "TCP_NODELAY": "1"}


@dataclass
class SeriesFiles:
    patient_id: str
    patient_name: str
    study_uid: str
    series_uid: str
    sop_uids: list[str]
    paths: list[Path]


def write_series(
    folder: Path,
    n: int,
    *,
    patient_id: str = "PAT1",
    patient_name: str = "Doe^John",
    study_uid: str | None = None,
    series_uid: str | None = None,
    study_date: str = "20240315",
    modality: str = "CT",
    series_number: int = 1,
    rows: int = 32,
    columns: int = 32,
    seed: int = 0,
) -> SeriesFiles:
    """Write ``n`` small slices of the project's chest phantom as Part 10 files in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    study_uid = study_uid or generate_uid()
    series_uid = series_uid or generate_uid()
    out = SeriesFiles(patient_id, patient_name, study_uid, series_uid, [], [])
    slices = chest_ct_series(
        n, rows, columns, seed, patient_name=patient_name, patient_id=patient_id,
        study_uid=study_uid, series_uid=series_uid, study_date=study_date,
        pixel_spacing=round(0.7 * 512 / max(rows, columns), 4),
    )  # fmt: skip
    for i, ds in enumerate(slices):
        ds.Modality = modality
        ds.SeriesNumber = series_number
        path = folder / f"{i:04d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        out.sop_uids.append(str(ds.SOPInstanceUID))
        out.paths.append(path)
    return out


def dataset_bytes(data: bytes) -> bytes:
    """The data set of a Part 10 file: everything after preamble + file meta group."""
    if data[128:132] != b"DICM":
        return data
    pos = 132
    while pos + 8 <= len(data) and struct.unpack_from("<H", data, pos)[0] == 0x0002:
        vr = data[pos + 4 : pos + 6]
        if vr in (b"OB", b"OW", b"SQ", b"UN", b"UT"):
            pos += 12 + struct.unpack_from("<I", data, pos + 8)[0]
        else:
            pos += 8 + struct.unpack_from("<H", data, pos + 6)[0]
    return data[pos:]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def dcmtk(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run a DCMTK tool with TCP_NODELAY=1; never raises on a non-zero exit."""
    tool = shutil.which(args[0])
    assert tool, f"{args[0]} (DCMTK) is not installed"
    return subprocess.run(
        [tool, *args[1:]], env=DCMTK_ENV, capture_output=True, text=True, timeout=timeout
    )


def wait_port(port: int, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on port {port}")
