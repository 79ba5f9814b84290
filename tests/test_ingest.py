"""The one ingest path: validation, atomic write + index, duplicates, nothing half-written."""

from __future__ import annotations

import hashlib
import io
import threading
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.filewriter import dcmwrite
from sqlalchemy import func, select

from radcloud.archive import retrieve
from radcloud.archive.ingest import store_bytes
from radcloud.archive.service import Archive
from radcloud.auth.access import SYSTEM
from radcloud.config import DuplicatePolicy
from radcloud.errors import (
    InvalidDicom,
    MissingAttribute,
    StudyMismatch,
    TruncatedDicom,
    UnsupportedSOPClass,
)
from radcloud.store.models import Instance, Patient, Series, Study
from radcloud.testing.phantom import make_dataset, tiny_ct_series


def part10(ds: object) -> bytes:
    buf = io.BytesIO()
    dcmwrite(buf, ds, enforce_file_format=True)  # type: ignore[arg-type]
    return buf.getvalue()


def counts(archive: Archive) -> tuple[int, int, int, int, int]:
    with archive.read() as conn:
        n = [
            conn.scalar(select(func.count()).select_from(t))
            for t in (Patient, Study, Series, Instance)
        ]
    return (*n, len(list(archive.storage.keys())))  # type: ignore[return-value]


def left_in_tmp(archive: Archive) -> list[Path]:
    return [p for p in archive.settings.tmp_dir.glob("*") if p.is_file()]


def test_store_indexes_every_level_and_keeps_bytes(archive: Archive) -> None:
    files = [part10(ds) for ds in tiny_ct_series(4, patient_id="P1")]
    results = [store_bytes(archive, data, source="test") for data in files]
    assert [r.status for r in results] == ["stored"] * 4
    assert counts(archive) == (1, 1, 1, 4, 4)
    refs = retrieve.find_instances(archive, results[0].study_uid, principal=SYSTEM)
    assert [retrieve.read_verified(archive, r) for r in refs] == files
    assert results[0].sha256 == hashlib.sha256(files[0]).hexdigest()
    assert left_in_tmp(archive) == []


def test_metadata_is_json_without_bulk_data(archive: Archive) -> None:
    ds = next(tiny_ct_series(1))
    r = store_bytes(archive, part10(ds))
    meta = retrieve.metadata(archive, r.study_uid, r.series_uid, principal=SYSTEM)
    assert b'"7FE00010":{"vr":"OW","BulkDataURI":"/dicom-web/studies/' in meta
    assert b"InlineBinary" not in meta
    assert str(ds.PatientID).encode() in meta


def test_native_frame_is_one_ranged_read(archive: Archive) -> None:
    ds = make_dataset(modality="MR", NumberOfFrames=3, Rows=8, Columns=8)
    r = store_bytes(archive, part10(ds))
    (ref,) = retrieve.find_instances(archive, r.study_uid, principal=SYSTEM)
    assert ref.frames is not None and len(ref.frames) == 3
    assert retrieve.frame(archive, ref, 2) == ds.PixelData[128:256]


@pytest.mark.parametrize(
    ("mutate", "error"),
    [
        (lambda ds: delattr(ds, "SOPInstanceUID"), MissingAttribute),
        (lambda ds: setattr(ds, "StudyInstanceUID", "1.2.abc"), MissingAttribute),
        (lambda ds: setattr(ds, "SOPClassUID", "1.2.3.4"), UnsupportedSOPClass),
    ],
)
def test_bad_objects_are_refused_and_leave_nothing(archive: Archive, mutate, error) -> None:  # type: ignore[no-untyped-def]
    ds = next(tiny_ct_series(1))
    mutate(ds)
    with pytest.raises(error):
        store_bytes(archive, part10(ds))
    assert counts(archive) == (0, 0, 0, 0, 0)
    assert left_in_tmp(archive) == []


def test_non_dicom_and_truncated(archive: Archive) -> None:
    with pytest.raises(InvalidDicom, match="not a DICOM file"):
        store_bytes(archive, b"%PDF-1.4 hello" * 100)
    data = part10(next(tiny_ct_series(1)))
    with pytest.raises(TruncatedDicom, match="bytes missing"):
        store_bytes(archive, data[: len(data) - 100])
    with pytest.raises(InvalidDicom):
        store_bytes(archive, b"")
    assert counts(archive) == (0, 0, 0, 0, 0)
    assert left_in_tmp(archive) == []


def test_bare_dataset_gets_file_meta_and_keeps_dataset_bytes(archive: Archive) -> None:
    ds = next(tiny_ct_series(1))
    del ds.file_meta
    buf = io.BytesIO()
    dcmwrite(buf, ds, implicit_vr=True, little_endian=True)
    bare = buf.getvalue()
    assert bare[128:132] != b"DICM" and bare[:2] == b"\x08\x00"
    r = store_bytes(archive, bare)
    (ref,) = retrieve.find_instances(archive, r.study_uid, principal=SYSTEM)
    stored = retrieve.read_verified(archive, ref)
    assert stored[128:132] == b"DICM" and stored.endswith(bare)
    assert dcmread(io.BytesIO(stored)).SOPInstanceUID == ds.SOPInstanceUID


