"""The report workflow: draft → preliminary → final (signed) → amended.

One report per study.  Every change appends an immutable
:class:`~radcloud.report.models.ReportVersion`; a signed version is never
changed again (an amendment is a new, signed version with a reason).  A
resident (``report.write``) writes and submits for review; an attending
(``report.sign``) returns it with a comment or signs it.  One editor at a
time: saving takes the report's lock, which expires by itself after
:data:`LOCK_SECONDS` unless renewed.

Readers without ``report.write`` see only signed versions.  A study the
caller cannot see answers :class:`~radcloud.errors.NotFound` like one that
does not exist.
"""

from __future__ import annotations

import copy
import hashlib
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import Connection, insert, select, update

from radcloud.archive.service import Archive
from radcloud.auth import audit
from radcloud.auth.access import Principal, study_filter
from radcloud.auth.permissions import Perm
from radcloud.errors import BadQuery, InvalidRequest, NotFound
from radcloud.report import events, prefill
from radcloud.report import templates as tpl
from radcloud.report.errors import ReportLocked, StaleVersion, WrongState
from radcloud.report.models import Report, ReportTemplate, ReportVersion
from radcloud.store.db import as_utc
from radcloud.store.models import Instance, Patient, Series, Study, User

log = logging.getLogger(__name__)

LOCK_SECONDS = 600
DRAFT, PRELIMINARY, FINAL, AMENDED = "draft", "preliminary", "final", "amended"
SIGNED = (FINAL, AMENDED)
SIGNED_ACTIONS = ("sign", "amend")
KEY_IMAGE_MODES = ("original", "screenshot")
#: Series that are documents about the images (reports, key objects), not the exam itself.
NON_IMAGE_MODALITIES = frozenset({"SR", "DOC", "KO", "PR", "SEG", "REG"})


# ------------------------------------------------------------------ views


@dataclass(frozen=True)
class StudyInfo:
    """The patient and study a report is about (its header)."""

    study_id: int
    study_uid: str
    institution_id: int
    accession_number: str
    study_date: str
    study_time: str
    study_description: str
    referring_physician: str
    institution_name: str
    patient_name: str
    patient_id: str
    patient_sex: str
    patient_birth_date: str
    modalities: tuple[str, ...]


