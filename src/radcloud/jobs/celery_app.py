"""Scale-out: Celery workers run the same :func:`radcloud.jobs.queue.run_job`.

The job row in the index stays the source of truth (state, progress, lease,
error); Celery only carries the job id.  Start workers with::

    RADCLOUD_DATABASE_URL=postgresql://... RADCLOUD_CELERY_BROKER_URL=redis://host:6379/0 \\
        celery -A radcloud.jobs.celery_app worker --concurrency 2

A worker opens the archive from the same settings as ``radcloud serve``.
"""

from __future__ import annotations

import threading
from typing import Any

from celery import Celery

from radcloud.config import Settings, load_settings

TASK_NAME = "radcloud.run_job"
_clients: dict[str, Celery] = {}
_lock = threading.Lock()
_archive: Any = None


def make_app(broker_url: str) -> Celery:
    """A Celery app on ``broker_url``; results live in the index, not in Celery."""
    app = Celery("radcloud", broker=broker_url)
    app.conf.update(
        task_ignore_result=True,
        task_acks_late=True,  # a worker that dies mid-job leaves it for another
        worker_prefetch_multiplier=1,
        task_serializer="json",
        accept_content=["json"],
        broker_connection_retry_on_startup=True,
        task_default_queue=load_settings().celery_queue,
    )
    app.task(name=TASK_NAME)(_run_job)
    return app


def _run_job(job_id: int) -> str:
    """The Celery task: open the archive once per worker process and run the job."""
    global _archive
    from radcloud.archive.service import Archive
    from radcloud.jobs import catalog, queue

    with _lock:
        if _archive is None:
            settings = load_settings()
            catalog.load(settings)
            _archive = Archive.open(settings)
    return queue.run_job(_archive, int(job_id), f"celery:{queue.worker_name()}")


def client(settings: Settings) -> Celery:
    with _lock:
        app = _clients.get(settings.celery_broker_url)
        if app is None:
            app = _clients[settings.celery_broker_url] = make_app(settings.celery_broker_url)
    return app


def send(settings: Settings, job_id: int, countdown: float = 0.0) -> None:
    """Queue ``job_id`` for a Celery worker (to start ``countdown`` seconds from now)."""
    client(settings).send_task(
        TASK_NAME, args=[job_id], queue=settings.celery_queue, countdown=countdown or None
    )


#: The app ``celery -A radcloud.jobs.celery_app worker`` runs.
app = make_app(load_settings().celery_broker_url)
