"""Index tables of share links and patient access (migrations 0008, 0010).

A :class:`Share` is one link: the patient's own link (``kind`` ``patient``,
published when the report is signed) or a share made by a doctor or the
patient (``share``, de-identified by default).  Its ``scope`` says what it
opens: ``study``, the one study ``study_fk``; or ``patient``, the exam history
of patient ``patient_fk`` at the institution: every study published to that
patient there, and ``study_fk`` (the study it was made for) always.  Only the SHA-256 of the
link's token is kept, so a copy of the database opens no link; the answer to
the identity check is kept as an HMAC under the share's own secret, which also
keys the de-identification (UIDs consistent within a share, unlinkable across
shares).  :class:`ShareSession` is what a browser holds after the check: a
short-lived cookie whose SHA-256 is stored with the share it opens.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, DateTime, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from radcloud.store.models import Base, utcnow


class Share(Base):
    """One share link: what it opens, until when, how often, behind which check."""

    __tablename__ = "shares"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)  # SHA-256 hex of the token
    study_fk: Mapped[int] = mapped_column(ForeignKey("studies.id", ondelete="CASCADE"), index=True)
    institution_fk: Mapped[int] = mapped_column(Integer, index=True)
    kind: Mapped[str] = mapped_column(String(16))  # patient | share
    scope: Mapped[str] = mapped_column(String(16), default="study", server_default="study")
    patient_fk: Mapped[int | None] = mapped_column(Integer, nullable=True, index=True)
    deidentify: Mapped[bool] = mapped_column(Boolean, default=True)
    secret: Mapped[str] = mapped_column(String(64))  # hex; keys de-identification and answers
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    max_views: Mapped[int | None] = mapped_column(Integer, nullable=True)  # None: unlimited
    views: Mapped[int] = mapped_column(Integer, default=0)
    verify_method: Mapped[str] = mapped_column(String(16), default="none")  # none|phone4|id4|code
    verify_hash: Mapped[str] = mapped_column(String(64), default="")  # HMAC(secret, answer) hex
    attempts: Mapped[int] = mapped_column(Integer, default=0)  # wrong answers in a row
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    revoked_by: Mapped[str] = mapped_column(String(128), default="")
    parent_fk: Mapped[int | None] = mapped_column(
        ForeignKey("shares.id", ondelete="CASCADE"), nullable=True, index=True
    )
    created_by: Mapped[str] = mapped_column(String(128), default="")
    created_by_fk: Mapped[int | None] = mapped_column(Integer, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    last_opened_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class ShareSession(Base):
    """A browser that passed a share's identity check (cookie SHA-256, short-lived)."""

    __tablename__ = "share_sessions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    share_fk: Mapped[int] = mapped_column(ForeignKey("shares.id", ondelete="CASCADE"), index=True)
    session_hash: Mapped[str] = mapped_column(String(64), unique=True)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    source: Mapped[str] = mapped_column(String(64), default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
