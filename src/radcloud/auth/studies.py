"""Access to single studies: grants, care-team restriction, break the glass."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import insert, select, update

from radcloud.archive.service import Archive
from radcloud.auth import audit
from radcloud.auth.access import Principal, study_filter
from radcloud.auth.permissions import Perm
from radcloud.errors import Forbidden, InvalidRequest, NotFound
from radcloud.store.db import as_utc
from radcloud.store.models import Group, Institution, Study, StudyGrant, User

GRANT_REASONS = ("consultation", "care_team", "explicit")
GRANTEE_KINDS: dict[str, Any] = {"institution": Institution, "group": Group, "user": User}


@dataclass(frozen=True)
class StudyAccess:
    study_uid: str
    institution_id: int
    restricted_team_id: int | None
    grants: list[dict[str, Any]]


def visible_study(archive: Archive, p: Principal, study_uid: str) -> Any:
    """The study row if ``p`` may see it, else :class:`NotFound` (existence is not revealed)."""
    with archive.read() as conn:
        row = conn.execute(
            select(Study.id, Study.study_uid, Study.institution_fk, Study.restricted_team_fk)
            .where(Study.study_uid == study_uid, study_filter(p))
        ).first()  # fmt: skip
    if row is None:
        raise NotFound("no such study in the archive")
    return row


def _owner_side(p: Principal, row: Any) -> None:
    """Changing who sees a study is for its own institution's staff (or the platform)."""
    if not p.is_platform and row.institution_fk not in p.institution_ids:
        raise Forbidden("only the owning institution can change who sees this study")


def access(archive: Archive, p: Principal, study_uid: str) -> StudyAccess:
    row = visible_study(archive, p, study_uid)
    p.require(Perm.STUDY_SHARE)
    now = datetime.now(UTC)
    with archive.read() as conn:
        grants = conn.execute(
            select(StudyGrant).where(StudyGrant.study_fk == row.id, StudyGrant.revoked_at.is_(None))
        ).all()
    active = [g for g in grants if g.expires_at is None or (as_utc(g.expires_at) or now) > now]
    return StudyAccess(
        row.study_uid, row.institution_fk, row.restricted_team_fk,
        [dict(id=g.id, grantee_kind=g.grantee_kind, grantee_id=g.grantee_id, reason=g.reason,
              note=g.note, granted_by=g.granted_by, expires_at=as_utc(g.expires_at))
         for g in active],
    )  # fmt: skip


def grant(
    archive: Archive, p: Principal, study_uid: str, grantee_kind: str, grantee_id: int,
    *, reason: str = "explicit", note: str = "", expires_at: datetime | None = None,
) -> int:  # fmt: skip
    """Share a study with a user, group or institution (consultation, care team, explicit)."""
    row = visible_study(archive, p, study_uid)
    p.require(Perm.STUDY_SHARE)
    _owner_side(p, row)
    if reason not in GRANT_REASONS:
        raise InvalidRequest(f"reason must be one of {', '.join(GRANT_REASONS)}")
    table: Any = GRANTEE_KINDS.get(grantee_kind)
    if table is None:
        raise InvalidRequest("a study is shared with a user, a group or an institution")
    with archive.write() as conn:
        if conn.scalar(select(table.id).where(table.id == grantee_id)) is None:
            raise NotFound(f"no {grantee_kind} {grantee_id}")
        gid = conn.execute(
            insert(StudyGrant).returning(StudyGrant.id),
            dict(study_fk=row.id, grantee_kind=grantee_kind, grantee_id=grantee_id,
                 reason=reason, note=note[:255], granted_by=p.name[:64],
                 created_at=datetime.now(UTC), expires_at=expires_at),
        ).scalar_one()  # fmt: skip
    audit.record(
        archive, p, "study.grant", study_uid=study_uid, target=f"{grantee_kind}:{grantee_id}",
        detail={"reason": reason}, wait=True,
    )  # fmt: skip
    return int(gid)


def revoke_grant(archive: Archive, p: Principal, study_uid: str, grant_id: int) -> None:
    row = visible_study(archive, p, study_uid)
    p.require(Perm.STUDY_SHARE)
    _owner_side(p, row)
    with archive.write() as conn:
        n = conn.execute(
            update(StudyGrant)
            .where(StudyGrant.id == grant_id, StudyGrant.study_fk == row.id,
                   StudyGrant.revoked_at.is_(None))
            .values(revoked_at=datetime.now(UTC))
        ).rowcount  # fmt: skip
    if not n:
        raise NotFound(f"no active grant {grant_id} on this study")
    audit.record(archive, p, "study.revoke", study_uid=study_uid, target=str(grant_id), wait=True)


def restrict(archive: Archive, p: Principal, study_uid: str, team_id: int | None) -> None:
    """Restrict the study to a care team (None lifts the restriction)."""
    row = visible_study(archive, p, study_uid)
    p.require(Perm.STUDY_RESTRICT)
    _owner_side(p, row)
    with archive.write() as conn:
        if team_id is not None:
            kind = conn.scalar(select(Group.kind).where(Group.id == team_id))
            if kind != "care_team":
                raise InvalidRequest(f"group {team_id} is not a care team")
        conn.execute(update(Study).where(Study.id == row.id).values(restricted_team_fk=team_id))
    audit.record(
        archive, p, "study.restrict", study_uid=study_uid,
        target=f"group:{team_id}" if team_id else "lifted", wait=True,
    )  # fmt: skip


def break_glass(archive: Archive, p: Principal, study_uid: str, reason: str) -> datetime:
    """Emergency access to one study for ``break_glass_hours``: granted, audited, flagged."""
    p.require(Perm.BREAK_GLASS)
    if p.user_id is None:
        raise Forbidden("break the glass is for named users")
    if len(reason.strip()) < 5:
        raise InvalidRequest("say why the glass is broken (at least a few words)")
    with archive.read() as conn:
        row = conn.execute(
            select(Study.id, Study.institution_fk).where(Study.study_uid == study_uid)
        ).first()
    # the glass is broken over a care-team restriction inside one's own institutions (or, for
    # a platform admin, anywhere); another hospital's studies stay out of reach
    if row is None or not (p.is_platform or row.institution_fk in p.institution_ids):
        raise NotFound("no such study in the archive")  # audited (flagged) by the interface
    sid = row.id
    until = datetime.now(UTC) + timedelta(hours=archive.settings.break_glass_hours)
    with archive.write() as conn:
        conn.execute(
            insert(StudyGrant),
            dict(study_fk=sid, grantee_kind="user", grantee_id=p.user_id, reason="break_glass",
                 note=reason.strip()[:255], granted_by=p.name[:64], created_at=datetime.now(UTC),
                 expires_at=until),
        )  # fmt: skip
    audit.record(archive, p, "study.break_glass", study_uid=study_uid,
                 detail={"reason": reason.strip()}, flagged=True, wait=True)  # fmt: skip
    return until
