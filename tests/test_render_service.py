"""The render service: instances and frames in other syntaxes, rendering, cached thumbnails,
and the process-wide limit on codec/render work."""

from __future__ import annotations

import io
import threading
import time
from typing import Any

import imagecodecs
import numpy as np
import pytest
from _wado_data import ELE, HTJ2K, JLS, RLE, bundled, part10, pixels_of, read, store, text_sr
from PIL import Image
from pydicom.encaps import generate_frames
from sqlalchemy import select

from radcloud.archive import render_service, retrieve
from radcloud.archive.retrieve import InstanceRef
from radcloud.archive.service import Archive
from radcloud.auth.access import SYSTEM
from radcloud.errors import BadQuery, NotFound
from radcloud.store.models import Thumbnail
from radcloud.testing.phantom import make_dataset, tiny_ct_series


def ref_of(archive: Archive, data: bytes) -> InstanceRef:
    r = store(archive, data)
    return retrieve.find_instances(archive, r.study_uid, r.series_uid, r.sop_uid, principal=SYSTEM)[
        0
    ]


def png(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)))


# ------------------------------------------------------------------ instances


def test_instance_as_received_or_transcoded(archive: Archive) -> None:
    data = bundled("MR_small_jpeg_ls_lossless.dcm")
    ref = ref_of(archive, data)
    assert render_service.instance_in(archive, ref, "*") == data
    assert render_service.instance_in(archive, ref, JLS) == data
    out = read(render_service.instance_in(archive, ref, HTJ2K))
    assert out.file_meta.TransferSyntaxUID == HTJ2K
    assert out.SOPInstanceUID == ref.sop_uid
    np.testing.assert_array_equal(out.pixel_array, pixels_of(data))


def test_instance_compressed_at_rest(make_archive: Any) -> None:
    archive = make_archive(compression="htj2k")
    data = part10(next(tiny_ct_series(1, size=32)))
    ref = ref_of(archive, data)
    assert ref.transfer_syntax_uid == HTJ2K
    assert render_service.instance_in(archive, ref, "*") == data
    assert render_service.instance_in(archive, ref, ELE) == data
    blob = render_service.instance_in(archive, ref, HTJ2K)
    assert blob == retrieve.read_verified(archive, ref)
    rle = read(render_service.instance_in(archive, ref, RLE))
    np.testing.assert_array_equal(rle.pixel_array, pixels_of(data))


# ------------------------------------------------------------------ frames


def test_frames_stored_bytes_when_the_syntax_matches(archive: Archive) -> None:
    data = bundled("SC_rgb_rle_2frame.dcm")
    ref = ref_of(archive, data)
    want = list(generate_frames(read(data).PixelData, number_of_frames=2))
    assert render_service.frames_in(archive, ref, [2, 1], RLE) == [want[1], want[0]]


def test_frames_decoded_to_native_and_encoded_one_by_one(archive: Archive) -> None:
    ds = make_dataset(modality="MR", NumberOfFrames=4, Rows=20, Columns=24)
    ref = ref_of(archive, part10(ds))
    arr = ds.pixel_array
    assert render_service.frames_in(archive, ref, [4], ELE) == [arr[3].tobytes()]
    (jls,) = render_service.frames_in(archive, ref, [3], JLS)
    np.testing.assert_array_equal(imagecodecs.jpegls_decode(jls), arr[2])


def test_big_endian_frames_come_out_little_endian(archive: Archive) -> None:
    data = bundled("MR_small_bigendian.dcm")
    ref = ref_of(archive, data)
    (frame,) = render_service.frames_in(archive, ref, [1], ELE)
    assert frame == pixels_of(data).astype("<i2").tobytes()


def test_frame_numbers_are_checked_before_any_work(archive: Archive) -> None:
    ref = ref_of(archive, bundled("MR_small.dcm"))
    with pytest.raises(NotFound, match="no frame 2"):
        render_service.frames_in(archive, ref, [1, 2], JLS)


def test_bulk_value_only_for_bulk_elements(archive: Archive) -> None:
    ds = make_dataset(modality="MR")
    ds.add_new(0x60003000, "OB", b"\x01\x02" * 1000)
    ref = ref_of(archive, part10(ds))
    assert render_service.bulk_value(archive, ref, 0x60003000) == b"\x01\x02" * 1000
    with pytest.raises(NotFound):
        render_service.bulk_value(archive, ref, 0x00100010)


# ------------------------------------------------------------------ rendering


