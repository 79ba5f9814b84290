"""Institutions, users, groups and permission grants; principals built from them.

Effective permissions of a user: the defaults of its roles, changed by
role-level grants (system level, set by the platform admin), then by grants
to its groups, then by grants to the user itself; a later level wins.
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from threading import Lock
from typing import Any

from sqlalchemy import Connection, and_, delete, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError as DbIntegrityError

from radcloud.archive.service import Archive
from radcloud.auth import passwords
from radcloud.auth.access import DEFAULT_INSTITUTION, Principal
from radcloud.auth.permissions import (
    AE_QUERY,
    AE_STORE,
    DEFAULT_ROLE_PERMISSIONS,
    Perm,
    Role,
    parse_perm,
    parse_roles,
)
from radcloud.errors import Conflict, Forbidden, InvalidRequest, NotFound
from radcloud.store.db import as_utc
from radcloud.store.models import (
    Group,
    GroupMember,
    Institution,
    PermissionGrant,
    RemoteAE,
    User,
)

ADMIN = "admin"
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{1,63}$")
_CODE_RE = re.compile(r"^[a-z0-9][a-z0-9-]{1,31}$")
INSTITUTION_KINDS = ("hospital", "department", "clinic")


# ------------------------------------------------------------------ institutions


@dataclass(frozen=True)
class InstitutionInfo:
    id: int
    code: str
    name: str
    kind: str
    parent_id: int | None
    status: str
    accept_unknown_aes: bool


def _institution(row: Any) -> InstitutionInfo:
    return InstitutionInfo(
        row.id, row.code, row.name, row.kind, row.parent_fk, row.status, row.accept_unknown_aes
    )


def institution_tree(conn: Connection, root: int) -> frozenset[int]:
    """``root`` and every active institution nested under it."""
    rows = conn.execute(select(Institution.id, Institution.parent_fk, Institution.status)).all()
    children: dict[int | None, list[int]] = {}
    active = {r.id for r in rows if r.status == "active"}
    for r in rows:
        children.setdefault(r.parent_fk, []).append(r.id)
    found, todo = {root}, [root]
    while todo:
        for child in children.get(todo.pop(), []):
            if child in active and child not in found:
                found.add(child)
                todo.append(child)
    return frozenset(found)


def create_institution(
    archive: Archive,
    code: str,
    name: str,
    *,
    kind: str = "hospital",
    parent_id: int | None = None,
    status: str = "active",
    accept_unknown_aes: bool = False,
    contact: str = "",
) -> InstitutionInfo:
    code = code.strip().lower()
    if not _CODE_RE.match(code):
        raise InvalidRequest("an institution code is 2-32 lower-case letters, digits or '-'")
    if kind not in INSTITUTION_KINDS:
        raise InvalidRequest(f"institution kind must be one of {', '.join(INSTITUTION_KINDS)}")
    if not name.strip():
        raise InvalidRequest("an institution needs a name")

    def write() -> InstitutionInfo:
        with archive.write() as conn:
            if (
                parent_id is not None
                and conn.scalar(select(Institution.id).where(Institution.id == parent_id)) is None
            ):
                raise NotFound(f"no institution {parent_id}")
            if conn.scalar(select(Institution.id).where(Institution.code == code)) is not None:
                raise Conflict(f"institution code {code!r} is taken")
            new_id = conn.execute(
                insert(Institution).returning(Institution.id),
                dict(code=code, name=name.strip()[:128], kind=kind, parent_fk=parent_id,
                     status=status, accept_unknown_aes=accept_unknown_aes,
                     contact=contact[:255], created_at=_now()),
            ).scalar_one()  # fmt: skip
            row = conn.execute(select(Institution).where(Institution.id == new_id)).one()
            return _institution(row)

    try:
        return archive.retrying(write)
    except DbIntegrityError:
        raise Conflict(f"institution code {code!r} is taken") from None


def get_institution(archive: Archive, ref: int | str) -> InstitutionInfo:
    """By id or code."""
    with archive.read() as conn:
        cond = (
            Institution.id == int(ref)
            if isinstance(ref, int) or str(ref).isdigit()
            else Institution.code == str(ref).strip().lower()
        )
        row = conn.execute(select(Institution).where(cond)).first()
    if row is None:
        raise NotFound(f"no institution {ref}")
    return _institution(row)


def list_institutions(archive: Archive, p: Principal) -> list[InstitutionInfo]:
    with archive.read() as conn:
        stmt = select(Institution).order_by(Institution.id)
        if not p.is_platform:
            stmt = stmt.where(Institution.id.in_(sorted(p.institution_ids)))
        return [_institution(r) for r in conn.execute(stmt)]


def set_institution(archive: Archive, institution_id: int, **values: Any) -> InstitutionInfo:
    """Change status (pending → active = approval, suspended), name or AE policy."""
    allowed = {"status", "name", "accept_unknown_aes", "contact"}
    values = {k: v for k, v in values.items() if v is not None}
    if set(values) - allowed:
        raise InvalidRequest(f"cannot change {', '.join(sorted(set(values) - allowed))}")
    if values.get("status") not in (None, "pending", "active", "suspended"):
        raise InvalidRequest("status must be pending, active or suspended")
    if institution_id == DEFAULT_INSTITUTION and values.get("status") not in (None, "active"):
        raise InvalidRequest("the default institution cannot be suspended")
    if not values:
        return get_institution(archive, institution_id)
    with archive.write() as conn:
        n = conn.execute(
            update(Institution).where(Institution.id == institution_id).values(**values)
        ).rowcount
        if not n:
            raise NotFound(f"no institution {institution_id}")
        if values.get("status") == "active":  # approval activates the registering admin
            conn.execute(
                update(User).where(User.institution_fk == institution_id).values(active=True)
            )
    forget_principals(archive)
    return get_institution(archive, institution_id)


def register_institution(
    archive: Archive, code: str, name: str, *, kind: str, admin_username: str,
    admin_password: str, contact: str = "",
) -> tuple[InstitutionInfo, int]:  # fmt: skip
    """Self-registration: a pending institution and its (inactive) admin, until approved."""
    inst = create_institution(archive, code, name, kind=kind, status="pending", contact=contact)
    uid = create_user(
        archive, admin_username, admin_password, institution_id=inst.id,
        roles=[Role.INSTITUTION_ADMIN], active=False,
    )  # fmt: skip
    return inst, uid


# ------------------------------------------------------------------ users


@dataclass(frozen=True)
class UserInfo:
    id: int
    username: str
    display_name: str
    email: str
    institution_id: int
    roles: tuple[str, ...]
    active: bool
    totp_enabled: bool
    locked: bool
    sso: bool


def _user(row: Any) -> UserInfo:
    until = as_utc(row.locked_until)
    locked = until is not None and until > _now()
    return UserInfo(
        row.id, row.username, row.display_name, row.email, row.institution_fk,
        tuple(r for r in row.roles.split(",") if r), row.active, row.totp_enabled, locked,
        row.oidc_subject is not None,
    )  # fmt: skip


def check_username(name: str) -> str:
    name = name.strip()
    if not _NAME_RE.match(name):
        raise InvalidRequest(
            "a user name is 2-64 letters, digits, '.', '_', '@' or '-', starting with a "
            "letter or digit"
        )
    return name


def _roles_text(roles: Iterable[Role | str]) -> str:
    try:
        parsed = parse_roles(",".join(str(r) for r in roles))
    except ValueError as exc:
        raise InvalidRequest(str(exc)) from None
    if not parsed:
        raise InvalidRequest("a user needs at least one role")
    return ",".join(dict.fromkeys(r.value for r in parsed))


def create_user(
    archive: Archive,
    username: str,
    password: str | None,
    *,
    institution_id: int = DEFAULT_INSTITUTION,
    roles: Iterable[Role | str] = (Role.CLINICIAN,),
    display_name: str = "",
    email: str = "",
    active: bool = True,
    oidc: tuple[str, str] | None = None,
) -> int:
    """A new user; ``password=None`` for SSO-only accounts.  Returns the user id."""
    username = check_username(username)
    row = dict(
        username=username,
        display_name=display_name.strip()[:128],
        email=email.strip()[:254],
        institution_fk=institution_id,
        roles=_roles_text(roles),
        password_hash=passwords.hash_password(password) if password is not None else None,
        totp_enabled=False,
        oidc_issuer=oidc[0] if oidc else None,
        oidc_subject=oidc[1] if oidc else None,
        active=active,
        failed_logins=0,
        created_at=_now(),
    )

    def write() -> int:
        with archive.write() as conn:
            if conn.scalar(select(Institution.id).where(Institution.id == institution_id)) is None:
                raise NotFound(f"no institution {institution_id}")
            if conn.scalar(select(User.id).where(func.lower(User.username) == username.lower())):
                raise Conflict(f"user name {username!r} is taken")
            return int(conn.execute(insert(User).returning(User.id), row).scalar_one())

    try:
        return archive.retrying(write)
    except DbIntegrityError:
        raise Conflict(f"user name {username!r} is taken") from None


def get_user(archive: Archive, ref: int | str) -> UserInfo:
    """By id or user name (case-insensitive)."""
    with archive.read() as conn:
        row = _user_row(conn, ref)
    if row is None:
        raise NotFound(f"no user {ref}")
    return _user(row)


def _user_row(conn: Connection, ref: int | str) -> Any:
    cond = (
        User.id == ref
        if isinstance(ref, int)
        else func.lower(User.username) == str(ref).strip().lower()
    )
    return conn.execute(select(User).where(cond)).first()


def list_users(archive: Archive, p: Principal, institution_id: int | None = None) -> list[UserInfo]:
    with archive.read() as conn:
        stmt = select(User).order_by(User.username)
        if not p.is_platform:
            stmt = stmt.where(User.institution_fk.in_(sorted(p.institution_ids)))
        if institution_id is not None:
            stmt = stmt.where(User.institution_fk == institution_id)
        return [_user(r) for r in conn.execute(stmt)]


def manageable(p: Principal, user: UserInfo) -> None:
    """Raise unless ``p`` may administer ``user`` (same institution tree, or platform)."""
    p.require(Perm.USERS_MANAGE)
    if not p.is_platform and user.institution_id not in p.institution_ids:
        raise NotFound(f"no user {user.id}")
    if Role.PLATFORM_ADMIN.value in user.roles and not p.is_platform:
        raise Forbidden("only a platform admin may change a platform admin")


def update_user(
    archive: Archive,
    user_id: int,
    *,
    roles: Iterable[str] | None = None,
    display_name: str | None = None,
    email: str | None = None,
    active: bool | None = None,
    institution_id: int | None = None,
) -> UserInfo:
    values: dict[str, Any] = {}
    if roles is not None:
        values["roles"] = _roles_text(roles)
    if display_name is not None:
        values["display_name"] = display_name.strip()[:128]
    if email is not None:
        values["email"] = email.strip()[:254]
    if active is not None:
        values["active"] = active
    if institution_id is not None:
        values["institution_fk"] = institution_id
    if values:
        with archive.write() as conn:
            conn.execute(update(User).where(User.id == user_id).values(**values))
        forget_principals(archive)
    return get_user(archive, user_id)


def set_password(archive: Archive, user_id: int, password: str) -> None:
    """New password; every session of the user ends (tokens stay: they are for systems)."""
    from radcloud.auth import sessions

    hashed = passwords.hash_password(password)
    with archive.write() as conn:
        conn.execute(
            update(User)
            .where(User.id == user_id)
            .values(password_hash=hashed, failed_logins=0, locked_until=None)
        )
    sessions.revoke_user_tokens(archive, user_id, kind="session")


def unlock(archive: Archive, user_id: int) -> None:
    with archive.write() as conn:
        conn.execute(
            update(User).where(User.id == user_id).values(failed_logins=0, locked_until=None)
        )


def ensure_admin(archive: Archive) -> str | None:
    """Create the platform admin ``admin`` if missing.

    Returns the generated password (to print once) when one had to be made up;
    ``RADCLOUD_ADMIN_PASSWORD`` is used when set.
    """
    with archive.read() as conn:
        if conn.scalar(select(User.id).where(User.username == ADMIN)) is not None:
            return None
    given = archive.settings.admin_password
    password = given or secrets.token_urlsafe(12) + "-7"
    try:
        create_user(
            archive, ADMIN, password, roles=[Role.PLATFORM_ADMIN],
            display_name="Platform administrator",
        )  # fmt: skip
    except Conflict:  # another node created it first
        return None
    return None if given else password


# ------------------------------------------------------------------ groups


@dataclass(frozen=True)
class GroupInfo:
    id: int
    institution_id: int
    name: str
    kind: str
    members: tuple[str, ...]


def create_group(archive: Archive, institution_id: int, name: str, kind: str = "group") -> int:
    if kind not in ("group", "care_team"):
        raise InvalidRequest("group kind must be 'group' or 'care_team'")
    if not name.strip():
        raise InvalidRequest("a group needs a name")
    try:
        with archive.write() as conn:
            return int(
                conn.execute(
                    insert(Group).returning(Group.id),
                    dict(institution_fk=institution_id, name=name.strip()[:128], kind=kind),
                ).scalar_one()
            )
    except DbIntegrityError:
        raise Conflict(f"group {name!r} exists in this institution") from None


def get_group(archive: Archive, group_id: int) -> GroupInfo:
    groups = _groups(archive, [Group.id == group_id])
    if not groups:
        raise NotFound(f"no group {group_id}")
    return groups[0]


def list_groups(archive: Archive, p: Principal) -> list[GroupInfo]:
    conds = [] if p.is_platform else [Group.institution_fk.in_(sorted(p.institution_ids))]
    return _groups(archive, conds)


def _groups(archive: Archive, conds: list[Any]) -> list[GroupInfo]:
    with archive.read() as conn:
        rows = conn.execute(select(Group).where(*conds).order_by(Group.id)).all()
        members: dict[int, list[str]] = {}
        for gid, uname in conn.execute(
            select(GroupMember.group_fk, User.username)
            .join(User, User.id == GroupMember.user_fk)
            .where(GroupMember.group_fk.in_([r.id for r in rows]))
            .order_by(User.username)
        ):
            members.setdefault(gid, []).append(uname)
    return [
        GroupInfo(r.id, r.institution_fk, r.name, r.kind, tuple(members.get(r.id, [])))
        for r in rows
    ]


def set_member(archive: Archive, group_id: int, user_id: int, member: bool) -> None:
    group = get_group(archive, group_id)
    user = get_user(archive, user_id)
    if member and user.institution_id != group.institution_id:
        # care teams may include consultants of partner institutions, plain groups may not
        if group.kind != "care_team":
            raise InvalidRequest("a group's members belong to its institution")
    with archive.write() as conn:
        conn.execute(
            delete(GroupMember).where(
                GroupMember.group_fk == group_id, GroupMember.user_fk == user_id
            )
        )
        if member:
            conn.execute(insert(GroupMember), dict(group_fk=group_id, user_fk=user_id))
    forget_principals(archive)


# ------------------------------------------------------------------ permission grants


def set_grant(archive: Archive, subject_kind: str, subject: str, perm: str,
              allow: bool | None) -> None:  # fmt: skip
    """Allow (True), deny (False) or clear (None) ``perm`` for a role, group or user."""
    if subject_kind not in ("role", "group", "user"):
        raise InvalidRequest("grants are set on a role, a group or a user")
    try:
        permission = parse_perm(perm)
        if subject_kind == "role":
            subject = Role(subject).value
    except ValueError as exc:
        raise InvalidRequest(str(exc)) from None
    with archive.write() as conn:
        conn.execute(
            delete(PermissionGrant).where(
                PermissionGrant.subject_kind == subject_kind,
                PermissionGrant.subject == str(subject),
                PermissionGrant.permission == permission.value,
            )
        )
        if allow is not None:
            conn.execute(
                insert(PermissionGrant),
                dict(subject_kind=subject_kind, subject=str(subject),
                     permission=permission.value, allow=allow),
            )  # fmt: skip
    forget_principals(archive)


def role_permissions(archive: Archive) -> dict[str, list[str]]:
    """Each role's effective system-level permissions."""
    with archive.read() as conn:
        grants = conn.execute(
            select(PermissionGrant).where(PermissionGrant.subject_kind == "role")
        ).all()
    out = {}
    for role in Role:
        perms = {p.value for p in DEFAULT_ROLE_PERMISSIONS[role]}
        for g in grants:
            if g.subject == role.value:
                (perms.add if g.allow else perms.discard)(g.permission)
        out[role.value] = sorted(perms)
    return out


