"""Background work: jobs persisted in the index, run by the in-process worker or Celery.

A job is a row (:class:`~radcloud.jobs.models.Job`) naming a task and its JSON
arguments.  Whoever runs it — the embedded :class:`~radcloud.jobs.worker.Worker`
thread or a Celery worker (:mod:`radcloud.jobs.celery_app`) — calls the same
:func:`radcloud.jobs.queue.run_job`, so both paths behave alike.
"""
