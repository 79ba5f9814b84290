"""Start and stop what analysis needs in a running server: the job worker with its
series-complete scan, and the report prefill source."""

from __future__ import annotations

from collections.abc import Callable

from radcloud.analysis import auto, service
from radcloud.archive.service import Archive
from radcloud.jobs import catalog
from radcloud.jobs.worker import Worker
from radcloud.report import prefill


def start(archive: Archive) -> Callable[[], None]:
    """Start the worker (embedded) or scheduler (Celery); returns the stop function."""
    catalog.load(archive.settings)
    worker = Worker(archive, periodic=[auto.scan]).start()
    archive.caches["jobs.worker"] = worker
    remove = prefill.register_source(service.ResultsSource())

    def stop() -> None:
        remove()
        worker.stop()
        archive.caches.pop("jobs.worker", None)

    return stop
