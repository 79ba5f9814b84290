"""Index tables of structured reporting (migration 0007).

A study has at most one :class:`Report`; what it says lives in immutable
:class:`ReportVersion` rows (every save, submission, signature and amendment
appends one), so the history is complete and a signed text never changes.
:class:`ReportEvent` is the outbox other parts consume (critical-finding
notifications now, HL7 ORU later): written in the same transaction as the
change it announces.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from radcloud.store.models import Base, utcnow


class Report(Base):
    """The report of one study: its workflow state, lock and latest version number."""

    __tablename__ = "reports"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_fk: Mapped[int] = mapped_column(ForeignKey("studies.id", ondelete="CASCADE"), unique=True)
    institution_fk: Mapped[int] = mapped_column(Integer, index=True)
    accession_number: Mapped[str] = mapped_column(String(64), default="", index=True)
    template: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), index=True)  # draft|preliminary|final|amended
    version: Mapped[int] = mapped_column(Integer, default=0)  # the latest ReportVersion.version
    author_fk: Mapped[int | None] = mapped_column(Integer, nullable=True)
    author: Mapped[str] = mapped_column(String(128), default="")
    signer_fk: Mapped[int | None] = mapped_column(Integer, nullable=True)
    signer: Mapped[str] = mapped_column(String(128), default="")
    signed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    critical: Mapped[bool] = mapped_column(Boolean, default=False)
    # one editor at a time: who holds the lock and until when (expires by itself)
    lock_user_fk: Mapped[int | None] = mapped_column(Integer, nullable=True)
    lock_holder: Mapped[str] = mapped_column(String(128), default="")
    lock_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    # the DICOM copies of the signed text filed in the study (latest signature)
    sr_sop_uid: Mapped[str] = mapped_column(String(64), default="")
    pdf_sop_uid: Mapped[str] = mapped_column(String(64), default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ReportVersion(Base):
    """One immutable state of a report's content, with who made it and why."""

    __tablename__ = "report_versions"
    __table_args__ = (UniqueConstraint("report_fk", "version", name="uq_report_version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    report_fk: Mapped[int] = mapped_column(ForeignKey("reports.id", ondelete="CASCADE"))
    version: Mapped[int] = mapped_column(Integer)
    action: Mapped[str] = mapped_column(String(16))  # create|save|submit|return|sign|amend
    status: Mapped[str] = mapped_column(String(16))  # the report's status after the action
    content: Mapped[str] = mapped_column(Text)  # JSON: template, fields, marks, key images
    content_sha256: Mapped[str] = mapped_column(String(64))
    user_fk: Mapped[int | None] = mapped_column(Integer, nullable=True)
    user_name: Mapped[str] = mapped_column(String(128), default="")
    reason: Mapped[str] = mapped_column(Text, default="")  # amendment reason, return comment
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ReportTemplate(Base):
    """A template an institution added or overrode (built-in ones live in code)."""

    __tablename__ = "report_templates"
    __table_args__ = (UniqueConstraint("institution_fk", "name", name="uq_report_template_name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    institution_fk: Mapped[int] = mapped_column(Integer, index=True)
    name: Mapped[str] = mapped_column(String(64))
    definition: Mapped[str] = mapped_column(Text)  # JSON, see radcloud.report.templates
    updated_by: Mapped[str] = mapped_column(String(128), default="")
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ReportPhrase(Base):
    """A reusable phrase: a user's own (``user_fk`` set) or the department's (``user_fk`` null)."""

    __tablename__ = "report_phrases"
    __table_args__ = (Index("ix_report_phrases_owner", "institution_fk", "user_fk"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    institution_fk: Mapped[int] = mapped_column(Integer)
    user_fk: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), nullable=True
    )
    title: Mapped[str] = mapped_column(String(128))
    text: Mapped[str] = mapped_column(Text)
    field: Mapped[str] = mapped_column(String(64), default="")  # a field it suits ('' = any)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ReportEvent(Base):
    """Outbox: something happened to a report (signed, amended, critical finding...)."""

    __tablename__ = "report_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(32), index=True)
    report_fk: Mapped[int] = mapped_column(ForeignKey("reports.id", ondelete="CASCADE"))
    version: Mapped[int] = mapped_column(Integer)
    institution_fk: Mapped[int] = mapped_column(Integer, index=True)
    study_uid: Mapped[str] = mapped_column(String(64))
    accession_number: Mapped[str] = mapped_column(String(64), default="")
    payload: Mapped[str] = mapped_column(Text, default="{}")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    # for notifications a person must see (critical findings): who acknowledged, when
    acknowledged_by: Mapped[str] = mapped_column(String(128), default="")
    acknowledged_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class ReportEventCursor(Base):
    """How far a named consumer (e.g. the HL7 ORU sender) has read the outbox."""

    __tablename__ = "report_event_cursors"

    consumer: Mapped[str] = mapped_column(String(64), primary_key=True)
    last_id: Mapped[int] = mapped_column(Integer, default=0)
