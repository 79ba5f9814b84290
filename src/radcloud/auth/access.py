"""Who is asking, and which studies they may see: the one permission check.

Every interface turns its caller (a session or API token, a calling AE, the
CLI operator) into a :class:`Principal`; the archive services take it and
filter with :func:`study_filter`, so a study another institution owns is
simply not there (404, never 403: its existence is not revealed).

A study is visible to a principal when
  (it belongs to one of the principal's institutions, or it is granted to the
   principal's user, one of its groups or institutions — consultation, care
   team, explicit grant), and
  (it is not restricted to a care team, or the principal is in that team, or
   holds an unexpired break-the-glass grant for it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

from sqlalchemy import ColumnElement, and_, false, or_, select, true

from radcloud.auth.permissions import Perm
from radcloud.errors import Forbidden
from radcloud.store.db import utc_now
from radcloud.store.models import Study, StudyGrant

DEFAULT_INSTITUTION = 1


@dataclass(frozen=True)
class Principal:
    """An authenticated caller and what it may do."""

    kind: str  # user | ae | cli | system
    name: str  # user name, AE title, OS user, or the job's name
    institution_id: int = DEFAULT_INSTITUTION
    #: The institution and the ones nested under it: whose studies it sees.
    institution_ids: frozenset[int] = frozenset({DEFAULT_INSTITUTION})
    permissions: frozenset[str] = frozenset()
    user_id: int | None = None
    group_ids: frozenset[int] = frozenset()
    roles: tuple[str, ...] = ()
    token_id: int | None = None
    #: Sees every study (system jobs, the CLI operator); restricted cases included.
    unrestricted: bool = False
    source: str = ""
    extra: dict[str, str] = field(default_factory=dict, compare=False, hash=False)

    def can(self, perm: Perm | str) -> bool:
        return self.unrestricted or str(perm) in self.permissions

    def require(self, perm: Perm | str) -> None:
        """Raise :class:`Forbidden` unless the principal holds ``perm``."""
        if not self.can(perm):
            raise Forbidden(f"{self.describe()} lacks the permission {perm}")

    @property
    def is_platform(self) -> bool:
        """Acts across institutions (platform admin, system jobs, CLI)."""
        return self.can(Perm.INSTITUTIONS_MANAGE)

    def describe(self) -> str:
        return {"ae": "AE", "user": "user"}.get(self.kind, self.kind) + f" {self.name}"


def system(name: str = "system") -> Principal:
    """Internal work (demo loader, reconcile, jobs): sees and may do everything."""
    return Principal(kind="system", name=name, permissions=frozenset(Perm), unrestricted=True)


SYSTEM = system()


def _active() -> ColumnElement[bool]:
    # the database's clock, so that a built filter can be reused (see _filter_for)
    now = utc_now()
    return and_(
        StudyGrant.revoked_at.is_(None),
        or_(StudyGrant.expires_at.is_(None), StudyGrant.expires_at > now),
    )


def study_filter(p: Principal) -> ColumnElement[bool]:
    """A WHERE clause on :class:`Study` selecting what ``p`` may see."""
    if p.unrestricted:
        return true()
    if not p.can(Perm.STUDY_READ) and not p.can(Perm.STUDY_WRITE):
        return false()
    return _filter_for(p.institution_ids, p.user_id, p.group_ids)


@lru_cache(maxsize=512)
def _filter_for(
    institutions: frozenset[int], user_id: int | None, groups: frozenset[int]
) -> ColumnElement[bool]:
    """Built once per distinct caller shape: building it costs more than running it."""
    grantee = [
        and_(StudyGrant.grantee_kind == "institution",
             StudyGrant.grantee_id.in_(sorted(institutions))),
    ]  # fmt: skip
    if user_id is not None:
        grantee.append(and_(StudyGrant.grantee_kind == "user", StudyGrant.grantee_id == user_id))
    if groups:
        grantee.append(
            and_(StudyGrant.grantee_kind == "group", StudyGrant.grantee_id.in_(sorted(groups)))
        )
    granted = select(StudyGrant.study_fk).where(_active(), or_(*grantee))
    in_scope = or_(Study.institution_fk.in_(sorted(institutions)), Study.id.in_(granted))
    open_case = [Study.restricted_team_fk.is_(None)]
    if groups:
        open_case.append(Study.restricted_team_fk.in_(sorted(groups)))
    if user_id is not None:
        glass = select(StudyGrant.study_fk).where(
            _active(),
            StudyGrant.reason == "break_glass",
            StudyGrant.grantee_kind == "user",
            StudyGrant.grantee_id == user_id,
        )
        open_case.append(Study.id.in_(glass))
    return and_(in_scope, or_(*open_case))
