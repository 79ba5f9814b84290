"""A real OpenID Connect provider for the SSO tests, and a user who signs in at it.

:func:`oidc_provider` runs ``tests/js/oidc_provider.mjs`` (panva/oidc-provider
on Node.js, installed by ``scripts/setup``) as a child process on a free port
and yields its issuer; :func:`sign_in_at_provider` plays the user at the
provider's login and consent pages over plain HTTP (no browser).
"""

from __future__ import annotations

import json
import os
import selectors
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx
import pytest

JS = Path(__file__).parent / "js"
SCRIPT = JS / "oidc_provider.mjs"
PASSWORD = "correct horse"
#: The provider's test accounts: user name -> subject (see ACCOUNTS in the script).
SUBJECTS = {
    "dr.wang": "u-1001-7f3a",
    "dr.li": "u-1002-91bc",
    "dr.zhang": "u-1003-c0de",
    "nurse.chen": "u-1004-5e11",
    "admin": "u-1000-ad00",
}


@dataclass
class Client:
    client_id: str
    client_secret: str | None
    redirect_uris: list[str]

    def registration(self) -> dict[str, Any]:
        reg: dict[str, Any] = {"client_id": self.client_id, "redirect_uris": self.redirect_uris}
        if self.client_secret is None:
            reg["token_endpoint_auth_method"] = "none"
        else:
            reg["client_secret"] = self.client_secret
        return reg


@dataclass
class Provider:
    issuer: str
    clients: dict[str, Client]
    proc: subprocess.Popen[bytes]
    log: Path
    stopped: bool = field(default=False)

    def stop(self) -> None:
        """Stop the provider (SIGTERM, then SIGKILL); its port refuses connections after."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.stopped = True


def _node() -> str:
    node = shutil.which("node") or "/usr/bin/node"
    if not Path(node).exists():
        pytest.fail("Node.js is missing: run scripts/setup (it installs Debian's nodejs)")
    if not (JS / "node_modules" / "oidc-provider").is_dir():
        pytest.fail("tests/js/node_modules/oidc-provider is missing: run scripts/setup")
    return node


@contextmanager
def oidc_provider(
    clients: list[Client], log: Path, *, id_token_claims: bool = False, timeout: float = 30.0
) -> Iterator[Provider]:
    """The provider with ``clients`` registered; stopped when the block ends.

    ``id_token_claims``: put profile/email claims into ID tokens (many hospital IdPs
    do); otherwise they come only from the userinfo endpoint (OIDC Core's default).
    """
    env = {
        **os.environ,
        "OIDC_CLIENTS": json.dumps([c.registration() for c in clients]),
        "OIDC_PASSWORD": PASSWORD,
        "OIDC_ID_TOKEN_CLAIMS": "1" if id_token_claims else "0",
    }
    with open(log, "ab") as err:
        proc = subprocess.Popen(
            [_node(), str(SCRIPT), "0"], cwd=JS, env=env, stdout=subprocess.PIPE, stderr=err
        )
    assert proc.stdout is not None
    provider: Provider | None = None
    try:
        line = b""
        deadline = time.monotonic() + timeout
        with selectors.DefaultSelector() as sel:
            sel.register(proc.stdout, selectors.EVENT_READ)
            while not line.endswith(b"\n"):
                left = deadline - time.monotonic()
                if left <= 0 or proc.poll() is not None:
                    pytest.fail(f"the OIDC provider did not start:\n{log.read_text()[-3000:]}")
                if sel.select(left):
                    chunk = os.read(proc.stdout.fileno(), 4096)
                    if not chunk:
                        continue
                    line += chunk
        ready, _, issuer = line.decode().strip().partition(" ")
        assert ready == "READY" and issuer.startswith("http://127.0.0.1:"), line
        provider = Provider(issuer, {c.client_id: c for c in clients}, proc, log)
        yield provider
    finally:
        if provider is not None:
            provider.stop()
        elif proc.poll() is None:
            proc.kill()
            proc.wait(10)
        proc.stdout.close()


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def sign_in_at_provider(
    http: httpx.Client,
    authorize_url: str,
    username: str,
    *,
    password: str = PASSWORD,
    consent: bool = True,
) -> str:
    """Play the user at the provider, starting at ``authorize_url``.

    Follows the provider's redirects, fills in its login form and allows (or,
    with ``consent=False``, cancels) at its consent page; returns the first URL
    it redirects to off the provider — the client's redirect URI with the answer.
    """
    provider = _origin(authorize_url)
    response = http.get(authorize_url)
    for _ in range(20):
        url = str(response.url)
        if response.is_redirect:
            target = urljoin(url, response.headers["location"])
            if _origin(target) != provider:
                return target
            response = http.get(target)
            continue
        assert response.status_code == 200, f"{url}: {response.status_code} {response.text}"
        page = urlsplit(url).path.rstrip("/")
        assert page.startswith("/interaction/"), f"unexpected provider page {url}"
        if 'name="password"' in response.text:
            response = http.post(
                f"{provider}{page}/login", data={"login": username, "password": password}
            )
            assert response.status_code != 401, f"the provider refused {username}'s password"
        elif "/confirm" in response.text:
            if consent:
                response = http.post(f"{provider}{page}/confirm")
            else:
                response = http.get(f"{provider}{page}/abort")
        else:
            raise AssertionError(f"unexpected provider page {url}: {response.text[:500]}")
    raise AssertionError("the provider kept redirecting")
