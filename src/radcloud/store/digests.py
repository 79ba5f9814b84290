"""Digests that prove stored bytes are unchanged.

A whole file has a SHA-256 (recorded at ingest, checked on whole-file reads);
each frame has a CRC-32 of its bytes, checked when a frame is served by a
ranged read.  CRC-32 detects the random corruption storage suffers (bit rot,
torn writes); the file SHA-256 is what proves integrity end to end.
"""

from __future__ import annotations

import hashlib
import zlib
from pathlib import Path

import orjson

CHUNK = 1024 * 1024

Frames = list[list[tuple[int, int]]]


def frame_digest(data: bytes) -> str:
    """The digest recorded for one frame's bytes."""
    return f"crc32:{zlib.crc32(data):08x}"


def file_digests(path: Path, frames: Frames | None) -> tuple[str, str | None]:
    """(SHA-256 of the file, JSON list of frame digests or None), in one streaming pass."""
    sha = hashlib.sha256()
    # (start, end, frame index) of every fragment, in file order
    spans = sorted((off, off + n, i) for i, frags in enumerate(frames or []) for off, n in frags)
    crcs = [0] * len(frames or [])
    pos, k = 0, 0
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            sha.update(chunk)
            end = pos + len(chunk)
            while k < len(spans) and spans[k][0] < end:
                start, stop, i = spans[k]
                lo, hi = max(start, pos), min(stop, end)
                crcs[i] = zlib.crc32(chunk[lo - pos : hi - pos], crcs[i])
                if stop > end:
                    break
                k += 1
            pos = end
    digests = orjson.dumps([f"crc32:{c:08x}" for c in crcs]).decode() if frames else None
    return sha.hexdigest(), digests
