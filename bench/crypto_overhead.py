#!/usr/bin/env python3
"""What encryption at rest costs: blob storage encrypted vs plain, same data, same disk.

Rows: ``put`` (spooled file → blob, fsync included), ``full read`` (open + read
the whole blob, as WADO-RS instance retrieval and re-hashing do), ``frame read``
(``get_range`` of one 512x512x2-byte frame from a multi-frame blob, as frame
retrieval and rendering do; frames start at random offsets so chunk boundaries
fall anywhere).  Prints MB/s for each, the ratio encrypted / plain (1.0 = free),
and the per-frame latency.  The page cache is warm for both: this measures the
CPU cost of the cipher, not the disk.

  .venv/bin/python bench/crypto_overhead.py [--frames 60] [--reps 3] [--dir /path]
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from radcloud.store.blobs import FileStorage, new_key
from radcloud.store.crypto import CHUNK_SIZE, Keyring

FRAME = 512 * 512 * 2
MB = 1e6


def _best(fn: Callable[[], object], reps: int) -> float:
    """Fastest of ``reps`` runs, in seconds (least disturbed by other work on the machine)."""
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def measure(storage: FileStorage, data: bytes, reps: int, n_frames: int) -> dict[str, float]:
    """MB/s for put, full read and ranged frame reads on ``storage``."""
    keys: list[str] = []

    def put() -> None:
        fh, path = storage.spool()
        with fh:
            fh.write(data)
        key = new_key()
        storage.put_file(key, path)
        keys.append(key)

    put_s = _best(put, reps)
    key = keys[-1]

    def full() -> None:
        with storage.open(key) as fh:
            assert len(fh.read()) == len(data)

    full_s = _best(full, reps)
    rng = random.Random(1)
    offsets = [rng.randrange(0, len(data) - FRAME) for _ in range(200)]

    def frames() -> None:
        for off in offsets:
            assert len(storage.get_range(key, off, FRAME)) == FRAME

    frame_s = _best(frames, reps) / len(offsets)
    # a frame at a frame boundary of the file, as the archive actually reads them
    aligned = [i * FRAME for i in rng.sample(range(n_frames), min(n_frames, 50))]

    def aligned_frames() -> None:
        for off in aligned:
            assert len(storage.get_range(key, off, FRAME)) == FRAME

    aligned_s = _best(aligned_frames, reps)
    for k in keys:
        storage.delete(k)
    return {
        "put": len(data) / put_s / MB,
        "full read": len(data) / full_s / MB,
        "frame read": FRAME / frame_s / MB,
        "frame read (aligned)": FRAME * len(aligned) / aligned_s / MB,
        "frame ms": frame_s * 1e3,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=60, help="frames in the test blob (512 KiB each)")
    ap.add_argument("--reps", type=int, default=3, help="runs per row (best is kept)")
    ap.add_argument("--dir", type=Path, default=None, help="where to write (default: a temp dir)")
    args = ap.parse_args()

    data = os.urandom(FRAME * args.frames)
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        root = Path(tmp)
        ring = Keyring([("bench", os.urandom(32))])
        plain = FileStorage(root / "plain", root / "tmp")
        encrypted = FileStorage(root / "enc", root / "tmp", keyring=ring)
        p = measure(plain, data, args.reps, args.frames)
        e = measure(encrypted, data, args.reps, args.frames)

    size = len(data) / 2**20
    print(f"blob: {args.frames} frames of 512x512x2 bytes = {size:.0f} MiB; "
          f"chunk {CHUNK_SIZE // 1024} KiB; best of {args.reps}")  # fmt: skip
    print(f"{'row':<22}{'plain MB/s':>12}{'encrypted MB/s':>16}{'enc/plain':>11}")
    for row in ("put", "full read", "frame read", "frame read (aligned)"):
        print(f"{row:<22}{p[row]:>12.0f}{e[row]:>16.0f}{e[row] / p[row]:>11.2f}")
    print(f"{'one frame, ms':<22}{p['frame ms']:>12.3f}{e['frame ms']:>16.3f}"
          f"{e['frame ms'] / p['frame ms']:>11.2f}")  # fmt: skip
    print(f"encryption adds {e['frame ms'] - p['frame ms']:.3f} ms per 512 KiB frame read")
    return 0


if __name__ == "__main__":
    sys.exit(main())
