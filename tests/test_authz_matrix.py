"""The authorization matrix: every HTTP endpoint × every role × own / other institution.

Generated from the application's routes and the rule table (web/security.py),
so an endpoint added later is exercised automatically, and one added without
a rule stops the app from starting (asserted below too).  For each request the
expected outcome follows from the rule, the role's permissions and whose
object the path names; the test asserts allow/deny and that no response
carries the other institution's patient (a "leak").  It prints the figures:
requests tried, denied, leaked.
"""

from __future__ import annotations

import itertools
import json
from collections import Counter
from dataclasses import dataclass
from typing import Any

import pytest
from dicom_factory import make_ct
from fastapi.testclient import TestClient
from pydicom.uid import generate_uid

from radcloud.archive import ingest, nodes
from radcloud.archive.service import Archive
from radcloud.auth import accounts, sessions, studies
from radcloud.auth.access import SYSTEM
from radcloud.auth.permissions import DEFAULT_ROLE_PERMISSIONS, Role
from radcloud.web import security
from radcloud.web.app import create_app

SECRET_NAME, SECRET_ID = "Leak^Secret", "LEAKID99"
DENIED = {401, 403, 404}
#: Path parameters that name an object owned by an institution.
SCOPED = ("{user_id}", "{group_id}", "{title}", "{token_id}", "{institution_id}", "{grant_id}")


@dataclass
class World:
    archive: Archive
    other_inst: int
    own: dict[str, str]  # study, series, instance of institution A
    other: dict[str, str]  # ... of institution B (patient SECRET_NAME)
    users: dict[str, int]  # role -> user id (all in A)
    victims: dict[str, int]  # "own"/"other" -> a user to administer
    groups: dict[str, int]
    aes: dict[str, str]


def _store(archive: Archive, institution: int, **kw: Any) -> dict[str, str]:
    study, series = generate_uid(), generate_uid()
    r = ingest.store_bytes(
        archive, make_ct(study, series, **kw), principal=accounts.cli_principal(institution)
    )
    return {"study": r.study_uid, "series": r.series_uid, "instance": r.sop_uid}


@pytest.fixture
def world(archive: Archive) -> World:
    other = accounts.create_institution(archive, "other-hospital", "Other Hospital").id
    own_study = _store(archive, 1, patient_name="Own^Patient", patient_id="OWN01")
    other_study = _store(archive, other, patient_name=SECRET_NAME, patient_id=SECRET_ID)
    users = {
        role.value: accounts.create_user(archive, f"u-{role.value}", "matrix-pass-1", roles=[role])
        for role in Role
    }
    victims = {
        "own": accounts.create_user(archive, "victim-own", "matrix-pass-1"),
        "other": accounts.create_user(
            archive, "victim-other", "matrix-pass-1", institution_id=other
        ),
    }
    groups = {
        "own": accounts.create_group(archive, 1, "own team", "care_team"),
        "other": accounts.create_group(archive, other, "other team", "care_team"),
    }
    return World(archive, other, own_study, other_study, users, victims, groups,
                 {"own": "OWN_AE", "other": "OTHER_AE"})  # fmt: skip


# ------------------------------------------------------------------ building requests


def _params(w: World, side: str, caller: int | None, path: str) -> dict[str, str]:
    """Concrete values for the path's parameters; objects are (re)made fresh when needed."""
    a = w.archive
    study = w.own if side == "own" else w.other
    inst = 1 if side == "own" else w.other_inst
    values = {**study, "frames": "1", "tag": "7FE00010", "role": "clinician",
              "perm": "study.read", "name": "style.css", "institution_id": str(inst),
              "user_id": str(w.victims[side]), "group_id": str(w.groups[side])}  # fmt: skip
    if path.startswith("/app/assets/"):  # the viewer's built assets have hashed names
        from radcloud.web.routes.app_pages import ASSETS

        values["name"] = min(p.name for p in ASSETS.glob("*.css"))
    if "{title}" in path:
        nodes.add_remote_ae(a, w.aes[side], "127.0.0.1", 104, institution_id=inst)
        values["title"] = w.aes[side]
    if "{token_id}" in path:
        owner = caller if side == "own" and caller is not None else w.victims["other"]
        sessions.issue(a, owner, sessions.API, name="victim")
        values["token_id"] = str(max(t["id"] for t in sessions.list_tokens(a, owner)))
    if "{grant_id}" in path:
        gid = studies.grant(a, SYSTEM, study["study"], "user", w.victims[side])
        values["grant_id"] = str(gid)
    return values


