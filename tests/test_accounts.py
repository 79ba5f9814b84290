"""Accounts: passwords, permissions at three levels, TOTP, sessions, registration, CLI."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from radcloud.archive.service import Archive
from radcloud.auth import accounts, passwords, sessions, totp
from radcloud.auth.permissions import Perm, Role
from radcloud.errors import Conflict, InvalidRequest, Unauthenticated
from radcloud.web.app import create_app

PW = "good-password-1"


@pytest.fixture(autouse=True)
def _fresh_ip_limiter() -> None:
    sessions.IP_LIMITER.reset()


def test_passwords_are_argon2id_and_checked(archive: Archive) -> None:
    uid = accounts.create_user(archive, "alice", PW)
    from radcloud.store.models import User

    with archive.read() as conn:
        stored = conn.scalar(User.__table__.select().with_only_columns(User.password_hash))
    assert stored.startswith("$argon2id$") and PW not in stored
    assert passwords.verify(stored, PW) and not passwords.verify(stored, PW + "x")
    for weak in ("short1", "onlyletterslong", "1234567890123"):
        with pytest.raises(InvalidRequest):
            accounts.set_password(archive, uid, weak)
    with pytest.raises(Conflict):
        accounts.create_user(archive, "ALICE", PW)  # user names are case-insensitive
    with pytest.raises(InvalidRequest):
        accounts.create_user(archive, "bob", PW, roles=["surgeon-in-chief"])


def test_permissions_at_role_group_and_user_level(archive: Archive) -> None:
    uid = accounts.create_user(archive, "carl", PW, roles=[Role.CLINICIAN])
    p = accounts.principal_for_user(archive, uid)
    assert p.can(Perm.STUDY_READ) and not p.can(Perm.STUDY_WRITE)
    # system level: clinicians may upload
    accounts.set_grant(archive, "role", "clinician", "study.write", True)
    assert accounts.principal_for_user(archive, uid).can(Perm.STUDY_WRITE)
    # group level: the night-shift group may not download
    gid = accounts.create_group(archive, 1, "night shift")
    accounts.set_member(archive, gid, uid, True)
    accounts.set_grant(archive, "group", str(gid), "study.download", False)
    p = accounts.principal_for_user(archive, uid)
    assert not p.can(Perm.STUDY_DOWNLOAD) and gid in p.group_ids
    # user level wins over both
    accounts.set_grant(archive, "user", str(uid), "study.download", True)
    accounts.set_grant(archive, "user", str(uid), "study.write", False)
    p = accounts.principal_for_user(archive, uid)
    assert p.can(Perm.STUDY_DOWNLOAD) and not p.can(Perm.STUDY_WRITE)
    accounts.set_grant(archive, "user", str(uid), "study.write", None)  # cleared: role again
    assert accounts.principal_for_user(archive, uid).can(Perm.STUDY_WRITE)
    assert "study.write" in accounts.role_permissions(archive)["clinician"]


def test_nested_institutions_see_down_not_up(archive: Archive) -> None:
    hosp = accounts.create_institution(archive, "city-hosp", "City Hospital")
    dept = accounts.create_institution(
        archive, "city-rad", "Radiology", kind="department", parent_id=hosp.id
    )
    boss = accounts.principal_for_user(
        archive, accounts.create_user(archive, "boss", PW, institution_id=hosp.id)
    )
    staff = accounts.principal_for_user(
        archive, accounts.create_user(archive, "staff", PW, institution_id=dept.id)
    )
    assert boss.institution_ids == {hosp.id, dept.id}
    assert staff.institution_ids == {dept.id}


def test_totp_login(archive: Archive) -> None:
    uid = accounts.create_user(archive, "dana", PW)
    secret, uri = sessions.totp_begin(archive, uid)
    assert uri.startswith("otpauth://totp/radcloud%3Adana?secret=" + secret)
    sessions.login(archive, "dana", PW)  # not enabled yet: password alone works
    with pytest.raises(InvalidRequest):
        sessions.totp_enable(
            archive, uid, "000000" if totp.code_at(secret, time.time()) != "000000" else "111111"
        )
    sessions.totp_enable(archive, uid, totp.code_at(secret, time.time()))
    with pytest.raises(Unauthenticated, match="second factor required"):
        sessions.login(archive, "dana", PW)
    with pytest.raises(Unauthenticated, match="one-time code"):
        sessions.login(archive, "dana", PW, code="12345x")
    done = sessions.login(archive, "dana", PW, code=totp.code_at(secret, time.time()))
    assert sessions.authenticate(archive, done.token).name == "dana"
    # RFC 6238 appendix B test vector (SHA-1, 8 digits there; our 6 are its last 6)
    rfc = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"
    assert totp.code_at(rfc, 59) == "287082"


def test_session_cookie_flow_and_logout(archive: Archive) -> None:
    accounts.create_user(archive, "erin", PW, roles=["radiologist"])
    client = TestClient(create_app(archive))
    assert client.get("/api/auth/me").status_code == 401
    r = client.post("/api/auth/login", json={"username": "erin", "password": PW})
    assert r.status_code == 200
    cookie = r.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie.replace("Strict", "strict")
    me = client.get("/api/auth/me").json()  # the cookie alone signs in
    assert me["username"] == "erin" and "study.read" in me["permissions"]
    assert client.post("/api/auth/logout").status_code == 204
    assert client.get("/api/auth/me").status_code == 401
    # the token from the login answer is dead as well
    r2 = client.get("/api/auth/me", headers={"Authorization": "Bearer " + r.json()["token"]})
    assert r2.status_code == 401


def test_changing_the_password_ends_sessions_not_api_tokens(archive: Archive) -> None:
    uid = accounts.create_user(archive, "fay", PW)
    session = sessions.login(archive, "fay", PW).token
    api = sessions.issue(archive, uid, sessions.API, name="pacs-bridge")
    accounts.set_password(archive, uid, "another-password-2")
    with pytest.raises(Unauthenticated):
        sessions.authenticate(archive, session)
    assert sessions.authenticate(archive, api).name == "fay"
    with pytest.raises(Unauthenticated):
        sessions.login(archive, "fay", PW)


def test_registration_waits_for_approval(archive: Archive) -> None:
    client = TestClient(create_app(archive))
    r = client.post(
        "/api/institutions/register",
        json={
            "code": "north-clinic",
            "name": "North Clinic",
            "kind": "clinic",
            "admin_username": "north-admin",
            "admin_password": "north-pass-12",
        },
    )
    assert r.status_code == 202 and r.json()["status"] == "pending"
    login = {"username": "north-admin", "password": "north-pass-12"}
    assert client.post("/api/auth/login", json=login).status_code == 401
    admin = sessions.issue(
        archive, accounts.create_user(archive, "root", PW, roles=["platform_admin"]), "api"
    )
    r = client.patch(
        f"/api/institutions/{r.json()['id']}",
        json={"status": "active"},
        headers={"Authorization": f"Bearer {admin}"},
    )
    assert r.status_code == 200 and r.json()["status"] == "active"
    r = client.post("/api/auth/login", json=login)
    assert r.status_code == 200 and r.json()["user"]["roles"] == ["institution_admin"]


def test_institution_admin_cannot_escalate(archive: Archive) -> None:
    client = TestClient(create_app(archive))
    uid = accounts.create_user(archive, "ia", PW, roles=["institution_admin"])
    h = {"Authorization": "Bearer " + sessions.issue(archive, uid, "api")}
    r = client.post(
        "/api/users",
        headers=h,
        json={"username": "evil", "password": PW, "roles": ["platform_admin"]},
    )
    assert r.status_code == 403
    victim = accounts.create_user(archive, "victim1", PW)
    r = client.put(f"/api/users/{victim}/permissions/roles.manage", json={"allow": True}, headers=h)
    assert r.status_code == 403  # cannot hand out what one does not hold
    r = client.patch(f"/api/users/{victim}", json={"roles": ["platform_admin"]}, headers=h)
    assert r.status_code == 403


def _cli(archive: Archive, *args: str, input: str | None = None) -> tuple[int, str]:
    from radcloud.cli.main import app

    env = {"RADCLOUD_DATA_DIR": str(archive.settings.data_dir)}
    if archive.settings.database_url:
        env["RADCLOUD_DATABASE_URL"] = archive.settings.database_url
    r = CliRunner().invoke(app, list(args), env=env, input=input)
    return r.exit_code, r.output


def test_cli_user_token_institution_and_ae(archive: Archive) -> None:
    code, out = _cli(archive, "institution", "create", "east-hosp", "--name", "East Hospital")
    assert code == 0, out
    code, out = _cli(
        archive,
        "user",
        "create",
        "dr.li",
        "--role",
        "radiologist",
        "--institution",
        "east-hosp",
        "--password",
        "-",
        input="cli-password-1\n",
    )
    assert code == 0, out
    code, out = _cli(archive, "token", "create", "--user", "dr.li", "--name", "ris")
    assert code == 0, out
    token = out.strip().splitlines()[-1]
    assert re.fullmatch(r"rca_[A-Za-z0-9_-]{40,}", token)
    p = sessions.authenticate(archive, token)
    east = accounts.get_institution(archive, "east-hosp")
    assert p.name == "dr.li" and p.institution_id == east.id and p.can(Perm.STUDY_SHARE)
    r = TestClient(create_app(archive)).get(
        "/api/auth/me", headers={"Authorization": f"Bearer {token}"}
    )
    assert r.status_code == 200 and r.json()["username"] == "dr.li"
    code, out = _cli(archive, "ae", "add", "EAST_CT", "--institution", "east-hosp", "--no-query")
    assert code == 0 and "calls us only" in out, out
    ae = accounts.principal_for_ae(archive, "EAST_CT")
    assert ae.institution_id == east.id and ae.can(Perm.STUDY_WRITE)
    assert not ae.can(Perm.STUDY_READ)
    code, out = _cli(
        archive,
        "user",
        "create",
        "xx",
        "--role",
        "wizard",
        "--password",
        "-",
        input="cli-password-1\n",
    )
    assert code == 1 and "unknown role 'wizard'" in out
    code, out = _cli(archive, "audit", "verify")
    assert code == 0 and "intact" in out, out


def test_first_start_prints_the_admin_password_once(tmp_path: Path) -> None:
    from _server import Server

    srv = Server(tmp_path / "data", RADCLOUD_DICOM_PORT="0")
    del srv.env["RADCLOUD_ADMIN_PASSWORD"]
    srv.start()
    try:
        deadline = time.monotonic() + 30
        while "Sign in as 'admin'" not in srv.log.read_text() and time.monotonic() < deadline:
            time.sleep(0.1)
        log = srv.log.read_text()
        m = re.search(r"shown only this once.*\n.*\n\s+(\S+)\n", log)
        assert m, log
        import httpx

        r = httpx.post(
            f"http://127.0.0.1:{srv.http_port}/api/auth/login",
            json={"username": "admin", "password": m.group(1)},
        )
        assert r.status_code == 200 and "platform_admin" in r.json()["user"]["roles"]
    finally:
        assert srv.stop() == 0
    srv.start()
    try:
        time.sleep(1.0)
        assert srv.log.read_text().count("Sign in as 'admin'") == 1
    finally:
        srv.stop()


def test_nul_characters_in_json_bodies_are_a_client_error(archive: Archive) -> None:
    """PostgreSQL refuses NUL in text; that is the caller's bad input (400), not a 500."""
    uid = accounts.create_user(archive, "nul-user", PW)
    client = TestClient(create_app(archive), raise_server_exceptions=False)
    r = client.post("/api/auth/login", json={"username": "nul\x00user", "password": PW})
    assert r.status_code in (400, 401), r.text
    h = {"Authorization": "Bearer " + sessions.issue(archive, uid, "api")}
    r = client.post("/api/tokens", json={"name": "bad\x00name"}, headers=h)
    assert r.status_code in (201, 400), r.text
    assert client.get("/api/auth/me", headers=h).status_code == 200


