"""Deterministic synthetic DICOM data: a chest CT series and generic single instances.

Nothing offline ships a real chest CT *series*, so tests, benchmarks and the demo
command build one here.  The phantom is drawn in patient millimetres (LPS, head
first supine) so that geometry, HU values and organ positions are known exactly:

==============================  ====================================
structure                       value (HU)
==============================  ====================================
air outside the body            -1000
subcutaneous fat rim            -100
muscle / soft tissue            40
lungs                           -850, with branching vessels at 40
heart / aorta                   40 / 45, wrapped in fat (-90)
trachea and main bronchi        air (-1000) in a soft-tissue wall
liver dome (lung bases)         60
vertebra, ribs, sternum         700, cortex 1000
table                           150
==============================  ====================================

Gaussian noise (sigma 10 HU) is added inside the circular field of view; outside it
the stored value is ``PixelPaddingValue``.  Pixels are stored as ``HU + 1024`` in
12-bit unsigned samples with ``RescaleIntercept`` -1024, like most scanners.

Anatomy is a function of the *fraction* ``t`` of the way from lung apex (0) to
lung base (1), so a 5-slice series still looks like a chest; the image position
still steps by exactly ``slice_thickness`` millimetres.  The same ``seed`` gives
the same pixels; UIDs are fresh on every call unless passed in.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    UID,
    CTImageStorage,
    ExplicitVRLittleEndian,
    generate_uid,
)

__all__ = [
    "HU",
    "chest_ct_series",
    "chest_slice_hu",
    "make_dataset",
    "tiny_ct_series",
    "write_series",
]

#: Nominal HU of each phantom tissue, for tests that check values by organ.
HU: dict[str, float] = {
    "air": -1000.0,
    "fat": -100.0,
    "mediastinal_fat": -90.0,
    "soft": 40.0,
    "lung": -850.0,
    "vessel": 40.0,
    "heart": 40.0,
    "aorta": 45.0,
    "liver": 60.0,
    "bone": 700.0,
    "cortex": 1000.0,
    "csf": 15.0,
    "table": 150.0,
}

NOISE_SIGMA = 10.0
CHEST_LENGTH_MM = 250.0  # nominal apex-to-base length used for the vessel trees
MAX_VESSEL_SLAB_MM = 3.0  # thickest vessel-tree slab one slice shows
RESCALE_INTERCEPT = -1024
PADDING_VALUE = 0  # stored value outside the FOV; in-FOV values are clipped to >= 1
IMPLEMENTATION_VERSION = "RADCLOUD_PHANTOM"


# --------------------------------------------------------------------------- canvas


@dataclass
class _Canvas:
    """One slice being painted: HU image plus the mm coordinate of every column/row."""

    img: np.ndarray  # float32 HU, shape (rows, columns)
    xs: np.ndarray  # mm of each column centre (patient left = +x)
    ys: np.ndarray  # mm of each row centre (posterior = +y)
    spacing: float

    def _span(self, axis: np.ndarray, lo: float, hi: float) -> slice:
        origin = float(axis[0])
        a = max(0, int(math.floor((lo - origin) / self.spacing)))
        b = min(axis.size, int(math.ceil((hi - origin) / self.spacing)) + 1)
        return slice(a, max(a, b))

    def ellipse(
        self, cx: float, cy: float, ax: float, ay: float, angle: float = 0.0
    ) -> tuple[slice, slice, np.ndarray]:
        """Boolean mask of an ellipse, computed only inside its bounding box."""
        reach = max(ax, ay)
        rs = self._span(self.ys, cy - reach, cy + reach)
        cs = self._span(self.xs, cx - reach, cx + reach)
        dx = (self.xs[cs] - cx)[None, :]
        dy = (self.ys[rs] - cy)[:, None]
        if angle:
            c, s = math.cos(angle), math.sin(angle)
            dx, dy = c * dx + s * dy, -s * dx + c * dy
        mask = (dx / ax) ** 2 + (dy / ay) ** 2 <= 1.0
        return rs, cs, mask

    def fill(
        self, value: float, cx: float, cy: float, ax: float, ay: float, angle: float = 0.0
    ) -> None:
        """Paint an ellipse with a constant HU value."""
        if ax <= 0 or ay <= 0:
            return
        rs, cs, mask = self.ellipse(cx, cy, ax, ay, angle)
        self.img[rs, cs][mask] = value

    def ring(
        self, inner: float, outer: float, cx: float, cy: float, ax: float, ay: float, t: float
    ) -> None:
        """Paint a filled ellipse ``outer`` with a shell of thickness ``t`` mm."""
        self.fill(outer, cx, cy, ax, ay)
        self.fill(inner, cx, cy, ax - t, ay - t)


# --------------------------------------------------------------------- vessel trees


@dataclass(frozen=True)
class _VesselTree:
    """Sample points along pulmonary vessel centre lines (x, y, z in mm) with radii."""

    x: np.ndarray
    y: np.ndarray
    z: np.ndarray
    r: np.ndarray


def _lung_samples(rng: np.random.Generator, side: float, n: int) -> np.ndarray:
    """``n`` points spread uniformly through one lung's volume (x, y, z mm)."""
    t = rng.uniform(0.0, 1.0, 4 * n)
    scale = np.array([_lung_scale(v) for v in t])
    keep = rng.uniform(0.0, 1.0, t.size) < scale**2  # more points where the lung is bigger
    t, scale = t[keep][:n], scale[keep][:n]
    ang = rng.uniform(0.0, 2 * math.pi, t.size)
    rad = np.sqrt(rng.uniform(0.0, 1.0, t.size)) * 0.95
    x = side * 70.0 + np.cos(ang) * rad * 50.0 * scale
    y = 5.0 + np.sin(ang) * rad * 74.0 * scale
    return np.stack([x, y, t * CHEST_LENGTH_MM], axis=1)


