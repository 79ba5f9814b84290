"""Voxel-grid walks the lung steps share (numba-compiled)."""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True)
def breadth_first(
    mask: np.ndarray, labels: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:  # pragma: no cover - numba
    """Multi-source breadth-first walk through ``mask`` (26-neighbour).

    The sources are the ``mask`` voxels whose ``labels`` value is above 0.
    Returns (steps from the nearest source, -1 where unreached; ``labels`` with
    every reached voxel given the label of the source that reached it first).
    """
    nk, nj, ni = mask.shape
    out = labels.copy()
    steps = np.full(mask.shape, -1, np.int32)
    queue = np.empty(np.count_nonzero(mask), np.int64)  # each voxel is queued once at most
    tail = 0
    for k in range(nk):
        for j in range(nj):
            for i in range(ni):
                if out[k, j, i] > 0 and mask[k, j, i]:
                    steps[k, j, i] = 0
                    queue[tail] = (k * nj + j) * ni + i
                    tail += 1
    head = 0
    while head < tail:
        v = queue[head]
        head += 1
        k = v // (nj * ni)
        j = (v // ni) % nj
        i = v % ni
        lab = out[k, j, i]
        d = steps[k, j, i] + 1
        for kk in range(max(k - 1, 0), min(k + 2, nk)):
            for jj in range(max(j - 1, 0), min(j + 2, nj)):
                for ii in range(max(i - 1, 0), min(i + 2, ni)):
                    if mask[kk, jj, ii] and steps[kk, jj, ii] < 0:
                        steps[kk, jj, ii] = d
                        out[kk, jj, ii] = lab
                        queue[tail] = (kk * nj + jj) * ni + ii
                        tail += 1
    return steps, out
