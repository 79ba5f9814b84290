"""Lung module, first step: lungs (right / left), trachea, volumes, emphysema index.

Classic, model-free pipeline (shared/reference/lung_anatomy_ct.md §4):
air-like voxels (< -400 HU) not connected to the air around the patient,
the trachea found as a round air tube near the midline of the top slices and
grown at a strict threshold, the rest split into right and left lung by patient
x (LPS: +x is the patient's left), eroding first when the lungs touch.
Holes (vessels) are filled slice by slice.  Emphysema index = % of lung
voxels at or below -950 HU (%LAA-950), with the 15th percentile of lung density.

Recognition from the image itself: a CT whose header does not say chest is
taken as one when both lungs are found with a plausible volume.

Step 2 (:mod:`radcloud.analysis.lung_anatomy`): the bronchial tree with
generation labels, arteries and veins, the five lobes (fissure-aware) with
their volumes, and surface meshes of them all.  A failure there is recorded in
the findings with its reason; the lungs of step 1 are kept.
Segments (by nearest segmental airway) are a later step.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import ndimage

from radcloud.analysis.base import (
    Accepts,
    AnalysisOutput,
    Code,
    LabelMap,
    Measurement,
    RunContext,
    Segment,
    SeriesInfo,
)
from radcloud.volume.build import Volume

AIR_THRESHOLD = -400.0  # lung + airways vs soft tissue
AIRWAY_THRESHOLD = -950.0  # trachea lumen grows only through air this dark
LAA_THRESHOLD = -950.0
MIN_LUNG_ML = 50.0  # a side smaller than this is not a lung
JOIN_VOXELS = 3  # a piece of lung this close to a lung belongs to it (cut off by a fissure)
MAX_HOLE_MM2 = 1200.0  # a bigger hole in a lung slice is the diaphragm dome, not a vessel
CHEST_WORDS = ("CHEST", "THORAX", "LUNG", "THOR", "胸", "肺")

RIGHT_LUNG = Segment(1, "Right lung", Code("3341006", "Right lung"), color=(128, 174, 128))
LEFT_LUNG = Segment(2, "Left lung", Code("44029006", "Left lung"), color=(241, 214, 145))
TRACHEA = Segment(3, "Trachea", Code("44567001", "Trachea"), color=(182, 228, 255))
VOLUME = Code("118565006", "Volume")
MEAN_HU = Code("112031", "Attenuation Coefficient", "DCM")
ML = Code("ml", "milliliter", "UCUM")
HU_UNIT = Code("[hnsf'U]", "Hounsfield unit", "UCUM")


def is_chest_header(info: SeriesInfo) -> bool | None:
    """True/False when the header says, None when it does not (then the image decides)."""
    texts = (info.body_part, info.series_description, info.study_description)
    upper = " ".join(t.upper() for t in texts if t)
    if any(w in upper for w in CHEST_WORDS):
        return True
    if info.body_part.strip():
        return False
    return None


class LungModule:
    """``lung``: see the module docstring."""

    name = "lung"
    version = "0.2"
    title = "Lungs: volumes, emphysema index, airways, vessels, lobes, 3D model"
    auto = True
    accepts = Accepts(modalities=("CT",), min_instances=20, max_slice_thickness_mm=5.0)

    def recognise(self, info: SeriesInfo, volume: Volume) -> str | None:
        said = is_chest_header(info)
        if said is False:
            return f"body part {info.body_part} is not the chest"
        return None  # header says chest, or the image decides in run()

    def run(self, volume: Volume, ctx: RunContext) -> AnalysisOutput:
        hu = volume.data
        geo = volume.geometry
        voxel_ml = float(abs(np.linalg.det(geo.affine))) / 1000.0
        ctx.progress(0.05, "air inside the body")
        candidates = _inside_air(hu)
        ctx.progress(0.15, "trachea")
        trachea = _trachea(hu, candidates, geo)
        lungs = candidates & ~trachea
        ctx.progress(0.2, "right and left lung")
        right, left = _split(lungs, volume, voxel_ml)
        max_hole = int(MAX_HOLE_MM2 / float(geo.spacing[0] * geo.spacing[1]))
        right = _fill_slices(right, max_hole)
        left = _fill_slices(left & ~right, max_hole)
        labels = np.zeros(hu.shape, np.uint8)
        labels[right] = RIGHT_LUNG.number
        labels[left] = LEFT_LUNG.number
        labels[trachea & (labels == 0)] = TRACHEA.number
        ctx.progress(0.3, "measurements")
        findings = _measure(hu, labels, voxel_ml)
        chest = findings["right_lung"]["volume_ml"] >= MIN_LUNG_ML and (
            findings["left_lung"]["volume_ml"] >= MIN_LUNG_ML
        )
        findings["is_chest_ct"] = bool(chest)
        if not chest and (ctx.info is None or is_chest_header(ctx.info) is not True):
            return AnalysisOutput(
                findings=findings,
                summary="Not analysed: no two lungs were found, so this is not taken as a "
                "chest CT.",
            )
        label_maps = [LabelMap("lungs", labels, [RIGHT_LUNG, LEFT_LUNG, TRACHEA])]
        measurements = _measurements(findings)
        report_values: dict[str, Any] = {
            "lung_volume_ml": findings["lungs"]["volume_ml"],
            "emphysema_index_pct": findings["lungs"]["laa950_pct"],
        }
        meshes = []
        summary = _summary(findings)
        if ctx.options.get("anatomy", True):
            from radcloud.analysis import lung_anatomy

            def sub(fraction: float, text: str) -> None:
                ctx.progress(0.35 + 0.64 * fraction, text)

            anatomy = lung_anatomy.analyse(volume, right, left, trachea, candidates, sub)
            findings["anatomy"] = anatomy.findings
            label_maps += anatomy.label_maps
            measurements += anatomy.measurements
            meshes = anatomy.meshes
            report_values.update(anatomy.report_values)
            summary += " " + anatomy.summary
        return AnalysisOutput(
            findings=findings,
            summary=summary,
            label_maps=label_maps,
            meshes=meshes,
            measurements=measurements,
            report_values=report_values,
        )


def _inside_air(hu: np.ndarray) -> np.ndarray:
    """Air-like voxels not connected to the air around the patient (per slice border)."""
    air = hu < AIR_THRESHOLD
    labels, n = ndimage.label(air)
    if n == 0:
        return air
    border = np.zeros(n + 1, bool)
    for face in (labels[:, 0, :], labels[:, -1, :], labels[:, :, 0], labels[:, :, -1]):
        border[np.unique(face)] = True
    border[0] = True
    return ~border[labels] & air


def _trachea(hu: np.ndarray, candidates: np.ndarray, geometry: Any) -> np.ndarray:
    """The trachea: a round air tube near the midline of the top slices, grown downwards."""
    spacing = geometry.spacing
    out = np.zeros(hu.shape, bool)
    pixel_mm2 = float(spacing[0] * spacing[1])
    rows, cols = hu.shape[1:]
    n = hu.shape[0]
    # the head end: LPS +z is superior; slices may be stored either way round
    up = float(geometry.affine[2, 2]) > 0
    order = list(range(n - 1, -1, -1)) if up else list(range(n))
    seed: tuple[int, np.ndarray] | None = None
    for k in order[: max(1, n // 5)]:
        lab, n = ndimage.label(candidates[k])
        for idx, sl in enumerate(ndimage.find_objects(lab), start=1):
            if sl is None:
                continue
            blob = lab[sl] == idx
            area = blob.sum() * pixel_mm2
            cy = (sl[0].start + sl[0].stop) / 2
            cx = (sl[1].start + sl[1].stop) / 2
            h, w = blob.shape
            round_ = 0.6 < h / max(w, 1) < 1.6 and blob.sum() > 0.6 * h * w
            if 80 <= area <= 600 and round_ and abs(cx - cols / 2) < cols * 0.12:
                if abs(cy - rows / 2) < rows * 0.25:
                    mask = np.zeros((rows, cols), bool)
                    mask[sl] = blob
                    seed = (k, mask)
                    break
        if seed is not None:
            break
    if seed is None:
        return out
    k, mask = seed
    strict = candidates & (hu < AIRWAY_THRESHOLD)
    strict[k] |= mask
    lab, _ = ndimage.label(strict)
    ids = np.unique(lab[k][mask])
    ids = ids[ids > 0]
    grown = np.isin(lab, ids)
    if grown.sum() * float(np.prod(spacing)) / 1000.0 > 300:  # leaked into the lungs
        return out
    return grown


def _patient_x(volume: Volume, mask: np.ndarray) -> float:
    k, j, i = (float(c.mean()) for c in np.nonzero(mask))
    point = volume.geometry.origin + volume.geometry.affine @ np.array([i, j, k])
    return float(point[0])


def _split(lungs: np.ndarray, volume: Volume, voxel_ml: float) -> tuple[np.ndarray, np.ndarray]:
    """(right, left): the two largest parts, eroding until the lungs come apart."""
    min_voxels = max(1, int(MIN_LUNG_ML / voxel_ml / 10))
    work = lungs
    for _ in range(6):
        lab, n = ndimage.label(work)
        sizes = np.bincount(lab.ravel())[1:]
        big = [i + 1 for i in np.argsort(sizes)[::-1][:2] if sizes[i] >= min_voxels]
        if len(big) == 2 and sizes[big[1] - 1] > 0.1 * sizes[big[0] - 1]:
            parts = [lab == b for b in big]
            if work is not lungs:  # give every lung voxel back to the nearer part
                seeds = np.zeros(lungs.shape, np.uint8)
                seeds[parts[0]], seeds[parts[1]] = 1, 2
                idx = ndimage.distance_transform_edt(
                    seeds == 0, return_distances=False, return_indices=True
                )
                nearest = seeds[tuple(idx)]
                parts = [lungs & (nearest == 1), lungs & (nearest == 2)]
            else:
                parts = _with_touching(lab, big, parts)
            xs = [_patient_x(volume, p) for p in parts]
            if xs[0] > xs[1]:
                parts.reverse()
            return parts[0], parts[1]
        if len(big) == 0:
            break
        work = ndimage.binary_erosion(work, iterations=2)
    empty = np.zeros(lungs.shape, bool)
    if not lungs.any():
        return empty, empty
    return (lungs, empty) if _patient_x(volume, lungs) < 0 else (empty, lungs)


def _with_touching(lab: np.ndarray, big: list[int], parts: list[np.ndarray]) -> list[np.ndarray]:
    """Pieces within ``JOIN_VOXELS`` of a lung join it.

    On thin slices a fissure or a pleural line can be denser than the air
    threshold and cut a piece off a lung in the air mask.
    """
    out = []
    for part in parts:
        ring = ndimage.binary_dilation(part, iterations=JOIN_VOXELS)
        ids = np.unique(lab[ring])
        ids = ids[(ids > 0) & ~np.isin(ids, big)]
        out.append(part | np.isin(lab, ids) if len(ids) else part)
    out[1] &= ~out[0]
    return out


def _fill_slices(mask: np.ndarray, max_hole_px: int | None = None) -> np.ndarray:
    """Fill holes (vessels) slice by slice; holes larger than ``max_hole_px`` stay open.

    A cap keeps the diaphragm dome out: at the lung bases a slice can show the
    lung as a ring round the liver or spleen, a "hole" that is not lung.
    Holes are the pieces of the background, within the mask's bounding box,
    that do not reach the box's edge (one labelling per slice).
    """
    out = mask.copy()
    for k in np.nonzero(mask.any(axis=(1, 2)))[0]:
        rows = np.nonzero(mask[k].any(axis=1))[0]
        cols = np.nonzero(mask[k].any(axis=0))[0]
        box = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
        sub = np.pad(mask[k][box], 1)
        lab, n = ndimage.label(~sub)
        if n <= 1:
            continue
        sizes = np.bincount(lab.ravel(), minlength=n + 1)
        hole = np.ones(n + 1, bool)
        hole[0] = False
        hole[np.unique(np.concatenate([lab[0], lab[-1], lab[:, 0], lab[:, -1]]))] = False
        if max_hole_px is not None:
            hole &= sizes <= max_hole_px
        out[k][box] |= hole[lab][1:-1, 1:-1]
    return out


def _stats(hu: np.ndarray, mask: np.ndarray, voxel_ml: float) -> dict[str, Any]:
    n = int(mask.sum())
    if n == 0:
        return {"volume_ml": 0.0, "mean_hu": None, "laa950_pct": None, "perc15_hu": None}
    values = hu[mask].astype(np.float32)
    return {
        "volume_ml": round(n * voxel_ml, 1),
        "mean_hu": round(float(values.mean()), 1),
        "laa950_pct": round(100.0 * float((values <= LAA_THRESHOLD).mean()), 2),
        "perc15_hu": round(float(np.percentile(values, 15)), 1),
    }


def _measure(hu: np.ndarray, labels: np.ndarray, voxel_ml: float) -> dict[str, Any]:
    right = labels == RIGHT_LUNG.number
    left = labels == LEFT_LUNG.number
    trachea = labels == TRACHEA.number
    return {
        "units": {"volume_ml": "mL", "mean_hu": "HU", "laa950_pct": "%", "perc15_hu": "HU"},
        "right_lung": _stats(hu, right, voxel_ml),
        "left_lung": _stats(hu, left, voxel_ml),
        "lungs": _stats(hu, right | left, voxel_ml),
        "trachea": {"found": bool(trachea.any()), "volume_ml": round(trachea.sum() * voxel_ml, 1)},
    }


def _summary(f: dict[str, Any]) -> str:
    both = f["lungs"]
    return (
        f"Lung volume {both['volume_ml']:.0f} mL (right {f['right_lung']['volume_ml']:.0f} mL, "
        f"left {f['left_lung']['volume_ml']:.0f} mL); mean density {both['mean_hu']:.0f} HU; "
        f"emphysema index (%LAA-950) {both['laa950_pct']:.1f} %, "
        f"15th percentile {both['perc15_hu']:.0f} HU."
    )


def _measurements(f: dict[str, Any]) -> list[Measurement]:
    """Per-lung volume and mean attenuation, for the SR (TID 1500)."""
    out = []
    for key, seg in (("right_lung", RIGHT_LUNG), ("left_lung", LEFT_LUNG)):
        stats = f[key]
        if not stats["volume_ml"]:
            continue
        out.append(Measurement(VOLUME, stats["volume_ml"], ML, seg.code, seg.code))
        out.append(Measurement(MEAN_HU, stats["mean_hu"], HU_UNIT, seg.code, seg.code))
    return out
