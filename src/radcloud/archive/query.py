"""The one query engine behind QIDO-RS and C-FIND (PS3.4 C.2.2.2 matching).

Matching keys that the standard requires are indexed columns; values follow
DICOM matching rules: universal (empty), single value, wildcard ``*``/``?``,
UID lists (``\\``-separated), and ranges for dates and times.  Person names
match case-insensitively per component group, and with ``fuzzy`` by prefix on
any name part, ideographic names and their pinyin included.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import orjson
from pydicom.datadict import dictionary_VR, keyword_for_tag, tag_for_keyword
from sqlalchemy import ColumnElement, Select, and_, exists, func, or_, select
from sqlalchemy.orm import aliased

from radcloud.archive.service import Archive
from radcloud.auth.access import Principal, study_filter
from radcloud.dicom.names import query_tokens
from radcloud.errors import BadQuery
from radcloud.store.models import Instance, Patient, Series, Study


class Level(StrEnum):
    """QueryRetrieveLevel values (0008,0052)."""

    PATIENT = "PATIENT"
    STUDY = "STUDY"
    SERIES = "SERIES"
    IMAGE = "IMAGE"

    @classmethod
    def parse(cls, value: str) -> Level:
        try:
            return cls(value.strip().upper())
        except ValueError:
            valid = ", ".join(m.value for m in cls)
            raise BadQuery(f"QueryRetrieveLevel {value!r} is not one of {valid}") from None


#: The unique key of each level (PS3.4 C.2.2.1.3), what retrieve identifies instances by.
UNIQUE_KEY = {
    Level.PATIENT: "PatientID",
    Level.STUDY: "StudyInstanceUID",
    Level.SERIES: "SeriesInstanceUID",
    Level.IMAGE: "SOPInstanceUID",
}

# keyword → (level it belongs to, column); the level decides which join it needs.
_COLUMNS: dict[str, tuple[Level, Any]] = {
    "PatientName": (Level.PATIENT, Patient.patient_name),
    "PatientID": (Level.PATIENT, Patient.patient_id),
    "IssuerOfPatientID": (Level.PATIENT, Patient.issuer),
    "PatientBirthDate": (Level.PATIENT, Patient.birth_date),
    "PatientSex": (Level.PATIENT, Patient.sex),
    "StudyInstanceUID": (Level.STUDY, Study.study_uid),
    "StudyDate": (Level.STUDY, Study.study_date),
    "StudyTime": (Level.STUDY, Study.study_time),
    "AccessionNumber": (Level.STUDY, Study.accession_number),
    "StudyID": (Level.STUDY, Study.study_id),
    "StudyDescription": (Level.STUDY, Study.study_description),
    "ReferringPhysicianName": (Level.STUDY, Study.referring_physician),
    "InstitutionName": (Level.STUDY, Study.institution_name),
    "SeriesInstanceUID": (Level.SERIES, Series.series_uid),
    "Modality": (Level.SERIES, Series.modality),
    "SeriesNumber": (Level.SERIES, Series.series_number),
    "SeriesDescription": (Level.SERIES, Series.series_description),
    "BodyPartExamined": (Level.SERIES, Series.body_part),
    "PerformedProcedureStepStartDate": (Level.SERIES, Series.pps_start_date),
    "PerformedProcedureStepStartTime": (Level.SERIES, Series.pps_start_time),
    "SOPInstanceUID": (Level.IMAGE, Instance.sop_uid),
    "SOPClassUID": (Level.IMAGE, Instance.sop_class_uid),
    "InstanceNumber": (Level.IMAGE, Instance.instance_number),
}
_ORDER = [Level.PATIENT, Level.STUDY, Level.SERIES, Level.IMAGE]
# Keys with no stored column that are still answered (computed) or harmless.
_COMPUTED = {
    "ModalitiesInStudy", "NumberOfStudyRelatedSeries", "NumberOfStudyRelatedInstances",
    "NumberOfSeriesRelatedInstances", "NumberOfPatientRelatedStudies",
    "NumberOfPatientRelatedSeries", "NumberOfPatientRelatedInstances", "QueryRetrieveLevel",
    "SpecificCharacterSet", "RetrieveAETitle", "InstanceAvailability", "RetrieveURL",
    "SOPClassesInStudy",
}  # fmt: skip

_STUDY_RETURN = (
    "StudyDate", "StudyTime", "AccessionNumber", "ModalitiesInStudy", "ReferringPhysicianName",
    "PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyInstanceUID", "StudyID",
    "StudyDescription", "NumberOfStudyRelatedSeries", "NumberOfStudyRelatedInstances",
)  # fmt: skip
_SERIES_RETURN = (
    "Modality", "SeriesInstanceUID", "SeriesNumber", "SeriesDescription",
    "NumberOfSeriesRelatedInstances", "BodyPartExamined",
    "PerformedProcedureStepStartDate", "PerformedProcedureStepStartTime",
)  # fmt: skip
_INSTANCE_RETURN = (
    "SOPClassUID", "SOPInstanceUID", "InstanceNumber", "Rows", "Columns", "BitsAllocated",
    "NumberOfFrames",
)  # fmt: skip
_PATIENT_RETURN = (
    "PatientName", "PatientID", "IssuerOfPatientID", "PatientBirthDate", "PatientSex",
    "NumberOfPatientRelatedStudies", "NumberOfPatientRelatedSeries",
    "NumberOfPatientRelatedInstances",
)  # fmt: skip


@dataclass
class Query:
    """A search: level, matching keys (keyword → DICOM match value), scope and paging."""

    level: Level
    filters: dict[str, str] = field(default_factory=dict)
    study_uid: str | None = None
    series_uid: str | None = None
    include: set[str] = field(default_factory=set)
    include_all: bool = False
    fuzzy: bool = False
    limit: int | None = None
    offset: int = 0
    relational: bool = False  # /series or /instances without a parent: add parent attributes


@dataclass
class SearchResult:
    items: list[dict[str, Any]]
    remaining: int  # matches beyond offset+limit
    ignored: list[str]  # keys we could not match on


def tag_key(keyword: str) -> str:
    """The 8-hex-digit JSON key of a keyword, or of an already hex tag."""
    kw = keyword.strip()
    if len(kw) == 8 and all(c in "0123456789abcdefABCDEF" for c in kw):
        return kw.upper()
    tag = tag_for_keyword(kw)
    if tag is None:
        raise BadQuery(f"{keyword!r} is not a DICOM attribute keyword or tag")
    return f"{tag:08X}"


def keyword_of(key: str) -> str:
    """The keyword of a tag key (or the key itself for private/unknown tags)."""
    k = tag_key(key)
    return keyword_for_tag(int(k, 16)) or k


def search(archive: Archive, q: Query, base_url: str = "", *, principal: Principal) -> SearchResult:
    """Run ``q`` against the studies ``principal`` may see; items are DICOM JSON datasets."""
    conds, ignored = _conditions(q)
    visible = study_filter(principal)
    if q.level is Level.PATIENT:
        conds.append(Patient.id.in_(select(Study.patient_fk).where(visible)))
    else:
        conds.append(visible)
    stmt = _base(q.level, conds)
    with archive.read() as conn:
        total_stmt = select(func.count()).select_from(stmt.subquery())
        rows = conn.execute(_paged(q, stmt)).all()
        remaining = 0
        if q.limit is not None and len(rows) == q.limit:
            remaining = max(0, int(conn.scalar(total_stmt) or 0) - q.offset - len(rows))
        items = _build(conn, q, rows, base_url, visible)
    return SearchResult(items, remaining, ignored)


_TABLE: dict[Level, Any] = {
    Level.PATIENT: Patient, Level.STUDY: Study, Level.SERIES: Series, Level.IMAGE: Instance,
}  # fmt: skip
#: Each level joined to its parent, up to the patient, so any matching key can be used.
_PARENT: dict[Any, tuple[Any, Any]] = {
    Instance: (Series, Instance.series_fk == Series.id),
    Series: (Study, Series.study_fk == Study.id),
    Study: (Patient, Study.patient_fk == Patient.id),
}


def _base(level: Level, conds: list[ColumnElement[bool]]) -> Select[Any]:
    table = _TABLE[level]
    stmt = select(table.id).select_from(table)
    while table in _PARENT:
        table, on = _PARENT[table]
        stmt = stmt.join(table, on)
    return stmt.where(*conds)


def _paged(q: Query, stmt: Select[Any]) -> Select[Any]:
    order = {
        Level.PATIENT: (Patient.patient_id, Patient.id),
        Level.STUDY: (Study.study_date.desc(), Study.study_time.desc(), Study.id.desc()),
        Level.SERIES: (Series.series_number, Series.id),
        Level.IMAGE: (Instance.instance_number, Instance.id),
    }[q.level]
    stmt = stmt.order_by(*order).offset(q.offset)
    if q.limit is not None:
        stmt = stmt.limit(q.limit)
    return stmt


def _conditions(q: Query) -> tuple[list[ColumnElement[bool]], list[str]]:
    conds: list[ColumnElement[bool]] = []
    ignored: list[str] = []
    if q.study_uid:
        conds.append(Study.study_uid == q.study_uid)
    if q.series_uid:
        conds.append(Series.series_uid == q.series_uid)
    for raw_key, value in q.filters.items():
        keyword = keyword_of(raw_key)
        if value is None or value == "" or value == "*":
            continue  # universal matching
        if "\x00" in value:
            raise BadQuery(f"{keyword} holds a NUL character")
        if keyword == "ModalitiesInStudy":
            conds.append(_modalities_in_study(value))
            continue
        if keyword not in _COLUMNS:
            if keyword not in _COMPUTED:
                ignored.append(keyword)
            continue
        level, column = _COLUMNS[keyword]
        if q.level is Level.PATIENT and level is not Level.PATIENT:
            ignored.append(keyword)
            continue
        if _ORDER.index(level) > _ORDER.index(q.level) and q.level is not Level.PATIENT:
            conds.append(_lower_level_exists(q.level, level, keyword, column, value, q.fuzzy))
            continue
        conds.append(_match(keyword, column, value, q.fuzzy))
    return conds, ignored


def _lower_level_exists(
    query_level: Level, level: Level, keyword: str, column: Any, value: str, fuzzy: bool
) -> ColumnElement[bool]:
    """A study matches a series/instance key when any of its series/instances does."""
    cond = _match(keyword, column, value, fuzzy)
    if query_level is Level.STUDY and level is Level.SERIES:
        return exists().where(Series.study_fk == Study.id, cond)
    if query_level is Level.STUDY:
        return exists(
            select(Instance.id)
            .join(Series, Instance.series_fk == Series.id)
            .where(Series.study_fk == Study.id, cond)
        )
    return exists().where(Instance.series_fk == Series.id, cond)


def _modalities_in_study(value: str) -> ColumnElement[bool]:
    mods = [m.strip() for m in value.replace(",", "\\").split("\\") if m.strip()]
    other = aliased(Series)  # any series of the study, also when searching series/instances
    return exists().where(other.study_fk == Study.id, other.modality.in_(mods))


def _like_pattern(value: str) -> str:
    esc = value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return esc.replace("*", "%").replace("?", "_")


def _match(keyword: str, column: Any, value: str, fuzzy: bool) -> ColumnElement[bool]:
    vr = dictionary_VR(tag_for_keyword(keyword) or 0)
    if vr == "PN":
        return _match_pn(keyword, column, value, fuzzy)
    if vr == "UI":
        uids = [u.strip() for u in value.replace(",", "\\").split("\\") if u.strip()]
        if not uids:
            raise BadQuery(f"{keyword} {value!r} holds no UID")
        return column.in_(uids) if len(uids) > 1 else column == uids[0]
    if vr in ("DA", "TM", "DT") and "-" in value:
        return _match_range(column, value, vr)
    if vr in ("IS", "US", "SL", "UL", "SS"):
        try:
            return column.in_([int(v) for v in value.split("\\")])
        except ValueError:
            raise BadQuery(f"{keyword} must be an integer, got {value!r}") from None
    if vr == "DA":
        _check_date(keyword, value)
    values = value.split("\\")
    parts = [
        column.like(_like_pattern(v), escape="\\") if ("*" in v or "?" in v) else column == v
        for v in values
    ]
    return or_(*parts) if len(parts) > 1 else parts[0]


def _check_date(keyword: str, value: str) -> None:
    for part in value.split("-"):
        if part and not (len(part) == 8 and part.isdigit()):
            raise BadQuery(f"{keyword} {value!r} is not a date (YYYYMMDD) or range of dates")


def _match_range(column: Any, value: str, vr: str) -> ColumnElement[bool]:
    lo, _, hi = value.partition("-")
    if vr == "DA":
        _check_date("date", value)
    conds = []
    if lo:
        conds.append(column >= lo)
    if hi:
        # a time upper bound like 1200 covers 120059.999
        conds.append(column <= (hi + "\uffff" if vr != "DA" else hi))
    conds.append(column != "")
    return and_(*conds)


def patient_name_matches(value: str) -> ColumnElement[bool] | None:
    """Fuzzy patient-name match: every word a prefix of a name part (pinyin included).

    None when ``value`` holds no word to match.
    """
    tokens = query_tokens(value)
    if not tokens:
        return None
    return and_(*[Patient.name_key.like(f"% {_like_pattern(t)}%", escape="\\") for t in tokens])


def _match_pn(keyword: str, column: Any, value: str, fuzzy: bool) -> ColumnElement[bool]:
    if fuzzy and keyword == "PatientName":
        matches = patient_name_matches(value)
        return column == column if matches is None else matches
    pat = _like_pattern(value.lower())
    low = func.lower(column)
    if fuzzy:
        return low.like(f"%{pat}%", escape="\\")
    return or_(
        low.like(pat, escape="\\"),
        low.like(pat + "=%", escape="\\"),
        low.like("%=" + pat, escape="\\"),
        low.like("%=" + pat + "=%", escape="\\"),
    )


# ---------------------------------------------------------------- result building


def _el(vr: str, *values: Any) -> dict[str, Any]:
    vals = [v for v in values if v is not None and v != ""]
    return {"vr": vr, "Value": vals} if vals else {"vr": vr}


def _wanted(q: Query, defaults: tuple[str, ...]) -> set[str] | None:
    """Tag keys to return, or None for all known attributes."""
    if q.include_all:
        return None
    keys = {tag_key(k) for k in defaults} | {"00081190", "00080056", "00083002"}
    keys |= {tag_key(k) for k in q.include}
    keys |= {tag_key(k) for k in q.filters}
    return keys


def _pick(attrs: dict[str, Any], wanted: set[str] | None) -> dict[str, Any]:
    if wanted is None:
        return dict(attrs)
    return {k: v for k, v in attrs.items() if k in wanted}


def _build(
    conn: Any, q: Query, rows: Any, base_url: str, visible: ColumnElement[bool]
) -> list[dict[str, Any]]:
    ids = [r[0] for r in rows]
    if not ids:
        return []
    if q.level is Level.PATIENT:
        return _build_patients(conn, q, ids, visible)
    builder = {
        Level.STUDY: _build_studies,
        Level.SERIES: _build_series,
        Level.IMAGE: _build_instances,
    }[q.level]
    return builder(conn, q, ids, base_url)


def _study_counts(conn: Any, study_ids: list[int]) -> dict[int, tuple[list[str], int, int]]:
    mods: dict[int, set[str]] = defaultdict(set)
    nseries: dict[int, int] = defaultdict(int)
    ninst: dict[int, int] = defaultdict(int)
    stmt = (
        select(Series.study_fk, Series.modality, func.count(Instance.id))
        .join(Instance, Instance.series_fk == Series.id, isouter=True)
        .where(Series.study_fk.in_(study_ids))
        .group_by(Series.id, Series.study_fk, Series.modality)
    )
    for study_fk, modality, n in conn.execute(stmt):
        if modality:
            mods[study_fk].add(modality)
        nseries[study_fk] += 1
        ninst[study_fk] += n
    return {i: (sorted(mods[i]), nseries[i], ninst[i]) for i in study_ids}


def _extra_from_first_instance(
    conn: Any, where: ColumnElement[bool], wanted: set[str] | None, have: dict[str, Any]
) -> dict[str, Any]:
    """Attributes asked for that the level's own attributes lack, from its first instance."""
    if wanted is not None and not (wanted - set(have)):
        return {}
    meta = conn.scalar(
        select(Instance.metadata_json)
        .join(Series, Instance.series_fk == Series.id)
        .join(Study, Series.study_fk == Study.id)
        .where(where)
        .order_by(Instance.instance_number, Instance.id)
        .limit(1)
    )
    if not meta:
        return {}
    data = orjson.loads(meta)
    if wanted is None:
        return {}
    return {k: v for k, v in data.items() if k in wanted and k not in have}


