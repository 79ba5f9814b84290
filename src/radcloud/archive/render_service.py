"""Retrieval in derived forms: other transfer syntaxes, single frames, rendered images, thumbnails.

Nothing stored is ever changed: other forms are derived on request from one
frame (frames, rendered images) or from the verified blob (a whole instance in
another transfer syntax), and ``*`` gives back the file exactly as received.
Decode/encode/render work is CPU-bound, so it runs under a process-wide
semaphore sized by ``settings.render_concurrency`` and a burst of viewer
requests cannot starve ingest.  Thumbnails are cached as
blobs with a :class:`Thumbnail` row per instance and variant.
"""

from __future__ import annotations

import asyncio
import io
import itertools
import threading
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydicom import dcmread
from pydicom.dataelem import RawDataElement
from pydicom.filewriter import dcmwrite
from sqlalchemy import delete, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from radcloud.archive import retrieve
from radcloud.archive.retrieve import InstanceRef
from radcloud.archive.service import Archive
from radcloud.auth.access import Principal
from radcloud.dicom import codecs
from radcloud.dicom.pixel_info import PixelInfo
from radcloud.errors import BadQuery, NotFound
from radcloud.render import pixels
from radcloud.store.blobs import new_key
from radcloud.store.models import Instance, Thumbnail

EXPLICIT_LE = "1.2.840.10008.1.2.1"
DEFLATED = "1.2.840.10008.1.2.1.99"
#: Syntaxes whose frames are the same little-endian native bytes.
LE_NATIVE = {"1.2.840.10008.1.2", EXPLICIT_LE, DEFLATED}
PIXEL_DATA = "7FE00010"

THUMBNAIL_QUALITY = 80
#: Thumbnail sizes kept in the cache; other sizes are rendered on every request, so
#: arbitrary viewport values cannot fill the blob store.
CACHED_SIZES = frozenset({64, 128, 256})

#: (viewport width, height) or (width, height, sx, sy, sw, sh) per PS3.18 §8.3.5.1.3.
Viewport = tuple[int, ...]
#: (center, width) or (center, width, "linear" | "linear-exact" | "sigmoid").
Window = tuple[float, float] | tuple[float, float, str]

_slots: dict[int, threading.BoundedSemaphore] = {}
_slots_lock = threading.Lock()


@contextmanager
def _slot(archive: Archive) -> Iterator[None]:
    """Hold one of the process-wide decode/encode/render slots."""
    n = max(1, int(archive.settings.render_concurrency))
    with _slots_lock:
        sem = _slots.setdefault(n, threading.BoundedSemaphore(n))
    with sem:
        yield


# ------------------------------------------------------------------ pixel format


def decode(raw: bytes, ts: str, info: PixelInfo) -> np.ndarray:
    """One frame's bytes in ``ts`` as (rows, columns[, samples]) (call under a slot)."""
    return codecs.decode_frame(raw, ts, **info.codec_args())


def encode(arr: np.ndarray, ts: str, info: PixelInfo, source_ts: str) -> bytes:
    """A decoded frame (from ``source_ts``) as one frame in ``ts`` (call under a slot)."""
    if ts in LE_NATIVE:
        return info.native_bytes(arr)
    return codecs.encode_frame(
        arr, ts, bits_stored=info.bits_stored, signed=info.signed,
        photometric=codecs.decoded_photometric(source_ts, info.photometric),
    )  # fmt: skip


def same_frame_bytes(stored: str, target: str) -> bool:
    """True when a frame stored in ``stored`` needs no conversion to be sent as ``target``."""
    return stored == target or (stored in LE_NATIVE and target in LE_NATIVE)


# ------------------------------------------------------------------ frames / instances


def frame_in(
    archive: Archive, ref: InstanceRef, number: int, ts: str, info: PixelInfo | None = None
) -> bytes:
    """Frame ``number`` (1-based) in transfer syntax ``ts``; only this frame is converted."""
    raw = retrieve.frame(archive, ref, number)
    if same_frame_bytes(ref.transfer_syntax_uid, ts):
        return raw
    info = info or PixelInfo.of(retrieve.instance_meta(archive, ref))
    with _slot(archive):
        stored = ref.transfer_syntax_uid
        return encode(decode(raw, stored, info), ts, info, stored)


def iter_frames_in(
    archive: Archive, ref: InstanceRef, numbers: list[int], ts: str
) -> Iterator[bytes]:
    """Frames ``numbers`` in transfer syntax ``ts``, one at a time (NotFound before the first)."""
    for n in numbers:
        if not 1 <= n <= ref.number_of_frames:
            raise NotFound(f"instance has {ref.number_of_frames} frame(s), no frame {n}")
    info = None
    if not same_frame_bytes(ref.transfer_syntax_uid, ts):
        info = PixelInfo.of(retrieve.instance_meta(archive, ref))
    for n in numbers:
        yield frame_in(archive, ref, n, ts, info)


