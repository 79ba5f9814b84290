"""Share links: create, open (identity check), revoke, re-share, list.

A link is ``<base>/s?t=<token>`` with ``token = secrets.token_urlsafe(32)``
(256 bits): shown once to whoever creates it, kept only as its SHA-256, so a
copy of the index opens nothing.  Opening a link:

1. the token is looked up by its SHA-256 and compared in constant time; every
   unknown token answers the same :class:`NotFound`, and counts as a failure
   of the caller's address (``share_ip_failures`` in five minutes, then 429);
2. an expired, revoked or used-up link answers :class:`ShareGone` (410);
3. the identity check (last four digits of the patient's phone or ID, or a
   one-time code) is compared as an HMAC under the share's secret; after
   ``share_max_attempts`` wrong answers in a row the link locks (423);
4. a right answer counts one view and opens a short-lived share session (its
   cookie's SHA-256 is stored with the share), which the content calls need
   together with the token.

A link's scope is one study (``study``) or the patient's exam history at the
institution (``patient``: every study published to the patient there, see
:func:`scope_studies`); content calls name the study they read, and a study
outside the scope answers the same NotFound whether it exists or not.

A re-share makes a child link under the same limits: never longer than its
parent, never more views than the parent has left, and one exam of the
parent's scope (or, asked for, the parent's whole scope); revoking a link
revokes its children.  Every open and every refusal is audited under the share's id,
never its token.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import orjson
from sqlalchemy import insert, select, update

from radcloud.archive.service import Archive
from radcloud.auth import audit
from radcloud.auth.access import Principal
from radcloud.auth.permissions import Perm
from radcloud.auth.studies import visible_study
from radcloud.errors import InvalidRequest, NotFound, TooManyRequests, Unauthenticated
from radcloud.share.errors import ShareGone, ShareLocked
from radcloud.share.models import Share, ShareSession
from radcloud.store.db import as_utc
from radcloud.store.models import Instance, Patient, Series, Study

KINDS = ("patient", "share")
SCOPES = ("study", "patient")
#: ``created_by`` of the links made when a study is published to its patient (a study is
#: in its patient's exam history once it has one).
PUBLISHER = "publish"
NO_EXAM = "no such exam in this link"
METHODS = ("none", "phone4", "id4", "code")
UNKNOWN = "this link does not exist; check that it was copied completely"
LOCKED = "too many wrong answers: this link is locked; ask the hospital for a new one"
IP_WINDOW = 300.0
CODE_DIGITS = 6
PHONE_TAG = "00102154"  # PatientTelephoneNumbers


def hash_token(token: str) -> str:
    """What the index keeps of a token (or a session cookie): its SHA-256, hex."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def _now() -> datetime:
    return datetime.now(UTC)


def _digits(text: str) -> str:
    return "".join(c for c in text if c.isdigit())


def answer_mac(secret_hex: str, answer: str) -> str:
    """The stored form of an identity-check answer (digits and letters only, case-blind)."""
    norm = "".join(c for c in answer if c.isalnum()).upper()
    return hmac.new(bytes.fromhex(secret_hex), norm.encode(), hashlib.sha256).hexdigest()


# ------------------------------------------------------------------ rate limit per address


