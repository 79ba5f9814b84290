"""Retrieve: find stored instances, read them back verified, serve metadata and frames.

Everything comes from the index and at most one blob read per instance;
files are never re-parsed for metadata.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from pydicom import dcmread
from pydicom.encaps import generate_frames
from sqlalchemy import select

from radcloud.archive import query
from radcloud.archive.query import UNIQUE_KEY, Level, Query
from radcloud.archive.service import Archive
from radcloud.auth.access import Principal, study_filter
from radcloud.dicom.pixel_info import PixelInfo
from radcloud.errors import IntegrityError, MissingAttribute, NotFound
from radcloud.store.digests import frame_digest
from radcloud.store.models import Instance, Series, Study

NATIVE_SYNTAXES = {"1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2"}


@dataclass(frozen=True)
class InstanceRef:
    """An indexed instance, enough to read and describe it without the file."""

    id: int
    sop_uid: str
    sop_class_uid: str
    series_uid: str
    study_uid: str
    transfer_syntax_uid: str
    blob_key: str
    size: int
    sha256: str
    number_of_frames: int
    frames_json: str | None
    original_ts: str | None = None
    original_sha256: str | None = None
    envelope_key: str | None = None
    frame_digests: str | None = None

    @property
    def received_ts(self) -> str:
        """The transfer syntax the instance arrived in (differs when compressed at rest)."""
        return self.original_ts or self.transfer_syntax_uid

    @property
    def frames(self) -> list[list[tuple[int, int]]] | None:
        return orjson.loads(self.frames_json) if self.frames_json else None


def find_instances(
    archive: Archive,
    study_uid: str,
    series_uid: str | None = None,
    sop_uid: str | None = None,
    *,
    principal: Principal,
) -> list[InstanceRef]:
    """Instances of a study / series / one instance in viewing order; NotFound if none.

    A study ``principal`` may not see is "not found" like one that does not exist.
    """
    stmt = (
        select(
            Instance.id, Instance.sop_uid, Instance.sop_class_uid, Series.series_uid,
            Study.study_uid, Instance.transfer_syntax_uid, Instance.blob_key, Instance.size,
            Instance.sha256, Instance.number_of_frames, Instance.frames_json,
            Instance.original_ts, Instance.original_sha256, Instance.envelope_key,
            Instance.frame_digests,
        )
        .join(Series, Instance.series_fk == Series.id)
        .join(Study, Series.study_fk == Study.id)
        .where(Study.study_uid == study_uid, study_filter(principal))
        .order_by(Series.series_number, Series.id, Instance.instance_number, Instance.id)
    )  # fmt: skip
    if series_uid:
        stmt = stmt.where(Series.series_uid == series_uid)
    if sop_uid:
        stmt = stmt.where(Instance.sop_uid == sop_uid)
    with archive.read() as conn:
        refs = [
            InstanceRef(*r[:9], int(r.number_of_frames or 1), r.frames_json, *r[11:])  # type: ignore[arg-type]
            for r in conn.execute(stmt)
        ]
    if not refs:
        what = "instance" if sop_uid else "series" if series_uid else "study"
        raise NotFound(f"no such {what} in the archive")
    return refs


def find_for_retrieve(
    archive: Archive, level: Level, filters: dict[str, str], *, principal: Principal
) -> list[InstanceRef]:
    """The instances a C-MOVE/C-GET identifier names (unique keys, ``\\`` lists), in order."""
    unique = UNIQUE_KEY[level]

    def values(keyword: str) -> list[str]:
        return [v for v in filters.get(keyword, "").split("\\") if v.strip()]

    if not values(unique):
        raise MissingAttribute(f"a {level.value}-level retrieve needs {unique} in the identifier")
    if level is Level.PATIENT:
        found = query.search(
            archive, Query(Level.STUDY, {"PatientID": filters[unique]}), principal=principal
        )
        studies = [(_uid(i, "0020000D"), None) for i in found.items]
        return _instances_of(archive, studies, principal)
    if level is Level.STUDY:
        return _instances_of(archive, [(uid, None) for uid in values(unique)], principal)
    keys = ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID")
    scope = {k: filters[k] for k in keys if values(k)}
    found = query.search(
        archive,
        Query(Level.SERIES if level is Level.SERIES else Level.IMAGE, scope),
        principal=principal,
    )
    pairs: list[tuple[str, str | None]] = list(
        dict.fromkeys((_uid(i, "0020000D"), _uid(i, "0020000E")) for i in found.items)
    )
    refs = _instances_of(archive, pairs, principal)
    if level is Level.IMAGE:
        wanted = set(values(unique))
        refs = [r for r in refs if r.sop_uid in wanted]
    return refs


def _uid(item: dict[str, Any], key: str) -> str:
    return str(item[key]["Value"][0])


def _instances_of(
    archive: Archive, scopes: Sequence[tuple[str, str | None]], principal: Principal
) -> list[InstanceRef]:
    refs: list[InstanceRef] = []
    for study_uid, series_uid in scopes:
        try:
            refs.extend(find_instances(archive, study_uid, series_uid, principal=principal))
        except NotFound:
            continue
    return refs


def read_verified(archive: Archive, ref: InstanceRef) -> bytes:
    """The stored file's bytes, exactly as received; IntegrityError if they changed.

    An encrypted blob read whole has passed AES-GCM authentication chunk by
    chunk (index, last-chunk flag and blob id bound in; see
    :mod:`radcloud.store.crypto`), which any change to the stored bytes fails:
    that is its check.  A plaintext blob is checked against the SHA-256
    recorded at ingest.  (``radcloud verify`` checks the SHA-256 of both.)
    """
    try:
        with archive.storage.open(ref.blob_key) as fh:
            data = fh.read()
            authenticated = getattr(fh, "authenticated", False)
    except IntegrityError as exc:  # an encrypted blob failing authentication: name the instance
        raise IntegrityError(f"instance {ref.sop_uid}: {exc.detail}", sop_uid=ref.sop_uid) from exc
    if (
        archive.settings.verify_on_read
        and not authenticated
        and hashlib.sha256(data).hexdigest() != ref.sha256
    ):
        raise IntegrityError(
            f"instance {ref.sop_uid}: stored file does not match its SHA-256 (blob {ref.blob_key})"
        )
    return data


def read_original(archive: Archive, ref: InstanceRef) -> bytes:
    """The file exactly as it was received, rebuilt if it was compressed at rest."""
    stored = read_verified(archive, ref)
    if not ref.envelope_key:
        return stored
    from radcloud.archive import compression

    with archive.storage.open(ref.envelope_key) as fh:
        envelope = fh.read()
    info = PixelInfo.of(instance_meta(archive, ref))
    data = compression.restore(
        envelope, compression.decoded_frames(stored, info, ref.transfer_syntax_uid)
    )
    if hashlib.sha256(data).hexdigest() != ref.original_sha256:
        raise IntegrityError(
            f"instance {ref.sop_uid}: the file rebuilt from its compressed copy does not "
            "match the SHA-256 recorded when it was received"
        )
    return data


def metadata(
    archive: Archive,
    study_uid: str,
    series_uid: str | None = None,
    sop_uid: str | None = None,
    *,
    principal: Principal,
) -> bytes:
    """WADO-RS metadata: a JSON array of the instances' stored DICOM JSON, joined as text."""
    stmt = (
        select(Instance.metadata_json)
        .join(Series, Instance.series_fk == Series.id)
        .join(Study, Series.study_fk == Study.id)
        .where(Study.study_uid == study_uid, study_filter(principal))
        .order_by(Series.series_number, Series.id, Instance.instance_number, Instance.id)
    )
    if series_uid:
        stmt = stmt.where(Series.series_uid == series_uid)
    if sop_uid:
        stmt = stmt.where(Instance.sop_uid == sop_uid)
    with archive.read() as conn:
        parts = list(conn.scalars(stmt))
    if not parts:
        raise NotFound("no such study, series or instance in the archive")
    return ("[" + ",".join(parts) + "]").encode()