def frames_in(archive: Archive, ref: InstanceRef, numbers: list[int], ts: str) -> list[bytes]:
    """Frames ``numbers`` in transfer syntax ``ts`` (stored bytes when they already match)."""
    return list(iter_frames_in(archive, ref, numbers, ts))


def instance_in(archive: Archive, ref: InstanceRef, ts: str) -> bytes:
    """The Part-10 file in transfer syntax ``ts``, always verified against its SHA-256.

    ``*`` or the syntax it arrived in: the bytes exactly as received; the syntax it
    is kept in at rest: the stored blob; anything else: transcoded from the blob.
    """
    if ts in ("*", ref.received_ts):
        if not ref.envelope_key:
            return retrieve.read_original(archive, ref)
        with _slot(archive):  # compressed at rest: rebuilding decodes every frame
            return retrieve.read_original(archive, ref)
    data = retrieve.read_verified(archive, ref)
    if ts == ref.transfer_syntax_uid:
        return data
    with _slot(archive):
        ds = codecs.transcode(dcmread(io.BytesIO(data)), ts)
        buf = io.BytesIO()
        dcmwrite(buf, ds, enforce_file_format=True)
        return buf.getvalue()


async def instances_in_async(
    archive: Archive, refs: list[InstanceRef], syntax: Callable[[InstanceRef], str], depth: int = 3
) -> AsyncIterator[tuple[InstanceRef, str, bytes]]:
    """``(ref, ts, file bytes)`` for each instance, in order, reading ahead of the consumer.

    Reading and verifying the next files (:func:`instance_in`) runs in worker
    threads while the current one is being sent; hashing, decryption and file
    reads release the GIL, so a series streams at close to disk speed.  It is
    an async iterator for the response body: a sync body would cost Starlette a
    thread hop for every chunk it sends (three per part); here only the reads
    run in threads.  Reads not yet awaited are cancelled when the client goes
    away.
    """
    loop = asyncio.get_running_loop()
    pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="rc-read-ahead")
    pending: deque[tuple[InstanceRef, str, asyncio.Future[bytes]]] = deque()
    queue = iter(refs)

    def submit(ref: InstanceRef) -> None:
        ts = syntax(ref)
        pending.append((ref, ts, loop.run_in_executor(pool, instance_in, archive, ref, ts)))

    try:
        for ref in itertools.islice(queue, depth):
            submit(ref)
        while pending:
            ref, ts, future = pending.popleft()
            following = next(queue, None)
            if following is not None:
                submit(following)
            yield ref, ts, await future
    finally:
        for _ref, _ts, future in pending:
            future.cancel()
        pool.shutdown(wait=False, cancel_futures=True)


def bulk_value(archive: Archive, ref: InstanceRef, tag: int) -> bytes:
    """The value bytes of element ``tag``, one the metadata gives a BulkDataURI for."""
    name = f"({tag >> 16:04X},{tag & 0xFFFF:04X})"
    if "BulkDataURI" not in retrieve.instance_meta(archive, ref).get(f"{tag:08X}", {}):
        raise NotFound(f"instance has no bulk data element {name}")
    ds = dcmread(io.BytesIO(retrieve.read_verified(archive, ref)))
    elem = ds.get_item(tag)
    value = elem.value if elem is not None else None
    if isinstance(elem, RawDataElement) or isinstance(value, bytes | bytearray):
        return bytes(value or b"")
    raise NotFound(f"element {name} is not bulk data")


# ------------------------------------------------------------------ rendering


def _region(
    arr: np.ndarray, viewport: Viewport | None
) -> tuple[np.ndarray, tuple[int, int] | None]:
    """Apply a viewport's source region (negative sw/sh flip); returns (pixels, output size)."""
    if viewport is None:
        return arr, None
    if len(viewport) == 6:
        sx, sy, sw, sh = viewport[2:]
        arr = _crop(arr, sx, sw, axis=1)
        arr = _crop(arr, sy, sh, axis=0)
    return arr, (viewport[0], viewport[1])


def _crop(arr: np.ndarray, start: int, length: int, axis: int) -> np.ndarray:
    if length == 0:  # whole extent from start
        length = arr.shape[axis] - start
    lo, hi = sorted((start, start + length))
    lo, hi = max(lo, 0), min(hi, arr.shape[axis])
    if hi <= lo:
        raise BadQuery("the viewport's source region lies outside the image")
    out = arr.take(range(lo, hi), axis=axis)
    return np.flip(out, axis=axis) if length < 0 else out


