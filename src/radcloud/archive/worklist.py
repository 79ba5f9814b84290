"""The study list of the viewer: a radiologist's filters, one row per study.

QIDO-RS answers DICOM questions in DICOM terms; a reading room asks others:
patients of an age, a sex or a body part, studies from one hospital of the
group, studies nobody has reported yet, studies the AI has read and no one
else has.  :func:`studies` answers those from the index in one query
(filters, sort, page), only over what the caller may see
(:func:`radcloud.auth.access.study_filter`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Integer, and_, case, cast, exists, func, literal, or_, select
from sqlalchemy.orm import aliased
from sqlalchemy.sql.elements import ColumnElement

from radcloud.analysis.models import AnalysisResult
from radcloud.archive.query import patient_name_matches
from radcloud.archive.service import Archive
from radcloud.auth.access import Principal, study_filter
from radcloud.errors import BadQuery
from radcloud.report.models import Report
from radcloud.store.models import Institution, Patient, Series, Study

#: Report states as the list shows them ("ai_done": no report, but an analysis result).
STATUS = {
    "unread": None,  # no report and no analysis yet
    "ai_done": None,
    "in_progress": ("draft", "preliminary"),
    "signed": ("final", "amended"),
}
SORT_KEYS = ("date", "name", "patient_id", "accession", "description")
SORTS = {*SORT_KEYS, *(f"-{k}" for k in SORT_KEYS)}
MAX_LIMIT = 500
SEXES = {"M", "F", "O"}


@dataclass(frozen=True)
class Filters:
    """What the list is narrowed to; empty fields do not filter."""

    patient: str = ""  # patient ID (exact) or name, ideographic or pinyin (prefix of any part)
    patient_id: str = ""  # exact, or the start of it when it ends with "*"
    sex: str = ""
    age_min: int | None = None  # years at the study date
    age_max: int | None = None
    modality: str = ""
    body_part: str = ""
    institution: int | None = None
    date_from: str = ""  # YYYYMMDD
    date_to: str = ""
    accession: str = ""
    status: str = ""  # unread | in_progress | signed
    sort: str = "-date"
    limit: int = 50
    offset: int = 0

    def check(self) -> None:
        """Raise BadQuery naming the first value that cannot be used."""
        if self.sex and self.sex.upper() not in SEXES:
            raise BadQuery(f"sex must be one of {', '.join(sorted(SEXES))}, not {self.sex!r}")
        for name in ("age_min", "age_max"):
            value = getattr(self, name)
            if value is not None and not 0 <= value <= 150:
                raise BadQuery(f"{name} must be between 0 and 150 years")
        for name in ("date_from", "date_to"):
            value = getattr(self, name)
            if value and not (len(value) == 8 and value.isdigit()):
                raise BadQuery(f"{name} must be a date as YYYYMMDD, not {value!r}")
        if self.status and self.status not in STATUS:
            raise BadQuery(f"status must be one of {', '.join(STATUS)}, not {self.status!r}")
        if self.sort not in SORTS:
            raise BadQuery(f"sort must be one of {', '.join(sorted(SORTS))}")
        if not 1 <= self.limit <= MAX_LIMIT or self.offset < 0:
            raise BadQuery(f"limit must be 1..{MAX_LIMIT} and offset at least 0")


@dataclass
class Page:
    total: int
    items: list[dict[str, Any]] = field(default_factory=list)


def _age() -> ColumnElement[int]:
    """Age in whole years at the study date, from the YYYYMMDD strings of the index."""
    years = cast(func.substr(Study.study_date, 1, 4), Integer) - cast(
        func.substr(Patient.birth_date, 1, 4), Integer
    )
    before_birthday = func.substr(Study.study_date, 5, 4) < func.substr(Patient.birth_date, 5, 4)
    return years - case((before_birthday, 1), else_=0)


def _has_age() -> ColumnElement[bool]:
    return and_(func.length(Patient.birth_date) == 8, func.length(Study.study_date) == 8)


def _conditions(f: Filters) -> list[ColumnElement[bool]]:
    conds: list[ColumnElement[bool]] = []
    by_name = patient_name_matches(f.patient) if f.patient.strip() else None
    if by_name is not None:  # (a value with no word in it, like "*", matches everyone)
        conds.append(or_(Patient.patient_id == f.patient.strip(), by_name))
    pid = f.patient_id.strip()
    if pid.endswith("*"):
        conds.append(Patient.patient_id.startswith(pid.rstrip("*"), autoescape=True))
    elif pid:
        conds.append(Patient.patient_id == pid)
    if f.sex:
        conds.append(Patient.sex == f.sex.upper())
    if f.age_min is not None:
        conds.append(and_(_has_age(), _age() >= f.age_min))
    if f.age_max is not None:
        conds.append(and_(_has_age(), _age() <= f.age_max))
    if f.modality:
        conds.append(_has_series(Series.modality == f.modality.upper()))
    if f.body_part:
        conds.append(_has_series(func.upper(Series.body_part) == f.body_part.upper()))
    if f.institution is not None:
        conds.append(Study.institution_fk == f.institution)
    if f.date_from:
        conds.append(Study.study_date >= f.date_from)
    if f.date_to:
        conds.append(and_(Study.study_date != "", Study.study_date <= f.date_to))
    if f.accession:
        conds.append(Study.accession_number == f.accession)
    report = aliased(Report)  # the row query joins Report itself
    unreported = ~exists().where(report.study_fk == Study.id)
    if f.status == "unread":
        conds += [unreported, ~_ai_done()]
    elif f.status == "ai_done":
        conds += [unreported, _ai_done()]
    elif f.status:
        states = STATUS[f.status]
        assert states is not None
        conds.append(exists().where(report.study_fk == Study.id, report.status.in_(states)))
    return conds


def _ai_done() -> ColumnElement[bool]:
    """An analysis module has a result on one of the study's series."""
    return exists().where(AnalysisResult.study_fk == Study.id)


