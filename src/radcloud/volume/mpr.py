"""Multiplanar reformats: a plane through a volume, sampled at screen pixels, with slabs.

A :class:`Plane` is what one viewport shows: the patient point at the image centre,
the screen-right (``u``) and screen-down (``v``) directions in patient space,
millimetres per screen pixel and the image size.  Standard planes follow the
radiological convention (patient's right on the screen's left; head up on
coronal and sagittal).  Oblique planes are standard planes turned by three
angles.  Slabs (``slab_mm`` thick, centred on the plane) reduce their samples by
maximum (MIP), minimum (MinIP) or mean.

Planes aligned with the voxel grid are cut with array slicing plus a 2D
resample (milliseconds); any other plane is sampled with trilinear
interpolation (``scipy.ndimage.map_coordinates``), which also covers the sheared
grids of tilted acquisitions.  Points outside the volume are NaN until the
final image, where they become the background value.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Literal

import numpy as np
from scipy import ndimage

from radcloud.errors import BadQuery
from radcloud.volume import kernels
from radcloud.volume.geometry import Geometry

SlabMode = Literal["mip", "minip", "avg"]
SLAB_MODES: tuple[str, ...] = ("mip", "minip", "avg")

#: (screen right, screen down) of each standard plane, in LPS patient axes.
STANDARD: dict[str, tuple[tuple[float, float, float], tuple[float, float, float]]] = {
    "axial": ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0)),
    "coronal": ((1.0, 0.0, 0.0), (0.0, 0.0, -1.0)),
    "sagittal": ((0.0, 1.0, 0.0), (0.0, 0.0, -1.0)),
}
#: Most slab samples taken along the normal of an oblique plane (cost is linear in it).
MAX_SLAB_SAMPLES = 64


@dataclass(frozen=True)
class Plane:
    """One viewport's image: ``width`` x ``height`` pixels of ``pixel_mm`` around ``center``."""

    center: np.ndarray  # patient mm at the image centre
    u: np.ndarray  # unit vector, screen right
    v: np.ndarray  # unit vector, screen down
    pixel_mm: float
    width: int
    height: int

    @property
    def normal(self) -> np.ndarray:
        """u x v: for an axial plane, towards the head (+z)."""
        return np.cross(self.u, self.v)

    @property
    def origin(self) -> np.ndarray:
        """Patient mm of the centre of pixel (0, 0) (ImagePositionPatient of a saved image)."""
        return self.to_patient(0.0, 0.0)

    def to_patient(self, x: float | np.ndarray, y: float | np.ndarray) -> np.ndarray:
        """Patient mm of pixel ``(x, y)`` (column, row; continuous; 0 = first pixel's centre)."""
        dx = (np.asarray(x, np.float64) - (self.width - 1) / 2) * self.pixel_mm
        dy = (np.asarray(y, np.float64) - (self.height - 1) / 2) * self.pixel_mm
        return self.center + np.multiply.outer(dx, self.u) + np.multiply.outer(dy, self.v)

    def to_pixel(self, point: Sequence[float] | np.ndarray) -> tuple[float, float, float]:
        """(x, y, distance from the plane in mm) of a patient point."""
        d = np.asarray(point, np.float64) - self.center
        x = float(d @ self.u) / self.pixel_mm + (self.width - 1) / 2
        y = float(d @ self.v) / self.pixel_mm + (self.height - 1) / 2
        return x, y, float(d @ self.normal)

    def through(self, point: Sequence[float] | np.ndarray) -> Plane:
        """The same view moved along its normal so that it contains ``point``."""
        p = np.asarray(point, np.float64)
        n = self.normal
        return replace(self, center=self.center + ((p - self.center) @ n) * n)

    def describe(self) -> dict[str, object]:
        """JSON-ready: what a client needs to map its pixels to patient mm and back."""
        return {
            "center": _round(self.center),
            "u": _round(self.u, 6),
            "v": _round(self.v, 6),
            "normal": _round(self.normal, 6),
            "pixel_mm": round(self.pixel_mm, 6),
            "width": self.width,
            "height": self.height,
            "origin": _round(self.origin),
        }


def _round(v: np.ndarray, digits: int = 4) -> list[float]:
    return [round(float(x), digits) for x in v]


def _rotate(vec: np.ndarray, axis: np.ndarray, degrees: float) -> np.ndarray:
    """Rodrigues' rotation of ``vec`` about unit ``axis`` by ``degrees`` (right hand)."""
    a = math.radians(degrees)
    return (
        vec * math.cos(a)
        + np.cross(axis, vec) * math.sin(a)
        + axis * float(axis @ vec) * (1 - math.cos(a))
    )


