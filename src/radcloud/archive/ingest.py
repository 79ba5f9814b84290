"""The one ingest path: every way in (STOW-RS, REST upload, C-STORE, CLI) calls ``store``.

receive → validate (nothing written on failure) → blob written atomically →
index rows + full metadata in one transaction → blob removed again if the
transaction did not commit.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any, BinaryIO

import orjson
from pydicom.dataset import Dataset
from sqlalchemy import Connection, bindparam, select, union_all, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from radcloud.archive import compression
from radcloud.archive.service import Archive
from radcloud.auth.access import SYSTEM, Principal, study_filter
from radcloud.auth.permissions import Perm
from radcloud.config import DuplicatePolicy
from radcloud.dicom.names import name_key
from radcloud.dicom.parse import (
    PATIENT_TAGS,
    SERIES_TAGS,
    STUDY_TAGS,
    ParsedInstance,
    parse_file,
)
from radcloud.errors import Forbidden, StudyMismatch
from radcloud.store.blobs import FileStorage, new_key
from radcloud.store.digests import file_digests
from radcloud.store.models import Instance, Patient, Series, Study

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StoreResult:
    """Outcome of storing one object."""

    status: str  # "stored" | "duplicate" | "replaced"
    sop_class_uid: str
    sop_uid: str
    study_uid: str
    series_uid: str
    size: int
    sha256: str


def spool(archive: Archive) -> tuple[BinaryIO, Path]:
    """A temp file on the blob file system to stream an incoming object into."""
    if isinstance(archive.storage, FileStorage):
        return archive.storage.spool()
    archive.settings.tmp_dir.mkdir(parents=True, exist_ok=True)
    import tempfile

    fd, name = tempfile.mkstemp(dir=archive.settings.tmp_dir, suffix=".part")
    return os.fdopen(fd, "w+b"), Path(name)


def store_bytes(archive: Archive, data: bytes, **kw: Any) -> StoreResult:
    """Store an object held in memory (small objects, tests, wrapped files)."""
    fh, path = spool(archive)
    with fh:
        fh.write(data)
    return store(archive, path, **kw)


def store_dataset(archive: Archive, ds: Dataset, **kw: Any) -> StoreResult:
    """Store a data set built in memory (the demo phantom, wrapped photos and PDFs)."""
    fh, path = spool(archive)
    with fh:
        ds.save_as(fh, enforce_file_format=True)
    return store(archive, path, **kw)


def store_copy(archive: Archive, src: Path, **kw: Any) -> StoreResult:
    """Store a copy of a file the caller keeps (CLI import)."""
    fh, path = spool(archive)
    with fh, open(src, "rb") as inp:
        shutil.copyfileobj(inp, fh, 1024 * 1024)
    return store(archive, path, **kw)


def store(
    archive: Archive,
    path: Path,
    *,
    source: str = "",
    expected_study_uid: str | None = None,
    principal: Principal = SYSTEM,
) -> StoreResult:
    """Validate, keep and index the spooled object at ``path`` (consumed either way).

    ``principal`` needs the study.write permission.  A new study belongs to its
    institution; adding to an existing study needs ``principal`` to see it.
    Raises a :mod:`radcloud.errors` error and leaves nothing behind when the
    object is refused.
    """
    keys: list[str] = []
    committed = False
    compressed: Path | None = None
    try:
        principal.require(Perm.STUDY_WRITE)
        parsed = parse_file(path)
        if expected_study_uid and parsed.study_uid != expected_study_uid:
            raise StudyMismatch(
                f"instance belongs to study {parsed.study_uid}, not {expected_study_uid}",
                sop_class_uid=parsed.sop_class_uid,
                sop_uid=parsed.sop_uid,
            )
        sha, digests = file_digests(path, parsed.frames)
        blob = _blob_row(archive, parsed, sha, digests)
        compressed = blob.pop("_path")
        keys.append(new_key())
        archive.storage.put_file(keys[0], compressed)
        blob["blob_key"] = keys[0]
        if blob.get("_envelope") is not None:
            keys.append(new_key())
            archive.storage.put_bytes(keys[1], blob["_envelope"])
            blob["envelope_key"] = keys[1]
        blob.pop("_envelope", None)
        result, stale = archive.retrying(
            lambda: _index(archive, parsed, blob, sha, source, principal)
        )
        committed = True
        if result.status == "duplicate":
            for k in keys:
                archive.storage.delete(k)
        for k in stale:
            archive.storage.delete(k)
        return result
    finally:
        for p in (Path(path), compressed):
            if p is not None and p.exists():
                os.unlink(p)
        if not committed:
            for k in keys:
                archive.storage.delete(k)


def _blob_row(
    archive: Archive, parsed: ParsedInstance, sha: str, digests: str | None
) -> dict[str, Any]:
    """What the blob will hold: the received file, or its losslessly compressed copy."""
    row: dict[str, Any] = {
        "_path": parsed.path,
        "size": parsed.size,
        "sha256": sha,
        "transfer_syntax_uid": parsed.transfer_syntax_uid,
        "frames_json": orjson.dumps(parsed.frames).decode() if parsed.frames is not None else None,
        "frame_digests": digests,
    }
    ts = compression.target_syntax(archive.settings, parsed)
    if ts is None:
        return row
    _fh, out = spool(archive)
    _fh.close()
    done = compression.compress(parsed, ts, out)
    if done is None:
        out.unlink(missing_ok=True)
        return row
    packed = parse_file(out)
    packed_sha, packed_digests = file_digests(out, packed.frames)
    return {
        "_path": out,
        "_envelope": done.envelope,
        "size": packed.size,
        "sha256": packed_sha,
        "transfer_syntax_uid": ts,
        "frames_json": orjson.dumps(packed.frames).decode() if packed.frames else None,
        "frame_digests": packed_digests,
        "original_ts": parsed.transfer_syntax_uid,
        "original_size": parsed.size,
        "original_sha256": sha,
    }


def _now() -> datetime:
    return datetime.now(UTC)


@lru_cache(maxsize=8)
def _statements(dialect: str) -> dict[str, Any]:
    """Statements built once per dialect and executed with parameters (hot path)."""
    ins = sqlite_insert if dialect == "sqlite" else pg_insert
    return {
        "series": select(Series.id).where(Series.series_uid == bindparam("uid")),
        "study": select(Study.id).where(Study.study_uid == bindparam("uid")),
        # the study named, and the studies an existing series / instance of the same UID is in
        "study_owner": union_all(
            select(Study.id, Study.institution_fk, Study.restricted_team_fk).where(
                Study.study_uid == bindparam("uid")
            ),
            select(Study.id, Study.institution_fk, Study.restricted_team_fk)
            .join(Series, Series.study_fk == Study.id)
            .where(Series.series_uid == bindparam("series")),
            select(Study.id, Study.institution_fk, Study.restricted_team_fk)
            .join(Series, Series.study_fk == Study.id)
            .join(Instance, Instance.series_fk == Series.id)
            .where(Instance.sop_uid == bindparam("sop")),
        ),
        "patient": select(Patient.id).where(
            Patient.patient_id == bindparam("pid"),
            Patient.issuer == bindparam("issuer"),
            Patient.institution_fk == bindparam("inst"),
        ),
        "insert_series": ins(Series)
        .on_conflict_do_nothing(index_elements=["series_uid"])
        .returning(Series.id),
        "insert_study": ins(Study)
        .on_conflict_do_nothing(index_elements=["study_uid"])
        .returning(Study.id),
        "insert_patient": ins(Patient)
        .on_conflict_do_nothing(index_elements=["patient_id", "issuer", "institution_fk"])
        .returning(Patient.id),
        "insert_instance": ins(Instance)
        .on_conflict_do_nothing(index_elements=["sop_uid"])
        .returning(Instance.id),
        "touch_series": update(Series)
        .where(Series.id == bindparam("fk"))
        .values(updated_at=bindparam("now")),
    }


_AS_RECEIVED = {
    "original_ts": None,
    "original_size": None,
    "original_sha256": None,
    "envelope_key": None,
}


def _index(
    archive: Archive,
    p: ParsedInstance,
    blob: dict[str, Any],
    sha: str,
    source: str,
    principal: Principal,
) -> tuple[StoreResult, list[str]]:
    with archive.write() as conn:
        _check_owner(archive, conn, p, principal)
        series_fk = _series_fk(archive, conn, p, principal.institution_id)
        row = dict(
            sop_uid=p.sop_uid,
            series_fk=series_fk,
            sop_class_uid=p.sop_class_uid,
            instance_number=p.integer("InstanceNumber"),
            rows=p.integer("Rows"),
            columns=p.integer("Columns"),
            bits_allocated=p.integer("BitsAllocated"),
            number_of_frames=p.integer("NumberOfFrames"),
            **{**_AS_RECEIVED, **blob},
            metadata_json=orjson.dumps(p.metadata).decode(),
            source=source[:80],
            created_at=_now(),
        )
        sql = _statements(archive.dialect)
        inserted = conn.execute(sql["insert_instance"], row).first() is not None
        status, stale = "stored", list[str]()
        if not inserted:
            status, stale = _duplicate(archive, conn, p, row)
        conn.execute(sql["touch_series"], {"fk": series_fk, "now": _now()})
    result = StoreResult(status, p.sop_class_uid, p.sop_uid, p.study_uid, p.series_uid, p.size, sha)
    return result, stale


def _duplicate(
    archive: Archive, conn: Connection, p: ParsedInstance, row: dict[str, object]
) -> tuple[str, list[str]]:
    """Apply the duplicate policy; returns (status, blob keys that are no longer used)."""
    old = conn.execute(
        select(Instance.blob_key, Instance.envelope_key).where(Instance.sop_uid == p.sop_uid)
    ).one()
    if archive.settings.duplicate_policy is DuplicatePolicy.KEEP:
        return "duplicate", []
    values = {k: v for k, v in row.items() if k not in ("sop_uid", "created_at")}
    conn.execute(update(Instance).where(Instance.sop_uid == p.sop_uid).values(**values))
    return "replaced", [k for k in old if k]


def _get_or_create(
    conn: Connection,
    sql: dict[str, Any],
    kind: str,
    key: dict[str, Any],
    values: Callable[[], dict[str, Any]],
) -> int:
    """The id of the ``kind`` row with ``key``, inserting it (race-safe) when absent."""
    fk = conn.scalar(sql[kind], key)
    if fk is not None:
        return int(fk)
    row = conn.execute(sql[f"insert_{kind}"], values()).first()
    if row is not None:
        return int(row[0])
    return int(conn.scalar(sql[kind], key))  # another writer inserted it first


def _check_owner(
    archive: Archive, conn: Connection, p: ParsedInstance, principal: Principal
) -> None:
    """Adding to an existing study needs the writer to see it; a new study is theirs.

    The series and the SOP instance UID are checked too: an existing series (or
    instance) of that UID would take the object into the study it is in.
    """
    if principal.unrestricted:
        return
    rows = conn.execute(
        _statements(archive.dialect)["study_owner"],
        {"uid": p.study_uid, "series": p.series_uid, "sop": p.sop_uid},
    ).all()
    foreign = {r[0] for r in rows if not (r[1] in principal.institution_ids and r[2] is None)}
    if not foreign:
        return
    visible = set(
        conn.scalars(select(Study.id).where(Study.id.in_(sorted(foreign)), study_filter(principal)))
    )
    if foreign - visible:
        raise Forbidden(
            f"{principal.describe()} may not add images to study {p.study_uid}: it (or the "
            "series or instance of the same UID) belongs to another institution or care team",
            sop_class_uid=p.sop_class_uid,
            sop_uid=p.sop_uid,
        )


def _series_fk(archive: Archive, conn: Connection, p: ParsedInstance, owner: int) -> int:
    sql = _statements(archive.dialect)

    def values() -> dict[str, Any]:
        return dict(
            series_uid=p.series_uid,
            study_fk=_study_fk(archive, conn, p, owner),
            modality=p.text("Modality")[:16],
            series_number=p.integer("SeriesNumber"),
            series_description=p.text("SeriesDescription")[:64],
            body_part=p.text("BodyPartExamined")[:64],
            pps_start_date=p.text("PerformedProcedureStepStartDate")[:8],
            pps_start_time=p.text("PerformedProcedureStepStartTime")[:16],
            attrs_json=orjson.dumps(p.subset(SERIES_TAGS)).decode(),
            created_at=_now(),
            updated_at=_now(),
        )

    return _get_or_create(conn, sql, "series", {"uid": p.series_uid}, values)


def _study_fk(archive: Archive, conn: Connection, p: ParsedInstance, owner: int) -> int:
    sql = _statements(archive.dialect)

    def values() -> dict[str, Any]:
        return dict(
            study_uid=p.study_uid,
            institution_fk=owner,
            patient_fk=_patient_fk(archive, conn, p, owner),
            study_date=p.text("StudyDate")[:8],
            study_time=p.text("StudyTime")[:16],
            accession_number=p.text("AccessionNumber")[:64],
            study_id=p.text("StudyID")[:16],
            study_description=p.text("StudyDescription")[:64],
            referring_physician=p.text("ReferringPhysicianName")[:324],
            institution_name=p.text("InstitutionName")[:64],
            attrs_json=orjson.dumps({**p.subset(PATIENT_TAGS), **p.subset(STUDY_TAGS)}).decode(),
            created_at=_now(),
            updated_at=_now(),
        )

    return _get_or_create(conn, sql, "study", {"uid": p.study_uid}, values)


def _patient_fk(archive: Archive, conn: Connection, p: ParsedInstance, owner: int) -> int:
    """The owner institution's record of the patient (IDs are per institution)."""
    sql = _statements(archive.dialect)
    key = {
        "pid": p.text("PatientID")[:64],
        "issuer": p.text("IssuerOfPatientID")[:64],
        "inst": owner,
    }

    def values() -> dict[str, Any]:
        name = p.text("PatientName")
        return dict(
            patient_id=key["pid"],
            issuer=key["issuer"],
            institution_fk=owner,
            patient_name=name[:324],
            name_key=name_key(name),
            birth_date=p.text("PatientBirthDate")[:8],
            sex=p.text("PatientSex")[:16],
            created_at=_now(),
        )

    return _get_or_create(conn, sql, "patient", key, values)