def grants_of(archive: Archive, subject_kind: str, subject: str) -> dict[str, bool]:
    with archive.read() as conn:
        return {
            g.permission: g.allow
            for g in conn.execute(
                select(PermissionGrant).where(
                    PermissionGrant.subject_kind == subject_kind,
                    PermissionGrant.subject == str(subject),
                )
            )
        }


def _effective(conn: Connection, roles: list[str], group_ids: list[int], user_id: int) -> set[str]:
    perms: set[str] = set()
    for name in roles:
        try:
            perms |= {p.value for p in DEFAULT_ROLE_PERMISSIONS[Role(name)]}
        except ValueError:
            continue
    levels = (
        ("role", set(roles)),
        ("group", {str(g) for g in group_ids}),
        ("user", {str(user_id)}),
    )
    grants = conn.execute(
        select(PermissionGrant).where(
            or_(*(and_(PermissionGrant.subject_kind == kind,
                       PermissionGrant.subject.in_(sorted(subjects)))
                  for kind, subjects in levels))
        )
    ).all()  # fmt: skip
    for kind, subjects in levels:
        for g in grants:
            if g.subject_kind == kind and g.subject in subjects:
                (perms.add if g.allow else perms.discard)(g.permission)
    return perms


# ------------------------------------------------------------------ principals