def frame(archive: Archive, ref: InstanceRef, number: int) -> bytes:
    """Frame ``number`` (1-based) in the stored transfer syntax; one ranged read when indexed."""
    if not 1 <= number <= ref.number_of_frames:
        raise NotFound(f"instance has {ref.number_of_frames} frame(s), no frame {number}")
    frames = ref.frames
    if frames is None:
        return _frame_from_file(archive, ref, number)
    data = b"".join(
        archive.storage.get_range(ref.blob_key, off, n) for off, n in frames[number - 1]
    )
    if archive.settings.verify_on_read and ref.frame_digests:
        expected = orjson.loads(ref.frame_digests)[number - 1]
        if frame_digest(data) != expected:
            raise IntegrityError(
                f"instance {ref.sop_uid}: frame {number} does not match the digest "
                f"recorded at ingest (blob {ref.blob_key})"
            )
    return data


def _frame_from_file(archive: Archive, ref: InstanceRef, number: int) -> bytes:
    import io

    ds = dcmread(io.BytesIO(read_verified(archive, ref)))
    if "PixelData" not in ds:
        raise NotFound("instance has no pixel data")
    if ref.transfer_syntax_uid in NATIVE_SYNTAXES or ds.file_meta.TransferSyntaxUID.is_deflated:
        data: bytes = ds.PixelData
        size = len(data) // ref.number_of_frames
        return data[(number - 1) * size : number * size]
    for i, f in enumerate(generate_frames(ds.PixelData, number_of_frames=ref.number_of_frames), 1):
        if i == number:
            return f
    raise NotFound(f"frame {number} not found in the encapsulated pixel data")


def instance_meta(archive: Archive, ref: InstanceRef) -> dict[str, Any]:
    """The stored DICOM JSON of one instance."""
    with archive.read() as conn:
        text = conn.scalar(select(Instance.metadata_json).where(Instance.id == ref.id))
    return orjson.loads(text or "{}")
