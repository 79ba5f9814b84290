"""Single sign-on against a real OpenID Connect provider (panva/oidc-provider on Node.js).

Each test starts the provider (tests/js/oidc_provider.mjs) and radcloud (uvicorn on
a free port, SQLite and PostgreSQL) and plays the browser with httpx, following the
redirects between them by hand.
"""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
import socket
import stat
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import httpx
import pytest
from _oidc import PASSWORD, SUBJECTS, Client, Provider, oidc_provider, sign_in_at_provider

from radcloud.archive.service import Archive
from radcloud.auth import accounts, audit, oidc, sessions
from radcloud.auth.access import SYSTEM
from radcloud.auth.permissions import Role
from radcloud.errors import Unauthenticated

CALLBACK = "/api/auth/oidc/callback"
RADCLOUD_SECRET = "radcloud-secret"


@dataclass
class Node:
    """One radcloud API node: its base URL and its archive."""

    base: str
    archive: Archive

    def url(self, path: str) -> str:
        return self.base + path


def _serve(app: Any, sock: socket.socket, stack: ExitStack) -> None:
    import uvicorn

    config = uvicorn.Config(app, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)

    def stop() -> None:
        server.should_exit = True
        thread.join(10)

    stack.callback(stop)


def _listening() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    return sock


class Sso:
    """The provider and radcloud node(s) of one test, started on demand."""

    def __init__(self, make_archive: Callable[..., Archive], tmp_path: Path) -> None:
        self.make_archive = make_archive
        self.tmp_path = tmp_path
        self.stack = ExitStack()
        self.sock = _listening()  # radcloud's port is known before the provider starts
        self.base = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.provider_: Provider | None = None

    def provider(self, *, id_token_claims: bool = False) -> Provider:
        if self.provider_ is None:
            callback = self.base + CALLBACK
            clients = [
                Client("radcloud", RADCLOUD_SECRET, [callback]),
                Client("radcloud-public", None, [callback]),
                Client("other-app", "other-secret", ["http://127.0.0.1:9/other/callback"]),
            ]
            self.provider_ = self.stack.enter_context(
                oidc_provider(clients, self.tmp_path / "oidc-provider.log",
                              id_token_claims=id_token_claims)
            )  # fmt: skip
        return self.provider_

    def node(self, *, id_token_claims: bool = False, **settings: Any) -> Node:
        """radcloud on the reserved port, configured for the provider (``settings`` win)."""
        from radcloud.web.app import create_app

        if "oidc_issuer" not in settings:
            settings["oidc_issuer"] = self.provider(id_token_claims=id_token_claims).issuer
        settings.setdefault("oidc_client_id", "radcloud")
        settings.setdefault("oidc_client_secret", RADCLOUD_SECRET)
        archive = self.make_archive(**settings)
        _serve(create_app(archive), self.sock, self.stack)
        return Node(self.base, archive)

    def second_node(self, first: Node, **settings: Any) -> Node:
        """Another API node on the same index and settings, on its own port."""
        from radcloud.web.app import create_app

        same = {k: v for k, v in first.archive.settings.model_dump().items()
                if k.startswith("oidc_") or k == "public_url"}  # fmt: skip
        archive = self.make_archive(**{**same, **settings})
        sock = _listening()
        _serve(create_app(archive), sock, self.stack)
        return Node(f"http://127.0.0.1:{sock.getsockname()[1]}", archive)

    def close(self) -> None:
        self.stack.close()
        self.sock.close()


@pytest.fixture
def sso(make_archive: Callable[..., Archive], tmp_path: Path) -> Iterator[Sso]:
    oidc.clear_caches()
    s = Sso(make_archive, tmp_path)
    yield s
    s.close()
    oidc.clear_caches()


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    """The browser: a cookie jar, redirects followed by the test."""
    with httpx.Client(follow_redirects=False, timeout=30) as client:
        yield client


# ------------------------------------------------------------------ helpers