class _Failures:
    """Failed opens per source address in a sliding window (per node, like login's)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._seen: dict[str, deque[float]] = {}

    def check(self, source: str, limit: int) -> None:
        with self._lock:
            q = self._seen.get(source)
            now = time.monotonic()
            while q and q[0] < now - IP_WINDOW:
                q.popleft()
            if q is not None and len(q) >= limit:
                raise TooManyRequests("too many failed attempts from this address; wait a while")

    def failed(self, source: str) -> None:
        with self._lock:
            self._seen.setdefault(source, deque()).append(time.monotonic())

    def reset(self) -> None:
        with self._lock:
            self._seen.clear()


FAILURES = _Failures()


# ------------------------------------------------------------------ views of a share


@dataclass(frozen=True)
class Created:
    """A new link: its token and one-time code are shown once, here, and never again."""

    share: dict[str, Any]
    token: str
    code: str | None = None


def share_dict(r: Any, max_attempts: int, study_uid: str = "") -> dict[str, Any]:
    """A share as its managers see it (never its token, secret or answer)."""
    remaining = None if r.max_views is None else max(0, r.max_views - r.views)
    return {
        "id": r.id, "study_uid": study_uid, "kind": r.kind, "scope": r.scope,
        "deidentify": bool(r.deidentify),
        "expires_at": as_utc(r.expires_at), "max_views": r.max_views, "views": r.views,
        "remaining_views": remaining, "verify": r.verify_method,
        "locked": _locked_by(r, max_attempts),
        "revoked_at": as_utc(r.revoked_at), "revoked_by": r.revoked_by or "",
        "parent_id": r.parent_fk, "created_by": r.created_by, "created_at": as_utc(r.created_at),
        "last_opened_at": as_utc(r.last_opened_at), "state": state(r, max_attempts),
    }  # fmt: skip


def _locked_by(r: Any, max_attempts: int) -> bool:
    return bool(r.verify_method != "none" and r.attempts >= max_attempts)


def state(r: Any, max_attempts: int) -> str:
    """active | expired | revoked | used_up | locked."""
    now = _now()
    if r.revoked_at is not None:
        return "revoked"
    if (as_utc(r.expires_at) or now) <= now:
        return "expired"
    if r.max_views is not None and r.views >= r.max_views:
        return "used_up"
    if _locked_by(r, max_attempts):
        return "locked"
    return "active"


def share_principal(r: Any, team: int | None = None) -> Principal:
    """Who a share's reader is, for the audit trail and the services' study lookups.

    It sees the study's institution (only studies of the link's scope are ever
    asked for, one at a time) and, when the study is restricted to a care team, that team
    (``team``: the link was made by someone who could see it); it may read
    studies and signed reports only.
    """
    return Principal(
        kind="share", name=f"share-{r.id}", institution_id=r.institution_fk,
        institution_ids=frozenset({r.institution_fk}),
        permissions=frozenset({Perm.STUDY_READ.value, Perm.REPORT_READ.value}),
        group_ids=frozenset() if team is None else frozenset({team}),
    )  # fmt: skip


def reader(archive: Archive, r: Any) -> Principal:
    """:func:`share_principal` with the care team of the study ``r.study_fk`` (the one
    :func:`at_study` selected), for reading its content."""
    with archive.read() as conn:
        team = conn.scalar(select(Study.restricted_team_fk).where(Study.id == r.study_fk))
    return share_principal(r, team)


# ------------------------------------------------------------------ creating


def _hours(archive: Archive, hours: float | None, limit: datetime | None = None) -> datetime:
    s = archive.settings
    hours = float(s.share_default_hours if hours is None else hours)
    if not 0 < hours <= s.share_max_days * 24:
        raise InvalidRequest(f"expiry: between 1 hour and {s.share_max_days} days (in hours)")
    until = _now() + timedelta(hours=hours)
    return min(until, limit) if limit is not None else until


def check_study(archive: Archive, p: Principal, study_uid: str) -> Any:
    """The study row if ``p`` sees it (else NotFound) and may share it (else Forbidden)."""
    row = visible_study(archive, p, study_uid)
    p.require(Perm.STUDY_SHARE)
    return row


def study_phone(archive: Archive, study_uid: str) -> str:
    with archive.read() as conn:
        study_id = conn.scalar(select(Study.id).where(Study.study_uid == study_uid))
    return patient_phone(archive, int(study_id)) if study_id is not None else ""


def patient_phone(archive: Archive, study_id: int) -> str:
    """PatientTelephoneNumbers as received with the study ('' when absent)."""
    with archive.read() as conn:
        text = conn.scalar(
            select(Instance.metadata_json)
            .join(Series, Instance.series_fk == Series.id)
            .where(Series.study_fk == study_id)
            .order_by(Instance.id)
            .limit(1)
        )
    values = orjson.loads(text or "{}").get(PHONE_TAG, {}).get("Value") or []
    return str(values[0]) if values else ""


def _answer(archive: Archive, study_id: int, method: str, phone: str | None) -> tuple[str, str]:
    """(expected answer, one-time code to show) for ``method``."""
    if method == "none":
        return "", ""
    if method == "code":
        code = "".join(secrets.choice("0123456789") for _ in range(CODE_DIGITS))
        return code, code
    if method == "phone4":
        digits = _digits(phone or patient_phone(archive, study_id))
    else:
        with archive.read() as conn:
            pid = conn.scalar(
                select(Patient.patient_id)
                .join(Study, Study.patient_fk == Patient.id)
                .where(Study.id == study_id)
            )
        digits = "".join(c for c in str(pid or "") if c.isalnum())
    if len(digits) < 4:
        what = "phone number" if method == "phone4" else "patient ID"
        raise InvalidRequest(f"verify {method}: the patient's {what} is not known")
    return digits[-4:], ""


def _insert(archive: Archive, values: dict[str, Any]) -> tuple[int, str]:
    token = secrets.token_urlsafe(32)
    values = {**values, "token_hash": hash_token(token), "views": 0, "attempts": 0,
              "revoked_by": "", "created_at": _now()}  # fmt: skip
    with archive.write() as conn:
        share_id = conn.execute(insert(Share).values(**values).returning(Share.id)).scalar_one()
    return int(share_id), token


def _new(
    archive: Archive, study_id: int, institution: int, *, kind: str, deidentify: bool,
    expires_at: datetime, max_views: int | None, verify: str, phone: str | None,
    created_by: str, created_by_fk: int | None, parent: int | None = None,
    scope: str = "study", patient: int | None = None,
) -> Created:  # fmt: skip
    if verify not in METHODS:
        raise InvalidRequest(f"verify: one of {', '.join(METHODS)}")
    if max_views is not None and max_views < 1:
        raise InvalidRequest("max_views: at least 1 (or leave it out for no limit)")
    secret = secrets.token_bytes(32).hex()
    expected, code = _answer(archive, study_id, verify, phone)
    share_id, token = _insert(archive, {
        "study_fk": study_id, "institution_fk": institution, "kind": kind,
        "scope": scope, "patient_fk": patient if scope == "patient" else None,
        "deidentify": deidentify, "secret": secret, "expires_at": expires_at,
        "max_views": max_views, "verify_method": verify,
        "verify_hash": answer_mac(secret, expected) if expected else "",
        "parent_fk": parent, "created_by": created_by[:128], "created_by_fk": created_by_fk,
    })  # fmt: skip
    return Created(get(archive, share_id), token, code or None)


def create(
    archive: Archive, p: Principal, study_uid: str, *, kind: str = "share",
    hours: float | None = None, max_views: int | None = None, verify: str = "none",
    deidentify: bool | None = None, phone: str | None = None, scope: str = "study",
) -> Created:  # fmt: skip
    """A new link to a study ``p`` can see (another institution's study: NotFound), or,
    ``scope`` patient, to the exam history of its patient (the study included)."""
    row = check_study(archive, p, study_uid)
    if kind not in KINDS:
        raise InvalidRequest(f"kind: one of {', '.join(KINDS)}")
    if scope not in SCOPES:
        raise InvalidRequest(f"scope: one of {', '.join(SCOPES)}")
    with archive.read() as conn:
        patient = conn.scalar(select(Study.patient_fk).where(Study.id == row.id))
    created = _new(
        archive, row.id, row.institution_fk, kind=kind, scope=scope, patient=patient,
        deidentify=(kind == "share") if deidentify is None else deidentify,
        expires_at=_hours(archive, hours), max_views=max_views, verify=verify, phone=phone,
        created_by=p.name, created_by_fk=p.user_id,
    )  # fmt: skip
    audit.record(archive, p, "share.create", study_uid=study_uid,
                 target=f"share:{created.share['id']}",
                 detail={"kind": kind, "scope": scope, "verify": verify,
                         "deidentify": created.share["deidentify"],
                         "expires_at": created.share["expires_at"].isoformat()})  # fmt: skip
    return created


def reshare(
    archive: Archive, parent: Any, *, hours: float | None = None, max_views: int | None = None,
    verify: str = "none", source: str = "", study_fk: int | None = None, all_exams: bool = False,
) -> Created:  # fmt: skip
    """A child link of an open share: no longer-lived, no more views, always de-identified;
    one exam of the parent's scope (``study_fk``, default the parent's own study) or, with
    ``all_exams``, the parent's whole scope (a patient-scope parent only)."""
    if all_exams and parent.scope != "patient":
        raise InvalidRequest("this link opens one exam; it cannot share more")
    chosen = parent.study_fk if study_fk is None or all_exams else study_fk
    if chosen not in scope_studies(archive, parent):
        raise NotFound(NO_EXAM)
    if state(parent, archive.settings.share_max_attempts) != "active":
        raise ShareGone("this link can no longer be shared")
    left = None if parent.max_views is None else parent.max_views - parent.views
    if max_views is not None and left is not None and max_views > left:
        raise InvalidRequest(f"max_views: at most {left} (what this link has left)")
    if verify in ("phone4", "id4"):
        raise InvalidRequest("a re-share is checked with a one-time code ('code') or not at all")
    created = _new(
        archive, chosen, parent.institution_fk, kind="share", deidentify=True,
        scope="patient" if all_exams else "study", patient=parent.patient_fk,
        expires_at=_hours(archive, hours, limit=as_utc(parent.expires_at)),
        max_views=max_views if max_views is not None else left, verify=verify, phone=None,
        created_by=f"share-{parent.id}", created_by_fk=None, parent=parent.id,
    )  # fmt: skip
    audit.record(archive, share_principal(parent), "share.reshare", study_uid=_uid(archive, parent),
                 target=f"share:{created.share['id']}", source=source,
                 detail={"parent": parent.id, "all_exams": all_exams})  # fmt: skip
    return created


