"""Encryption at rest: the blob format, tamper detection, keys, rotation, and the archive.

The key test stores a phantom study with a distinctive patient name through the
archive and greps every file under ``blobs/`` for that name (ASCII, UTF-8 and
GB18030): none may hold it, and the decrypted files must hold it again.
"""

from __future__ import annotations

import base64
import io
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pydicom import dcmread
from typer.testing import CliRunner

from radcloud.archive import ingest, retrieve
from radcloud.archive.service import Archive
from radcloud.auth.access import SYSTEM
from radcloud.cli.main import app
from radcloud.config import Settings
from radcloud.errors import IntegrityError, KeyUnavailable
from radcloud.store import crypto
from radcloud.store.blobs import FileStorage, new_key
from radcloud.store.crypto import CHUNK_SIZE, HEADER_SIZE, MAGIC, TAG_SIZE, Keyring
from radcloud.testing.phantom import make_dataset, tiny_ct_series

CS = CHUNK_SIZE
NAME = "Zhang^Wei=王小东"


def _ring(key_id: str = "k1", key: bytes | None = None) -> Keyring:
    return Keyring([(key_id, key or os.urandom(32))])


def _store(tmp_path: Path, ring: Keyring | None) -> FileStorage:
    return FileStorage(tmp_path / "blobs", tmp_path / "tmp", keyring=ring)


def _refs(archive: Archive, study_uid: str) -> list[retrieve.InstanceRef]:
    """Instances of a study, as the system sees them."""
    return retrieve.find_instances(archive, study_uid, principal=SYSTEM)


# ------------------------------------------------------------------ round trips