def _body(w: World, method: str, path: str, side: str) -> dict[str, Any]:
    """A valid body, so that the scope check (not validation) decides."""
    unique = generate_uid()[-12:].replace(".", "")
    inst = 1 if side == "own" else w.other_inst
    if path.startswith("/dicom-web/studies"):
        target = (w.own if side == "own" else w.other)["study"] if "{study}" in path else None
        data = make_ct(target or generate_uid(), generate_uid(), patient_id=f"NEW{unique}")
        return {"content": data, "headers": {"Content-Type": "application/dicom"}}
    if path == "/api/upload":
        data = make_ct(generate_uid(), generate_uid(), patient_id=f"UP{unique}")
        return {"content": data, "headers": {"Content-Type": "application/dicom"}}
    bodies: dict[tuple[str, str], Any] = {
        ("POST", "/api/auth/login"): {"username": "victim-own", "password": "matrix-pass-1"},
        ("POST", "/api/auth/password"): {"current": "wrong", "new": "whatever-1"},
        ("POST", "/api/auth/totp/enable"): {"code": "000000"},
        ("POST", "/api/auth/totp/disable"): {"code": "000000"},
        ("POST", "/api/tokens"): {"name": "matrix"},
        ("POST", "/api/institutions/register"): {
            "code": f"r{unique}", "name": "Reg", "admin_username": f"adm{unique}",
            "admin_password": "register-pass-1",
        },
        ("POST", "/api/institutions"): {"code": f"i{unique}", "name": "New"},
        ("PATCH", "/api/institutions/{institution_id}"): {"contact": None},
        ("POST", "/api/users"): {"username": f"n{unique}", "password": "new-user-pass-1"},
        ("PATCH", "/api/users/{user_id}"): {"display_name": "Victim"},
        ("POST", "/api/users/{user_id}/password"): {"password": "reset-pass-12"},
        ("PUT", "/api/users/{user_id}/permissions/{perm}"): {"allow": None},
        ("POST", "/api/groups"): {"name": f"g{unique}"},
        ("PUT", "/api/groups/{group_id}/permissions/{perm}"): {"allow": None},
        ("PUT", "/api/roles/{role}/permissions/{perm}"): {"allow": None},
        ("PUT", "/api/aes/{title}"): {"description": "matrix", "institution_id": inst},
        ("POST", "/api/studies/{study}/grants"): {
            "grantee_kind": "user", "grantee_id": w.victims["own"],
        },
        ("PUT", "/api/studies/{study}/restriction"): {"team_id": None},
        ("POST", "/api/studies/{study}/break-glass"): {"reason": "matrix emergency"},
    }  # fmt: skip
    body = bodies.get((method, path))
    return {} if body is None else {"json": body}


def _expected(rule: security.Rule, role: str | None, side: str, path: str) -> bool:
    """True when this caller should get through."""
    if rule.public:
        return True
    if role is None:
        return False
    perms = {p.value for p in DEFAULT_ROLE_PERMISSIONS[Role(role)]}
    if rule.perm is not None and rule.perm.value not in perms:
        return False
    platform = role == Role.PLATFORM_ADMIN.value
    if side == "other":
        if "{study}" in path:  # another hospital's study: only a platform admin's break-glass
            return platform and path.endswith("/break-glass")
        if any(p in path for p in SCOPED):
            return platform
    return True


def _denied(status: int, method: str, path: str, body: bytes) -> bool:
    if status in DENIED:
        return True
    if method == "GET" and path.startswith("/dicom-web") and status == 204:
        return True  # a search in a study one cannot see finds nothing
    if method == "POST" and path.startswith("/dicom-web/studies/{study}") and status in (400, 409):
        failed = json.loads(body).get("00081198", {}).get("Value", [])
        return bool(failed) and all(f["00081197"]["Value"] == [0x0124] for f in failed)
    return False


def _leaks(body: bytes) -> bool:
    return SECRET_NAME.encode() in body or SECRET_ID.encode() in body


