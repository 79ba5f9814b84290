"""Assemble a :class:`Volume` (modality values on a patient-placed grid) from a stored series.

Metadata comes from the index (one query), pixels from one verified frame read
per instance, decoded on a small thread pool.  Values are kept as ``int16`` when
every slice's rescale is an integer shift (CT), ``float32`` otherwise, so a
512x512x500 CT holds 250 MiB.  Slices with uneven gaps are resampled onto the
uniform grid :func:`~radcloud.volume.geometry.stack_geometry` chose.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson
from pydicom.dataset import Dataset

from radcloud.archive import render_service, retrieve
from radcloud.archive.retrieve import InstanceRef
from radcloud.archive.service import Archive
from radcloud.auth.access import Principal
from radcloud.dicom.pixel_info import PixelInfo
from radcloud.render import pixels
from radcloud.volume.geometry import Geometry, GeometryError, SliceGeometry, stack_geometry

#: Patient / study / frame-of-reference elements copied into derived objects (DICOM JSON).
HEADER_TAGS = (
    "00080005",  # SpecificCharacterSet
    "00080020",  # StudyDate
    "00080030",  # StudyTime
    "00080050",  # AccessionNumber
    "00080090",  # ReferringPhysicianName
    "00081030",  # StudyDescription
    "00100010",  # PatientName
    "00100020",  # PatientID
    "00100030",  # PatientBirthDate
    "00100040",  # PatientSex
    "00101010",  # PatientAge
    "0020000D",  # StudyInstanceUID
    "00200010",  # StudyID
    "00200052",  # FrameOfReferenceUID
    "00185100",  # PatientPosition
    "00080060",  # Modality
    "00080016",  # SOPClassUID
    "0020000E",  # SeriesInstanceUID
    "00200011",  # SeriesNumber
    "0008103E",  # SeriesDescription
    "00180015",  # BodyPartExamined
)


@dataclass
class Volume:
    """A series as one 3D array of modality values (HU for CT) with its geometry."""

    data: np.ndarray  # (k, j, i)
    geometry: Geometry
    study_uid: str
    series_uid: str
    modality: str
    window: tuple[float, float]  # default (center, width)
    sources: list[tuple[str, str]]  # (SOP Class, SOP Instance UID) of each slice, stack order
    source_positions: np.ndarray  # distance (mm) of each source slice from the first
    header: dict[str, Any]  # DICOM JSON of HEADER_TAGS from the first slice
    key: str = ""
    build_seconds: float = 0.0
    cache: dict[str, Any] = field(default_factory=dict)  # derived data (VR proxy), by name

    @property
    def nbytes(self) -> int:
        extra = sum(getattr(v, "nbytes", 0) for v in self.cache.values())
        return int(self.data.nbytes) + int(extra)

    @property
    def value_range(self) -> tuple[float, float]:
        """(min, max) of the values, computed once (a full pass over the data)."""
        found = self.cache.get("value_range")
        if found is None:
            found = self.cache["value_range"] = (float(self.data.min()), float(self.data.max()))
        return found

    def sources_between(self, k_low: float, k_high: float) -> list[tuple[str, str]]:
        """Source slices whose position lies within volume slices ``k_low``..``k_high``."""
        step = float(self.geometry.spacing[2])
        lo, hi = sorted((k_low * step, k_high * step))
        half = step / 2 + 1e-6
        found = [
            s
            for s, p in zip(self.sources, self.source_positions, strict=True)
            if lo - half <= p <= hi + half
        ]
        if not found:  # a plane between two slices: the nearest one
            nearest = int(np.argmin(np.abs(self.source_positions - (lo + hi) / 2)))
            found = [self.sources[nearest]]
        return found


def series_fingerprint(refs: Sequence[InstanceRef]) -> str:
    """Identifies the series' current content: changes when an instance is added or replaced."""
    return f"{refs[0].series_uid}:{len(refs)}:{max(r.id for r in refs)}:{refs[-1].sha256[:12]}"


def load_metadata(
    archive: Archive, refs: Sequence[InstanceRef], *, principal: Principal
) -> list[dict[str, Any]]:
    """The stored DICOM JSON of each of ``refs`` (one query), in the same order."""
    text = retrieve.metadata(archive, refs[0].study_uid, refs[0].series_uid, principal=principal)
    by_uid = {pixels.first(m, "00080018"): m for m in orjson.loads(text)}
    return [by_uid[r.sop_uid] for r in refs]


def _slice_geometry(meta: dict[str, Any]) -> SliceGeometry:
    position = pixels.values(meta, "00200032")
    orientation = pixels.values(meta, "00200037")
    spacing = pixels.values(meta, "00280030")
    if len(position) != 3 or len(orientation) != 6 or len(spacing) != 2:
        raise GeometryError(
            "an image lacks ImagePositionPatient, ImageOrientationPatient or PixelSpacing, "
            "so it cannot be placed in 3D"
        )
    return SliceGeometry(
        position=tuple(float(v) for v in position),  # type: ignore[arg-type]
        orientation=tuple(float(v) for v in orientation),
        spacing=(float(spacing[0]), float(spacing[1])),
        rows=int(pixels.first(meta, "00280010", 0)),
        columns=int(pixels.first(meta, "00280011", 0)),
    )


def _rescale(meta: dict[str, Any]) -> tuple[float, float]:
    return float(pixels.first(meta, "00281053", 1.0)), float(pixels.first(meta, "00281052", 0.0))