def start(http: httpx.Client, node: Node, next_path: str | None = None) -> httpx.Response:
    params = {"next": next_path} if next_path is not None else None
    return http.get(node.url("/api/auth/oidc/login"), params=params)


def to_provider(http: httpx.Client, node: Node, username: str, **kw: Any) -> str:
    """Start at radcloud, sign in at the provider; the callback URL radcloud is sent back to."""
    next_path = kw.pop("next_path", None)
    response = start(http, node, next_path)
    assert response.status_code == 302, response.text
    return sign_in_at_provider(http, response.headers["location"], username, **kw)


def sso_login(http: httpx.Client, node: Node, username: str, **kw: Any) -> httpx.Response:
    """The whole sign-in; radcloud's answer at the callback."""
    callback = to_provider(http, node, username, **kw)
    assert callback.startswith(node.url(CALLBACK)), callback
    return http.get(callback)


def sso_events(archive: Archive) -> list[dict[str, Any]]:
    return audit.search(archive, SYSTEM, action="login.sso")


def problem(response: httpx.Response, status: int) -> str:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert "radcloud_session" not in response.cookies
    detail: str = response.json()["detail"]
    return detail


def with_query(url: str, **changes: str) -> str:
    parts = urlsplit(url)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    query.update(changes)
    return urlunsplit(parts._replace(query=urlencode(query)))


def code_flow(http: httpx.Client, provider: Provider, client_id: str, username: str,
              nonce: str) -> dict[str, Any]:  # fmt: skip
    """Be the client ``client_id`` ourselves: authorize with PKCE, redeem; the token answer."""
    client = provider.clients[client_id]
    verifier = secrets.token_urlsafe(48)
    challenge = (
        base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")
    )
    query = urlencode({
        "response_type": "code", "client_id": client_id, "redirect_uri": client.redirect_uris[0],
        "scope": "openid profile email", "state": "s-" + secrets.token_hex(8), "nonce": nonce,
        "code_challenge": challenge, "code_challenge_method": "S256",
    })  # fmt: skip
    answer = sign_in_at_provider(http, f"{provider.issuer}/auth?{query}", username)
    code = parse_qs(urlsplit(answer).query)["code"][0]
    response = http.post(
        f"{provider.issuer}/token",
        data={"grant_type": "authorization_code", "code": code, "code_verifier": verifier,
              "redirect_uri": client.redirect_uris[0]},
        auth=(client_id, client.client_secret or ""),
    )  # fmt: skip
    assert response.status_code == 200, response.text
    tokens: dict[str, Any] = response.json()
    return tokens


# ------------------------------------------------------------------ the happy paths


