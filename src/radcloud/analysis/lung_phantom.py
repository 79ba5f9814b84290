"""A 3D chest phantom with a known bronchial tree, arteries, veins, fissures and lobes.

The step-2 parts of the lung module (airway generations, artery/vein
separation, lobes, meshes) are measured against it.  Drawn directly as a
volume in patient millimetres (LPS: +x left, +y posterior, +z superior), so
every structure has an exact ground truth:

* lungs: two domes, right at -x, left at +x, with a diaphragm dome below;
* bronchial tree (air lumen, soft-tissue wall, calibre falling with
  generation): trachea (generation 0) -> main bronchi (1) -> lobar bronchi (2:
  right upper, middle, lower; left upper, lower) -> segmental bronchi (3: 18 in
  all, 3/2/5 right, 4/4 left) -> two subsegmental bronchi each (4);
* pulmonary arteries run alongside every bronchus (and fork on beyond the
  subsegmental bronchi); veins start at the mediastinum and run to points on
  the boundaries between segments.  Both at contrast-like +250 HU, so only
  their course tells them apart;
* oblique fissures (both lungs) and the right horizontal fissure: sheets about
  1 mm thick, -100 HU, smeared by the voxel size, dividing five lobes.

Noise is Gaussian (``noise`` HU).  Values are partial-volume blended at edges,
so the masks of the truth are "at least half a voxel inside".
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from radcloud.volume.build import Volume
from radcloud.volume.geometry import Geometry

LUNG_HU, VESSEL_HU, WALL_HU, AIR_HU = -850.0, 250.0, 40.0, -1000.0
FISSURE_HU, FISSURE_MM = -100.0, 1.0

#: lobe numbers used in every lobe label map of the lung module
LOBES = {1: "RUL", 2: "RML", 3: "RLL", 4: "LUL", 5: "LLL"}
#: segments per lobe (Boyden numbering; left S1+2 and S7+8 combined -> 18)
SEGMENTS: dict[str, tuple[str, ...]] = {
    "RUL": ("RS1", "RS2", "RS3"),
    "RML": ("RS4", "RS5"),
    "RLL": ("RS6", "RS7", "RS8", "RS9", "RS10"),
    "LUL": ("LS1+2", "LS3", "LS4", "LS5"),
    "LLL": ("LS6", "LS7+8", "LS9", "LS10"),
}
LUNG_CENTER_X, LUNG_CENTER_Y, LUNG_AX, LUNG_AY = 72.0, 5.0, 52.0, 78.0
LUNG_BASE, LUNG_WAIST, LUNG_APEX = 20.0, 100.0, 250.0
HILUM = {-1.0: np.array([-45.0, 4.0, 160.0]), 1.0: np.array([48.0, 8.0, 150.0])}
CARINA = np.array([0.0, -2.0, 178.0])


@dataclass(frozen=True)
class Tube:
    """One straight piece of a tree: from ``p0`` to ``p1`` (mm), lumen radius ``r``."""

    p0: np.ndarray
    p1: np.ndarray
    r: float
    generation: int
    lobe: int  # 0 outside the lobes (trachea, main bronchi)
    name: str = ""
    wall: float = 0.0

    @property
    def mid(self) -> np.ndarray:
        return (self.p0 + self.p1) / 2.0


@dataclass
class LungPhantom:
    """The volume and its ground truth, all arrays shaped like ``volume.data`` ([k, j, i])."""

    volume: Volume
    lungs: np.ndarray  # uint8: 1 right, 2 left (parenchyma incl. intrapulmonary vessels/airways)
    lobes: np.ndarray  # uint8: 1..5 as LOBES
    segments: np.ndarray  # uint8: 1..18 in SEGMENTS order
    airway: np.ndarray  # bool: airway lumen
    airway_generation: np.ndarray  # int8: generation of the lumen voxel, -1 elsewhere
    arteries: np.ndarray  # bool
    veins: np.ndarray  # bool
    fissures: np.ndarray  # bool: voxels within half a voxel of a fissure sheet, inside the lungs
    bronchi: list[Tube] = field(default_factory=list)
    artery_tubes: list[Tube] = field(default_factory=list)
    vein_tubes: list[Tube] = field(default_factory=list)
    segment_names: list[str] = field(default_factory=list)

    @property
    def spacing(self) -> tuple[float, float, float]:
        """(k, j, i) voxel size in mm."""
        s = self.volume.geometry.spacing
        return float(s[2]), float(s[1]), float(s[0])


# ----------------------------------------------------------------------- anatomy


def lung_inside(x: np.ndarray, y: np.ndarray, z: np.ndarray, side: float) -> np.ndarray:
    """True inside one lung (``side`` -1 right, +1 left) at patient points (mm)."""
    cx = side * LUNG_CENTER_X
    dz = np.clip((z - LUNG_WAIST) / (LUNG_APEX - LUNG_WAIST), 0.0, None)
    scale = np.sqrt(np.clip(1.0 - dz**2, 0.0, None))
    u = (x - cx) / LUNG_AX
    v = (y - LUNG_CENTER_Y) / LUNG_AY
    rho2 = (u * u + v * v) / np.maximum(scale, 1e-6) ** 2
    dome = LUNG_BASE + 30.0 * np.clip(1.0 - u * u - v * v, 0.0, None)
    if side < 0:
        dome = dome + 12.0  # the liver lifts the right hemidiaphragm
    return (rho2 <= 1.0) & (z > dome) & (z < LUNG_APEX)


def oblique_z(y: np.ndarray, side: float) -> np.ndarray:
    """Height of the oblique fissure over posterior position ``y``: lower lobe below it."""
    zh = 152.0 if side < 0 else 145.0
    return zh + 1.1 * (y - 5.0)


def horizontal_z(y: np.ndarray) -> np.ndarray:
    """Height of the right horizontal fissure (upper lobe above, middle below)."""
    return 165.0 + 0.1 * y


def lobe_of(x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
    """Lobe number (1..5) a patient point falls in by the fissure planes (0 outside lungs)."""
    right = lung_inside(x, y, z, -1.0)
    left = lung_inside(x, y, z, 1.0)
    out = np.zeros(np.broadcast(x, y, z).shape, np.uint8)
    lower_r = z < oblique_z(y, -1.0)
    lower_l = z < oblique_z(y, 1.0)
    upper_r = z >= horizontal_z(y)
    out[right & lower_r] = 3
    out[right & ~lower_r & upper_r] = 1
    out[right & ~lower_r & ~upper_r] = 2
    out[left & lower_l] = 5
    out[left & ~lower_l] = 4
    return out


def _fissure_distance(x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
    """Distance (mm) to the nearest fissure sheet, measured along each plane's normal."""
    k = 1.1 / math.sqrt(1.0 + 1.1**2)
    c = 1.0 / math.sqrt(1.0 + 1.1**2)
    d_r = np.abs(z - oblique_z(y, -1.0)) * c
    d_l = np.abs(z - oblique_z(y, 1.0)) * c
    d_h = np.abs(z - horizontal_z(y)) / math.sqrt(1.0 + 0.01)
    d_h = np.where(z >= oblique_z(y, -1.0) - 0.5 / k, d_h, np.inf)  # only ahead of the oblique
    return np.where(x < 0, np.minimum(d_r, d_h), d_l)


