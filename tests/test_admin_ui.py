"""The sign-in and admin pages: served right (HTTP), and used in a real browser.

The browser scenario is ``tests/js/admin.spec.mjs`` (playwright-core driving
Debian Chromium) against ``radcloud serve`` started here: sign in (a wrong
password first), approve and create institutions, create a radiologist, a care
team and a DICOM node, see it all in the audit tab, verify the chain, switch to
Chinese, sign out; then the same pages on a phone-sized screen.  Screenshots go
to a temporary folder; a desktop and a phone one are also copied to
``/tmp/radcloud-shots/`` for people to look at.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import _browser
import httpx
import pytest

from radcloud.archive.service import Archive
from radcloud.config import Settings
from radcloud.web.app import create_app

SPEC = _browser.JS / "admin.spec.mjs"
ADMIN_PASSWORD = _browser.ADMIN_PASSWORD


def _archive(tmp_path: Path, **settings: object) -> Archive:
    return Archive.open(Settings(data_dir=tmp_path / "data", dicom_port=0, **settings))  # type: ignore[arg-type]


@asynccontextmanager
async def _client(archive: Archive) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(archive))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        yield c


@pytest.fixture
def archive(tmp_path: Path) -> Iterator[Archive]:
    """SQLite only: these tests are about the pages, not the index."""
    a = _archive(tmp_path)
    yield a
    a.close()


@pytest.fixture
async def client(archive: Archive) -> AsyncIterator[httpx.AsyncClient]:
    async with _client(archive) as c:
        yield c


# ------------------------------------------------------------------ HTTP


@pytest.mark.anyio
async def test_admin_without_a_session_redirects_to_login(client: httpx.AsyncClient) -> None:
    r = await client.get("/admin")
    assert (r.status_code, r.headers["location"]) == (303, "/login?next=/admin")
    client.cookies.set("radcloud_session", "rcs_not-a-session")
    r = await client.get("/admin")
    assert (r.status_code, r.headers["location"]) == (303, "/login?next=/admin")


@pytest.mark.anyio
async def test_admin_page_with_a_session(client: httpx.AsyncClient, archive: Archive) -> None:
    from radcloud.auth import accounts

    accounts.create_user(archive, "boss", "boss-password-1", roles=["institution_admin"])
    login = await client.post(
        "/api/auth/login", json={"username": "boss", "password": "boss-password-1"}
    )
    assert login.status_code == 200 and "radcloud_session" in client.cookies
    r = await client.get("/admin")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/html")
    assert '<script type="module" src="/admin/assets/admin.js">' in r.text


@pytest.mark.anyio
async def test_pages_carry_a_strict_content_security_policy(client: httpx.AsyncClient) -> None:
    for path in ("/login", "/admin", "/admin/assets/admin.js", "/admin/assets/style.css"):
        r = await client.get(path)
        csp = r.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp, path
        assert "unsafe-inline" not in csp and "unsafe-eval" not in csp, path
        assert r.headers["x-content-type-options"] == "nosniff", path
    assert (await client.get("/login")).headers["cache-control"] == "no-store"


@pytest.mark.anyio
async def test_assets_are_served_with_their_types_and_nothing_else(
    client: httpx.AsyncClient,
) -> None:
    js = await client.get("/admin/assets/login.js")
    assert js.status_code == 200 and js.headers["content-type"].startswith("text/javascript")
    assert "import" in js.text
    css = await client.get("/admin/assets/style.css")
    assert css.headers["content-type"].startswith("text/css")
    svg = await client.get("/admin/assets/icon.svg")
    assert svg.headers["content-type"] == "image/svg+xml"
    for bad in ("nope.js", "admin.html", ".hidden.js", "login.js.map", "LOGIN.JS"):
        r = await client.get("/admin/assets/" + bad)
        assert r.status_code == 404, bad
        assert r.headers["content-type"] == "application/problem+json", bad
    assert (await client.get("/admin/assets/..%2Fpages.py")).status_code == 404


@pytest.mark.anyio
async def test_every_asset_the_pages_name_exists(client: httpx.AsyncClient) -> None:
    """Every module imported and every file linked by the pages is served (no build step)."""
    from radcloud.web.routes.pages import STATIC

    seen: set[str] = set()
    todo: list[str] = []
    for html in ((await client.get("/login")).text, (STATIC / "admin.html").read_text("utf-8")):
        todo += re.findall(r'/admin/assets/([\w.-]+)"', html)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        r = await client.get("/admin/assets/" + name)
        assert r.status_code == 200, name
        if name.endswith(".js"):
            todo += re.findall(r'from "\./([\w.-]+)"', r.text)
            assert ".innerHTML" not in r.text, f"{name} writes HTML: use textContent"
    assert {"admin.js", "login.js", "i18n.js", "api.js", "dom.js", "audit.js", "style.css"} <= seen


def test_every_role_and_permission_has_a_label_in_both_languages() -> None:
    """The roles page names each role and permission in words, in English and Chinese."""
    from radcloud.auth.permissions import Perm, Role

    text = (
        Path(create_app.__code__.co_filename).parent / "static" / "admin" / "i18n.js"
    ).read_text()
    en, zh = text.split("const ZH = {", 1)
    for table, name in ((en, "English"), (zh, "Chinese")):
        keys = set(re.findall(r'"((?:role|perm)\.[a-z_.]+)":', table))
        missing = {f"role.{r.value}" for r in Role} | {f"perm.{p.value}" for p in Perm}
        assert not missing - keys, f"{name} labels missing: {sorted(missing - keys)}"


@pytest.mark.anyio
async def test_sign_in_methods(tmp_path: Path, client: httpx.AsyncClient) -> None:
    assert (await client.get("/api/auth/methods")).json() == {"password": True, "sso": False}
    sso = _archive(tmp_path / "sso", oidc_issuer="https://idp.example", oidc_client_id="rc")
    try:
        async with _client(sso) as c:
            assert (await c.get("/api/auth/methods")).json() == {"password": True, "sso": True}
    finally:
        sso.close()


@pytest.mark.anyio
async def test_landing_page_links_to_sign_in(client: httpx.AsyncClient) -> None:
    assert 'href="/login?next=/admin"' in (await client.get("/")).text


# ------------------------------------------------------------------ the browser


def _store_a_study(base: str) -> str:
    """A CT study in the default institution, stored over STOW-RS as the admin."""
    from dicom_factory import make_ct

    study = "1.2.826.0.1.3680043.10.511.77"
    _browser.stow(base, [make_ct(study_uid=study)])
    return study


@pytest.mark.slow
def test_admin_pages_in_a_real_browser(tmp_path: Path) -> None:
    from _server import Server

    _browser.node()
    server = Server(tmp_path / "data", RADCLOUD_ADMIN_PASSWORD=ADMIN_PASSWORD)
    server.start()
    try:
        base = f"http://127.0.0.1:{server.http_port}"
        study = _store_a_study(base)
        shots = tmp_path / "shots"
        run = _browser.run_spec(SPEC, base, shots, tmp_path, {"STUDY_UID": study}, 240)
        names = ("desktop-audit", "desktop-users", "desktop-institutions-zh", "phone-admin",
                 "phone-login", "failure-0")  # fmt: skip
        _browser.keep_shots(shots, {n: n for n in names})
        assert run.returncode == 0, f"browser scenario failed:\n{run.stdout}\n{run.stderr}"
        assert "ok: admin and sign-in pages passed" in run.stdout
        made = {p.stem for p in shots.glob("*.png")}
        assert {"desktop-login", "desktop-audit", "phone-login", "phone-admin"} <= made
    finally:
        server.stop()