def test_linked_user_signs_in_and_the_cookie_opens_the_api(sso: Sso, http: httpx.Client) -> None:
    node = sso.node()
    issuer = sso.provider().issuer
    # the radcloud name differs from the IdP's: the link (issuer, subject) decides
    uid = accounts.create_user(node.archive, "wang.fang", None, display_name="Dr Wang",
                               oidc=(issuer, SUBJECTS["dr.wang"]))  # fmt: skip

    first = start(http, node, "/viewer?study=1.2.3")
    assert first.status_code == 302
    authorize = urlsplit(first.headers["location"])
    query = {k: v[0] for k, v in parse_qs(authorize.query).items()}
    assert f"{authorize.scheme}://{authorize.netloc}{authorize.path}" == issuer + "/auth"
    assert query["response_type"] == "code" and query["client_id"] == "radcloud"
    assert query["code_challenge_method"] == "S256" and len(query["code_challenge"]) == 43
    assert len(query["state"]) >= 32 and len(query["nonce"]) >= 32
    assert query["redirect_uri"] == node.url(CALLBACK)
    assert query["scope"] == "openid profile email"
    state_cookie = first.headers["set-cookie"]
    assert state_cookie.startswith("radcloud_oidc=")
    lowered = state_cookie.lower()
    assert "httponly" in lowered and "samesite=lax" in lowered and "path=/api/auth/oidc" in lowered
    # the state is sealed: neither state, nonce nor verifier readable in the cookie
    sealed = http.cookies["radcloud_oidc"]
    assert query["state"] not in sealed and query["nonce"] not in sealed

    callback = sign_in_at_provider(http, first.headers["location"], "dr.wang")
    assert callback.startswith(node.url(CALLBACK)) and "code=" in callback
    answer = http.get(callback)
    assert answer.status_code == 302, answer.text
    assert answer.headers["location"] == "/viewer?study=1.2.3"
    assert "radcloud_session" in answer.cookies
    assert "radcloud_oidc" not in http.cookies  # the login state is used up

    me = http.get(node.url("/api/auth/me"))
    assert me.status_code == 200, me.text
    assert me.json()["username"] == "wang.fang"
    assert me.json()["roles"] == ["clinician"]

    events = sso_events(node.archive)
    assert [(e["actor"], e["result"]) for e in events] == [("wang.fang", "success")]
    assert events[0]["detail"]["how"] == "known"
    assert events[0]["detail"]["subject"] == SUBJECTS["dr.wang"]
    assert events[0]["source"] == "127.0.0.1"
    assert accounts.get_user(node.archive, uid).sso


@pytest.mark.parametrize("id_token_claims", [False, True], ids=["userinfo", "id-token"])
def test_first_sso_login_links_the_account_by_user_name(
    sso: Sso, http: httpx.Client, id_token_claims: bool
) -> None:
    """The user-name claim comes from the ID token, or from userinfo when the IdP keeps it there."""
    node = sso.node(id_token_claims=id_token_claims)
    uid = accounts.create_user(node.archive, "Dr.Zhang", "a-long-password-1")
    assert not accounts.get_user(node.archive, uid).sso

    answer = sso_login(http, node, "dr.zhang")
    assert answer.status_code == 302, answer.text
    assert answer.headers["location"] == "/"
    assert http.get(node.url("/api/auth/me")).json()["username"] == "Dr.Zhang"
    assert accounts.get_user(node.archive, uid).sso
    with node.archive.read() as conn:
        from sqlalchemy import select

        from radcloud.store.models import User

        row = conn.execute(select(User.oidc_issuer, User.oidc_subject).where(User.id == uid)).one()
    assert tuple(row) == (sso.provider().issuer, SUBJECTS["dr.zhang"])

    http.cookies.clear()  # a second sign-in finds the link
    assert sso_login(http, node, "dr.zhang").status_code == 302
    hows = [e["detail"]["how"] for e in sso_events(node.archive)]
    assert hows == ["known", "linked"]  # newest first


def test_unknown_user_is_refused(sso: Sso, http: httpx.Client) -> None:
    node = sso.node()
    answer = sso_login(http, node, "nurse.chen")
    detail = problem(answer, 403)
    assert detail.startswith(oidc.NO_ACCOUNT)
    assert http.get(node.url("/api/auth/me")).status_code == 401
    with pytest.raises(Exception, match="no user"):
        accounts.get_user(node.archive, "nurse.chen")
    [event] = sso_events(node.archive)
    assert event["result"] == "denied" and event["actor"] == "nurse.chen"
    assert event["detail"]["reason"].startswith(oidc.NO_ACCOUNT)
    assert event["detail"]["subject"] == SUBJECTS["nurse.chen"]


