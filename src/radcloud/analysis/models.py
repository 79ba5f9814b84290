"""Analysis results and their versions (AI output and every human correction kept apart)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import DateTime, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from radcloud.store.models import Base, utcnow


class AnalysisResult(Base):
    """The current result of one module on one series (one row per series and module).

    ``ai_version`` points at the version the module produced; ``version`` at
    the newest, which is the AI's or a person's correction of it.
    """

    __tablename__ = "analysis_results"
    __table_args__ = (UniqueConstraint("series_fk", "module", name="uq_analysis_series_module"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    series_fk: Mapped[int] = mapped_column(ForeignKey("series.id", ondelete="CASCADE"), index=True)
    study_fk: Mapped[int] = mapped_column(ForeignKey("studies.id", ondelete="CASCADE"), index=True)
    module: Mapped[str] = mapped_column(String(64))
    module_version: Mapped[str] = mapped_column(String(32))
    version: Mapped[int] = mapped_column(Integer, default=1)
    ai_version: Mapped[int] = mapped_column(Integer, default=1)
    job_fk: Mapped[int | None] = mapped_column(Integer, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class AnalysisVersion(Base):
    """One immutable version of a result: by the module (``origin='ai'``) or a person."""

    __tablename__ = "analysis_versions"
    __table_args__ = (UniqueConstraint("result_fk", "version", name="uq_analysis_version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    result_fk: Mapped[int] = mapped_column(
        ForeignKey("analysis_results.id", ondelete="CASCADE"), index=True
    )
    version: Mapped[int] = mapped_column(Integer)
    origin: Mapped[str] = mapped_column(String(16))  # ai | human
    author: Mapped[str] = mapped_column(String(128), default="")
    comment: Mapped[str] = mapped_column(Text, default="")
    findings_json: Mapped[str] = mapped_column(Text, default="{}")
    summary: Mapped[str] = mapped_column(Text, default="")
    report_json: Mapped[str] = mapped_column(Text, default="{}")  # prefill values + template
    seg_sop_uid: Mapped[str] = mapped_column(String(64), default="")
    sr_sop_uid: Mapped[str] = mapped_column(String(64), default="")
    outputs_json: Mapped[str] = mapped_column(Text, default="{}")  # label maps, meshes: where
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
