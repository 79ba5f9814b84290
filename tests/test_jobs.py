"""Jobs persisted in the index: run, fail with a reason, retry, cancel, survive a restart.

Every test runs on SQLite and PostgreSQL (the ``archive`` fixture).
"""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import update

from radcloud.archive.service import Archive
from radcloud.errors import InvalidRequest
from radcloud.jobs import queue
from radcloud.jobs.models import CANCELLED, DONE, FAILED, QUEUED, RUNNING, Job
from radcloud.jobs.worker import Worker

calls: dict[str, int] = {}


@queue.task("test.flaky")
def _flaky(archive: Archive, args: dict[str, Any], ctx: queue.JobContext) -> dict[str, Any]:
    """Fails the first ``fail`` times it runs for a given key, then succeeds."""
    key = args["key"]
    calls[key] = calls.get(key, 0) + 1
    if calls[key] <= args.get("fail", 0):
        raise ValueError(f"scanner table not found (run {calls[key]})")
    ctx.progress(0.5, "half way")
    return {"runs": calls[key]}


@queue.task("test.loop")
def _loop(archive: Archive, args: dict[str, Any], ctx: queue.JobContext) -> None:
    """Reports progress until cancelled (at most ``n`` steps)."""
    started = args["started"]
    for i in range(args.get("n", 10_000)):
        ctx.progress(i / 10_000, f"step {i}")
        if i == 1:
            _events[started].set()
        time.sleep(0.005)


_events: dict[str, threading.Event] = {}


def _key() -> str:
    return f"k{time.monotonic_ns()}"


def test_a_job_runs_and_records_its_result_and_progress(archive: Archive) -> None:
    job_id = queue.enqueue(archive, "test.flaky", {"key": _key()}, study_uid="1.2.3")
    assert queue.get(archive, job_id)["state"] == QUEUED
    assert queue.run_next(archive, "w1") == job_id
    job = queue.get(archive, job_id)
    assert job["state"] == DONE
    assert job["result"] == {"runs": 1}
    assert job["progress"] == 1.0
    assert job["attempts"] == 1
    assert job["study_uid"] == "1.2.3"
    assert queue.run_next(archive, "w1") is None  # nothing left


def test_a_failure_is_recorded_with_its_reason_and_can_be_retried(archive: Archive) -> None:
    job_id = queue.enqueue(archive, "test.flaky", {"key": _key(), "fail": 1})
    queue.run_next(archive, "w1")
    job = queue.get(archive, job_id)
    assert job["state"] == FAILED
    assert "ValueError: scanner table not found (run 1)" in job["error"]
    assert queue.run_next(archive, "w1") is None  # a failure is not re-run by itself
    again = queue.retry(archive, job_id)
    assert again["state"] == QUEUED and again["error"] == ""
    queue.run_next(archive, "w1")
    job = queue.get(archive, job_id)
    assert job["state"] == DONE and job["result"] == {"runs": 2}


def test_only_failed_or_cancelled_jobs_are_retried(archive: Archive) -> None:
    job_id = queue.enqueue(archive, "test.flaky", {"key": _key()})
    with pytest.raises(InvalidRequest, match="is queued"):
        queue.retry(archive, job_id)


def test_an_unknown_task_is_refused_and_a_lost_one_fails_clearly(archive: Archive) -> None:
    with pytest.raises(InvalidRequest, match="no task named"):
        queue.enqueue(archive, "test.nothing")
    job_id = queue.enqueue(archive, "test.flaky", {"key": _key()})
    with archive.write() as conn:  # e.g. written by a newer version of the code
        conn.execute(update(Job).where(Job.id == job_id).values(kind="test.gone"))
    queue.run_next(archive, "w1")
    job = queue.get(archive, job_id)
    assert job["state"] == FAILED and "no task named 'test.gone'" in job["error"]


def test_cancelling_a_queued_job_means_it_never_runs(archive: Archive) -> None:
    key = _key()
    job_id = queue.enqueue(archive, "test.flaky", {"key": key})
    assert queue.cancel(archive, job_id)["state"] == CANCELLED
    assert queue.run_next(archive, "w1") is None
    assert key not in calls


