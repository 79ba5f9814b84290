"""The phrase library: a user's own phrases and the department's (institution's) shared ones."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, insert, or_, select

from radcloud.archive.service import Archive
from radcloud.auth.access import Principal
from radcloud.auth.permissions import Perm
from radcloud.errors import InvalidRequest, NotFound
from radcloud.report.models import ReportPhrase


def _row(r: Any) -> dict[str, Any]:
    return {"id": r.id, "title": r.title, "text": r.text, "field": r.field,
            "shared": r.user_fk is None}  # fmt: skip


def list_phrases(archive: Archive, p: Principal, field: str | None = None) -> list[dict[str, Any]]:
    """Own phrases first, then the department's; ``field`` keeps those for it (and any-field)."""
    p.require(Perm.REPORT_WRITE)
    mine = ReportPhrase.user_fk == (p.user_id if p.user_id is not None else -1)
    shared = ReportPhrase.user_fk.is_(None) & ReportPhrase.institution_fk.in_(
        sorted(p.institution_ids)
    )
    stmt = select(ReportPhrase).where(or_(mine, shared))
    if field:
        stmt = stmt.where(ReportPhrase.field.in_([field, ""]))
    stmt = stmt.order_by(ReportPhrase.user_fk.is_(None), ReportPhrase.title, ReportPhrase.id)
    with archive.read() as conn:
        return [_row(r) for r in conn.execute(stmt)]


def add(
    archive: Archive, p: Principal, title: str, text: str, *, field: str = "",
    shared: bool = False,
) -> dict[str, Any]:  # fmt: skip
    """A new phrase: the caller's own, or (``shared``, templates.manage) the department's."""
    p.require(Perm.TEMPLATES_MANAGE if shared else Perm.REPORT_WRITE)
    if not shared and p.user_id is None:
        raise InvalidRequest("only a signed-in user has personal phrases")
    if not title.strip() or not text.strip():
        raise InvalidRequest("a phrase needs a title and a text")
    with archive.write() as conn:
        pid = conn.execute(
            insert(ReportPhrase).values(
                institution_fk=p.institution_id, user_fk=None if shared else p.user_id,
                title=title.strip()[:128], text=text, field=field[:64],
                created_at=datetime.now(UTC),
            ).returning(ReportPhrase.id)
        ).scalar_one()  # fmt: skip
        row = conn.execute(select(ReportPhrase).where(ReportPhrase.id == pid)).one()
    return _row(row)


def delete_phrase(archive: Archive, p: Principal, phrase_id: int) -> None:
    """Remove an own phrase, or a department phrase (templates.manage)."""
    with archive.write() as conn:
        row = conn.execute(select(ReportPhrase).where(ReportPhrase.id == phrase_id)).first()
        own = row is not None and p.user_id is not None and row.user_fk == p.user_id
        dept = (row is not None and row.user_fk is None
                and row.institution_fk in p.institution_ids)  # fmt: skip
        if not (own or dept):
            raise NotFound(f"no phrase {phrase_id} of yours")
        if dept:
            p.require(Perm.TEMPLATES_MANAGE)
        conn.execute(delete(ReportPhrase).where(ReportPhrase.id == phrase_id))