def orientation(
    name: str = "axial",
    angles: Sequence[float] = (0.0, 0.0, 0.0),
    u: Sequence[float] | None = None,
    v: Sequence[float] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(u, v) of a standard plane turned by ``angles`` (degrees about u, then v, then normal).

    Explicit ``u`` and ``v`` (patient directions; ``v`` is made orthogonal to ``u``)
    take precedence, for clients that keep their own rotation.
    """
    if u is not None and v is not None:
        uu = np.asarray(u, np.float64)
        vv = np.asarray(v, np.float64)
        if uu.shape != (3,) or vv.shape != (3,) or np.linalg.norm(uu) < 1e-9:
            raise BadQuery("u and v must be two 3D directions")
        uu = uu / np.linalg.norm(uu)
        vv = vv - (vv @ uu) * uu
        if np.linalg.norm(vv) < 1e-6:
            raise BadQuery("u and v must not be parallel")
        return uu, vv / np.linalg.norm(vv)
    if name not in STANDARD:
        raise BadQuery(f"unknown plane {name!r} (axial, coronal, sagittal)")
    if len(angles) != 3:
        raise BadQuery("angles must be three numbers (degrees about u, v and the normal)")
    uu, vv = (np.array(x, np.float64) for x in STANDARD[name])
    a, b, c = (float(x) for x in angles)
    if a:
        vv = _rotate(vv, uu, a)
    if b:
        uu = _rotate(uu, vv, b)
    if c:
        n = np.cross(uu, vv)
        uu, vv = _rotate(uu, n, c), _rotate(vv, n, c)
    return uu, vv


def fit_pixel_mm(
    geometry: Geometry, u: np.ndarray, v: np.ndarray, width: int, height: int
) -> float:
    """Zoom at which the whole volume fits a ``width`` x ``height`` image in this orientation."""
    corners = geometry.corners()
    extent_u = float(np.ptp(corners @ u)) + float(geometry.spacing.min())
    extent_v = float(np.ptp(corners @ v)) + float(geometry.spacing.min())
    return max(extent_u / width, extent_v / height, 1e-3)


# ------------------------------------------------------------------ sampling


def sample(
    data: np.ndarray,
    geometry: Geometry,
    plane: Plane,
    slab_mm: float = 0.0,
    mode: str = "mip",
) -> np.ndarray:
    """The plane's image as float32 modality values (NaN outside the volume), (height, width)."""
    if mode not in SLAB_MODES:
        raise BadQuery(f"unknown slab mode {mode!r} ({', '.join(SLAB_MODES)})")
    if not slab_mm >= 0:
        raise BadQuery("slab thickness must not be negative")
    _check_finite(plane.center, plane.u, plane.v, [plane.pixel_mm, slab_mm])
    axes = _grid_axes(geometry, plane)
    if axes is not None:
        return _sample_aligned(data, geometry, plane, axes, slab_mm, mode)
    return _sample_oblique(data, geometry, plane, slab_mm, mode)


def _check_finite(*values: Sequence[float] | np.ndarray) -> None:
    """Compiled loops index memory with these: refuse NaN and infinity up front."""
    if not all(np.isfinite(np.asarray(v, np.float64)).all() for v in values):
        raise BadQuery("view parameters must be finite numbers")


def _grid_axes(geometry: Geometry, plane: Plane) -> tuple[int, int, int] | None:
    """Index components (i=0, j=1, k=2) along u, v, normal when the plane is grid-aligned."""
    if geometry.sheared:
        return None
    inv = np.linalg.inv(geometry.affine)
    found = []
    for vec in (plane.u, plane.v, plane.normal):
        d = inv @ vec
        c = int(np.argmax(np.abs(d)))
        if np.abs(np.delete(d, c)).max() > 1e-9 * abs(d[c]):
            return None
        found.append(c)
    if len(set(found)) != 3:
        return None
    return found[0], found[1], found[2]


def _index_frame(geometry: Geometry, plane: Plane) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Index of pixel (0, 0) and the index steps of one pixel right and one pixel down."""
    inv = np.linalg.inv(geometry.affine)
    idx0 = geometry.to_index(plane.origin)
    return idx0, inv @ (plane.u * plane.pixel_mm), inv @ (plane.v * plane.pixel_mm)


def _sample_aligned(
    data: np.ndarray,
    geometry: Geometry,
    plane: Plane,
    axes: tuple[int, int, int],
    slab_mm: float,
    mode: str,
) -> np.ndarray:
    cu, cv, cn = axes
    idx0, du, dv = _index_frame(geometry, plane)
    axis_n = 2 - cn  # array axis of the normal ((k, j, i) order)
    depth = float(idx0[cn])
    size = data.shape[axis_n]
    half = slab_mm / 2 / float(geometry.spacing[cn])
    if half < 0.5:  # thin: linear interpolation between the two nearest slices
        if not -0.5 < depth < size - 0.5:
            return np.full((plane.height, plane.width), np.nan, np.float32)
        d = min(max(depth, 0.0), size - 1.0)
        lo = min(int(math.floor(d)), size - 2) if size > 1 else 0
        w = d - lo
        img = np.take(data, lo, axis=axis_n).astype(np.float32)
        if w > 1e-6 and size > 1:
            img = img * np.float32(1 - w) + np.take(data, lo + 1, axis=axis_n) * np.float32(w)
    else:
        lo = max(int(math.ceil(depth - half - 1e-6)), 0)
        hi = min(int(math.floor(depth + half + 1e-6)), size - 1)
        if hi < lo:
            return np.full((plane.height, plane.width), np.nan, np.float32)
        slab = np.take(data, range(lo, hi + 1), axis=axis_n) if axis_n else data[lo : hi + 1]
        img = _reduce(slab, axis_n, mode)
    # remaining array axes, in order; map output (row, col) to them
    rest = [a for a in range(3) if a != axis_n]
    matrix = np.zeros((2, 2))
    offset = np.zeros(2)
    for r, array_axis in enumerate(rest):
        comp = 2 - array_axis
        matrix[r] = (dv[comp], du[comp])
        offset[r] = idx0[comp]
    return ndimage.affine_transform(
        img, matrix, offset=offset, output_shape=(plane.height, plane.width), order=1,
        mode="constant", cval=np.nan, output=np.float32, prefilter=False,
    )  # fmt: skip


def _reduce(slab: np.ndarray, axis: int, mode: str) -> np.ndarray:
    if mode == "mip":
        return slab.max(axis=axis).astype(np.float32)
    if mode == "minip":
        return slab.min(axis=axis).astype(np.float32)
    return slab.mean(axis=axis, dtype=np.float32)


def _sample_oblique(
    data: np.ndarray, geometry: Geometry, plane: Plane, slab_mm: float, mode: str
) -> np.ndarray:
    """Any plane: trilinear samples along the normal, reduced per pixel (compiled loop)."""
    idx0, du, dv = _index_frame(geometry, plane)
    inv = np.linalg.inv(geometry.affine)
    step = float(geometry.spacing.min())
    count = 1 if slab_mm <= step / 2 else min(int(math.ceil(slab_mm / step)) + 1, MAX_SLAB_SAMPLES)
    offsets = np.linspace(-slab_mm / 2, slab_mm / 2, count) if count > 1 else np.zeros(1)
    out = np.empty((plane.height, plane.width), np.float32)
    kernels.slab(
        data, idx0[::-1].copy(), du[::-1].copy(), dv[::-1].copy(),
        (inv @ plane.normal)[::-1].copy(), offsets, _MODES[mode], out,
    )  # fmt: skip
    return out


_MODES = {"mip": kernels.MIP, "minip": kernels.MINIP, "avg": kernels.AVG}


# ------------------------------------------------------------------ cross-hairs


def crosshair(
    plane: Plane, cursor: Sequence[float] | np.ndarray, others: dict[str, Plane]
) -> dict[str, object]:
    """Where the shared cursor and the other viewports' planes cut this image.

    Returns the cursor's patient mm and pixel (x, y) here, and for each other plane
    (assumed to pass through the cursor) the direction of its intersection line in
    this image (unit (dx, dy) in pixels), or None when the planes are parallel.
    """
    x, y, dist = plane.to_pixel(cursor)
    lines: dict[str, list[float] | None] = {}
    for name, other in others.items():
        d = np.cross(plane.normal, other.normal)
        if np.linalg.norm(d) < 1e-6:
            lines[name] = None
            continue
        dxy = np.array([d @ plane.u, d @ plane.v])
        dxy /= np.linalg.norm(dxy)
        if dxy[0] < -1e-9 or (abs(dxy[0]) <= 1e-9 and dxy[1] < 0):
            dxy = -dxy
        lines[name] = [round(float(c), 6) + 0.0 for c in dxy]
    return {
        "patient": [round(float(c), 4) for c in cursor],
        "pixel": [round(x, 3), round(y, 3)],
        "distance_mm": round(dist, 4),
        "lines": lines,
    }
