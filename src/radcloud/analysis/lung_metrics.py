"""Agreement measures between the lung module's output and a phantom's ground truth.

Dice, symmetric surface distances (mm), airway branch detection per generation
and the distance of mesh vertices to a true surface; used by the tests and by
``bench/analysis_lung.py``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import ndimage

from radcloud.analysis.lung_airways import AirwayTree
from radcloud.analysis.lung_phantom import LungPhantom


def dice(a: np.ndarray, b: np.ndarray) -> float:
    """2|A∩B| / (|A|+|B|); 1.0 when both are empty."""
    total = float(a.sum()) + float(b.sum())
    return 1.0 if total == 0 else 2.0 * float((a & b).sum()) / total


def _surface(m: np.ndarray) -> np.ndarray:
    return m & ~ndimage.binary_erosion(m)


def surface_distances(
    a: np.ndarray, b: np.ndarray, spacing: tuple[float, float, float]
) -> np.ndarray:
    """Distances (mm) from each surface voxel of either mask to the other's surface."""
    sa, sb = _surface(a), _surface(b)
    if not sa.any() or not sb.any():
        return np.array([np.inf])
    da = ndimage.distance_transform_edt(~sb, sampling=spacing)[sa]
    db = ndimage.distance_transform_edt(~sa, sampling=spacing)[sb]
    return np.concatenate([da, db])


def surface_stats(a: np.ndarray, b: np.ndarray, spacing: tuple[float, float, float]) -> dict:
    d = surface_distances(a, b, spacing)
    return {"mean_mm": round(float(d.mean()), 3), "p95_mm": round(float(np.percentile(d, 95)), 3)}


def _point_to_polyline(p: np.ndarray, line: np.ndarray) -> float:
    if len(line) == 1:
        return float(np.linalg.norm(p - line[0]))
    a, b = line[:-1], line[1:]
    d = b - a
    dd = np.maximum((d * d).sum(1), 1e-9)
    s = np.clip(((p - a) * d).sum(1) / dd, 0.0, 1.0)
    return float(np.linalg.norm(a + s[:, None] * d - p, axis=1).min())


def branch_detection(
    phantom: LungPhantom, found: AirwayTree | list[dict[str, Any]]
) -> dict[int, dict[str, Any]]:
    """Per generation: true branches, how many found (a detected branch's centre line
    passes within the true radius + 2 mm of the true branch's midpoint), and how many
    of those carry the right generation label.

    ``found`` is the tree, or the branch list of the findings (start and end points).
    """
    if isinstance(found, AirwayTree):
        lines = [np.array(b.points) for b in found.branches if b.points]
        gens = [b.generation for b in found.branches if b.points]
    else:
        rows = [b for b in found if b.get("start") is not None]
        lines = [np.array([b["start"], b["end"]], float) for b in rows]
        gens = [int(b["generation"]) for b in rows]
    out: dict[int, dict[str, Any]] = {}
    for t in phantom.bronchi:
        row = out.setdefault(t.generation, {"true": 0, "found": 0, "right_generation": 0})
        row["true"] += 1
        if not lines:
            continue
        d = np.array([_point_to_polyline(t.mid, line) for line in lines])
        best = int(np.argmin(d))
        if d[best] <= t.r + 2.0:
            row["found"] += 1
            row["right_generation"] += int(gens[best] == t.generation)
    for row in out.values():
        row["rate"] = round(row["found"] / row["true"], 3)
        row["generation_rate"] = round(row["right_generation"] / row["true"], 3)
    return dict(sorted(out.items()))


def mesh_to_mask_distance(
    vertices: np.ndarray, mask: np.ndarray, origin: np.ndarray, spacing_xyz: np.ndarray
) -> dict[str, float]:
    """Distance (mm) from mesh vertices (patient x, y, z) to the boundary of ``mask``.

    The boundary is taken halfway between inside and outside voxel centres (a
    signed distance from two Euclidean distance transforms, sampled
    trilinearly), so a perfect surface scores about zero.
    """
    sp = (float(spacing_xyz[2]), float(spacing_xyz[1]), float(spacing_xyz[0]))
    ijk = (vertices - origin) / spacing_xyz
    kji = ijk[:, ::-1]
    # work in the box around the mask and the vertices: full-size EDTs are slow
    lo = np.floor(kji.min(0)).astype(int) - 3
    hi = np.ceil(kji.max(0)).astype(int) + 4
    if mask.any():
        where = np.nonzero(mask)
        lo = np.minimum(lo, [int(a.min()) - 3 for a in where])
        hi = np.maximum(hi, [int(a.max()) + 4 for a in where])
    lo = np.maximum(lo, 0)
    hi = np.minimum(hi, mask.shape)
    sub = mask[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]]
    inside = ndimage.distance_transform_edt(sub, sampling=sp)
    outside = ndimage.distance_transform_edt(~sub, sampling=sp)
    signed = np.where(sub, -(inside - 0.5 * min(sp)), outside - 0.5 * min(sp))
    coords = (kji - lo).T
    d = np.abs(ndimage.map_coordinates(signed.astype(np.float32), coords, order=1))
    return {"mean_mm": round(float(d.mean()), 3), "p95_mm": round(float(np.percentile(d, 95)), 3)}
