"""Where every voxel of a volume sits in patient space (PS3.3 C.7.6.2 LPS coordinates).

A volume is indexed ``[k, j, i]`` = (slice, row, column).  The patient position of
index ``(i, j, k)`` is ``origin + affine @ (i, j, k)``, whose columns are the row
direction times the column spacing, the column direction times the row spacing,
and the step from one slice to the next.  That step is *not* required to be
along the slice normal: a CT acquired with gantry tilt has slices that are
parallel but shifted, and the sheared affine places them exactly, so every view
is geometrically right without resampling the stack.

:func:`stack_geometry` orders slices and refuses what cannot be one volume
(mixed orientations, duplicate positions, slices off a line, missing slices)
with a message saying why.  Unevenly spaced stacks are accepted and given
``positions`` so that :mod:`radcloud.volume.build` can resample them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from radcloud.errors import InvalidRequest

#: Largest cosine difference between slices still called the same orientation.
ORIENTATION_TOLERANCE = 1e-3
#: Largest departure (mm) of a slice position from the line through the stack.
LINE_TOLERANCE_MM = 0.05
#: Relative spread of slice gaps still called even (0.5 %, and at least 0.01 mm).
EVEN_TOLERANCE = 0.005
#: A gap this many times the typical gap means slices are missing: refused.
MAX_GAP_RATIO = 3.0


class GeometryError(InvalidRequest):
    """A series that cannot be one volume; the detail says why (HTTP 422)."""

    title = "Series cannot be shown in 3D"


@dataclass(frozen=True)
class SliceGeometry:
    """The Image Plane module (C.7.6.2) of one slice."""

    position: tuple[float, float, float]  # ImagePositionPatient of pixel (0, 0)
    orientation: tuple[float, ...]  # ImageOrientationPatient: row cosines, column cosines
    spacing: tuple[float, float]  # PixelSpacing: (between rows, between columns)
    rows: int
    columns: int


@dataclass(frozen=True)
class Geometry:
    """Voxel grid ``shape`` (k, j, i) placed in patient space by ``origin`` and ``affine``."""

    shape: tuple[int, int, int]
    origin: np.ndarray  # (3,) patient mm of voxel (0, 0, 0)
    affine: np.ndarray  # (3, 3): patient mm per unit step of i, j, k (columns)
    tilt_deg: float = 0.0  # angle between the slice step and the slice normal
    notes: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        object.__setattr__(self, "_inverse", np.linalg.inv(self.affine))

    @property
    def spacing(self) -> np.ndarray:
        """Length (mm) of one step along i, j, k."""
        return np.linalg.norm(self.affine, axis=0)

    @property
    def normal(self) -> np.ndarray:
        """Unit normal of the slices (row direction x column direction)."""
        n = np.cross(self.affine[:, 0], self.affine[:, 1])
        return n / np.linalg.norm(n)

    @property
    def slice_gap(self) -> float:
        """Distance (mm) between neighbouring slice planes, measured along the normal."""
        return float(abs(self.affine[:, 2] @ self.normal))

    @property
    def sheared(self) -> bool:
        """True when the grid axes are not orthogonal (gantry tilt)."""
        unit = self.affine / self.spacing
        return bool(np.abs(unit.T @ unit - np.eye(3)).max() > 1e-6)

    def to_patient(self, ijk: np.ndarray | Sequence[float]) -> np.ndarray:
        """Patient mm of continuous index ``(i, j, k)`` (last axis of size 3)."""
        return np.asarray(ijk, np.float64) @ self.affine.T + self.origin

    def to_index(self, xyz: np.ndarray | Sequence[float]) -> np.ndarray:
        """Continuous index ``(i, j, k)`` of patient point(s) ``xyz`` (last axis of size 3)."""
        inv: np.ndarray = self._inverse  # type: ignore[attr-defined]
        return (np.asarray(xyz, np.float64) - self.origin) @ inv.T

    def corners(self) -> np.ndarray:
        """The 8 corner voxel centres in patient mm, shape (8, 3)."""
        nk, nj, ni = self.shape
        idx = np.array([[i, j, k] for i in (0, ni - 1) for j in (0, nj - 1) for k in (0, nk - 1)])
        return self.to_patient(idx)

    @property
    def center(self) -> np.ndarray:
        """Patient mm of the volume's centre."""
        nk, nj, ni = self.shape
        return self.to_patient([(ni - 1) / 2, (nj - 1) / 2, (nk - 1) / 2])

    def describe(self) -> dict[str, object]:
        """JSON-ready summary for the API (shape, spacing, tilt, affine)."""
        return {
            "shape": list(self.shape),
            "spacing_mm": [round(float(s), 4) for s in self.spacing],
            "slice_gap_mm": round(self.slice_gap, 4),
            "origin": [round(float(v), 4) for v in self.origin],
            "affine": [[round(float(v), 6) for v in row] for row in self.affine],
            "tilt_deg": round(self.tilt_deg, 3),
            "notes": list(self.notes),
        }


