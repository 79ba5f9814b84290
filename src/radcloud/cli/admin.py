"""``radcloud user|token|institution|group|role|audit``: accounts and the audit trail for scripts.

The same services as the admin API; every change is written to the audit
trail as done by ``cli`` with the operator's OS user name.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from radcloud.auth import accounts, audit, sessions
from radcloud.auth.permissions import Perm, Role
from radcloud.cli.common import _archive, _fail, operator, out

user_app = typer.Typer(help="User accounts.", no_args_is_help=True)
token_app = typer.Typer(
    help="API tokens for systems (Authorization: Bearer).", no_args_is_help=True
)
inst_app = typer.Typer(help="Institutions (tenants).", no_args_is_help=True)
group_app = typer.Typer(help="Groups and care teams.", no_args_is_help=True)
role_app = typer.Typer(help="Roles and what they may do (system level).", no_args_is_help=True)
audit_app = typer.Typer(help="The audit trail.", no_args_is_help=True)

ROLES = ", ".join(r.value for r in Role)


def register(app: typer.Typer) -> None:
    for sub, name in ((user_app, "user"), (token_app, "token"), (inst_app, "institution"),
                      (group_app, "group"), (role_app, "role"), (audit_app, "audit")):  # fmt: skip
        app.add_typer(sub, name=name)


def _password(given: str | None) -> str:
    if given == "-":
        return sys.stdin.readline().rstrip("\n")
    if given:
        return given
    return str(typer.prompt("Password", hide_input=True, confirmation_prompt=True))


# ------------------------------------------------------------------ users


@user_app.command("create")
def user_create(
    username: Annotated[str, typer.Argument(help="Login name.")],
    role: Annotated[list[str], typer.Option(help=f"Role (repeatable): {ROLES}.")] = ["clinician"],  # noqa: B006
    institution: Annotated[str | None, typer.Option(help="Institution id or code.")] = None,
    password: Annotated[
        str | None, typer.Option(help="Password ('-' reads a line from stdin; default: prompt).")
    ] = None,
    name: Annotated[str, typer.Option(help="Display name.")] = "",
    email: Annotated[str, typer.Option(help="E-mail address.")] = "",
    sso_only: Annotated[bool, typer.Option(help="No password: sign in by SSO only.")] = False,
) -> None:
    """Create a user."""
    with _archive() as archive:
        inst = accounts.get_institution(archive, institution or 1)
        secret = None if sso_only else _password(password)
        uid = accounts.create_user(
            archive, username, secret, institution_id=inst.id, roles=role, display_name=name,
            email=email,
        )  # fmt: skip
        audit.record(archive, operator(archive), "user.create", target=username, wait=True)
    out.print(f"Created user {username} (id {uid}) in {inst.code} as {', '.join(role)}")


@user_app.command("list")
def user_list() -> None:
    """List users."""
    with _archive() as archive:
        users = accounts.list_users(archive, operator(archive))
    table = Table("id", "user", "institution", "roles", "active", "2FA", "locked")
    for u in users:
        table.add_row(str(u.id), u.username, str(u.institution_id), ",".join(u.roles),
                      "yes" if u.active else "no", "yes" if u.totp_enabled else "no",
                      "yes" if u.locked else "")  # fmt: skip
    out.print(table)


@user_app.command("set")
def user_set(
    username: Annotated[str, typer.Argument()],
    role: Annotated[list[str] | None, typer.Option(help="Replace the roles (repeatable).")] = None,
    active: Annotated[bool | None, typer.Option("--active/--inactive")] = None,
    password: Annotated[
        str | None, typer.Option(help="New password ('-' reads stdin; 'prompt' asks).")
    ] = None,
    unlock: Annotated[bool, typer.Option(help="Clear a lock-out.")] = False,
) -> None:
    """Change a user's roles, state or password."""
    with _archive() as archive:
        u = accounts.get_user(archive, username)
        accounts.update_user(archive, u.id, roles=role, active=active)
        if active is False:
            sessions.revoke_user_tokens(archive, u.id)
        if password:
            accounts.set_password(archive, u.id, _password(None if password == "prompt"
                                                           else password))  # fmt: skip
        if unlock:
            accounts.unlock(archive, u.id)
        audit.record(archive, operator(archive), "user.change", target=u.username, wait=True)
    out.print(f"Updated user {u.username}")


