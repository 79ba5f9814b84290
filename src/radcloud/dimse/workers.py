"""More processes accepting DICOM associations on the same port (``dicom_processes``).

One Python process runs one interpreter lock: with several modalities sending
at once, every association's parsing, hashing and encryption takes turns on
one core.  ``radcloud serve`` therefore starts extra listener processes that
bind the same DICOM port with ``SO_REUSEPORT``; the kernel hands each new
association to one of the listening processes.  Each worker opens the same
archive (no migration, no start-up clean-up: the main process did both) and
serves the same services through the same handlers; everything they share
lives in the index and the blob store, which already take concurrent writers.

A worker gets its settings from the main process over its stdin (so they are
the ones the main process resolved, secrets included, and never appear in a
process listing), dies with the main process (``PR_SET_PDEATHSIG``), and is
restarted if it dies on its own.  The DICOM TLS listener, the HTTP app and the
job worker stay in the main process.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time

from radcloud.config import Settings

log = logging.getLogger(__name__)

#: Seconds between checks that the workers are alive; the back-off after a crash.
WATCH_INTERVAL, RESTART_BACKOFF = 1.0, 5.0
_PR_SET_PDEATHSIG = 1


def can_share_port() -> bool:
    """Whether this system lets several processes listen on one port (Linux, BSD)."""
    return hasattr(socket, "SO_REUSEPORT") and sys.platform.startswith(("linux", "freebsd"))


def process_count(settings: Settings) -> int:
    """How many processes accept plain DICOM associations (the main one included).

    ``dicom_processes`` 0 means one per CPU core, at most 4; anything below 1
    or a system without shared ports means the main process alone.
    """
    wanted = settings.dicom_processes
    if wanted == 0:
        wanted = min(4, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1)
    if wanted <= 1 or not settings.dicom_port or not can_share_port():
        return 1
    return wanted


class Workers:
    """The extra listener processes of ``radcloud serve`` (started, watched, stopped)."""

    def __init__(self, settings: Settings, port: int, count: int) -> None:
        #: The settings each worker runs with: the main process's, on the bound port.
        self.payload = settings.model_copy(update={"dicom_port": port}).model_dump_json()
        self.count = count
        self._procs: list[subprocess.Popen[bytes] | None] = [None] * count
        self._restarts = 0
        self._stop = threading.Event()
        self._watcher: threading.Thread | None = None

    def start(self) -> Workers:
        for i in range(self.count):
            self._procs[i] = self._spawn()
        self._watcher = threading.Thread(target=self._watch, name="dicom-workers", daemon=True)
        self._watcher.start()
        log.info("%d more DICOM listener process(es) on the same port", self.count)
        return self

    def _spawn(self) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(
            [sys.executable, "-m", "radcloud.dimse.workers"],
            stdin=subprocess.PIPE, preexec_fn=_die_with_parent, close_fds=True,
        )  # fmt: skip
        assert proc.stdin is not None
        proc.stdin.write(self.payload.encode())
        proc.stdin.close()
        return proc

    def _watch(self) -> None:
        while not self._stop.wait(WATCH_INTERVAL):
            for i, proc in enumerate(self._procs):
                if proc is None or proc.poll() is None or self._stop.is_set():
                    continue
                log.error(
                    "DICOM listener process %d exited with status %s; restarting it in %.0f s",
                    proc.pid, proc.returncode, RESTART_BACKOFF,
                )  # fmt: skip
                if self._stop.wait(RESTART_BACKOFF):
                    return
                self._procs[i] = self._spawn()
                self._restarts += 1

    @property
    def alive(self) -> int:
        return sum(1 for p in self._procs if p is not None and p.poll() is None)

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self._procs if p is not None]

    def stop(self, grace: float) -> None:
        """SIGTERM every worker (each lets its associations finish), then SIGKILL stragglers."""
        self._stop.set()
        procs = [p for p in self._procs if p is not None]
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace + 2
        for p in procs:
            try:
                p.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def main() -> None:  # pragma: no cover - a separate process; tests/test_dimse_workers.py runs it
    """A worker: read the settings from stdin, listen on the shared port until SIGTERM."""
    from radcloud.archive.service import Archive
    from radcloud.dimse.scp import DimseServer
    from radcloud.server import setup_logging

    parent = os.getppid()
    settings = Settings.model_validate_json(sys.stdin.buffer.read())
    setup_logging(settings.log_level)
    if parent == 1:  # the main process died before PR_SET_PDEATHSIG took effect
        return
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    signal.signal(signal.SIGINT, lambda *_: stopping.set())
    archive = Archive.open(settings, migrate=False)
    server = DimseServer(archive, share_port=True).start()
    try:
        while not stopping.wait(WATCH_INTERVAL):
            if os.getppid() != parent:
                break
    finally:
        server.stop(grace=10.0)
        archive.close()


if __name__ == "__main__":  # pragma: no cover
    main()
