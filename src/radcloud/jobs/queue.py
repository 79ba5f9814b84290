"""Enqueue, claim, run, cancel and retry jobs; the task registry both runners share.

A task is a plain function ``fn(archive, args, ctx) -> JSON-able result``
registered under a name with :func:`task`.  :func:`run_job` is the one place a
task runs, whether the in-process worker or a Celery worker calls it:

* claiming is one conditional UPDATE (state and lease as last read), so two
  workers on two nodes never run the same job at once;
* a running job holds a lease that :meth:`JobContext.progress` renews; a job
  whose runner died is claimed again once the lease has run out, until
  ``max_attempts`` is used up, then it fails with that reason;
* an exception fails the job with its message (never silently); a failed or
  cancelled job runs again only when someone calls :func:`retry`;
* a task whose failure is transient raises :class:`RetryLater`: the job is
  queued again after a delay that doubles with each attempt, until
  ``max_attempts`` is used up, then it fails with the last reason;
* cancelling a queued job is immediate; a running job stops at its next
  progress report (:class:`Cancelled`).
"""

from __future__ import annotations

import logging
import os
import socket
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import orjson
from sqlalchemy import and_, insert, or_, select, update

from radcloud.archive.service import Archive
from radcloud.errors import InvalidRequest, NotFound
from radcloud.jobs.models import CANCELLED, DONE, FAILED, FINAL, QUEUED, RUNNING, Job
from radcloud.store.db import as_utc

log = logging.getLogger(__name__)

TaskFn = Callable[[Archive, dict[str, Any], "JobContext"], Any]
TASKS: dict[str, TaskFn] = {}


class Cancelled(Exception):
    """Raised inside a task when its job was cancelled; the runner records it as cancelled."""


class RetryLater(Exception):
    """Raised by a task that failed for a passing reason (storage or a peer down a moment).

    The job goes back to the queue, to run after ``delay`` seconds doubled for each
    attempt already made, while attempts remain; then it fails with this reason.
    """

    def __init__(self, reason: str, delay: float = 30.0) -> None:
        super().__init__(reason)
        self.delay = delay


def task(name: str) -> Callable[[TaskFn], TaskFn]:
    """Register ``fn`` as the task ``name`` (the ``kind`` of its jobs)."""

    def register(fn: TaskFn) -> TaskFn:
        TASKS[name] = fn
        return fn

    return register


def now() -> datetime:
    return datetime.now(UTC)


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _lease(archive: Archive) -> timedelta:
    return timedelta(seconds=float(archive.settings.jobs_lease_seconds))


@dataclass
class JobContext:
    """Handed to a task: report progress (renews the lease) and notice cancellation."""

    archive: Archive
    job_id: int
    worker: str

    def progress(self, fraction: float, message: str = "") -> None:
        """Record progress (0..1); raises :class:`Cancelled` if the job was cancelled."""
        t = now()
        with self.archive.write() as conn:
            conn.execute(
                update(Job)
                .where(Job.id == self.job_id, Job.worker == self.worker)
                .values(
                    progress=max(0.0, min(1.0, float(fraction))),
                    message=message[:256],
                    heartbeat_at=t,
                    lease_until=t + _lease(self.archive),
                )
            )
            cancel = conn.scalar(select(Job.cancel_requested).where(Job.id == self.job_id))
        if cancel:
            raise Cancelled("cancelled on request")


# ------------------------------------------------------------------ enqueue


def enqueue(
    archive: Archive,
    kind: str,
    args: dict[str, Any] | None = None,
    *,
    study_uid: str = "",
    series_uid: str = "",
    dedupe_key: str = "",
    requested_by: str = "",
    max_attempts: int = 3,
    dispatch: bool = True,
    once: bool = False,
) -> int:
    """Add a job; returns its id.  With ``dedupe_key``, a job of that key that is not
    final yet (with ``once``: any job of that key) is returned instead of a new one."""
    if kind not in TASKS:
        raise InvalidRequest(f"no task named {kind!r}")
    body = orjson.dumps(args or {}).decode()

    def add() -> tuple[int, bool]:
        with archive.write() as conn:
            if dedupe_key:
                same = select(Job.id).where(Job.dedupe_key == dedupe_key)
                if not once:
                    same = same.where(Job.state.not_in(FINAL))
                found = conn.scalar(same.order_by(Job.id.desc()).limit(1))
                if found is not None:
                    return int(found), False
            t = now()
            new_id: Any = conn.scalar(
                insert(Job)
                .values(
                    kind=kind, args_json=body, state=QUEUED, progress=0.0, message="",
                    attempts=0, max_attempts=max_attempts, error="", result_json="",
                    study_uid=study_uid, series_uid=series_uid, dedupe_key=dedupe_key,
                    requested_by=requested_by[:128], cancel_requested=False, worker="",
                    run_after=t, created_at=t,
                )
                .returning(Job.id)
            )  # fmt: skip
            return int(new_id), True

    job_id, added = archive.retrying(add)
    if added and dispatch:
        _dispatch(archive, job_id)
    return job_id