@dataclass(frozen=True)
class Stack:
    """Slices ordered along their normal, with the geometry that places them."""

    order: list[int]  # indices into the input, first slice first
    positions: np.ndarray  # (n,) distance (mm) of each ordered slice from the first, along the line
    geometry: Geometry  # of the output grid (uniform: resample when ``uneven``)
    uneven: bool


def stack_geometry(slices: Sequence[SliceGeometry]) -> Stack:
    """Order ``slices`` into one volume, or raise :class:`GeometryError` saying why not."""
    if len(slices) < 2:
        raise GeometryError("3D needs a series of at least 2 slices")
    first = slices[0]
    cosines = np.array(first.orientation, np.float64)
    if cosines.shape != (6,):
        raise GeometryError("ImageOrientationPatient must hold 6 values")
    for s in slices[1:]:
        if np.abs(np.array(s.orientation) - cosines).max() > ORIENTATION_TOLERANCE:
            raise GeometryError(
                "slices have different orientations (a localizer or several stacks in one "
                "series); choose a series with one stack of parallel slices"
            )
        if (s.rows, s.columns) != (first.rows, first.columns):
            raise GeometryError("slices have different sizes (rows x columns)")
        if np.abs(np.array(s.spacing) - first.spacing).max() > 1e-4:
            raise GeometryError("slices have different pixel spacing")
    row_dir, col_dir = _unit(cosines[:3]), _unit(cosines[3:])
    normal = _unit(np.cross(row_dir, col_dir))
    pos = np.array([s.position for s in slices], np.float64)
    heights = pos @ normal
    order = [int(i) for i in np.argsort(heights, kind="stable")]
    pos, heights = pos[order], heights[order]
    gaps = np.diff(heights)
    if gaps.min() < 1e-3:
        k = int(np.argmin(gaps))
        raise GeometryError(
            f"two slices share the position {heights[k]:.2f} mm along the normal (several "
            "acquisitions, echoes or phases in one series); 3D needs one slice per position"
        )
    step_line = pos[-1] - pos[0]
    direction = _unit(step_line)
    along = (pos - pos[0]) @ direction
    off_line = pos - pos[0] - np.outer(along, direction)
    if np.linalg.norm(off_line, axis=1).max() > LINE_TOLERANCE_MM:
        raise GeometryError(
            "slice positions do not lie on a straight line (a curved or reassembled stack)"
        )
    step_gaps = np.diff(along)
    typical = float(np.median(step_gaps))
    if step_gaps.max() > MAX_GAP_RATIO * typical:
        k = int(np.argmax(step_gaps))
        raise GeometryError(
            f"a gap of {step_gaps[k]:.2f} mm between slices {k + 1} and {k + 2} (typical "
            f"{typical:.2f} mm): slices are missing from the series"
        )
    uneven = bool(np.abs(step_gaps - typical).max() > max(EVEN_TOLERANCE * typical, 0.01))
    n = len(slices)
    if uneven:
        n = int(round(along[-1] / typical)) + 1
        step = direction * (along[-1] / (n - 1))
    else:
        step = step_line / (len(slices) - 1)
    dy, dx = (float(v) for v in first.spacing)
    if dx <= 0 or dy <= 0:
        raise GeometryError("PixelSpacing must be positive")
    affine = np.column_stack([row_dir * dx, col_dir * dy, step])
    cos_tilt = min(1.0, abs(float(_unit(step) @ normal)))
    tilt = float(np.degrees(np.arccos(cos_tilt)))
    notes = []
    if tilt > 0.01:
        notes.append(f"gantry tilt {tilt:.2f} degrees: slices placed on a sheared grid")
    if uneven:
        notes.append(
            f"uneven slice spacing ({step_gaps.min():.2f}-{step_gaps.max():.2f} mm): "
            f"resampled to {float(np.linalg.norm(step)):.3f} mm"
        )
    geometry = Geometry(
        shape=(n, first.rows, first.columns),
        origin=pos[0].copy(),
        affine=affine,
        tilt_deg=tilt,
        notes=tuple(notes),
    )
    return Stack(order=order, positions=along, geometry=geometry, uneven=uneven)


def _unit(v: np.ndarray) -> np.ndarray:
    norm = float(np.linalg.norm(v))
    if norm < 1e-9:
        raise GeometryError("a zero-length direction in ImageOrientationPatient or positions")
    return np.asarray(v, np.float64) / norm
