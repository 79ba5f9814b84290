"""Lossless compression at rest: smaller blobs, the received file rebuilt bit for bit."""

from __future__ import annotations

import hashlib
import io

import numpy as np
import pytest
from pydicom import dcmread
from pydicom.filewriter import dcmwrite

from radcloud.archive import compression, retrieve
from radcloud.archive.ingest import store_bytes
from radcloud.auth.access import SYSTEM
from radcloud.config import CompressionRule
from radcloud.dicom import codecs
from radcloud.testing.phantom import make_dataset, tiny_ct_series


def part10(ds: object, implicit: bool = False) -> bytes:
    buf = io.BytesIO()
    if implicit:
        ds.file_meta.TransferSyntaxUID = codecs.IMPLICIT_VR_LE  # type: ignore[attr-defined]
    dcmwrite(buf, ds, enforce_file_format=True)  # type: ignore[arg-type]
    return buf.getvalue()


@pytest.mark.parametrize(
    ("rule", "ts"),
    [
        (CompressionRule.JPEG_LS, codecs.JPEG_LS_LOSSLESS),
        (CompressionRule.JPEG_2000, codecs.JPEG2000_LOSSLESS),
        (CompressionRule.HTJ2K, codecs.HTJ2K_LOSSLESS),
    ],
)
def test_compressed_at_rest_and_rebuilt_exactly(make_archive, rule, ts) -> None:  # type: ignore[no-untyped-def]
    archive = make_archive(compression=rule)
    received = [part10(ds, implicit=i % 2 == 1) for i, ds in enumerate(tiny_ct_series(4, size=64))]
    results = [store_bytes(archive, data) for data in received]
    refs = retrieve.find_instances(archive, results[0].study_uid, principal=SYSTEM)
    for data, ref, res in zip(received, refs, results, strict=True):
        assert ref.transfer_syntax_uid == ts and ref.envelope_key
        assert res.sha256 == hashlib.sha256(data).hexdigest()
        assert retrieve.read_original(archive, ref) == data
        stored = dcmread(io.BytesIO(retrieve.read_verified(archive, ref)))
        assert stored.file_meta.TransferSyntaxUID == ts
        assert np.array_equal(stored.pixel_array, dcmread(io.BytesIO(data)).pixel_array)
        frame = retrieve.frame(archive, ref, 1)
        pixel = codecs.frame_kwargs(stored)
        assert np.array_equal(codecs.decode_frame(frame, ts, **pixel), stored.pixel_array)
    report = compression.savings(archive)
    assert report["compressed_instances"] == 4
    assert report["saved_bytes"] > 0.3 * report["received_bytes"]


def test_modalities_rule_and_odd_high_bits(make_archive) -> None:  # type: ignore[no-untyped-def]
    archive = make_archive(compression=CompressionRule.JPEG_LS, compression_modalities="MR")
    ct = part10(next(tiny_ct_series(1)))
    mr = make_dataset(modality="MR", sop_class_uid="1.2.840.10008.5.1.4.1.1.4")
    # a value above BitsStored: still rebuilt exactly (or stored as received)
    arr = np.frombuffer(mr.PixelData, "<u2").copy()
    arr[0] = 0xF000
    mr.PixelData = arr.tobytes()
    bad = part10(mr)
    good_mr = part10(make_dataset(modality="MR", sop_class_uid="1.2.840.10008.5.1.4.1.1.4"))
    for data in (ct, bad, good_mr):
        store_bytes(archive, data)
    by_sop = {}
    for data in (ct, bad, good_mr):
        sop = str(dcmread(io.BytesIO(data)).SOPInstanceUID)
        study = str(dcmread(io.BytesIO(data)).StudyInstanceUID)
        (ref,) = retrieve.find_instances(archive, study, sop_uid=sop, principal=SYSTEM)
        by_sop[sop] = ref
        assert retrieve.read_original(archive, ref) == data
    ct_sop = str(dcmread(io.BytesIO(ct)).SOPInstanceUID)
    assert not by_sop[ct_sop].envelope_key  # CT is not in the rule's modalities
    assert sum(bool(r.envelope_key) for r in by_sop.values()) >= 1


def test_not_bit_exact_is_stored_as_received(make_archive, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    archive = make_archive(compression=CompressionRule.JPEG_LS)
    real = codecs.decode_frame

    def lossy(*args, **kw):  # type: ignore[no-untyped-def]
        arr = real(*args, **kw).copy()
        arr.flat[0] += 1
        return arr

    monkeypatch.setattr(codecs, "decode_frame", lossy)
    data = part10(next(tiny_ct_series(1)))
    res = store_bytes(archive, data)
    (ref,) = retrieve.find_instances(archive, res.study_uid, principal=SYSTEM)
    assert ref.envelope_key is None and ref.transfer_syntax_uid == codecs.EXPLICIT_VR_LE
    assert retrieve.read_original(archive, ref) == data


def test_replace_removes_old_envelope(make_archive) -> None:  # type: ignore[no-untyped-def]
    from radcloud.config import DuplicatePolicy

    archive = make_archive(
        compression=CompressionRule.JPEG_LS, duplicate_policy=DuplicatePolicy.REPLACE
    )
    ds = next(tiny_ct_series(1, size=32))
    store_bytes(archive, part10(ds))
    ds.SeriesDescription = "again"
    store_bytes(archive, part10(ds))
    assert len(list(archive.storage.keys())) == 2  # one blob + one envelope
    assert archive.reconcile(grace_seconds=0)["orphan_blobs"] == 0
