"""Volume rendering: a ray caster over a reduced copy of the volume, with presets.

Rays are cast in the volume's own index space (straight there too, tilted grids
included) through a working copy reduced to about ``VR_SPACING_MM`` voxels;
values go through a transfer function (opacity and colour by value: the
presets, or points the client sends), are shaded with a headlight (Phong on
the value gradient) and composited front to back until the ray is opaque.
The caster is compiled by numba: numpy/scipy sampling of the same rays
measured 2-3 s a frame on this machine (``bench/volume_3d.py``), the compiled
caster a fraction of a second.

Image quality: rays start at a fixed per-pixel fraction of a step (no rings of
equal sample depth, "wood grain"), the first sample of each visible run is moved
onto the transparent-to-visible crossing by bisection, normals come from a
lightly smoothed copy (no bands from a hard-edged object's voxel staircase), and
opacities are given per mm and corrected for the sample step.  Measured on the
bench's chest CT: about 10-20 % more time per frame, one more float32 copy
(``tests/test_volume_vr.py`` holds the shading tests).

Cameras are orthographic: one of six standard orientations turned by azimuth,
elevation and roll, zoom in mm per pixel and a pan centre.  A virtual scalpel
(:mod:`radcloud.volume.scalpel`) hides voxels through a mask at the working
copy's resolution.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numba
import numpy as np

from radcloud.errors import BadQuery
from radcloud.volume.geometry import Geometry
from radcloud.volume.kernels import trilinear, trilinear_inside

#: Target voxel size (mm) of the working copy rays are cast through.
VR_SPACING_MM = 1.2
#: Edge (voxels of the working copy) of the bricks skipped when fully transparent.
BLOCK = 4
#: Largest working copy (voxels); coarser spacing beyond it.
MAX_PROXY_VOXELS = 40_000_000
LUT_SIZE = 4096
#: Bisection halvings that place the first sample of a visible run on its crossing
#: (1/32 of a step).
REFINE = 5
#: Gaussian sigma (voxels of the working copy) of the copy normals are taken from.
NORMAL_SIGMA = 1.3

#: (forward = view direction, screen down) of each standard orientation, LPS axes.
ORIENTATIONS: dict[str, tuple[tuple[float, float, float], tuple[float, float, float]]] = {
    "anterior": ((0, 1, 0), (0, 0, -1)),
    "posterior": ((0, -1, 0), (0, 0, -1)),
    "left": ((-1, 0, 0), (0, 0, -1)),
    "right": ((1, 0, 0), (0, 0, -1)),
    "superior": ((0, 0, -1), (0, 1, 0)),
    "inferior": ((0, 0, 1), (0, 1, 0)),
}

#: Transfer-function presets: opacity points (value, opacity per mm) and colour points
#: (value, (r, g, b)).  Values are HU, except for ``relative`` presets (MR), where they
#: are fractions of the volume's value range.
PRESETS: dict[str, dict[str, Any]] = {
    "bone": {
        "opacity": [(100, 0.0), (250, 0.15), (500, 0.6), (1500, 0.9)],
        "color": [(100, (0.75, 0.45, 0.3)), (300, (0.95, 0.85, 0.7)), (1000, (1.0, 1.0, 0.95))],
    },
    "lung": {
        "opacity": [(-1000, 0.0), (-900, 0.0), (-700, 0.04), (-500, 0.12), (-300, 0.0)],
        "color": [(-900, (0.55, 0.7, 0.9)), (-500, (0.9, 0.75, 0.7))],
    },
    "vessels": {  # CT angiography: contrast-filled vessels, then bone
        "opacity": [(120, 0.0), (200, 0.25), (350, 0.6), (700, 0.85)],
        "color": [(120, (0.6, 0.05, 0.05)), (250, (0.9, 0.25, 0.2)), (600, (1.0, 0.95, 0.9))],
    },
    "skin": {
        "opacity": [(-600, 0.0), (-400, 0.6), (200, 0.9)],
        "color": [(-600, (0.85, 0.6, 0.5)), (0, (0.95, 0.75, 0.65))],
    },
    "mra": {  # bright flow in MR angiography: the top of the value range
        "relative": True,
        "opacity": [(0.25, 0.0), (0.45, 0.3), (0.8, 0.9)],
        "color": [(0.25, (0.8, 0.2, 0.15)), (0.8, (1.0, 0.95, 0.9))],
    },
}


@dataclass
class VRSettings:
    """What a VR view asks for; ``opacity``/``color`` points replace the preset's."""

    preset: str = "bone"
    opacity: list[tuple[float, float]] | None = None
    color: list[tuple[float, tuple[float, float, float]]] | None = None
    shading: bool = True
    orientation: str = "anterior"
    azimuth: float = 0.0
    elevation: float = 0.0
    roll: float = 0.0
    pixel_mm: float | None = None
    center: tuple[float, float, float] | None = None
    cuts: list[dict[str, Any]] = field(default_factory=list)

    def describe(self) -> dict[str, Any]:
        return {
            "preset": self.preset,
            "shading": self.shading,
            "orientation": self.orientation,
            "azimuth": self.azimuth,
            "elevation": self.elevation,
            "roll": self.roll,
            "cuts": len(self.cuts),
        }


