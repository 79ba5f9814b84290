"""C-MOVE to a real storescp and C-GET into getscu, against the DIMSE listener."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import _auth
import numpy as np
import pytest
from _dimse_data import (
    DCMTK_ENV,
    TEST_FILES,
    SeriesFiles,
    dataset_bytes,
    dcmtk,
    free_port,
    wait_port,
    write_series,
)
from pydicom import dcmread
from pydicom.dataset import Dataset
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    PatientRootQueryRetrieveInformationModelMove,
)

from radcloud.archive import ingest, nodes, retrieve
from radcloud.archive.service import Archive
from radcloud.auth.access import SYSTEM
from radcloud.dimse.net import RadcloudAE
from radcloud.dimse.scp import DimseServer

pytestmark = pytest.mark.dcmtk
StoreScp = Callable[..., Path]


@pytest.fixture
def scp(archive: Archive) -> Iterator[DimseServer]:
    _auth.accept_any_calling_ae(archive)
    server = DimseServer(archive, host="127.0.0.1", port=0).start()
    yield server
    server.stop(grace=0)


def _start_storescp(
    archive: Archive, folder: Path, title: str, *opts: str
) -> subprocess.Popen[bytes]:
    """``storescp`` writing into ``folder``, registered in ``archive`` as a C-MOVE destination."""
    folder.mkdir()
    port = free_port()
    cmd = ["storescp", *opts, "--output-directory", str(folder), "-aet", title, str(port)]
    proc = subprocess.Popen(cmd, env=DCMTK_ENV, stderr=subprocess.DEVNULL)
    wait_port(port)
    nodes.add_remote_ae(archive, title, "127.0.0.1", port, "test storescp")
    return proc


@pytest.fixture
def storescp(archive: Archive, tmp_path: Path) -> Iterator[StoreScp]:
    """Start ``storescp`` (registered as a C-MOVE destination); returns its output folder."""
    procs: list[subprocess.Popen[bytes]] = []

    def start(title: str = "STORESCP", *opts: str) -> Path:
        out = tmp_path / f"received-{title}"
        procs.append(_start_storescp(archive, out, title, *opts))
        return out

    yield start
    for p in procs:
        p.terminate()
        p.wait(10)


@pytest.fixture
def study(archive: Archive, tmp_path: Path) -> tuple[SeriesFiles, SeriesFiles]:
    a = write_series(tmp_path / "a", 6, patient_id="MOVE1", patient_name="Move^Me")
    b = write_series(
        tmp_path / "b", 3, patient_id="MOVE1", patient_name="Move^Me", study_uid=a.study_uid,
        series_number=2,
    )  # fmt: skip
    for p in a.paths + b.paths:
        ingest.store_copy(archive, p, source="test")
    return a, b


def _received(folder: Path) -> dict[str, Path]:
    files = [p for p in folder.iterdir() if p.is_file()]
    return {str(dcmread(p, stop_before_pixels=True).SOPInstanceUID): p for p in files}


def _assert_same_as_stored(archive: Archive, study_uid: str, got: dict[str, Path]) -> None:
    refs = {r.sop_uid: r for r in retrieve.find_instances(archive, study_uid, principal=SYSTEM)}
    for uid, path in got.items():
        stored = retrieve.read_original(archive, refs[uid])
        assert dataset_bytes(path.read_bytes()) == dataset_bytes(stored), uid


def _move(
    scp: DimseServer, dest: str, *keys: str, model: str = "-S"
) -> subprocess.CompletedProcess[str]:
    args = ["movescu", "-v", model, "-aec", scp.ae_title, "-aem", dest]
    for k in keys:
        args += ["-k", k]
    return dcmtk(*args, "127.0.0.1", str(scp.port))


def test_move_series_then_study(
    scp: DimseServer, archive: Archive, storescp: StoreScp, study: tuple[SeriesFiles, SeriesFiles]
) -> None:
    a, b = study
    out = storescp()
    r = _move(
        scp, "STORESCP", "QueryRetrieveLevel=SERIES", f"StudyInstanceUID={a.study_uid}",
        f"SeriesInstanceUID={b.series_uid}",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "Received Final Move Response (Success)" in r.stderr, r.stderr
    got = _received(out)
    assert set(got) == set(b.sop_uids)
    _assert_same_as_stored(archive, a.study_uid, got)

    r = _move(scp, "STORESCP", "QueryRetrieveLevel=STUDY", f"StudyInstanceUID={a.study_uid}")
    assert "Received Final Move Response (Success)" in r.stderr, r.stderr
    assert "Received Move Response 9 (Pending)" in r.stderr  # one pending per sub-operation
    got = _received(out)
    assert set(got) == set(a.sop_uids + b.sop_uids)
    _assert_same_as_stored(archive, a.study_uid, got)


def test_move_patient_root_patient_and_image_level(
    scp: DimseServer, storescp: StoreScp, study: tuple[SeriesFiles, SeriesFiles]
) -> None:
    a, b = study
    out = storescp()
    r = _move(
        scp, "STORESCP", "QueryRetrieveLevel=IMAGE", "PatientID=MOVE1",
        f"StudyInstanceUID={a.study_uid}", f"SeriesInstanceUID={a.series_uid}",
        f"SOPInstanceUID={a.sop_uids[0]}\\{a.sop_uids[2]}", model="-P",
    )  # fmt: skip
    assert "Received Final Move Response (Success)" in r.stderr, r.stderr
    assert set(_received(out)) == {a.sop_uids[0], a.sop_uids[2]}
    identifier = Dataset()
    identifier.QueryRetrieveLevel = "PATIENT"
    identifier.PatientID = "MOVE1"
    ae = RadcloudAE(ae_title="MOVER")
    ae.add_requested_context(PatientRootQueryRetrieveInformationModelMove)
    assoc = ae.associate("127.0.0.1", scp.port, ae_title=scp.ae_title)
    counts = [
        (rsp.Status, rsp.get("NumberOfRemainingSuboperations"), rsp.NumberOfCompletedSuboperations,
         rsp.NumberOfFailedSuboperations, rsp.NumberOfWarningSuboperations)
        for rsp, _ in assoc.send_c_move(
            identifier, "STORESCP", PatientRootQueryRetrieveInformationModelMove
        )
    ]  # fmt: skip
    assoc.release()
    assert counts == [(0xFF00, 9 - i, i, 0, 0) for i in range(1, 10)] + [(0, 0, 9, 0, 0)]
    assert set(_received(out)) == set(a.sop_uids + b.sop_uids)


def test_move_unknown_destination_and_missing_key(
    scp: DimseServer, storescp: StoreScp, study: tuple[SeriesFiles, SeriesFiles]
) -> None:
    a, _ = study
    r = _move(scp, "NOWHERE", "QueryRetrieveLevel=STUDY", f"StudyInstanceUID={a.study_uid}")
    assert "MoveDestinationUnknown" in r.stderr.replace(" ", ""), r.stderr  # 0xA801
    out = storescp()
    r = _move(scp, "STORESCP", "QueryRetrieveLevel=SERIES", f"StudyInstanceUID={a.study_uid}")
    assert "DataSetDoesNotMatchSOPClass" in r.stderr, r.stderr  # 0xA900: no SeriesInstanceUID
    assert list(out.iterdir()) == []


def test_move_compressed_instance_raw_or_decoded(
    scp: DimseServer, archive: Archive, storescp: StoreScp
) -> None:
    src = TEST_FILES / "MR_small_jpeg_ls_lossless.dcm"
    original = dcmread(src)
    ingest.store_copy(archive, src, source="test")
    keys = ("QueryRetrieveLevel=STUDY", f"StudyInstanceUID={original.StudyInstanceUID}")

    jls = storescp("JLSSCP", "+xt")  # accepts JPEG-LS lossless: stored bytes go as they are
    assert "(Success)" in _move(scp, "JLSSCP", *keys).stderr
    (got,) = _received(jls).values()
    ds = dcmread(got)
    assert ds.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.4.80"
    assert ds.PixelData == original.PixelData  # the compressed bit stream, untouched

    plain = storescp("PLAINSCP")  # uncompressed only: decoded to Explicit VR Little Endian
    assert "(Success)" in _move(scp, "PLAINSCP", *keys).stderr
    (got,) = _received(plain).values()
    ds = dcmread(got)
    assert ds.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.1"
    assert np.array_equal(ds.pixel_array, original.pixel_array)


def test_get_series_into_getscu(
    scp: DimseServer, archive: Archive, tmp_path: Path, study: tuple[SeriesFiles, SeriesFiles]
) -> None:
    a, b = study
    out = tmp_path / "got"
    out.mkdir()
    r = dcmtk(
        "getscu", "-v", "-S", "-aec", scp.ae_title, "-od", str(out),
        "-k", "QueryRetrieveLevel=SERIES", "-k", f"StudyInstanceUID={a.study_uid}",
        "-k", f"SeriesInstanceUID={a.series_uid}", "127.0.0.1", str(scp.port),
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "Received C-GET Response (Success)" in r.stderr, r.stderr
    assert "Number of Completed Suboperations : 6" in r.stderr
    got = _received(out)
    assert set(got) == set(a.sop_uids)
    _assert_same_as_stored(archive, a.study_uid, got)


def test_retrieve_from_an_archive_compressed_at_rest(
    make_archive: Callable[..., Archive], tmp_path: Path
) -> None:
    """Blobs kept as JPEG-LS at rest still leave as the files that were received."""
    archive = make_archive(compression="jpeg-ls")
    series = write_series(tmp_path / "c", 4, patient_id="JLS", rows=64, columns=64)
    for p in series.paths:
        ingest.store_copy(archive, p, source="test")
    refs = retrieve.find_instances(archive, series.study_uid, principal=SYSTEM)
    assert {r.transfer_syntax_uid for r in refs} == {"1.2.840.10008.1.2.4.80"}  # compressed
    moved, got = tmp_path / "moved", tmp_path / "got"
    got.mkdir()
    proc = _start_storescp(archive, moved, "STORESCP")
    _auth.accept_any_calling_ae(archive)
    server = DimseServer(archive, host="127.0.0.1", port=0).start()
    study = ("QueryRetrieveLevel=STUDY", f"StudyInstanceUID={series.study_uid}")
    try:
        r = _move(server, "STORESCP", *study)
        assert "Received Final Move Response (Success)" in r.stderr, r.stderr
        r = dcmtk(
            "getscu", "-S", "-aec", server.ae_title, "-od", str(got), "-k", study[0],
            "-k", study[1], "127.0.0.1", str(server.port),
        )  # fmt: skip
        assert r.returncode == 0, r.stderr
    finally:
        server.stop(grace=0)
        proc.terminate()
        proc.wait(10)
    sent = {uid: path.read_bytes() for uid, path in zip(series.sop_uids, series.paths, strict=True)}
    for folder in (moved, got):
        received = _received(folder)
        assert set(received) == set(sent)
        for uid, path in received.items():
            assert dataset_bytes(path.read_bytes()) == dataset_bytes(sent[uid])