def _build_studies(conn: Any, q: Query, ids: list[int], base_url: str) -> list[dict[str, Any]]:
    wanted = _wanted(q, _STUDY_RETURN)
    rows = {
        r.id: r
        for r in conn.execute(
            select(Study.id, Study.study_uid, Study.attrs_json).where(Study.id.in_(ids))
        )
    }
    counts = _study_counts(conn, ids)
    out = []
    for sid in ids:
        r = rows[sid]
        attrs = orjson.loads(r.attrs_json)
        mods, nser, ninst = counts[sid]
        attrs["00080061"] = _el("CS", *mods)
        attrs["00201206"] = _el("IS", nser)
        attrs["00201208"] = _el("IS", ninst)
        attrs["00080056"] = _el("CS", "ONLINE")
        for kw in (
            "StudyDate",
            "StudyTime",
            "AccessionNumber",
            "ReferringPhysicianName",
            "PatientName",
            "PatientID",
            "PatientBirthDate",
            "PatientSex",
            "StudyID",
        ):
            key = tag_key(kw)
            attrs.setdefault(key, {"vr": dictionary_VR(key)})
        if base_url:
            attrs["00081190"] = _el("UR", f"{base_url}/studies/{r.study_uid}")
        item = _pick(attrs, wanted)
        item.update(_extra_from_first_instance(conn, Study.id == sid, wanted, item))
        out.append(dict(sorted(item.items())))
    return out