def test_rendered_size_window_and_format(archive: Archive) -> None:
    ref = ref_of(archive, part10(next(tiny_ct_series(1, size=64))))
    jpeg = render_service.rendered(archive, ref)
    assert jpeg[:3] == b"\xff\xd8\xff"
    lung = png(render_service.rendered(archive, ref, window=(-600, 1500), fmt="png"))
    bone = png(render_service.rendered(archive, ref, window=(400, 1800), fmt="png"))
    assert lung.shape == bone.shape == (64, 64)
    assert lung.mean() > bone.mean() + 40
    small = png(render_service.rendered(archive, ref, viewport=(16, 16), fmt="png"))
    assert small.shape == (16, 16)


def test_viewport_source_region_crops_and_flips(archive: Archive) -> None:
    ds = make_dataset(modality="MR", Rows=32, Columns=48)
    ref = ref_of(archive, part10(ds))
    full = png(render_service.rendered(archive, ref, fmt="png"))
    left = png(render_service.rendered(archive, ref, viewport=(24, 32, 0, 0, 24, 32), fmt="png"))
    np.testing.assert_array_equal(left, full[:, :24])
    flipped = png(
        render_service.rendered(archive, ref, viewport=(48, 32, 48, 0, -48, 0), fmt="png")
    )
    np.testing.assert_array_equal(flipped, full[:, ::-1])
    with pytest.raises(BadQuery):
        render_service.rendered(archive, ref, viewport=(10, 10, 100, 0, 10, 10))


def test_no_pixel_data_is_not_found(archive: Archive) -> None:
    ct = next(tiny_ct_series(1))
    store(archive, part10(ct))
    ref = ref_of(archive, part10(text_sr(ct.StudyInstanceUID)))
    with pytest.raises(NotFound, match="no pixel data"):
        render_service.rendered(archive, ref)
    # the SR series comes first, but a study's representative is an image
    rep = render_service.representative(archive, ct.StudyInstanceUID, principal=SYSTEM)
    assert rep.sop_uid == ct.SOPInstanceUID


def test_representative_is_the_middle_image(archive: Archive) -> None:
    series = list(tiny_ct_series(5))
    for ds in series:
        store(archive, part10(ds))
    rep = render_service.representative(archive, series[0].StudyInstanceUID, principal=SYSTEM)
    assert rep.sop_uid == series[2].SOPInstanceUID


# ------------------------------------------------------------------ thumbnails and limits


def thumbnails(archive: Archive) -> list[str]:
    with archive.read() as conn:
        return list(conn.scalars(select(Thumbnail.blob_key)))


def test_concurrent_thumbnail_requests_keep_one_row_and_one_blob(
    archive: Archive, monkeypatch: pytest.MonkeyPatch
) -> None:
    ref = ref_of(archive, part10(next(tiny_ct_series(1, size=64))))
    real = render_service.pixels.render

    def slow(*a: Any, **k: Any) -> bytes:
        time.sleep(0.2)  # every thread renders before any of them stores
        return real(*a, **k)

    monkeypatch.setattr(render_service.pixels, "render", slow)
    results: list[bytes] = []
    threads = [
        threading.Thread(target=lambda: results.append(render_service.thumbnail(archive, ref)))
        for _ in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 4 and len(set(results)) == 1
    (key,) = thumbnails(archive)
    assert sorted(archive.storage.keys()) == sorted([ref.blob_key, key])  # losers cleaned up
    assert render_service.thumbnail(archive, ref) == results[0]


def test_lost_thumbnail_blob_is_rendered_again(archive: Archive) -> None:
    ref = ref_of(archive, part10(next(tiny_ct_series(1, size=64))))
    first = render_service.thumbnail(archive, ref, 64)
    (key,) = thumbnails(archive)
    archive.storage.delete(key)
    assert render_service.thumbnail(archive, ref, 64) == first
    (again,) = thumbnails(archive)
    assert again != key and archive.storage.size(again) == len(first)


def test_render_work_is_limited_process_wide(
    make_archive: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    archive = make_archive(render_concurrency=2)
    ref = ref_of(archive, part10(next(tiny_ct_series(1, size=32))))
    active, peak, lock = [0], [0], threading.Lock()

    def tracked(*_a: Any, **_k: Any) -> bytes:
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        time.sleep(0.1)
        with lock:
            active[0] -= 1
        return b""

    monkeypatch.setattr(render_service.pixels, "render", tracked)
    threads = [
        threading.Thread(target=render_service.rendered, args=(archive, ref)) for _ in range(6)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert peak[0] == 2


def test_only_common_thumbnail_sizes_are_cached(archive: Archive) -> None:
    ref = ref_of(archive, part10(next(tiny_ct_series(1, size=64))))
    odd = render_service.thumbnail(archive, ref, 50)
    assert max(png_size(odd)) == 50
    assert thumbnails(archive) == []
    render_service.thumbnail(archive, ref, 64)
    assert len(thumbnails(archive)) == 1


def png_size(data: bytes) -> tuple[int, int]:
    return Image.open(io.BytesIO(data)).size