@dataclass(frozen=True)
class DecodedFrame:
    """One decoded frame with what rendering needs to know about it."""

    pixels: np.ndarray
    meta: dict[str, Any]
    photometric: str  # after decoding (a JPEG decoder turns YBR into RGB)


def frame_pixels(archive: Archive, ref: InstanceRef, number: int = 1) -> DecodedFrame:
    """Frame ``number`` decoded, with the instance's stored DICOM JSON."""
    meta = retrieve.instance_meta(archive, ref)
    info = PixelInfo.of(meta)
    raw = retrieve.frame(archive, ref, number)
    with _slot(archive):
        arr = decode(raw, ref.transfer_syntax_uid, info)
    return DecodedFrame(
        arr, meta, codecs.decoded_photometric(ref.transfer_syntax_uid, info.photometric)
    )


def rendered(
    archive: Archive,
    ref: InstanceRef,
    frame: int = 1,
    window: Window | None = None,
    viewport: Viewport | None = None,
    fmt: str = "jpeg",
    quality: int = 90,
) -> bytes:
    """Frame ``frame`` as a JPEG or PNG image (PS3.18 §8.3.5 rendered resource).

    ``window`` is (center, width[, function]) in modality units, default the
    instance's own; ``viewport`` scales to fit (aspect kept) after cropping to its
    source region, if it has one.
    """
    f = frame_pixels(archive, ref, frame)
    with _slot(archive):
        arr, size = _region(f.pixels, viewport)
        return pixels.render(
            arr, f.meta, window=window, viewport=size, fmt=fmt, quality=quality,
            photometric=f.photometric,
        )  # fmt: skip


# ------------------------------------------------------------------ thumbnails


def _cached(archive: Archive, ref: InstanceRef, variant: str) -> bytes | None:
    with archive.read() as conn:
        key = conn.scalar(
            select(Thumbnail.blob_key).where(
                Thumbnail.instance_fk == ref.id, Thumbnail.variant == variant
            )
        )
    if key is None:
        return None
    try:
        with archive.storage.open(key) as fh:
            return fh.read()
    except NotFound:  # blob lost: forget the row so the next request renders again
        with archive.write() as conn:
            conn.execute(delete(Thumbnail).where(Thumbnail.blob_key == key))
        return None


def _remember(archive: Archive, ref: InstanceRef, variant: str, data: bytes) -> None:
    """Store ``data`` as the thumbnail unless another request stored one first."""
    key = new_key()
    archive.storage.put_bytes(key, data)
    ins = sqlite_insert if archive.dialect == "sqlite" else pg_insert
    stmt = (
        ins(Thumbnail)
        .values(instance_fk=ref.id, variant=variant, blob_key=key)
        .on_conflict_do_nothing(index_elements=["instance_fk", "variant"])
        .returning(Thumbnail.id)  # rowcount is -1 here on psycopg
    )
    kept = False
    try:
        with archive.write() as conn:
            kept = conn.execute(stmt).first() is not None
    finally:
        if not kept:
            archive.storage.delete(key)


def thumbnail(archive: Archive, ref: InstanceRef, size: int = 128) -> bytes:
    """A JPEG of at most ``size`` pixels a side; common sizes are rendered once, then cached."""
    variant = f"jpeg{size}"
    cached = _cached(archive, ref, variant) if size in CACHED_SIZES else None
    if cached is not None:
        return cached
    f = frame_pixels(archive, ref, 1)
    fits = max(f.pixels.shape[:2]) <= size  # never enlarge a small image
    with _slot(archive):
        data = pixels.render(
            f.pixels, f.meta, viewport=None if fits else (size, size), fmt="jpeg",
            quality=THUMBNAIL_QUALITY, photometric=f.photometric,
        )  # fmt: skip
    if size in CACHED_SIZES:
        archive.retrying(lambda: _remember(archive, ref, variant, data))
    return data


def representative(
    archive: Archive, study_uid: str, series_uid: str | None = None, *, principal: Principal
) -> InstanceRef:
    """The middle image of the first series that has images (for study/series thumbnails)."""
    refs = retrieve.find_instances(archive, study_uid, series_uid, principal=principal)
    with archive.read() as conn:
        with_pixels = set(
            conn.scalars(
                select(Instance.id).where(
                    Instance.id.in_([r.id for r in refs]), Instance.rows.is_not(None)
                )
            )
        )
    images = [r for r in refs if r.id in with_pixels]
    if not images:
        raise NotFound("no image instances here to render")
    first = [r for r in images if r.series_uid == images[0].series_uid]
    return first[len(first) // 2]
