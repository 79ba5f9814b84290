"""Lobes: fissure-aware territories of the lobar bronchi.

* Seeds: the five lobar bronchi of the airway tree (the main bronchi's
  divisions, see :func:`_lobar_branches`), named by where their subtrees go:
  on the right the highest is the upper lobe, of the other two the more
  anterior the middle lobe; on the left the higher is the upper lobe.
  Each seed is the subtree's airway lumen beyond the lobar bronchus itself
  (the lobar bronchus starts at the hilum, where the lobes meet).
* Fissures: plate-like bright sheets, from the Hessian of the smoothed HU
  (largest eigenvalue strongly negative, the other two near zero).
* Lobes: from the seeds, fronts spread through each lung (Dijkstra, 6
  neighbours) over a step cost of 1 in the parenchyma and up to
  ``1 + FISSURE_COST`` on the fissures, so the fronts meet on the fissures
  and elsewhere split the lung by nearness to the lobar airways.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass

import numba
import numpy as np
from scipy import ndimage

from radcloud.analysis.lung_airways import AirwayTree

RUL, RML, RLL, LUL, LLL = 1, 2, 3, 4, 5
NAMES = {RUL: "right upper lobe", RML: "right middle lobe", RLL: "right lower lobe",
         LUL: "left upper lobe", LLL: "left lower lobe"}  # fmt: skip
KEYS = {RUL: "RUL", RML: "RML", RLL: "RLL", LUL: "LUL", LLL: "LLL"}
FISSURE_SCALE_MM = 1.2
FISSURE_MIN = 0.15  # sheetness (0..1) below this costs nothing
FISSURE_COST = 200


@dataclass
class Lobes:
    labels: np.ndarray  # uint8 0..5
    fissureness: np.ndarray  # float32 0..1
    seeds: dict[int, int]  # lobe -> lobar branch id
    reason: str = ""


def sheetness(hu: np.ndarray, where: np.ndarray, spacing: tuple[float, float, float]) -> np.ndarray:
    """0..1 response to thin bright plates (fissures) at ``where`` voxels."""
    from radcloud.analysis.lung_vessels import _eigen_sym3

    out = np.zeros(hu.shape, np.float32)
    idx = np.nonzero(where)
    if len(idx[0]) == 0:
        return out
    s_mm = FISSURE_SCALE_MM
    smooth = ndimage.gaussian_filter(hu.astype(np.float32), [s_mm / sp for sp in spacing])
    grads = np.gradient(smooth, *spacing)
    parts = []
    for a, b in ((0, 0), (1, 1), (2, 2), (0, 1), (0, 2), (1, 2)):
        parts.append(np.gradient(grads[a], spacing[b], axis=b)[idx] * np.float32(s_mm**2))
    del grads, smooth
    lam = _eigen_sym3(*parts)
    l2, l3 = np.abs(lam[:, 1]), lam[:, 2]
    plate = np.exp(-((l2 / np.maximum(np.abs(l3), 1e-6)) ** 2) / (2 * 0.4**2))
    strength = np.clip(-l3, 0.0, None)
    scale = max(float(np.percentile(strength, 99.5)), 1e-6)
    out[idx] = (plate * np.clip(strength / scale, 0.0, 1.0)).astype(np.float32)
    return out


def _lobar_branches(tree: AirwayTree) -> dict[int, int]:
    """lobe number -> lobar branch id, or {} for a side whose tree does not show its lobes.

    The lobar bronchi are the branches the main bronchus divides into.  A
    right main bronchus seen dividing in two (upper lobe bronchus and
    bronchus intermedius) has the intermedius' children taken instead; a
    side with more branches than lobes keeps its largest subtrees (a small
    one is a segmental bronchus the wavefront saw leave early).
    """

    def centre(bid: int) -> np.ndarray:
        pts = [p for b in tree.subtree(bid) for p in tree.branches[b].points]
        return np.mean(pts, axis=0)

    def size(bid: int) -> int:
        return sum(tree.branches[b].voxels for b in tree.subtree(bid))

    out: dict[int, int] = {}
    mains = [b for b in tree.branches if b.generation == 1 and b.points and b.children]
    for sign, want in ((-1.0, 3), (1.0, 2)):
        side = [b for b in mains if np.sign(centre(b.id)[0]) == sign]
        if not side:
            continue
        main = max(side, key=lambda b: size(b.id))
        kids = list(main.children)
        while 0 < len(kids) < want:  # a division seen as two steps: open the bigger child
            opened = max(kids, key=size)
            if not tree.branches[opened].children:
                break
            kids = [k for k in kids if k != opened] + list(tree.branches[opened].children)
        if len(kids) < want:
            continue
        kids = sorted(kids, key=size, reverse=True)[:want]
        if want == 3:
            up = max(kids, key=lambda b: centre(b)[2])
            rest = sorted((b for b in kids if b != up), key=lambda b: centre(b)[1])
            out.update({RUL: up, RML: rest[0], RLL: rest[1]})
        else:
            up = max(kids, key=lambda b: centre(b)[2])
            out.update({LUL: up, LLL: next(b for b in kids if b != up)})
    return out


def segment(
    hu: np.ndarray,
    right: np.ndarray,
    left: np.ndarray,
    tree: AirwayTree,
    spacing: tuple[float, float, float],
) -> Lobes:
    """Lobe labels of the lungs ``right`` and ``left`` (see the module docstring)."""
    labels = np.zeros(hu.shape, np.uint8)
    lungs = right | left
    # fissures are greyer than lung but not as bright as vessels, and never hug a vessel
    bright = ndimage.binary_dilation(hu > -300.0, iterations=2)
    fiss = sheetness(hu, lungs & (hu > -820.0) & (hu < -300.0) & ~bright, spacing)
    seeds = _lobar_branches(tree)
    if tree.branch is None or len(seeds) < 5:
        return Lobes(labels, fiss, seeds, "the airway tree does not show all five lobar bronchi")
    cost = np.where(fiss > FISSURE_MIN, 1 + fiss * FISSURE_COST, 1).astype(np.int32)
    for lung, lobes in ((right, (RUL, RML, RLL)), (left, (LUL, LLL))):
        markers = np.zeros(hu.shape, np.int8)
        for lobe in lobes:
            sub = tree.subtree(seeds[lobe])
            beyond = [b for b in sub if b != seeds[lobe]] or sub
            markers[np.isin(tree.branch, beyond) & lung] = lobe
        if not lung.any():
            continue
        box = tuple(slice(int(a.min()), int(a.max()) + 1) for a in np.nonzero(lung))
        grown = _spread(np.ascontiguousarray(cost[box]), np.ascontiguousarray(markers[box]),
                        np.ascontiguousarray(lung[box]))  # fmt: skip
        labels[box] = np.where(lung[box], grown, labels[box]).astype(np.uint8)
    return Lobes(labels, fiss, seeds)


@numba.njit(cache=True)
def _spread(
    cost: np.ndarray, seeds: np.ndarray, mask: np.ndarray
) -> np.ndarray:  # pragma: no cover
    """Label of the cheapest seed (sum of ``cost`` along 6-neighbour paths within ``mask``)."""
    nk, nj, ni = mask.shape
    out = seeds.copy()
    dist = np.full(mask.shape, np.iinfo(np.int64).max, np.int64)
    heap = [(np.int64(0), np.int64(0))]
    heap.pop()
    for k in range(nk):
        for j in range(nj):
            for i in range(ni):
                if seeds[k, j, i] > 0 and mask[k, j, i]:
                    dist[k, j, i] = 0
                    heap.append((np.int64(0), np.int64((k * nj + j) * ni + i)))
    heapq.heapify(heap)
    while heap:
        d, v = heapq.heappop(heap)
        k = v // (nj * ni)
        j = (v // ni) % nj
        i = v % ni
        if d > dist[k, j, i]:
            continue
        for n in range(6):
            kk, jj, ii = k, j, i
            if n == 0:
                kk -= 1
            elif n == 1:
                kk += 1
            elif n == 2:
                jj -= 1
            elif n == 3:
                jj += 1
            elif n == 4:
                ii -= 1
            else:
                ii += 1
            if kk < 0 or kk >= nk or jj < 0 or jj >= nj or ii < 0 or ii >= ni:
                continue
            if not mask[kk, jj, ii]:
                continue
            nd = d + cost[kk, jj, ii]
            if nd < dist[kk, jj, ii]:
                dist[kk, jj, ii] = nd
                out[kk, jj, ii] = out[k, j, i]
                heapq.heappush(heap, (nd, np.int64((kk * nj + jj) * ni + ii)))
    return out
