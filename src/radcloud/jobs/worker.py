"""The in-process worker: threads that run queued jobs, plus periodic housekeeping.

Embedded mode (``jobs_backend = "embedded"``) runs ``jobs_worker_threads``
threads that claim and run jobs from the index.  In scale-out mode
(``"celery"``) the Celery workers run the jobs and this worker only does the
periodic work: the ``periodic`` callables (series-complete detection, see
:mod:`radcloud.analysis.auto`) and sending jobs whose runner died back to Celery.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from radcloud.archive.service import Archive
from radcloud.jobs import queue

log = logging.getLogger(__name__)


class Worker:
    """Start with :meth:`start`, stop with :meth:`stop` (running jobs finish first)."""

    def __init__(
        self,
        archive: Archive,
        *,
        threads: int | None = None,
        poll_seconds: float | None = None,
        periodic: list[Callable[[Archive], object]] | None = None,
    ) -> None:
        s = archive.settings
        self.archive = archive
        self.execute = s.jobs_backend != "celery"
        self.threads = max(1, int(threads if threads is not None else s.jobs_worker_threads))
        self.poll = float(poll_seconds if poll_seconds is not None else s.jobs_poll_seconds)
        self.periodic = list(periodic or [])
        self.name = queue.worker_name()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> Worker:
        if self.execute:
            for n in range(self.threads):
                t = threading.Thread(
                    target=self._run, args=(f"{self.name}/{n}",), name=f"rc-job-{n}", daemon=True
                )
                t.start()
                self._threads.append(t)
        t = threading.Thread(target=self._housekeeping, name="rc-job-periodic", daemon=True)
        t.start()
        self._threads.append(t)
        return self

    def wake(self) -> None:
        """Look for work now rather than at the next poll."""
        self._wake.set()

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        self._wake.set()
        for t in self._threads:
            t.join(timeout)
        self._threads.clear()

    def _run(self, name: str) -> None:
        while not self._stop.is_set():
            try:
                ran = queue.run_next(self.archive, name)
            except Exception:  # the index unreachable for a moment: try again later
                log.exception("job worker %s: claiming a job failed", name)
                ran = None
            if ran is None:
                self._wake.wait(self.poll)
                self._wake.clear()

    def _housekeeping(self) -> None:
        while not self._stop.is_set():
            for fn in self.periodic:
                try:
                    fn(self.archive)
                except Exception:
                    log.exception("periodic job step %s failed", getattr(fn, "__name__", fn))
            if not self.execute:
                try:
                    queue.redispatch_stale(self.archive)
                except Exception:
                    log.exception("re-sending stale jobs to Celery failed")
            self._stop.wait(self.poll)
