"""The jobs table: what to run, its state, progress, attempts, lease and failure reason."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, DateTime, Float, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from radcloud.store.models import Base, utcnow

QUEUED, RUNNING, DONE, FAILED, CANCELLED = "queued", "running", "done", "failed", "cancelled"
STATES = (QUEUED, RUNNING, DONE, FAILED, CANCELLED)
FINAL = (DONE, FAILED, CANCELLED)


class Job(Base):
    """One unit of background work.

    A running job holds a lease (``lease_until``) that its runner renews with
    every progress report; a job whose lease ran out (the process died) is
    picked up again by any worker, up to ``max_attempts``.
    """

    __tablename__ = "jobs"
    __table_args__ = (Index("ix_jobs_state_run_after", "state", "run_after"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(64))  # the task's registered name
    args_json: Mapped[str] = mapped_column(Text, default="{}")
    state: Mapped[str] = mapped_column(String(16), default=QUEUED)
    progress: Mapped[float] = mapped_column(Float, default=0.0)  # 0..1
    message: Mapped[str] = mapped_column(String(256), default="")  # what it is doing now
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer, default=3)
    error: Mapped[str] = mapped_column(Text, default="")  # why it failed (last attempt)
    result_json: Mapped[str] = mapped_column(Text, default="")
    # what the job is about (for listing and access checks); empty when about nothing
    study_uid: Mapped[str] = mapped_column(String(64), default="", index=True)
    series_uid: Mapped[str] = mapped_column(String(64), default="", index=True)
    dedupe_key: Mapped[str] = mapped_column(String(200), default="", index=True)
    requested_by: Mapped[str] = mapped_column(String(128), default="")
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    worker: Mapped[str] = mapped_column(String(128), default="")  # who holds the lease
    run_after: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    lease_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
