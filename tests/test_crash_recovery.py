"""SIGKILL ``radcloud serve`` in the middle of a C-STORE association; nothing acknowledged is lost.

What was acknowledged (C-STORE-RSP 0x0000) must be in the index with its blob
and SHA-256; nothing half-written may remain (no blob without a row, no row
without a blob); and the sender's retry of everything gives exactly one copy.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from _dimse_data import DCMTK_ENV, dataset_bytes, dcmtk, free_port, wait_port, write_series
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian
from pynetdicom import _config

from radcloud.archive import retrieve
from radcloud.archive.query import Level, Query, search
from radcloud.archive.service import Archive
from radcloud.config import Settings
from radcloud.dimse.net import RadcloudAE, settle_reactor

pytestmark = [pytest.mark.slow, pytest.mark.dcmtk]
N = 400
RADCLOUD = str(Path(sys.executable).with_name("radcloud"))


class Server:
    """``radcloud serve`` as a child process on free ports, SQLite in ``data_dir``."""

    def __init__(self, data_dir: Path) -> None:
        self.http_port, self.dicom_port = free_port(), free_port()
        self.env = {
            **DCMTK_ENV,
            "RADCLOUD_DATA_DIR": str(data_dir),
            "RADCLOUD_HTTP_HOST": "127.0.0.1",
            "RADCLOUD_DICOM_HOST": "127.0.0.1",
            "RADCLOUD_HTTP_PORT": str(self.http_port),
            "RADCLOUD_DICOM_PORT": str(self.dicom_port),
            "RADCLOUD_AE_TITLE": "RADCLOUD",
        }
        self.env.pop("RADCLOUD_DATABASE_URL", None)
        self.env.pop("RADCLOUD_CONFIG", None)
        self.log = data_dir.parent / "serve.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [RADCLOUD, "serve"], env=self.env, stdout=log, stderr=subprocess.STDOUT
            )
        wait_port(self.dicom_port, timeout=60)
        wait_port(self.http_port, timeout=60)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)

    def stop(self) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(30)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    srv = Server(tmp_path / "data")
    yield srv
    if srv.proc is not None and srv.proc.poll() is None:
        srv.proc.kill()
        srv.proc.wait(30)


def _send_all(port: int, paths: list[Path], acked: list[str], done: threading.Event) -> None:
    """One association; records every SOP Instance UID answered with 0x0000."""
    ae = RadcloudAE(ae_title="MODALITY")
    ae.add_requested_context(CTImageStorage, ExplicitVRLittleEndian)
    ae.dimse_timeout = 10
    try:
        assoc = ae.associate("127.0.0.1", port, ae_title="RADCLOUD")
        for path in paths:
            if not assoc.is_established:
                break
            try:
                rsp = assoc.send_c_store(path)  # chunked: the file's data set as it is
            except Exception:  # noqa: BLE001 - the server died under us
                break
            if rsp.get("Status") == 0x0000:
                acked.append(path.stem)
            settle_reactor(assoc)
        if assoc.is_established:
            assoc.release()
    finally:
        done.set()


def test_sigkill_during_store_loses_nothing_acknowledged(
    server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_config, "STORE_SEND_CHUNKED_DATASET", True)
    series = write_series(tmp_path / "src", N, rows=64, columns=64, patient_id="CRASH")
    # name each file by its SOP Instance UID so an acknowledgement maps to a file
    files = {
        uid: p.rename(p.with_name(uid + ".dcm"))
        for uid, p in zip(series.sop_uids, series.paths, strict=True)
    }
    server.start()

    acked: list[str] = []
    done = threading.Event()
    sender = threading.Thread(
        target=_send_all, args=(server.dicom_port, list(files.values()), acked, done)
    )
    sender.start()
    deadline = time.monotonic() + 120
    while len(acked) < N // 2 and not done.is_set() and time.monotonic() < deadline:
        time.sleep(0.005)
    assert not done.is_set(), "the send finished before the kill; nothing was interrupted"
    server.kill()
    sender.join(60)
    assert N // 4 < len(acked) < N, len(acked)
    survivors = list(acked)

    server.start()  # start-up reconcile clears what the kill left behind
    settings = Settings(data_dir=server.env["RADCLOUD_DATA_DIR"], dicom_port=0)
    archive = Archive.open(settings)
    try:
        refs = {r.sop_uid: r for r in retrieve.find_instances(archive, series.study_uid)}
        for uid in survivors:  # acknowledged ⇒ indexed, blob present, SHA-256 right
            ref = refs[uid]
            blob = retrieve.read_verified(archive, ref)  # raises if the SHA-256 is wrong
            assert hashlib.sha256(blob).hexdigest() == ref.sha256
            assert dataset_bytes(blob) == dataset_bytes(files[uid].read_bytes())
        assert len(list(archive.storage.keys())) == len(refs)  # one blob per row, no more
        assert list(settings.tmp_dir.glob("*.part")) == []

        verify = subprocess.run(
            [RADCLOUD, "verify"], env=server.env, capture_output=True, text=True
        )
        assert verify.returncode == 0, verify.stdout + verify.stderr

        # the modality retries everything: exactly one copy of each instance
        r = dcmtk("storescu", "-aec", "RADCLOUD", "127.0.0.1", str(server.dicom_port),
                  *map(str, files.values()), timeout=300)  # fmt: skip
        assert r.returncode == 0, r.stderr[-2000:]
        assert len(search(archive, Query(Level.IMAGE, {"PatientID": "CRASH"})).items) == N
        assert len(list(archive.storage.keys())) == N
        verify = subprocess.run(
            [RADCLOUD, "verify"], env=server.env, capture_output=True, text=True
        )
        assert verify.returncode == 0, verify.stdout + verify.stderr
    finally:
        archive.close()
    assert server.stop() == 0  # graceful shutdown on SIGTERM
    assert "shutting down" in server.log.read_text()
    assert os.path.exists(settings.data_dir / "index.sqlite")