# ------------------------------------------------------------------------ trees


def _lobe_points(rng: np.random.Generator, lobe: int, n: int) -> np.ndarray:
    """``n`` points spread through one lobe (rejection sampling in its bounding box)."""
    side = -1.0 if lobe <= 3 else 1.0
    lo = np.array([side * LUNG_CENTER_X - LUNG_AX, LUNG_CENTER_Y - LUNG_AY, LUNG_BASE])
    hi = np.array([side * LUNG_CENTER_X + LUNG_AX, LUNG_CENTER_Y + LUNG_AY, LUNG_APEX])
    pts: list[np.ndarray] = []
    count = 0
    while count < n:
        p = rng.uniform(lo, hi, (8 * n, 3))
        keep = p[lobe_of(p[:, 0], p[:, 1], p[:, 2]) == lobe]
        pts.append(keep)
        count += len(keep)
    return np.concatenate(pts)[:n]


def _split(points: np.ndarray, parts: int) -> list[np.ndarray]:
    """Split a cloud into ``parts`` compact groups by recursive halving along its widest axis."""
    groups = [points]
    while len(groups) < parts:
        groups.sort(key=len, reverse=True)
        g = groups.pop(0)
        axis = np.linalg.svd(g - g.mean(0), full_matrices=False)[2][0]
        order = np.argsort((g - g.mean(0)) @ axis)
        groups += [g[order[: len(g) // 2]], g[order[len(g) // 2 :]]]
    return groups


def _bronchial_tree(rng: np.random.Generator) -> tuple[list[Tube], list[list[np.ndarray]]]:
    """Airway tubes, and for each lobe the point clouds of its segments (same order)."""
    tubes = [Tube(np.array([0.0, -10.0, 265.0]), CARINA, 8.5, 0, 0, "trachea")]
    tubes.append(Tube(CARINA, HILUM[-1.0], 6.5, 1, 0, "right main bronchus"))
    tubes.append(Tube(CARINA, HILUM[1.0], 6.0, 1, 0, "left main bronchus"))
    seg_clouds: list[list[np.ndarray]] = []
    seg_index = 0
    for lobe, name in LOBES.items():
        side = -1.0 if lobe <= 3 else 1.0
        hilum = HILUM[side]
        cloud = _lobe_points(rng, lobe, 3000)
        centre = cloud.mean(0)
        # the lobar bronchus: from the hilum a third of the way to the lobe's centre
        end = hilum + (centre - hilum) * 0.35
        tubes.append(Tube(hilum, end, 4.2, 2, lobe, f"{name} bronchus"))
        groups = _split(cloud, len(SEGMENTS[name]))
        # name segments by position: sort by height then front-to-back (stable, approximate)
        groups.sort(key=lambda g: (-g[:, 2].mean(), g[:, 1].mean()))
        seg_clouds.append(groups)
        for g in groups:
            seg_index += 1
            target = g.mean(0)
            seg_end = end + (target - end) * 0.55
            tubes.append(Tube(end, seg_end, 2.6, 3, lobe, f"segment {seg_index}"))
            for half in _split(g, 2):
                sub_end = seg_end + (half.mean(0) - seg_end) * 0.6
                tubes.append(Tube(seg_end, sub_end, 1.7, 4, lobe, f"segment {seg_index}"))
    return [_with_wall(t) for t in tubes], seg_clouds


def _with_wall(t: Tube) -> Tube:
    return Tube(t.p0, t.p1, t.r, t.generation, t.lobe, t.name, wall=max(0.8, 0.18 * t.r))


def _open_end(t: Tube) -> Tube:
    """The lumen of a last-generation bronchus runs on through its wall into the lung."""
    if t.generation < 4:
        return t
    d = (t.p1 - t.p0) / float(np.linalg.norm(t.p1 - t.p0))
    return Tube(t.p0, t.p1 + d * (t.wall + 1.0), t.r, t.generation, t.lobe, t.name, t.wall)


def _perpendicular(d: np.ndarray, side: float) -> np.ndarray:
    """A unit vector across ``d``, leaning lateral-posterior (where arteries lie)."""
    want = np.array([side * 0.6, 0.8, 0.0])
    u = want - d * float(want @ d)
    n = float(np.linalg.norm(u))
    if n < 1e-6:
        u = np.cross(d, [0.0, 0.0, 1.0])
        n = float(np.linalg.norm(u))
    return u / n


def _arteries(rng: np.random.Generator, bronchi: list[Tube]) -> list[Tube]:
    """An artery beside every bronchus within the lungs, forking on twice beyond the last."""
    ends: dict[tuple[float, ...], np.ndarray] = {}
    out: list[Tube] = []
    for b in bronchi:
        if b.generation < 1:
            continue
        side = -1.0 if b.p1[0] < 0 else 1.0
        d = (b.p1 - b.p0) / float(np.linalg.norm(b.p1 - b.p0))
        r = 0.85 * (b.r + b.wall) if b.generation > 1 else 7.0
        offset = _perpendicular(d, side) * (b.r + b.wall + r + 1.0)
        start = ends.get(tuple(np.round(b.p0, 3)), b.p0 + offset)
        stop = b.p1 + offset
        ends[tuple(np.round(b.p1, 3))] = stop
        out.append(Tube(start, stop, r, b.generation, b.lobe, "artery"))
        if b.generation == 4:
            stack = [(stop, d, r * 0.8, 5)]
            while stack:
                p, dd, rr, gen = stack.pop()
                for _ in range(2):
                    nd = dd + rng.normal(0.0, 0.45, 3)
                    nd /= float(np.linalg.norm(nd))
                    q = p + nd * rr * 9.0
                    if lobe_of(*q) != b.lobe:
                        continue
                    out.append(Tube(p, q, rr, gen, b.lobe, "artery"))
                    if gen < 6:
                        stack.append((q, nd, rr * 0.8, gen + 1))
    return out


def _veins(rng: np.random.Generator, seg_clouds: list[list[np.ndarray]]) -> list[Tube]:
    """Veins from the mediastinum to points on the boundaries between segments."""
    out: list[Tube] = []
    for lobe, groups in zip(LOBES, seg_clouds, strict=True):
        side = -1.0 if lobe <= 3 else 1.0
        root = np.array(
            [side * 14.0, 8.0 if lobe in (3, 5) else -10.0, 112.0 if lobe in (3, 5) else 138.0]
        )
        cloud = np.concatenate(groups)
        owner = np.concatenate([np.full(len(g), i) for i, g in enumerate(groups)])
        centres = np.array([g.mean(0) for g in groups])
        d = np.linalg.norm(cloud[:, None, :] - centres[None], axis=2)
        two = np.sort(d, axis=1)
        between = (two[:, 1] - two[:, 0]) < 6.0  # near the boundary of two segments
        if lobe in (1, 4):  # also between the lobe's upper segments and the fissure
            between |= two[:, 0] > np.percentile(two[:, 0], 85)
        pts = cloud[between & (owner >= 0)]
        pts = pts[rng.permutation(len(pts))[:48]]
        # trunk to the lobe's hilar edge, then a bisecting tree over the targets
        # superior veins enter in front of and below the hilum, inferior veins well below it
        lower = lobe in (3, 5)
        entry = HILUM[side] + np.array(
            [side * 2.0, 8.0 if lower else -18.0, -40.0 if lower else -16.0]
        )
        out.append(Tube(root, entry, 5.5, 1, lobe, "vein"))
        out += _bisect(rng, entry, pts, lobe)
    return out


def _bisect(rng: np.random.Generator, root: np.ndarray, pts: np.ndarray, lobe: int) -> list[Tube]:
    """Vein branches filling ``pts`` by recursive halving (radii by Murray's law)."""
    out: list[Tube] = []
    stack = [(root, pts, 2)]
    while stack:
        start, terr, gen = stack.pop()
        centroid = terr.mean(0)
        leaf = len(terr) <= 3
        target = centroid if leaf else start + (centroid - start) * rng.uniform(0.5, 0.7)
        radius = min(4.5, 1.0 * (len(terr) / 3) ** (1 / 3))
        out.append(Tube(start, target, radius, gen, lobe, "vein"))
        if leaf:
            continue
        for half in _split(terr, 2):
            stack.append((target, half, gen + 1))
    return out


# -------------------------------------------------------------------- painting


def _grid(geometry: Geometry) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    nk, nj, ni = geometry.shape
    x = geometry.origin[0] + np.arange(ni) * geometry.affine[0, 0]
    y = geometry.origin[1] + np.arange(nj) * geometry.affine[1, 1]
    z = geometry.origin[2] + np.arange(nk) * geometry.affine[2, 2]
    return x, y, z


def _tube_fields(
    geometry: Geometry, tubes: list[Tube], extra: float
) -> tuple[np.ndarray, np.ndarray]:
    """(phi, owner): min over tubes of distance-to-axis minus (radius + ``extra``), and which."""
    x, y, z = _grid(geometry)
    phi = np.full(geometry.shape, np.inf, np.float32)
    owner = np.full(geometry.shape, -1, np.int32)
    lo0 = np.array([x[0], y[0], z[0]])
    step = np.array([x[1] - x[0], y[1] - y[0], z[1] - z[0]])
    dims = np.array([len(x), len(y), len(z)])
    for n, t in enumerate(tubes):
        reach = t.r + max(extra, 0.0) + t.wall + 2.0 * float(step.max())
        a = np.minimum(t.p0, t.p1) - reach
        b = np.maximum(t.p0, t.p1) + reach
        ia = np.clip(np.floor((a - lo0) / step).astype(int), 0, dims)
        ib = np.clip(np.ceil((b - lo0) / step).astype(int) + 1, 0, dims)
        if np.any(ib <= ia):
            continue
        xs = x[ia[0] : ib[0]][None, None, :]
        ys = y[ia[1] : ib[1]][None, :, None]
        zs = z[ia[2] : ib[2]][:, None, None]
        d = t.p1 - t.p0
        dd = float(d @ d) or 1.0
        s = np.clip(((xs - t.p0[0]) * d[0] + (ys - t.p0[1]) * d[1] + (zs - t.p0[2]) * d[2]) / dd,
                    0.0, 1.0)  # fmt: skip
        dist = np.sqrt((xs - t.p0[0] - s * d[0]) ** 2 + (ys - t.p0[1] - s * d[1]) ** 2
                       + (zs - t.p0[2] - s * d[2]) ** 2)  # fmt: skip
        val = (dist - t.r - (t.wall if extra < 0 else extra)).astype(np.float32)
        box = (slice(ia[2], ib[2]), slice(ia[1], ib[1]), slice(ia[0], ib[0]))
        better = val < phi[box]
        phi[box][better] = val[better]
        owner[box][better] = n
    return phi, owner


def _alpha(phi: np.ndarray, voxel: float) -> np.ndarray:
    """Partial-volume fraction of a voxel inside ``phi < 0`` (linear over one voxel)."""
    return np.clip(0.5 - phi / voxel, 0.0, 1.0).astype(np.float32)


def lung_phantom(
    spacing: tuple[float, float, float] = (1.6, 1.6, 1.6),
    *,
    seed: int = 0,
    noise: float = 15.0,
    size: tuple[int, int, int] | None = None,
) -> LungPhantom:
    """Build the phantom on a grid of ``spacing`` (x, y, z mm) covering the chest.

    ``size`` (columns, rows, slices) sets the grid, centred on the chest, e.g.
    (512, 512, 300) for a full-size CT; by default it just covers the body.
    z grows with the slice index (slice 0 at the feet end), so a caller also
    sees a volume stored base-first.
    """
    rng = np.random.default_rng([seed, 4242])
    sx, sy, sz = spacing
    ni, nj, nk = size or (int(round(330 / sx)), int(round(250 / sy)), int(round(262 / sz)))
    centre = np.array([0.0, 5.0, 139.0])
    origin = centre - (np.array([ni, nj, nk], float) - 1) / 2 * np.array([sx, sy, sz])
    geometry = Geometry(shape=(nk, nj, ni), origin=origin, affine=np.diag([sx, sy, sz]))
    x, y, z = _grid(geometry)
    X, Y, Z = x[None, None, :], y[None, :, None], z[:, None, None]  # noqa: N806
    voxel = float(np.mean(spacing))

    bronchi, seg_clouds = _bronchial_tree(rng)
    arteries = _arteries(rng, bronchi)
    veins = _veins(rng, seg_clouds)

    body = ((X / 150.0) ** 2 + ((Y - 5.0) / 110.0) ** 2 <= 1.0) & (Z > -1e9)
    inner = (X / 138.0) ** 2 + ((Y - 5.0) / 98.0) ** 2 <= 1.0
    hu = np.full(geometry.shape, AIR_HU, np.float32)
    hu[np.broadcast_to(body, hu.shape)] = -100.0
    hu[np.broadcast_to(inner, hu.shape)] = WALL_HU
    right = lung_inside(X, Y, Z, -1.0)
    left = lung_inside(X, Y, Z, 1.0)
    lung_any = right | left
    hu[lung_any] = LUNG_HU

    fd = _fissure_distance(X, Y, Z)
    sigma = max(0.5, voxel / 2.0)
    bump = (FISSURE_HU - LUNG_HU) * FISSURE_MM / (sigma * math.sqrt(2 * math.pi))
    hu += np.where(lung_any, bump * np.exp(-(fd**2) / (2 * sigma**2)), 0.0).astype(np.float32)

    phi_a, _ = _tube_fields(geometry, arteries, 0.0)
    phi_v, _ = _tube_fields(geometry, veins, 0.0)
    vessel_alpha = np.maximum(_alpha(phi_a, voxel), _alpha(phi_v, voxel))
    hu += vessel_alpha * (VESSEL_HU - hu)
    phi_wall, _ = _tube_fields(geometry, bronchi, -1.0)  # extra<0: the tube's own wall
    hu += _alpha(phi_wall, voxel) * (WALL_HU - hu)
    phi_lumen, owner = _tube_fields(geometry, [_open_end(b) for b in bronchi], 0.0)
    hu += _alpha(phi_lumen, voxel) * (AIR_HU - hu)
    hu += rng.standard_normal(hu.shape, dtype=np.float32) * np.float32(noise)

    airway = phi_lumen < 0
    gens = np.array([b.generation for b in bronchi], np.int8)
    airway_generation = np.where(airway, gens[np.maximum(owner, 0)], -1).astype(np.int8)
    central = np.zeros(len(bronchi), bool)
    central[[i for i, b in enumerate(bronchi) if b.generation <= 1]] = True
    hilar = (phi_wall < 0) & central[np.maximum(owner, 0)] & (owner >= 0)
    lungs = np.zeros(geometry.shape, np.uint8)
    lungs[right & ~hilar] = 1
    lungs[left & ~hilar] = 2
    lobes = np.where(lungs > 0, lobe_of(X, Y, Z), 0).astype(np.uint8)
    segments, names = _segments(geometry, lobes, seg_clouds)
    fissures = (fd < voxel / 2.0) & (lungs > 0)
    volume = Volume(
        data=hu, geometry=geometry, study_uid="1.2.3", series_uid="1.2.3.4", modality="CT",
        window=(-600.0, 1500.0), sources=[], source_positions=np.arange(nk) * sz, header={},
    )  # fmt: skip
    return LungPhantom(
        volume=volume, lungs=lungs, lobes=lobes, segments=segments, airway=airway,
        airway_generation=airway_generation, arteries=(phi_a < 0) & ~airway,
        veins=(phi_v < 0) & (phi_a >= 0) & ~airway, fissures=fissures, bronchi=bronchi,
        artery_tubes=arteries, vein_tubes=veins, segment_names=names,
    )  # fmt: skip


def _segments(
    geometry: Geometry, lobes: np.ndarray, seg_clouds: list[list[np.ndarray]]
) -> tuple[np.ndarray, list[str]]:
    """Segments: within each lobe, the voxels nearest to each segment's own point cloud."""
    from scipy.spatial import cKDTree

    x, y, z = _grid(geometry)
    out = np.zeros(lobes.shape, np.uint8)
    names: list[str] = []
    number = 0
    for (lobe, lname), groups in zip(LOBES.items(), seg_clouds, strict=True):
        pts = np.concatenate(groups)
        which = np.concatenate([np.full(len(g), number + 1 + i) for i, g in enumerate(groups)])
        names += list(SEGMENTS[lname])
        number += len(groups)
        k, j, i = np.nonzero(lobes == lobe)
        if len(k) == 0:
            continue
        _d, idx = cKDTree(pts).query(np.stack([x[i], y[j], z[k]], axis=1))
        out[k, j, i] = which[idx]
    return out, names


def describe(p: LungPhantom) -> dict[str, Any]:
    """Counts and volumes of the truth, for benches and test messages."""
    voxel_ml = float(np.prod(p.spacing)) / 1000.0
    return {
        "shape": list(p.volume.data.shape),
        "lobes_ml": {n: round(float((p.lobes == k).sum()) * voxel_ml, 1) for k, n in LOBES.items()},
        "bronchi_per_generation": {
            g: sum(1 for b in p.bronchi if b.generation == g) for g in range(5)
        },
        "arteries": len(p.artery_tubes),
        "veins": len(p.vein_tubes),
    }