#: Seconds a user's resolved principal is reused; permission changes made on this
#: node clear the cache at once, other nodes see them within the TTL.
CACHE_TTL = 5.0
_CACHE_LOCK = Lock()


def _principal_cache(archive: Archive) -> dict[int, tuple[float, Principal]]:
    """user id -> (expires, principal) for this archive."""
    cache: dict[int, tuple[float, Principal]] = archive.caches.setdefault("principals", {})
    return cache


def forget_principals(archive: Archive) -> None:
    with _CACHE_LOCK:
        _principal_cache(archive).clear()


def principal_for_user(archive: Archive, user_id: int) -> Principal:
    """The principal of an (active) user; cached briefly."""
    now = time.monotonic()
    with _CACHE_LOCK:
        hit = _principal_cache(archive).get(user_id)
    if hit is not None and hit[0] > now:
        return hit[1]
    with archive.read() as conn:
        user = conn.execute(
            select(User.username, User.institution_fk, User.roles, User.active,
                   Institution.status.label("inst_status"))
            .join(Institution, Institution.id == User.institution_fk)
            .where(User.id == user_id)
        ).first()  # fmt: skip
        if user is None or not user.active or user.inst_status != "active":
            raise NotFound("no such active user")
        groups = sorted(
            conn.scalars(select(GroupMember.group_fk).where(GroupMember.user_fk == user_id))
        )
        roles = [r for r in user.roles.split(",") if r]
        principal = Principal(
            kind="user",
            name=user.username,
            institution_id=user.institution_fk,
            institution_ids=institution_tree(conn, user.institution_fk),
            permissions=frozenset(_effective(conn, roles, groups, user_id)),
            user_id=user_id,
            group_ids=frozenset(groups),
            roles=tuple(roles),
        )
    with _CACHE_LOCK:
        _principal_cache(archive)[user_id] = (now + CACHE_TTL, principal)
    return principal