def _build_series(conn: Any, q: Query, ids: list[int], base_url: str) -> list[dict[str, Any]]:
    defaults = _SERIES_RETURN + (_STUDY_RETURN if q.relational else ("StudyInstanceUID",))
    wanted = _wanted(q, defaults)
    stmt = (
        select(
            Series.id,
            Series.series_uid,
            Series.attrs_json,
            Study.study_uid,
            Study.attrs_json.label("study_attrs"),
            func.count(Instance.id).label("n"),
        )
        .join(Study, Series.study_fk == Study.id)
        .join(Instance, Instance.series_fk == Series.id, isouter=True)
        .where(Series.id.in_(ids))
        .group_by(
            Series.id, Series.series_uid, Series.attrs_json, Study.study_uid, Study.attrs_json
        )
    )
    rows = {r.id: r for r in conn.execute(stmt)}
    out = []
    for sid in ids:
        r = rows[sid]
        attrs = {**orjson.loads(r.study_attrs), **orjson.loads(r.attrs_json)}
        attrs["00201209"] = _el("IS", r.n)
        attrs["00080056"] = _el("CS", "ONLINE")
        if base_url:
            attrs["00081190"] = _el("UR", f"{base_url}/studies/{r.study_uid}/series/{r.series_uid}")
        item = _pick(attrs, wanted)
        item.update(_extra_from_first_instance(conn, Series.id == sid, wanted, item))
        out.append(dict(sorted(item.items())))
    return out


