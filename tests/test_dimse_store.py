"""C-ECHO and C-STORE against the DIMSE listener, driven by DCMTK and a pynetdicom SCU."""

from __future__ import annotations

import io
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import _auth
import pytest
from _dimse_data import DCMTK_ENV, TEST_FILES, dataset_bytes, dcmtk, write_series
from pydicom import dcmread
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset, write_file_meta_info
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid
from pynetdicom import _config

from radcloud.archive import retrieve
from radcloud.archive.query import Level, Query, search
from radcloud.archive.service import Archive
from radcloud.auth.access import SYSTEM
from radcloud.dimse.net import RadcloudAE, settle_reactor
from radcloud.dimse.scp import DimseServer

pytestmark = pytest.mark.dcmtk


@pytest.fixture
def scp(archive: Archive) -> Iterator[DimseServer]:
    _auth.accept_any_calling_ae(archive)
    server = DimseServer(archive, host="127.0.0.1", port=0).start()
    yield server
    server.stop(grace=0)


def _storescu(
    scp: DimseServer, *files: Path | str, opts: tuple[str, ...] = ()
) -> subprocess.Popen[str]:
    args = ["storescu", *opts, "-aet", "MODALITY", "-aec", scp.ae_title, "127.0.0.1", str(scp.port)]
    return subprocess.Popen(
        [*args, *map(str, files)], env=DCMTK_ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True,
    )  # fmt: skip


def _count(archive: Archive, **filters: str) -> int:
    return len(search(archive, Query(Level.IMAGE, filters), principal=SYSTEM).items)


def _assert_stored_exactly(archive: Archive, study_uid: str, paths: list[Path]) -> None:
    """Every file is indexed, and its stored data set is byte-identical to the one sent."""
    refs = {r.sop_uid: r for r in retrieve.find_instances(archive, study_uid, principal=SYSTEM)}
    for path in paths:
        sent = path.read_bytes()
        sop_uid = str(dcmread(path, stop_before_pixels=True).SOPInstanceUID)
        stored = retrieve.read_original(archive, refs[sop_uid])
        assert dataset_bytes(stored) == dataset_bytes(sent), f"{path.name} changed in transit"


def test_echo(scp: DimseServer) -> None:
    r = dcmtk("echoscu", "-aec", scp.ae_title, "127.0.0.1", str(scp.port))
    assert r.returncode == 0, r.stderr
    assert "Success" in dcmtk("echoscu", "-v", "127.0.0.1", str(scp.port)).stderr


def test_hundred_echoes_in_one_association_are_fast(scp: DimseServer) -> None:
    from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

    ae = RadcloudAE(ae_title="ECHOER")
    ae.add_requested_context(Verification)
    assoc = ae.associate("127.0.0.1", scp.port, ae_title=scp.ae_title)
    assert assoc.is_established
    t0 = time.perf_counter()
    statuses = []
    for _ in range(100):
        statuses.append(assoc.send_c_echo().Status)
        settle_reactor(assoc)
    elapsed = time.perf_counter() - t0
    assoc.release()
    assert statuses == [0] * 100
    assert elapsed < 1.0, f"100 C-ECHOs took {elapsed:.2f} s (Nagle stall?)"


def test_both_ends_of_an_association_set_tcp_nodelay(scp: DimseServer) -> None:
    from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

    ae = RadcloudAE(ae_title="NODELAY")
    ae.add_requested_context(Verification)
    assoc = ae.associate("127.0.0.1", scp.port, ae_title=scp.ae_title)
    try:
        assert scp.ae is not None
        (acceptor,) = [a for a in scp.ae.active_associations if a.is_acceptor]
        for end in (assoc, acceptor):
            sock = end.dul.socket.socket  # type: ignore[union-attr]
            assert sock is not None
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
    finally:
        assoc.release()


def test_store_series_then_four_senders_at_once(
    scp: DimseServer, archive: Archive, tmp_path: Path
) -> None:
    series = write_series(tmp_path / "s0", 50, patient_id="P0", patient_name="Zero^Pat")
    t0 = time.perf_counter()
    proc = _storescu(scp, *series.paths)
    out, _ = proc.communicate(timeout=120)
    elapsed = time.perf_counter() - t0
    assert proc.returncode == 0, out
    print(f"\nC-STORE 50 slices, one storescu association: {50 / elapsed:.0f} images/s")
    assert _count(archive, SeriesInstanceUID=series.series_uid) == 50
    _assert_stored_exactly(archive, series.study_uid, series.paths)

    many = [
        write_series(tmp_path / f"p{i}", 20, patient_id=f"P{i + 1}", patient_name=f"Pat^{i}")
        for i in range(4)
    ]
    procs = [_storescu(scp, *s.paths) for s in many]
    for p in procs:
        out, _ = p.communicate(timeout=120)
        assert p.returncode == 0, out
    for s in many:
        assert _count(archive, SeriesInstanceUID=s.series_uid) == 20
        _assert_stored_exactly(archive, s.study_uid, s.paths)
    assert _count(archive) == 50 + 4 * 20