def test_viewer_settings_follow_the_user(archive: Archive) -> None:
    """Settings saved from one browser are there in another; nobody else sees them."""
    alice = accounts.create_user(archive, "set-alice", PW)
    bob = accounts.create_user(archive, "set-bob", PW)
    client = TestClient(create_app(archive))
    h = {"Authorization": "Bearer " + sessions.issue(archive, alice, "api")}
    assert client.get("/api/me/settings", headers=h).json() == {}
    layout = {"layout": "2x2", "presets": {"lung": [1500, -600]}, "overlay": {"CT": ["WL"]}}
    assert client.put("/api/me/settings", json=layout, headers=h).status_code == 200
    r = client.patch("/api/me/settings", json={"layout": "1x2", "overlay": None}, headers=h)
    assert r.json() == {"layout": "1x2", "presets": {"lung": [1500, -600]}}
    # another session of the same user (another PC) finds them
    other_pc = TestClient(create_app(archive))
    r = other_pc.post("/api/auth/login", json={"username": "set-alice", "password": PW})
    assert other_pc.get("/api/me/settings").json()["layout"] == "1x2"
    hb = {"Authorization": "Bearer " + sessions.issue(archive, bob, "api")}
    assert client.get("/api/me/settings", headers=hb).json() == {}
    assert client.put("/api/me/settings", json=[1, 2], headers=h).status_code == 422
    big = {"x": "a" * (300 * 1024)}
    assert client.put("/api/me/settings", json=big, headers=h).status_code == 413
    r = client.put("/api/me/settings", content=b"{not json", headers=h)
    assert r.status_code == 400
    assert client.get("/api/me/settings").status_code == 401