def _default_window(meta: dict[str, Any], data: np.ndarray) -> tuple[float, float]:
    c, w = pixels.first(meta, "00281050"), pixels.first(meta, "00281051")
    if c is not None and w is not None and float(w) > 0:
        return float(c), float(w)
    lo, hi = float(data.min()), float(data.max())
    return (lo + hi) / 2, max(hi - lo, 1.0)


def build_volume(
    archive: Archive,
    refs: Sequence[InstanceRef],
    metas: Sequence[dict[str, Any]],
    *,
    decode_threads: int = 2,
) -> Volume:
    """Decode and stack the slices of one stored series (``refs`` with their ``metas``)."""

    def read(k: int) -> np.ndarray:
        ref, info = refs[k], PixelInfo.of(metas[k])
        raw = retrieve.frame(archive, ref, 1)
        return render_service.decode(raw, ref.transfer_syntax_uid, info)

    for ref in refs:
        if ref.number_of_frames != 1:
            raise GeometryError(
                "multi-frame images are not supported in 3D yet; use a series of single slices"
            )
    vol = assemble(
        metas, read, sources=[(r.sop_class_uid, r.sop_uid) for r in refs],
        decode_threads=decode_threads,
    )  # fmt: skip
    vol.key = series_fingerprint(refs)
    return vol


def from_datasets(datasets: Sequence[Dataset]) -> Volume:
    """A volume straight from in-memory slices (tests, tools): no archive involved."""
    metas = [ds.to_json_dict(bulk_data_threshold=1, bulk_data_element_handler=lambda _: "")
             for ds in datasets]  # fmt: skip
    for m in metas:
        m.setdefault("7FE00010", {"vr": "OW"})

    def read(k: int) -> np.ndarray:
        return np.asarray(datasets[k].pixel_array)

    return assemble(metas, read, sources=[(str(d.SOPClassUID), str(d.SOPInstanceUID))
                                          for d in datasets])  # fmt: skip


def assemble(
    metas: Sequence[dict[str, Any]],
    read: Callable[[int], np.ndarray],
    *,
    sources: Sequence[tuple[str, str]],
    decode_threads: int = 2,
) -> Volume:
    """Order, decode (``read(k)`` gives slice ``k``'s stored pixels), rescale and stack."""
    start = time.perf_counter()
    keep = [k for k, m in enumerate(metas) if "7FE00010" in m]
    if not keep:
        raise GeometryError("the series has no images")
    for k in keep:
        if int(pixels.first(metas[k], "00280002", 1)) != 1:
            raise GeometryError("colour images cannot be shown in 3D")
    stack = stack_geometry([_slice_geometry(metas[k]) for k in keep])
    order = [keep[i] for i in stack.order]
    ordered = [metas[k] for k in order]
    rescales = [_rescale(m) for m in ordered]
    exact = all(s == 1.0 and float(b).is_integer() for s, b in rescales)
    dtype = np.int16 if exact else np.float32
    rows, columns = stack.geometry.shape[1:]
    slices = np.empty((len(order), rows, columns), dtype)
    modality = str(pixels.first(ordered[0], "00080060", ""))
    floor = -1024.0 if modality == "CT" else None

    def load(n: int) -> None:
        meta = ordered[n]
        arr = read(order[n])
        if arr.shape != (rows, columns):
            raise GeometryError(f"a slice decodes to {arr.shape}, not {rows} x {columns}")
        slope, intercept = rescales[n]
        values = arr.astype(np.float32) * np.float32(slope) + np.float32(intercept)
        pad = pixels.first(meta, "00280120")
        if pad is not None:
            values[arr == pad] = floor if floor is not None else float(values.min())
        if floor is not None:
            np.maximum(values, floor, out=values)
        if dtype is np.int16:
            np.clip(values, -32768, 32767, out=values)
        slices[n] = values

    with ThreadPoolExecutor(max(1, decode_threads), thread_name_prefix="rc-volume") as pool:
        list(pool.map(load, range(len(order))))
    data = _resample(slices, stack.positions, stack.geometry) if stack.uneven else slices
    header = {t: ordered[0][t] for t in HEADER_TAGS if t in ordered[0]}
    return Volume(
        data=data,
        geometry=stack.geometry,
        study_uid=str(pixels.first(ordered[0], "0020000D", "")),
        series_uid=str(pixels.first(ordered[0], "0020000E", "")),
        modality=modality,
        window=_default_window(ordered[len(ordered) // 2], data),
        sources=[sources[k] for k in order],
        source_positions=np.asarray(stack.positions, np.float64),
        header=header,
        build_seconds=time.perf_counter() - start,
    )


def _resample(slices: np.ndarray, positions: np.ndarray, geometry: Geometry) -> np.ndarray:
    """Linear interpolation of unevenly spaced ``slices`` onto ``geometry``'s uniform grid."""
    n = geometry.shape[0]
    step = float(geometry.spacing[2])
    out = np.empty((n, *slices.shape[1:]), slices.dtype)
    for k in range(n):
        p = min(k * step, float(positions[-1]))
        hi = int(np.clip(np.searchsorted(positions, p), 1, len(positions) - 1))
        lo = hi - 1
        w = (p - positions[lo]) / (positions[hi] - positions[lo])
        mixed = slices[lo].astype(np.float32) * np.float32(1 - w) + slices[hi] * np.float32(w)
        out[k] = np.rint(mixed) if out.dtype.kind == "i" else mixed
    return out
