"""Transfer syntaxes, their DICOMweb media types, and lossless transcoding.

Two levels:

* :func:`encode_frame` / :func:`decode_frame` work on one frame's bytes, so WADO-RS
  can serve ``/frames/N`` in a requested syntax without touching the rest of a file.
* :func:`transcode` re-encodes a whole dataset (all frames) into another syntax,
  keeping every pixel bit-exact; only lossless targets are accepted.

Codec choice follows measured CPU cost on a 512x512 CT slice (see
``shared/reference/offline_stack.md`` section 4): HTJ2K through imagecodecs/OpenJPH
(~2 ms encode, ~1 ms decode), JPEG-LS through CharLS (pyjpegls encode, which writes
the precision as *Bits Stored* and no SPIFF header; imagecodecs decode), JPEG 2000
through OpenJPEG in imagecodecs, RLE through pylibjpeg-rle.  Every codestream these
produce decodes with plain pydicom (pylibjpeg / pyjpegls plugins) as well.

Conventions (PS3.5 section 8 and Annex A.4):

* signed samples are written to JPEG-LS and RLE as their two's-complement bit
  pattern masked to *Bits Stored*, and sign-extended again when decoded;
* colour frames are interleaved (``PlanarConfiguration`` 0) after transcoding;
  JPEG 2000 / HTJ2K colour is written without a component transform, so
  ``PhotometricInterpretation`` stays ``RGB`` (or ``YBR_FULL``);
* decoding a lossy JPEG or a JPEG 2000 stream with a colour transform yields RGB.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import imagecodecs
import jpeg_ls
import numpy as np
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate, encapsulate_extended, generate_frames
from pydicom.uid import UID
from rle.utils import decode_frame as _rle_decode
from rle.utils import encode_pixel_data as _rle_encode

from radcloud.errors import UnsupportedTransferSyntax

__all__ = [
    "DEFLATED_EXPLICIT_VR_LE",
    "EXPLICIT_VR_BE",
    "EXPLICIT_VR_LE",
    "HTJ2K",
    "HTJ2K_LOSSLESS",
    "HTJ2K_LOSSLESS_RPCL",
    "IMPLICIT_VR_LE",
    "JPEG2000",
    "JPEG2000_LOSSLESS",
    "JPEG_BASELINE",
    "JPEG_EXTENDED",
    "JPEG_LOSSLESS",
    "JPEG_LOSSLESS_SV1",
    "JPEG_LS_LOSSLESS",
    "JPEG_LS_NEAR_LOSSLESS",
    "RLE_LOSSLESS",
    "SYNTAXES",
    "SyntaxInfo",
    "can_decode",
    "can_encode",
    "can_transcode",
    "decode_frame",
    "decoded_photometric",
    "encode_frame",
    "frame_kwargs",
    "is_encapsulated",
    "is_lossless",
    "iter_frame_bytes",
    "media_type_for",
    "transcode",
    "transcode_frame",
    "ts_for_media_type",
]

EXPLICIT_VR_LE = "1.2.840.10008.1.2.1"
IMPLICIT_VR_LE = "1.2.840.10008.1.2"
DEFLATED_EXPLICIT_VR_LE = "1.2.840.10008.1.2.1.99"
EXPLICIT_VR_BE = "1.2.840.10008.1.2.2"
JPEG_BASELINE = "1.2.840.10008.1.2.4.50"
JPEG_EXTENDED = "1.2.840.10008.1.2.4.51"
JPEG_LOSSLESS = "1.2.840.10008.1.2.4.57"
JPEG_LOSSLESS_SV1 = "1.2.840.10008.1.2.4.70"
JPEG_LS_LOSSLESS = "1.2.840.10008.1.2.4.80"
JPEG_LS_NEAR_LOSSLESS = "1.2.840.10008.1.2.4.81"
JPEG2000_LOSSLESS = "1.2.840.10008.1.2.4.90"
JPEG2000 = "1.2.840.10008.1.2.4.91"
HTJ2K_LOSSLESS = "1.2.840.10008.1.2.4.201"
HTJ2K_LOSSLESS_RPCL = "1.2.840.10008.1.2.4.202"
HTJ2K = "1.2.840.10008.1.2.4.203"
RLE_LOSSLESS = "1.2.840.10008.1.2.5"

OCTET_STREAM = "application/octet-stream"

#: Threads OpenJPEG may use per JPEG 2000 frame; 1 keeps a busy server's CPU honest.
J2K_THREADS = 1


@dataclass(frozen=True)
class SyntaxInfo:
    """What radcloud knows and can do with one transfer syntax."""

    uid: str
    name: str
    media_type: str  # PS3.18 Table 8.7.3-5 media type of its frames
    lossless: bool  # every stream in this syntax is lossless
    encapsulated: bool
    encode: bool  # radcloud can write it
    decode: bool  # radcloud can read it


def _si(uid: str, name: str, mt: str, lossless: bool, enc: bool, encap: bool = True) -> SyntaxInfo:
    return SyntaxInfo(uid, name, mt, lossless, encap, enc, True)


SYNTAXES: dict[str, SyntaxInfo] = {
    s.uid: s
    for s in (
        _si(EXPLICIT_VR_LE, "Explicit VR Little Endian", OCTET_STREAM, True, True, False),
        _si(IMPLICIT_VR_LE, "Implicit VR Little Endian", OCTET_STREAM, True, True, False),
        _si(DEFLATED_EXPLICIT_VR_LE, "Deflated Explicit VR LE", OCTET_STREAM, True, True, False),
        _si(EXPLICIT_VR_BE, "Explicit VR Big Endian", OCTET_STREAM, True, False, False),
        _si(JPEG_BASELINE, "JPEG Baseline (Process 1)", "image/jpeg", False, False),
        _si(JPEG_EXTENDED, "JPEG Extended (Process 2 & 4)", "image/jpeg", False, False),
        _si(JPEG_LOSSLESS, "JPEG Lossless (Process 14)", "image/jpeg", True, False),
        _si(JPEG_LOSSLESS_SV1, "JPEG Lossless SV1", "image/jpeg", True, False),
        _si(JPEG_LS_LOSSLESS, "JPEG-LS Lossless", "image/jls", True, True),
        _si(JPEG_LS_NEAR_LOSSLESS, "JPEG-LS Near-Lossless", "image/jls", False, False),
        _si(JPEG2000_LOSSLESS, "JPEG 2000 Lossless", "image/jp2", True, True),
        _si(JPEG2000, "JPEG 2000", "image/jp2", False, False),
        _si(HTJ2K_LOSSLESS, "HTJ2K Lossless", "image/jphc", True, True),
        _si(HTJ2K_LOSSLESS_RPCL, "HTJ2K Lossless RPCL", "image/jphc", True, True),
        _si(HTJ2K, "HTJ2K", "image/jphc", False, False),
        _si(RLE_LOSSLESS, "RLE Lossless", "image/dicom-rle", True, True),
    )
}

#: Default syntax of each frame media type when no ``transfer-syntax`` parameter is
#: given (PS3.18 Table 8.7.3-5).
DEFAULT_TS_FOR_MEDIA_TYPE: dict[str, str] = {
    OCTET_STREAM: EXPLICIT_VR_LE,
    "image/jpeg": JPEG_LOSSLESS_SV1,
    "image/jls": JPEG_LS_LOSSLESS,
    "image/jp2": JPEG2000_LOSSLESS,
    "image/jphc": HTJ2K_LOSSLESS,
    "image/dicom-rle": RLE_LOSSLESS,
}

_NATIVE = frozenset(uid for uid, s in SYNTAXES.items() if not s.encapsulated)
_HTJ2K = frozenset({HTJ2K_LOSSLESS, HTJ2K_LOSSLESS_RPCL, HTJ2K})
_J2K = frozenset({JPEG2000_LOSSLESS, JPEG2000})
_JPEG_DCT = frozenset({JPEG_BASELINE, JPEG_EXTENDED})
_JPEG_LOSSLESS = frozenset({JPEG_LOSSLESS, JPEG_LOSSLESS_SV1})
_JLS = frozenset({JPEG_LS_LOSSLESS, JPEG_LS_NEAR_LOSSLESS})


def _info(ts: str) -> SyntaxInfo:
    """The :class:`SyntaxInfo` of ``ts`` or a clear :class:`UnsupportedTransferSyntax`."""
    try:
        return SYNTAXES[str(ts)]
    except KeyError:
        raise UnsupportedTransferSyntax(
            f"transfer syntax {ts!r} is not supported; radcloud handles: "
            + ", ".join(f"{s.uid} ({s.name})" for s in SYNTAXES.values())
        ) from None


# ---------------------------------------------------------------- classification


def is_lossless(ts: str) -> bool:
    """True when every stream in ``ts`` is lossless (native, RLE, JPEG-LS/J2K/HTJ2K lossless)."""
    return _info(ts).lossless


def is_encapsulated(ts: str) -> bool:
    """True for compressed (encapsulated) syntaxes, False for native ones."""
    return _info(ts).encapsulated


def can_decode(ts: str) -> bool:
    """True when radcloud can decode pixel data stored in ``ts``."""
    return str(ts) in SYNTAXES and SYNTAXES[str(ts)].decode


def can_encode(ts: str) -> bool:
    """True when radcloud can write pixel data in ``ts`` (lossless targets only)."""
    return str(ts) in SYNTAXES and SYNTAXES[str(ts)].encode


def can_transcode(src_ts: str, dst_ts: str) -> bool:
    """True when :func:`transcode` can turn ``src_ts`` into ``dst_ts``."""
    return str(src_ts) == str(dst_ts) or (can_decode(src_ts) and can_encode(dst_ts))


def media_type_for(ts: str) -> str:
    """The DICOMweb media type of frames in ``ts`` (``application/octet-stream`` if native)."""
    return _info(ts).media_type


def ts_for_media_type(media_type: str, transfer_syntax: str | None = None) -> str:
    """The transfer syntax to serve for a requested frame media type.

    Accepts ``'image/jls'`` or ``'image/jls; transfer-syntax=1.2.840.10008.1.2.4.80'``
    (an explicit ``transfer_syntax`` argument wins); the syntax must belong to the
    media type (PS3.18 8.7.3), else :class:`UnsupportedTransferSyntax`.
    """
    base, *params = (p.strip() for p in media_type.split(";"))
    base = base.lower()
    for p in params:
        key, _, value = p.partition("=")
        if key.strip().lower() == "transfer-syntax" and transfer_syntax is None:
            transfer_syntax = value.strip().strip('"')
    if base not in DEFAULT_TS_FOR_MEDIA_TYPE:
        raise UnsupportedTransferSyntax(f"media type {base!r} has no DICOM transfer syntax")
    if transfer_syntax in (None, "", "*"):
        return DEFAULT_TS_FOR_MEDIA_TYPE[base]
    if _info(str(transfer_syntax)).media_type != base:
        raise UnsupportedTransferSyntax(
            f"transfer syntax {transfer_syntax} cannot be sent as {base}"
            f" (it is {media_type_for(str(transfer_syntax))})"
        )
    return str(transfer_syntax)


def decoded_photometric(ts: str, photometric: str) -> str:
    """Photometric Interpretation of frames after :func:`decode_frame`.

    DCT JPEG and JPEG 2000 decoders undo the colour transform (so YBR becomes RGB)
    and native 4:2:2 data is upsampled to YBR_FULL.
    """
    pi = str(photometric)
    if str(ts) in _JPEG_DCT and pi in ("YBR_FULL", "YBR_FULL_422"):
        return "RGB"
    if str(ts) in _J2K | _HTJ2K and pi in ("YBR_ICT", "YBR_RCT"):
        return "RGB"
    if str(ts) in _NATIVE and pi == "YBR_FULL_422":
        return "YBR_FULL"
    return pi


# --------------------------------------------------------------------- sample math


def _dtype(bits_allocated: int, signed: bool, byteorder: str = "<") -> np.dtype:
    """numpy dtype of a frame's samples as DICOM stores them."""
    if bits_allocated not in (1, 8, 16, 32):
        raise UnsupportedTransferSyntax(f"Bits Allocated {bits_allocated} is not supported")
    size = max(1, bits_allocated // 8)
    return np.dtype(f"{byteorder}{'i' if signed else 'u'}{size}")


def _to_unsigned_bits(arr: np.ndarray, bits_stored: int) -> np.ndarray:
    """Two's-complement pattern of ``arr`` masked to ``bits_stored`` bits (unsigned view)."""
    u = arr.view(arr.dtype.str.replace("i", "u")) if arr.dtype.kind == "i" else arr
    if bits_stored < u.dtype.itemsize * 8:
        u = u & u.dtype.type((1 << bits_stored) - 1)
    return u


def _sign_extend(arr: np.ndarray, bits_stored: int, dtype: np.dtype) -> np.ndarray:
    """Interpret the low ``bits_stored`` bits of ``arr`` as signed values of ``dtype``."""
    width = dtype.itemsize * 8
    out = arr.astype(dtype.str.replace("i", "u"), copy=False).view(dtype.newbyteorder("="))
    if bits_stored < width:
        shift = width - bits_stored
        out = (out << shift) >> shift  # arithmetic shift on a signed dtype
    return out


def _fit_dtype(arr: np.ndarray, bits_stored: int, dtype: np.dtype) -> np.ndarray:
    """Cast a decoder's output to the DICOM sample dtype, sign-extending when needed."""
    native = dtype.newbyteorder("=")
    if dtype.kind == "i" and arr.dtype.kind == "u":
        return _sign_extend(arr, bits_stored, native)
    return arr.astype(native, copy=False)


def _precision(arr: np.ndarray, bits_stored: int) -> int:
    """Bits needed for ``arr``: ``bits_stored`` unless values stray outside that range."""
    if arr.size == 0:
        return bits_stored
    if arr.dtype.kind == "i":
        lo, hi = int(arr.min()), int(arr.max())
        need = max((hi).bit_length(), (-lo - 1).bit_length() if lo < 0 else 0) + 1
    else:
        need = int(arr.max()).bit_length()
    return max(bits_stored, need)


# ------------------------------------------------------------------------ encoders


def _enc_native(arr: np.ndarray, bits_stored: int, signed: bool) -> bytes:
    return np.ascontiguousarray(arr, dtype=arr.dtype.newbyteorder("<")).tobytes()


def _enc_rle(arr: np.ndarray, bits_stored: int, signed: bool) -> bytes:
    rows, cols = arr.shape[:2]
    spp = 1 if arr.ndim == 2 else arr.shape[2]
    data = np.ascontiguousarray(arr, dtype=arr.dtype.newbyteorder("<")).tobytes()
    return bytes(
        _rle_encode(
            data,
            rows=rows,
            columns=cols,
            samples_per_pixel=spp,
            bits_allocated=arr.dtype.itemsize * 8,
            byteorder="<",
        )
    )


def _enc_jls(arr: np.ndarray, bits_stored: int, signed: bool) -> bytes:
    precision = _precision(arr, bits_stored)
    if arr.dtype.kind == "i" and precision > bits_stored:
        raise UnsupportedTransferSyntax(
            f"signed samples exceed Bits Stored ({bits_stored}); JPEG-LS cannot keep them"
        )
    u = np.ascontiguousarray(_to_unsigned_bits(arr, precision))
    rows, cols = arr.shape[:2]
    spp = 1 if arr.ndim == 2 else arr.shape[2]
    try:
        return bytes(
            jpeg_ls.encode_buffer(
                u.tobytes(), rows, cols, spp, precision, interleave_mode=2 if spp > 1 else None
            )
        )
    except RuntimeError:  # pyjpegls under-sizes its buffer for tiny images
        return bytes(imagecodecs.jpegls_encode(u))


def _enc_j2k(arr: np.ndarray, bits_stored: int, signed: bool) -> bytes:
    return bytes(
        imagecodecs.jpeg2k_encode(
            np.ascontiguousarray(arr),
            codecformat="J2K",
            reversible=True,
            mct=False,
            bitspersample=_precision(arr, bits_stored),
            numthreads=J2K_THREADS,
        )
    )


def _enc_htj2k(arr: np.ndarray, bits_stored: int, signed: bool, rpcl: bool = False) -> bytes:
    kw: dict[str, Any] = {"reversible": True}
    if arr.ndim == 3:  # OpenJPH takes colour without a transform as separate planes
        arr = np.moveaxis(arr, -1, 0)
        kw.update(rgb=False, planar=True)
    if rpcl:  # PS3.5 A.4.11: RPCL order (OpenJPH default), TLM, tile-parts per resolution
        kw.update(tlm=True, tilepart=imagecodecs.HTJ2K.TILEPART.RESOLUTIONS)
    return bytes(imagecodecs.htj2k_encode(np.ascontiguousarray(arr), **kw))


_Encoder = Callable[[np.ndarray, int, bool], bytes]

_ENCODERS: dict[str, _Encoder] = {
    EXPLICIT_VR_LE: _enc_native,
    IMPLICIT_VR_LE: _enc_native,
    DEFLATED_EXPLICIT_VR_LE: _enc_native,
    RLE_LOSSLESS: _enc_rle,
    JPEG_LS_LOSSLESS: _enc_jls,
    JPEG2000_LOSSLESS: _enc_j2k,
    HTJ2K_LOSSLESS: _enc_htj2k,
    HTJ2K_LOSSLESS_RPCL: lambda a, b, s: _enc_htj2k(a, b, s, rpcl=True),
}


def encode_frame(
    arr: np.ndarray, ts: str, *, bits_stored: int, signed: bool, photometric: str
) -> bytes:
    """Encode one frame losslessly as the bytes of a ``ts`` fragment (or native frame).

    ``arr`` is ``(rows, columns)`` or ``(rows, columns, samples)`` interleaved, with the
    stored sample dtype (uint8/16 or int8/16; 32-bit only for native and RLE).
    """
    info = _info(ts)
    if not info.encode:
        kind = "lossy" if not info.lossless else "decode-only"
        raise UnsupportedTransferSyntax(
            f"cannot encode {info.name} ({info.uid}): it is {kind} in radcloud; "
            "choose a lossless syntax such as HTJ2K Lossless or JPEG-LS Lossless"
        )
    if str(photometric) == "YBR_FULL_422":
        raise UnsupportedTransferSyntax(
            "YBR_FULL_422 frames must be upsampled to YBR_FULL before encoding"
        )
    if arr.dtype.kind not in "iu" or arr.ndim not in (2, 3):
        raise UnsupportedTransferSyntax(f"cannot encode a {arr.dtype} array of shape {arr.shape}")
    if signed and arr.dtype.kind == "u":
        arr = arr.view(arr.dtype.str.replace("u", "i"))
    if arr.dtype.itemsize > 2 and info.uid not in (_NATIVE | {RLE_LOSSLESS}):
        raise UnsupportedTransferSyntax(f"{info.name} cannot hold 32-bit samples")
    return _ENCODERS[info.uid](arr, bits_stored, signed)


# ------------------------------------------------------------------------ decoders


@dataclass(frozen=True)
class _Frame:
    """Geometry of one frame, as decoders need it."""

    rows: int
    columns: int
    spp: int
    bits_allocated: int
    bits_stored: int
    signed: bool
    photometric: str
    planar: int

    @property
    def shape(self) -> tuple[int, ...]:
        return (self.rows, self.columns) if self.spp == 1 else (self.rows, self.columns, self.spp)

    @property
    def dtype(self) -> np.dtype:
        return _dtype(self.bits_allocated, self.signed)


def _dec_native(data: bytes, f: _Frame, byteorder: str = "<") -> np.ndarray:
    if f.bits_allocated == 1:
        n = f.rows * f.columns * f.spp
        bits = np.unpackbits(np.frombuffer(data, np.uint8), bitorder="little")[:n]
        return bits.reshape(f.shape)
    dt = _dtype(f.bits_allocated, False, byteorder)
    if f.photometric == "YBR_FULL_422":
        return _upsample_422(data, f)
    n = f.rows * f.columns * f.spp
    raw = np.frombuffer(data, dt, count=n)
    if f.spp > 1 and f.planar == 1:
        raw = raw.reshape(f.spp, f.rows, f.columns).transpose(1, 2, 0)
    raw = raw.reshape(f.shape)
    if f.signed:
        return _sign_extend(raw, f.bits_stored, f.dtype)
    return raw.astype(f.dtype.newbyteorder("="), copy=False)


def _upsample_422(data: bytes, f: _Frame) -> np.ndarray:
    """Native YBR_FULL_422 (Y Y Cb Cr per pixel pair) to full-resolution YBR_FULL."""
    if f.bits_allocated != 8 or f.columns % 2:
        raise UnsupportedTransferSyntax("YBR_FULL_422 needs 8-bit samples and even columns")
    q = np.frombuffer(data, np.uint8, count=f.rows * f.columns * 2).reshape(f.rows, -1, 4)
    out = np.empty((f.rows, f.columns, 3), np.uint8)
    out[..., 0] = q[..., :2].reshape(f.rows, f.columns)
    out[..., 1] = np.repeat(q[..., 2], 2, axis=1)
    out[..., 2] = np.repeat(q[..., 3], 2, axis=1)
    return out


def _dec_rle(data: bytes, f: _Frame) -> np.ndarray:
    raw = _rle_decode(data, f.rows * f.columns, f.bits_allocated, "<")
    # pylibjpeg-rle returns colour-by-plane samples
    planar = _Frame(f.rows, f.columns, f.spp, f.bits_allocated, f.bits_stored, False, "", 1)
    arr = _dec_native(bytes(raw), planar)
    return _fit_dtype(arr, f.bits_stored, f.dtype) if f.signed else arr


def _dec_jls(data: bytes, f: _Frame) -> np.ndarray:
    return _fit_dtype(imagecodecs.jpegls_decode(data), f.bits_stored, f.dtype)


def _dec_j2k(data: bytes, f: _Frame) -> np.ndarray:
    return _fit_dtype(
        imagecodecs.jpeg2k_decode(data, numthreads=J2K_THREADS), f.bits_stored, f.dtype
    )


def _dec_htj2k(data: bytes, f: _Frame) -> np.ndarray:
    try:
        arr = imagecodecs.htj2k_decode(data, planar=False)
    except Exception:  # streams using features OpenJPH lacks: OpenJPEG reads HTJ2K too
        arr = imagecodecs.jpeg2k_decode(data, numthreads=J2K_THREADS)
    return _fit_dtype(arr, f.bits_stored, f.dtype)


def _dec_jpeg(data: bytes, f: _Frame) -> np.ndarray:
    kw: dict[str, Any] = {}
    jfif = data[2:4] == b"\xff\xe0" and data[6:11] == b"JFIF\x00"
    if f.spp == 3 and f.photometric == "RGB" and not jfif:
        kw.update(colorspace="RGB", outcolorspace="RGB")  # stream has no colour transform
    return _fit_dtype(imagecodecs.jpeg8_decode(data, **kw), f.bits_stored, f.dtype)


def _dec_ljpeg(data: bytes, f: _Frame) -> np.ndarray:
    try:
        arr = imagecodecs.jpegsof3_decode(data)
    except Exception:
        arr = imagecodecs.ljpeg_decode(data)
    return _fit_dtype(arr, f.bits_stored, f.dtype)


_DECODERS: dict[str, Callable[[bytes, _Frame], np.ndarray]] = {
    EXPLICIT_VR_LE: _dec_native,
    IMPLICIT_VR_LE: _dec_native,
    DEFLATED_EXPLICIT_VR_LE: _dec_native,
    EXPLICIT_VR_BE: lambda d, f: _dec_native(d, f, ">"),
    RLE_LOSSLESS: _dec_rle,
    JPEG_LS_LOSSLESS: _dec_jls,
    JPEG_LS_NEAR_LOSSLESS: _dec_jls,
    JPEG2000_LOSSLESS: _dec_j2k,
    JPEG2000: _dec_j2k,
    HTJ2K_LOSSLESS: _dec_htj2k,
    HTJ2K_LOSSLESS_RPCL: _dec_htj2k,
    HTJ2K: _dec_htj2k,
    JPEG_BASELINE: _dec_jpeg,
    JPEG_EXTENDED: _dec_jpeg,
    JPEG_LOSSLESS: _dec_ljpeg,
    JPEG_LOSSLESS_SV1: _dec_ljpeg,
}


def decode_frame(
    data: bytes,
    ts: str,
    *,
    rows: int,
    columns: int,
    samples_per_pixel: int,
    bits_allocated: int,
    bits_stored: int,
    pixel_representation: int,
    photometric: str,
    planar_configuration: int = 0,
) -> np.ndarray:
    """Decode one frame's bytes in ``ts`` to ``(rows, columns[, samples])``.

    The dtype follows *Bits Allocated* and *Pixel Representation* (uint8 ... int32;
    1-bit frames come back as 0/1 uint8); colour comes back interleaved, in
    :func:`decoded_photometric` colour space.  ``planar_configuration`` only
    matters for native colour frames.
    """
    info = _info(ts)
    f = _Frame(
        rows,
        columns,
        samples_per_pixel,
        bits_allocated,
        bits_stored,
        pixel_representation == 1,
        str(photometric),
        planar_configuration,
    )
    try:
        arr = _DECODERS[info.uid](bytes(data), f)
    except UnsupportedTransferSyntax:
        raise
    except Exception as exc:
        raise UnsupportedTransferSyntax(
            f"cannot decode this {info.name} frame ({rows}x{columns}, "
            f"{samples_per_pixel} samples, {bits_allocated} bits): {exc}"
        ) from exc
    if arr.shape != f.shape:
        raise UnsupportedTransferSyntax(
            f"{info.name} frame decoded to shape {arr.shape}, header says {f.shape}"
        )
    return arr


def frame_kwargs(ds: Dataset) -> dict[str, Any]:
    """The pixel description of ``ds`` as keyword arguments for :func:`decode_frame`."""
    return {
        "rows": int(ds.Rows),
        "columns": int(ds.Columns),
        "samples_per_pixel": int(ds.get("SamplesPerPixel", 1)),
        "bits_allocated": int(ds.BitsAllocated),
        "bits_stored": int(ds.get("BitsStored", ds.BitsAllocated)),
        "pixel_representation": int(ds.get("PixelRepresentation", 0)),
        "photometric": str(ds.get("PhotometricInterpretation", "MONOCHROME2")),
        "planar_configuration": int(ds.get("PlanarConfiguration", 0) or 0),
    }


def transcode_frame(data: bytes, src_ts: str, dst_ts: str, **pixel: Any) -> bytes:
    """Re-encode one frame from ``src_ts`` to ``dst_ts`` (``pixel`` as :func:`frame_kwargs`).

    Same syntax in and out returns ``data`` untouched, so a stored HTJ2K frame is
    served as HTJ2K without any codec work.
    """
    if str(src_ts) == str(dst_ts):
        return data
    if not can_transcode(src_ts, dst_ts):
        raise UnsupportedTransferSyntax(f"cannot transcode {src_ts} to {dst_ts}")
    arr = decode_frame(data, src_ts, **pixel)
    return encode_frame(
        arr,
        dst_ts,
        bits_stored=int(pixel["bits_stored"]),
        signed=int(pixel["pixel_representation"]) == 1,
        photometric=decoded_photometric(src_ts, pixel["photometric"]),
    )


# ---------------------------------------------------------------- whole datasets


def _number_of_frames(ds: Dataset) -> int:
    return int(ds.get("NumberOfFrames", 1) or 1)


def _native_frame_bytes(ds: Dataset, pix: bytes) -> Iterator[bytes]:
    """Split native Pixel Data ``pix`` into frames (1-bit frames need not be byte aligned)."""
    n = _number_of_frames(ds)
    kw = frame_kwargs(ds)
    per = kw["rows"] * kw["columns"] * kw["samples_per_pixel"]
    if kw["bits_allocated"] == 1:
        bits = np.unpackbits(np.frombuffer(pix, np.uint8), bitorder="little")
        for i in range(n):
            yield np.packbits(bits[i * per : (i + 1) * per], bitorder="little").tobytes()
        return
    size = per * kw["bits_allocated"] // 8
    if kw["photometric"] == "YBR_FULL_422":
        size = kw["rows"] * kw["columns"] * 2
    if len(pix) < size * n:
        raise UnsupportedTransferSyntax(
            f"Pixel Data holds {len(pix)} bytes, {n} frames need {size * n}"
        )
    for i in range(n):
        yield pix[i * size : (i + 1) * size]


def _source_frames(ds: Dataset, src: str) -> Iterator[bytes]:
    """Each frame's bytes of ``ds`` as stored in ``src``."""
    if src in _NATIVE:
        yield from _native_frame_bytes(ds, _native_pixel_bytes(ds, src))
        return
    ext = None
    if "ExtendedOffsetTable" in ds and "ExtendedOffsetTableLengths" in ds:
        ext = (ds.ExtendedOffsetTable, ds.ExtendedOffsetTableLengths)
    yield from generate_frames(
        ds.PixelData, number_of_frames=_number_of_frames(ds), extended_offsets=ext
    )


def _native_pixel_bytes(ds: Dataset, src: str) -> bytes:
    """Native Pixel Data bytes; big endian 8-bit samples written as OW are word-swapped."""
    elem = ds["PixelData"]
    raw = bytes(elem.value)
    if src != EXPLICIT_VR_BE or int(ds.BitsAllocated) != 8 or elem.VR != "OW":
        return raw
    raw += b"\0" * (len(raw) % 2)
    return np.frombuffer(raw, ">u2").astype("<u2").tobytes()


def iter_frame_bytes(ds: Dataset) -> Iterator[bytes]:
    """Each frame of ``ds`` as stored: a codestream, or native little-endian bytes.

    Feed them to :func:`decode_frame` with ``frame_kwargs(ds)`` and the data set's
    transfer syntax.
    """
    yield from _source_frames(ds, str(ds.file_meta.TransferSyntaxUID))


def _check_pixels(ds: Dataset, src: str, dst: str) -> None:
    """Clear errors for data sets transcode cannot handle."""
    if "PixelData" not in ds:
        if "FloatPixelData" in ds or "DoubleFloatPixelData" in ds:
            raise UnsupportedTransferSyntax("float pixel data can only be stored natively")
        return
    if not can_decode(src):
        raise UnsupportedTransferSyntax(f"cannot decode pixel data in {src}")
    info = _info(dst)
    if not info.encode:
        raise UnsupportedTransferSyntax(
            f"cannot transcode to {info.name} ({info.uid}): radcloud only writes lossless "
            "syntaxes (Explicit/Implicit VR LE, RLE, JPEG-LS, JPEG 2000 and HTJ2K lossless)"
        )
    if int(ds.BitsAllocated) == 1 and dst not in _NATIVE:
        raise UnsupportedTransferSyntax(f"1-bit pixel data cannot be stored as {info.name}")


def _set_pixel_data(out: Dataset, frames: list[bytes], dst: str) -> None:
    """Store encoded frames in ``out`` (encapsulated with an offset table, or native)."""
    for kw in ("ExtendedOffsetTable", "ExtendedOffsetTableLengths"):
        if kw in out:
            del out[kw]
    if dst in _NATIVE:
        out.PixelData = b"".join(frames)
        out["PixelData"].VR = "OW" if int(out.BitsAllocated) > 8 else "OB"
        out["PixelData"].is_undefined_length = False
        return
    if sum(len(f) + 8 for f in frames) < 2**32 - 8 * (len(frames) + 2):
        out.PixelData = encapsulate(frames, has_bot=True)
    else:  # a basic offset table cannot address past 4 GiB
        data, offsets, lengths = encapsulate_extended(frames)
        out.PixelData = data
        out.ExtendedOffsetTable = offsets
        out.ExtendedOffsetTableLengths = lengths
    out["PixelData"].VR = "OB"
    out["PixelData"].is_undefined_length = True


def transcode(ds: Dataset, target_ts: str, *, verify: bool = False) -> Dataset:
    """A copy of ``ds`` with its pixel data losslessly re-encoded in ``target_ts``.

    Every frame is decoded and encoded again; samples keep their exact values (lossy
    sources keep their already-lossy values and their LossyImageCompression flag).
    ``file_meta.TransferSyntaxUID`` is updated, SOP Instance UID kept.  ``verify``
    decodes the result again and compares, for callers that want proof.
    """
    src = str(ds.file_meta.TransferSyntaxUID)
    dst = str(UID(str(target_ts)))
    _info(dst)
    out = copy.deepcopy(ds)
    if src == dst:
        return out
    _check_pixels(ds, src, dst)
    out.file_meta.TransferSyntaxUID = UID(dst)
    if "PixelData" not in ds:
        return out
    if {src, dst} <= {EXPLICIT_VR_LE, IMPLICIT_VR_LE, DEFLATED_EXPLICIT_VR_LE}:
        return out  # same little-endian native bytes, only the data set encoding changes
    kw = frame_kwargs(ds)
    photometric = decoded_photometric(src, kw["photometric"])
    frames: list[bytes] = []
    kept: list[np.ndarray] = []  # decoded frames, held only when verifying
    for data in _source_frames(ds, src):  # one frame in memory at a time
        arr = decode_frame(data, src, **kw)
        frames.append(
            encode_frame(
                arr,
                dst,
                bits_stored=kw["bits_stored"],
                signed=kw["pixel_representation"] == 1,
                photometric=photometric,
            )
        )
        if verify:
            kept.append(arr)
    out.PhotometricInterpretation = photometric
    if kw["samples_per_pixel"] > 1:
        out.PlanarConfiguration = 0
    _set_pixel_data(out, frames, dst)
    if src == EXPLICIT_VR_BE:
        _forget_big_endian(out)
    if verify:
        _verify(out, kept, dst)
    return out


def _forget_big_endian(out: Dataset) -> None:
    """Let a data set read as Explicit VR Big Endian be written little endian.

    Converting every raw element now decodes its value with the original
    encoding; pydicom then encodes it afresh in the new syntax.  (OW values other
    than Pixel Data, e.g. LUT data, keep their big-endian bytes: the retired
    syntax is accepted for pixels only.)
    """
    for _ in out.iterall():
        pass
    out.set_original_encoding(None, None, out.get("SpecificCharacterSet"))


def _verify(out: Dataset, arrays: list[np.ndarray], dst: str) -> None:
    """Decode ``out`` again and insist every frame equals what went in."""
    kw = frame_kwargs(out)
    for i, (frame, want) in enumerate(zip(_source_frames(out, dst), arrays, strict=True)):
        got = decode_frame(frame, dst, **kw)
        if got.shape != want.shape or not np.array_equal(got, want):
            raise UnsupportedTransferSyntax(f"frame {i + 1} did not survive {dst} bit-exactly")