@pytest.mark.parametrize(
    "size", [0, 1, CS - 1, CS, CS + 1, 2 * CS, 3 * CS + 517], ids=lambda n: f"{n}B"
)
def test_round_trip_and_ranges_at_chunk_boundaries(tmp_path: Path, size: int) -> None:
    store = _store(tmp_path, _ring())
    data = os.urandom(size)
    key = new_key()
    store.put_bytes(key, data)
    raw = store.path(key).read_bytes()
    n_chunks = max(1, -(-size // CS))
    assert raw.startswith(MAGIC)
    assert len(raw) == HEADER_SIZE + size + n_chunks * TAG_SIZE
    assert store.size(key) == size
    with store.open(key) as fh:
        assert fh.read() == data
    starts = sorted({0, 1, CS - 1, CS, CS + 1, 2 * CS - 1, size - 1, size, size + 10})
    for start in (s for s in starts if s >= 0):
        for length in (0, 1, 2, CS, CS + 2, 3 * CS):
            assert store.get_range(key, start, length) == data[start : start + length]


def test_reader_seeks_and_reads_in_pieces(tmp_path: Path) -> None:
    store = _store(tmp_path, _ring())
    data = os.urandom(3 * CS + 100)
    key = new_key()
    spooled = tmp_path / "spooled"
    spooled.write_bytes(data)
    store.put_file(key, spooled)
    assert not spooled.exists()  # consumed, as for plain storage
    with store.open(key) as fh:
        assert fh.seekable() and fh.tell() == 0
        pieces = []
        while piece := fh.read(1000):
            pieces.append(piece)
        assert b"".join(pieces) == data
        assert fh.seek(-5, os.SEEK_END) == len(data) - 5 and fh.read() == data[-5:]
        fh.seek(CS - 3)
        buf = bytearray(10)
        assert fh.readinto(buf) == 10 and bytes(buf) == data[CS - 3 : CS + 7]
        assert fh.tell() == CS + 7
        fh.seek(2, os.SEEK_CUR)
        assert fh.read(4) == data[CS + 9 : CS + 13]


def test_blob_on_disk_holds_no_plaintext(tmp_path: Path) -> None:
    store = _store(tmp_path, _ring())
    marker = b"PATIENT-MARKER-" * 1000
    key = new_key()
    store.put_bytes(key, marker)
    assert b"PATIENT-MARKER" not in store.path(key).read_bytes()
    assert list(store.tmp_dir.iterdir()) == []  # put_bytes wrote no plaintext temp file


# ------------------------------------------------------------------ tampering


def _flip(path: Path, offset: int) -> None:
    raw = bytearray(path.read_bytes())
    raw[offset] ^= 0x01
    path.write_bytes(bytes(raw))


def test_flipped_byte_in_a_chunk_fails_that_chunk_only(tmp_path: Path) -> None:
    store = _store(tmp_path, _ring())
    data = os.urandom(3 * CS)
    key = new_key()
    store.put_bytes(key, data)
    _flip(store.path(key), HEADER_SIZE + (CS + TAG_SIZE) + 100)  # inside chunk 1
    with pytest.raises(IntegrityError, match="chunk 1 failed authentication"):
        with store.open(key) as fh:
            fh.read()
    with pytest.raises(IntegrityError):
        store.get_range(key, CS + 50, 10)
    assert store.get_range(key, 10, 100) == data[10:110]  # chunk 0 still reads
    assert store.get_range(key, 2 * CS, 100) == data[2 * CS : 2 * CS + 100]


@pytest.mark.parametrize("offset", [16, 24, 40, 48, 60, 100, 150], ids=lambda o: f"@{o}")
def test_altered_header_is_detected(tmp_path: Path, offset: int) -> None:
    store = _store(tmp_path, _ring())
    key = new_key()
    store.put_bytes(key, os.urandom(1000))
    _flip(store.path(key), offset)
    # the key check (48..56) altered looks like a wrong key: both are refused clearly
    with pytest.raises(KeyUnavailable if offset == 48 else IntegrityError):
        store.open(key).read()


def test_truncated_or_extended_blob_is_detected(tmp_path: Path) -> None:
    store = _store(tmp_path, _ring())
    key = new_key()
    store.put_bytes(key, os.urandom(2 * CS + 10))
    path = store.path(key)
    raw = path.read_bytes()
    path.write_bytes(raw[: HEADER_SIZE + CS + TAG_SIZE])  # last chunk dropped
    with pytest.raises(IntegrityError, match="truncated"):
        store.open(key)
    path.write_bytes(raw[:100])
    with pytest.raises(IntegrityError, match="truncated"):
        store.get_range(key, 0, 10)
    path.write_bytes(raw + b"\0" * 16)
    with pytest.raises(IntegrityError, match="longer"):
        store.open(key)


def test_chunks_cannot_be_swapped_between_blobs_or_reordered(tmp_path: Path) -> None:
    store = _store(tmp_path, _ring())
    a, b = new_key(), new_key()
    store.put_bytes(a, os.urandom(2 * CS))
    store.put_bytes(b, os.urandom(2 * CS))
    span = CS + TAG_SIZE
    raw_a, raw_b = store.path(a).read_bytes(), store.path(b).read_bytes()
    chunk0 = slice(HEADER_SIZE, HEADER_SIZE + span)
    swapped = raw_a[:HEADER_SIZE] + raw_b[chunk0] + raw_a[HEADER_SIZE + span :]
    store.path(a).write_bytes(swapped)
    with pytest.raises(IntegrityError, match="chunk 0"):
        store.get_range(a, 0, 10)
    reordered = raw_b[:HEADER_SIZE] + raw_b[HEADER_SIZE + span :] + raw_b[chunk0]
    store.path(b).write_bytes(reordered)
    with pytest.raises(IntegrityError, match="chunk"):
        store.open(b).read()


def test_whole_blob_moved_under_another_key_is_detected(tmp_path: Path) -> None:
    store = _store(tmp_path, _ring())
    a, b = new_key(), new_key()
    store.put_bytes(a, b"first")
    store.put_bytes(b, b"second")
    os.replace(store.path(a), store.path(b))
    with pytest.raises(IntegrityError, match="another blob"):
        store.open(b)


# ------------------------------------------------------------------ keys


def test_wrong_or_missing_key_is_a_clear_error(tmp_path: Path) -> None:
    key = new_key()
    _store(tmp_path, _ring("k1")).put_bytes(key, b"secret")
    with pytest.raises(KeyUnavailable, match="'k1'.*not the key this blob was written with"):
        _store(tmp_path, _ring("k1")).open(key)  # same id, other key material
    with pytest.raises(KeyUnavailable, match="encrypted with key 'k1', which is not in"):
        _store(tmp_path, _ring("k2")).get_range(key, 0, 3)
    with pytest.raises(KeyUnavailable, match="no encryption keys are configured"):
        _store(tmp_path, None).open(key)
    assert KeyUnavailable.http_status == 500


def _settings(tmp_path: Path, **kw: Any) -> Settings:
    return Settings(data_dir=tmp_path / "data", dicom_port=0, **kw)


def test_key_file_is_created_private_on_first_use_and_reused(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    assert Keyring.from_settings(settings) is None  # reading alone never creates keys
    ring = Keyring.from_settings(settings, create=True)
    assert ring is not None
    path = tmp_path / "data" / "keys" / "radcloud.keys"
    assert path.stat().st_mode & 0o777 == 0o600
    assert (path.parent.stat().st_mode & 0o777) == 0o700
    again = Keyring.from_settings(settings, create=True)
    assert again is not None and again.ids == ring.ids == [ring.active]
    assert again.fingerprint(ring.active) == ring.fingerprint(ring.active)


def test_explicit_key_file_that_is_missing_is_not_replaced(tmp_path: Path) -> None:
    settings = _settings(tmp_path, key_file=tmp_path / "mnt" / "keys")
    with pytest.raises(KeyUnavailable, match="does not exist"):
        Keyring.from_settings(settings, create=True)
    assert not (tmp_path / "mnt").exists()


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "holds no keys"),
        ("k1\n", "expected 'key-id base64-key'"),
        ("k1 not*base64\n", "not valid base64"),
        (f"k1 {base64.b64encode(b'short').decode()}\n", "is 5 bytes; AES-256 needs 32"),
        ("bad/id " + base64.b64encode(bytes(32)).decode(), "key id 'bad/id'"),
        ("k1 {0}\nk1 {0}\n".format(base64.b64encode(bytes(32)).decode()), "appears twice"),
    ],
)
def test_malformed_key_file_says_what_is_wrong(tmp_path: Path, text: str, problem: str) -> None:
    path = tmp_path / "radcloud.keys"
    path.write_text(text)
    with pytest.raises(KeyUnavailable, match=problem):
        Keyring.from_file(path)


