"""Scale-out: a real Celery worker process on a real Redis runs the same task function.

Redis must be reachable on loopback (RADCLOUD_TEST_REDIS_URL, default
redis://127.0.0.1:6379/0): if it is not, these tests fail, they never skip.
Each test uses its own queue name, so test runs sharing a Redis do not mix.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from radcloud.archive.service import Archive
from radcloud.config import Settings
from radcloud.jobs import queue
from radcloud.jobs.models import DONE

REDIS_URL = os.environ.get("RADCLOUD_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


@pytest.fixture
def celery_archive(tmp_path: Path, db_url: str | None) -> Iterator[Archive]:
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=5)
    try:
        assert client.ping()
    except redis.ConnectionError as exc:
        pytest.fail(
            f"Redis at {REDIS_URL} is not reachable ({exc}); start it (see docs/analysis.md)"
        )
    settings = Settings(
        data_dir=tmp_path / "data", database_url=db_url, dicom_port=0, jobs_backend="celery",
        celery_broker_url=REDIS_URL, celery_queue=f"radcloud-test-{uuid.uuid4().hex[:12]}",
    )  # fmt: skip
    archive = Archive.open(settings)
    yield archive
    archive.close()
    client.delete(settings.celery_queue)


@pytest.fixture
def celery_worker(celery_archive: Archive, tmp_path: Path) -> Iterator[subprocess.Popen[Any]]:
    s = celery_archive.settings
    env = {**os.environ, "RADCLOUD_DATA_DIR": str(s.data_dir),
           "RADCLOUD_CELERY_BROKER_URL": s.celery_broker_url,
           "RADCLOUD_CELERY_QUEUE": s.celery_queue, "RADCLOUD_JOBS_BACKEND": "celery"}  # fmt: skip
    env.pop("RADCLOUD_DATABASE_URL", None)
    if s.database_url:
        env["RADCLOUD_DATABASE_URL"] = s.database_url
    log = open(tmp_path / "celery.log", "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "radcloud.jobs.celery_app", "worker",
         "-Q", s.celery_queue, "--pool", "solo", "--concurrency", "1", "-l", "info",
         "--without-heartbeat", "--without-gossip", "--without-mingle"],
        env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    yield proc
    proc.terminate()
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(30)
    log.close()


def _wait_done(archive: Archive, job_id: int, proc: subprocess.Popen[Any], log: Path) -> Any:
    deadline = time.monotonic() + 120
    while (job := queue.get(archive, job_id))["state"] != DONE:
        assert proc.poll() is None, f"the Celery worker exited:\n{log.read_text()[-3000:]}"
        assert time.monotonic() < deadline, f"{job}\n{log.read_text()[-3000:]}"
        time.sleep(0.1)
    return job


def test_a_celery_worker_runs_the_job_from_the_index(
    celery_archive: Archive, celery_worker: subprocess.Popen[Any], tmp_path: Path
) -> None:
    job_id = queue.enqueue(celery_archive, "jobs.ping", {"via": "celery"})
    job = _wait_done(celery_archive, job_id, celery_worker, tmp_path / "celery.log")
    assert job["result"]["pong"] == {"via": "celery"}
    assert job["result"]["worker"].startswith("celery:")  # not this process
    assert str(celery_worker.pid) in job["result"]["worker"]
    assert job["attempts"] == 1 and job["progress"] == 1.0


def test_a_job_whose_celery_runner_died_is_sent_again(
    celery_archive: Archive, celery_worker: subprocess.Popen[Any], tmp_path: Path
) -> None:
    job_id = queue.enqueue(celery_archive, "jobs.ping", {"n": 1}, dispatch=False)
    assert queue.claim(celery_archive, "a-node-that-died") is not None
    from sqlalchemy import update

    from radcloud.jobs.models import Job

    with celery_archive.write() as conn:
        conn.execute(update(Job).where(Job.id == job_id).values(lease_until=queue.now()))
    assert queue.redispatch_stale(celery_archive) == [job_id]
    job = _wait_done(celery_archive, job_id, celery_worker, tmp_path / "celery.log")
    assert job["attempts"] == 2
    assert job["result"]["worker"].startswith("celery:")