@pytest.mark.parametrize(
    ("name", "option", "ts"),
    [
        ("MR_small_jpeg_ls_lossless.dcm", "-xt", "1.2.840.10008.1.2.4.80"),
        ("MR_small_RLE.dcm", "-xr", "1.2.840.10008.1.2.5"),
    ],
)
def test_compressed_transfer_syntax_kept(
    scp: DimseServer, archive: Archive, name: str, option: str, ts: str
) -> None:
    path = TEST_FILES / name
    if not path.exists():
        pytest.skip(f"{name} is not bundled with this pydicom")
    ds = dcmread(path, stop_before_pixels=True)
    assert ds.file_meta.TransferSyntaxUID == ts
    proc = _storescu(scp, path, opts=(option,))
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
    (ref,) = retrieve.find_instances(archive, str(ds.StudyInstanceUID), principal=SYSTEM)
    assert ref.transfer_syntax_uid == ts
    # storescu re-encodes the data set (VR OW→OB of encapsulated Pixel Data, drops
    # trailing padding), so compare values; the compressed bit stream must be untouched
    stored = dcmread(io.BytesIO(retrieve.read_original(archive, ref)))
    sent = dcmread(path)
    assert stored.PixelData == sent.PixelData
    skip = (0x7FE00010, 0xFFFCFFFC)
    assert [(e.tag, e.value) for e in stored if e.tag not in skip] == [
        (e.tag, e.value) for e in sent if e.tag not in skip
    ]


def _bad_file(folder: Path, name: str, *, drop_sop_uid: bool = False, sop_class: str = "",
              garbage: bool = False) -> Path:  # fmt: skip
    """A Part 10 file with sound file meta (CT Image Storage) and a faulty data set."""
    sop_uid = generate_uid()
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = generate_uid()
    ds = Dataset()
    ds.SOPClassUID = sop_class or CTImageStorage
    if not drop_sop_uid:
        ds.SOPInstanceUID = sop_uid
    ds.PatientID = "BAD"
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.Modality = "CT"
    body = DicomBytesIO()
    body.is_little_endian, body.is_implicit_VR = True, False
    write_dataset(body, ds)
    data = body.getvalue()
    if garbage:  # an element claiming 32 KiB of value, then the file ends
        data = b"\x08\x00\x16\x00UI\xff\x7f" + b"1" * 40
    head = DicomBytesIO()
    head.write(b"\0" * 128 + b"DICM")
    write_file_meta_info(head, meta)
    path = folder / name
    path.write_bytes(head.getvalue() + data)
    return path


def test_bad_data_sets_get_their_status_and_store_nothing(
    scp: DimseServer, archive: Archive, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_config, "STORE_SEND_CHUNKED_DATASET", True)  # send files as they are
    cases = [
        (_bad_file(tmp_path, "no_uid.dcm", drop_sop_uid=True), 0xA900),
        (_bad_file(tmp_path, "not_storage.dcm", sop_class="1.2.840.10008.5.1.4.1.2.2.1"), 0x0122),
        (_bad_file(tmp_path, "garbage.dcm", garbage=True), 0xC210),
    ]
    good = write_series(tmp_path / "good", 1).paths[0]
    ae = RadcloudAE(ae_title="BADSCU")
    ae.add_requested_context(CTImageStorage, ExplicitVRLittleEndian)
    assoc = ae.associate("127.0.0.1", scp.port, ae_title=scp.ae_title)
    assert assoc.is_established
    try:
        for path, expected in cases:
            rsp = assoc.send_c_store(path)
            settle_reactor(assoc)
            assert rsp.Status == expected, f"{path.name}: 0x{rsp.Status:04X}"
            assert assoc.is_established  # a refused instance never ends the association
        assert _count(archive) == 0
        assert list(archive.storage.keys()) == []
        assert assoc.send_c_store(good).Status == 0x0000
    finally:
        assoc.release()
    assert _count(archive) == 1
    assert list(archive.settings.tmp_dir.glob("*")) == []  # no spool file left behind


def test_same_instance_twice_at_once(scp: DimseServer, archive: Archive, tmp_path: Path) -> None:
    series = write_series(tmp_path / "dup", 1)
    barrier = threading.Barrier(4)
    statuses: list[int] = []

    def send() -> None:
        ae = RadcloudAE(ae_title="DUP")
        ae.add_requested_context(CTImageStorage, ExplicitVRLittleEndian)
        assoc = ae.associate("127.0.0.1", scp.port, ae_title=scp.ae_title)
        barrier.wait()
        statuses.append(int(assoc.send_c_store(series.paths[0]).Status))
        assoc.release()

    threads = [threading.Thread(target=send) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert statuses == [0, 0, 0, 0]
    assert _count(archive, SOPInstanceUID=series.sop_uids[0]) == 1
    assert len(list(archive.storage.keys())) == 1
