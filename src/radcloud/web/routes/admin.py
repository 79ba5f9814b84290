"""Admin API: institutions, users, groups, roles, DICOM nodes.

Institution admins manage their own institution (and the ones nested under
it); platform admins manage all.  Permissions are checked by the endpoint
rules (web/security.py); the scope (which institution) is checked here.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, Field

from radcloud.archive import nodes
from radcloud.auth import accounts, admin, sessions
from radcloud.errors import NotFound
from radcloud.web.deps import ArchiveDep, Who

router = APIRouter()


# ------------------------------------------------------------------ institutions


class RegisterBody(BaseModel):
    code: str = Field(max_length=32)
    name: str = Field(max_length=128)
    kind: str = "hospital"
    contact: str = Field("", max_length=255)
    admin_username: str = Field(max_length=64)
    admin_password: str = Field(max_length=256)


@router.post("/institutions/register", status_code=202)
def register(body: RegisterBody, archive: ArchiveDep) -> dict[str, Any]:
    """An institution asks to join; it and its admin work once a platform admin approves."""
    inst, _ = accounts.register_institution(
        archive, body.code, body.name, kind=body.kind, admin_username=body.admin_username,
        admin_password=body.admin_password, contact=body.contact,
    )  # fmt: skip
    return {"id": inst.id, "code": inst.code, "status": inst.status}


class InstitutionBody(BaseModel):
    code: str = Field(max_length=32)
    name: str = Field(max_length=128)
    kind: str = "hospital"
    parent_id: int | None = None
    accept_unknown_aes: bool = False


@router.get("/institutions")
def list_institutions(archive: ArchiveDep, who: Who) -> list[dict[str, Any]]:
    return [asdict(i) for i in accounts.list_institutions(archive, who)]


@router.post("/institutions", status_code=201)
def create_institution(body: InstitutionBody, archive: ArchiveDep) -> dict[str, Any]:
    inst = accounts.create_institution(
        archive, body.code, body.name, kind=body.kind, parent_id=body.parent_id,
        accept_unknown_aes=body.accept_unknown_aes,
    )  # fmt: skip
    return asdict(inst)


class InstitutionChange(BaseModel):
    status: str | None = None
    name: str | None = Field(None, max_length=128)
    accept_unknown_aes: bool | None = None


@router.patch("/institutions/{institution_id}")
def change_institution(
    institution_id: int, body: InstitutionChange, archive: ArchiveDep
) -> dict[str, Any]:
    """Approve (status=active), suspend, rename, or change the unknown-AE policy."""
    return asdict(accounts.set_institution(archive, institution_id, **body.model_dump()))


# ------------------------------------------------------------------ users


class UserBody(BaseModel):
    username: str = Field(max_length=64)
    password: str | None = Field(None, max_length=256, description="None: SSO only")
    roles: list[str] = ["clinician"]
    institution_id: int | None = None
    display_name: str = Field("", max_length=128)
    email: str = Field("", max_length=254)


def _user_out(u: accounts.UserInfo) -> dict[str, Any]:
    return asdict(u)


@router.get("/users")
def list_users(
    archive: ArchiveDep, who: Who, institution_id: int | None = None
) -> list[dict[str, Any]]:
    return [_user_out(u) for u in accounts.list_users(archive, who, institution_id)]


@router.post("/users", status_code=201)
def create_user(body: UserBody, archive: ArchiveDep, who: Who) -> dict[str, Any]:
    inst = body.institution_id or who.institution_id
    admin.check_institution(who, inst)
    admin.check_roles(who, body.roles)
    uid = accounts.create_user(
        archive, body.username, body.password, institution_id=inst, roles=body.roles,
        display_name=body.display_name, email=body.email,
    )  # fmt: skip
    return _user_out(accounts.get_user(archive, uid))


@router.get("/users/{user_id}")
def get_user(user_id: int, archive: ArchiveDep, who: Who) -> dict[str, Any]:
    user = admin.managed_user(archive, who, user_id)
    return {**_user_out(user), "permissions": accounts.grants_of(archive, "user", str(user.id))}


class UserChange(BaseModel):
    roles: list[str] | None = None
    display_name: str | None = Field(None, max_length=128)
    email: str | None = Field(None, max_length=254)
    active: bool | None = None


@router.patch("/users/{user_id}")
def change_user(user_id: int, body: UserChange, archive: ArchiveDep, who: Who) -> dict[str, Any]:
    user = admin.managed_user(archive, who, user_id)
    admin.check_user_change(who, user, body.roles, body.active)
    updated = accounts.update_user(archive, user.id, **body.model_dump())
    if body.active is False:
        sessions.revoke_user_tokens(archive, user.id)
    return _user_out(updated)


class NewPassword(BaseModel):
    password: str = Field(max_length=256)


@router.post("/users/{user_id}/password", status_code=204)
def reset_password(user_id: int, body: NewPassword, archive: ArchiveDep, who: Who) -> None:
    accounts.set_password(archive, admin.managed_user(archive, who, user_id).id, body.password)


@router.post("/users/{user_id}/unlock", status_code=204)
def unlock(user_id: int, archive: ArchiveDep, who: Who) -> None:
    accounts.unlock(archive, admin.managed_user(archive, who, user_id).id)


class GrantBody(BaseModel):
    allow: bool | None = Field(description="true allow, false deny, null clear")


@router.put("/users/{user_id}/permissions/{perm}", status_code=204)
def user_permission(
    user_id: int, perm: str, body: GrantBody, archive: ArchiveDep, who: Who
) -> None:
    user = admin.managed_user(archive, who, user_id)
    admin.check_grant(who, perm, body.allow)
    accounts.set_grant(archive, "user", str(user.id), perm, body.allow)


# ------------------------------------------------------------------ groups and roles


class GroupBody(BaseModel):
    name: str = Field(max_length=128)
    kind: str = "group"
    institution_id: int | None = None


@router.get("/groups")
def list_groups(archive: ArchiveDep, who: Who) -> list[dict[str, Any]]:
    return [asdict(g) for g in accounts.list_groups(archive, who)]


@router.post("/groups", status_code=201)
def create_group(body: GroupBody, archive: ArchiveDep, who: Who) -> dict[str, Any]:
    inst = body.institution_id or who.institution_id
    admin.check_institution(who, inst)
    gid = accounts.create_group(archive, inst, body.name, body.kind)
    return asdict(accounts.get_group(archive, gid))


@router.put("/groups/{group_id}/members/{user_id}", status_code=204)
def add_member(group_id: int, user_id: int, archive: ArchiveDep, who: Who) -> None:
    admin.add_member(archive, who, group_id, user_id)


@router.delete("/groups/{group_id}/members/{user_id}", status_code=204)
def remove_member(group_id: int, user_id: int, archive: ArchiveDep, who: Who) -> None:
    admin.managed_group(archive, who, group_id)
    accounts.set_member(archive, group_id, user_id, False)


@router.put("/groups/{group_id}/permissions/{perm}", status_code=204)
def group_permission(
    group_id: int, perm: str, body: GrantBody, archive: ArchiveDep, who: Who
) -> None:
    admin.managed_group(archive, who, group_id)
    admin.check_grant(who, perm, body.allow)
    accounts.set_grant(archive, "group", str(group_id), perm, body.allow)


@router.get("/roles")
def list_roles(archive: ArchiveDep) -> dict[str, list[str]]:
    """Each role's permissions (defaults changed by the platform admin)."""
    return accounts.role_permissions(archive)