def test_unknown_user_is_created_when_auto_create_is_on(sso: Sso, http: httpx.Client) -> None:
    node = sso.node(oidc_auto_create=True)
    answer = sso_login(http, node, "nurse.chen", next_path="/studies")
    assert answer.status_code == 302, answer.text
    assert answer.headers["location"] == "/studies"
    me = http.get(node.url("/api/auth/me")).json()
    assert me["username"] == "nurse.chen" and me["roles"] == [Role.CLINICIAN.value]
    assert me["institution_id"] == 1
    user = accounts.get_user(node.archive, "nurse.chen")
    assert user.sso and user.display_name == "Chen Jing"
    assert user.email == "nurse.chen@hospital.example"
    # SSO-only: no password opens it
    login = http.post(node.url("/api/auth/login"),
                      json={"username": "nurse.chen", "password": PASSWORD})  # fmt: skip
    assert login.status_code == 401
    [event] = sso_events(node.archive)
    assert (event["actor"], event["result"], event["detail"]["how"]) == (
        "nurse.chen", "success", "created"
    )  # fmt: skip


def test_disabled_accounts_and_institutions_are_refused(sso: Sso, http: httpx.Client) -> None:
    node = sso.node()
    issuer = sso.provider().issuer
    uid = accounts.create_user(node.archive, "dr.wang", None, oidc=(issuer, SUBJECTS["dr.wang"]))
    accounts.update_user(node.archive, uid, active=False)
    assert "disabled" in problem(sso_login(http, node, "dr.wang"), 403)

    inst = accounts.create_institution(node.archive, "west-clinic", "West clinic",
                                       kind="clinic", status="suspended")  # fmt: skip
    accounts.create_user(node.archive, "dr.li", None, institution_id=inst.id,
                         oidc=(issuer, SUBJECTS["dr.li"]))  # fmt: skip
    http.cookies.clear()
    assert "institution" in problem(sso_login(http, node, "dr.li"), 403)
    assert [e["result"] for e in sso_events(node.archive)] == ["denied", "denied"]


def test_platform_admin_is_not_linked_by_name(sso: Sso, http: httpx.Client) -> None:
    node = sso.node()
    accounts.create_user(node.archive, "admin", "a-long-password-1", roles=[Role.PLATFORM_ADMIN])
    assert "platform administrator" in problem(sso_login(http, node, "admin"), 403)
    assert not accounts.get_user(node.archive, "admin").sso


def test_public_client_keeps_its_state_key_in_the_data_folder(sso: Sso, http: httpx.Client) -> None:
    """Without a client secret the state is sealed with a 0600 key file in the data folder."""
    node = sso.node(oidc_client_id="radcloud-public", oidc_client_secret=None)
    accounts.create_user(node.archive, "dr.wang", None)
    answer = sso_login(http, node, "dr.wang")
    assert answer.status_code == 302, answer.text
    key = node.archive.settings.data_dir / "keys" / "oidc-state.key"
    assert stat.S_IMODE(os.stat(key).st_mode) == 0o600
    assert http.get(node.url("/api/auth/me")).json()["username"] == "dr.wang"


def test_callback_on_another_node_completes_the_sign_in(sso: Sso, http: httpx.Client) -> None:
    """No login state lives in a process: node B finishes what node A started."""
    node_a = sso.node(public_url=sso.base)
    node_b = sso.second_node(node_a)
    accounts.create_user(node_a.archive, "dr.wang", None)
    callback = to_provider(http, node_a, "dr.wang", next_path="/worklist")
    assert callback.startswith(node_a.url(CALLBACK))
    on_b = callback.replace(node_a.base, node_b.base, 1)
    answer = http.get(on_b)
    assert answer.status_code == 302, answer.text
    assert answer.headers["location"] == "/worklist"
    assert http.get(node_a.url("/api/auth/me")).json()["username"] == "dr.wang"


# ------------------------------------------------------------------ attacks and failures


