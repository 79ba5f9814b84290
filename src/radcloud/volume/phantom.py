"""Geometry phantoms: slices with bright spheres at known patient coordinates.

Tests and the benchmark draw markers where they want them (patient mm, LPS) and
check that every view finds them at the right pixel.  Slices can be tilted
(gantry tilt: the image planes lean while the table moves along z), unevenly
spaced, or oriented obliquely, to exercise every path of
:mod:`radcloud.volume.geometry`.  Pixels are 12-bit ``HU + 1024`` like the chest
phantom of :mod:`radcloud.testing.phantom`.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    CTImageStorage,
    ExplicitVRLittleEndian,
    MRImageStorage,
    generate_uid,
)

Point = tuple[float, float, float]


@dataclass(frozen=True)
class Marker:
    """A sphere of ``value`` (HU) and ``radius`` mm centred on patient point ``center``."""

    center: Point
    radius: float = 2.0
    value: float = 1000.0


def marker_series(
    markers: Sequence[Marker],
    *,
    rows: int = 64,
    columns: int = 64,
    pixel_spacing: tuple[float, float] = (1.0, 1.0),
    n_slices: int = 40,
    slice_gap: float = 1.0,
    positions: Sequence[float] | None = None,
    tilt_deg: float = 0.0,
    orientation: Sequence[float] = (1, 0, 0, 0, 1, 0),
    center: Point = (0.0, 0.0, 0.0),
    background: float = -1000.0,
    body_radius: float = 0.0,
    modality: str = "CT",
    study_uid: str | None = None,
    series_uid: str | None = None,
    patient_id: str = "GEOM0001",
    shuffle: bool = True,
) -> Iterator[Dataset]:
    """Yield the slices of one series (in a scrambled order unless ``shuffle`` is False).

    Slice ``k`` sits ``positions[k]`` (default ``k * slice_gap``) mm towards the
    feet from the first, moving along patient -z like a table; with
    ``tilt_deg`` the image planes lean by that angle about the patient x axis.
    ``center`` is the patient point at the middle of the first slice.
    ``body_radius`` > 0 adds a water cylinder (0 HU) along z.
    """
    study_uid = study_uid or generate_uid()
    series_uid = series_uid or generate_uid()
    frame_uid = generate_uid()
    zs = list(positions) if positions is not None else [k * slice_gap for k in range(n_slices)]
    row_dir = np.array(orientation[:3], np.float64)
    col_dir = np.array(orientation[3:], np.float64)
    if tilt_deg:
        t = math.radians(tilt_deg)
        rot = np.array([[1, 0, 0], [0, math.cos(t), -math.sin(t)], [0, math.sin(t), math.cos(t)]])
        row_dir, col_dir = rot @ row_dir, rot @ col_dir
    dy, dx = pixel_spacing
    first = (
        np.asarray(center, np.float64)
        - (columns - 1) / 2 * dx * row_dir
        - (rows - 1) / 2 * dy * col_dir
    )
    jj, ii = np.mgrid[0:rows, 0:columns].astype(np.float64)
    order = list(range(len(zs)))
    if shuffle:
        order = [int(i) for i in np.random.default_rng(len(zs)).permutation(len(zs))]
    for n, k in enumerate(order):
        ipp = first + np.array([0.0, 0.0, -zs[k]])
        pts = ipp + ii[..., None] * dx * row_dir + jj[..., None] * dy * col_dir
        hu = np.full((rows, columns), background, np.float64)
        if body_radius > 0:
            hu[np.hypot(pts[..., 0], pts[..., 1]) <= body_radius] = 0.0
        for m in markers:
            d = np.linalg.norm(pts - np.asarray(m.center), axis=-1)
            hu[d <= m.radius] = m.value
        yield _slice(
            hu, ipp, row_dir, col_dir, pixel_spacing, k, n, modality,
            study_uid, series_uid, frame_uid, patient_id,
        )  # fmt: skip


def _slice(
    hu: np.ndarray,
    ipp: np.ndarray,
    row_dir: np.ndarray,
    col_dir: np.ndarray,
    pixel_spacing: tuple[float, float],
    k: int,
    n: int,
    modality: str,
    study_uid: str,
    series_uid: str,
    frame_uid: str,
    patient_id: str,
) -> Dataset:
    sop_class = CTImageStorage if modality == "CT" else MRImageStorage
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = sop_class
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds.SOPClassUID = sop_class
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, series_uid
    ds.FrameOfReferenceUID = frame_uid
    ds.PatientName, ds.PatientID = "Geometry^Phantom", patient_id
    ds.PatientBirthDate, ds.PatientSex = "19700101", "O"
    ds.StudyDate, ds.StudyTime, ds.StudyID = "20260101", "120000", "1"
    ds.AccessionNumber, ds.ReferringPhysicianName = "", ""
    ds.Modality = modality
    ds.SeriesNumber, ds.InstanceNumber = 3, n + 1
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.PatientPosition = "HFS"
    ds.ImagePositionPatient = [round(float(c), 6) for c in ipp]
    ds.ImageOrientationPatient = [round(float(c), 8) for c in (*row_dir, *col_dir)]
    ds.PixelSpacing = list(pixel_spacing)
    ds.SliceThickness = 1.0
    ds.Rows, ds.Columns = hu.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    if modality == "CT":
        ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = -1024, 1, "HU"
        stored = np.clip(np.rint(hu + 1024), 0, 4095)
    else:  # a non-integer slope: the volume is kept as float32
        ds.RescaleIntercept, ds.RescaleSlope = -1024, 0.5
        stored = np.clip(np.rint((hu + 1024) * 2), 0, 4095)
    ds.WindowCenter, ds.WindowWidth = 300, 1500
    ds.PixelData = stored.astype(np.uint16).tobytes()
    return ds