def test_keys_from_the_environment_form(tmp_path: Path) -> None:
    k1, k2 = os.urandom(32), os.urandom(32)
    text = f"new:{base64.b64encode(k2).decode()}, old:{base64.b64encode(k1).decode()}"
    ring = Keyring.from_settings(_settings(tmp_path, encryption_keys=text), create=True)
    assert ring is not None and ring.ids == ["new", "old"] and ring.active == "new"
    assert not (tmp_path / "data" / "keys").exists()  # the key file is not used
    with pytest.raises(KeyUnavailable, match="entry 1: expected 'key-id:base64-key'"):
        Keyring.from_settings(_settings(tmp_path, encryption_keys="nocolon"))


# ------------------------------------------------------------------ legacy and rotation


def test_plain_blobs_written_before_encryption_still_read(tmp_path: Path) -> None:
    plain = _store(tmp_path, None)
    data = os.urandom(CS + 7)
    key = new_key()
    plain.put_bytes(key, data)
    store = _store(tmp_path, _ring())
    assert store.path(key).read_bytes() == data
    assert store.size(key) == len(data) and store.key_id(key) is None
    assert store.open(key).read() == data
    assert store.get_range(key, CS, 7) == data[CS:]
    assert store.rewrap(key) == "encrypted"  # rotation also encrypts legacy blobs
    assert store.path(key).read_bytes()[:8] == MAGIC
    assert store.open(key).read() == data and store.size(key) == len(data)
    assert _store(tmp_path, _ring()).rewrap(new_key()) == "missing"


