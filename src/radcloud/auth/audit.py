"""The audit trail: who did what to which study, from where, with what result.

Append-only (database triggers refuse UPDATE and DELETE) and hash-chained:
each row stores the SHA-256 of the previous row's hash and its own content, so
an edited row breaks its own hash and a deleted row breaks the link of the
next one; :func:`verify` walks the chain.  The chain cannot show rows cut off
at the end — export it (syslog, ATNA) to a separate system for that.

Events are queued and written in batches by one thread per process (every
``audit_flush_seconds``); repeated image reads of one study by one caller in a
batch are folded into one row with a count.  Security events (logins,
denials, break-the-glass, changes) are written before the call returns.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from xml.sax.saxutils import quoteattr

import orjson
from sqlalchemy import insert, select, text

from radcloud.archive.service import Archive
from radcloud.auth.access import Principal
from radcloud.store.models import AuditEvent

log = logging.getLogger(__name__)

GENESIS = "0" * 64
SUCCESS, DENIED, FAILED = "success", "denied", "failed"
_ADVISORY_KEY = 727354001  # PostgreSQL: one chain writer at a time across nodes


@dataclass
class Event:
    actor: str
    actor_kind: str
    action: str
    result: str
    institution_id: int | None = None
    study_uid: str = ""
    target: str = ""
    source: str = ""
    detail: dict[str, Any] = field(default_factory=dict)
    count: int = 1
    flagged: bool = False
    ts: datetime = field(default_factory=lambda: datetime.now(UTC))


def _text(value: str) -> str:
    """A caller-supplied value as storable text: PostgreSQL refuses NUL characters, and one
    unstorable event would hold up every event queued behind it."""
    return value.replace("\x00", "\ufffd")


def _ts_text(ts: datetime) -> str:
    ts = ts if ts.tzinfo else ts.replace(tzinfo=UTC)
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def chain_hash(prev: str, row: dict[str, Any]) -> str:
    """SHA-256 over the previous hash and the row's content, in a fixed order."""
    body = [
        prev, _ts_text(row["ts"]), row["actor"], row["actor_kind"], row["institution_fk"],
        row["action"], row["study_uid"], row["target"], row["source"], row["result"],
        row["detail"], row["count"], bool(row["flagged"]),
    ]  # fmt: skip
    return hashlib.sha256(orjson.dumps(body)).hexdigest()