# ------------------------------------------------------------------ scope


def scope_studies(archive: Archive, r: Any) -> list[int]:
    """The studies a link opens (ids), newest first: its own study, and for a ``patient``
    link every study of its patient at its institution that was published to the patient
    (has a link made by the publisher).  A study not yet published is not among them; one
    whose published link was revoked stays (revoking withdraws a link, not an exam), and one
    moved to another patient record leaves with it."""
    if r.scope != "patient" or r.patient_fk is None:
        return [int(r.study_fk)]
    published = (
        select(Share.id).where(Share.study_fk == Study.id, Share.kind == "patient",
                               Share.created_by == PUBLISHER).exists()
    )  # fmt: skip
    with archive.read() as conn:
        ids = conn.scalars(
            select(Study.id)
            .where(Study.patient_fk == r.patient_fk, Study.institution_fk == r.institution_fk,
                   (Study.id == r.study_fk) | published)
            .order_by(Study.study_date.desc(), Study.study_time.desc(), Study.id.desc())
        ).all()  # fmt: skip
    return [int(i) for i in ids]


def at_study(r: Any, study_fk: int) -> Any:
    """The link ``r`` reading one study of its scope (the content functions read
    ``study_fk``); the caller has checked that the study is in the scope."""
    fields = dict(r._mapping) if hasattr(r, "_mapping") else dict(vars(r))
    return SimpleNamespace(**{**fields, "study_fk": study_fk})