@user_app.command("grant")
def user_grant(
    username: Annotated[str, typer.Argument()],
    permission: Annotated[str, typer.Argument(help=", ".join(p.value for p in Perm))],
    deny: Annotated[bool, typer.Option(help="Deny instead of allow.")] = False,
    clear: Annotated[bool, typer.Option(help="Remove the user-level setting.")] = False,
) -> None:
    """Allow or deny one permission to one user (overrides roles and groups)."""
    with _archive() as archive:
        u = accounts.get_user(archive, username)
        accounts.set_grant(archive, "user", str(u.id), permission, None if clear else not deny)
        audit.record(archive, operator(archive), "user.grant", target=u.username,
                     detail={"permission": permission, "allow": not deny, "clear": clear},
                     wait=True)  # fmt: skip
    out.print(f"{'Cleared' if clear else 'Denied' if deny else 'Allowed'} {permission} "
              f"for {u.username}")  # fmt: skip


# ------------------------------------------------------------------ tokens


@token_app.command("create")
def token_create(
    user: Annotated[str, typer.Option(help="The user the token acts as.")],
    name: Annotated[str, typer.Option(help="What the token is for.")] = "cli",
    days: Annotated[int | None, typer.Option(help="Expires after this many days.")] = None,
) -> None:
    """Print a new API token (shown once) for ``Authorization: Bearer``."""
    with _archive() as archive:
        u = accounts.get_user(archive, user)
        expires = datetime.now(UTC) + timedelta(days=days) if days else None
        secret = sessions.issue(archive, u.id, sessions.API, name=name, expires_at=expires,
                                source="cli")  # fmt: skip
        audit.record(archive, operator(archive), "token.create", target=u.username, wait=True)
    print(secret)


@token_app.command("revoke")
def token_revoke(token_id: Annotated[int, typer.Argument()]) -> None:
    """Revoke a token or end a session by its id."""
    with _archive() as archive:
        sessions.revoke(archive, token_id)
        audit.record(archive, operator(archive), "token.revoke", target=str(token_id), wait=True)
    out.print(f"Revoked token {token_id}")


# ------------------------------------------------------------------ institutions


@inst_app.command("create")
def inst_create(
    code: Annotated[str, typer.Argument(help="Short code, e.g. 'city-hospital'.")],
    name: Annotated[str, typer.Option(help="Full name.")],
    kind: Annotated[str, typer.Option(help="hospital, department or clinic.")] = "hospital",
    parent: Annotated[str | None, typer.Option(help="Parent institution id or code.")] = None,
    accept_unknown_aes: Annotated[bool, typer.Option(help="Take any calling AE.")] = False,
) -> None:
    """Create an (active) institution."""
    with _archive() as archive:
        parent_id = accounts.get_institution(archive, parent).id if parent else None
        inst = accounts.create_institution(archive, code, name, kind=kind, parent_id=parent_id,
                                           accept_unknown_aes=accept_unknown_aes)  # fmt: skip
        audit.record(archive, operator(archive), "institution.create", target=inst.code,
                     wait=True)  # fmt: skip
    out.print(f"Created institution {inst.code} (id {inst.id})")


@inst_app.command("list")
def inst_list() -> None:
    """List institutions."""
    with _archive() as archive:
        found = accounts.list_institutions(archive, operator(archive))
    table = Table("id", "code", "name", "kind", "parent", "status", "unknown AEs")
    for i in found:
        table.add_row(str(i.id), i.code, i.name, i.kind, str(i.parent_id or ""), i.status,
                      "accepted" if i.accept_unknown_aes else "refused")  # fmt: skip
    out.print(table)