def test_cancelling_a_running_job_stops_it_at_its_next_progress_report(archive: Archive) -> None:
    started = _key()
    _events[started] = threading.Event()
    job_id = queue.enqueue(archive, "test.loop", {"started": started})
    runner = threading.Thread(target=queue.run_next, args=(archive, "w1"))
    runner.start()
    assert _events[started].wait(60), "the job did not start"
    assert queue.cancel(archive, job_id)["cancel_requested"] is True
    runner.join(60)
    job = queue.get(archive, job_id)
    assert job["state"] == CANCELLED
    assert 0 < job["progress"] < 1


def _expire(archive: Archive, job_id: int) -> None:
    with archive.write() as conn:
        conn.execute(
            update(Job)
            .where(Job.id == job_id)
            .values(lease_until=queue.now() - timedelta(seconds=1))
        )


def test_a_job_whose_worker_died_runs_again_after_its_lease(archive: Archive) -> None:
    job_id = queue.enqueue(archive, "test.flaky", {"key": _key()})
    claimed = queue.claim(archive, "dead-worker")  # claims, then the process "dies"
    assert claimed is not None and claimed.id == job_id
    assert queue.get(archive, job_id)["state"] == RUNNING
    assert queue.run_next(archive, "w2") is None  # the lease still holds
    _expire(archive, job_id)
    assert queue.run_next(archive, "w2") == job_id
    job = queue.get(archive, job_id)
    assert job["state"] == DONE and job["attempts"] == 2


def test_a_job_that_keeps_killing_its_worker_fails_after_its_attempts(archive: Archive) -> None:
    job_id = queue.enqueue(archive, "test.flaky", {"key": _key()}, max_attempts=2)
    for n in range(2):
        assert queue.claim(archive, f"dead-{n}") is not None
        _expire(archive, job_id)
    assert queue.run_next(archive, "w3") is None
    job = queue.get(archive, job_id)
    assert job["state"] == FAILED
    assert "dead-1" in job["error"] and "2 attempts" in job["error"]


def test_a_job_survives_closing_and_reopening_the_archive(
    archive: Archive, make_archive: Any
) -> None:
    job_id = queue.enqueue(archive, "test.flaky", {"key": _key()})
    reopened = make_archive()  # a new process on the same index
    assert queue.run_next(reopened, "after-restart") == job_id
    assert queue.get(archive, job_id)["state"] == DONE


def test_a_dedupe_key_adds_no_second_unfinished_job(archive: Archive) -> None:
    a = queue.enqueue(archive, "test.flaky", {"key": _key()}, dedupe_key="same")
    b = queue.enqueue(archive, "test.flaky", {"key": _key()}, dedupe_key="same")
    assert a == b
    queue.run_next(archive, "w1")
    c = queue.enqueue(archive, "test.flaky", {"key": _key()}, dedupe_key="same")
    assert c != a  # the first one is done: a new request is a new job
    d = queue.enqueue(archive, "test.flaky", {"key": _key()}, dedupe_key="same", once=True)
    assert d == c  # ... unless the caller wants it once ever


def test_two_workers_never_run_the_same_job(archive: Archive) -> None:
    ids = [queue.enqueue(archive, "test.flaky", {"key": _key()}) for _ in range(6)]
    ran: list[int | None] = []

    def drain(name: str) -> None:
        while (got := queue.run_next(archive, name)) is not None:
            ran.append(got)

    threads = [threading.Thread(target=drain, args=(f"w{n}",)) for n in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert sorted(i for i in ran if i is not None) == ids
    assert all(queue.get(archive, i)["attempts"] == 1 for i in ids)


def test_the_in_process_worker_runs_queued_jobs(archive: Archive) -> None:
    worker = Worker(archive, threads=1, poll_seconds=0.05).start()
    archive.caches["jobs.worker"] = worker
    try:
        job_id = queue.enqueue(archive, "jobs.ping", {"hello": "world"})
        deadline = time.monotonic() + 60
        while queue.get(archive, job_id)["state"] != DONE:
            assert time.monotonic() < deadline, queue.get(archive, job_id)
            time.sleep(0.05)
    finally:
        worker.stop()
        archive.caches.pop("jobs.worker", None)
    result = queue.get(archive, job_id)["result"]
    assert result["pong"] == {"hello": "world"}
    assert result["worker"].endswith("/0")