def _has_series(cond: ColumnElement[bool]) -> ColumnElement[bool]:
    return exists().where(Series.study_fk == Study.id, cond)


def _order(sort: str) -> list[Any]:
    key, desc = sort.lstrip("-"), sort.startswith("-")
    column = {
        "date": Study.study_date,
        "name": Patient.patient_name,
        "patient_id": Patient.patient_id,
        "accession": Study.accession_number,
        "description": Study.study_description,
    }[key]
    first = column.desc() if desc else column.asc()
    second = Study.study_time.desc() if desc else Study.study_time.asc()
    return [first, second, Study.id.desc()]


def studies(archive: Archive, f: Filters, *, principal: Principal) -> Page:
    """One page of the studies ``principal`` may see that match ``f``."""
    f.check()
    conds = [study_filter(principal), *_conditions(f)]
    base = select(Study.id).join(Patient, Patient.id == Study.patient_fk).where(*conds)
    with archive.read() as conn:
        total = int(conn.scalar(select(func.count()).select_from(base.subquery())) or 0)
        rows = conn.execute(
            select(
                Study.id, Study.study_uid, Study.study_date, Study.study_time,
                Study.accession_number, Study.study_description, Study.institution_fk,
                Patient.patient_id, Patient.patient_name, Patient.sex, Patient.birth_date,
                case((_has_age(), _age()), else_=literal(None)).label("age"),
                Report.status.label("report_status"), Report.critical,
                _ai_done().label("ai_done"),
                Institution.name.label("institution_name"),
            )
            .join(Patient, Patient.id == Study.patient_fk)
            .outerjoin(Report, Report.study_fk == Study.id)
            .outerjoin(Institution, Institution.id == Study.institution_fk)
            .where(*conds)
            .order_by(*_order(f.sort))
            .limit(f.limit)
            .offset(f.offset)
        ).all()  # fmt: skip
        ids = [r.id for r in rows]
        series = _series_summary(conn, ids)
    return Page(total, [_item(r, series.get(r.id, {})) for r in rows])


def _series_summary(conn: Any, study_ids: list[int]) -> dict[int, dict[str, Any]]:
    """Modalities, body parts and series count of each study."""
    out: dict[int, dict[str, Any]] = {}
    if not study_ids:
        return out
    for study_fk, modality, body_part in conn.execute(
        select(Series.study_fk, Series.modality, Series.body_part).where(
            Series.study_fk.in_(study_ids)
        )
    ):
        s = out.setdefault(study_fk, {"modalities": [], "body_parts": [], "series": 0})
        s["series"] += 1
        if modality and modality not in s["modalities"]:
            s["modalities"].append(modality)
        if body_part and body_part.upper() not in s["body_parts"]:
            s["body_parts"].append(body_part.upper())
    return out


def _item(r: Any, series: dict[str, Any]) -> dict[str, Any]:
    if r.report_status is None:
        status = "ai_done" if r.ai_done else "unread"
    elif r.report_status in ("final", "amended"):
        status = "signed"
    else:
        status = "in_progress"
    return {
        "study_uid": r.study_uid,
        "study_date": r.study_date,
        "study_time": r.study_time,
        "accession_number": r.accession_number,
        "description": r.study_description,
        "patient_id": r.patient_id,
        "patient_name": r.patient_name,
        "sex": r.sex,
        "age": r.age,
        "modalities": sorted(series.get("modalities", [])),
        "body_parts": sorted(series.get("body_parts", [])),
        "series": series.get("series", 0),
        "institution": {"id": r.institution_fk, "name": r.institution_name or ""},
        "status": status,
        "report_status": r.report_status,
        "critical": bool(r.critical),
        "ai_done": bool(r.ai_done),
    }
