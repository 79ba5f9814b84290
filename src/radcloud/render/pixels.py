"""Turn one decoded DICOM frame into a displayable 8-bit image: JPEG or PNG bytes.

Pure numpy (plus simplejpeg / Pillow for the final encoding), no I/O, so the
DICOMweb *rendered* and *thumbnail* resources (PS3.18 8.3.5, 9.5) and the viewer
share one pipeline.  The grayscale pipeline is PS3.3 C.11: Modality LUT (C.11.1)
-> VOI LUT / window (C.11.2) -> Presentation LUT (C.11.6, MONOCHROME1 inverts).
Colour images skip the grayscale transforms (C.7.6.3.1.2 colour models,
C.7.6.3.1.5 palette lookup).

``meta`` everywhere is the instance's DICOM JSON (PS3.18 F.2): keys are
8-hex-digit tags, values ``{"vr": ..., "Value": [...]}`` or ``InlineBinary``.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
import simplejpeg
from PIL import Image

__all__ = [
    "apply_modality_lut",
    "apply_palette",
    "apply_voi",
    "default_window",
    "first",
    "inline_binary",
    "render",
    "thumbnail",
    "to_display",
    "to_uint8",
    "values",
    "ybr_to_rgb",
]

Meta = Mapping[str, Any]
VoiFunction = Literal["linear", "linear-exact", "sigmoid"]

# tags used here (PS3.6)
PHOTOMETRIC = "00280004"
BITS_STORED = "00280101"
PIXEL_SPACING = "00280030"
PIXEL_ASPECT_RATIO = "00280034"
PIXEL_PADDING_VALUE = "00280120"
PIXEL_PADDING_RANGE_LIMIT = "00280121"
WINDOW_CENTER = "00281050"
WINDOW_WIDTH = "00281051"
RESCALE_INTERCEPT = "00281052"
RESCALE_SLOPE = "00281053"
VOI_LUT_FUNCTION = "00281056"
MODALITY_LUT_SEQUENCE = "00283000"
LUT_DESCRIPTOR = "00283002"
LUT_DATA = "00283006"
PRESENTATION_LUT_SHAPE = "20500020"
PALETTE_DESCRIPTOR = {"R": "00281101", "G": "00281102", "B": "00281103"}
PALETTE_DATA = {"R": "00281201", "G": "00281202", "B": "00281203"}

_COLOR = (
    "RGB",
    "YBR_FULL",
    "YBR_FULL_422",
    "YBR_ICT",
    "YBR_RCT",
    "YBR_PARTIAL_420",
    "YBR_PARTIAL_422",
)


# ----------------------------------------------------------------- DICOM JSON access


def _key(tag: str | int) -> str:
    return f"{tag:08X}" if isinstance(tag, int) else tag.upper()


def values(meta: Meta, tag: str | int) -> list[Any]:
    """All values of ``tag`` in a DICOM JSON object (empty list when absent)."""
    elem = meta.get(_key(tag)) or meta.get(_key(tag).lower())
    if not elem:
        return []
    return list(elem.get("Value", []))


def first(meta: Meta, tag: str | int, default: Any = None) -> Any:
    """The first value of ``tag``, or ``default`` when absent or empty."""
    vals = values(meta, tag)
    return vals[0] if vals and vals[0] is not None else default


def inline_binary(meta: Meta, tag: str | int) -> bytes | None:
    """Bytes of an ``InlineBinary`` element (e.g. LUT data), None when absent."""
    elem = meta.get(_key(tag)) or meta.get(_key(tag).lower())
    if not elem or "InlineBinary" not in elem:
        return None
    return base64.b64decode(elem["InlineBinary"])


def _lut(meta: Meta, descriptor_tag: str, data_tag: str) -> tuple[np.ndarray, int, int]:
    """(table, first mapped value, bits per entry) of a LUT given inline (PS3.3 C.11.1.1)."""
    desc = values(meta, descriptor_tag)
    if len(desc) != 3:
        raise ValueError(f"LUT descriptor {descriptor_tag} missing or malformed")
    n = int(desc[0]) or 65536
    start, bits = int(desc[1]), int(desc[2])
    raw = inline_binary(meta, data_tag)
    if raw is not None:
        table = np.frombuffer(raw, "<u2" if len(raw) >= 2 * n else "u1")[:n]
    elif values(meta, data_tag):
        table = np.asarray(values(meta, data_tag), dtype=np.uint16)[:n]
    else:
        raise ValueError(f"LUT data {data_tag} is not inline in the metadata")
    return table, start, bits


def _lookup(arr: np.ndarray, table: np.ndarray, start: int) -> np.ndarray:
    """Map stored values through ``table``; values outside clamp to the ends."""
    idx = np.clip(arr.astype(np.int64, copy=False) - start, 0, table.size - 1)
    return table[idx]


# ------------------------------------------------------------- grayscale pipeline


def apply_modality_lut(arr: np.ndarray, meta: Meta) -> np.ndarray:
    """Stored values -> modality values (e.g. HU) as float32 (PS3.3 C.11.1).

    Uses a Modality LUT Sequence when present, else Rescale Slope/Intercept.
    Colour images have no modality transform and are returned unchanged.
    """
    if str(first(meta, PHOTOMETRIC, "MONOCHROME2")) in (*_COLOR, "PALETTE COLOR"):
        return arr
    seq = values(meta, MODALITY_LUT_SEQUENCE)
    if seq:
        table, start, _ = _lut(seq[0], LUT_DESCRIPTOR, LUT_DATA)
        return _lookup(arr, table, start).astype(np.float32)
    slope = float(first(meta, RESCALE_SLOPE, 1.0))
    intercept = float(first(meta, RESCALE_INTERCEPT, 0.0))
    out = arr.astype(np.float32)
    if slope != 1.0:
        out *= np.float32(slope)
    if intercept != 0.0:
        out += np.float32(intercept)
    return out


def apply_voi(arr: np.ndarray, center: float, width: float, function: str = "linear") -> np.ndarray:
    """Window modality values to display values in [0, 1] (PS3.3 C.11.2.1.2).

    ``linear`` is the standard's default (width counted as ``width - 1`` with a
    half-pixel centre offset), ``linear-exact`` the plain ramp, ``sigmoid`` the
    logistic curve of C.11.2.1.3.1.
    """
    x = arr.astype(np.float32, copy=False)
    c = np.float32(center)
    fn = function.lower().replace("_", "-")
    if fn == "linear":
        if width <= 1:  # a threshold at c - 0.5
            return (x > c - np.float32(0.5)).astype(np.float32)
        y = (x - (c - np.float32(0.5))) / np.float32(width - 1) + np.float32(0.5)
        return np.clip(y, 0.0, 1.0, out=y)
    if fn == "linear-exact":
        w = np.float32(max(width, 1e-6))
        y = (x - c) / w + np.float32(0.5)
        return np.clip(y, 0.0, 1.0, out=y)
    if fn == "sigmoid":
        w = np.float32(max(width, 1e-6))
        return (1.0 / (1.0 + np.exp(-4.0 * (x - c) / w))).astype(np.float32)
    raise ValueError(f"unknown VOI LUT function {function!r} (linear, linear-exact, sigmoid)")


def _padding_mask(arr: np.ndarray, meta: Meta) -> np.ndarray | None:
    """True where ``arr`` (modality values) is Pixel Padding (PS3.3 C.7.5.1.1.2)."""
    pad = first(meta, PIXEL_PADDING_VALUE)
    if pad is None:
        return None
    limit = first(meta, PIXEL_PADDING_RANGE_LIMIT, pad)
    lo, hi = sorted(apply_modality_lut(np.array([pad, limit], np.float64), meta).tolist())
    return (arr >= lo) & (arr <= hi)


def default_window(arr: np.ndarray, meta: Meta) -> tuple[float, float]:
    """The window to show ``arr`` (modality values) with when the user chose none.

    The instance's first Window Center/Width; otherwise the frame's value range,
    ignoring Pixel Padding, expressed for the ``linear`` function so that the
    minimum maps to black and the maximum to white.
    """
    c, w = first(meta, WINDOW_CENTER), first(meta, WINDOW_WIDTH)
    if c is not None and w is not None and float(w) > 0:
        return float(c), float(w)
    data = arr
    pad = _padding_mask(arr, meta)
    if pad is not None and not pad.all():
        data = arr[~pad]
    if data.size == 0:
        return 0.0, 1.0
    lo, hi = float(data.min()), float(data.max())
    return (lo + hi) / 2.0 + 0.5, hi - lo + 1.0


def to_uint8(arr: np.ndarray) -> np.ndarray:
    """Display values in [0, 1] -> uint8 0..255 (uint8 input passes through)."""
    if arr.dtype == np.uint8:
        return arr
    out = np.multiply(arr, np.float32(255.0), dtype=np.float32)
    np.clip(out, 0.0, 255.0, out=out)
    return np.rint(out, out=out).astype(np.uint8)


# ----------------------------------------------------------------- colour models


_YBR_FULL = np.array(
    [[1.0, 0.0, 1.402], [1.0, -0.344136, -0.714136], [1.0, 1.772, 0.0]], np.float32
)
_YBR_PARTIAL = np.array(
    [[1.164383, 0.0, 1.596027], [1.164383, -0.391762, -0.812968], [1.164383, 2.017232, 0.0]],
    np.float32,
)


def ybr_to_rgb(arr: np.ndarray, photometric: str = "YBR_FULL", bits: int = 8) -> np.ndarray:
    """YCbCr samples -> RGB in the same range (PS3.3 C.7.6.3.1.2, ITU-R BT.601)."""
    top = float((1 << bits) - 1)
    mid = float(1 << (bits - 1))
    x = arr.astype(np.float32)
    if photometric.startswith("YBR_PARTIAL"):
        x[..., 0] -= 16.0 * (top + 1) / 256.0
        m = _YBR_PARTIAL
    else:
        m = _YBR_FULL
    x[..., 1:] -= mid
    rgb = x @ m.T
    return np.clip(np.rint(rgb), 0, top).astype(arr.dtype)


def apply_palette(arr: np.ndarray, meta: Meta) -> np.ndarray:
    """PALETTE COLOR indices -> uint8 RGB through the inline palette LUTs (C.7.6.3.1.5)."""
    planes = []
    for ch in "RGB":
        table, start, bits = _lut(meta, PALETTE_DESCRIPTOR[ch], PALETTE_DATA[ch])
        plane = _lookup(arr, table, start)
        if bits > 8 or table.max(initial=0) > 255:
            plane = plane >> 8
        planes.append(plane.astype(np.uint8))
    return np.stack(planes, axis=-1)


def _color_uint8(arr: np.ndarray, bits: int) -> np.ndarray:
    """Colour samples of ``bits`` depth -> uint8 by keeping the top 8 bits."""
    if arr.dtype == np.uint8 and bits <= 8:
        return arr
    shift = max(bits - 8, 0)
    return (arr.astype(np.uint32) >> shift).clip(0, 255).astype(np.uint8)


# ------------------------------------------------------------------ full pipeline


def _window_arg(
    window: Sequence[Any] | None, meta: Meta, arr: np.ndarray
) -> tuple[float, float, str]:
    """(center, width, function) from an explicit window or the instance defaults."""
    function = str(first(meta, VOI_LUT_FUNCTION, "LINEAR")).lower().replace("_", "-")
    if window is not None:
        if len(window) == 3:
            function = str(window[2]).lower()
        return float(window[0]), float(window[1]), function
    c, w = default_window(arr, meta)
    return c, w, function


def to_display(
    arr: np.ndarray,
    meta: Meta,
    *,
    window: Sequence[Any] | None = None,
    photometric: str | None = None,
) -> np.ndarray:
    """One frame -> uint8 image ready to show: (rows, cols) gray or (rows, cols, 3) RGB.

    ``window`` is ``(center, width[, function])`` in modality units (HU for CT).
    ``photometric`` overrides the metadata's when the caller already converted the
    colour space (e.g. a JPEG decoder returned RGB for YBR_FULL_422 data).
    """
    pi = str(photometric or first(meta, PHOTOMETRIC, "MONOCHROME2")).upper()
    bits = int(first(meta, BITS_STORED, 8 if arr.dtype.itemsize == 1 else 16))
    if pi == "PALETTE COLOR":
        return apply_palette(arr, meta)
    if pi in _COLOR:
        if arr.ndim != 3 or arr.shape[-1] != 3:
            raise ValueError(f"{pi} frame must be (rows, cols, 3), got {arr.shape}")
        if pi.startswith("YBR_FULL") or pi.startswith("YBR_PARTIAL"):
            arr = ybr_to_rgb(arr, pi, bits)
        rgb = _color_uint8(arr, bits)
        if window is not None:
            c, w, fn = _window_arg(window, meta, arr)
            rgb = to_uint8(apply_voi(rgb, c, w, fn))
        return rgb
    if arr.ndim != 2:
        raise ValueError(f"grayscale frame must be (rows, cols), got {arr.shape}")
    mod = apply_modality_lut(arr, meta)
    c, w, fn = _window_arg(window, meta, mod)
    disp = apply_voi(mod, c, w, fn)
    inverse = str(first(meta, PRESENTATION_LUT_SHAPE, "")).upper() == "INVERSE"
    if pi == "MONOCHROME1" or (pi == "MONOCHROME2" and inverse):
        disp = np.subtract(np.float32(1.0), disp, out=disp)
    return to_uint8(disp)


def _aspect(meta: Meta) -> float:
    """Physical height/width of one pixel (PixelSpacing row/col, or PixelAspectRatio)."""
    spacing = values(meta, PIXEL_SPACING)
    if len(spacing) == 2 and float(spacing[1]) > 0:
        return float(spacing[0]) / float(spacing[1])
    ratio = values(meta, PIXEL_ASPECT_RATIO)
    if len(ratio) == 2 and float(ratio[1]) > 0:
        return float(ratio[0]) / float(ratio[1])
    return 1.0


def _target_size(
    width: int, height: int, aspect: float, viewport: tuple[int, int] | None
) -> tuple[int, int]:
    """Output (width, height): square pixels, scaled to fit ``viewport`` if given."""
    w, h = float(width), float(height) * aspect
    if viewport is not None:
        vw, vh = viewport
        if vw <= 0 or vh <= 0:
            raise ValueError(f"viewport must be positive, got {viewport}")
        scale = min(vw / w, vh / h)
        w, h = w * scale, h * scale
    return max(1, round(w)), max(1, round(h))


def _resize(img: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resample to ``size`` (w, h); downscaling box-reduces first for speed and quality."""
    if (img.shape[1], img.shape[0]) == size:
        return img
    pil = Image.fromarray(img)
    out = pil.resize(size, Image.Resampling.BILINEAR, reducing_gap=2.0)
    return np.asarray(out)