class Auditor:
    """Queues events of one process and writes them to the chain in batches."""

    def __init__(self, archive: Archive) -> None:
        self.archive = archive
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._pending: list[Event] = []
        self._folded: dict[tuple[str, ...], Event] = {}
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def record(
        self,
        p: Principal | None,
        action: str,
        result: str = SUCCESS,
        *,
        study_uid: str = "",
        target: str = "",
        source: str | None = None,
        detail: dict[str, Any] | None = None,
        flagged: bool = False,
        fold: bool = False,
        wait: bool = False,
    ) -> None:
        """Queue an event; ``fold`` merges repeats in a batch, ``wait`` writes it now."""
        ev = Event(
            actor=_text(p.name if p else "anonymous")[:80],
            actor_kind=p.kind if p else "anon",
            action=action,
            result=result,
            institution_id=p.institution_id if p else None,
            study_uid=_text(study_uid)[:64],
            target=_text(target)[:255],
            source=_text(source if source is not None else (p.source if p else ""))[:64],
            detail=detail or {},
            flagged=flagged,
        )
        with self._lock:
            if fold:
                key = (ev.actor, ev.actor_kind, ev.action, ev.study_uid, ev.source, ev.result)
                if key in self._folded:
                    self._folded[key].count += 1
                    return
                self._folded[key] = ev
            self._pending.append(ev)
        if wait:
            self.flush()
        else:
            self._ensure_thread()

    def _ensure_thread(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            with self._lock:
                if self._thread is None or not self._thread.is_alive():
                    self._thread = threading.Thread(
                        target=self._run, name="audit-writer", daemon=True
                    )
                    self._thread.start()

    def _run(self) -> None:
        interval = max(0.05, self.archive.settings.audit_flush_seconds)
        while not self._stop.is_set():
            self._wake.wait(interval)
            self._wake.clear()
            try:
                self.flush()
            except Exception:
                log.exception("writing audit events failed; will retry")

    def flush(self) -> int:
        """Write every queued event now; returns how many rows were written."""
        with self._write_lock:
            with self._lock:
                batch, self._pending, self._folded = self._pending, [], {}
            if not batch:
                return 0
            try:
                self.archive.retrying(lambda: self._write(batch))
            except Exception:
                with self._lock:  # keep them for the next attempt, in order
                    self._pending[:0] = batch
                raise
            return len(batch)

    def _write(self, batch: list[Event]) -> None:
        with self.archive.write() as conn:
            if self.archive.dialect == "postgresql":
                conn.execute(text(f"SELECT pg_advisory_xact_lock({_ADVISORY_KEY})"))
            prev = (
                conn.scalar(select(AuditEvent.hash).order_by(AuditEvent.id.desc()).limit(1))
                or GENESIS
            )
            rows = []
            for ev in batch:
                row = dict(
                    ts=ev.ts, actor=ev.actor, actor_kind=ev.actor_kind,
                    institution_fk=ev.institution_id, action=ev.action, study_uid=ev.study_uid,
                    target=ev.target, source=ev.source, result=ev.result,
                    detail=orjson.dumps(ev.detail).decode() if ev.detail else "",
                    count=ev.count, flagged=ev.flagged, prev_hash=prev,
                )  # fmt: skip
                row["hash"] = prev = chain_hash(prev, row)
                rows.append(row)
            conn.execute(insert(AuditEvent), rows)

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(5)
        try:
            self.flush()
        except Exception:
            log.exception("audit events could not be written at shutdown")


_AUDITORS: dict[int, Auditor] = {}
_AUDITORS_LOCK = threading.Lock()


def auditor(archive: Archive) -> Auditor:
    """The process's auditor for ``archive`` (flushed when the archive closes)."""
    with _AUDITORS_LOCK:
        a = _AUDITORS.get(id(archive))
        if a is None or a.archive is not archive:
            a = _AUDITORS[id(archive)] = Auditor(archive)
            archive.on_close.append(a.close)
            archive.on_close.append(lambda: _AUDITORS.pop(id(archive), None))
        return a


def record(archive: Archive, p: Principal | None, action: str, result: str = SUCCESS,
           **kw: Any) -> None:  # fmt: skip
    """Shorthand for ``auditor(archive).record(...)``."""
    auditor(archive).record(p, action, result, **kw)


# ------------------------------------------------------------------ reading the trail


@dataclass(frozen=True)
class ChainReport:
    ok: bool
    checked: int
    problems: list[str]
    head: str


def verify(archive: Archive, batch: int = 5000) -> ChainReport:
    """Walk the whole chain; name each row whose content or link does not hold."""
    auditor(archive).flush()
    problems: list[str] = []
    prev, checked, last_id = GENESIS, 0, 0
    with archive.read() as conn:
        while True:
            rows = conn.execute(
                select(AuditEvent).where(AuditEvent.id > last_id).order_by(AuditEvent.id)
                .limit(batch)
            ).all()  # fmt: skip
            if not rows:
                break
            for r in rows:
                row = {c: getattr(r, c) for c in r._fields}
                if r.prev_hash != prev:
                    problems.append(
                        f"row {r.id}: its link does not match the row before it "
                        "(a row was deleted or inserted here)"
                    )
                if chain_hash(r.prev_hash, row) != r.hash:
                    problems.append(f"row {r.id}: its content was changed after it was written")
                prev, last_id = r.hash, r.id
                checked += 1
    return ChainReport(not problems, checked, problems, prev)


def search(
    archive: Archive,
    p: Principal,
    *,
    actor: str | None = None,
    study_uid: str | None = None,
    action: str | None = None,
    result: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    flagged: bool | None = None,
    limit: int = 100,
    offset: int = 0,
) -> list[dict[str, Any]]:
    """Events ``p`` may read (its institutions'; all for a platform auditor), newest first."""
    auditor(archive).flush()
    stmt = select(AuditEvent).order_by(AuditEvent.id.desc()).limit(min(limit, 1000)).offset(offset)
    if not p.is_platform:
        stmt = stmt.where(AuditEvent.institution_fk.in_(sorted(p.institution_ids)))
    for column, value in (
        (AuditEvent.actor, actor), (AuditEvent.study_uid, study_uid),
        (AuditEvent.action, action), (AuditEvent.result, result), (AuditEvent.flagged, flagged),
    ):  # fmt: skip
        if value is not None:
            stmt = stmt.where(column == value)
    if since is not None:
        stmt = stmt.where(AuditEvent.ts >= since)
    if until is not None:
        stmt = stmt.where(AuditEvent.ts < until)
    with archive.read() as conn:
        return [_as_dict(r) for r in conn.execute(stmt)]


def _as_dict(r: Any) -> dict[str, Any]:
    return dict(
        id=r.id, ts=_ts_text(r.ts), actor=r.actor, actor_kind=r.actor_kind,
        institution_id=r.institution_fk, action=r.action, study_uid=r.study_uid,
        target=r.target, source=r.source, result=r.result,
        detail=orjson.loads(r.detail) if r.detail else {}, count=r.count, flagged=r.flagged,
        hash=r.hash,
    )  # fmt: skip


# ------------------------------------------------------------------ ATNA export

#: DICOM PS3.16 CID 400 audit event IDs (scheme DCM) and action codes by action prefix.
_EVENT_ID = {
    "login": ("110114", "User Authentication", "E"),
    "logout": ("110114", "User Authentication", "E"),
    "study.search": ("110112", "Query", "E"),
    "study.store": ("110104", "DICOM Instances Transferred", "C"),
    "study.export": ("110106", "Export", "R"),
    "study.download": ("110106", "Export", "R"),
    "study.move": ("110104", "DICOM Instances Transferred", "R"),
    "study.break_glass": ("110113", "Security Alert", "E"),
    "audit": ("110101", "Audit Log Used", "R"),
    "study": ("110103", "DICOM Instances Accessed", "R"),
}
_OUTCOME = {SUCCESS: "0", DENIED: "4", FAILED: "8"}


def _event_id(action: str) -> tuple[str, str, str]:
    for prefix in sorted(_EVENT_ID, key=len, reverse=True):
        if action == prefix or action.startswith(prefix + "."):
            return _EVENT_ID[prefix]
    if action.startswith(("user", "token", "ae", "institution", "group", "role")):
        return ("110113", "Security Alert", "E")
    return ("110100", "Application Activity", "E")


def atna_message(ev: dict[str, Any], source_id: str = "radcloud") -> str:
    """One event as a DICOM audit message (PS3.15 A.5, the RFC 3881 schema) in XML."""
    code, name, verb = _event_id(ev["action"])
    parts = [
        "<AuditMessage>",
        f'<EventIdentification EventActionCode="{verb}" EventDateTime="{ev["ts"]}" '
        f'EventOutcomeIndicator="{_OUTCOME.get(ev["result"], "8")}">'
        f'<EventID csd-code="{code}" codeSystemName="DCM" originalText="{name}"/>'
        f'<EventTypeCode csd-code="{ev["action"]}" codeSystemName="radcloud" '
        f"originalText={quoteattr(ev['action'])}/></EventIdentification>",
        f'<ActiveParticipant UserID={quoteattr(ev["actor"])} UserIsRequestor="true"'
        + (
            f' NetworkAccessPointID={quoteattr(ev["source"])} NetworkAccessPointTypeCode="2"'
            if ev["source"]
            else ""
        )  # fmt: skip
        + "/>",
        f"<AuditSourceIdentification AuditSourceID={quoteattr(source_id)}/>",
    ]
    if ev["study_uid"]:
        parts.append(
            f'<ParticipantObjectIdentification ParticipantObjectID="{ev["study_uid"]}" '
            'ParticipantObjectTypeCode="2" ParticipantObjectTypeCodeRole="3">'
            '<ParticipantObjectIDTypeCode csd-code="110180" codeSystemName="DCM" '
            'originalText="Study Instance UID"/></ParticipantObjectIdentification>'
        )
    parts.append("</AuditMessage>")
    return "".join(parts)


def syslog_lines(events: list[dict[str, Any]], host: str = "radcloud") -> Iterator[str]:
    """RFC 5424 syslog lines carrying ATNA messages (RFC 5425/3881 transport format)."""
    for ev in events:
        # facility 10 (authpriv), severity 5 (notice) -> PRI 85; 4 (warning) if denied
        pri = 84 if ev["result"] != SUCCESS else 85
        yield f"<{pri}>1 {ev['ts']} {host} radcloud - IHE+RFC-3881 - {atna_message(ev)}"