def test_tampered_state_is_refused(sso: Sso, http: httpx.Client) -> None:
    node = sso.node()
    accounts.create_user(node.archive, "dr.wang", None)
    callback = to_provider(http, node, "dr.wang")
    sealed = http.cookies["radcloud_oidc"]
    state = parse_qs(urlsplit(callback).query)["state"][0]

    def fresh(cookie: str | None) -> httpx.Client:
        client = httpx.Client(follow_redirects=False, timeout=30)
        if cookie is not None:
            client.cookies.set("radcloud_oidc", cookie, domain="127.0.0.1", path="/api/auth/oidc")
        return client

    forged_state = with_query(callback, state=state[:-2] + ("AA" if state[-2:] != "AA" else "BB"))
    with fresh(sealed) as c:
        assert "state mismatch" in problem(c.get(forged_state), 401)
    flipped = sealed[:20] + ("A" if sealed[20] != "A" else "B") + sealed[21:]
    with fresh(flipped) as c:
        assert "not valid" in problem(c.get(callback), 401)
    with fresh(None) as c:
        assert "start the sign-in again" in problem(c.get(callback), 401)
    # RFC 9207: the answer must name the provider radcloud sent the user to
    with fresh(sealed) as c:
        mixed_up = with_query(callback, iss="https://idp.evil.example")
        assert "does not name this identity provider" in problem(c.get(mixed_up), 401)
    parts = urlsplit(callback)
    kept = {k: v[0] for k, v in parse_qs(parts.query).items() if k != "iss"}
    no_iss = urlunsplit(parts._replace(query=urlencode(kept)))
    with fresh(sealed) as c:
        assert "does not name this identity provider" in problem(c.get(no_iss), 401)
    # the genuine answer still works (the code was never redeemed)
    with fresh(sealed) as c:
        ok = c.get(callback)
        assert ok.status_code == 302, ok.text
    results = [e["result"] for e in sso_events(node.archive)]
    assert results == ["success"] + ["denied"] * 5


def test_replayed_callback_is_refused(sso: Sso, http: httpx.Client) -> None:
    node = sso.node()
    uid = accounts.create_user(node.archive, "dr.wang", None)
    callback = to_provider(http, node, "dr.wang")
    sealed = http.cookies["radcloud_oidc"]
    assert http.get(callback).status_code == 302

    # the same browser again: its login state is used up
    assert "no single sign-on in progress" in problem(http.get(callback), 401)
    # an attacker with the URL *and* the state cookie: the provider refuses the used code
    with httpx.Client(follow_redirects=False, timeout=30) as thief:
        thief.cookies.set("radcloud_oidc", sealed, domain="127.0.0.1", path="/api/auth/oidc")
        detail = problem(thief.get(callback), 401)
    assert "did not accept the sign-in code" in detail and "invalid_grant" in detail
    events = sso_events(node.archive)
    assert [e["result"] for e in events] == ["denied", "denied", "success"]
    assert len(sessions.list_tokens(node.archive, uid)) == 1  # one sign-in, one session


def test_id_token_for_another_audience_is_refused(sso: Sso, http: httpx.Client) -> None:
    node = sso.node()
    provider = sso.provider()
    settings = node.archive.settings

    # a genuine token for radcloud passes; the same token fails with a wrong nonce
    mine = code_flow(http, provider, "radcloud", "dr.wang", nonce="n-radcloud")
    claims = oidc.verify_id_token(settings, mine["id_token"], nonce="n-radcloud",
                                  access_token=mine["access_token"])  # fmt: skip
    assert claims["sub"] == SUBJECTS["dr.wang"] and claims["aud"] == "radcloud"
    with pytest.raises(Unauthenticated, match="nonce mismatch"):
        oidc.verify_id_token(settings, mine["id_token"], nonce="n-other")
    head, body, sig = mine["id_token"].split(".")
    forged_body = base64.urlsafe_b64encode(
        base64.urlsafe_b64decode(body + "==").replace(SUBJECTS["dr.wang"].encode(),
                                                      SUBJECTS["dr.li"].encode())
    ).decode().rstrip("=")  # fmt: skip
    with pytest.raises(Unauthenticated, match="signature"):
        oidc.verify_id_token(settings, f"{head}.{forged_body}.{sig}", nonce="n-radcloud")

    # signed by the same provider, but for another application
    theirs = code_flow(http, provider, "other-app", "dr.wang", nonce="n-other")
    with pytest.raises(Unauthenticated, match="another application"):
        oidc.verify_id_token(settings, theirs["id_token"], nonce="n-other")

    # and another application's code handed to radcloud's callback is refused too
    http.cookies.clear()
    response = start(http, node)
    state = parse_qs(urlsplit(response.headers["location"]).query)["state"][0]
    client = provider.clients["other-app"]
    query = urlencode({
        "response_type": "code", "client_id": "other-app", "redirect_uri": client.redirect_uris[0],
        "scope": "openid", "state": "x", "nonce": "y",
        "code_challenge": "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
        "code_challenge_method": "S256",
    })  # fmt: skip
    answer = sign_in_at_provider(http, f"{provider.issuer}/auth?{query}", "dr.wang")
    code = parse_qs(urlsplit(answer).query)["code"][0]
    injected = node.url(CALLBACK) + "?" + urlencode({"code": code, "state": state,
                                                     "iss": provider.issuer})  # fmt: skip
    assert "invalid_grant" in problem(http.get(injected), 401)


