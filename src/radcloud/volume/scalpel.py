"""Virtual scalpel: hide parts of the volume in VR, undoably.

Cuts travel with each VR request (a list the client keeps: undo is dropping the
last one, so no server state is needed and any node can render them).  A cut is

* ``{"kind": "polygon", "points": [[x, y], ...], "camera": {...}, "remove": "inside"}``:
  a polygon drawn on a VR image, extruded along that image's view direction
  (``camera`` is the ``camera`` object the VR response described);
* ``{"kind": "box", "min": [x, y, z], "max": [x, y, z], "remove": "inside"}``:
  a box in patient mm.

``remove`` is ``inside`` (default) or ``outside``.  Cuts become a keep-mask at
the working copy's resolution, built once per distinct list of cuts.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import orjson
from PIL import Image, ImageDraw

from radcloud.errors import BadQuery

if TYPE_CHECKING:
    from radcloud.volume.vr import Proxy

MAX_CUTS = 50
MAX_POLYGON_POINTS = 1000
KEPT_MASKS = 4


def mask_for(proxy: Proxy, cuts: list[dict[str, Any]]) -> np.ndarray | None:
    """uint8 keep-mask (1 = shown) of ``proxy`` after ``cuts``; None when there are none."""
    if not cuts:
        return None
    if len(cuts) > MAX_CUTS:
        raise BadQuery(f"at most {MAX_CUTS} cuts")
    key = orjson.dumps(cuts, option=orjson.OPT_SORT_KEYS).decode()
    with proxy.lock:
        mask = proxy.masks.get(key)
    if mask is not None:
        return mask
    mask = np.ones(proxy.data.shape, np.uint8)
    for cut in cuts:
        _apply(mask, proxy, cut)
    with proxy.lock:
        proxy.masks[key] = mask
        while len(proxy.masks) > KEPT_MASKS:
            proxy.masks.pop(next(iter(proxy.masks)))
    return mask


def _apply(mask: np.ndarray, proxy: Proxy, cut: dict[str, Any]) -> None:
    if not isinstance(cut, dict):
        raise BadQuery("each cut must be an object")
    remove = cut.get("remove", "inside")
    if remove not in ("inside", "outside"):
        raise BadQuery("a cut's remove must be 'inside' or 'outside'")
    kind = cut.get("kind")
    if kind == "box":
        test = _box_test(cut)
    elif kind == "polygon":
        test = _polygon_test(cut)
    else:
        raise BadQuery(f"unknown cut kind {kind!r} (polygon, box)")
    geometry = proxy.geometry
    nk, nj, ni = geometry.shape
    jj, ii = np.mgrid[0:nj, 0:ni].astype(np.float64)
    for k in range(nk):
        idx = np.stack([ii, jj, np.full_like(ii, k)], axis=-1)
        inside = test(geometry.to_patient(idx))
        mask[k][inside if remove == "inside" else ~inside] = 0


def _vector(value: Any, n: int, what: str) -> np.ndarray:
    try:
        arr = np.asarray(value, np.float64)
    except (TypeError, ValueError):
        raise BadQuery(f"{what} must be {n} numbers") from None
    if arr.shape != (n,) or not np.isfinite(arr).all():
        raise BadQuery(f"{what} must be {n} numbers")
    return arr


def _box_test(cut: dict[str, Any]) -> Any:
    lo = _vector(cut.get("min"), 3, "a box's min")
    hi = _vector(cut.get("max"), 3, "a box's max")
    lo, hi = np.minimum(lo, hi), np.maximum(lo, hi)
    return lambda pts: np.all((pts >= lo) & (pts <= hi), axis=-1)


def _polygon_test(cut: dict[str, Any]) -> Any:
    cam = cut.get("camera")
    points = cut.get("points")
    if not isinstance(cam, dict) or not isinstance(points, list):
        raise BadQuery("a polygon cut needs points and the camera of the image it was drawn on")
    if not 3 <= len(points) <= MAX_POLYGON_POINTS:
        raise BadQuery(f"a polygon needs 3..{MAX_POLYGON_POINTS} points")
    center = _vector(cam.get("center"), 3, "camera center")
    u = _vector(cam.get("u"), 3, "camera u")
    v = _vector(cam.get("v"), 3, "camera v")
    pixel_mm = float(cam.get("pixel_mm") or 0)
    width, height = int(cam.get("width") or 0), int(cam.get("height") or 0)
    if pixel_mm <= 0 or not (0 < width <= 4096 and 0 < height <= 4096):
        raise BadQuery("camera pixel_mm, width and height must be positive")
    image = Image.new("1", (width, height), 0)
    ImageDraw.Draw(image).polygon([tuple(_vector(p, 2, "a polygon point")) for p in points], 1)
    screen = np.asarray(image, bool)

    def test(pts: np.ndarray) -> np.ndarray:
        d = pts - center
        x = np.rint(d @ u / pixel_mm + (width - 1) / 2).astype(np.int64)
        y = np.rint(d @ v / pixel_mm + (height - 1) / 2).astype(np.int64)
        ok = (x >= 0) & (x < width) & (y >= 0) & (y < height)
        out = np.zeros(x.shape, bool)
        out[ok] = screen[y[ok], x[ok]]
        return out

    return test
