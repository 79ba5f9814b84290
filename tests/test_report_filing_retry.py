"""A signed report whose SR/PDF filing fails is filed later by a retrying job.

The signature stands; the filing becomes a ``report.publish`` job that is
queued again with growing pauses while storage keeps failing, files the SR and
the PDF once it works (same UIDs as a first-time filing), and fails with the
reason when its attempts are used up.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from _report_world import FINDINGS, IMPRESSION, World, make_world
from sqlalchemy import select, update

from radcloud.archive import ingest, retrieve
from radcloud.archive.service import Archive
from radcloud.auth.access import SYSTEM
from radcloud.errors import StorageFailure
from radcloud.jobs import queue
from radcloud.jobs.models import DONE, FAILED, QUEUED, Job
from radcloud.report import dicom_out, service


@pytest.fixture
def world(archive: Archive) -> World:
    return make_world(archive, slices=3, size=96)


def _fail_filing(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Make every store of a report object fail as a full disk would; returns the calls."""
    calls: list[str] = []
    real = ingest.store_dataset

    def broken(archive: Archive, ds: Any, **kw: Any) -> Any:
        if kw.get("source") == "report":
            calls.append(str(ds.SOPInstanceUID))
            raise StorageFailure("cannot write blob: No space left on device")
        return real(archive, ds, **kw)

    monkeypatch.setattr(ingest, "store_dataset", broken)
    return calls


def _sign(w: World) -> dict[str, Any]:
    service.create(w.archive, w.attending, w.study)
    service.save(w.archive, w.attending, w.study, {
        "fields": {"findings": FINDINGS, "impression": IMPRESSION, "lung_rads": "4A"},
    })  # fmt: skip
    return service.sign(w.archive, w.attending, w.study)


def _job(a: Archive) -> Any:
    with a.read() as conn:
        rows = conn.execute(select(Job).where(Job.kind == dicom_out.PUBLISH_TASK)).all()
    assert len(rows) == 1, rows
    return rows[0]


def _due_now(a: Archive) -> None:
    """Skip the pause before the next attempt."""
    with a.write() as conn:
        conn.execute(update(Job).values(run_after=queue.now() - timedelta(seconds=1)))


def test_failed_filing_is_retried_until_it_works(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    a = world.archive
    calls = _fail_filing(monkeypatch)
    report = _sign(world)
    assert report["status"] == "final"  # the signature stands
    assert not report.get("sr_sop_uid") and calls
    job = _job(a)
    assert job.state == QUEUED and job.max_attempts == dicom_out.PUBLISH_ATTEMPTS

    # still failing: queued again, later, with the reason; the pause doubles
    assert queue.run_next(a) == job.id
    first = _job(a)
    assert first.state == QUEUED and first.attempts == 1
    assert "No space left on device" in first.error
    assert queue.run_next(a) is None  # not due yet
    _due_now(a)
    before = queue.now()
    assert queue.run_next(a) == job.id
    second = _job(a)
    wait = (second.run_after.replace(tzinfo=None) - before.replace(tzinfo=None)).total_seconds()
    assert second.attempts == 2 and 55 <= wait <= 65  # 30 s doubled

    # storage is back: the next attempt files the SR and the PDF
    monkeypatch.undo()
    _due_now(a)
    assert queue.run_next(a) == job.id
    done = _job(a)
    assert done.state == DONE
    filed = service.get(a, world.attending, world.study)
    assert filed is not None and filed["sr_sop_uid"] and filed["pdf_sop_uid"]
    uids = {r.sop_uid for r in retrieve.find_instances(a, world.study, principal=SYSTEM)}
    assert {filed["sr_sop_uid"], filed["pdf_sop_uid"]} <= uids
    assert filed["sr_sop_uid"] == calls[0]  # the same SR a first-time filing would have made


def test_filing_fails_for_good_after_its_attempts(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    a = world.archive
    _fail_filing(monkeypatch)
    _sign(world)
    job = _job(a)
    for _ in range(dicom_out.PUBLISH_ATTEMPTS):
        _due_now(a)
        assert queue.run_next(a) == job.id
    failed = _job(a)
    assert failed.state == FAILED
    assert "No space left on device" in failed.error
    assert f"{dicom_out.PUBLISH_ATTEMPTS} attempts used" in failed.error
    assert queue.run_next(a) is None
    # an operator retries it by hand once the disk is fixed
    monkeypatch.undo()
    queue.retry(a, job.id)
    assert queue.run_next(a) == job.id and _job(a).state == DONE


def test_a_second_failure_does_not_queue_a_second_job(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    a = world.archive
    _fail_filing(monkeypatch)
    _sign(world)
    service.amend(
        a, world.attending, world.study, {"fields": {"lung_rads": "4B"}}, "size rechecked"
    )
    _job(a)  # exactly one pending filing job for the study