def _order(item: tuple[str, str, Any]) -> tuple[int, str]:
    # break the glass and log out last: they change what the caller sees afterwards
    return (item[1].endswith(("/break-glass", "/logout")), item[1])


# ------------------------------------------------------------------ the matrix


def test_every_route_has_a_rule(archive: Archive) -> None:
    app = create_app(archive)
    missing = [(m, p) for m, p, _ in security.endpoints(app) if (m, p) not in security.RULES]
    assert missing == []
    assert len(security.endpoints(app)) > 60


def test_a_route_without_a_rule_stops_the_app(archive: Archive) -> None:
    from fastapi import APIRouter

    router = APIRouter()

    @router.get("/api/forgotten")
    def forgotten() -> dict[str, str]:
        return {}

    app = create_app(archive)
    app.include_router(router)
    with pytest.raises(RuntimeError, match="GET /api/forgotten"):
        security.route_rules(app)


def test_authorization_matrix(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    a = world.archive
    client = TestClient(create_app(a))
    tried, denied, leaked = 0, 0, 0
    wrong: list[str] = []
    tally: Counter[str] = Counter()
    routes = sorted(security.endpoints(client.app), key=_order)
    callers: list[str | None] = [None, *(r.value for r in Role)]
    for (method, path, _), role, side in itertools.product(routes, callers, ("own", "other")):
        rule = security.RULES[method, path]
        if path.startswith("/api/auth/oidc"):
            continue  # SSO is not configured here (404 for all); tests/test_oidc.py covers it
        caller = world.users[role] if role else None
        url = path.format(**_params(world, side, caller, path))
        headers = {}
        if caller is not None:
            headers["Authorization"] = "Bearer " + sessions.issue(a, caller, sessions.API)
        kw = _body(world, method, path, side)
        kw["headers"] = {**kw.get("headers", {}), **headers}
        r = client.request(method, url, follow_redirects=False, **kw)
        client.cookies.clear()  # a login's session cookie must not carry over to the next caller
        tried += 1
        is_denied = _denied(r.status_code, method, path, r.content)
        denied += is_denied
        if _leaks(r.content):
            leaked += 1
            wrong.append(f"LEAK {role} {side} {method} {url} -> {r.status_code}")
        want = _expected(rule, role, side, path)
        tally[f"{'allowed' if want else 'denied'}"] += 1
        if want == is_denied or (want and r.status_code >= 500):
            wrong.append(f"{role} {side} {method} {path} -> {r.status_code} "
                         f"(expected {'allow' if want else 'deny'}): {r.text[:160]}")  # fmt: skip
    with capsys.disabled():
        print(f"\nauthorization matrix: {tried} requests tried, {denied} denied, "
              f"{leaked} leaked ({tally['allowed']} expected allowed, "
              f"{tally['denied']} expected denied)")  # fmt: skip
    assert wrong == [], "\n".join(wrong[:60])
    assert leaked == 0


def _study_search(client: TestClient, token: str, **params: str) -> list[dict[str, Any]]:
    r = client.get("/dicom-web/studies", params=params,
                   headers={"Authorization": f"Bearer {token}"})  # fmt: skip
    return [] if r.status_code == 204 else list(r.json())


def test_lists_hold_only_what_the_caller_may_see(world: World) -> None:
    """Searches across all studies, series, instances and patients never show B's patient."""
    a = world.archive
    client = TestClient(create_app(a))
    token = sessions.issue(a, world.users["radiologist"], sessions.API)
    found = _study_search(client, token)
    assert [s["0020000D"]["Value"][0] for s in found] == [world.own["study"]]
    for url in ("/dicom-web/series", "/dicom-web/instances"):
        r = client.get(url, headers={"Authorization": f"Bearer {token}"})
        assert not _leaks(r.content) and world.other["study"].encode() not in r.content
    assert _study_search(client, token, PatientID=SECRET_ID) == []
    assert _study_search(client, token, PatientName="Leak*") == []
    # B's own staff see B's study and not A's
    b_user = accounts.create_user(
        a, "b-radiologist", "matrix-pass-1", institution_id=world.other_inst, roles=["radiologist"]
    )
    found = _study_search(client, sessions.issue(a, b_user, sessions.API))
    assert [s["0020000D"]["Value"][0] for s in found] == [world.other["study"]]