@router.put("/roles/{role}/permissions/{perm}", status_code=204)
def role_permission(role: str, perm: str, body: GrantBody, archive: ArchiveDep) -> None:
    accounts.set_grant(archive, "role", role, perm, body.allow)


# ------------------------------------------------------------------ DICOM nodes


class AeBody(BaseModel):
    host: str | None = Field(None, max_length=255)
    port: int | None = None
    description: str = Field("", max_length=255)
    institution_id: int | None = None
    allow_store: bool = True
    allow_query: bool = True


@router.get("/aes")
def list_aes(archive: ArchiveDep, who: Who) -> list[dict[str, Any]]:
    return [asdict(n) for n in nodes.list_remote_aes(archive, admin.node_scope(who))]


@router.put("/aes/{title}")
def put_ae(title: str, body: AeBody, archive: ArchiveDep, who: Who) -> dict[str, Any]:
    """Allow a DICOM node to call us (and with host/port, to receive C-MOVEs)."""
    admin.managed_node(archive, who, title)
    inst = body.institution_id or who.institution_id
    admin.check_institution(who, inst)
    node, _ = nodes.add_remote_ae(
        archive, title, body.host, body.port, body.description, institution_id=inst,
        allow_store=body.allow_store, allow_query=body.allow_query,
    )  # fmt: skip
    return asdict(node)


@router.delete("/aes/{title}", status_code=204)
def delete_ae(title: str, archive: ArchiveDep, who: Who) -> None:
    if admin.managed_node(archive, who, title) is None:
        raise NotFound(f"no DICOM node with AE title {title.strip()!r}")
    nodes.remove_remote_ae(archive, title)