@inst_app.command("set")
def inst_set(
    institution: Annotated[str, typer.Argument(help="Id or code.")],
    status: Annotated[
        str | None, typer.Option(help="pending, active (approve), suspended.")
    ] = None,
    accept_unknown_aes: Annotated[
        bool | None, typer.Option("--accept-unknown-aes/--refuse-unknown-aes")
    ] = None,  # fmt: skip
) -> None:
    """Approve or suspend an institution, or change whether it takes unknown calling AEs."""
    with _archive() as archive:
        inst = accounts.get_institution(archive, institution)
        inst = accounts.set_institution(archive, inst.id, status=status,
                                        accept_unknown_aes=accept_unknown_aes)  # fmt: skip
        audit.record(archive, operator(archive), "institution.change", target=inst.code,
                     wait=True)  # fmt: skip
    out.print(f"Institution {inst.code}: {inst.status}")


# ------------------------------------------------------------------ groups, roles


@group_app.command("create")
def group_create(
    name: Annotated[str, typer.Argument()],
    institution: Annotated[str | None, typer.Option(help="Institution id or code.")] = None,
    care_team: Annotated[
        bool, typer.Option(help="A care team (can own restricted cases).")
    ] = False,
) -> None:
    """Create a group or care team."""
    with _archive() as archive:
        inst = accounts.get_institution(archive, institution or 1)
        gid = accounts.create_group(archive, inst.id, name, "care_team" if care_team else "group")
        audit.record(archive, operator(archive), "group.create", target=name, wait=True)
    out.print(f"Created {'care team' if care_team else 'group'} {name} (id {gid})")


@group_app.command("add")
def group_add(group_id: Annotated[int, typer.Argument()],
              username: Annotated[str, typer.Argument()]) -> None:  # fmt: skip
    """Add a user to a group."""
    with _archive() as archive:
        u = accounts.get_user(archive, username)
        accounts.set_member(archive, group_id, u.id, True)
        audit.record(archive, operator(archive), "group.member", target=f"{group_id}:{u.username}",
                     wait=True)  # fmt: skip
    out.print(f"Added {u.username} to group {group_id}")


@role_app.command("list")
def role_list() -> None:
    """Each role's permissions."""
    with _archive() as archive:
        perms = accounts.role_permissions(archive)
    table = Table("role", "permissions")
    for role, granted in perms.items():
        table.add_row(role, ", ".join(granted))
    out.print(table)


# ------------------------------------------------------------------ audit


@audit_app.command("verify")
def audit_verify() -> None:
    """Check the hash chain of the whole audit trail; exit 1 if it was tampered with."""
    with _archive() as archive:
        report = audit.verify(archive)
    if report.ok:
        out.print(f"Audit trail intact: {report.checked} events, head {report.head[:16]}…")
        return
    for problem in report.problems[:20]:
        out.print(f"[red]{problem}[/]")
    raise _fail(f"the audit trail was tampered with ({len(report.problems)} problem(s))")


@audit_app.command("export")
def audit_export(
    dest: Annotated[Path, typer.Argument(help="File to write ('-' for stdout).")],
    fmt: Annotated[
        str, typer.Option("--format", help="jsonl or atna (RFC 5424 syslog).")
    ] = "jsonl",
    since: Annotated[str | None, typer.Option(help="ISO date/time, e.g. 2026-11-01.")] = None,
) -> None:
    """Export audit events (oldest first) as JSON lines or ATNA syslog messages."""
    if fmt not in ("jsonl", "atna"):
        raise _fail("--format is jsonl or atna")
    with _archive() as archive:
        who = operator(archive)
        start = datetime.fromisoformat(since).replace(tzinfo=UTC) if since else None
        events: list[dict[str, object]] = []
        offset = 0
        while True:
            page = audit.search(archive, who, since=start, limit=1000, offset=offset)
            events += page
            if len(page) < 1000:
                break
            offset += 1000
        events.reverse()
        lines = (
            (json.dumps(e, ensure_ascii=False, default=str) for e in events)
            if fmt == "jsonl" else audit.syslog_lines(events)
        )  # fmt: skip
        text = "".join(line + "\n" for line in lines)
        audit.record(archive, who, "audit.export", detail={"events": len(events)}, wait=True)
    if str(dest) == "-":
        sys.stdout.write(text)
    else:
        dest.write_text(text, encoding="utf-8")
        out.print(f"Wrote {len(events)} audit event(s) to {dest}")