def _json(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()


def _now() -> datetime:
    return datetime.now(UTC)


def _version_dict(v: Any) -> dict[str, Any]:
    return {
        "version": v.version, "action": v.action, "status": v.status,
        "content": orjson.loads(v.content), "content_sha256": v.content_sha256,
        "user": v.user_name, "reason": v.reason, "created_at": as_utc(v.created_at),
    }  # fmt: skip


def _lock_dict(r: Any, now: datetime) -> dict[str, Any] | None:
    exp = as_utc(r.lock_expires_at)
    if not r.lock_holder or exp is None or exp <= now:
        return None
    return {"holder": r.lock_holder, "user_id": r.lock_user_fk, "expires_at": exp}


def _report_dict(r: Any, info: StudyInfo, version: Any) -> dict[str, Any]:
    content = orjson.loads(version.content)
    return {
        "study_uid": info.study_uid, "accession_number": info.accession_number,
        "patient_id": info.patient_id, "patient_name": info.patient_name,
        "status": r.status, "version": version.version, "latest_version": r.version,
        "template": r.template, "author": r.author, "signer": r.signer,
        "signed_at": as_utc(r.signed_at), "critical": bool(r.critical),
        "lock": _lock_dict(r, _now()), "content": content,
        "ai_pending": prefill.pending(content),
        "sr_sop_uid": r.sr_sop_uid, "pdf_sop_uid": r.pdf_sop_uid,
        "created_at": as_utc(r.created_at), "updated_at": as_utc(r.updated_at),
    }  # fmt: skip


def sees_drafts(p: Principal) -> bool:
    return p.can(Perm.REPORT_WRITE) or p.can(Perm.REPORT_SIGN)


# ------------------------------------------------------------------ study and templates


def study_info(conn: Connection, p: Principal, study_uid: str) -> StudyInfo:
    row = conn.execute(
        select(Study.id, Study.study_uid, Study.institution_fk, Study.accession_number,
               Study.study_date, Study.study_time, Study.study_description,
               Study.referring_physician, Study.institution_name, Patient.patient_name,
               Patient.patient_id, Patient.sex, Patient.birth_date)
        .join(Patient, Patient.id == Study.patient_fk)
        .where(Study.study_uid == study_uid, study_filter(p))
    ).first()  # fmt: skip
    if row is None:
        raise NotFound("no such study in the archive")
    mods = conn.scalars(select(Series.modality).where(Series.study_fk == row.id).distinct())
    images = sorted(m for m in mods if m and m not in NON_IMAGE_MODALITIES)
    return StudyInfo(*row, tuple(images))  # type: ignore[arg-type, call-arg]


def check_study(archive: Archive, p: Principal, study_uid: str) -> None:
    """:class:`NotFound` unless ``p`` may see the study."""
    with archive.read() as conn:
        study_info(conn, p, study_uid)


def templates(archive: Archive, p: Principal) -> dict[str, dict[str, Any]]:
    """Built-in templates plus the caller's institution's own (which override by name)."""
    out = {name: copy.deepcopy(t) for name, t in tpl.BUILTIN_TEMPLATES.items()}
    for t in out.values():
        t["builtin"] = True
    with archive.read() as conn:
        rows = conn.execute(
            select(ReportTemplate.definition, ReportTemplate.institution_fk)
            .where(ReportTemplate.institution_fk.in_(sorted(p.institution_ids)))
            .order_by(ReportTemplate.institution_fk != p.institution_id)
        ).all()  # fmt: skip
    for row in reversed(rows):  # the caller's own institution wins over a parent's
        t = orjson.loads(row.definition)
        out[t["name"]] = {**t, "builtin": False}
    return out


def save_template(archive: Archive, p: Principal, definition: Any) -> dict[str, Any]:
    """Add or replace a template of the caller's institution."""
    p.require(Perm.TEMPLATES_MANAGE)
    t = tpl.check_template(definition)
    now = _now()
    with archive.write() as conn:
        done = conn.execute(
            update(ReportTemplate)
            .where(ReportTemplate.institution_fk == p.institution_id,
                   ReportTemplate.name == t["name"])
            .values(definition=_json(t), updated_by=p.name[:128], updated_at=now)
        ).rowcount  # fmt: skip
        if not done:
            conn.execute(
                insert(ReportTemplate).values(
                    institution_fk=p.institution_id, name=t["name"], definition=_json(t),
                    updated_by=p.name[:128], updated_at=now,
                )
            )  # fmt: skip
    audit.record(archive, p, "report.template", target=t["name"])
    return {**t, "builtin": False}


def _template(archive: Archive, p: Principal, name: str) -> dict[str, Any]:
    known = templates(archive, p)
    if name not in known:
        raise InvalidRequest(f"no report template {name!r} (templates: {', '.join(known)})")
    return known[name]


def suggest_template(archive: Archive, p: Principal, study_uid: str) -> str:
    with archive.read() as conn:
        info = study_info(conn, p, study_uid)
    return tpl.suggest(templates(archive, p), set(info.modalities), info.study_description)


# ------------------------------------------------------------------ reading


def _report_row(conn: Connection, study_id: int, *, for_update: bool = False) -> Any:
    stmt = select(Report).where(Report.study_fk == study_id)
    if for_update:
        stmt = stmt.with_for_update()
    return conn.execute(stmt).first()


def _version_row(conn: Connection, report_id: int, version: int | None, signed: bool) -> Any:
    stmt = select(ReportVersion).where(ReportVersion.report_fk == report_id)
    if version is not None:
        stmt = stmt.where(ReportVersion.version == version)
    if signed:
        stmt = stmt.where(ReportVersion.action.in_(SIGNED_ACTIONS))
    return conn.execute(stmt.order_by(ReportVersion.version.desc()).limit(1)).first()


def get(
    archive: Archive, p: Principal, study_uid: str, version: int | None = None
) -> dict[str, Any] | None:
    """The study's report (latest or ``version``) as the caller may see it; None if none."""
    p.require(Perm.REPORT_READ)
    with archive.read() as conn:
        info = study_info(conn, p, study_uid)
        r = _report_row(conn, info.study_id)
        if r is None:
            return None
        v = _version_row(conn, r.id, version, signed=not sees_drafts(p))
    if v is None:
        if version is not None:
            raise NotFound(f"the report has no version {version} you may read")
        return None
    return _report_dict(r, info, v)


def require(archive: Archive, p: Principal, study_uid: str, version: int | None = None) -> Any:
    """Like :func:`get`, but a missing report is a :class:`WrongState` (the study exists)."""
    report = get(archive, p, study_uid, version)
    if report is None:
        raise WrongState("the study has no report" + ("" if sees_drafts(p) else " signed yet"))
    return report


def versions(archive: Archive, p: Principal, study_uid: str) -> list[dict[str, Any]]:
    """Every version the caller may read, oldest first (signed ones only for readers)."""
    p.require(Perm.REPORT_READ)
    with archive.read() as conn:
        info = study_info(conn, p, study_uid)
        r = _report_row(conn, info.study_id)
        if r is None:
            return []
        stmt = select(ReportVersion).where(ReportVersion.report_fk == r.id)
        if not sees_drafts(p):
            stmt = stmt.where(ReportVersion.action.in_(SIGNED_ACTIONS))
        rows = conn.execute(stmt.order_by(ReportVersion.version)).all()
    return [_version_dict(v) for v in rows]


def find(
    archive: Archive, p: Principal, *, accession: str | None = None,
    patient_id: str | None = None, study_uid: str | None = None, status: str | None = None,
    limit: int = 100,
) -> list[dict[str, Any]]:  # fmt: skip
    """Reports of the studies the caller sees, by accession, patient ID, study or status.

    Readers without ``report.write`` get signed reports only (the latest signed
    version); that is what HIS/EMR integrations fetch.
    """
    p.require(Perm.REPORT_READ)
    if limit < 1 or limit > 1000:
        raise BadQuery("limit must be 1..1000")
    stmt = (
        select(Study.study_uid)
        .join(Report, Report.study_fk == Study.id)
        .join(Patient, Patient.id == Study.patient_fk)
        .where(study_filter(p))
        .order_by(Report.updated_at.desc())
        .limit(limit)
    )
    if accession:
        stmt = stmt.where(Study.accession_number == accession)
    if patient_id:
        stmt = stmt.where(Patient.patient_id == patient_id)
    if study_uid:
        stmt = stmt.where(Study.study_uid == study_uid)
    if status:
        stmt = stmt.where(Report.status == status)
    if not sees_drafts(p):
        stmt = stmt.where(Report.signed_at.is_not(None))
    with archive.read() as conn:
        uids = list(conn.scalars(stmt))
    found = (get(archive, p, uid) for uid in uids)
    return [r for r in found if r is not None]


# ------------------------------------------------------------------ content


def blank_content(template: dict[str, Any]) -> dict[str, Any]:
    return {
        "template": template["name"],
        "fields": {f["key"]: None for f in template["fields"]},
        "marks": {},
        "key_images": [],
        "critical": {"flag": False, "note": ""},
    }


def _check_key_images(conn: Connection, study_id: int, refs: Any) -> list[dict[str, Any]]:
    if not isinstance(refs, list) or len(refs) > 64:
        raise InvalidRequest("key_images: a list of at most 64 references")
    out = []
    for ref in refs:
        if not isinstance(ref, dict) or not isinstance(ref.get("sop_uid"), str):
            raise InvalidRequest("each key image names an instance: {sop_uid, frame}")
        frame = ref.get("frame", 1)
        mode = ref.get("mode", "original")
        if not isinstance(frame, int) or frame < 1 or mode not in KEY_IMAGE_MODES:
            raise InvalidRequest("key image: frame is a number from 1; mode original|screenshot")
        row = conn.execute(
            select(Instance.sop_class_uid, Series.series_uid, Instance.number_of_frames)
            .join(Series, Series.id == Instance.series_fk)
            .where(Instance.sop_uid == ref["sop_uid"], Series.study_fk == study_id)
        ).first()  # fmt: skip
        if row is None or frame > int(row.number_of_frames or 1):
            raise InvalidRequest(f"key image {ref['sop_uid']} frame {frame} is not in this study")
        window = ref.get("window")
        if window is not None and not (
            isinstance(window, list) and len(window) == 2
            and all(isinstance(x, int | float) for x in window) and window[1] > 0
        ):  # fmt: skip
            raise InvalidRequest("key image window: [center, width] with width > 0")
        caption = ref.get("caption", "")
        if not isinstance(caption, str) or len(caption) > 255:
            raise InvalidRequest("key image caption: text of at most 255 characters")
        item = {"sop_uid": ref["sop_uid"], "sop_class_uid": row.sop_class_uid,
                "series_uid": row.series_uid, "frame": frame, "mode": mode,
                "caption": caption, "window": window}  # fmt: skip
        if ref.get("source"):
            item["source"] = str(ref["source"])[:128]
        out.append(item)
    return out


def _apply_edit(
    conn: Connection, study_id: int, template: dict[str, Any], content: dict[str, Any],
    edit: dict[str, Any],
) -> dict[str, Any]:  # fmt: skip
    """``content`` with ``edit`` ({fields, key_images, critical, accept}) applied and checked."""
    out = copy.deepcopy(content)
    fields = tpl.field_map(template)
    changes = edit.get("fields") or {}
    if not isinstance(changes, dict):
        raise InvalidRequest("fields: an object of field key -> value")
    for key, value in changes.items():
        if key not in fields:
            raise InvalidRequest(f"template {template['name']} has no field {key!r}")
        out["fields"][key] = tpl.check_value(fields[key], value)
    if edit.get("key_images") is not None:
        out["key_images"] = _check_key_images(conn, study_id, edit["key_images"])
    critical = edit.get("critical")
    if critical is not None:
        if not isinstance(critical, dict) or not isinstance(critical.get("flag"), bool):
            raise InvalidRequest('critical: {"flag": true|false, "note": "..."}')
        note = critical.get("note") or ""
        if not isinstance(note, str) or len(note) > 2000:
            raise InvalidRequest("critical note: text of at most 2000 characters")
        out["critical"] = {"flag": critical["flag"], "note": note}
    accept = edit.get("accept") or []
    if not isinstance(accept, list):
        raise InvalidRequest("accept: a list of field keys whose AI value is accepted")
    prefill.review(out, [str(a) for a in accept])
    return out


def missing_required(template: dict[str, Any], content: dict[str, Any]) -> list[str]:
    return [f["key"] for f in template["fields"]
            if f.get("required") and content["fields"].get(f["key"]) in (None, "")]  # fmt: skip


# ------------------------------------------------------------------ writing


def _user_label(archive: Archive, p: Principal) -> str:
    if p.user_id is None:
        return p.name
    with archive.read() as conn:
        name = conn.scalar(select(User.display_name).where(User.id == p.user_id))
    return (name or p.name)[:128]


def _is_holder(r: Any, p: Principal) -> bool:
    if p.user_id is not None:
        return bool(r.lock_user_fk == p.user_id)
    return r.lock_user_fk is None and r.lock_holder == p.name


def _check_lock(r: Any, p: Principal, now: datetime) -> None:
    lock = _lock_dict(r, now)
    if lock is not None and not _is_holder(r, p):
        until = f"{lock['expires_at']:%H:%M:%S} UTC"
        raise ReportLocked(f"{lock['holder']} is editing this report (lock until {until})")


def _lock_values(p: Principal, now: datetime, ttl: float) -> dict[str, Any]:
    return {"lock_user_fk": p.user_id, "lock_holder": p.name[:128],
            "lock_expires_at": now + timedelta(seconds=ttl)}  # fmt: skip


_UNLOCKED = {"lock_user_fk": None, "lock_holder": "", "lock_expires_at": None}


@dataclass
class _Change:
    """What one workflow step writes: a version, report columns, events."""

    action: str
    status: str
    content: dict[str, Any]
    reason: str = ""
    report_values: dict[str, Any] | None = None
    event_kinds: tuple[str, ...] = ()


def _append(
    conn: Connection, r: Any, info: StudyInfo, p: Principal, label: str, ch: _Change
) -> tuple[int, list[int]]:
    """Write ``ch`` as the next version of ``r``; returns (version, event ids)."""
    version = r.version + 1
    text = _json(ch.content)
    now = _now()
    conn.execute(
        insert(ReportVersion).values(
            report_fk=r.id, version=version, action=ch.action, status=ch.status, content=text,
            content_sha256=hashlib.sha256(text.encode()).hexdigest(), user_fk=p.user_id,
            user_name=label, reason=ch.reason, created_at=now,
        )
    )  # fmt: skip
    values = {"version": version, "status": ch.status, "updated_at": now,
              **(ch.report_values or {})}  # fmt: skip
    critical = bool(ch.content["critical"]["flag"])
    kinds = list(ch.event_kinds)
    if critical and not r.critical:
        kinds.append("report.critical")
    values["critical"] = critical
    conn.execute(update(Report).where(Report.id == r.id).values(**values))
    ids = [
        events.add(
            conn, kind, report_id=r.id, version=version, institution_id=info.institution_id,
            study_uid=info.study_uid, accession_number=info.accession_number,
            payload=_payload(kind, ch, label, info),
        )
        for kind in kinds
    ]  # fmt: skip
    return version, ids


def _payload(kind: str, ch: _Change, label: str, info: StudyInfo) -> dict[str, Any]:
    body: dict[str, Any] = {"status": ch.status, "by": label, "patient_id": info.patient_id}
    if ch.reason:
        body["reason"] = ch.reason
    if kind == "report.critical":
        body["note"] = ch.content["critical"].get("note", "")
        body["patient_name"] = info.patient_name
    return body


def _step(
    archive: Archive, p: Principal, study_uid: str, action: str, build: Any,
    *, create: dict[str, Any] | None = None,
) -> dict[str, Any]:  # fmt: skip
    """Run one workflow step in a write transaction, then publish its events and audit it."""
    label = _user_label(archive, p)

    def run() -> tuple[int, list[int]]:
        with archive.write() as conn:
            info = study_info(conn, p, study_uid)
            if create is not None:
                if _report_row(conn, info.study_id) is not None:
                    raise WrongState("the study has a report already")
                conn.execute(insert(Report).values(
                    study_fk=info.study_id, institution_fk=info.institution_id,
                    accession_number=info.accession_number, version=0, author_fk=p.user_id,
                    author=label, signer="", critical=False, sr_sop_uid="", pdf_sop_uid="",
                    created_at=_now(), updated_at=_now(), **{**_UNLOCKED, **create},
                ))  # fmt: skip
            r = _report_row(conn, info.study_id, for_update=True)
            if r is None:
                raise WrongState("the study has no report yet")
            latest = _version_row(conn, r.id, None, signed=False)
            content = orjson.loads(latest.content) if latest is not None else None
            ch: _Change = build(conn, r, info, content, label)
            return _append(conn, r, info, p, label, ch)

    version, ids = archive.retrying(run)
    events.published(archive, ids)
    audit.record(archive, p, f"report.{action}", study_uid=study_uid,
                 detail={"version": version})  # fmt: skip
    report = get(archive, p, study_uid)
    assert report is not None
    return report


def _expect_version(r: Any, base: int | None) -> None:
    if base is not None and base != r.version:
        raise StaleVersion(f"the report is at version {r.version}, the edit was based on {base}")


def create(
    archive: Archive, p: Principal, study_uid: str, template: str | None = None
) -> dict[str, Any]:
    """Start the study's report (draft, locked by its author), prefilled from AI results."""
    p.require(Perm.REPORT_WRITE)
    name = template or suggest_template(archive, p, study_uid)
    t = _template(archive, p, name)
    content = blank_content(t)
    filled = prefill.apply(content, t, prefill.results(archive, study_uid))

    def build(conn: Connection, r: Any, info: StudyInfo, _c: Any, label: str) -> _Change:
        content["key_images"] = _check_key_images(conn, info.study_id, content["key_images"])
        return _Change("create", DRAFT, content, reason=f"AI prefill: {', '.join(filled)}"
                       if filled else "", event_kinds=("report.created",))  # fmt: skip

    row = {"template": name, "status": DRAFT, **_lock_values(p, _now(), LOCK_SECONDS)}
    return _step(archive, p, study_uid, "create", build, create=row)


def save(
    archive: Archive, p: Principal, study_uid: str, edit: dict[str, Any],
    *, base_version: int | None = None,
) -> dict[str, Any]:  # fmt: skip
    """Save an edit of a draft or preliminary report (takes or renews the caller's lock)."""
    p.require(Perm.REPORT_WRITE)

    def build(conn: Connection, r: Any, info: StudyInfo, content: Any, _l: str) -> _Change:
        if r.status in SIGNED:
            raise WrongState("a signed report cannot be edited; amend it instead")
        if r.status == PRELIMINARY and not p.can(Perm.REPORT_SIGN):
            raise WrongState("the report is with the attending for review; it can be edited "
                             "again once returned")  # fmt: skip
        now = _now()
        _check_lock(r, p, now)
        _expect_version(r, base_version)
        t = _template(archive, p, r.template)
        new = _apply_edit(conn, info.study_id, t, content, edit)
        return _Change("save", r.status, new, report_values=_lock_values(p, now, LOCK_SECONDS))

    return _step(archive, p, study_uid, "save", build)


def submit(
    archive: Archive, p: Principal, study_uid: str, *, base_version: int | None = None
) -> dict[str, Any]:
    """Hand a draft to an attending for review (preliminary); releases the caller's lock."""
    p.require(Perm.REPORT_WRITE)

    def build(conn: Connection, r: Any, info: StudyInfo, content: Any, _l: str) -> _Change:
        if r.status != DRAFT:
            raise WrongState(f"only a draft can be submitted (the report is {r.status})")
        _check_lock(r, p, _now())
        _expect_version(r, base_version)
        return _Change("submit", PRELIMINARY, content, report_values=dict(_UNLOCKED),
                       event_kinds=("report.preliminary",))  # fmt: skip

    return _step(archive, p, study_uid, "submit", build)


def return_to_author(archive: Archive, p: Principal, study_uid: str, reason: str) -> dict[str, Any]:
    """An attending sends a preliminary report back to draft, saying why."""
    p.require(Perm.REPORT_SIGN)
    reason = _reason(reason, "a comment for the author")

    def build(conn: Connection, r: Any, info: StudyInfo, content: Any, _l: str) -> _Change:
        if r.status != PRELIMINARY:
            raise WrongState(f"only a preliminary report can be returned (it is {r.status})")
        _check_lock(r, p, _now())
        return _Change("return", DRAFT, content, reason=reason,
                       report_values=dict(_UNLOCKED), event_kinds=("report.returned",))  # fmt: skip

    return _step(archive, p, study_uid, "return", build)


def _reason(reason: str, what: str) -> str:
    reason = (reason or "").strip()
    if not reason or len(reason) > 2000:
        raise InvalidRequest(f"{what} is required (at most 2000 characters)")
    return reason


def _signable(t: dict[str, Any], content: dict[str, Any]) -> None:
    waiting = prefill.pending(content)
    if waiting:
        raise WrongState("AI-filled values not yet accepted or edited: " + ", ".join(waiting))
    missing = missing_required(t, content)
    if missing:
        raise InvalidRequest("required fields are empty: " + ", ".join(missing))


def sign(
    archive: Archive, p: Principal, study_uid: str, *, base_version: int | None = None,
    publish: bool = True,
) -> dict[str, Any]:  # fmt: skip
    """Sign the report final; then file its SR and PDF in the study (``publish``)."""
    p.require(Perm.REPORT_SIGN)

    def build(conn: Connection, r: Any, info: StudyInfo, content: Any, label: str) -> _Change:
        if r.status not in (DRAFT, PRELIMINARY):
            raise WrongState(f"the report is {r.status} already; amend it to change it")
        _check_lock(r, p, _now())
        _expect_version(r, base_version)
        _signable(_template(archive, p, r.template), content)
        signer = {"signer_fk": p.user_id, "signer": label, "signed_at": _now(), **_UNLOCKED}
        return _Change("sign", FINAL, content, report_values=signer,
                       event_kinds=("report.final",))  # fmt: skip

    report = _step(archive, p, study_uid, "sign", build)
    return _published(archive, p, study_uid, report) if publish else report


def amend(
    archive: Archive, p: Principal, study_uid: str, edit: dict[str, Any], reason: str,
    *, base_version: int | None = None, publish: bool = True,
) -> dict[str, Any]:  # fmt: skip
    """Change a signed report: a new signed version with ``reason``; the old one stays."""
    p.require(Perm.REPORT_SIGN)
    reason = _reason(reason, "the reason for the amendment")

    def build(conn: Connection, r: Any, info: StudyInfo, content: Any, label: str) -> _Change:
        if r.status not in SIGNED:
            raise WrongState(f"only a signed report is amended (it is {r.status}); edit it")
        _check_lock(r, p, _now())
        _expect_version(r, base_version)
        t = _template(archive, p, r.template)
        new = _apply_edit(conn, info.study_id, t, content, edit)
        _signable(t, new)
        signer = {"signer_fk": p.user_id, "signer": label, "signed_at": _now(), **_UNLOCKED}
        return _Change("amend", AMENDED, new, reason=reason, report_values=signer,
                       event_kinds=("report.amended",))  # fmt: skip

    report = _step(archive, p, study_uid, "amend", build)
    return _published(archive, p, study_uid, report) if publish else report


def _published(archive: Archive, p: Principal, study_uid: str, report: dict[str, Any]) -> Any:
    """File the signed version's SR and PDF in the study.

    The signature stands whatever happens here: a failure is logged and the
    filing queued as a job that retries with growing pauses (``report.publish``).
    """
    from radcloud.report import dicom_out

    try:
        dicom_out.publish(archive, p, study_uid)
    except Exception:
        log.exception("report of study %s signed, but filing its SR/PDF failed; retrying later",
                      study_uid)  # fmt: skip
        dicom_out.publish_later(archive, study_uid, p.describe())
        return report
    return get(archive, p, study_uid) or report


def lock(
    archive: Archive, p: Principal, study_uid: str, ttl: float = LOCK_SECONDS
) -> dict[str, Any]:
    """Take or renew the editing lock; :class:`ReportLocked` while another person holds it."""
    if not sees_drafts(p):
        p.require(Perm.REPORT_WRITE)
    now = _now()
    with archive.write() as conn:
        info = study_info(conn, p, study_uid)
        r = _report_row(conn, info.study_id, for_update=True)
        if r is None:
            raise WrongState("the study has no report yet")
        _check_lock(r, p, now)
        values = _lock_values(p, now, ttl)
        conn.execute(update(Report).where(Report.id == r.id).values(**values))
    return {"holder": values["lock_holder"], "user_id": p.user_id,
            "expires_at": values["lock_expires_at"]}  # fmt: skip


def unlock(archive: Archive, p: Principal, study_uid: str) -> None:
    """Give the lock up (only its holder can; an expired lock needs nothing)."""
    with archive.write() as conn:
        info = study_info(conn, p, study_uid)
        r = _report_row(conn, info.study_id, for_update=True)
        if r is None or not r.lock_holder:
            return
        if not _is_holder(r, p):
            _check_lock(r, p, _now())
            return
        conn.execute(update(Report).where(Report.id == r.id).values(**_UNLOCKED))


def set_outputs(archive: Archive, study_id: int, sr_uid: str, pdf_uid: str) -> None:
    with archive.write() as conn:
        conn.execute(
            update(Report).where(Report.study_fk == study_id)
            .values(sr_sop_uid=sr_uid, pdf_sop_uid=pdf_uid)
        )  # fmt: skip
