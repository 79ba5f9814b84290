"""The index: patient / study / series / instance rows plus full metadata.

Matching attributes that queries need are columns; everything else of an
instance lives in ``Instance.metadata_json`` (DICOM JSON without bulk data)
and the study/series level attributes in ``attrs_json`` on those rows, so
query and retrieve never re-parse files.  JSON is kept as text so a series'
metadata is served by joining stored strings.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    BigInteger,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    pass


class Patient(Base):
    __tablename__ = "patients"
    __table_args__ = (UniqueConstraint("patient_id", "issuer", name="uq_patient_id_issuer"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    patient_id: Mapped[str] = mapped_column(String(64), default="", index=True)
    issuer: Mapped[str] = mapped_column(String(64), default="")
    patient_name: Mapped[str] = mapped_column(String(324), default="", index=True)
    name_key: Mapped[str] = mapped_column(Text, default="")
    birth_date: Mapped[str] = mapped_column(String(8), default="")
    sex: Mapped[str] = mapped_column(String(16), default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    studies: Mapped[list[Study]] = relationship(back_populates="patient")


class Study(Base):
    __tablename__ = "studies"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_uid: Mapped[str] = mapped_column(String(64), unique=True)
    patient_fk: Mapped[int] = mapped_column(ForeignKey("patients.id"), index=True)
    study_date: Mapped[str] = mapped_column(String(8), default="", index=True)
    study_time: Mapped[str] = mapped_column(String(16), default="")
    accession_number: Mapped[str] = mapped_column(String(64), default="", index=True)
    study_id: Mapped[str] = mapped_column(String(16), default="")
    study_description: Mapped[str] = mapped_column(String(64), default="")
    referring_physician: Mapped[str] = mapped_column(String(324), default="")
    institution_name: Mapped[str] = mapped_column(String(64), default="")
    attrs_json: Mapped[str] = mapped_column(Text, default="{}")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    patient: Mapped[Patient] = relationship(back_populates="studies")
    series: Mapped[list[Series]] = relationship(back_populates="study")


class Series(Base):
    __tablename__ = "series"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    series_uid: Mapped[str] = mapped_column(String(64), unique=True)
    study_fk: Mapped[int] = mapped_column(ForeignKey("studies.id"), index=True)
    modality: Mapped[str] = mapped_column(String(16), default="", index=True)
    series_number: Mapped[int | None] = mapped_column(Integer, nullable=True)
    series_description: Mapped[str] = mapped_column(String(64), default="")
    body_part: Mapped[str] = mapped_column(String(64), default="")
    pps_start_date: Mapped[str] = mapped_column(String(8), default="")
    pps_start_time: Mapped[str] = mapped_column(String(16), default="")
    attrs_json: Mapped[str] = mapped_column(Text, default="{}")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    study: Mapped[Study] = relationship(back_populates="series")
    instances: Mapped[list[Instance]] = relationship(back_populates="series")


class Instance(Base):
    __tablename__ = "instances"
    __table_args__ = (Index("ix_instances_series_number", "series_fk", "instance_number"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    sop_uid: Mapped[str] = mapped_column(String(64), unique=True)
    series_fk: Mapped[int] = mapped_column(ForeignKey("series.id"))
    sop_class_uid: Mapped[str] = mapped_column(String(64), index=True)
    instance_number: Mapped[int | None] = mapped_column(Integer, nullable=True)
    transfer_syntax_uid: Mapped[str] = mapped_column(String(64))
    rows: Mapped[int | None] = mapped_column(Integer, nullable=True)
    columns: Mapped[int | None] = mapped_column(Integer, nullable=True)
    bits_allocated: Mapped[int | None] = mapped_column(Integer, nullable=True)
    number_of_frames: Mapped[int | None] = mapped_column(Integer, nullable=True)
    blob_key: Mapped[str] = mapped_column(String(32), unique=True)
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    # Where each frame's bytes sit in the blob: JSON [[[offset, length], ...], ...]
    # (one list of fragments per frame), so a frame is one ranged read.
    frames_json: Mapped[str | None] = mapped_column(Text, nullable=True)
    # BLAKE2b-128 of each frame's bytes, so a frame served by a ranged read is
    # checked too (the file SHA-256 covers whole-file reads).
    frame_digests: Mapped[str | None] = mapped_column(Text, nullable=True)
    metadata_json: Mapped[str] = mapped_column(Text)
    # Set when the blob was compressed at rest: the file as received can be rebuilt
    # bit for bit from the blob + the envelope blob (bytes around the pixel data).
    original_ts: Mapped[str | None] = mapped_column(String(64), nullable=True)
    original_size: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    original_sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)
    envelope_key: Mapped[str | None] = mapped_column(String(32), nullable=True)
    source: Mapped[str] = mapped_column(String(80), default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    series: Mapped[Series] = relationship(back_populates="instances")


class Thumbnail(Base):
    """Cached rendered thumbnails (blob keys), per instance and size."""

    __tablename__ = "thumbnails"
    __table_args__ = (UniqueConstraint("instance_fk", "variant", name="uq_thumb_variant"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    instance_fk: Mapped[int] = mapped_column(ForeignKey("instances.id", ondelete="CASCADE"))
    variant: Mapped[str] = mapped_column(String(64))
    blob_key: Mapped[str] = mapped_column(String(32))


class RemoteAE(Base):
    """DICOM peers we may send to (C-MOVE destinations)."""

    __tablename__ = "remote_aes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ae_title: Mapped[str] = mapped_column(String(16), unique=True)
    host: Mapped[str] = mapped_column(String(255))
    port: Mapped[int] = mapped_column(Integer)
    description: Mapped[str] = mapped_column(String(255), default="")