def _build_instances(conn: Any, q: Query, ids: list[int], base_url: str) -> list[dict[str, Any]]:
    defaults: tuple[str, ...] = _INSTANCE_RETURN + ("StudyInstanceUID", "SeriesInstanceUID")
    if q.relational:
        defaults += _STUDY_RETURN + _SERIES_RETURN
    wanted = _wanted(q, defaults)
    stmt = (
        select(
            Instance.id,
            Instance.sop_uid,
            Instance.metadata_json,
            Instance.transfer_syntax_uid,
            Series.series_uid,
            Study.study_uid,
        )
        .join(Series, Instance.series_fk == Series.id)
        .join(Study, Series.study_fk == Study.id)
        .where(Instance.id.in_(ids))
    )
    rows = {r.id: r for r in conn.execute(stmt)}
    out = []
    for iid in ids:
        r = rows[iid]
        attrs = orjson.loads(r.metadata_json)
        attrs["00080056"] = _el("CS", "ONLINE")
        attrs["00083002"] = _el("UI", r.transfer_syntax_uid)
        if base_url:
            attrs["00081190"] = _el(
                "UR",
                f"{base_url}/studies/{r.study_uid}/series/{r.series_uid}/instances/{r.sop_uid}",
            )
        out.append(dict(sorted(_pick(attrs, wanted).items())))
    return out


def _build_patients(
    conn: Any, q: Query, ids: list[int], visible: ColumnElement[bool]
) -> list[dict[str, Any]]:
    """Patient-level items from the studies the caller may see (counts included)."""
    wanted = _wanted(q, _PATIENT_RETURN)
    out = []
    for pid in ids:
        mine = and_(Study.patient_fk == pid, visible)
        patient_id = conn.scalar(select(Patient.patient_id).where(Patient.id == pid))
        first = conn.scalar(select(Study.attrs_json).where(mine).order_by(Study.id).limit(1))
        attrs = {k: v for k, v in orjson.loads(first or "{}").items()}
        nstudies = conn.scalar(select(func.count(Study.id)).where(mine))
        nseries = conn.scalar(select(func.count(Series.id)).join(Study).where(mine))
        ninst = conn.scalar(select(func.count(Instance.id)).join(Series).join(Study).where(mine))
        attrs["00201200"] = _el("IS", nstudies)
        attrs["00201202"] = _el("IS", nseries)
        attrs["00201204"] = _el("IS", ninst)
        attrs.setdefault("00100010", {"vr": "PN"})
        attrs.setdefault("00100020", _el("LO", patient_id))
        out.append(dict(sorted(_pick(attrs, wanted).items())))
    return out