def _encode(img: np.ndarray, fmt: str, quality: int) -> bytes:
    """uint8 gray or RGB -> JPEG (simplejpeg, fast) or PNG (Pillow, compress_level 1)."""
    fmt = fmt.lower()
    if fmt in ("jpeg", "jpg", "image/jpeg"):
        gray = img.ndim == 2
        data = np.ascontiguousarray(img[..., None] if gray else img)
        return bytes(
            simplejpeg.encode_jpeg(
                data,
                quality=int(quality),
                colorspace="GRAY" if gray else "RGB",
                colorsubsampling="Gray" if gray else "444",
            )
        )
    if fmt in ("png", "image/png"):
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, format="PNG", compress_level=1)
        return buf.getvalue()
    raise ValueError(f"unsupported rendered format {fmt!r} (jpeg or png)")


def render(
    arr: np.ndarray,
    meta: Meta,
    *,
    window: Sequence[Any] | None = None,
    viewport: tuple[int, int] | None = None,
    fmt: str = "jpeg",
    quality: int = 90,
    photometric: str | None = None,
) -> bytes:
    """Render one frame to JPEG or PNG bytes (PS3.18 8.3.5.1 rendered media types).

    ``viewport=(vw, vh)`` scales the image to fit inside it, preserving the aspect
    ratio (non-square pixels are made square).  See :func:`to_display` for
    ``window`` and ``photometric``.
    """
    img = to_display(arr, meta, window=window, photometric=photometric)
    size = _target_size(img.shape[1], img.shape[0], _aspect(meta), viewport)
    return _encode(_resize(img, size), fmt, quality)


def thumbnail(arr: np.ndarray, meta: Meta, size: int = 128) -> bytes:
    """A JPEG no larger than ``size`` x ``size`` with the default window (PS3.18 9.5)."""
    return render(arr, meta, viewport=(size, size), fmt="jpeg", quality=80)