@dataclass
class Proxy:
    """The reduced working copy rays are cast through."""

    data: np.ndarray  # (k, j, i) float32
    geometry: Geometry
    value_range: tuple[float, float]
    block_min: np.ndarray  # (k, j, i) per BLOCK^3 voxels: for empty-space skipping
    block_max: np.ndarray
    smooth: np.ndarray  # data smoothed by NORMAL_SIGMA: for normals only
    masks: dict[str, np.ndarray] = field(default_factory=dict)  # scalpel masks by cuts key
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def nbytes(self) -> int:
        masks = sum(int(m.nbytes) for m in self.masks.values())
        return int(self.data.nbytes) + int(self.smooth.nbytes) + masks


def make_proxy(data: np.ndarray, geometry: Geometry) -> Proxy:
    """Block-average ``data`` to about ``VR_SPACING_MM`` voxels (integer factors per axis)."""
    spacing = geometry.spacing  # i, j, k
    factors = [max(1, int(round(VR_SPACING_MM / float(s)))) for s in spacing]
    while math.prod(-(-n // f) for n, f in zip(data.shape[::-1], factors, strict=True)) > (
        MAX_PROXY_VOXELS
    ):
        factors = [f + 1 for f in factors]
    fi, fj, fk = factors
    reduced = _block_mean(data, (fk, fj, fi))
    affine = geometry.affine * np.array([fi, fj, fk], np.float64)
    # the centre of block 0 sits at index ((f - 1) / 2) of the full grid
    origin = geometry.to_patient([(fi - 1) / 2, (fj - 1) / 2, (fk - 1) / 2])
    proxy_geometry = Geometry(
        shape=reduced.shape, origin=origin, affine=affine, tilt_deg=geometry.tilt_deg
    )
    lo, hi = float(data.min()), float(data.max())
    bmin, bmax = _blocks(reduced)
    reduced = np.ascontiguousarray(reduced, np.float32)
    return Proxy(reduced, proxy_geometry, (lo, hi), bmin, bmax, _smoothed(reduced))


def _smoothed(data: np.ndarray) -> np.ndarray:
    """``data`` under a light Gaussian: normals of a hard-edged object then follow its
    shape instead of its voxel staircase (central differences of the raw values turn
    by 45 or 90 degrees at each step and band the shading)."""
    from scipy import ndimage

    return np.ascontiguousarray(
        ndimage.gaussian_filter(data, NORMAL_SIGMA, mode="nearest", truncate=2.5), np.float32
    )


def _blocks(data: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Minimum and maximum of the values a sample in each BLOCK^3 brick can read.

    Trilinear samples near a brick's faces read the neighbouring bricks' voxels too,
    so each brick's range is widened by its 26 neighbours'.
    """
    from scipy import ndimage

    pad = [(0, -n % BLOCK) for n in data.shape]
    full = np.pad(data, pad, mode="edge")
    lo, hi = full, full
    for axis in range(3):  # one axis at a time: far faster than one 6-D reduction
        shape = list(lo.shape)
        shape[axis : axis + 1] = [shape[axis] // BLOCK, BLOCK]
        lo = lo.reshape(shape).min(axis=axis + 1)
        hi = hi.reshape(shape).max(axis=axis + 1)
    return (
        ndimage.minimum_filter(lo, size=3, mode="nearest"),
        ndimage.maximum_filter(hi, size=3, mode="nearest"),
    )


def _block_mean(data: np.ndarray, factors: Sequence[int]) -> np.ndarray:
    """Mean of each ``factors`` (k, j, i) block, as float32 (the edges that do not fill a
    block are dropped)."""
    out = data
    for axis, f in enumerate(factors):
        if f == 1:
            continue
        n = out.shape[axis] // f * f
        parts = []
        for o in range(f):
            cut = [slice(None)] * 3
            cut[axis] = slice(o, n, f)
            parts.append(out[tuple(cut)])
        total = parts[0].astype(np.float32)
        for p in parts[1:]:
            total += p
        out = total / np.float32(f)
    return np.ascontiguousarray(out, np.float32)


def occupancy(proxy: Proxy, lut: np.ndarray, lut_lo: float, lut_scale: float) -> np.ndarray:
    """uint8 per brick: 1 where some value the brick's samples can read is not transparent."""
    top = len(lut) - 1
    seen = np.concatenate([[0], np.cumsum(lut[:, 3] > 0)])
    lo = np.clip(np.floor((proxy.block_min - lut_lo) * lut_scale).astype(np.int64), 0, top)
    hi = np.clip(np.ceil((proxy.block_max - lut_lo) * lut_scale).astype(np.int64), 0, top)
    return ((seen[hi + 1] - seen[lo]) > 0).astype(np.uint8)


def proxy_of(volume: Any, cache: Any) -> Proxy:
    """The volume's working copy, made once and kept with it (counted in the cache budget)."""
    with _proxy_lock:
        proxy = volume.cache.get("vr_proxy")
        if proxy is None:
            proxy = volume.cache["vr_proxy"] = make_proxy(volume.data, volume.geometry)
            cache.resized()
    assert isinstance(proxy, Proxy)
    return proxy


_proxy_lock = threading.Lock()


# ------------------------------------------------------------------ transfer function

#: Bins of the value histogram the transfer-function editor draws.
HISTOGRAM_BINS = 128


def histogram(volume: Any) -> dict[str, Any]:
    """Counts of the volume's values in ``HISTOGRAM_BINS`` equal bins over its value range.

    Drawn under the transfer-function editor's curve, so that opacity points can be put
    on the peaks of the tissues; counted on every 2nd voxel of each axis (enough for a
    picture) and kept with the volume.
    """
    cached = volume.cache.get("histogram")
    if cached is None:
        lo, hi = (float(x) for x in volume.value_range)
        if hi <= lo:
            hi = lo + 1.0
        sample = volume.data[::2, ::2, ::2]
        counts, _ = np.histogram(sample, bins=HISTOGRAM_BINS, range=(lo, hi))
        cached = volume.cache["histogram"] = {"range": [lo, hi], "counts": counts.tolist()}
    assert isinstance(cached, dict)
    return cached


def transfer_lut(
    settings: VRSettings, value_range: tuple[float, float], step_mm: float
) -> tuple[np.ndarray, float, float]:
    """(LUT of RGBA per sample, value of entry 0, entries per value unit)."""
    preset = PRESETS.get(settings.preset)
    if preset is None:
        raise BadQuery(f"unknown preset {settings.preset!r} ({', '.join(sorted(PRESETS))})")
    opacity = settings.opacity or preset["opacity"]
    color = settings.color or preset["color"]
    lo, hi = value_range
    if hi <= lo:
        hi = lo + 1.0
    scale_points = preset.get("relative", False) and settings.opacity is None

    def to_value(x: float) -> float:
        return lo + float(x) * (hi - lo) if scale_points else float(x)

    values = np.linspace(lo, hi, LUT_SIZE)
    ox = [to_value(p[0]) for p in opacity]
    oy = [min(max(float(p[1]), 0.0), 1.0) for p in opacity]
    if len(ox) < 1 or any(b < a for a, b in zip(ox, ox[1:], strict=False)):
        raise BadQuery("opacity points must be in increasing order of value")
    alpha = np.interp(values, ox, oy)
    alpha = 1.0 - np.power(1.0 - np.minimum(alpha, 0.999), step_mm)  # per mm -> per sample
    cx = [to_value(p[0]) for p in color]
    rgb = np.stack([np.interp(values, cx, [float(p[1][c]) for p in color]) for c in range(3)], 1)
    lut = np.concatenate([rgb, alpha[:, None]], axis=1).astype(np.float32)
    return lut, lo, (LUT_SIZE - 1) / (hi - lo)


# ------------------------------------------------------------------ camera


@dataclass(frozen=True)
class Camera:
    """Orthographic camera: rays along ``forward`` through a ``width`` x ``height`` image."""

    center: np.ndarray
    u: np.ndarray  # screen right
    v: np.ndarray  # screen down
    forward: np.ndarray
    pixel_mm: float
    width: int
    height: int

    def describe(self) -> dict[str, Any]:
        r = lambda a: [round(float(x), 6) for x in a]  # noqa: E731
        return {
            "center": r(self.center),
            "u": r(self.u),
            "v": r(self.v),
            "forward": r(self.forward),
            "pixel_mm": round(self.pixel_mm, 6),
            "width": self.width,
            "height": self.height,
        }

    def project(self, points: np.ndarray) -> np.ndarray:
        """Screen pixel (x, y) of patient points (…, 3)."""
        d = np.asarray(points, np.float64) - self.center
        x = d @ self.u / self.pixel_mm + (self.width - 1) / 2
        y = d @ self.v / self.pixel_mm + (self.height - 1) / 2
        return np.stack([x, y], axis=-1)


def _turn(vec: np.ndarray, axis: np.ndarray, degrees: float) -> np.ndarray:
    a = math.radians(degrees)
    return (
        vec * math.cos(a)
        + np.cross(axis, vec) * math.sin(a)
        + axis * float(axis @ vec) * (1 - math.cos(a))
    )


def camera(settings: VRSettings, geometry: Geometry, width: int, height: int) -> Camera:
    """The camera ``settings`` describe for a volume of ``geometry``."""
    if settings.orientation not in ORIENTATIONS:
        raise BadQuery(
            f"unknown orientation {settings.orientation!r} ({', '.join(sorted(ORIENTATIONS))})"
        )
    fwd, down = (np.array(x, np.float64) for x in ORIENTATIONS[settings.orientation])
    if settings.azimuth:  # turn about the screen's vertical axis
        fwd = _turn(fwd, down, settings.azimuth)
    right = np.cross(down, fwd)
    if settings.elevation:  # about the screen's horizontal axis
        fwd, down = _turn(fwd, right, settings.elevation), _turn(down, right, settings.elevation)
    if settings.roll:
        down = _turn(down, fwd, settings.roll)
    right = np.cross(down, fwd)
    corners = geometry.corners()
    pixel_mm = settings.pixel_mm
    if pixel_mm is None:
        pixel_mm = max(np.ptp(corners @ right) / width, np.ptp(corners @ down) / height) * 1.05
    if not pixel_mm > 0:
        raise BadQuery("pixel_mm must be positive")
    center = np.asarray(
        settings.center if settings.center is not None else geometry.center, np.float64
    )
    if not (np.isfinite(center).all() and np.isfinite(fwd).all() and np.isfinite(down).all()
            and math.isfinite(pixel_mm)):  # fmt: skip
        raise BadQuery("camera parameters must be finite numbers")
    return Camera(center, right, down, fwd, float(pixel_mm), width, height)


# ------------------------------------------------------------------ rendering


def render(
    proxy: Proxy, settings: VRSettings, width: int, height: int
) -> tuple[np.ndarray, dict[str, Any]]:
    """An RGB uint8 image (height, width, 3) and the camera that made it."""
    from radcloud.volume import scalpel

    geometry = proxy.geometry
    cam = camera(settings, geometry, width, height)
    step_mm = float(geometry.spacing.min())
    lut, lut_lo, lut_scale = transfer_lut(settings, proxy.value_range, step_mm)
    inv = np.linalg.inv(geometry.affine)
    depth = float(np.ptp(geometry.corners() @ cam.forward)) / 2 + step_mm
    start = cam.center - depth * cam.forward
    origin = geometry.to_index(
        start - (width - 1) / 2 * cam.pixel_mm * cam.u - (height - 1) / 2 * cam.pixel_mm * cam.v
    )
    mask = scalpel.mask_for(proxy, settings.cuts)
    out = np.zeros((height, width, 3), np.float32)
    _cast(
        proxy.data,
        proxy.smooth,
        occupancy(proxy, lut, lut_lo, lut_scale),
        mask if mask is not None else np.ones((1, 1, 1), np.uint8),
        mask is not None,
        lut,
        float(lut_lo),
        float(lut_scale),
        origin[::-1].astype(np.float64),  # (k, j, i)
        (inv @ (cam.u * cam.pixel_mm))[::-1].astype(np.float64),
        (inv @ (cam.v * cam.pixel_mm))[::-1].astype(np.float64),
        (inv @ (cam.forward * step_mm))[::-1].astype(np.float64),
        int(math.ceil(2 * depth / step_mm)) + 1,
        # index-space gradient -> patient-space gradient, in (k, j, i) order
        inv.T[:, ::-1].astype(np.float64),
        (-cam.forward).astype(np.float64),
        bool(settings.shading),
        out,
    )
    img = np.clip(out * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return img, cam.describe()


@numba.njit(cache=True, inline="always")
def _clip(p: float, d: float, n: int, t0: float, t1: float) -> tuple[float, float]:
    """Narrow the ray interval [t0, t1] to where index p + t d lies in [0, n - 1]."""
    if abs(d) < 1e-12:
        if p < 0.0 or p > n - 1.0:
            return t0, -1.0
        return t0, t1
    ta = (0.0 - p) / d
    tb = (n - 1.0 - p) / d
    if ta > tb:
        ta, tb = tb, ta
    return max(t0, ta), min(t1, tb)


@numba.njit(cache=True, inline="always")
def _exit(k: float, j: float, i: float, bk: int, bj: int, bi: int, dd: np.ndarray) -> float:
    """Steps (of ``dd``) from index (k, j, i) to the boundary of brick (bk, bj, bi)."""
    return min(_leave(k, bk, dd[0]), _leave(j, bj, dd[1]), _leave(i, bi, dd[2]))


@numba.njit(cache=True, inline="always")
def _leave(p: float, b: int, d: float) -> float:
    if d > 1e-12:
        return ((b + 1) * BLOCK - p) / d
    if d < -1e-12:
        return (b * BLOCK - p) / d
    return 1e30


@numba.njit(cache=True, inline="always")
def _jitter(x: int, y: int) -> float:
    """A fixed pseudo-random fraction in [0, 1) per pixel (integer hash: reproducible)."""
    h = (x * 374761393 + y * 668265263) & 0xFFFFFFFF
    h = ((h ^ (h >> 13)) * 1274126177) & 0xFFFFFFFF
    h = h ^ (h >> 16)
    return h / 4294967296.0


@numba.njit(cache=True, inline="always")
def _visible(
    vol: np.ndarray,
    mask: np.ndarray,
    use_mask: bool,
    lut: np.ndarray,
    lut_lo: float,
    lut_scale: float,
    k: float,
    j: float,
    i: float,
) -> bool:
    """Whether the sample at index (k, j, i) has some opacity and is not cut away."""
    nk, nj, ni = vol.shape
    e = int((trilinear(vol, k, j, i) - lut_lo) * lut_scale)
    e = min(max(e, 0), lut.shape[0] - 1)
    if lut[e, 3] <= 0.0:
        return False
    if use_mask:
        kn = min(max(int(k + 0.5), 0), nk - 1)
        jn = min(max(int(j + 0.5), 0), nj - 1)
        i_n = min(max(int(i + 0.5), 0), ni - 1)
        return mask[kn, jn, i_n] != 0
    return True


@numba.njit(parallel=True, cache=True, fastmath=True, nogil=True)
def _cast(  # pragma: no cover - compiled
    vol: np.ndarray,
    smooth: np.ndarray,
    occ: np.ndarray,
    mask: np.ndarray,
    use_mask: bool,
    lut: np.ndarray,
    lut_lo: float,
    lut_scale: float,
    origin: np.ndarray,
    du: np.ndarray,
    dv: np.ndarray,
    dd: np.ndarray,
    n_steps: int,
    grad_to_patient: np.ndarray,
    light: np.ndarray,
    shading: bool,
    out: np.ndarray,
) -> None:
    """Composite front to back along one ray per pixel of ``out``.

    Three things keep a regular sample lattice out of the picture: each ray starts at
    its own fraction of a step (a fixed hash of the pixel), so no two neighbours sample
    the same depths (no "wood-grain" rings); where a ray passes from transparent to
    visible values the crossing is found by bisection (``REFINE`` halvings) and
    sampling restarts there, so surfaces are sampled at the same depth behind the
    crossing whatever the lattice; and normals are central differences (±1 voxel) of
    ``smooth``, a lightly smoothed copy, so a hard-edged object's voxel staircase does
    not band the shading.
    """
    nk, nj, ni = vol.shape
    height, width = out.shape[0], out.shape[1]
    top = lut.shape[0] - 1
    for y in numba.prange(height):
        for x in range(width):
            p0 = origin[0] + x * du[0] + y * dv[0]
            p1 = origin[1] + x * du[1] + y * dv[1]
            p2 = origin[2] + x * du[2] + y * dv[2]
            # clip the ray to the volume box: t in [t0, t1]
            t0, t1 = _clip(p0, dd[0], nk, 0.0, float(n_steps))
            t0, t1 = _clip(p1, dd[1], nj, t0, t1)
            t0, t1 = _clip(p2, dd[2], ni, t0, t1)
            r = 0.0
            g = 0.0
            b = 0.0
            trans = 1.0
            t = math.floor(t0) + _jitter(x, y)
            if t < t0:
                t += 1.0
            clear = True  # the previous sample was transparent (or there was none)
            while t <= t1 and trans > 0.02:
                k = p0 + t * dd[0]
                j = p1 + t * dd[1]
                i = p2 + t * dd[2]
                bk = int(k) // BLOCK
                bj = int(j) // BLOCK
                bi = int(i) // BLOCK
                if occ[bk, bj, bi] == 0:  # transparent brick: jump to where the ray leaves it
                    t += max(1.0, math.floor(_exit(k, j, i, bk, bj, bi, dd)) + 1.0)
                    clear = True
                    continue
                if 0.0 <= k < nk - 1.0 and 0.0 <= j < nj - 1.0 and 0.0 <= i < ni - 1.0:
                    val = trilinear_inside(vol, k, j, i)
                else:
                    val = trilinear(vol, k, j, i)
                e = int((val - lut_lo) * lut_scale)
                e = min(max(e, 0), top)
                alpha = lut[e, 3]
                kn = min(max(int(k + 0.5), 0), nk - 1)
                jn = min(max(int(j + 0.5), 0), nj - 1)
                i_n = min(max(int(i + 0.5), 0), ni - 1)
                if alpha <= 0.0 or (use_mask and mask[kn, jn, i_n] == 0):
                    clear = True
                    t += 1.0
                    continue
                if clear:  # entering visible values: restart at the crossing
                    lo = max(t - 1.0, t0)
                    hi = t
                    for _ in range(REFINE):
                        mid = 0.5 * (lo + hi)
                        if _visible(
                            vol, mask, use_mask, lut, lut_lo, lut_scale,
                            p0 + mid * dd[0], p1 + mid * dd[1], p2 + mid * dd[2],
                        ):  # fmt: skip
                            hi = mid
                        else:
                            lo = mid
                    t = hi
                    k = p0 + t * dd[0]
                    j = p1 + t * dd[1]
                    i = p2 + t * dd[2]
                    e = int((trilinear(vol, k, j, i) - lut_lo) * lut_scale)
                    e = min(max(e, 0), top)
                    alpha = lut[e, 3]
                    clear = False
                t += 1.0
                shade = 1.0
                spec = 0.0
                if shading:  # central differences of the smoothed copy
                    gk = trilinear(smooth, k + 1.0, j, i) - trilinear(smooth, k - 1.0, j, i)
                    gj = trilinear(smooth, k, j + 1.0, i) - trilinear(smooth, k, j - 1.0, i)
                    gi = trilinear(smooth, k, j, i + 1.0) - trilinear(smooth, k, j, i - 1.0)
                    gx = grad_to_patient[0, 0] * gk + grad_to_patient[0, 1] * gj
                    gx += grad_to_patient[0, 2] * gi
                    gy = grad_to_patient[1, 0] * gk + grad_to_patient[1, 1] * gj
                    gy += grad_to_patient[1, 2] * gi
                    gz = grad_to_patient[2, 0] * gk + grad_to_patient[2, 1] * gj
                    gz += grad_to_patient[2, 2] * gi
                    norm = math.sqrt(gx * gx + gy * gy + gz * gz)
                    if norm > 1e-6:
                        cos = abs(gx * light[0] + gy * light[1] + gz * light[2]) / norm
                        shade = 0.25 + 0.75 * cos
                        spec = 0.3 * cos**24
                w = trans * alpha
                r += w * (lut[e, 0] * shade + spec)
                g += w * (lut[e, 1] * shade + spec)
                b += w * (lut[e, 2] * shade + spec)
                trans *= 1.0 - alpha
            out[y, x, 0] = r
            out[y, x, 1] = g
            out[y, x, 2] = b
