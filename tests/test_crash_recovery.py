"""SIGKILL ``radcloud serve`` in the middle of a C-STORE association; nothing acknowledged is lost.

What was acknowledged (C-STORE-RSP 0x0000) must be in the index with its blob
and SHA-256; nothing half-written may remain (no blob without a row, no row
without a blob); and the sender's retry of everything gives exactly one copy.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import threading
import time
from pathlib import Path

import pytest
from _dimse_data import dataset_bytes, dcmtk, write_series
from _server import RADCLOUD, Server
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian
from pynetdicom import _config

from radcloud.archive import retrieve
from radcloud.archive.query import Level, Query, search
from radcloud.archive.service import Archive
from radcloud.auth.access import SYSTEM
from radcloud.config import Settings
from radcloud.dimse.net import RadcloudAE, settle_reactor

pytestmark = [pytest.mark.slow, pytest.mark.dcmtk]
N = 400


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
    server.allow_ae("MODALITY", "STORESCU")
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
        refs = {
            r.sop_uid: r
            for r in retrieve.find_instances(archive, series.study_uid, principal=SYSTEM)
        }
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
        assert (
            len(search(archive, Query(Level.IMAGE, {"PatientID": "CRASH"}), principal=SYSTEM).items)
            == N
        )
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
