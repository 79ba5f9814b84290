"""Views to image bytes: windowing and JPEG/PNG through :mod:`radcloud.render.pixels`, WebP here."""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np
from PIL import Image

from radcloud.errors import BadQuery
from radcloud.render import pixels

MEDIA_TYPES = {"jpeg": "image/jpeg", "png": "image/png", "webp": "image/webp"}
_RGB_META = {"00280004": {"vr": "CS", "Value": ["RGB"]}, "00280101": {"vr": "US", "Value": [8]}}


def media_type(fmt: str) -> str:
    try:
        return MEDIA_TYPES[fmt.lower()]
    except KeyError:
        raise BadQuery(f"unknown image format {fmt!r} (jpeg, png, webp)") from None


def display(values: np.ndarray, window: Sequence[float], background: float) -> np.ndarray:
    """Modality values (NaN = outside the volume) -> uint8 gray through a linear window."""
    arr = np.where(np.isnan(values), np.float32(background), values)
    return pixels.to_uint8(pixels.apply_voi(arr, float(window[0]), float(window[1])))


def encode(img: np.ndarray, fmt: str = "jpeg", quality: int = 90) -> bytes:
    """uint8 gray (h, w) or RGB (h, w, 3) as JPEG, PNG or WebP bytes."""
    fmt = fmt.lower()
    media_type(fmt)
    if fmt == "webp":
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, format="WEBP", quality=int(quality), method=0)
        return buf.getvalue()
    if img.ndim == 3:
        return pixels.render(img, _RGB_META, fmt=fmt, quality=quality)
    # already display values: an identity window keeps them as they are
    return pixels.render(img, {}, window=(127.5, 256.0, "linear-exact"), fmt=fmt, quality=quality)
