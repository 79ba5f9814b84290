"""Bronchial tree: region growing with leak control, wavefront skeleton, generation labels.

1. Region growing (6-neighbour) from the trachea through voxels darker than a
   threshold that rises step by step (-980 HU upwards); the first step whose
   volume jumps (more than ``LEAK_RATIO`` times the previous one) is a leak
   into the lung, and the result two steps before it is kept (the step just
   before a leak already carries its first buds).  Then the half-maximum
   edge: neighbours darker than halfway between air and wall join the lumen.
2. The tree: a wavefront walks down the lumen from the top of the trachea
   (geodesic distance); its slabs of fixed thickness, split into connected
   pieces, are the skeleton's nodes (each piece's centroid a centre-line
   point).  Where a piece has two or more children that go on for a few
   millimetres, the tree branches.  This replaces a 3D thinning skeleton
   (scikit-image is not installed here) and gives the branch graph at once.
3. Generations by topology: trachea 0, main bronchi 1, lobar 2, segmental 3
   (deeper ones counted on), undoing the wavefront's split of a point where
   three or more bronchi leave together (see :func:`_generations`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numba
import numpy as np
from scipy import ndimage

from radcloud.analysis import grid

LEAK_RATIO = 1.6
THRESHOLDS = tuple(range(-980, -760, 20))
MIN_BRANCH_MM = 4.0  # a side bud shorter than this is not a branch
MERGE_RADII = 1.1  # an inner branch shorter than this many radii may be a multi-furcation
SIBLING_RATIO = 0.7
EDGE_HU = -500.0  # halfway between lumen air and the bronchial wall


@dataclass
class Branch:
    """One airway branch: generation, parent, centre line (patient mm), radius (mm)."""

    id: int
    generation: int
    parent: int  # -1 for the trachea
    points: list[np.ndarray] = field(default_factory=list)
    radius_mm: float = 0.0
    voxels: int = 0
    children: list[int] = field(default_factory=list)

    @property
    def length_mm(self) -> float:
        if len(self.points) < 2:
            return 0.0
        p = np.array(self.points)
        return float(np.linalg.norm(np.diff(p, axis=0), axis=1).sum())

    def as_json(self) -> dict[str, object]:
        return {
            "id": self.id,
            "generation": self.generation,
            "parent": self.parent,
            "length_mm": round(self.length_mm, 1),
            "radius_mm": round(self.radius_mm, 2),
            "start": [round(float(v), 1) for v in self.points[0]] if self.points else None,
            "end": [round(float(v), 1) for v in self.points[-1]] if self.points else None,
        }


@dataclass
class AirwayTree:
    """The airway lumen mask, its per-voxel generation (-1 outside) and the branch list."""

    mask: np.ndarray
    generation: np.ndarray
    branches: list[Branch]
    threshold_hu: float
    branch: np.ndarray | None = None  # int32 branch id per voxel, -1 outside

    def subtree(self, branch_id: int) -> list[int]:
        """``branch_id`` and every branch below it."""
        out, stack = [], [branch_id]
        while stack:
            b = stack.pop()
            out.append(b)
            stack += self.branches[b].children
        return out

    def counts(self) -> dict[int, int]:
        out: dict[int, int] = {}
        for b in self.branches:
            out[b.generation] = out.get(b.generation, 0) + 1
        return dict(sorted(out.items()))


# ----------------------------------------------------------------- region growing


def grow(hu: np.ndarray, seed: np.ndarray, allowed: np.ndarray) -> tuple[np.ndarray, float]:
    """Airway lumen connected to ``seed`` within ``allowed``, at the highest safe threshold."""
    steps: list[tuple[np.ndarray, float]] = []
    for t in THRESHOLDS:
        cand = (hu < t) & allowed
        cand |= seed & allowed
        lab, _ = ndimage.label(cand)  # 6-neighbour: noise in the lung does not percolate
        ids = np.unique(lab[seed & cand])
        ids = ids[ids > 0]
        if len(ids) == 0:
            continue
        grown = np.isin(lab, ids)
        if steps and grown.sum() > LEAK_RATIO * steps[-1][0].sum():
            steps.pop()  # the step before a leak already holds its first buds: back off one
            break
        steps.append((grown, float(t)))
    if not steps:
        return seed & allowed, float(THRESHOLDS[0])
    best, best_t = steps[-1]
    return best, best_t


# ----------------------------------------------------------------- wavefront tree


@numba.njit(cache=True)
def _find(parent: np.ndarray, a: int) -> int:  # pragma: no cover - numba
    while parent[a] != a:
        parent[a] = parent[parent[a]]
        a = parent[a]
    return a


@numba.njit(cache=True)
def _slab_components(bins: np.ndarray) -> np.ndarray:  # pragma: no cover - numba
    """Connected pieces (26-neighbour) of voxels sharing one bin value (-1: none)."""
    nk, nj, ni = bins.shape
    n = bins.size
    parent = np.arange(n)
    for k in range(nk):
        for j in range(nj):
            for i in range(ni):
                b = bins[k, j, i]
                if b < 0:
                    continue
                a = (k * nj + j) * ni + i
                for dk in range(0, 2):
                    for dj in range(-1, 2):
                        for di in range(-1, 2):
                            if dk == 0 and (dj < 0 or (dj == 0 and di <= 0)):
                                continue
                            kk, jj, ii = k + dk, j + dj, i + di
                            if kk >= nk or jj < 0 or jj >= nj or ii < 0 or ii >= ni:
                                continue
                            if bins[kk, jj, ii] != b:
                                continue
                            ra = _find(parent, a)
                            rb = _find(parent, (kk * nj + jj) * ni + ii)
                            if ra != rb:
                                parent[rb] = ra
    out = np.full(bins.shape, -1, np.int64)
    for k in range(nk):
        for j in range(nj):
            for i in range(ni):
                if bins[k, j, i] >= 0:
                    out[k, j, i] = _find(parent, (k * nj + j) * ni + i)
    return out


@numba.njit(cache=True)
def _parent_votes(comp: np.ndarray, bins: np.ndarray) -> np.ndarray:  # pragma: no cover
    """(child, parent) pairs of touching pieces whose bins differ by one."""
    nk, nj, ni = comp.shape
    pairs = []
    for k in range(nk):
        for j in range(nj):
            for i in range(ni):
                b = bins[k, j, i]
                if b <= 0:
                    continue
                for dk in range(-1, 2):
                    for dj in range(-1, 2):
                        for di in range(-1, 2):
                            kk, jj, ii = k + dk, j + dj, i + di
                            if kk < 0 or kk >= nk or jj < 0 or jj >= nj or ii < 0 or ii >= ni:
                                continue
                            if bins[kk, jj, ii] == b - 1:
                                pairs.append((comp[k, j, i], comp[kk, jj, ii]))
    out = np.empty((len(pairs), 2), np.int64)
    for n in range(len(pairs)):
        out[n, 0] = pairs[n][0]
        out[n, 1] = pairs[n][1]
    return out


def build_tree(
    mask: np.ndarray, seed: np.ndarray, spacing: tuple[float, float, float], origin_affine: tuple
) -> tuple[list[Branch], np.ndarray]:
    """Branches and the per-voxel branch id (-1 outside) of the lumen ``mask``."""
    step_mm = float(np.mean(spacing))
    steps, _ = grid.breadth_first(mask, (seed & mask).astype(np.int8))
    bin_steps = 2 if step_mm < 1.2 else 1
    bins = np.where(steps >= 0, steps // bin_steps, -1).astype(np.int64)
    bin_mm = step_mm * bin_steps
    comp = _slab_components(bins)
    flat = comp.ravel()
    inside = flat >= 0
    uniq, comp_idx = np.unique(flat[inside], return_inverse=True)
    n = len(uniq)
    node_flat = np.full(flat.shape, -1, np.int64)
    node_flat[inside] = comp_idx
    node = node_flat.reshape(comp.shape)
    counts = np.bincount(comp_idx, minlength=n)
    kk, jj, ii = np.nonzero(node >= 0)
    ids = node[kk, jj, ii]
    sums = np.stack([np.bincount(ids, weights=c, minlength=n) for c in (ii, jj, kk)], 1)
    cent = sums.astype(np.float64) / np.maximum(counts, 1)[:, None]
    origin, affine = origin_affine
    cent_mm = cent @ np.asarray(affine).T + np.asarray(origin)
    node_bin = np.zeros(n, np.int64)
    node_bin[ids] = bins[kk, jj, ii]
    pairs = _parent_votes(node, bins)
    parent = np.full(n, -1, np.int64)
    if len(pairs):
        key, votes = np.unique(pairs, axis=0, return_counts=True)
        order = np.lexsort((-votes, key[:, 0]))
        key = key[order]
        first = np.unique(key[:, 0], return_index=True)[1]
        parent[key[first, 0]] = key[first, 1]
    children: list[list[int]] = [[] for _ in range(n)]
    for c in range(n):
        if parent[c] >= 0:
            children[parent[c]].append(c)
    depth = np.zeros(n, np.int64)  # slabs below each node (longest path)
    for c in np.argsort(-node_bin):
        if parent[c] >= 0:
            depth[parent[c]] = max(depth[parent[c]], depth[c] + 1)
    voxel_mm3 = float(np.prod(spacing))
    node_r = np.sqrt(counts * voxel_mm3 / bin_mm / np.pi)
    branches: list[Branch] = []
    node_branch = np.full(n, -1, np.int64)
    roots = [c for c in range(n) if parent[c] < 0]
    roots.sort(key=lambda c: -counts[c] * (depth[c] + 1))
    stack: list[tuple[int, int]] = [(roots[0], -1)] if roots else []
    while stack:
        start, parent_branch = stack.pop()
        b = Branch(len(branches), 0, parent_branch)
        branches.append(b)
        if parent_branch >= 0:
            branches[parent_branch].children.append(b.id)
        cur = start
        area = []
        while True:
            node_branch[cur] = b.id
            b.points.append(cent_mm[cur])
            b.voxels += int(counts[cur])
            area.append(counts[cur])
            need = max(MIN_BRANCH_MM, 1.2 * float(node_r[cur])) / bin_mm
            big = [c for c in children[cur] if depth[c] + 1 >= need]
            for s in children[cur]:
                if s not in big:  # buds: absorbed into this branch
                    _absorb(s, children, node_branch, b)
            if len(big) == 1:
                cur = big[0]
                continue
            for c in big:
                stack.append((c, b.id))
            break
        b.radius_mm = float(np.sqrt(np.median(area) * voxel_mm3 / bin_mm / np.pi))
    _generations(branches)
    branch_of = np.where(node >= 0, node_branch[np.maximum(node, 0)], -1)
    return branches, branch_of


def _absorb(start: int, children: list[list[int]], node_branch: np.ndarray, b: Branch) -> None:
    stack = [start]
    while stack:
        c = stack.pop()
        node_branch[c] = b.id
        stack += children[c]


def _generations(branches: list[Branch]) -> None:
    """Topological generations, undoing the wavefront's split of a multi-furcation.

    A short inner branch (under ``MERGE_RADII`` of its radii) whose children
    are about as wide as its sibling (``SIBLING_RATIO``) is where three or
    more bronchi of one generation leave one point: its children count as
    its siblings.  A short lobar bronchus, whose segmental children are much
    narrower than the lobar bronchus beside it, stays a generation of its own.
    """
    short = [False] * len(branches)
    for b in branches:
        if b.parent < 0 or len(b.children) < 2 or b.length_mm >= MERGE_RADII * b.radius_mm:
            continue
        siblings = [branches[c].radius_mm for c in branches[b.parent].children if c != b.id]
        kids = [branches[c].radius_mm for c in b.children]
        short[b.id] = bool(siblings) and bool(
            np.median(kids) >= SIBLING_RATIO * np.median(siblings)
        )
    for b in branches:  # parents come before their children in the list
        if b.parent < 0:
            b.generation = 0
            continue
        p = branches[b.parent]
        b.generation = p.generation if short[p.id] else p.generation + 1


def segment(
    hu: np.ndarray,
    trachea: np.ndarray,
    allowed: np.ndarray,
    spacing: tuple[float, float, float],
    origin_affine: tuple,
) -> AirwayTree:
    """The airway tree of ``hu`` grown from the ``trachea`` mask (see the module docstring)."""
    if not trachea.any():
        empty = np.zeros(hu.shape, bool)
        return AirwayTree(empty, np.full(hu.shape, -1, np.int8), [], float("nan"),
                          np.full(hu.shape, -1, np.int32))  # fmt: skip
    # seed: the top few slices of the trachea (the wavefront starts there)
    ks = np.nonzero(trachea.any(axis=(1, 2)))[0]
    up = float(np.asarray(origin_affine[1])[2, 2]) > 0
    top = ks[-3:] if up else ks[:3]
    seed = np.zeros(hu.shape, bool)
    seed[top] = trachea[top]
    mask, threshold = grow(hu, trachea, allowed | trachea)
    # half-maximum edge: lumen voxels shared with the wall are darker than halfway
    edge = ndimage.binary_dilation(mask)
    mask |= edge & (hu < EDGE_HU) & (allowed | trachea)
    branches, branch_of = build_tree(mask, seed, spacing, origin_affine)
    gens = np.array([b.generation for b in branches] + [-1], np.int8)
    generation = np.where(branch_of >= 0, gens[branch_of], -1).astype(np.int8)
    return AirwayTree(mask & (branch_of >= 0), generation, branches, threshold,
                      branch_of.astype(np.int32))  # fmt: skip
