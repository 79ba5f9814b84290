"""Attacks on the HTTP API and the archive's records, each tried and each expected to fail.

Two institutions: A (the default) with the user ``alice`` (radiologist), and B,
whose patient (``SECRET_NAME`` / ``SECRET_ID``) must never show in an answer to
A.  Tokens and sessions, object references of the other institution (IDOR), SQL
injection in QIDO, path traversal, oversized headers and bodies, password
guessing, tampering with the audit trail, and cross-site requests.  Each test
prints its figures: requests tried, denied, leaked (a leak fails the test).
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import httpx
import pytest
from dicom_factory import make_ct
from fastapi.testclient import TestClient
from pydicom.uid import generate_uid
from sqlalchemy import func, select, text, update
from sqlalchemy.exc import DBAPIError
from typer.testing import CliRunner

from radcloud.archive import ingest, retrieve
from radcloud.archive.service import Archive
from radcloud.auth import accounts, audit, sessions
from radcloud.auth.access import SYSTEM
from radcloud.cli.main import app as cli_app
from radcloud.store.models import (
    AuditEvent,
    AuthToken,
    Instance,
    Institution,
    Patient,
    Series,
    Study,
    User,
)
from radcloud.web import security
from radcloud.web.app import create_app
from radcloud.web.routes.pages import STATIC

SECRET_NAME, SECRET_ID = "Leak^Secret", "LEAKID99"
OWN_NAME, OWN_ID = "Own^Patient", "OWN01"
PASSWORD = "attack-pass-12"
DENIED = {401, 403, 404, 429}
#: Answers that give nothing away: refusals, bad requests, "no match".
REFUSED = DENIED | {400, 409, 413, 422, 431}


# ------------------------------------------------------------------ the world


@dataclass
class World:
    archive: Archive
    b_id: int
    own: dict[str, str]  # study, series, instance of A
    other: dict[str, str]  # ... of B (patient SECRET_NAME)
    alice: int  # radiologist of A
    bob: int  # radiologist of B
    client: TestClient

    def token(self, user: int | None = None, **kw: Any) -> str:
        return sessions.issue(self.archive, user or self.alice, sessions.API, name="attack", **kw)

    def auth(self, user: int | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(user)}"}


def _store(archive: Archive, institution: int, **kw: Any) -> dict[str, str]:
    r = ingest.store_bytes(
        archive, make_ct(generate_uid(), generate_uid(), **kw),
        principal=accounts.cli_principal(institution),
    )  # fmt: skip
    return {"study": r.study_uid, "series": r.series_uid, "instance": r.sop_uid}


def _world(archive: Archive) -> World:
    sessions.IP_LIMITER.reset()
    b_id = accounts.create_institution(archive, "hospital-b", "Hospital B").id
    own = _store(archive, 1, patient_name=OWN_NAME, patient_id=OWN_ID, accession="ACC-A")
    other = _store(archive, b_id, patient_name=SECRET_NAME, patient_id=SECRET_ID,
                   accession="ACC-SECRET", StudyDescription="Secret study")  # fmt: skip
    alice = accounts.create_user(archive, "alice", PASSWORD, roles=["radiologist"])
    bob = accounts.create_user(archive, "bob", PASSWORD, institution_id=b_id,
                               roles=["radiologist"])  # fmt: skip
    client = TestClient(create_app(archive), raise_server_exceptions=False)
    return World(archive, b_id, own, other, alice, bob, client)


@pytest.fixture
def world(archive: Archive) -> Iterator[World]:
    w = _world(archive)
    yield w
    sessions.IP_LIMITER.reset()


@dataclass
class Tally:
    """Requests tried, refused and leaking; printed when the test ends."""

    markers: tuple[str, ...] = ()
    tried: int = 0
    denied: int = 0
    leaked: int = 0
    wrong: list[str] = field(default_factory=list)

    def check(self, r: httpx.Response, allowed: set[int] | None = None, what: str = "") -> None:
        """Count ``r``; a status outside ``allowed`` (default: a refusal) or a leak is wrong."""
        self.tried += 1
        ok = DENIED if allowed is None else allowed
        if r.status_code in REFUSED or (r.status_code == 204 and r.request.method == "GET"):
            self.denied += 1
        label = what or f"{r.request.method} {unquote(str(r.request.url))[:160]}"
        if self.leaks(r):
            self.leaked += 1
            self.wrong.append(f"LEAK {label} -> {r.status_code}: {r.text[:200]}")
        if r.status_code not in ok or r.status_code >= 500:
            self.wrong.append(f"{label} -> {r.status_code} (wanted {sorted(ok)}): {r.text[:200]}")

    def leaks(self, r: httpx.Response) -> bool:
        asked = unquote(str(r.request.url)) + r.request.content.decode("latin-1")
        body = r.content.decode("latin-1") + "".join(r.headers.values())
        return any(m in body and m not in asked for m in self.markers)

    def count(self, denied: bool) -> None:
        """A non-HTTP attempt (CLI, SQL): tried, and refused or not."""
        self.tried += 1
        self.denied += denied

    def assert_clean(self) -> None:
        assert self.wrong == [], "\n".join(self.wrong[:40])
        assert self.leaked == 0


@pytest.fixture
def tally(request: pytest.FixtureRequest, capsys: pytest.CaptureFixture[str]) -> Iterator[Tally]:
    t = Tally()
    yield t
    with capsys.disabled():
        print(f"\n{request.node.name}: {t.tried} requests tried, {t.denied} denied, "
              f"{t.leaked} leaked")  # fmt: skip


def _markers(w: World) -> tuple[str, ...]:
    return (SECRET_NAME, SECRET_ID, w.other["study"], w.other["series"], w.other["instance"])


def _login(client: TestClient, username: str, password: str, **kw: Any) -> httpx.Response:
    return client.post("/api/auth/login", json={"username": username, "password": password}, **kw)


# ------------------------------------------------------------------ tokens and sessions


def test_ended_expired_forged_and_misplaced_tokens_are_refused(world: World, tally: Tally) -> None:
    w, a = world, world.archive
    client = w.client
    me = "/api/auth/me"

    def bearer(secret: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {secret}"}

    # a session after logout, as bearer and as cookie
    r = _login(client, "alice", PASSWORD)
    assert r.status_code == 200, r.text
    session = r.json()["token"]
    assert client.get(me, headers=bearer(session)).status_code == 200
    assert client.post("/api/auth/logout", headers=bearer(session)).status_code == 204
    tally.check(client.get(me, headers=bearer(session)), {401})
    client.cookies.clear()
    client.cookies.set(security.COOKIE, session)
    tally.check(client.get("/dicom-web/studies"), {401}, "session cookie after logout")
    client.cookies.clear()

    # an API token after it was revoked through the API
    api = w.token()
    tid = max(t["id"] for t in sessions.list_tokens(a, w.alice))
    assert client.delete(f"/api/tokens/{tid}", headers=bearer(api)).status_code == 204
    tally.check(client.get(me, headers=bearer(api)), {401})

    # an API token past its expiry
    expired = w.token(expires_at=datetime.now(UTC) - timedelta(minutes=1))
    tally.check(client.get("/dicom-web/studies", headers=bearer(expired)), {401})

    # a session idle for longer than session_idle_minutes, or past its end
    idle_minutes = a.settings.session_idle_minutes
    for shift, column in ((timedelta(minutes=idle_minutes + 1), "last_used_at"),
                          (timedelta(seconds=1), "expires_at")):  # fmt: skip
        secret = _login(client, "alice", PASSWORD).json()["token"]
        client.cookies.clear()
        when = datetime.now(UTC) - shift
        with a.write() as conn:
            conn.execute(
                update(AuthToken)
                .where(AuthToken.token_hash == sessions.token_hash(secret))
                .values(**{column: when})
            )
        tally.check(client.get(me, headers=bearer(secret)), {401}, f"session, {column} passed")
    fresh = _login(client, "alice", PASSWORD).json()["token"]  # control: just inside the limit
    with a.write() as conn:
        conn.execute(
            update(AuthToken)
            .where(AuthToken.token_hash == sessions.token_hash(fresh))
            .values(last_used_at=datetime.now(UTC) - timedelta(minutes=idle_minutes - 1))
        )
    assert client.get(me, headers=bearer(fresh)).status_code == 200
    client.cookies.clear()

    # the tokens of a deactivated user, and of a user whose institution is suspended
    victim = accounts.create_user(a, "carol", PASSWORD, roles=["clinician"])
    carol_api, carol_session = w.token(victim), _login(client, "carol", PASSWORD).json()["token"]
    client.cookies.clear()
    assert client.get(me, headers=bearer(carol_api)).status_code == 200
    accounts.update_user(a, victim, active=False)
    for secret in (carol_api, carol_session):
        tally.check(client.get(me, headers=bearer(secret)), {401}, "deactivated user")
    tally.check(_login(client, "carol", PASSWORD), {401}, "deactivated user logs in")
    b_api = w.token(w.bob)
    accounts.set_institution(a, w.b_id, status="suspended")
    tally.check(client.get(me, headers=bearer(b_api)), {401}, "suspended institution")
    accounts.set_institution(a, w.b_id, status="active")

    # forged secrets: right prefix, random or altered body, too long, other schemes
    real = w.token()
    altered = real[:-1] + ("A" if real[-1] != "A" else "B")
    for forged in ("rca_" + "A" * 43, "rcs_" + "x" * 43, altered, real + "x", "rca_", "rcs_",
                   "rca_" + "A" * 200, real.upper(), sessions.token_hash(real)):  # fmt: skip
        tally.check(client.get("/dicom-web/studies", headers=bearer(forged)), {401})
    for header in (f"Basic {real}", f"Token {real}", real, "Bearer", "Bearer  "):
        tally.check(client.get("/dicom-web/studies", headers={"Authorization": header}), {401})
    assert client.get("/dicom-web/studies", headers=bearer(real)).status_code == 200  # control

    # a valid token in the query string is not a credential
    for name in ("access_token", "token", "auth", security.COOKIE, "Authorization"):
        tally.check(client.get("/dicom-web/studies", params={name: real}), {401})
        tally.check(client.get(me, params={name: f"Bearer {real}"}), {401})

    # password change ends the user's sessions
    s = _login(client, "alice", PASSWORD).json()["token"]
    client.cookies.clear()
    r = client.post("/api/auth/password", json={"current": PASSWORD, "new": PASSWORD + "x"},
                    headers=bearer(s))  # fmt: skip
    assert r.status_code == 204, r.text
    tally.check(client.get(me, headers=bearer(s)), {401}, "session after password change")
    tally.assert_clean()


# ------------------------------------------------------------------ IDOR


def _wado_routes() -> list[str]:
    return sorted(
        path
        for method, path in security.RULES
        if method == "GET" and path.startswith("/dicom-web/studies/{study}")
    )


def _fill(path: str, ids: dict[str, str]) -> str:
    return path.format(frames="1", tag="7FE00010", **ids)


def _is_search(path: str) -> bool:
    return path.endswith(("/series", "/instances"))


def test_another_institutions_objects_are_not_found(world: World, tally: Tally) -> None:
    w = world
    client, headers = w.client, w.auth()
    tally.markers = _markers(w)
    own, other = w.own, w.other
    routes = _wado_routes()
    assert len(routes) >= 18, routes
    mixes = {
        "B's": other,
        "A study, B series+instance": {**own, "series": other["series"],
                                       "instance": other["instance"]},
        "A study+series, B instance": {**own, "instance": other["instance"]},
        "B study, A series+instance": {**other, "series": own["series"],
                                       "instance": own["instance"]},
        "B study+series, A instance": {**other, "instance": own["instance"]},
    }  # fmt: skip
    for path in routes:
        # control: the same URL with A's own objects works, so the refusals below are real
        r = client.get(_fill(path, own), headers=headers)
        assert r.status_code in (200, 206), f"{path} (own) -> {r.status_code}: {r.text[:200]}"
        for label, ids in mixes.items():
            if not any(f"{{{k}}}" in path and ids[k] == other[k] for k in ids):
                continue  # the path names none of B's objects
            r = client.get(_fill(path, ids), headers=headers)
            tally.check(r, {204} if _is_search(path) else {404}, f"{label}: {path}")
    # searches naming B's objects by key
    for url, params in (
        ("/dicom-web/studies", {"StudyInstanceUID": other["study"]}),
        ("/dicom-web/studies", {"PatientID": SECRET_ID}),
        ("/dicom-web/studies", {"PatientName": "Leak*"}),
        ("/dicom-web/studies", {"AccessionNumber": "ACC-SECRET"}),
        ("/dicom-web/studies", {"StudyDescription": "Secret*", "includefield": "all"}),
        ("/dicom-web/series", {"SeriesInstanceUID": other["series"]}),
        ("/dicom-web/series", {"StudyInstanceUID": other["study"]}),
        ("/dicom-web/instances", {"SOPInstanceUID": other["instance"]}),
        ("/dicom-web/instances", {"StudyInstanceUID": f"{own['study']}\\{other['study']}"}),
        ("/dicom-web/studies", {"PatientName": "leak", "fuzzymatching": "true"}),
    ):
        tally.check(client.get(url, params=params, headers=headers), {200, 204}, f"{url} {params}")
    # B's staff, on the other hand, reach B's study (the same URLs are not just broken)
    r = client.get(f"/dicom-web/studies/{other['study']}/metadata", headers=w.auth(w.bob))
    assert r.status_code == 200 and SECRET_ID in r.text
    tally.assert_clean()


# ------------------------------------------------------------------ SQL injection

INJECTIONS = (
    "' OR '1'='1",
    "*' OR 1=1--",
    "\\' ; DROP TABLE studies; --",
    "'; DROP TABLE patients; --",
    "1' UNION SELECT study_uid FROM studies--",
    '" OR ""="',
    "%",
    "_",
    "%%",
    "*%*",
    "\\",
    "\\\\*",
    "LEAK%",
    f"{SECRET_ID}' OR '1'='1",
    "Leak^Secret' --",
    "ü' OR 'ß'='ß",
    "张' OR 1=1 --",
    "\u0000",
    "' || (SELECT patient_id FROM patients LIMIT 1) || '",
    "1; SELECT pg_sleep(5)",
    "20240101' OR '1'='1",
    "-1",
    "99999999999999999999999",
    "²",
    "١٢",
)
QIDO_KEYS = (
    "PatientName", "PatientID", "StudyDate", "AccessionNumber", "ModalitiesInStudy",
    "StudyInstanceUID", "StudyDescription", "00100020", "includefield", "limit", "offset",
)  # fmt: skip
TABLES = (Study, Series, Instance, Patient, User, AuthToken, Institution)


def _rows(archive: Archive) -> dict[str, int]:
    with archive.read() as conn:
        return {t.__tablename__: int(conn.scalar(select(func.count()).select_from(t)) or 0)
                for t in TABLES}  # fmt: skip


def test_sql_injection_in_qido_finds_nothing_of_b_and_breaks_nothing(
    world: World, tally: Tally
) -> None:
    w = world
    client, headers = w.client, w.auth()
    tally.markers = _markers(w)
    before = _rows(w.archive)
    for url in ("/dicom-web/studies", "/dicom-web/series", "/dicom-web/instances",
                f"/dicom-web/studies/{w.own['study']}/series"):  # fmt: skip
        for key in QIDO_KEYS:
            for value in INJECTIONS:
                r = client.get(url, params={key: value}, headers=headers)
                tally.check(r, {200, 204, 400}, f"{url} {key}={value!r}")
        for value in INJECTIONS:  # and through the fuzzy name matching
            params = {"PatientName": value, "fuzzymatching": "true"}
            tally.check(client.get(url, params=params, headers=headers), {200, 204, 400})
    # the literal LIKE characters match literally: no study of anyone has a '%' in its ID
    for value in ("%", "_", "%%", "*%*"):
        r = client.get("/dicom-web/studies", params={"PatientID": value}, headers=headers)
        assert r.status_code == 204, (value, r.status_code, r.text[:200])
    everything = client.get("/dicom-web/studies", params={"PatientID": "*"}, headers=headers)
    assert [s["0020000D"]["Value"][0] for s in everything.json()] == [w.own["study"]]
    for url in ("/dicom-web/series", "/dicom-web/instances"):  # a study key on lower levels
        r = client.get(url, params={"ModalitiesInStudy": "CT"}, headers=headers)
        assert r.status_code == 200, r.text
        assert {i["0020000D"]["Value"][0] for i in r.json()} == {w.own["study"]}
    token = w.token()  # tables are all there, with the rows they had (one more token)
    assert token
    after = _rows(w.archive)
    assert after == {**before, "auth_tokens": before["auth_tokens"] + 1}
    retrieve.find_instances(w.archive, w.other["study"], principal=SYSTEM)  # B's study intact
    tally.assert_clean()


def test_nul_characters_are_refused_and_never_stop_the_audit_trail(
    world: World, tally: Tally
) -> None:
    """PostgreSQL cannot store NUL: one such value queued for the audit writer blocked it."""
    w = world
    client = w.client
    tally.markers = _markers(w)
    own = w.own
    urls = [
        "/dicom-web/studies/%00/metadata",
        f"/dicom-web/studies/{own['study']}%00",
        f"/dicom-web/studies/{own['study']}/series/%00/instances",
        f"/dicom-web/studies/{own['study']}/series/{own['series']}/instances/%00/rendered",
        "/dicom-web/studies?PatientID=%00",
        "/dicom-web/studies?PatientName=a%00b&fuzzymatching=true",
        "/dicom-web/series?%00=1",
        "/api/users/1%00",
    ]
    for url in urls:
        tally.check(client.get(url), {400, 401, 404}, f"anonymous {url}")
        tally.check(client.get(url, headers=w.auth()), {400, 404}, url)
    audit.record(w.archive, accounts.principal_for_user(w.archive, w.alice), "attack.nul",
                 study_uid="1.2\x003", target="a\x00b", source="\x00", wait=True)  # fmt: skip
    assert _login(client, "alice", PASSWORD).status_code == 200  # the audit writer still runs
    report = audit.verify(w.archive)
    assert report.ok, report.problems
    (ev,) = audit.search(w.archive, SYSTEM, action="attack.nul")
    assert (ev["study_uid"], ev["target"]) == ("1.2\ufffd3", "a\ufffdb")
    nul_paths = [e for e in audit.search(w.archive, SYSTEM, limit=1000) if "\ufffd" in e["target"]]
    assert len(nul_paths) >= 4  # the refused requests are in the trail too
    tally.assert_clean()


# ------------------------------------------------------------------ path traversal


def _evil_zip(entries: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in entries.items():
            info = zipfile.ZipInfo("x")
            info.filename = name  # kept exactly: no normalisation by ZipInfo
            zf.writestr(info, data)
    return buf.getvalue()


def _strays(*roots: Path) -> list[Path]:
    return [p for root in roots for p in root.rglob("*evil*")]


def test_zip_entry_names_never_become_paths(world: World, tally: Tally, tmp_path: Path) -> None:
    w = world
    names = ["../../evil.dcm", "/etc/evil.dcm", "..\\evil.dcm", "ok/../../../evil-deep.dcm",
             "..\\..\\evil-win.dcm", "C:\\evil-drive.dcm"]  # fmt: skip
    entries = {
        name: make_ct(generate_uid(), generate_uid(), patient_id=f"ZIP{i}")
        for i, name in enumerate(names)
    }
    assert [i.filename for i in zipfile.ZipFile(io.BytesIO(_evil_zip(entries))).infolist()] == names
    r = w.client.post(
        "/api/upload", content=_evil_zip(entries),
        headers={**w.auth(), "Content-Type": "application/zip"},
    )  # fmt: skip
    tally.check(r, {200})
    body = r.json()
    assert body["stored"] == len(names), body  # stored by content, their names never used
    stored_uids = {i["studyInstanceUID"] for i in body["instances"]}
    for uid in stored_uids:
        (ref,) = retrieve.find_instances(w.archive, uid, principal=SYSTEM)
        assert ref.sop_uid
    data_dir = w.archive.settings.data_dir
    assert _strays(tmp_path, data_dir) == []
    assert not Path("/etc/evil.dcm").exists()
    for p in (Path.cwd(), Path.cwd().parent, data_dir.parent.parent, Path("/tmp")):
        assert not list(p.glob("evil*")), p
    tally.assert_clean()


def _cli(archive: Archive, *args: str) -> Any:
    env = {
        "RADCLOUD_DATA_DIR": str(archive.settings.data_dir),
        "RADCLOUD_DATABASE_URL": archive.settings.database_url,
        "RADCLOUD_CONFIG": None,
    }
    result = CliRunner().invoke(cli_app, list(args), env=env)
    assert "Traceback" not in result.output, result.output
    return result


def test_export_refuses_path_like_uids(world: World, tally: Tally, tmp_path: Path) -> None:
    w = world
    work = tmp_path / "work"
    out = work / "out"
    work.mkdir()
    for study, series in (("../../x", None), ("/etc/passwd", None), ("..", None),
                          (w.own["study"], "../../y"), (w.own["study"], "/tmp/y"),
                          (f"{w.own['study']}/../../z", None)):  # fmt: skip
        args = ["export", "--study", study, str(out)]
        if series:
            args[3:3] = ["--series", series]
        r = _cli(w.archive, *args)
        refused = r.exit_code == 1 and "no such" in r.stderr
        tally.count(refused)
        assert refused, (study, series, r.output)
        assert list(work.iterdir()) == [], (study, series)  # nothing written, not even out/
    assert _strays(tmp_path) == [] and not list(tmp_path.parent.glob("x")), "stray files"
    r = _cli(w.archive, "export", "--study", w.own["study"], str(out))  # control
    assert r.exit_code == 0, r.output
    assert [p.name for p in work.iterdir()] == ["out"]
    assert [p.name for p in out.iterdir()] == [f"{w.own['instance']}.dcm"]
    tally.assert_clean()


def test_asset_names_cannot_climb_out(world: World, tally: Tally) -> None:
    client = world.client
    assets = sorted(p.name for p in STATIC.iterdir() if p.suffix in (".js", ".css"))
    assert client.get(f"/admin/assets/{assets[0]}").status_code == 200  # control
    for url in (
        "/admin/assets/..%2F..%2Fpasswd",
        "/admin/assets/..%2F..%2F..%2F..%2F..%2F..%2Fetc%2Fpasswd",
        "/admin/assets/%2e%2e%2f%2e%2e%2froutes%2fpages.py",
        "/admin/assets/..%5C..%5Croutes%5Cpages.py",
        "/admin/assets/%2e%2e",
        "/admin/assets/admin.html",  # a page, not an asset
        "/admin/assets/.%2Fadmin.js",
        f"/admin/assets/{assets[0]}%00.css",
        f"/admin/assets/{assets[0]}%2F..%2F..%2Fapp.py",
        "/admin/assets/%252e%252e%252fapp.py",
        "/admin/assets/~root",
        "/admin/assets//etc/passwd",
        "/admin/assets/pages.py",
    ):
        r = client.get(url)
        tally.check(r, {400, 404} if "%00" in url else {404}, url)  # NUL: refused as such
        assert b"root:" not in r.content and b"import " not in r.content, url
    tally.assert_clean()


# ------------------------------------------------------------------ oversized input


def test_oversized_headers_and_bodies(world: World, tally: Tally, base_url: str) -> None:
    """Against a real uvicorn: huge headers are refused or ignored, never a server error."""
    root = base_url.removesuffix("/dicom-web")
    token = world.token()
    with httpx.Client(base_url=root, timeout=30) as http:
        cases: list[tuple[str, dict[str, str], set[int]]] = [
            ("/dicom-web/studies", {"X-Padding": "a" * 100_000}, {401, 400, 431}),
            ("/dicom-web/studies", {"Authorization": "Bearer " + "A" * 10_000}, {401, 400, 431}),
            ("/dicom-web/studies", {"Authorization": "Bearer rca_" + "A" * 10_000},
             {401, 400, 431}),
            ("/api/auth/me", {"Cookie": f"{security.COOKIE}=rcs_{'A' * 10_000}"}, {401, 400, 431}),
            ("/dicom-web/studies", {f"X-H{i}": "v" * 50 for i in range(1000)}, {401, 400, 431}),
            # a valid token beside a huge header: refused before anything reads it
            ("/dicom-web/studies", {"Authorization": f"Bearer {token}", "X-Padding": "a" * 100_000},
             {431}),
            ("/healthz", {"X-Padding": "a" * 100_000}, {431}),
        ]  # fmt: skip
        for path, headers, allowed in cases:
            tally.check(http.get(path, headers=headers), allowed, f"{path} {len(str(headers))} B")
        for size in (1_000_000, 8_000_000):  # far too big: refused, or the connection dropped
            try:
                r = http.get("/dicom-web/studies", headers={"X-Padding": "a" * size})
            except httpx.TransportError:
                tally.count(True)
            else:
                tally.check(r, {400, 401, 431}, f"{size} B header")
        bodies: list[tuple[Any, str]] = [
            ({"username": "a" * 2_000_000, "password": "x"}, "json"),
            ({"username": "alice", "password": "p" * 5_000_000}, "json"),
            ({"username": ["alice"] * 100_000, "password": PASSWORD}, "json"),
            (b"[" * 500_000, "raw"),
            (b'{"username": "alice", "password": "' + b"\\u0000" * 500_000 + b'"}', "raw"),
        ]
        for body, kind in bodies:
            if kind == "json":
                r = http.post("/api/auth/login", json=body)
            else:
                r = http.post("/api/auth/login", content=body,
                              headers={"Content-Type": "application/json"})  # fmt: skip
            tally.check(r, {400, 401, 413, 422}, f"login body of {len(str(body))} B")
        assert http.get("/healthz").status_code == 200  # still up
    tally.assert_clean()


# ------------------------------------------------------------------ password guessing


def _locked_until(archive: Archive, user_id: int) -> datetime | None:
    with archive.read() as conn:
        ts = conn.scalar(select(User.locked_until).where(User.id == user_id))
    return None if ts is None else (ts if ts.tzinfo else ts.replace(tzinfo=UTC))


def test_account_locks_after_repeated_failures_and_unlocks_later(
    world: World, tally: Tally
) -> None:
    w, a = world, world.archive
    client = w.client
    limit = a.settings.login_max_failures
    wrong = _login(client, "alice", "wrong-pass-99")
    unknown = _login(client, "nobody-here", "wrong-pass-99")
    for r in (wrong, unknown):
        tally.check(r, {401})
    # the same answer whether or not the user exists
    assert wrong.json() == unknown.json()
    assert wrong.json()["detail"] == sessions.LOGIN_FAILED
    for _ in range(limit - 1):
        tally.check(_login(client, "alice", "wrong-pass-99"), {401})
    until = _locked_until(a, w.alice)
    assert until is not None
    lockout = timedelta(minutes=a.settings.login_lockout_minutes)
    assert lockout - timedelta(minutes=1) < until - datetime.now(UTC) <= lockout
    # locked: the right password is refused too, with the very same message
    right = _login(client, "alice", PASSWORD)
    tally.check(right, {401}, "right password while locked")
    assert right.json() == wrong.json()
    # the lockout ends
    with a.write() as conn:
        conn.execute(
            update(User).where(User.id == w.alice)
            .values(locked_until=datetime.now(UTC) - timedelta(seconds=1))
        )  # fmt: skip
    r = _login(client, "alice", PASSWORD)
    assert r.status_code == 200, r.text
    with a.read() as conn:
        assert conn.scalar(select(User.failed_logins).where(User.id == w.alice)) == 0
    denied = audit.search(a, SYSTEM, action="login", result=audit.DENIED, limit=100)
    assert len(denied) == limit + 2  # every failure is in the audit trail
    tally.assert_clean()


def test_lockout_follows_the_settings(make_archive: Callable[..., Archive], tally: Tally) -> None:
    a = make_archive(login_max_failures=3, login_lockout_minutes=1)
    w = _world(a)
    for _ in range(2):
        tally.check(_login(w.client, "alice", "wrong-pass-99"), {401})
    assert _locked_until(a, w.alice) is None
    tally.check(_login(w.client, "alice", "wrong-pass-99"), {401})
    until = _locked_until(a, w.alice)
    assert until is not None and until - datetime.now(UTC) <= timedelta(minutes=1)
    tally.check(_login(w.client, "alice", PASSWORD), {401}, "right password while locked")
    sessions.IP_LIMITER.reset()
    tally.assert_clean()


def test_many_failures_from_one_address_get_429(world: World, tally: Tally) -> None:
    w = world
    client = w.client
    failures = sessions.IP_FAILURES
    # spraying: one wrong password per user name, so no account reaches its own limit
    for i in range(failures):
        tally.check(_login(client, f"spray-{i}", "wrong-pass-99"), {401})
    r = _login(client, "alice", PASSWORD)  # even the right password has to wait
    tally.check(r, {429}, "after the address limit")
    assert "alice" not in r.text and "user" not in r.json()["detail"].lower()
    tally.check(_login(client, "nobody-here", "x"), {429})
    assert _locked_until(w.archive, w.alice) is None  # the account itself is not locked
    # another address is not affected (X-Forwarded-For counts only from a trusted proxy)
    other = TestClient(create_app(w.archive), client=("203.0.113.9", 50000))
    assert _login(other, "alice", PASSWORD).status_code == 200
    spoof = {"X-Forwarded-For": "198.51.100.7"}
    tally.check(_login(client, "alice", PASSWORD, headers=spoof), {429}, "spoofed XFF")
    sessions.IP_LIMITER.reset()
    assert _login(client, "alice", PASSWORD).status_code == 200
    tally.assert_clean()


# ------------------------------------------------------------------ the audit trail


def _drop_append_only(archive: Archive) -> None:
    """What a database owner could do: switch the append-only triggers off."""
    with archive.engine.begin() as conn:
        for verb in ("update", "delete"):
            if archive.dialect == "postgresql":
                conn.execute(text(f"ALTER TABLE audit_events DISABLE TRIGGER audit_no_{verb}"))
            else:
                conn.execute(text(f"DROP TRIGGER audit_no_{verb}"))


def test_audit_rows_cannot_be_changed_and_tampering_is_detected(world: World, tally: Tally) -> None:
    a = world.archive
    for i in range(6):
        audit.record(a, SYSTEM, "attack.test", detail={"n": i}, study_uid=world.own["study"])
    audit.auditor(a).flush()
    with a.read() as conn:
        ids = list(conn.scalars(select(AuditEvent.id).order_by(AuditEvent.id)))
    assert len(ids) >= 6 and audit.verify(a).ok
    victim, middle, after_middle = ids[-5], ids[-3], ids[-2]

    # with the triggers in place, the trail is append-only
    for sql in (f"UPDATE audit_events SET actor = 'mallory' WHERE id = {victim}",
                f"DELETE FROM audit_events WHERE id = {middle}",
                "DELETE FROM audit_events"):  # fmt: skip
        with pytest.raises(DBAPIError, match="append-only"):
            with a.engine.begin() as conn:
                conn.execute(text(sql))
        tally.count(True)
    with a.read() as conn:
        assert list(conn.scalars(select(AuditEvent.id).order_by(AuditEvent.id))) == ids
    assert audit.verify(a).ok

    _drop_append_only(a)
    # an edited row breaks its own hash
    with a.engine.begin() as conn:
        conn.execute(text("UPDATE audit_events SET actor = 'mallory' WHERE id = :i"),
                     {"i": victim})  # fmt: skip
    report = audit.verify(a)
    tally.count(not report.ok)
    assert report.problems == [f"row {victim}: its content was changed after it was written"]
    # re-hashing the edited row moves the break to the next row's link
    with a.engine.begin() as conn:
        row = conn.execute(select(AuditEvent).where(AuditEvent.id == victim)).one()
        values = {c: getattr(row, c) for c in row._fields}
        conn.execute(
            update(AuditEvent).where(AuditEvent.id == victim)
            .values(hash=audit.chain_hash(row.prev_hash, values))
        )  # fmt: skip
    report = audit.verify(a)
    tally.count(not report.ok)
    nxt = ids[ids.index(victim) + 1]
    assert report.problems == [
        f"row {nxt}: its link does not match the row before it (a row was deleted or inserted here)"
    ]
    # a deleted row breaks the link of the row after it
    with a.engine.begin() as conn:
        conn.execute(text("DELETE FROM audit_events WHERE id = :i"), {"i": middle})
    report = audit.verify(a)
    tally.count(not report.ok)
    assert (
        f"row {after_middle}: its link does not match the row before it (a row was deleted "
        "or inserted here)" in report.problems
    )
    assert len(report.problems) == 2
    # the API says so too
    admin = accounts.create_user(a, "auditor1", PASSWORD, roles=["auditor"])
    r = world.client.get("/api/audit/verify", headers=world.auth(admin))
    assert r.status_code == 200 and r.json()["ok"] is False
    tally.assert_clean()


# ------------------------------------------------------------------ cross-site requests


def test_cross_site_requests_with_the_session_cookie_are_refused(
    world: World, tally: Tally
) -> None:
    w = world
    client = TestClient(create_app(w.archive))  # base URL http://testserver
    assert _login(client, "alice", PASSWORD).status_code == 200
    assert client.cookies.get(security.COOKIE)
    tokens = len(sessions.list_tokens(w.archive, w.alice))
    ct = {"Content-Type": "application/dicom"}
    upload = make_ct(generate_uid(), generate_uid(), patient_id="CSRF1")
    origins = ("https://evil.example", "null", "http://testserver.evil.example",
               "https://testserver", "http://testserver:8080", "http://evil.example")  # fmt: skip
    change = {"current": PASSWORD, "new": "csrf-pass-123"}
    for origin in origins:
        o = {"Origin": origin}
        tally.check(client.post("/api/tokens", json={"name": "csrf"}, headers=o), {403})
        tally.check(client.post("/api/upload", content=upload, headers={**o, **ct}), {403})
        tally.check(client.post("/dicom-web/studies", content=upload, headers={**o, **ct}), {403})
        tally.check(client.post("/api/auth/logout", headers=o), {403})
        tally.check(client.post("/api/auth/password", headers=o, json=change), {403})
        tally.check(client.delete("/api/tokens/1", headers=o), {403})
        # reading cross-site is not shared with the foreign page (no CORS grant)
        r = client.get("/api/auth/me", headers=o)
        assert r.status_code == 200 and "access-control-allow-origin" not in r.headers
    assert len(sessions.list_tokens(w.archive, w.alice)) == tokens
    assert _rows(w.archive)["studies"] == 2  # neither upload stored anything
    assert client.get("/api/auth/me").status_code == 200  # the session survived the attempts
    # same origin (and non-browser callers without Origin) are served
    r = client.post("/api/tokens", json={"name": "same"}, headers={"Origin": "http://testserver"})
    assert r.status_code == 201, r.text
    assert client.post("/api/tokens", json={"name": "no-origin"}).status_code == 201
    # a bearer token is not sent by browsers on their own: no Origin rule for it
    r = client.post("/api/tokens", json={"name": "bearer"},
                    headers={**w.auth(), "Origin": "https://evil.example"})  # fmt: skip
    assert r.status_code == 201
    tally.assert_clean()


# ------------------------------------------------------------------ writes into B's objects


def test_stow_cannot_join_or_overwrite_another_institutions_objects(
    make_archive: Callable[..., Archive], tally: Tally
) -> None:
    """Even with duplicate_policy=replace: B's writer reusing A's series or SOP UIDs is refused."""
    a = make_archive(duplicate_policy="replace")
    w = _world(a)
    own = w.own
    before = retrieve.find_instances(a, own["study"], principal=SYSTEM)
    attacks = {
        "A's study": make_ct(own["study"], generate_uid(), patient_id="BX1"),
        "A's series in a new study": make_ct(generate_uid(), own["series"], patient_id="BX2"),
        "A's instance in a new study": make_ct(
            generate_uid(), generate_uid(), sop_uid=own["instance"], patient_id="BX3"
        ),
    }
    ct = {"Content-Type": "application/dicom"}
    for what, data in attacks.items():
        r = w.client.post("/dicom-web/studies", content=data, headers={**w.auth(w.bob), **ct})
        tally.check(r, {400, 409}, f"STOW {what}")
        failed = r.json()["00081198"]["Value"]
        assert [f["00081197"]["Value"] for f in failed] == [[0x0124]], what
        r = w.client.post("/api/upload", content=data, headers={**w.auth(w.bob), **ct})
        tally.check(r, {422}, f"upload {what}")
    after = retrieve.find_instances(a, own["study"], principal=SYSTEM)
    assert [(x.sop_uid, x.sha256, x.blob_key) for x in after] == [
        (x.sop_uid, x.sha256, x.blob_key) for x in before
    ]
    with a.read() as conn:
        assert conn.scalar(select(func.count()).select_from(Study)) == 2
    tally.assert_clean()
