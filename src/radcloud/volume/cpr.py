"""Curved planar reformation (CPR) along a path: a vessel or a canal shown in one image.

The path (patient mm, e.g. a coronary centre line) is resampled every ``pixel_mm``
of arc length; image row ``r`` shows the path's point at arc length
``r * pixel_mm`` in column ``(width - 1) / 2``, so lengths along the path read true
down the image.  Across each row:

* *straightened*: along the normal of a rotation-minimising frame that follows the
  path (turned by ``angle`` about it), so the path becomes a straight vertical line;
* *stretched*: along one fixed direction perpendicular to the viewing direction,
  so the surroundings keep their shape as seen from that side.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from radcloud.errors import BadQuery
from radcloud.volume.geometry import Geometry

MAX_ROWS = 4096


@dataclass(frozen=True)
class CurvedImage:
    values: np.ndarray  # (rows, width) float32, NaN outside the volume
    centerline: np.ndarray  # (rows, 3) patient mm of the path point of each row
    lateral: np.ndarray  # (rows, 3) unit direction of each row (column + 1)
    pixel_mm: float

    @property
    def length_mm(self) -> float:
        return (len(self.centerline) - 1) * self.pixel_mm


def resample_path(points: Sequence[Sequence[float]], step: float) -> np.ndarray:
    """Points every ``step`` mm of arc length along the polyline ``points`` (ends kept)."""
    pts = np.asarray(points, np.float64)
    if pts.ndim != 2 or pts.shape[1] != 3 or len(pts) < 2 or not np.isfinite(pts).all():
        raise BadQuery("a path needs at least 2 points of 3 finite coordinates (patient mm)")
    seg = np.linalg.norm(np.diff(pts, axis=0), axis=1)
    keep = np.concatenate([[True], seg > 1e-9])
    pts, seg = pts[keep], seg[seg > 1e-9]
    if len(pts) < 2:
        raise BadQuery("the path has no length")
    arc = np.concatenate([[0.0], np.cumsum(seg)])
    n = int(math.floor(arc[-1] / step + 1e-9)) + 1
    if n > MAX_ROWS:
        raise BadQuery(f"the path is longer than {MAX_ROWS} rows at this pixel size")
    at = np.arange(n) * step
    return np.stack([np.interp(at, arc, pts[:, c]) for c in range(3)], axis=1)


def _tangents(pts: np.ndarray) -> np.ndarray:
    t = np.gradient(pts, axis=0)
    return t / np.maximum(np.linalg.norm(t, axis=1, keepdims=True), 1e-12)


def _first_normal(t0: np.ndarray, hint: np.ndarray | None) -> np.ndarray:
    for cand in ([hint] if hint is not None else []) + [np.array([0.0, 1.0, 0.0]),
                                                         np.array([1.0, 0.0, 0.0])]:  # fmt: skip
        n = cand - (cand @ t0) * t0
        if np.linalg.norm(n) > 1e-3:
            return n / np.linalg.norm(n)
    raise BadQuery("cannot find a direction across the path")


def rotation_minimising_normals(
    pts: np.ndarray, tangents: np.ndarray, n0: np.ndarray
) -> np.ndarray:
    """Normals that turn as little as possible along the path (double reflection)."""
    normals = np.empty_like(pts)
    normals[0] = n0
    for i in range(len(pts) - 1):
        v1 = pts[i + 1] - pts[i]
        c1 = float(v1 @ v1)
        if c1 < 1e-18:
            normals[i + 1] = normals[i]
            continue
        r = normals[i] - (2 / c1) * float(v1 @ normals[i]) * v1
        t = tangents[i] - (2 / c1) * float(v1 @ tangents[i]) * v1
        v2 = tangents[i + 1] - t
        c2 = float(v2 @ v2)
        n = r - (2 / c2) * float(v2 @ r) * v2 if c2 > 1e-18 else r
        normals[i + 1] = n / np.linalg.norm(n)
    return normals


def curved(
    data: np.ndarray,
    geometry: Geometry,
    path: Sequence[Sequence[float]],
    *,
    kind: str = "straightened",
    width: int = 256,
    pixel_mm: float | None = None,
    direction: Sequence[float] | None = None,
    angle: float = 0.0,
) -> CurvedImage:
    """The CPR image of ``path``; ``direction`` is the viewing direction (stretched) or the
    first lateral direction (straightened), ``angle`` turns the straightened cut plane."""
    if kind not in ("straightened", "stretched"):
        raise BadQuery("CPR kind must be 'straightened' or 'stretched'")
    if not 1 <= width <= 2048:
        raise BadQuery("width must be 1..2048")
    step = float(pixel_mm or geometry.spacing.min())
    if not step > 0 or not math.isfinite(step) or not math.isfinite(angle):
        raise BadQuery("pixel_mm must be positive")
    pts = resample_path(path, step)
    tangents = _tangents(pts)
    hint = None if direction is None else np.asarray(direction, np.float64)
    if hint is not None and (
        hint.shape != (3,) or not np.isfinite(hint).all() or np.linalg.norm(hint) < 1e-9
    ):
        raise BadQuery("direction must be a 3D direction")
    if kind == "straightened":
        normals = rotation_minimising_normals(pts, tangents, _first_normal(tangents[0], hint))
        if angle:
            binormals = np.cross(tangents, normals)
            a = math.radians(angle)
            normals = math.cos(a) * normals + math.sin(a) * binormals
    else:
        view = hint / np.linalg.norm(hint) if hint is not None else np.array([0.0, 1.0, 0.0])
        overall = pts[-1] - pts[0]
        lateral = np.cross(view, overall if np.linalg.norm(overall) > 1e-6 else tangents[0])
        if np.linalg.norm(lateral) < 1e-6:
            raise BadQuery("the viewing direction runs along the path; choose another")
        normals = np.repeat((lateral / np.linalg.norm(lateral))[None], len(pts), axis=0)
    offsets = (np.arange(width) - (width - 1) / 2) * step
    points = pts[:, None, :] + offsets[None, :, None] * normals[:, None, :]
    index = geometry.to_index(points)  # (rows, width, 3) as i, j, k
    coords = np.moveaxis(index[..., ::-1], -1, 0)
    values = ndimage.map_coordinates(
        data, coords, order=1, mode="constant", cval=np.nan, output=np.float32, prefilter=False
    )
    return CurvedImage(values, pts, normals, step)
