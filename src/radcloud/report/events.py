"""The report outbox: events other parts consume (critical-finding notices, HL7 ORU later).

An event row is written in the same transaction as the change it announces,
so a consumer never misses one and never sees one for a change that did not
happen.  Two ways to consume:

* :func:`consume` — a named, durable consumer reads events after its cursor
  (the HL7 ORU sender, an SMS gateway); the cursor moves only when its
  handler returned, so a crash means at-least-once delivery.
* :func:`subscribe` — an in-process callback run after commit on the node
  that made the change (metrics, a websocket push); errors are logged only.

Kinds: ``report.created``, ``report.preliminary``, ``report.returned``,
``report.final``, ``report.amended``, ``report.critical`` (a critical finding
to communicate: listed by :func:`notifications` until acknowledged).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import Connection, insert, select, update

from radcloud.archive.service import Archive
from radcloud.errors import NotFound
from radcloud.report.models import ReportEvent, ReportEventCursor
from radcloud.store.db import as_utc

log = logging.getLogger(__name__)

KINDS = (
    "report.created",
    "report.preliminary",
    "report.returned",
    "report.final",
    "report.amended",
    "report.critical",
)


@dataclass(frozen=True)
class Event:
    id: int
    kind: str
    study_uid: str
    accession_number: str
    version: int
    institution_id: int
    payload: dict[str, Any]
    created_at: datetime | None
    acknowledged_by: str = ""
    acknowledged_at: datetime | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id, "kind": self.kind, "study_uid": self.study_uid,
            "accession_number": self.accession_number, "version": self.version,
            "institution_id": self.institution_id, "payload": self.payload,
            "created_at": self.created_at, "acknowledged_by": self.acknowledged_by,
            "acknowledged_at": self.acknowledged_at,
        }  # fmt: skip


Subscriber = Callable[[Event], None]
_subscribers: list[tuple[str, Subscriber]] = []


def subscribe(kind: str, fn: Subscriber) -> Callable[[], None]:
    """Call ``fn(event)`` after each committed ``kind`` event ('*': all); returns unsubscribe."""
    entry = (kind, fn)
    _subscribers.append(entry)
    return lambda: _subscribers.remove(entry) if entry in _subscribers else None


def add(conn: Connection, kind: str, *, report_id: int, version: int, institution_id: int,
        study_uid: str, accession_number: str, payload: dict[str, Any]) -> int:  # fmt: skip
    """Write one event inside the caller's transaction; returns its id."""
    assert kind in KINDS, kind
    return int(
        conn.execute(
            insert(ReportEvent).values(
                kind=kind, report_fk=report_id, version=version, institution_fk=institution_id,
                study_uid=study_uid, accession_number=accession_number,
                payload=orjson.dumps(payload).decode(), created_at=datetime.now(UTC),
                acknowledged_by="",
            ).returning(ReportEvent.id)
        ).scalar_one()
    )  # fmt: skip


def _event(r: Any) -> Event:
    return Event(
        r.id, r.kind, r.study_uid, r.accession_number, r.version, r.institution_fk,
        orjson.loads(r.payload or "{}"), as_utc(r.created_at), r.acknowledged_by or "",
        as_utc(r.acknowledged_at),
    )  # fmt: skip


def published(archive: Archive, ids: list[int]) -> None:
    """Run the in-process subscribers for events just committed (errors logged, never raised)."""
    if not ids or not _subscribers:
        return
    with archive.read() as conn:
        rows = conn.execute(select(ReportEvent).where(ReportEvent.id.in_(ids))).all()
    for ev in sorted((_event(r) for r in rows), key=lambda e: e.id):
        for kind, fn in list(_subscribers):
            if kind in ("*", ev.kind):
                try:
                    fn(ev)
                except Exception:
                    log.exception("report event subscriber %r failed on event %d", fn, ev.id)


def read(
    archive: Archive, *, after: int = 0, limit: int = 100, kinds: tuple[str, ...] = (),
    institution_ids: frozenset[int] | None = None,
) -> list[Event]:  # fmt: skip
    """Events with id > ``after``, oldest first (of ``institution_ids`` when given)."""
    stmt = select(ReportEvent).where(ReportEvent.id > after).order_by(ReportEvent.id).limit(limit)
    if kinds:
        stmt = stmt.where(ReportEvent.kind.in_(kinds))
    if institution_ids is not None:
        stmt = stmt.where(ReportEvent.institution_fk.in_(sorted(institution_ids)))
    with archive.read() as conn:
        return [_event(r) for r in conn.execute(stmt)]


def consume(
    archive: Archive, consumer: str, handler: Callable[[Event], None], *, limit: int = 100
) -> int:
    """Hand the events after ``consumer``'s cursor to ``handler``, moving the cursor as it goes.

    Returns how many were handled.  An exception from ``handler`` stops the run
    with the cursor before that event, so it is offered again next time.
    """
    with archive.read() as conn:
        after = conn.scalar(
            select(ReportEventCursor.last_id).where(ReportEventCursor.consumer == consumer)
        )
    if after is None:
        with archive.write() as conn:
            conn.execute(insert(ReportEventCursor).values(consumer=consumer, last_id=0))
        after = 0
    handled = 0
    for ev in read(archive, after=after, limit=limit):
        handler(ev)
        with archive.write() as conn:
            conn.execute(
                update(ReportEventCursor)
                .where(ReportEventCursor.consumer == consumer)
                .values(last_id=ev.id)
            )
        handled += 1
    return handled


def notifications(
    archive: Archive, institution_ids: frozenset[int], *, include_acknowledged: bool = False
) -> list[Event]:
    """Critical-finding notices of these institutions, newest first."""
    stmt = (
        select(ReportEvent)
        .where(ReportEvent.kind == "report.critical",
               ReportEvent.institution_fk.in_(sorted(institution_ids)))
        .order_by(ReportEvent.id.desc())
        .limit(500)
    )  # fmt: skip
    if not include_acknowledged:
        stmt = stmt.where(ReportEvent.acknowledged_at.is_(None))
    with archive.read() as conn:
        return [_event(r) for r in conn.execute(stmt)]


def acknowledge(
    archive: Archive, event_id: int, who: str, institution_ids: frozenset[int]
) -> Event:
    """Record that ``who`` has taken note of a critical finding (first acknowledgement kept)."""
    with archive.write() as conn:
        row = conn.execute(
            select(ReportEvent).where(
                ReportEvent.id == event_id, ReportEvent.kind == "report.critical",
                ReportEvent.institution_fk.in_(sorted(institution_ids)),
            )
        ).first()  # fmt: skip
        if row is None:
            raise NotFound(f"no critical-finding notice {event_id}")
        if row.acknowledged_at is None:
            conn.execute(
                update(ReportEvent).where(ReportEvent.id == event_id)
                .values(acknowledged_by=who[:128], acknowledged_at=datetime.now(UTC))
            )  # fmt: skip
        row = conn.execute(select(ReportEvent).where(ReportEvent.id == event_id)).one()
    return _event(row)