def test_rotation_rewraps_headers_only_and_old_keys_leave_safely(tmp_path: Path) -> None:
    path = tmp_path / "radcloud.keys"
    first = crypto.create_key_file(path)
    store = _store(tmp_path, Keyring.from_file(path))
    blobs = {new_key(): os.urandom(n) for n in (0, 10, CS, 3 * CS + 1)}
    for key, data in blobs.items():
        store.put_bytes(key, data)
    before = {k: store.path(k).read_bytes() for k in blobs}

    second = crypto.add_key(path)
    assert path.read_text().count("\n") >= 2 and path.stat().st_mode & 0o777 == 0o600
    ring = Keyring.from_file(path)
    assert ring.ids == [second, first] and ring.active == second
    rotator = _store(tmp_path, ring)
    assert {rotator.rewrap(k) for k in blobs} == {"rewrapped"}
    assert {rotator.rewrap(k) for k in blobs} == {"current"}  # re-running is a no-op
    for key, data in blobs.items():
        after = store.path(key).read_bytes()
        assert after[HEADER_SIZE:] == before[key][HEADER_SIZE:]  # chunks untouched
        assert after[:HEADER_SIZE] != before[key][:HEADER_SIZE]
        assert rotator.key_id(key) == second
        assert store.open(key).read() == data  # the old store reloads the key file
    # with every blob rotated, the old key can go
    lines = [ln for ln in path.read_text().splitlines() if ln.startswith(second)]
    path.write_text("\n".join(lines) + "\n")
    only_new = _store(tmp_path, Keyring.from_file(path))
    for key, data in blobs.items():
        assert only_new.open(key).read() == data


