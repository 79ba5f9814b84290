"""Lossless compression of pixel data at rest, with the received file recoverable bit for bit.

A rule (``Settings.compression`` + ``compression_modalities``) picks JPEG-LS,
JPEG 2000 or HTJ2K lossless for uncompressed images.  The blob becomes a valid
DICOM file in that syntax (so it can be served as such without work); the
bytes of the received file around the pixel data go to a small *envelope*
blob.  The received file is rebuilt as envelope prefix + decoded frames +
envelope suffix, and this is proven at ingest: if any frame does not decode to
exactly the received bytes, the instance is stored uncompressed instead.
"""

from __future__ import annotations

import io
import logging
import struct
from dataclasses import dataclass
from pathlib import Path

from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.filewriter import dcmwrite

from radcloud.archive.service import Archive
from radcloud.config import CompressionRule, Settings
from radcloud.dicom import codecs
from radcloud.dicom.parse import ParsedInstance
from radcloud.dicom.pixel_info import PixelInfo
from radcloud.errors import RadcloudError

log = logging.getLogger(__name__)

RULE_TS = {
    CompressionRule.JPEG_LS: codecs.JPEG_LS_LOSSLESS,
    CompressionRule.JPEG_2000: codecs.JPEG2000_LOSSLESS,
    CompressionRule.HTJ2K: codecs.HTJ2K_LOSSLESS,
}
_NATIVE = {codecs.EXPLICIT_VR_LE, codecs.IMPLICIT_VR_LE}


@dataclass(frozen=True)
class Compressed:
    """A compressed copy written to ``path`` and the envelope that restores the original."""

    path: Path
    envelope: bytes
    transfer_syntax_uid: str


def target_syntax(settings: Settings, parsed: ParsedInstance) -> str | None:
    """The syntax the rule wants for this instance, or None to keep it as received."""
    ts = RULE_TS.get(settings.compression)
    if ts is None or parsed.transfer_syntax_uid not in _NATIVE or parsed.frames is None:
        return None
    wanted = {m.strip().upper() for m in settings.compression_modalities.split(",") if m.strip()}
    if wanted and parsed.text("Modality").upper() not in wanted:
        return None
    bits = parsed.integer("BitsAllocated")
    photometric = parsed.text("PhotometricInterpretation")
    if bits not in (8, 16) or photometric not in ("MONOCHROME1", "MONOCHROME2", "RGB"):
        return None
    return ts


def compress(parsed: ParsedInstance, ts: str, out: Path) -> Compressed | None:
    """Write ``parsed`` re-encoded in ``ts`` to ``out``; None when it would not be exact."""
    try:
        raw = parsed.path.read_bytes()
        encoded = codecs.transcode(dcmread(io.BytesIO(raw)), ts)
        info = PixelInfo.of(parsed.metadata)
        assert parsed.frames is not None
        decoded = decoded_frames(encoded, info, ts)
        for (loc,), frame in zip(parsed.frames, decoded, strict=True):
            if frame != raw[loc[0] : loc[0] + loc[1]]:
                log.info("compression skipped for %s: not bit-exact", parsed.sop_uid)
                return None
        with open(out, "wb") as fh:
            dcmwrite(fh, encoded, enforce_file_format=True)
    except (RadcloudError, ValueError, NotImplementedError, RuntimeError) as exc:
        log.info("compression skipped for %s: %s", parsed.sop_uid, exc)
        return None
    return Compressed(out, _envelope(raw, parsed), ts)


def _envelope(raw: bytes, parsed: ParsedInstance) -> bytes:
    """prefix (up to the pixel value) + pixel value tail (padding) + suffix, with lengths."""
    assert parsed.frames is not None
    start = parsed.frames[0][0][0]
    end_frames = parsed.frames[-1][0][0] + parsed.frames[-1][0][1]
    value_len = struct.unpack("<I", raw[start - 4 : start])[0]
    end_value = start + value_len
    prefix, tail, suffix = raw[:start], raw[end_frames:end_value], raw[end_value:]
    return struct.pack("<QQ", len(prefix), len(tail)) + prefix + tail + suffix


def restore(envelope: bytes, frames: list[bytes]) -> bytes:
    """The received file from its envelope and the decoded frames' raw bytes."""
    n_prefix, n_tail = struct.unpack_from("<QQ", envelope)
    body = memoryview(envelope)[16:]
    prefix, tail, suffix = (
        body[:n_prefix],
        body[n_prefix : n_prefix + n_tail],
        body[n_prefix + n_tail :],
    )
    buf = io.BytesIO()
    buf.write(prefix)
    for f in frames:
        buf.write(f)
    buf.write(tail)
    buf.write(suffix)
    return buf.getvalue()


def decoded_frames(blob: bytes | Dataset, info: PixelInfo, ts: str) -> list[bytes]:
    """Native little-endian bytes of every frame of a compressed file (or data set)."""
    ds = dcmread(io.BytesIO(blob)) if isinstance(blob, bytes) else blob
    args = info.codec_args()
    return [
        info.native_bytes(codecs.decode_frame(f, ts, **args)) for f in codecs.iter_frame_bytes(ds)
    ]


def savings(archive: Archive) -> dict[str, int]:
    """Bytes as received vs bytes stored, over every instance (the figure operators ask for)."""
    from sqlalchemy import func, select

    from radcloud.store.models import Instance

    with archive.read() as conn:
        received, stored, n = conn.execute(
            select(
                func.coalesce(func.sum(func.coalesce(Instance.original_size, Instance.size)), 0),
                func.coalesce(func.sum(Instance.size), 0),
                func.count(Instance.envelope_key),
            )
        ).one()
    return {
        "received_bytes": int(received),
        "stored_bytes": int(stored),
        "saved_bytes": int(received) - int(stored),
        "compressed_instances": int(n),
    }
