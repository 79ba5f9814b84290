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
    Boolean,
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
    # A patient ID is an institution's: the same ID at two hospitals is two patients.
    __table_args__ = (
        UniqueConstraint(
            "patient_id", "issuer", "institution_fk", name="uq_patient_per_institution"
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    patient_id: Mapped[str] = mapped_column(String(64), default="", index=True)
    issuer: Mapped[str] = mapped_column(String(64), default="")
    patient_name: Mapped[str] = mapped_column(String(324), default="", index=True)
    name_key: Mapped[str] = mapped_column(Text, default="")
    birth_date: Mapped[str] = mapped_column(String(8), default="")
    sex: Mapped[str] = mapped_column(String(16), default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    institution_fk: Mapped[int] = mapped_column(Integer, default=1)

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
    # The institution that owns the study (whose users see it) ...
    institution_fk: Mapped[int] = mapped_column(Integer, default=1, index=True)
    # ... and, when set, the care team it is restricted to (nobody else, admins included).
    restricted_team_fk: Mapped[int | None] = mapped_column(Integer, nullable=True)

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
    """Known DICOM peers: who may call us (and for which institution), where we may send."""

    __tablename__ = "remote_aes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ae_title: Mapped[str] = mapped_column(String(16), unique=True)
    # Without an address the AE may call us but is no C-MOVE destination.
    host: Mapped[str | None] = mapped_column(String(255), nullable=True)
    port: Mapped[int | None] = mapped_column(Integer, nullable=True)
    description: Mapped[str] = mapped_column(String(255), default="")
    institution_fk: Mapped[int] = mapped_column(Integer, default=1)
    allow_store: Mapped[bool] = mapped_column(Boolean, default=True)
    allow_query: Mapped[bool] = mapped_column(Boolean, default=True)


# ------------------------------------------------------------------ accounts and access


class Institution(Base):
    """A tenant: a hospital, a department or a partner clinic (``parent_fk`` nests them)."""

    __tablename__ = "institutions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = mapped_column(String(32), unique=True)
    name: Mapped[str] = mapped_column(String(128))
    kind: Mapped[str] = mapped_column(String(16), default="hospital")
    parent_fk: Mapped[int | None] = mapped_column(ForeignKey("institutions.id"), nullable=True)
    status: Mapped[str] = mapped_column(String(16), default="active")  # pending|active|suspended
    accept_unknown_aes: Mapped[bool] = mapped_column(Boolean, default=False)
    contact: Mapped[str] = mapped_column(String(255), default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class User(Base):
    __tablename__ = "users"
    __table_args__ = (UniqueConstraint("oidc_issuer", "oidc_subject", name="uq_user_oidc"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    display_name: Mapped[str] = mapped_column(String(128), default="")
    email: Mapped[str] = mapped_column(String(254), default="")
    institution_fk: Mapped[int] = mapped_column(ForeignKey("institutions.id"), index=True)
    roles: Mapped[str] = mapped_column(String(255), default="")  # comma-separated role names
    password_hash: Mapped[str | None] = mapped_column(Text, nullable=True)
    totp_secret: Mapped[str | None] = mapped_column(String(64), nullable=True)
    totp_enabled: Mapped[bool] = mapped_column(Boolean, default=False)
    oidc_issuer: Mapped[str | None] = mapped_column(String(255), nullable=True)
    oidc_subject: Mapped[str | None] = mapped_column(String(255), nullable=True)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    failed_logins: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Group(Base):
    """A group of users of one institution; ``kind='care_team'`` groups can own restricted cases."""

    __tablename__ = "groups"
    __table_args__ = (UniqueConstraint("institution_fk", "name", name="uq_group_name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    institution_fk: Mapped[int] = mapped_column(ForeignKey("institutions.id"), index=True)
    name: Mapped[str] = mapped_column(String(128))
    kind: Mapped[str] = mapped_column(String(16), default="group")


class GroupMember(Base):
    __tablename__ = "group_members"

    group_fk: Mapped[int] = mapped_column(
        ForeignKey("groups.id", ondelete="CASCADE"), primary_key=True
    )
    user_fk: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True, index=True
    )


class PermissionGrant(Base):
    """A permission allowed or denied to a role (system level), a group or a user."""

    __tablename__ = "permission_grants"
    __table_args__ = (
        UniqueConstraint("subject_kind", "subject", "permission", name="uq_permission_grant"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    subject_kind: Mapped[str] = mapped_column(String(8))  # role | group | user
    subject: Mapped[str] = mapped_column(String(64))  # role name, group id or user id
    permission: Mapped[str] = mapped_column(String(64))
    allow: Mapped[bool] = mapped_column(Boolean, default=True)


class AuthToken(Base):
    """A login session or an API token; only the SHA-256 of the secret is kept."""

    __tablename__ = "auth_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    kind: Mapped[str] = mapped_column(String(8))  # session | api
    user_fk: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(128), default="")
    source: Mapped[str] = mapped_column(String(64), default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    last_used_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class StudyGrant(Base):
    """Access to a study beyond its institution: consultation, care team, explicit, break-glass."""

    __tablename__ = "study_grants"
    __table_args__ = (Index("ix_study_grants_grantee", "grantee_kind", "grantee_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_fk: Mapped[int] = mapped_column(ForeignKey("studies.id", ondelete="CASCADE"), index=True)
    grantee_kind: Mapped[str] = mapped_column(String(16))  # institution | group | user
    grantee_id: Mapped[int] = mapped_column(Integer)
    reason: Mapped[str] = mapped_column(String(16))  # consultation|care_team|explicit|break_glass
    note: Mapped[str] = mapped_column(String(255), default="")
    granted_by: Mapped[str] = mapped_column(String(64), default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class UserSettings(Base):
    """A user's viewer settings (layouts, presets, overlay, hanging protocols) as JSON."""

    __tablename__ = "user_settings"

    user_fk: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    data: Mapped[str] = mapped_column(Text, default="{}")
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class AuditEvent(Base):
    """One entry of the append-only, hash-chained audit trail (triggers refuse UPDATE/DELETE)."""

    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ts: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    actor: Mapped[str] = mapped_column(String(80), index=True)
    actor_kind: Mapped[str] = mapped_column(String(8))  # user | ae | cli | system | anon
    institution_fk: Mapped[int | None] = mapped_column(Integer, nullable=True, index=True)
    action: Mapped[str] = mapped_column(String(64), index=True)
    study_uid: Mapped[str] = mapped_column(String(64), default="", index=True)
    target: Mapped[str] = mapped_column(String(255), default="")
    source: Mapped[str] = mapped_column(String(64), default="")
    result: Mapped[str] = mapped_column(String(16))  # success | denied | failed
    detail: Mapped[str] = mapped_column(Text, default="")
    count: Mapped[int] = mapped_column(Integer, default=1)
    flagged: Mapped[bool] = mapped_column(Boolean, default=False)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))