def test_rotation_while_reading_never_fails_a_reader(tmp_path: Path) -> None:
    path = tmp_path / "radcloud.keys"
    crypto.create_key_file(path)
    writer = _store(tmp_path, Keyring.from_file(path))
    blobs = {new_key(): os.urandom(n) for n in (100, CS + 1, 4 * CS + 3)}
    for key, data in blobs.items():
        writer.put_bytes(key, data)
    reader = _store(tmp_path, Keyring.from_file(path))  # a "server" loaded before rotation
    stop = threading.Event()
    failures: list[BaseException] = []
    reads = [0]

    def read_loop() -> None:
        while not stop.is_set():
            try:
                for key, data in blobs.items():
                    with reader.open(key) as fh:
                        assert fh.read() == data
                    assert (
                        reader.get_range(key, len(data) // 2, 1000)
                        == (data[len(data) // 2 : len(data) // 2 + 1000])
                    )
                    assert reader.size(key) == len(data)
                    reads[0] += 1
            except BaseException as exc:  # noqa: BLE001 - any failure is the finding
                failures.append(exc)
                return

    threads = [threading.Thread(target=read_loop) for _ in range(2)]
    for t in threads:
        t.start()
    try:
        while reads[0] == 0 and not failures:
            threading.Event().wait(0.001)
        first = reads[0]
        for _ in range(12):  # new key, rotate everything, and again
            crypto.add_key(path)
            rotator = _store(tmp_path, Keyring.from_file(path))
            for key in blobs:
                assert rotator.rewrap(key) == "rewrapped"
        during = reads[0] - first
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    assert failures == []
    assert during > 0  # the readers really ran while the keys changed under them
    assert len(Keyring.from_file(path).ids) == 13
    assert not list(tmp_path.glob("blobs/*/*/*.part"))


def test_running_store_writes_under_a_key_added_later(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(crypto, "REFRESH_SECONDS", 0.0)
    path = tmp_path / "radcloud.keys"
    crypto.create_key_file(path)
    store = _store(tmp_path, Keyring.from_file(path))
    new_id = crypto.add_key(path)
    key = new_key()
    store.put_bytes(key, b"after keys new")
    assert store.key_id(key) == new_id


# ------------------------------------------------------------------ the archive


def _encodings(name: str) -> list[bytes]:
    """The name as a DICOM PN value may hold it (at least 5 bytes: no chance matches)."""
    alphabetic, _, ideographic = name.partition("=")
    return [
        alphabetic.encode("ascii"),  # Zhang^Wei
        b"Zhang",
        ideographic.encode("utf-8"),  # ISO_IR 192
        ideographic.encode("gb18030"),  # GB18030
        name.encode("utf-8"),
        name.encode("gb18030"),
    ]


def _grep(folder: Path, needles: list[bytes]) -> list[tuple[Path, bytes]]:
    return [
        (p, n)
        for p in sorted(folder.rglob("*"))
        if p.is_file()
        for n in needles
        if n in p.read_bytes()
    ]


def test_archive_blobs_hold_no_patient_name_and_decrypt_restores_it(
    archive: Archive, tmp_path: Path
) -> None:
    assert archive.settings.encrypt_at_rest  # the default
    utf8 = [ingest.store_dataset(archive, ds) for ds in tiny_ct_series(3, patient_name=NAME)]
    gb = make_dataset(
        modality="MR", PatientName=NAME, PatientID="GB1", SpecificCharacterSet="GB18030"
    )
    stored_gb = ingest.store_dataset(archive, gb)
    refs = _refs(archive, utf8[0].study_uid) + _refs(archive, stored_gb.study_uid)
    assert len(refs) == 4

    from radcloud.archive import render_service

    assert render_service.thumbnail(archive, refs[0])[:2] == b"\xff\xd8"  # a cached JPEG blob

    blob_dir = archive.settings.blob_dir
    files = [p for p in blob_dir.rglob("*") if p.is_file()]
    assert len(files) == 5  # 4 instances + 1 thumbnail
    assert all(p.read_bytes()[:8] == MAGIC for p in files)
    needles = _encodings(NAME)
    assert _grep(blob_dir, needles) == []
    # what the archive serves is the plaintext, exactly as received
    original = retrieve.read_original(archive, refs[-1])
    assert dcmread(io.BytesIO(original)).PatientName == NAME
    assert NAME.partition("=")[2].encode("gb18030") in original

    out = tmp_path / "decrypted"
    env = {"RADCLOUD_DATA_DIR": str(archive.settings.data_dir), "RADCLOUD_CONFIG": None}
    r = CliRunner().invoke(app, ["decrypt", str(blob_dir), str(out)], env=env)
    assert r.exit_code == 0, r.output
    assert "Decrypted 4 DICOM file(s)" in r.stdout and "1 non-DICOM file(s) skipped" in r.stdout
    assert sorted(p.stem for p in out.glob("*.dcm")) == sorted(ref.sop_uid for ref in refs)
    found = {n for _, n in _grep(out, needles)}
    assert found == set(needles)
    for p in out.glob("*.dcm"):
        ds = dcmread(p)
        assert str(ds.PatientName) == NAME and ds.file_meta.TransferSyntaxUID


def test_encrypted_export_decrypts_back(archive: Archive, tmp_path: Path) -> None:
    stored = [ingest.store_dataset(archive, ds) for ds in tiny_ct_series(2, patient_name=NAME)]
    env = {
        "RADCLOUD_DATA_DIR": str(archive.settings.data_dir),
        "RADCLOUD_DATABASE_URL": archive.settings.database_url,
        "RADCLOUD_CONFIG": None,
    }
    run: Callable[..., Any] = lambda *a: CliRunner().invoke(app, list(a), env=env)  # noqa: E731
    exported = tmp_path / "export"
    r = run("export", str(exported), "--study", stored[0].study_uid, "--encrypt")
    assert r.exit_code == 0, r.output
    files = sorted(exported.iterdir())
    assert [p.name for p in files] == sorted(f"{s.sop_uid}.dcm.enc" for s in stored)
    assert _grep(exported, _encodings(NAME)) == []
    assert all(p.read_bytes()[:8] == MAGIC for p in files)
    out = tmp_path / "plain"
    r = run("decrypt", str(exported), str(out))
    assert r.exit_code == 0, r.output
    for s in stored:
        data = (out / f"{s.sop_uid}.dcm").read_bytes()
        refs = [ref for ref in _refs(archive, s.study_uid) if ref.sop_uid == s.sop_uid]
        assert data == retrieve.read_original(archive, refs[0])  # bit for bit as received


def test_archive_with_encryption_off_writes_plain_and_still_reads_encrypted(
    make_archive: Callable[..., Archive],
) -> None:
    on = make_archive()
    r1 = ingest.store_dataset(on, next(tiny_ct_series(1, patient_name=NAME)))
    on.close()
    off = make_archive(encrypt_at_rest=False)
    r2 = ingest.store_dataset(off, next(tiny_ct_series(1, patient_name=NAME, seed=1)))
    (ref1,) = _refs(off, r1.study_uid)
    (ref2,) = _refs(off, r2.study_uid)
    storage = off.storage
    assert isinstance(storage, FileStorage)
    assert storage.key_id(ref1.blob_key) is not None and storage.key_id(ref2.blob_key) is None
    assert NAME.partition("=")[2].encode() in storage.path(ref2.blob_key).read_bytes()
    assert retrieve.read_verified(off, ref1)  # SHA-256 of the plaintext matches
    assert retrieve.read_verified(off, ref2)