def _dispatch(archive: Archive, job_id: int) -> None:
    """Hand a new job to Celery in scale-out mode; wake the embedded worker otherwise."""
    if archive.settings.jobs_backend != "celery":
        worker = archive.caches.get("jobs.worker")
        if worker is not None:
            worker.wake()
        return
    from radcloud.jobs import celery_app

    celery_app.send(archive.settings, job_id)


# ------------------------------------------------------------------ claim and run


def _claimable(t: datetime) -> Any:
    return or_(
        and_(Job.state == QUEUED, Job.run_after <= t),
        and_(Job.state == RUNNING, Job.lease_until < t),
    )


def claim(archive: Archive, worker: str, job_id: int | None = None) -> Any | None:
    """Take the oldest runnable job (or ``job_id``) for ``worker``; None when there is none.

    A job found with its lease run out and no attempts left is failed here.
    """
    for _ in range(20):  # lost races: try the next candidate
        t = now()
        stmt = select(Job).where(_claimable(t)).order_by(Job.id).limit(1)
        if job_id is not None:
            stmt = select(Job).where(Job.id == job_id, _claimable(t))
        with archive.read() as conn:
            row = conn.execute(stmt).first()
        if row is None:
            return None
        job: Any = SimpleNamespace(**row._mapping)
        same = and_(Job.id == job.id, Job.state == job.state, Job.attempts == job.attempts)
        if job.state == RUNNING and job.attempts >= job.max_attempts:
            reason = (
                f"the worker running it ({job.worker}) stopped answering, "
                f"{job.attempts} attempts used"
            )
            with archive.write() as conn:
                conn.execute(
                    update(Job).where(same).values(state=FAILED, error=reason, finished_at=t)
                )
            continue
        values = dict(
            state=RUNNING, worker=worker, attempts=job.attempts + 1, heartbeat_at=t,
            lease_until=t + _lease(archive), started_at=t, progress=0.0, message="",
        )  # fmt: skip
        with archive.write() as conn:
            got = conn.execute(update(Job).where(same).values(**values)).rowcount
        if got == 1:
            for k, v in values.items():
                setattr(job, k, v)
            return job
    return None


def _finish(archive: Archive, job: Any, worker: str, **values: Any) -> None:
    with archive.write() as conn:
        conn.execute(
            update(Job)
            .where(Job.id == job.id, Job.worker == worker, Job.state == RUNNING)
            .values(finished_at=now(), lease_until=None, **values)
        )


def execute(archive: Archive, job: Any, worker: str) -> str:
    """Run a claimed job's task and record how it ended; returns the final state."""
    fn = TASKS.get(job.kind)
    ctx = JobContext(archive, job.id, worker)
    try:
        if fn is None:
            raise LookupError(f"no task named {job.kind!r} in this process")
        result = fn(archive, orjson.loads(job.args_json), ctx)
    except Cancelled as exc:
        _finish(archive, job, worker, state=CANCELLED, error=str(exc))
        return CANCELLED
    except RetryLater as exc:
        if job.attempts < job.max_attempts:
            delay = exc.delay * 2 ** max(0, job.attempts - 1)
            _requeue(archive, job, worker, str(exc), delay)
            return QUEUED
        log.warning("job %d (%s) failed after %d attempts: %s", job.id, job.kind,
                    job.attempts, exc)  # fmt: skip
        _finish(archive, job, worker, state=FAILED,
                error=f"{exc} ({job.attempts} attempts used)"[:8000])  # fmt: skip
        return FAILED
    except Exception as exc:
        log.warning("job %d (%s) failed: %s", job.id, job.kind, exc)
        reason = f"{type(exc).__name__}: {exc}"
        detail = "".join(traceback.format_exception(exc)[-3:])
        _finish(archive, job, worker, state=FAILED, error=f"{reason}\n{detail}"[:8000])
        return FAILED
    body = orjson.dumps(result, option=orjson.OPT_SERIALIZE_NUMPY).decode() if result else ""
    _finish(archive, job, worker, state=DONE, progress=1.0, result_json=body)
    return DONE


