"""Benchmark data: the big CT series (and UID-fresh copies of it) and the small query studies.

The 512x512 CT series comes from the peer benchmark's ``gen_series.py`` (beside the
checkout in ``../shared/peer-bench``), so our figures use the very data the published
Orthanc figures used.  Every ingest run needs a series the server has never seen;
instead of drawing the phantom again (about 11 s per 500 slices) we copy the base
series with new Study/Series/SOP/Frame-of-Reference UIDs (about 1 s).

The query studies are tiny (64x64, one instance each) so that loading 1,000 of them
costs little; what QIDO measures is the index, not the pixels.
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from pydicom import dcmread
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    CTImageStorage,
    ExplicitVRLittleEndian,
    generate_uid,
)

REPO = Path(__file__).resolve().parents[2]
PEER_BENCH = REPO.parent / "shared" / "peer-bench"
GEN_SERIES = PEER_BENCH / "gen_series.py"

#: 20 surnames with distinct prefixes, so ``PatientName=<SURNAME>*`` matches one patient.
SURNAMES = [
    "WANG", "LI", "ZHANG", "LIU", "CHEN", "YANG", "HUANG", "ZHAO", "WU", "ZHOU",
    "XU", "SUN", "MA", "ZHU", "HU", "GUO", "HE", "GAO", "LIN", "LUO",
]  # fmt: skip
SMALL_FIRST_DATE = dt.date(2024, 1, 1)


@dataclass
class Series:
    """One series on disk: its files (in slice order) and UIDs."""

    directory: Path
    files: list[Path]
    study_uid: str
    series_uid: str
    sop_uids: list[str]
    nbytes: int = 0

    def chunks(self, n: int) -> list[list[Path]]:
        """The files split into ``n`` contiguous groups (for parallel associations)."""
        k, r = divmod(len(self.files), n)
        out, i = [], 0
        for j in range(n):
            size = k + (1 if j < r else 0)
            out.append(self.files[i : i + size])
            i += size
        return [c for c in out if c]


@dataclass
class SmallStudies:
    """The query-latency studies: one CT instance each, round-robin over 20 patients."""

    directory: Path
    count: int
    patients: int
    files: list[Path] = field(default_factory=list)

    def expected(self, key: str, value: str) -> int:
        """How many studies a QIDO query must return (computed from how they were made)."""
        n, p = self.count, self.patients
        if key == "PatientID":
            idx = int(value[len("QIDO") :])
            return len(range(idx, n, p))
        if key == "PatientName":
            prefix = value.rstrip("*")
            idxs = [i for i in range(p) if SURNAMES[i % len(SURNAMES)].startswith(prefix)]
            return sum(len(range(i, n, p)) for i in idxs)
        if key == "StudyDate":
            lo, hi = (dt.datetime.strptime(x, "%Y%m%d").date() for x in value.split("-"))
            return sum(1 for k in range(n) if lo <= SMALL_FIRST_DATE + dt.timedelta(days=k) <= hi)
        raise KeyError(key)


def _series_from_dir(directory: Path) -> Series:
    files = sorted(directory.rglob("*.dcm"))
    if not files:
        raise RuntimeError(f"no DICOM files under {directory}")
    sops, study, series = [], "", ""
    for f in files:
        ds = dcmread(f, stop_before_pixels=True, specific_tags=["SOPInstanceUID"])
        sops.append(str(ds.SOPInstanceUID))
    first = dcmread(files[0], stop_before_pixels=True)
    study, series = str(first.StudyInstanceUID), str(first.SeriesInstanceUID)
    return Series(directory, files, study, series, sops, sum(f.stat().st_size for f in files))


def make_base_series(out: Path, slices: int, seed: int = 1) -> Series:
    """Draw the CT phantom series with the peer benchmark's generator."""
    if not GEN_SERIES.exists():
        raise RuntimeError(f"{GEN_SERIES} is missing (../shared/peer-bench beside the checkout)")
    out.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, str(GEN_SERIES), "--out", str(out), "--slices", str(slices)]
    cmd += ["--patient-prefix", "BENCH", "--seed", str(seed)]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return _series_from_dir(out)


def copy_with_new_uids(base: Series, out: Path, tag: str) -> Series:
    """The base series under fresh UIDs (same pixels), for one more ingest run."""
    out.mkdir(parents=True, exist_ok=True)
    study, series, frame = generate_uid(), generate_uid(), generate_uid()
    files, sops = [], []
    for i, src in enumerate(base.files):
        ds = dcmread(src)
        sop = generate_uid()
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame
        ds.SOPInstanceUID = sop
        ds.file_meta.MediaStorageSOPInstanceUID = sop
        ds.PatientID = f"BENCH{tag}"
        ds.AccessionNumber = f"B{tag}"[:16]
        dst = out / f"CT{i + 1:04d}.dcm"
        ds.save_as(dst, enforce_file_format=True)
        files.append(dst)
        sops.append(sop)
    return Series(out, files, study, series, sops, sum(f.stat().st_size for f in files))


def make_small_studies(out: Path, count: int, patients: int = 20) -> SmallStudies:
    """``count`` one-instance CT studies over ``patients`` patients, one study date per day."""
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(7)
    small = SmallStudies(out, count, patients)
    for k in range(count):
        p = k % patients
        date = (SMALL_FIRST_DATE + dt.timedelta(days=k)).strftime("%Y%m%d")
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
        ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.file_meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
        ds.SpecificCharacterSet = "ISO_IR 100"
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.SOPClassUID = CTImageStorage
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
        ds.StudyDate = ds.SeriesDate = ds.ContentDate = date
        ds.StudyTime = ds.SeriesTime = ds.ContentTime = f"{8 + k % 10:02d}{k % 60:02d}00"
        ds.AccessionNumber = f"Q{k:07d}"
        ds.Modality = "CT"
        ds.Manufacturer = "SYNTHETIC"
        ds.ReferringPhysicianName = "REF^DOCTOR"
        ds.StudyDescription = "CT CHEST QUERY BENCH"
        ds.SeriesDescription = "AXIAL"
        ds.PatientName = f"{SURNAMES[p % len(SURNAMES)]}^PATIENT{p:02d}"
        ds.PatientID = f"QIDO{p:04d}"
        ds.PatientBirthDate = f"{1940 + p}0101"
        ds.PatientSex = "MF"[p % 2]
        ds.StudyInstanceUID = generate_uid()
        ds.SeriesInstanceUID = generate_uid()
        ds.FrameOfReferenceUID = generate_uid()
        ds.StudyID = str(k + 1)
        ds.SeriesNumber = 1
        ds.InstanceNumber = 1
        ds.ImagePositionPatient = [-32.0, -32.0, 0.0]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.Rows = ds.Columns = 64
        ds.PixelSpacing = [1.0, 1.0]
        ds.SliceThickness = "1"
        ds.BitsAllocated = ds.BitsStored = 16
        ds.HighBit = 15
        ds.PixelRepresentation = 1
        ds.RescaleIntercept, ds.RescaleSlope = -1024, 1
        ds.WindowCenter, ds.WindowWidth = 40, 400
        ds.PixelData = (rng.normal(1024, 40, (64, 64))).astype(np.int16).tobytes()
        path = out / f"Q{k:05d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        small.files.append(path)
    return small


def dir_size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def cpu_count() -> int:
    return os.cpu_count() or 1
