"""Extra DICOM listener processes on the same port (``RADCLOUD_DICOM_PROCESSES``).

``radcloud serve`` with two processes: both listen on the DICOM port; with the
main process frozen (SIGSTOP) the worker alone still answers C-ECHO and stores
a C-STORE that the archive then lists; a worker killed with SIGKILL is
restarted and ``/healthz`` says so while it is missing; the workers die with
the main process (SIGKILL) and leave with it (SIGTERM); and a DICOM port that
something else already listens on stops the start with a clear error instead
of silently sharing the port.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from _dimse_data import dcmtk, write_series
from _server import RADCLOUD, Server

from radcloud.config import Settings
from radcloud.dimse import workers

pytestmark = [pytest.mark.slow, pytest.mark.dcmtk]


def _children(pid: int) -> list[int]:
    """Process ids of the DICOM worker processes whose parent is ``pid``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == pid and b"radcloud.dimse.workers" in cmdline:
            found.append(int(entry.name))
    return found


def _wait(what: str, check: Callable[[], bool], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.1)


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _listening_inodes(port: int) -> set[str]:
    """Socket inodes listening on ``port`` (IPv4), from /proc/net/tcp."""
    inodes = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        cols = line.split()
        if int(cols[1].split(":")[1], 16) == port and cols[3] == "0A":  # 0A = LISTEN
            inodes.add(cols[9])
    return inodes


def _owns_socket(pid: int, inodes: set[str]) -> bool:
    try:
        fds = list(Path(f"/proc/{pid}/fd").iterdir())
    except OSError:
        return False
    for fd in fds:
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:[") and target[8:-1] in inodes:
            return True
    return False


def _health(srv: Server) -> dict[str, str]:
    """``/healthz``'s checks; {} while the app is not answering yet."""
    try:
        r = httpx.get(f"http://127.0.0.1:{srv.http_port}/healthz", timeout=10)
    except httpx.HTTPError:
        return {}
    checks: dict[str, str] = r.json()["checks"]
    return checks


@pytest.fixture
def two(tmp_path: Path) -> Server:
    srv = Server(tmp_path / "data", RADCLOUD_DICOM_PROCESSES="2", RADCLOUD_ANALYSIS_AUTO="false")
    return srv


def test_process_count_from_settings() -> None:
    cores = len(os.sched_getaffinity(0))
    assert workers.process_count(Settings(dicom_processes=1)) == 1
    assert workers.process_count(Settings(dicom_processes=3)) == 3
    assert workers.process_count(Settings(dicom_processes=0)) == max(1, min(4, cores))
    assert workers.process_count(Settings(dicom_processes=3, dicom_port=0)) == 1


def test_worker_serves_alone_while_main_process_is_frozen(two: Server, tmp_path: Path) -> None:
    two.start()
    try:
        assert two.proc is not None
        main = two.proc.pid
        _wait("the worker process", lambda: len(_children(main)) == 1)
        (child,) = _children(main)
        inodes = _listening_inodes(two.dicom_port)
        _wait("both processes listening", lambda: _owns_socket(child, _listening_inodes(
            two.dicom_port)) and _owns_socket(main, _listening_inodes(two.dicom_port)))  # fmt: skip
        assert len(_listening_inodes(two.dicom_port)) == 2, inodes
        _wait("health", lambda: _health(two).get("dicom_processes") == "up")
        two.allow_ae("STORESCU", "ECHOSCU")
        series = write_series(tmp_path / "one", 1, patient_id="WRK1")

        os.kill(main, signal.SIGSTOP)  # new associations reach the worker, or hang
        try:
            answered = stored = False
            for _ in range(40):  # each try a new source port: the kernel picks a listener
                if not answered:
                    r = dcmtk("echoscu", "-aet", "ECHOSCU", "-aec", "RADCLOUD", "-to", "2",
                              "-ta", "2", "127.0.0.1", str(two.dicom_port), timeout=20)  # fmt: skip
                    answered = r.returncode == 0
                if not stored:
                    r = dcmtk("storescu", "-aet", "STORESCU", "-aec", "RADCLOUD", "-to", "2",
                              "-ta", "2", "127.0.0.1", str(two.dicom_port),
                              str(series.paths[0]), timeout=20)  # fmt: skip
                    stored = r.returncode == 0
                if answered and stored:
                    break
        finally:
            os.kill(main, signal.SIGCONT)
        assert answered, "no C-ECHO was answered while the main process was stopped"
        assert stored, "no C-STORE succeeded while the main process was stopped"
        r = httpx.get(
            f"http://127.0.0.1:{two.http_port}/dicom-web/studies/{series.study_uid}/instances",
            headers=two.headers(), timeout=20,
        )  # fmt: skip
        assert r.status_code == 200, r.text
        sops = {i["00080018"]["Value"][0] for i in r.json()}
        assert sops == {series.sop_uids[0]}
    finally:
        if two.proc is not None and two.proc.poll() is None:
            two.stop()


def test_worker_restarted_and_gone_with_main_process(two: Server) -> None:
    two.start()
    assert two.proc is not None
    main = two.proc.pid
    _wait("the worker process", lambda: len(_children(main)) == 1)
    (child,) = _children(main)
    os.kill(child, signal.SIGKILL)
    _wait("health to notice the dead worker", lambda: _health(two).get("dicom_processes") == "down")
    _wait("a new worker", lambda: len(_children(main)) == 1 and _children(main) != [child])
    _wait("health back up", lambda: _health(two).get("dicom_processes") == "up")
    assert "restarting it" in two.log.read_text()
    (second,) = _children(main)
    two.kill()  # SIGKILL: the workers must not outlive the main process
    _wait("the worker to die with the main process", lambda: not _alive(second), timeout=10)


def test_sigterm_stops_the_workers(two: Server) -> None:
    two.start()
    assert two.proc is not None
    main = two.proc.pid
    _wait("the worker process", lambda: len(_children(main)) == 1)
    (child,) = _children(main)
    _wait("the HTTP app", lambda: _health(two).get("dicom_processes") == "up")  # signals handled
    assert two.stop() == 0
    _wait("the worker to stop", lambda: not _alive(child), timeout=10)


def test_busy_dicom_port_is_a_clear_error(tmp_path: Path) -> None:
    srv = Server(tmp_path / "data", RADCLOUD_DICOM_PROCESSES="2")
    with socket.socket() as other:  # some other program on the DICOM port
        other.bind(("127.0.0.1", srv.dicom_port))
        other.listen(1)
        run = subprocess.run(
            [RADCLOUD, "serve"], env=srv.env, capture_output=True, text=True, timeout=120
        )
    assert run.returncode != 0
    assert f"cannot listen for DICOM on 127.0.0.1:{srv.dicom_port}" in run.stderr + run.stdout