def _requeue(archive: Archive, job: Any, worker: str, reason: str, delay: float) -> None:
    """Back to the queue for another attempt ``delay`` seconds from now (reason kept)."""
    log.warning("job %d (%s): %s; attempt %d of %d again in %.0f s", job.id, job.kind, reason,
                job.attempts + 1, job.max_attempts, delay)  # fmt: skip
    with archive.write() as conn:
        conn.execute(
            update(Job)
            .where(Job.id == job.id, Job.worker == worker, Job.state == RUNNING)
            .values(state=QUEUED, worker="", lease_until=None, run_after=now() + timedelta(
                seconds=delay), error=reason[:8000], message=f"retrying: {reason}"[:500])
        )  # fmt: skip
    if archive.settings.jobs_backend == "celery":
        from radcloud.jobs import celery_app

        celery_app.send(archive.settings, job.id, countdown=delay)


def run_job(archive: Archive, job_id: int, worker: str | None = None) -> str:
    """Claim and run job ``job_id`` (what a Celery task does); returns its state afterwards."""
    worker = worker or worker_name()
    job = claim(archive, worker, job_id)
    if job is None:  # already run, running elsewhere, cancelled, or gone
        return state_of(archive, job_id)
    return execute(archive, job, worker)


def run_next(archive: Archive, worker: str | None = None) -> int | None:
    """Claim and run the oldest runnable job (the in-process worker's step)."""
    worker = worker or worker_name()
    job = claim(archive, worker)
    if job is None:
        return None
    execute(archive, job, worker)
    return job.id


# ------------------------------------------------------------------ manage


def state_of(archive: Archive, job_id: int) -> str:
    with archive.read() as conn:
        state = conn.scalar(select(Job.state).where(Job.id == job_id))
    if state is None:
        raise NotFound(f"no job {job_id}")
    return str(state)


def describe(job: Any) -> dict[str, Any]:
    """A job as JSON for the API."""

    def ts(v: datetime | None) -> str | None:
        v = as_utc(v)
        return v.isoformat() if v else None

    return {
        "id": job.id,
        "kind": job.kind,
        "args": orjson.loads(job.args_json or "{}"),
        "state": job.state,
        "progress": round(float(job.progress), 4),
        "message": job.message,
        "attempts": job.attempts,
        "max_attempts": job.max_attempts,
        "error": job.error,
        "result": orjson.loads(job.result_json) if job.result_json else None,
        "study_uid": job.study_uid,
        "series_uid": job.series_uid,
        "requested_by": job.requested_by,
        "cancel_requested": bool(job.cancel_requested),
        "created_at": ts(job.created_at),
        "started_at": ts(job.started_at),
        "finished_at": ts(job.finished_at),
    }


def get(archive: Archive, job_id: int) -> dict[str, Any]:
    with archive.read() as conn:
        row = conn.execute(select(Job).where(Job.id == job_id)).first()
    if row is None:
        raise NotFound(f"no job {job_id}")
    return describe(row)


def cancel(archive: Archive, job_id: int) -> dict[str, Any]:
    """Cancel a queued job now; ask a running one to stop at its next progress report."""
    with archive.write() as conn:
        conn.execute(
            update(Job)
            .where(Job.id == job_id, Job.state == QUEUED)
            .values(state=CANCELLED, error="cancelled on request", finished_at=now())
        )
        conn.execute(
            update(Job).where(Job.id == job_id, Job.state == RUNNING).values(cancel_requested=True)
        )
    return get(archive, job_id)


def retry(archive: Archive, job_id: int) -> dict[str, Any]:
    """Queue a failed or cancelled job again (attempts start over); others are refused."""
    with archive.write() as conn:
        got = conn.execute(
            update(Job)
            .where(Job.id == job_id, Job.state.in_((FAILED, CANCELLED)))
            .values(
                state=QUEUED, attempts=0, progress=0.0, message="", error="",
                cancel_requested=False, worker="", run_after=now(), finished_at=None,
                lease_until=None,
            )
        ).rowcount  # fmt: skip
    if got != 1:
        state = state_of(archive, job_id)
        raise InvalidRequest(f"job {job_id} is {state}; only failed or cancelled jobs are retried")
    _dispatch(archive, job_id)
    return get(archive, job_id)


def redispatch_stale(archive: Archive) -> list[int]:
    """Scale-out mode: send Celery the jobs whose runner died (lease run out) once more."""
    t = now()
    with archive.read() as conn:
        ids = list(
            conn.scalars(select(Job.id).where(Job.state == RUNNING, Job.lease_until < t).limit(100))
        )
    for job_id in ids:
        _dispatch(archive, int(job_id))
    return [int(i) for i in ids]


@task("jobs.ping")
def ping(archive: Archive, args: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    """Checks that a worker runs jobs (operators, tests): reports progress, echoes ``args``."""
    ctx.progress(0.5, "ping")
    return {"pong": args, "worker": ctx.worker}