# ------------------------------------------------------------------ reading


def _row(conn: Any, share_id: int) -> Any:
    return conn.execute(select(Share).where(Share.id == share_id)).first()


def _uid(archive: Archive, r: Any) -> str:
    with archive.read() as conn:
        return str(conn.scalar(select(Study.study_uid).where(Study.id == r.study_fk)) or "")


def get(archive: Archive, share_id: int) -> dict[str, Any]:
    with archive.read() as conn:
        r = _row(conn, share_id)
        if r is None:
            raise NotFound("no such share")
        uid = conn.scalar(select(Study.study_uid).where(Study.id == r.study_fk))
    return share_dict(r, archive.settings.share_max_attempts, str(uid))


def list_for_study(archive: Archive, p: Principal, study_uid: str) -> list[dict[str, Any]]:
    """Every link to the study, newest first (for its managers)."""
    row = check_study(archive, p, study_uid)
    with archive.read() as conn:
        rows = conn.execute(
            select(Share).where(Share.study_fk == row.id).order_by(Share.id.desc())
        ).all()
    return [share_dict(r, archive.settings.share_max_attempts, study_uid) for r in rows]


def children(archive: Archive, parent: Any) -> list[dict[str, Any]]:
    """The links made from this one (what its holder may revoke)."""
    with archive.read() as conn:
        rows = conn.execute(
            select(Share).where(Share.parent_fk == parent.id).order_by(Share.id.desc())
        ).all()
    uid = _uid(archive, parent)
    return [share_dict(r, archive.settings.share_max_attempts, uid) for r in rows]