def test_provider_refusal_is_a_clear_403(sso: Sso, http: httpx.Client) -> None:
    node = sso.node()
    accounts.create_user(node.archive, "dr.wang", None)
    callback = to_provider(http, node, "dr.wang", consent=False)
    assert parse_qs(urlsplit(callback).query)["error"] == ["access_denied"]
    detail = problem(http.get(callback), 403)
    assert "identity provider refused the sign-in (access_denied" in detail
    [event] = sso_events(node.archive)
    assert event["result"] == "denied" and "access_denied" in event["detail"]["reason"]


def test_provider_down_is_a_clear_503(sso: Sso, http: httpx.Client) -> None:
    node = sso.node()
    accounts.create_user(node.archive, "dr.wang", None)
    # the provider goes away mid-sign-in: the code cannot be redeemed
    callback = to_provider(http, node, "dr.wang")
    sso.provider().stop()
    detail = problem(http.get(callback), 503)
    assert "identity provider" in detail and "not available" in detail
    assert sso_events(node.archive)[0]["result"] == "failed"

    # and a new sign-in cannot start (discovery not cached yet for this issuer)
    oidc.clear_caches()
    response = start(http, node)
    detail = problem(response, 503)
    assert sso.provider().issuer in detail and "discovery" in detail


@pytest.mark.parametrize(
    "next_path",
    ["https://evil.example/", "//evil.example/x", "/\\evil.example", "http:/evil.example",
     "javascript:alert(1)", "/ok\r\nLocation: https://evil.example/"],
)  # fmt: skip
def test_next_never_leaves_the_site(sso: Sso, http: httpx.Client, next_path: str) -> None:
    node = sso.node()
    accounts.create_user(node.archive, "dr.wang", None)
    answer = sso_login(http, node, "dr.wang", next_path=next_path)
    assert answer.status_code == 302, answer.text
    assert answer.headers["location"] == "/"


@pytest.mark.parametrize(
    ("value", "expected"),
    [(None, "/"), ("", "/"), ("/studies?x=1#top", "/studies?x=1#top"), ("/a/b", "/a/b"),
     ("https://evil.example/", "/"), ("//evil.example", "/"), ("/\\evil", "/"),
     ("evil.example", "/"), ("/x\ty", "/"), ("/" + "a" * 3000, "/")],
)  # fmt: skip
def test_safe_next(value: str | None, expected: str) -> None:
    assert oidc.safe_next(value) == expected


def test_not_configured_is_404(base_url: str) -> None:
    root = base_url.removesuffix("/dicom-web")
    with httpx.Client(follow_redirects=False) as client:
        for path in ("/api/auth/oidc/login", CALLBACK + "?code=x&state=y"):
            response = client.get(root + path)
            assert response.status_code == 404, response.text
            assert response.json()["detail"] == oidc.NOT_CONFIGURED