def _segment(start: np.ndarray, end: np.ndarray, radius: float) -> tuple[np.ndarray, np.ndarray]:
    """Points every ~third of a radius along a straight vessel piece."""
    length = float(np.linalg.norm(end - start))
    n = max(2, int(length / max(0.35 * radius, 0.6)) + 1)
    f = np.linspace(0.0, 1.0, n)[:, None]
    return start[None, :] * (1 - f) + end[None, :] * f, np.full(n, radius)


def _bisecting_tree(
    rng: np.random.Generator, root: np.ndarray, region: np.ndarray
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Grow a vessel tree that fills ``region`` by recursive bisection.

    Each branch heads for the centroid of the territory it feeds and forks part
    way there; the territory is halved across (roughly) its widest axis and each
    half gets a child branch.  Radii
    follow Murray's law (r^3 proportional to the territory), so vessels taper
    from ~6 mm at the hilum to ~0.6 mm at the periphery.
    """
    leaf = 3
    r_leaf = 0.6
    pts: list[np.ndarray] = []
    rads: list[np.ndarray] = []
    stack = [(root, region)]
    while stack:
        start, terr = stack.pop()
        centroid = terr.mean(axis=0) + rng.normal(0.0, 1.0, 3)
        is_leaf = terr.shape[0] <= leaf
        # bifurcate part-way, so that children leave at acute angles
        target = centroid if is_leaf else start + (centroid - start) * rng.uniform(0.45, 0.65)
        radius = r_leaf * (terr.shape[0] / leaf) ** (1 / 3)
        p, r = _segment(start, target, radius)
        pts.append(p)
        rads.append(r)
        if is_leaf:
            continue
        split = terr.std(axis=0) * rng.normal(1.0, 0.6, 3)  # widest axis, tilted at random
        order = np.argsort((terr - centroid) @ split, kind="stable")
        half = terr.shape[0] // 2
        stack.append((target, terr[order[:half]]))
        stack.append((target, terr[order[half:]]))
    return pts, rads


@functools.lru_cache(maxsize=8)
def _vessel_tree(seed: int) -> _VesselTree:
    """Pulmonary vessel trees of both lungs, rooted at the hila, from ``seed``.

    Cached (read-only arrays), so many small test series share one ~0.3 s build.
    """
    rng = np.random.default_rng([seed, 7919])
    pts: list[np.ndarray] = []
    rads: list[np.ndarray] = []
    for side in (-1.0, 1.0):
        hilum = np.array([side * 40.0, 8.0, 0.48 * CHEST_LENGTH_MM])
        p, r = _bisecting_tree(rng, hilum, _lung_samples(rng, side, 4000))
        pts += p
        rads += r
    allp = np.concatenate(pts)
    arrays = [allp[:, 0].copy(), allp[:, 1].copy(), allp[:, 2].copy(), np.concatenate(rads)]
    for a in arrays:
        a.flags.writeable = False
    return _VesselTree(*arrays)


def _draw_vessels(cv: _Canvas, tree: _VesselTree, z: float, slab: float, lung: np.ndarray) -> None:
    """Paint the vessels inside the slab ``z +/- slab/2`` (soft-edged), only inside ``lung``.

    The slab is the slice's share of the nominal chest length (at most
    ``MAX_VESSEL_SLAB_MM``), so vessels stay continuous from slice to slice
    without short series turning into a thick-slab MIP.
    """
    dz = np.maximum(np.abs(tree.z - z) - slab / 2.0, 0.0)
    sel = dz < tree.r
    if not sel.any():
        return
    rr = np.sqrt(tree.r[sel] ** 2 - dz[sel] ** 2) / cv.spacing  # in-plane radius, pixels
    pc = (tree.x[sel] - cv.xs[0]) / cv.spacing
    pr = (tree.y[sel] - cv.ys[0]) / cv.spacing
    alpha = np.zeros(cv.img.shape, dtype=np.float32)
    rows, cols = cv.img.shape
    bucket = np.ceil(rr + 0.5).astype(np.int64)
    for k in np.unique(bucket):
        m = bucket == k
        off = np.arange(-k, k + 1)
        oy, ox = np.meshgrid(off, off, indexing="ij")
        cr = np.rint(pr[m]).astype(np.int64)[:, None, None] + oy[None]
        cc = np.rint(pc[m]).astype(np.int64)[:, None, None] + ox[None]
        d = np.hypot(cr - pr[m][:, None, None], cc - pc[m][:, None, None])
        a = np.clip(rr[m][:, None, None] - d + 0.5, 0.0, 1.0).astype(np.float32)
        ok = (cr >= 0) & (cr < rows) & (cc >= 0) & (cc < cols) & (a > 0)
        np.maximum.at(alpha, (cr[ok], cc[ok]), a[ok])
    alpha *= lung
    cv.img += alpha * (HU["vessel"] - cv.img)


# ------------------------------------------------------------------------- anatomy


def _lung_scale(t: float) -> float:
    """Relative lung cross-section size from apex (small) to mid chest to base."""
    grow = 0.3 + 0.7 * math.sin(min(t / 0.6, 1.0) * math.pi / 2)
    return grow if t < 0.8 else grow - (t - 0.8) / 0.2 * 0.35


def _paint_body(cv: _Canvas, t: float) -> tuple[float, float, float]:
    """Table, fat rim and soft tissue; returns the body ellipse (cy, ax, ay)."""
    cy, ax, ay = 5.0, 150.0 * (0.86 + 0.14 * t), 110.0 * (0.92 + 0.08 * t)
    table_top = cy + ay + 14.0
    rs = cv._span(cv.ys, table_top, table_top + 7.0)
    cs = cv._span(cv.xs, -200.0, 200.0)
    cv.img[rs, cs] = HU["table"]
    cv.ring(HU["soft"], HU["fat"], 0.0, cy, ax, ay, 12.0)
    return cy, ax, ay


def _paint_lungs(cv: _Canvas, t: float) -> np.ndarray:
    """Both lungs at -850 HU; returns the float lung mask (1 inside)."""
    s = _lung_scale(t)
    lung = np.zeros(cv.img.shape, dtype=np.float32)
    for side in (-1.0, 1.0):
        base_shrink = 0.85 if (side < 0 and t > 0.8) else 1.0  # liver dome on the right
        rs, cs, m = cv.ellipse(side * 70.0, 5.0, 50.0 * s, 74.0 * s * base_shrink)
        lung[rs, cs][m] = 1.0
    cv.img[lung > 0] = HU["lung"]
    return lung


def _paint_airways(cv: _Canvas, t: float, lung: np.ndarray) -> None:
    """Trachea above the carina, main bronchi just below it."""
    if t < 0.42:
        cv.fill(HU["soft"], 0.0, -12.0, 11.0, 11.0)
        cv.fill(HU["air"], 0.0, -12.0, 8.5, 8.5)
    elif t < 0.55:
        f = (t - 0.42) / 0.13
        for side in (-1.0, 1.0):
            x = side * (8.0 + 30.0 * f)
            cv.fill(HU["soft"], x, -10.0 + 16.0 * f, 7.5, 7.5)
            cv.fill(HU["air"], x, -10.0 + 16.0 * f, 5.5, 5.5)


def _paint_mediastinum(cv: _Canvas, t: float, lung: np.ndarray) -> None:
    """Heart, aorta (ascending, arch, descending) and their fat; cuts into the lungs."""
    if t < 0.42:
        cv.fill(HU["mediastinal_fat"], 0.0, -35.0, 22.0, 32.0)
    if 0.18 <= t < 0.3:
        cv.fill(HU["mediastinal_fat"], 14.0, 10.0, 20.0, 46.0, 0.2)
        cv.fill(HU["aorta"], 14.0, 10.0, 15.0, 41.0, 0.2)
    if 0.3 <= t < 0.62:
        cv.fill(HU["mediastinal_fat"], 6.0, -28.0, 18.0, 18.0)
        cv.fill(HU["aorta"], 6.0, -28.0, 15.0, 15.0)
    if t >= 0.25:
        cv.fill(HU["mediastinal_fat"], 24.0, 42.0, 15.0, 15.0)
        cv.fill(HU["aorta"], 24.0, 42.0, 12.0, 12.0)
    h = math.sin(math.pi * (t - 0.45) / 0.62) if 0.45 < t < 1.07 else 0.0
    if h > 0.05:
        cv.fill(HU["mediastinal_fat"], 18.0, -32.0, 62.0 * h, 50.0 * h, 0.5)
        cv.fill(HU["heart"], 18.0, -32.0, 58.0 * h, 46.0 * h, 0.5)
        rs, cs, m = cv.ellipse(18.0, -32.0, 62.0 * h, 50.0 * h, 0.5)
        lung[rs, cs][m] = 0.0


def _paint_abdomen(cv: _Canvas, t: float, lung: np.ndarray) -> None:
    """Liver dome rising into the right lung base."""
    if t > 0.78:
        f = (t - 0.78) / 0.22
        rs, cs, m = cv.ellipse(-62.0, 12.0, 70.0 * f, 80.0 * f)
        cv.img[rs, cs][m] = HU["liver"]
        lung[rs, cs][m] = 0.0


def _paint_bones(cv: _Canvas, t: float, z_mm: float, body: tuple[float, float, float]) -> None:
    """Vertebra with canal and posterior arch, sternum, and ribs that come and go with z."""
    cv.ring(HU["bone"], HU["cortex"], 0.0, 58.0, 21.0, 17.0, 2.5)
    cv.fill(HU["bone"], 0.0, 84.0, 20.0, 12.0)
    cv.fill(HU["bone"], 0.0, 98.0, 4.0, 9.0)
    cv.fill(HU["csf"], 0.0, 80.0, 8.0, 7.0)
    if t < 0.85:
        cv.ring(HU["bone"], HU["cortex"], 0.0, -88.0, 14.0, 6.0, 1.5)
    cy, ax, ay = body
    for side in (-1.0, 1.0):
        for i in range(9):
            ang = math.radians(25.0 + i * 16.0)  # from the spine round to the front
            phase = (z_mm / 26.0 + i * 0.11) % 1.0
            if phase > 0.45:
                continue
            x = side * (ax - 17.0) * math.sin(ang)
            y = cy + (ay - 17.0) * math.cos(ang)
            cv.ring(HU["bone"], HU["cortex"], x, y, 5.0, 7.0, 1.5)


def chest_slice_hu(
    t: float,
    z_mm: float,
    rows: int,
    columns: int,
    pixel_spacing: float,
    tree: _VesselTree,
    rng: np.random.Generator,
    slab_mm: float = 1.25,
) -> np.ndarray:
    """One axial chest slice in HU (float32), before FOV padding.

    ``t`` is the fraction from apex to base (anatomy), ``z_mm`` the vessel-tree
    height and ``slab_mm`` the tree thickness this slice covers; ``tree`` is the
    series' vessel tree.
    """
    xs = (np.arange(columns, dtype=np.float32) - (columns - 1) / 2.0) * pixel_spacing
    ys = (np.arange(rows, dtype=np.float32) - (rows - 1) / 2.0) * pixel_spacing
    cv = _Canvas(np.full((rows, columns), HU["air"], dtype=np.float32), xs, ys, pixel_spacing)
    body = _paint_body(cv, t)
    lung = _paint_lungs(cv, t)
    _paint_mediastinum(cv, t, lung)
    _paint_abdomen(cv, t, lung)
    _paint_airways(cv, t, lung)
    _draw_vessels(cv, tree, z_mm, slab_mm, lung)
    _paint_bones(cv, t, z_mm, body)
    cv.img += rng.standard_normal(cv.img.shape, dtype=np.float32) * np.float32(NOISE_SIGMA)
    return cv.img


def _fov_mask(rows: int, columns: int) -> np.ndarray:
    """True inside the reconstruction circle inscribed in the image."""
    r = min(rows, columns) / 2.0
    yy = np.arange(rows, dtype=np.float32)[:, None] - (rows - 1) / 2.0
    xx = np.arange(columns, dtype=np.float32)[None, :] - (columns - 1) / 2.0
    return (xx * xx + yy * yy) <= r * r


def _to_stored(hu: np.ndarray, fov: np.ndarray) -> np.ndarray:
    """HU -> 12-bit stored values (HU + 1024), padding outside the FOV."""
    stored = np.clip(np.rint(hu) - RESCALE_INTERCEPT, 1, 4095).astype(np.uint16)
    stored[~fov] = PADDING_VALUE
    return stored


# ------------------------------------------------------------------------- datasets


def _needs_utf8(*values: str) -> bool:
    return any(not v.isascii() for v in values)


def _file_meta(sop_class: str, sop_instance: str, ts: str) -> FileMetaDataset:
    """Part-10 file meta information for one instance."""
    meta = FileMetaDataset()
    meta.FileMetaInformationVersion = b"\x00\x01"
    meta.MediaStorageSOPClassUID = UID(sop_class)
    meta.MediaStorageSOPInstanceUID = UID(sop_instance)
    meta.TransferSyntaxUID = UID(ts)
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    meta.ImplementationVersionName = IMPLEMENTATION_VERSION
    return meta


def _patient_study(
    ds: Dataset,
    *,
    patient_name: str,
    patient_id: str,
    study_uid: str,
    study_date: str,
    accession_number: str,
    specific_character_set: str | None,
) -> None:
    """Patient and General Study modules (PS3.3 C.7.1.1, C.7.2.1)."""
    charset = specific_character_set
    if charset is None and _needs_utf8(patient_name, patient_id, accession_number):
        charset = "ISO_IR 192"
    if charset:
        ds.SpecificCharacterSet = charset
    ds.PatientName = patient_name
    ds.PatientID = patient_id
    ds.PatientBirthDate = "19700101"
    ds.PatientSex = "O"
    ds.StudyInstanceUID = study_uid
    ds.StudyDate = study_date
    ds.StudyTime = "090000"
    ds.StudyID = "1"
    ds.AccessionNumber = accession_number
    ds.ReferringPhysicianName = ""
    ds.StudyDescription = "CT CHEST (phantom)"


def _ct_dataset(
    stored: np.ndarray,
    k: int,
    z: float,
    *,
    series_uid: str,
    frame_uid: str,
    study_date: str,
    slice_thickness: float,
    pixel_spacing: float,
) -> Dataset:
    """CT Image Storage instance (PS3.3 A.3) for slice ``k`` at height ``z``."""
    rows, columns = stored.shape
    sop_uid = generate_uid()
    ds = Dataset()
    ds.file_meta = _file_meta(CTImageStorage, sop_uid, ExplicitVRLittleEndian)
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = sop_uid
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.Modality = "CT"
    ds.SeriesInstanceUID = series_uid
    ds.SeriesNumber = 2
    ds.SeriesDescription = "Chest 1.25mm phantom"
    ds.SeriesDate = ds.ContentDate = ds.AcquisitionDate = study_date
    ds.SeriesTime = "090100"
    ds.ContentTime = ds.AcquisitionTime = f"0901{k % 60:02d}"
    ds.BodyPartExamined = "CHEST"
    ds.PatientPosition = "HFS"
    ds.Manufacturer = "radcloud phantom"
    ds.ManufacturerModelName = "chest_ct_series"
    ds.InstitutionName = "radcloud"
    ds.FrameOfReferenceUID = frame_uid
    ds.PositionReferenceIndicator = ""
    ds.InstanceNumber = k + 1
    ds.AcquisitionNumber = 1
    x0 = -(columns - 1) / 2.0 * pixel_spacing
    y0 = -(rows - 1) / 2.0 * pixel_spacing
    ds.ImagePositionPatient = [round(x0, 4), round(y0, 4), round(z, 4)]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.SliceLocation = round(z, 4)
    ds.SliceThickness = slice_thickness
    ds.PixelSpacing = [pixel_spacing, pixel_spacing]
    ds.KVP = 120
    ds.ConvolutionKernel = "STANDARD"
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = rows, columns
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 12, 11
    ds.PixelRepresentation = 0
    ds.PixelPaddingValue = PADDING_VALUE
    ds.RescaleIntercept = RESCALE_INTERCEPT
    ds.RescaleSlope = 1
    ds.RescaleType = "HU"
    ds.WindowCenter = [40, -600]
    ds.WindowWidth = [400, 1500]
    ds.WindowCenterWidthExplanation = ["MEDIASTINUM", "LUNG"]
    ds.LossyImageCompression = "00"
    ds.PixelData = stored.tobytes()
    ds["PixelData"].VR = "OW"
    return ds


def chest_ct_series(
    n_slices: int = 60,
    rows: int = 512,
    columns: int = 512,
    seed: int = 0,
    *,
    patient_name: str = "Demo^Chest",
    patient_id: str = "DEMO0001",
    study_uid: str | None = None,
    series_uid: str | None = None,
    study_date: str = "20260101",
    slice_thickness: float = 1.25,
    pixel_spacing: float = 0.7,
    accession_number: str = "",
    specific_character_set: str | None = None,
    transfer_syntax: str = ExplicitVRLittleEndian,
) -> Iterator[Dataset]:
    """Yield a synthetic axial chest CT series, apex first, one Part-10 dataset per slice.

    Slice ``k`` sits at z = -k * ``slice_thickness`` (moving towards the feet) and
    shows anatomy at fraction ``(k + 0.5) / n_slices`` from lung apex to base.
    A non-ASCII ``patient_name`` switches ``SpecificCharacterSet`` to ISO_IR 192
    unless a character set is given.  ``transfer_syntax`` other than Explicit VR
    Little Endian is produced with :func:`radcloud.dicom.codecs.transcode`.
    """
    if n_slices < 1 or rows < 8 or columns < 8:
        raise ValueError("need at least 1 slice of at least 8x8 pixels")
    study_uid = study_uid or generate_uid()
    series_uid = series_uid or generate_uid()
    frame_uid = generate_uid()
    tree = _vessel_tree(seed)
    slab = min(CHEST_LENGTH_MM / n_slices, MAX_VESSEL_SLAB_MM)
    fov = _fov_mask(rows, columns)
    for k in range(n_slices):
        t = (k + 0.5) / n_slices
        z = -k * slice_thickness
        rng = np.random.default_rng([seed, k])
        hu = chest_slice_hu(t, t * CHEST_LENGTH_MM, rows, columns, pixel_spacing, tree, rng, slab)
        ds = _ct_dataset(
            _to_stored(hu, fov),
            k,
            z,
            series_uid=series_uid,
            frame_uid=frame_uid,
            study_date=study_date,
            slice_thickness=slice_thickness,
            pixel_spacing=pixel_spacing,
        )
        _patient_study(
            ds,
            patient_name=patient_name,
            patient_id=patient_id,
            study_uid=study_uid,
            study_date=study_date,
            accession_number=accession_number,
            specific_character_set=specific_character_set,
        )
        yield _in_syntax(ds, transfer_syntax)


def _in_syntax(ds: Dataset, ts: str) -> Dataset:
    """Return ``ds`` re-encoded in ``ts`` when that is not the native default."""
    if ts == ExplicitVRLittleEndian:
        return ds
    from radcloud.dicom.codecs import transcode  # lazy: keeps the phantom import light

    return transcode(ds, ts)


def tiny_ct_series(n: int = 5, size: int = 32, seed: int = 0, **kw: Any) -> Iterator[Dataset]:
    """A few small slices for fast tests; pixel spacing widens so the whole chest fits."""
    kw.setdefault("pixel_spacing", round(0.7 * 512 / size, 4))
    return chest_ct_series(n_slices=n, rows=size, columns=size, seed=seed, **kw)


def write_series(folder: str | Path, **kw: Any) -> list[Path]:
    """Write :func:`chest_ct_series` (``**kw`` passed through) as Part-10 files in ``folder``."""
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []
    for ds in chest_ct_series(**kw):
        path = out / f"CT{int(ds.InstanceNumber):05d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


# ------------------------------------------------------------ generic test instances

_MODALITY_DEFAULTS: dict[str, dict[str, Any]] = {
    "CT": {"PhotometricInterpretation": "MONOCHROME2", "BitsStored": 16, "PixelRepresentation": 1},
    "MR": {"PhotometricInterpretation": "MONOCHROME2", "BitsStored": 12, "PixelRepresentation": 0},
    "CR": {"PhotometricInterpretation": "MONOCHROME1", "BitsStored": 12, "PixelRepresentation": 0},
    "DX": {"PhotometricInterpretation": "MONOCHROME1", "BitsStored": 12, "PixelRepresentation": 0},
    "MG": {"PhotometricInterpretation": "MONOCHROME2", "BitsStored": 12, "PixelRepresentation": 0},
    "US": {"PhotometricInterpretation": "RGB", "BitsStored": 8, "PixelRepresentation": 0},
    "XC": {"PhotometricInterpretation": "RGB", "BitsStored": 8, "PixelRepresentation": 0},
}
_GENERIC = {"PhotometricInterpretation": "MONOCHROME2", "BitsStored": 8, "PixelRepresentation": 0}


def _test_pattern(rows: int, columns: int, bits: int, signed: bool, seed: int) -> np.ndarray:
    """A gradient with a bright disc in the upper left quadrant and mild noise.

    Stored values rise left to right, so a MONOCHROME1 rendering is visibly inverted.
    """
    rng = np.random.default_rng(seed)
    hi = (1 << (bits - 1)) - 1 if signed else (1 << bits) - 1
    lo = -(1 << (bits - 1)) if signed else 0
    span = hi - lo
    ramp = np.linspace(0.1, 0.7, columns)[None, :] * np.ones((rows, 1))
    yy, xx = np.mgrid[0:rows, 0:columns]
    disc = (yy - rows * 0.3) ** 2 + (xx - columns * 0.3) ** 2 <= (min(rows, columns) * 0.15) ** 2
    ramp[disc] = 0.95
    ramp += rng.normal(0, 0.01, ramp.shape)
    return np.clip(lo + ramp * span, lo, hi).round()


def _palette(ds: Dataset) -> None:
    """An 8-bit 'hot iron' palette (PS3.3 C.7.6.3.1.5), 256 entries of 16 bits."""
    i = np.arange(256, dtype=np.float64) / 255.0
    for name, curve in (
        ("Red", np.clip(i * 3, 0, 1)),
        ("Green", np.clip(i * 3 - 1, 0, 1)),
        ("Blue", np.clip(i * 3 - 2, 0, 1)),
    ):
        setattr(ds, f"{name}PaletteColorLookupTableDescriptor", [256, 0, 16])
        setattr(ds, f"{name}PaletteColorLookupTableData", (curve * 65535).astype("<u2").tobytes())


def _is_color(pi: str) -> bool:
    return pi in ("RGB", "YBR_FULL")


def _geometry(pixels: np.ndarray | None, fmt: Mapping[str, Any]) -> tuple[int, int, int]:
    """(rows, columns, frames) from explicit attributes, else the array, else 64x64x1."""
    if pixels is None:
        shape: tuple[int, ...] = (int(fmt.get("NumberOfFrames", 1)), 64, 64)
    else:
        color = _is_color(str(fmt["PhotometricInterpretation"]))
        shape = pixels.shape[:-1] if color else pixels.shape
        shape = shape if len(shape) == 3 else (1, *shape)
    return int(fmt.get("Rows", shape[1])), int(fmt.get("Columns", shape[2])), shape[0]


def _pixels_for(ds: Dataset, pixels: np.ndarray | None, seed: int) -> np.ndarray:
    """The pixel array of a generic instance: given, or a test pattern fitting its header."""
    if pixels is None:
        base = _test_pattern(ds.Rows, ds.Columns, ds.BitsStored, ds.PixelRepresentation == 1, seed)
        if ds.SamplesPerPixel == 3:
            base = np.stack([base, base[:, ::-1], base[::-1]], axis=-1)
        frames = int(ds.get("NumberOfFrames", 1))
        pixels = np.stack([np.roll(base, 3 * f, axis=1) for f in range(frames)])
    dtype = np.dtype(f"<{'i' if ds.PixelRepresentation else 'u'}{ds.BitsAllocated // 8}")
    return np.ascontiguousarray(pixels, dtype=dtype)


def make_dataset(
    sop_class_uid: str = pydicom.uid.SecondaryCaptureImageStorage,
    modality: str = "OT",
    *,
    pixels: np.ndarray | None = None,
    seed: int = 0,
    transfer_syntax: str = ExplicitVRLittleEndian,
    **attrs: Any,
) -> Dataset:
    """A single complete image instance of any SOP class, for tests.

    Pixel format defaults follow the modality (MR: 12-bit MONOCHROME2, CR/DX:
    12-bit MONOCHROME1, US: 8-bit RGB, CT: signed 16-bit, else 8-bit
    MONOCHROME2); ``attrs`` (DICOM keywords) override anything, e.g.
    ``PhotometricInterpretation="PALETTE COLOR"``, ``NumberOfFrames=3``,
    ``Rows=48``.  Without ``pixels`` a deterministic test pattern is drawn whose
    stored values increase from left to right; ``pixels`` is (rows, cols[, 3])
    or (frames, rows, cols[, 3]).
    """
    fmt = {**_MODALITY_DEFAULTS.get(modality, _GENERIC), **attrs}
    sop_uid = str(attrs.get("SOPInstanceUID") or generate_uid())
    ds = Dataset()
    ds.file_meta = _file_meta(sop_class_uid, sop_uid, ExplicitVRLittleEndian)
    _patient_study(
        ds,
        patient_name=str(attrs.get("PatientName", "Test^Patient")),
        patient_id=str(attrs.get("PatientID", "TEST0001")),
        study_uid=str(attrs.get("StudyInstanceUID") or generate_uid()),
        study_date=str(attrs.get("StudyDate", "20260101")),
        accession_number=str(attrs.get("AccessionNumber", "")),
        specific_character_set=attrs.get("SpecificCharacterSet"),
    )
    ds.SOPClassUID = sop_class_uid
    ds.SOPInstanceUID = sop_uid
    ds.Modality = modality
    ds.SeriesInstanceUID = generate_uid()
    ds.SeriesNumber = 1
    ds.InstanceNumber = 1
    ds.Manufacturer = "radcloud phantom"
    ds.ContentDate = "20260101"
    ds.ContentTime = "090000"
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.PatientOrientation = ""
    ds.Rows, ds.Columns, frames = _geometry(pixels, fmt)
    if frames > 1:
        ds.NumberOfFrames = frames
    _apply_format(ds, fmt)
    for key, value in attrs.items():
        setattr(ds, key, value)
    arr = _pixels_for(ds, pixels, seed)
    ds.PixelData = arr.tobytes()
    ds["PixelData"].VR = "OW" if ds.BitsAllocated > 8 else "OB"
    return _in_syntax(ds, transfer_syntax)


def _apply_format(ds: Dataset, fmt: Mapping[str, Any]) -> None:
    """Image Pixel module (PS3.3 C.7.6.3) from a photometric/bit-depth description."""
    pi = str(fmt["PhotometricInterpretation"])
    bits = int(fmt["BitsStored"])
    ds.PhotometricInterpretation = pi
    ds.SamplesPerPixel = 3 if _is_color(pi) else 1
    if ds.SamplesPerPixel == 3:
        ds.PlanarConfiguration = 0
    ds.BitsAllocated = 8 if bits <= 8 else (16 if bits <= 16 else 32)
    ds.BitsStored = bits
    ds.HighBit = bits - 1
    ds.PixelRepresentation = int(fmt["PixelRepresentation"])
    if pi == "PALETTE COLOR":
        _palette(ds)
    if pi.startswith("MONOCHROME") and bits > 8:
        ds.WindowCenter = 0 if ds.PixelRepresentation else 1 << (bits - 1)
        ds.WindowWidth = 1 << bits
    if str(ds.Modality) == "CT":
        ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = 0, 1, "HU"