# ------------------------------------------------------------------ revoking


def _revoke_tree(archive: Archive, root: int, who: str) -> int:
    now, todo, done = _now(), [root], 0
    with archive.write() as conn:
        while todo:
            sid = todo.pop()
            done += conn.execute(
                update(Share).where(Share.id == sid, Share.revoked_at.is_(None))
                .values(revoked_at=now, revoked_by=who[:128])
            ).rowcount or 0  # fmt: skip
            todo += list(conn.scalars(select(Share.id).where(Share.parent_fk == sid)))
    return done


def revoke(archive: Archive, p: Principal, study_uid: str, share_id: int) -> dict[str, Any]:
    """Revoke a link of a study ``p`` manages, and every link made from it."""
    row = check_study(archive, p, study_uid)
    with archive.read() as conn:
        r = _row(conn, share_id)
    if r is None or r.study_fk != row.id:
        raise NotFound("no such share of this study")
    n = _revoke_tree(archive, share_id, p.name)
    audit.record(archive, p, "share.revoke", study_uid=study_uid, target=f"share:{share_id}",
                 detail={"revoked": n}, wait=True)  # fmt: skip
    return get(archive, share_id)


def revoke_child(archive: Archive, parent: Any, child_id: int, source: str = "") -> dict[str, Any]:
    """The holder of a link revokes a link made from it (or from one of those)."""
    with archive.read() as conn:
        r = _row(conn, child_id)
        while r is not None and r.parent_fk is not None and r.parent_fk != parent.id:
            r = _row(conn, r.parent_fk)
    if r is None or r.parent_fk != parent.id:
        raise NotFound("no such share made from this link")
    n = _revoke_tree(archive, child_id, f"share-{parent.id}")
    audit.record(archive, share_principal(parent), "share.revoke", study_uid=_uid(archive, parent),
                 target=f"share:{child_id}", source=source, detail={"revoked": n},
                 wait=True)  # fmt: skip
    return get(archive, child_id)


# ------------------------------------------------------------------ opening


def _lookup(archive: Archive, token: str, source: str) -> Any:
    """The share a token names; NotFound (the same for every unknown token) otherwise."""
    FAILURES.check(source, archive.settings.share_ip_failures)
    wanted = hash_token(token or "")
    r = None
    if 20 <= len(token or "") <= 128:
        with archive.read() as conn:
            r = conn.execute(select(Share).where(Share.token_hash == wanted)).first()
    if r is None or not hmac.compare_digest(r.token_hash, wanted):
        FAILURES.failed(source)
        audit.record(archive, None, "share.open", audit.DENIED, source=source,
                     detail={"reason": "unknown link"})  # fmt: skip
        raise NotFound(UNKNOWN)
    return r


def _usable(archive: Archive, r: Any, source: str, *, for_open: bool) -> None:
    """ShareGone / ShareLocked unless the share still opens."""
    st = state(r, archive.settings.share_max_attempts)
    if st == "active" or (st == "used_up" and not for_open):
        return
    audit.record(
        archive,
        share_principal(r),
        "share.open",
        audit.DENIED,
        source=source,
        study_uid=_uid(archive, r),
        target=f"share:{r.id}",
        detail={"reason": st},
    )
    if st == "locked":
        raise ShareLocked(LOCKED)
    raise ShareGone({
        "expired": "this link has expired; ask the hospital or the sender for a new one",
        "revoked": "this link was withdrawn by its sender",
        "used_up": "this link has been opened as often as its sender allowed",
    }[st])  # fmt: skip