def test_study_mismatch(archive: Archive) -> None:
    with pytest.raises(StudyMismatch):
        store_bytes(archive, part10(next(tiny_ct_series(1))), expected_study_uid="1.2.3")
    assert counts(archive)[3:] == (0, 0)


def test_duplicate_keep_policy_keeps_first(archive: Archive) -> None:
    ds = next(tiny_ct_series(1))
    first = part10(ds)
    ds.SeriesDescription = "changed"
    second = part10(ds)
    assert store_bytes(archive, first).status == "stored"
    assert store_bytes(archive, second).status == "duplicate"
    assert counts(archive)[3:] == (1, 1)
    (ref,) = retrieve.find_instances(archive, str(ds.StudyInstanceUID), principal=SYSTEM)
    assert retrieve.read_verified(archive, ref) == first


def test_duplicate_replace_policy(make_archive) -> None:  # type: ignore[no-untyped-def]
    archive = make_archive(duplicate_policy=DuplicatePolicy.REPLACE)
    ds = next(tiny_ct_series(1))
    store_bytes(archive, part10(ds))
    ds.SeriesDescription = "changed"
    second = part10(ds)
    assert store_bytes(archive, second).status == "replaced"
    assert counts(archive)[3:] == (1, 1)
    (ref,) = retrieve.find_instances(archive, str(ds.StudyInstanceUID), principal=SYSTEM)
    assert retrieve.read_verified(archive, ref) == second


def test_concurrent_duplicates_give_one_copy(archive: Archive) -> None:
    data = part10(next(tiny_ct_series(1)))
    statuses: list[str] = []
    barrier = threading.Barrier(8)

    def send() -> None:
        barrier.wait()
        statuses.append(store_bytes(archive, data).status)

    threads = [threading.Thread(target=send) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(statuses) == ["duplicate"] * 7 + ["stored"]
    assert counts(archive) == (1, 1, 1, 1, 1)


def test_concurrent_new_series_of_one_study(archive: Archive) -> None:
    """Many series of one new study arriving at once create one patient and one study."""
    study = "1.2.826.0.1.3680043.10.1555.42"
    batches = [[part10(ds) for ds in tiny_ct_series(3, seed=i, study_uid=study)] for i in range(6)]
    errors: list[BaseException] = []

    def send(batch: list[bytes]) -> None:
        try:
            for data in batch:
                store_bytes(archive, data)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=send, args=(b,)) for b in batches]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert counts(archive) == (1, 1, 6, 18, 18)


@pytest.mark.parametrize("encrypted", [True, False], ids=["gcm-tag", "sha256"])
def test_integrity_error_on_changed_blob(make_archive, encrypted: bool) -> None:  # type: ignore[no-untyped-def]
    """Encrypted blobs fail AES-GCM authentication; plain ones their recorded SHA-256."""
    from radcloud.errors import IntegrityError

    archive = make_archive(encrypt_at_rest=encrypted)
    r = store_bytes(archive, part10(next(tiny_ct_series(1))))
    (ref,) = retrieve.find_instances(archive, r.study_uid, principal=SYSTEM)
    path = archive.storage.path(ref.blob_key)  # type: ignore[attr-defined]
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(IntegrityError):
        retrieve.read_verified(archive, ref)


def test_reconcile_removes_orphans_and_temp_files(archive: Archive) -> None:
    r = store_bytes(archive, part10(next(tiny_ct_series(1))))
    archive.storage.put_bytes("0" * 32, b"orphan")
    (archive.settings.tmp_dir / "x.part").write_bytes(b"partial")
    report = archive.reconcile(grace_seconds=0)
    assert report == {"temp_files": 1, "orphan_blobs": 1}
    assert len(retrieve.find_instances(archive, r.study_uid, principal=SYSTEM)) == 1
    assert counts(archive)[3:] == (1, 1)


def test_frame_read_checks_its_digest(make_archive) -> None:  # type: ignore[no-untyped-def]
    from radcloud.errors import IntegrityError

    # plain blobs: the byte flipped below is at a plaintext offset (encrypted blobs fail
    # their chunk's authentication instead: tests/test_encryption.py)
    archive = make_archive(encrypt_at_rest=False)
    ds = make_dataset(modality="MR", NumberOfFrames=2, Rows=8, Columns=8)
    r = store_bytes(archive, part10(ds))
    (ref,) = retrieve.find_instances(archive, r.study_uid, principal=SYSTEM)
    assert retrieve.frame(archive, ref, 1) == ds.PixelData[:128]
    path = archive.storage.path(ref.blob_key)  # type: ignore[attr-defined]
    data = bytearray(path.read_bytes())
    offset = ref.frames[1][0][0]  # type: ignore[index]
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))
    assert retrieve.frame(archive, ref, 1) == ds.PixelData[:128]  # frame 1 untouched
    with pytest.raises(IntegrityError, match="frame 2"):
        retrieve.frame(archive, ref, 2)
