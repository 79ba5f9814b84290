"""Publishing a study to its patient when the report is signed.

:func:`install` subscribes to the report outbox (:mod:`radcloud.report.events`):
after a ``report.final`` event commits, the durable consumer ``share-publish``
reads the events after its cursor and, for each signed report whose study
matches the rules (``share_publish_modalities`` / ``share_publish_departments``,
empty = all), creates the patient's own link (identified, ``kind`` patient,
``scope`` patient, ``share_patient_days`` long) and texts it to the patient when
the phone is known (PatientTelephoneNumbers as received).  The link opens the
patient's exam history at the institution: every study published to them (this
one and those before, and those published later while it lasts).

Each newly signed exam gets a fresh link and its own SMS rather than the old
link again: the index keeps only a token's SHA-256, so an earlier link's URL
cannot be texted again without storing tokens; a fresh link also runs its full
``share_patient_days`` from the newest exam, while the earlier links keep
working (they show the new exam too) until they expire.  The identity check is the last
four digits of that phone, or of the patient ID when there is no phone.
A study is published once: a later amendment or a repeated delivery of the
event finds the published link and does nothing.  Failures are logged and
audited; they never undo the signature.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

import orjson
from sqlalchemy import func, insert, select
from sqlalchemy.exc import IntegrityError

from radcloud.archive.service import Archive
from radcloud.auth import audit
from radcloud.auth.access import system
from radcloud.errors import InvalidRequest, RadcloudError
from radcloud.report import events
from radcloud.report.models import ReportEvent, ReportEventCursor
from radcloud.share import links, sms
from radcloud.share.models import Share
from radcloud.store.models import Instance, Patient, Series, Study

log = logging.getLogger(__name__)

CONSUMER = "share-publish"
PUBLISHER = links.PUBLISHER
DEPARTMENT_TAG = "00081040"  # InstitutionalDepartmentName


def link_url(base: str, token: str) -> str:
    """The patient's URL of a link (``/s?t=``: the entry page asks the identity question)."""
    return f"{base.rstrip('/')}/s?t={token}"


def base_url(archive: Archive) -> str:
    s = archive.settings
    return s.public_url or f"http://localhost:{s.http_port}"


def _wanted(rule: str, values: set[str]) -> bool:
    names = {v.strip().upper() for v in rule.split(",") if v.strip()}
    return not names or bool(names & {v.upper() for v in values})


def _study(archive: Archive, study_uid: str) -> Any:
    with archive.read() as conn:
        row = conn.execute(
            select(Study.id, Study.study_description, Patient.patient_name)
            .join(Patient, Patient.id == Study.patient_fk).where(Study.study_uid == study_uid)
        ).first()  # fmt: skip
        if row is None:
            return None, set(), set()
        mods = set(conn.scalars(select(Series.modality).where(Series.study_fk == row.id)))
        metas = conn.scalars(
            select(Instance.metadata_json).join(Series, Instance.series_fk == Series.id)
            .where(Series.study_fk == row.id).limit(50)
        )  # fmt: skip
        depts = {
            str(v) for text in metas
            for v in orjson.loads(text or "{}").get(DEPARTMENT_TAG, {}).get("Value") or []
        }  # fmt: skip
    return row, {m for m in mods if m}, depts


def _published_before(archive: Archive, study_id: int) -> bool:
    with archive.read() as conn:
        return conn.scalar(
            select(Share.id).where(Share.study_fk == study_id, Share.kind == "patient",
                                   Share.created_by == PUBLISHER).limit(1)
        ) is not None  # fmt: skip


def _given_name(pn: str) -> str:
    """A Chinese name (ideographic group) or the family name part, for the greeting."""
    groups = pn.split("=")
    name = groups[1] if len(groups) > 1 and groups[1] else groups[0]
    return name.replace("^", "")


def publish_study(archive: Archive, study_uid: str, *, phone: str | None = None) -> dict[str, Any]:
    """Create the patient's link for a study and text it; what was done, for callers and tests."""
    row, mods, depts = _study(archive, study_uid)
    s = archive.settings
    if row is None:
        return {"published": False, "reason": "no such study"}
    if not (_wanted(s.share_publish_modalities, mods)
            and _wanted(s.share_publish_departments, depts)):  # fmt: skip
        return {"published": False, "reason": "not in the publishing rules"}
    if _published_before(archive, row.id):
        return {"published": False, "reason": "published before"}
    number = phone or links.patient_phone(archive, row.id)
    try:
        number = sms.normalise(number) if number else ""
    except InvalidRequest:
        number = ""
    who = system(PUBLISHER)
    created = links.create(
        archive, who, study_uid, kind="patient", deidentify=False, scope="patient",
        hours=s.share_patient_days * 24, verify="phone4" if number else "id4", phone=number,
    )  # fmt: skip
    out: dict[str, Any] = {"published": True, "share": created.share, "sms": False,
                           "url": link_url(base_url(archive), created.token)}  # fmt: skip
    if number:
        text = sms.message("published", sign=s.sms_sign, url=out["url"],
                           until=created.share["expires_at"], name=_given_name(row.patient_name),
                           exam=row.study_description)  # fmt: skip
        try:
            sms.provider(s).send(number, text)
            out["sms"] = True
        except RadcloudError as exc:
            log.warning("study %s published, but the SMS failed: %s", study_uid, exc.detail)
        audit.record(archive, who, "share.sms", audit.SUCCESS if out["sms"] else audit.FAILED,
                     study_uid=study_uid, target=f"share:{created.share['id']}",
                     detail={"phone": sms.mask(number)})  # fmt: skip
    return out


def handle(archive: Archive, ev: events.Event) -> None:
    """The consumer's handler: publish on a first signature, ignore everything else."""
    if ev.kind != "report.final" or not archive.settings.share_publish_on_sign:
        return
    try:
        publish_study(archive, ev.study_uid)
    except RadcloudError as exc:
        log.warning("publishing study %s to its patient failed: %s", ev.study_uid, exc.detail)


def drain(archive: Archive) -> int:
    """Handle the outbox events after the consumer's cursor (one drain at a time per node)."""
    lock = archive.caches.setdefault("share.publish.lock", threading.Lock())
    with lock:
        return events.consume(archive, CONSUMER, lambda ev: handle(archive, ev))


def _start_cursor(archive: Archive) -> None:
    """A new consumer starts after the events already there: installing the feature on an
    archive with signed reports must not text every patient of the past."""
    with archive.read() as conn:
        known = conn.scalar(
            select(ReportEventCursor.last_id).where(ReportEventCursor.consumer == CONSUMER)
        )
    if known is not None:
        return
    try:
        with archive.write() as conn:
            last = conn.scalar(select(func.max(ReportEvent.id))) or 0
            conn.execute(insert(ReportEventCursor).values(consumer=CONSUMER, last_id=last))
    except IntegrityError:  # another node started it first
        pass


def install(archive: Archive) -> Callable[[], None]:
    """Drain after every committed ``report.final`` of this archive (once per archive)."""
    if "share.publish.installed" in archive.caches:
        return archive.caches["share.publish.installed"]

    def on_final(_ev: events.Event) -> None:
        if archive.caches.get("share.publish.installed") is not None:
            drain(archive)

    _start_cursor(archive)
    unsubscribe = events.subscribe("report.final", on_final)

    def remove() -> None:
        unsubscribe()
        archive.caches.pop("share.publish.installed", None)

    archive.caches["share.publish.installed"] = remove
    archive.on_close.append(remove)
    return remove
