"""Lung module step 2: airways with generations, arteries and veins, lobes, meshes.

Runs on a working grid of about ``WORK_MM`` voxels (fine CTs are block-averaged
by whole factors; label maps come back to the full grid by repetition), so a
512x512x300 chest stays within the time budget.  Each part is its own module:
:mod:`~radcloud.analysis.lung_airways`, :mod:`~radcloud.analysis.lung_vessels`,
:mod:`~radcloud.analysis.lung_lobes`, :mod:`~radcloud.analysis.mesh`.

Segments are named in plain words and coded with SNOMED CT.  Verified here in
pydicom's bundled DICOM code tables: Bronchus 955009, Trachea 44567001,
Pulmonary artery 81040000, Pulmonary vein 122972007, Middle lobe of right lung
72481006, Upper lobe of left lung 44714003.  Not in those tables, taken from
published HL7 FHIR / mCODE profiles (several agree) and to be re-checked
against the SNOMED CT browser: Upper lobe of right lung 42400003, Lower lobe of
right lung 266005, Lower lobe of left lung 41224006.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from radcloud.analysis import lung_airways, lung_lobes, lung_vessels, mesh
from radcloud.analysis.base import Code, LabelMap, Measurement, Mesh, Segment
from radcloud.volume.build import Volume
from radcloud.volume.geometry import Geometry

log = logging.getLogger(__name__)

WORK_MM = 1.25
LOBE_MESH_MM = 2.5  # lobes are smooth: coarser mesh vertices keep the 3D model light

LOBE_SEGMENTS = {
    lung_lobes.RUL: Segment(1, "Right upper lobe", Code("42400003", "Upper lobe of right lung"),
                            color=(221, 130, 101)),
    lung_lobes.RML: Segment(2, "Right middle lobe", Code("72481006", "Middle lobe of right lung"),
                            color=(144, 238, 144)),
    lung_lobes.RLL: Segment(3, "Right lower lobe", Code("266005", "Lower lobe of right lung"),
                            color=(111, 184, 210)),
    lung_lobes.LUL: Segment(4, "Left upper lobe", Code("44714003", "Upper lobe of left lung"),
                            color=(230, 220, 70)),
    lung_lobes.LLL: Segment(5, "Left lower lobe", Code("41224006", "Lower lobe of left lung"),
                            color=(183, 156, 220)),
}  # fmt: skip
AIRWAYS = Segment(6, "Airways (trachea and bronchi)", Code("955009", "Bronchus"),
                  color=(250, 250, 225))  # fmt: skip
ARTERIES = Segment(7, "Pulmonary arteries", Code("81040000", "Pulmonary artery"),
                   color=(60, 110, 230))  # fmt: skip
VEINS = Segment(8, "Pulmonary veins", Code("122972007", "Pulmonary vein"), color=(220, 50, 50))
GENERATION_SEGMENTS = [
    Segment(1, "Trachea (generation 0)", Code("44567001", "Trachea"), color=(250, 250, 225)),
    Segment(2, "Main bronchi (generation 1)", Code("955009", "Bronchus"), color=(255, 200, 120)),
    Segment(3, "Lobar bronchi (generation 2)", Code("955009", "Bronchus"), color=(255, 150, 80)),
    Segment(4, "Segmental bronchi (generation 3)", Code("955009", "Bronchus"),
            color=(230, 100, 60)),
    Segment(5, "Subsegmental and smaller bronchi (generation 4+)", Code("955009", "Bronchus"),
            color=(180, 60, 40)),
]  # fmt: skip
VOLUME = Code("118565006", "Volume")
ML = Code("ml", "milliliter", "UCUM")


@dataclass
class Anatomy:
    findings: dict[str, Any]
    summary: str
    label_maps: list[LabelMap] = field(default_factory=list)
    meshes: list[Mesh] = field(default_factory=list)
    measurements: list[Measurement] = field(default_factory=list)
    report_values: dict[str, Any] = field(default_factory=dict)
    work: dict[str, Any] = field(default_factory=dict)  # working-grid arrays (tests, bench)


# ------------------------------------------------------------------ working grid


def _factors(geometry: Geometry) -> tuple[int, int, int]:
    sp = geometry.spacing  # (i, j, k)
    return tuple(max(1, int(round(WORK_MM / float(sp[a])))) for a in (2, 1, 0))  # type: ignore


def _down(a: np.ndarray, f: tuple[int, int, int], mean: bool) -> np.ndarray:
    """Block mean (``mean``) or majority of ``a`` over whole blocks of ``f`` voxels."""
    if f == (1, 1, 1):
        return a
    shape = [n // k for n, k in zip(a.shape, f, strict=True)]
    cut = a[: shape[0] * f[0], : shape[1] * f[1], : shape[2] * f[2]]
    blocks = cut.reshape(shape[0], f[0], shape[1], f[1], shape[2], f[2])
    m = blocks.mean(axis=(1, 3, 5), dtype=np.float32)
    return m if mean else m > 0.5


def _up(a: np.ndarray, f: tuple[int, int, int], shape: tuple[int, ...]) -> np.ndarray:
    """Back to the full grid by repetition; the uncovered edge takes the nearest block."""
    if f == (1, 1, 1):
        return a
    big = a.repeat(f[0], 0).repeat(f[1], 1).repeat(f[2], 2)
    pad = [(0, n - b) for n, b in zip(shape, big.shape, strict=True)]
    return np.pad(big, pad, mode="edge")


def _work_geometry(g: Geometry, f: tuple[int, int, int], shape: tuple[int, ...]) -> Geometry:
    scale = np.array([f[2], f[1], f[0]], float)  # columns i, j, k
    affine = g.affine * scale[None, :]
    origin = g.origin + g.affine @ ((scale - 1.0) / 2.0)
    return Geometry(shape=tuple(shape), origin=origin, affine=affine)  # type: ignore[arg-type]


# ------------------------------------------------------------------ the step


def analyse(
    volume: Volume,
    right: np.ndarray,
    left: np.ndarray,
    trachea: np.ndarray,
    candidates: np.ndarray,
    progress: Callable[[float, str], None] = lambda _f, _t: None,
) -> Anatomy:
    """Airways, vessels, lobes and meshes of a chest CT whose lungs step 1 found."""
    try:
        return _analyse(volume, right, left, trachea, candidates, progress)
    except Exception as exc:  # recorded in the findings, never silent; step 1 stands
        log.exception("lung anatomy failed")
        return Anatomy({"error": f"{type(exc).__name__}: {exc}"},
                       "Airways, vessels and lobes could not be analysed.")  # fmt: skip


def _analyse(
    volume: Volume,
    right: np.ndarray,
    left: np.ndarray,
    trachea: np.ndarray,
    candidates: np.ndarray,
    progress: Callable[[float, str], None],
) -> Anatomy:
    timing: dict[str, float] = {}
    t0 = time.perf_counter()
    f = _factors(volume.geometry)
    hu = _down(volume.data, f, True)
    r, lft = _down(right, f, False), _down(left, f, False)
    tr, cand = _down(trachea, f, False), _down(candidates, f, False)
    geo = _work_geometry(volume.geometry, f, hu.shape)
    sp_ijk = geo.spacing
    spacing = (float(sp_ijk[2]), float(sp_ijk[1]), float(sp_ijk[0]))
    voxel_ml = float(abs(np.linalg.det(geo.affine))) / 1000.0
    timing["work_grid"] = time.perf_counter() - t0

    progress(0.05, "airway tree")
    t = time.perf_counter()
    tree = lung_airways.segment(hu, tr, cand, spacing, (geo.origin, geo.affine))
    timing["airways"] = time.perf_counter() - t

    progress(0.35, "vessels")
    t = time.perf_counter()
    vessels = lung_vessels.segment(hu, r | lft, tree.mask, tree.generation, spacing)
    timing["vessels"] = time.perf_counter() - t

    progress(0.6, "lobes")
    t = time.perf_counter()
    lobes = lung_lobes.segment(hu, r, lft, tree, spacing)
    timing["lobes"] = time.perf_counter() - t

    progress(0.75, "surface meshes")
    t = time.perf_counter()
    structures = [(LOBE_SEGMENTS[k], lobes.labels == k) for k in LOBE_SEGMENTS]
    lobe_segs = list(LOBE_SEGMENTS.values())
    structures += [(AIRWAYS, tree.mask), (ARTERIES, vessels.arteries), (VEINS, vessels.veins)]
    meshes = [
        mesh.label_mesh(m, geo, s.label, s.code, s.color,
                        max_step_mm=LOBE_MESH_MM if s in lobe_segs else mesh.MAX_STEP_MM)
        for s, m in structures if m.any()
    ]  # fmt: skip
    timing["meshes"] = time.perf_counter() - t

    progress(0.9, "label maps")
    anatomy = np.zeros(hu.shape, np.uint8)
    anatomy[lobes.labels > 0] = lobes.labels[lobes.labels > 0]
    anatomy[vessels.veins] = VEINS.number
    anatomy[vessels.arteries] = ARTERIES.number
    anatomy[tree.mask] = AIRWAYS.number
    gens = np.where(tree.mask, np.minimum(tree.generation, 4) + 1, 0).astype(np.uint8)
    full = volume.data.shape
    label_maps = []
    if anatomy.any():
        label_maps.append(
            LabelMap(
                "lung anatomy",
                _up(anatomy, f, full),
                [*LOBE_SEGMENTS.values(), AIRWAYS, ARTERIES, VEINS],
            )
        )
    if gens.any():
        label_maps.append(LabelMap("airway generations", _up(gens, f, full),
                                   GENERATION_SEGMENTS))  # fmt: skip
    findings = _findings(hu, tree, vessels, lobes, meshes, voxel_ml, spacing, f)
    timing["total"] = time.perf_counter() - t0
    findings["timing_s"] = {k: round(v, 2) for k, v in timing.items()}
    measurements = [
        Measurement(VOLUME, row["volume_ml"], ML, LOBE_SEGMENTS[k].code, LOBE_SEGMENTS[k].code)
        for k, row in ((k, findings["lobes"].get(lung_lobes.KEYS[k])) for k in LOBE_SEGMENTS)
        if row and row["volume_ml"]
    ]
    report = {f"lobe_{key.lower()}_volume_ml": row["volume_ml"]
              for key, row in findings["lobes"].items() if isinstance(row, dict)}  # fmt: skip
    return Anatomy(findings, _summary(findings), label_maps, meshes, measurements, report,
                   work={"hu": hu, "geometry": geo, "tree": tree, "vessels": vessels,
                         "lobes": lobes, "factors": f})  # fmt: skip


def _findings(
    hu: np.ndarray,
    tree: lung_airways.AirwayTree,
    vessels: lung_vessels.Vessels,
    lobes: lung_lobes.Lobes,
    meshes: list[Mesh],
    voxel_ml: float,
    spacing: tuple[float, float, float],
    f: tuple[int, int, int],
) -> dict[str, Any]:
    lobe_rows: dict[str, Any] = {}
    for k, key in lung_lobes.KEYS.items():
        m = lobes.labels == k
        n = int(m.sum())
        lobe_rows[key] = {
            "name": LOBE_SEGMENTS[k].label,
            "volume_ml": round(n * voxel_ml, 1),
            "laa950_pct": round(100.0 * float((hu[m] <= -950).mean()), 2) if n else None,
        }
    if lobes.reason:
        lobe_rows["not_found"] = lobes.reason
    total = sum(r["volume_ml"] for r in lobe_rows.values() if isinstance(r, dict))
    for row in lobe_rows.values():
        if isinstance(row, dict):
            row["share_pct"] = round(100.0 * row["volume_ml"] / total, 1) if total else None
    return {
        "units": {"volume_ml": "mL", "length_mm": "mm", "radius_mm": "mm", "share_pct": "%"},
        "working_grid_mm": [round(s, 3) for s in spacing],
        "working_grid_factors": list(f),
        "airways": {
            "threshold_hu": tree.threshold_hu,
            "volume_ml": round(float(tree.mask.sum()) * voxel_ml, 1),
            "branches_per_generation": {str(g): n for g, n in tree.counts().items()},
            "branches": [b.as_json() for b in tree.branches if b.generation <= 4],
        },
        "vessels": {
            "volume_ml": round(float(vessels.mask.sum()) * voxel_ml, 1),
            "arteries_ml": round(float(vessels.arteries.sum()) * voxel_ml, 1),
            "veins_ml": round(float(vessels.veins.sum()) * voxel_ml, 1),
            "method": "contrast threshold + Hessian vesselness; arteries = trees beside bronchi",
        },
        "lobes": lobe_rows,
        "meshes": [
            {
                "name": m.name,
                "vertices": int(len(m.vertices)),
                "triangles": int(len(m.faces)),
                "volume_ml": round(mesh.volume_ml(m), 1),
            }
            for m in meshes
        ],  # fmt: skip
    }


def _summary(f: dict[str, Any]) -> str:
    lobes = f["lobes"]
    if "not_found" in lobes:
        lobe_text = f"Lobes not separated ({lobes['not_found']})."
    else:
        parts = [f"{k} {lobes[k]['volume_ml']:.0f} mL" for k in lung_lobes.KEYS.values()]
        lobe_text = "Lobe volumes: " + ", ".join(parts) + "."
    counts = f["airways"]["branches_per_generation"]
    seg = counts.get("3", 0)
    return (f"{lobe_text} Airway tree traced to {seg} segmental bronchi "
            f"({sum(counts.values())} branches); pulmonary vessels "
            f"{f['vessels']['volume_ml']:.0f} mL (arteries {f['vessels']['arteries_ml']:.0f} mL, "
            f"veins {f['vessels']['veins_ml']:.0f} mL).")  # fmt: skip