def describe(archive: Archive, token: str, source: str = "") -> dict[str, Any]:
    """What the entry page needs before the check: which question, until when."""
    r = _lookup(archive, token, source)
    _usable(archive, r, source, for_open=True)
    left = None if r.max_views is None else r.max_views - r.views
    return {"verify": r.verify_method, "expires_at": as_utc(r.expires_at),
            "remaining_views": left, "kind": r.kind, "deidentified": bool(r.deidentify),
            "attempts_left": max(0, archive.settings.share_max_attempts - r.attempts)}  # fmt: skip


def _check_answer(archive: Archive, r: Any, answer: str | None, source: str) -> None:
    """Compare the answer, an attempt being taken first: never more guesses than allowed,
    however many arrive at once; a right answer gives the attempt back."""
    limit = archive.settings.share_max_attempts
    with archive.write() as conn:
        taken = conn.execute(
            update(Share).where(Share.id == r.id, Share.attempts < limit)
            .values(attempts=Share.attempts + 1).returning(Share.attempts)
        ).first()  # fmt: skip
    if taken is None:  # locked since it was read
        audit.record(archive, share_principal(r), "share.open", audit.DENIED, source=source,
                     study_uid=_uid(archive, r), target=f"share:{r.id}",
                     detail={"reason": "locked"})  # fmt: skip
        raise ShareLocked(LOCKED)
    given = answer_mac(r.secret, answer or "")
    if hmac.compare_digest(given, r.verify_hash):
        return
    FAILURES.failed(source)
    left = max(0, limit - int(taken[0]))
    audit.record(archive, share_principal(r), "share.open", audit.DENIED, source=source,
                 study_uid=_uid(archive, r), target=f"share:{r.id}",
                 detail={"reason": "wrong answer", "attempts_left": left}, wait=True)  # fmt: skip
    if left == 0:
        raise ShareLocked("wrong answer; the link is now locked")
    raise Unauthenticated(f"wrong answer; {left} attempt(s) left")


def verify(archive: Archive, token: str, answer: str | None, source: str = "") -> str:
    """Check the answer, count a view, and return a new share-session secret (for the cookie)."""
    r = _lookup(archive, token, source)
    _usable(archive, r, source, for_open=True)
    settings = archive.settings
    if r.verify_method != "none":
        _check_answer(archive, r, answer, source)
    session = secrets.token_urlsafe(32)
    now = _now()
    with archive.write() as conn:
        counted = conn.execute(
            update(Share)
            .where(Share.id == r.id, Share.revoked_at.is_(None),
                   (Share.max_views.is_(None)) | (Share.views < Share.max_views))
            .values(views=Share.views + 1, attempts=0, last_opened_at=now)
        ).rowcount  # fmt: skip
        if counted:
            conn.execute(insert(ShareSession).values(
                share_fk=r.id, session_hash=hash_token(session), source=source[:64],
                expires_at=now + timedelta(minutes=settings.share_session_minutes),
                created_at=now,
            ))  # fmt: skip
    if not counted:  # another browser took the last view in between
        raise ShareGone("this link has been opened as often as its sender allowed")
    audit.record(archive, share_principal(r), "share.open", study_uid=_uid(archive, r),
                 target=f"share:{r.id}", source=source, detail={"view": r.views + 1},
                 wait=True)  # fmt: skip
    return session


def session_share(archive: Archive, token: str, session: str | None, source: str = "") -> Any:
    """The share a content call may read: token valid, share usable, session of this share."""
    r = _lookup(archive, token, source)
    _usable(archive, r, source, for_open=False)
    if session:
        with archive.read() as conn:
            s = conn.execute(
                select(ShareSession.share_fk, ShareSession.expires_at).where(
                    ShareSession.session_hash == hash_token(session)
                )
            ).first()
        if s is not None and s.share_fk == r.id and (as_utc(s.expires_at) or _now()) > _now():
            return r
    raise Unauthenticated("open the link first (answer its question) or open it again")