def principal_for_ae(archive: Archive, calling_ae: str, source: str = "") -> Principal:
    """The principal of a calling AE; :class:`Forbidden` when no institution accepts it."""
    title = calling_ae.strip()
    with archive.read() as conn:
        row = conn.execute(
            select(RemoteAE.institution_fk, RemoteAE.allow_store, RemoteAE.allow_query,
                   Institution.status)
            .join(Institution, Institution.id == RemoteAE.institution_fk)
            .where(RemoteAE.ae_title == title)
        ).first()  # fmt: skip
        if row is not None:
            if row.status != "active":
                raise Forbidden(f"calling AE {title!r} belongs to an inactive institution")
            inst, store, query = row.institution_fk, row.allow_store, row.allow_query
        else:
            inst = conn.scalar(
                select(Institution.id)
                .where(Institution.accept_unknown_aes.is_(True), Institution.status == "active")
                .order_by(Institution.id)
                .limit(1)
            )
            if inst is None:
                raise Forbidden(f"calling AE {title!r} is not known to this archive")
            store = query = True
        perms = (AE_STORE if store else frozenset()) | (AE_QUERY if query else frozenset())
        return Principal(
            kind="ae",
            name=title,
            institution_id=inst,
            institution_ids=institution_tree(conn, inst),
            permissions=frozenset(p.value for p in perms),
            source=source,
        )


def cli_principal(institution_id: int = DEFAULT_INSTITUTION) -> Principal:
    """Whoever runs ``radcloud`` on the server: the operator, unrestricted.

    ``institution_id`` owns the studies the operator imports.
    """
    import getpass

    from radcloud.auth.access import system

    try:
        who = getpass.getuser()
    except Exception:  # no passwd entry in a container
        who = "unknown"
    p = system(who)
    return replace(p, kind="cli", institution_id=institution_id)


def _now() -> datetime:
    return datetime.now(UTC)
