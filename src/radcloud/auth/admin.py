"""What an administrator may do to whom: the scope rules of the admin interfaces.

Institution admins act on their own institution (and those nested under it);
platform admins on all.  Nobody hands out a permission or a role they do not
hold.  The HTTP admin API calls these before it changes anything; the CLI is
the server's operator and is not limited by them.
"""

from __future__ import annotations

from collections.abc import Iterable

from radcloud.archive import nodes
from radcloud.archive.service import Archive
from radcloud.auth import accounts
from radcloud.auth.access import Principal
from radcloud.auth.permissions import Role
from radcloud.errors import Forbidden, InvalidRequest, NotFound


def check_institution(p: Principal, institution_id: int) -> None:
    """An institution ``p`` administers; others are "not found"."""
    if not p.is_platform and institution_id not in p.institution_ids:
        raise NotFound(f"no institution {institution_id}")


def check_roles(p: Principal, roles: Iterable[str] | None) -> None:
    """Only a platform admin makes platform admins."""
    if roles and Role.PLATFORM_ADMIN.value in roles and not p.is_platform:
        raise Forbidden("only a platform admin may make a platform admin")


def check_grant(p: Principal, perm: str, allow: bool | None) -> None:
    """Nobody hands out a permission they do not hold themselves."""
    if allow and not p.can(perm):
        raise Forbidden(f"you cannot grant {perm}: you do not hold it")


def managed_user(archive: Archive, p: Principal, user_id: int) -> accounts.UserInfo:
    user = accounts.get_user(archive, user_id)
    accounts.manageable(p, user)
    return user


def check_user_change(
    p: Principal, user: accounts.UserInfo, roles: Iterable[str] | None, active: bool | None
) -> None:
    check_roles(p, roles)
    if user.id == p.user_id and active is False:
        raise InvalidRequest("you cannot deactivate yourself")


def managed_group(archive: Archive, p: Principal, group_id: int) -> accounts.GroupInfo:
    group = accounts.get_group(archive, group_id)
    if not p.is_platform and group.institution_id not in p.institution_ids:
        raise NotFound(f"no group {group_id}")
    return group


def add_member(archive: Archive, p: Principal, group_id: int, user_id: int) -> None:
    """Put a user into a group; a care team may take a partner institution's consultant."""
    group = managed_group(archive, p, group_id)
    user = accounts.get_user(archive, user_id)
    foreign = not p.is_platform and user.institution_id not in p.institution_ids
    if foreign and group.kind != "care_team":
        raise NotFound(f"no user {user_id}")
    accounts.set_member(archive, group_id, user_id, True)


def managed_node(archive: Archive, p: Principal, title: str) -> nodes.RemoteNode | None:
    """The DICOM node ``title`` if ``p`` administers it; None if there is none."""
    try:
        node = nodes.get_node(archive, title)
    except NotFound:
        return None
    if not p.is_platform and node.institution_id not in p.institution_ids:
        raise Forbidden(f"AE title {title.strip()!r} belongs to another institution")
    return node


def node_scope(p: Principal) -> frozenset[int] | None:
    """Whose DICOM nodes ``p`` lists (None: all)."""
    return None if p.is_platform else p.institution_ids
