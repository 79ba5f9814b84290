"""OpenID Connect single sign-on: radcloud as a relying party of the hospital's IdP.

The flow is the authorization-code flow with PKCE (S256), ``state`` and
``nonce``:

1. :func:`begin` makes the provider's authorization URL and the *login state*
   (state, nonce, PKCE verifier, redirect URI, where to go afterwards).
2. The browser signs in at the provider and comes back to the callback with a
   code; :func:`complete` checks the state, redeems the code (client secret +
   verifier), verifies the ID token (signature against the provider's JWKS,
   ``iss``, ``aud``/``azp``, ``exp``/``iat``, ``nonce``, ``at_hash``), maps it to
   a radcloud user and opens an ordinary session.

The login state is not kept in the process (any API node may receive the
callback): it travels in a short-lived cookie sealed with AES-256-GCM (so it is
both tamper-proof and unreadable), under a key every node derives alike — by
HKDF from the OIDC client secret, which all nodes need anyway to redeem codes.
For a public client (no secret) the key material is a random secret kept in
``<data_dir>/keys/oidc-state.key`` (mode 0600), created on first use; nodes
that do not share the data folder must then share that file.

Users are matched first by (issuer, subject), then — for accounts not yet
linked — by user name equal to the ``oidc_username_claim`` claim (the account
is linked on that first sign-in; platform administrators are never linked by
name), else created as SSO-only clinicians of the default institution when
``oidc_auto_create`` is on, else refused.  Provider metadata and keys are
cached for an hour (keys are fetched again when a token names an unknown key).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus, urlencode, urlsplit

import httpx
import orjson
from authlib.common.security import generate_token
from authlib.oauth2.rfc6749.parameters import prepare_grant_uri
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from joserfc import jwt
from joserfc.errors import (
    BadSignatureError,
    ExpiredTokenError,
    InvalidKeyIdError,
    JoseError,
    MissingClaimError,
)
from joserfc.jwk import KeySet
from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError as DbIntegrityError

from radcloud import __version__
from radcloud.archive.service import Archive
from radcloud.auth import accounts, audit, sessions
from radcloud.auth.access import Principal
from radcloud.auth.permissions import Role
from radcloud.config import Settings
from radcloud.errors import (
    Conflict,
    Forbidden,
    InvalidRequest,
    KeyUnavailable,
    NotFound,
    RadcloudError,
    Unauthenticated,
    UpstreamUnavailable,
)
from radcloud.store.models import Institution, User

CALLBACK_PATH = "/api/auth/oidc/callback"
STATE_COOKIE = "radcloud_oidc"
STATE_COOKIE_PATH = "/api/auth/oidc"
STATE_TTL = 600  # seconds a sign-in may take at the provider
CACHE_TTL = 3600.0  # provider metadata and keys
JWKS_REFRESH_MIN = 10.0  # at most this often on an unknown key id
LEEWAY = 60  # seconds of clock skew accepted on exp/iat
NOT_CONFIGURED = "single sign-on is not configured"
NO_ACCOUNT = "no radcloud account for this SSO user; ask your administrator"
#: Asymmetric signature algorithms accepted on ID tokens ("none" and HS* never).
ID_TOKEN_ALGS = (
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512",
    "ES256", "ES384", "ES512", "EdDSA", "Ed25519",
)  # fmt: skip
_AAD = b"radcloud oidc login state v1"


# ------------------------------------------------------------------ configuration


def configured(settings: Settings) -> bool:
    return bool(settings.oidc_issuer and settings.oidc_client_id)


def _require(settings: Settings) -> tuple[str, str]:
    if not settings.oidc_issuer or not settings.oidc_client_id:
        raise NotFound(NOT_CONFIGURED)
    return settings.oidc_issuer.rstrip("/"), settings.oidc_client_id


def redirect_uri(settings: Settings, request_base: str) -> str:
    """The callback URL to register at the IdP: ``public_url`` or the request's base."""
    base = (settings.public_url or request_base).rstrip("/")
    return base + CALLBACK_PATH


def safe_next(value: str | None) -> str:
    """``value`` when it is a path on this site, else ``/`` (no open redirects)."""
    if not value or len(value) > 2000 or not value.startswith("/") or value.startswith("//"):
        return "/"
    if "\\" in value or any(ord(c) < 0x21 or ord(c) == 0x7F for c in value):
        return "/"
    parts = urlsplit(value)
    if parts.scheme or parts.netloc:
        return "/"
    return value


# ------------------------------------------------------------------ provider metadata and keys


@dataclass(frozen=True)
class ProviderInfo:
    """What radcloud uses of the provider's discovery document."""

    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str
    userinfo_endpoint: str | None
    algorithms: tuple[str, ...]
    auth_methods: tuple[str, ...]
    #: RFC 9207: the provider names itself (``iss``) in every authorization response.
    iss_parameter: bool = False


_LOCK = threading.Lock()
_DISCOVERY: dict[str, tuple[float, ProviderInfo]] = {}
_JWKS: dict[str, tuple[float, KeySet]] = {}
_FILE_KEYS: dict[Path, bytes] = {}


def clear_caches() -> None:
    """Forget cached provider metadata and keys (tests; after an IdP change)."""
    with _LOCK:
        _DISCOVERY.clear()
        _JWKS.clear()


def _http() -> httpx.Client:
    return httpx.Client(
        timeout=httpx.Timeout(10.0, connect=5.0),
        follow_redirects=False,
        headers={"Accept": "application/json", "User-Agent": f"radcloud/{__version__}"},
    )


def _unreachable(issuer: str, what: str, why: str) -> UpstreamUnavailable:
    return UpstreamUnavailable(
        f"the single sign-on identity provider {issuer} is not available ({what}: {why}); "
        "try again later or sign in with a password"
    )


def _get_json(issuer: str, url: str, what: str) -> dict[str, Any]:
    try:
        with _http() as client:
            response = client.get(url)
    except httpx.HTTPError as exc:
        raise _unreachable(issuer, what, type(exc).__name__) from None
    if response.status_code != 200:
        raise _unreachable(issuer, what, f"HTTP {response.status_code}")
    try:
        data = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        raise _unreachable(issuer, what, "not JSON") from None
    if not isinstance(data, dict):
        raise _unreachable(issuer, what, "not a JSON object")
    return data


def discover(settings: Settings) -> ProviderInfo:
    """The provider's metadata from ``<issuer>/.well-known/openid-configuration`` (cached)."""
    issuer, _ = _require(settings)
    now = time.monotonic()
    with _LOCK:
        hit = _DISCOVERY.get(issuer)
    if hit is not None and hit[0] > now:
        return hit[1]
    doc = _get_json(issuer, issuer + "/.well-known/openid-configuration", "discovery")
    if str(doc.get("issuer", "")).rstrip("/") != issuer:
        raise _unreachable(issuer, "discovery", f"it names itself {doc.get('issuer')!r}")
    for name in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
        if not isinstance(doc.get(name), str) or not doc[name]:
            raise _unreachable(issuer, "discovery", f"no {name}")
    offered = doc.get("id_token_signing_alg_values_supported") or ["RS256"]
    algs = tuple(a for a in offered if a in ID_TOKEN_ALGS) or ("RS256",)
    info = ProviderInfo(
        issuer=str(doc["issuer"]),
        authorization_endpoint=doc["authorization_endpoint"],
        token_endpoint=doc["token_endpoint"],
        jwks_uri=doc["jwks_uri"],
        userinfo_endpoint=doc.get("userinfo_endpoint") or None,
        algorithms=algs,
        auth_methods=tuple(doc.get("token_endpoint_auth_methods_supported")
                           or ("client_secret_basic",)),
        iss_parameter=doc.get("authorization_response_iss_parameter_supported") is True,
    )  # fmt: skip
    with _LOCK:
        _DISCOVERY[issuer] = (now + CACHE_TTL, info)
    return info


def _keys(info: ProviderInfo, *, refresh: bool = False) -> KeySet:
    now = time.monotonic()
    with _LOCK:
        hit = _JWKS.get(info.jwks_uri)
    if hit is not None:
        fetched = hit[0] - CACHE_TTL
        if hit[0] > now and not (refresh and now - fetched > JWKS_REFRESH_MIN):
            return hit[1]
    doc = _get_json(info.issuer, info.jwks_uri, "signing keys")
    try:
        keys = KeySet.import_key_set(doc)  # type: ignore[arg-type]
    except (JoseError, KeyError, TypeError, ValueError):
        raise _unreachable(info.issuer, "signing keys", "no usable key") from None
    with _LOCK:
        _JWKS[info.jwks_uri] = (now + CACHE_TTL, keys)
    return keys


# ------------------------------------------------------------------ the sealed login state


def _secret_file(settings: Settings) -> bytes:
    path = settings.data_dir / "keys" / "oidc-state.key"
    with _LOCK:
        if path in _FILE_KEYS:
            return _FILE_KEYS[path]
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process made it first
            pass
        else:
            with os.fdopen(fd, "w") as fh:
                fh.write(base64.b64encode(secrets.token_bytes(32)).decode() + "\n")
                fh.flush()
                os.fsync(fh.fileno())
    try:
        raw = base64.b64decode(path.read_text().strip(), validate=True)
    except ValueError:
        raw = b""
    if len(raw) != 32:
        raise KeyUnavailable(f"{path} does not hold a 32-byte base64 key; remove it to renew it")
    with _LOCK:
        _FILE_KEYS[path] = raw
    return raw


def _state_key(settings: Settings) -> bytes:
    issuer, client_id = _require(settings)
    material = (
        settings.oidc_client_secret.encode()
        if settings.oidc_client_secret
        else _secret_file(settings)
    )
    return HKDF(
        algorithm=hashes.SHA256(), length=32, salt=b"radcloud-oidc-state",
        info=b"|".join((_AAD, issuer.encode(), client_id.encode())),
    ).derive(material)  # fmt: skip


def seal_state(settings: Settings, state: dict[str, Any]) -> str:
    nonce = secrets.token_bytes(12)
    body = AESGCM(_state_key(settings)).encrypt(nonce, orjson.dumps(state), _AAD)
    return base64.urlsafe_b64encode(nonce + body).decode().rstrip("=")


def open_state(settings: Settings, cookie: str | None) -> dict[str, Any]:
    """The login state from its cookie; 401 when missing, altered or expired."""
    if not cookie:
        raise Unauthenticated(
            "no single sign-on in progress in this browser (it lasts 10 minutes and needs "
            "cookies); start the sign-in again"
        )
    try:
        raw = base64.urlsafe_b64decode(cookie + "=" * (-len(cookie) % 4))
        state = orjson.loads(AESGCM(_state_key(settings)).decrypt(raw[:12], raw[12:], _AAD))
    except (ValueError, InvalidTag, orjson.JSONDecodeError):
        raise Unauthenticated(
            "the single sign-on state cookie is not valid (altered, or from another "
            "configuration); start the sign-in again"
        ) from None
    if not isinstance(state, dict) or float(state.get("exp", 0)) < time.time():
        raise Unauthenticated("the single sign-on took too long; start the sign-in again")
    return state


# ------------------------------------------------------------------ step 1: to the provider


@dataclass(frozen=True)
class Start:
    url: str  # where to send the browser
    cookie: str  # sealed login state, for STATE_COOKIE


def begin(settings: Settings, *, request_base: str, next_path: str | None = None) -> Start:
    """The authorization URL (code + PKCE S256 + state + nonce) and the sealed state."""
    _, client_id = _require(settings)
    info = discover(settings)
    state, nonce, verifier = generate_token(32), generate_token(32), generate_token(64)
    callback = redirect_uri(settings, request_base)
    url = prepare_grant_uri(
        info.authorization_endpoint, client_id=client_id, response_type="code",
        redirect_uri=callback, scope=settings.oidc_scopes, state=state, nonce=nonce,
        code_challenge=create_s256_code_challenge(verifier), code_challenge_method="S256",
    )  # fmt: skip
    sealed = seal_state(
        settings,
        {"state": state, "nonce": nonce, "verifier": verifier, "redirect_uri": callback,
         "next": safe_next(next_path), "exp": time.time() + STATE_TTL},
    )  # fmt: skip
    return Start(url, sealed)


# ------------------------------------------------------------------ step 2: back from it


def _redeem(
    settings: Settings, info: ProviderInfo, code: str, state: dict[str, Any]
) -> dict[str, Any]:
    """Exchange the code at the token endpoint (client authentication + PKCE verifier)."""
    client_id = settings.oidc_client_id or ""
    secret = settings.oidc_client_secret
    form = {"grant_type": "authorization_code", "code": code,
            "redirect_uri": state["redirect_uri"], "code_verifier": state["verifier"]}  # fmt: skip
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    if secret is None:  # a public client: PKCE alone
        form["client_id"] = client_id
    elif (
        "client_secret_post" in info.auth_methods and "client_secret_basic" not in info.auth_methods
    ):
        form.update(client_id=client_id, client_secret=secret)
    else:  # client_secret_basic, each part form-encoded first (RFC 6749 section 2.3.1)
        pair = f"{quote_plus(client_id)}:{quote_plus(secret)}".encode()
        headers["Authorization"] = "Basic " + base64.b64encode(pair).decode()
    try:
        with _http() as client:
            response = client.post(info.token_endpoint, content=urlencode(form), headers=headers)
    except httpx.HTTPError as exc:
        raise _unreachable(info.issuer, "token", type(exc).__name__) from None
    try:
        data = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        data = None
    if response.status_code >= 500 or not isinstance(data, dict):
        raise _unreachable(info.issuer, "token", f"HTTP {response.status_code}")
    if response.status_code != 200 or "error" in data:
        error = str(data.get("error", "error"))[:64]
        description = str(data.get("error_description", ""))[:200]
        if error == "invalid_client":
            raise Unauthenticated(
                "the identity provider does not accept radcloud's client credentials "
                "(invalid_client); ask your administrator to check oidc_client_id and "
                "oidc_client_secret"
            )
        raise Unauthenticated(
            f"the identity provider did not accept the sign-in code ({error}: {description}); "
            "it was already used, has expired, or belongs to another application — start the "
            "sign-in again"
        )
    if not isinstance(data.get("id_token"), str):
        raise Unauthenticated("the identity provider answered without an ID token")
    return data


def verify_id_token(
    settings: Settings, id_token: str, *, nonce: str, access_token: str | None = None
) -> dict[str, Any]:
    """The claims of a valid ID token for this client and this sign-in; 401 otherwise."""
    _, client_id = _require(settings)
    info = discover(settings)

    def decode(keys: KeySet) -> jwt.Token:
        return jwt.decode(id_token, keys, algorithms=list(info.algorithms))

    try:
        try:
            token = decode(_keys(info))
        except InvalidKeyIdError:  # the provider rotated its keys
            token = decode(_keys(info, refresh=True))
    except InvalidKeyIdError:
        raise Unauthenticated(
            "the ID token is signed with a key the provider does not publish"
        ) from None
    except BadSignatureError:
        raise Unauthenticated("the ID token's signature does not verify") from None
    except (JoseError, ValueError, TypeError) as exc:
        raise Unauthenticated(f"the ID token is not valid ({type(exc).__name__})") from None
    claims = token.claims
    registry = jwt.JWTClaimsRegistry(
        leeway=LEEWAY,
        iss={"essential": True, "value": info.issuer},
        aud={"essential": True, "value": client_id},
        sub={"essential": True},
        exp={"essential": True},
        iat={"essential": True},
    )
    try:
        registry.validate(claims)
    except ExpiredTokenError:
        raise Unauthenticated("the ID token has expired (check the server clocks)") from None
    except MissingClaimError as exc:
        raise Unauthenticated(f"the ID token lacks the claim(s) {exc.claim}") from None
    except JoseError as exc:
        claim = getattr(exc, "claim", "?")
        reason = {
            "iss": f"was issued by {claims.get('iss')!r}, not {info.issuer!r}",
            "aud": f"is meant for another application (audience {claims.get('aud')!r})",
        }.get(claim, f"has an invalid {claim!r} claim")
        raise Unauthenticated(f"the ID token {reason}") from None
    aud = claims["aud"]
    if isinstance(aud, list) and len(aud) > 1 and claims.get("azp") is None:
        raise Unauthenticated("the ID token has several audiences but no 'azp' claim")
    if claims.get("azp") is not None and claims["azp"] != client_id:
        raise Unauthenticated("the ID token is meant for another application (azp)")
    if not isinstance(claims.get("nonce"), str) or not hmac.compare_digest(claims["nonce"], nonce):
        raise Unauthenticated("the ID token does not belong to this sign-in (nonce mismatch)")
    at_hash = claims.get("at_hash")
    if at_hash is not None and access_token is not None:
        size = {"256": hashlib.sha256, "384": hashlib.sha384, "512": hashlib.sha512}.get(
            str(token.header.get("alg", ""))[-3:], hashlib.sha256
        )
        digest = size(access_token.encode()).digest()
        expected = base64.urlsafe_b64encode(digest[: len(digest) // 2]).decode().rstrip("=")
        if not hmac.compare_digest(str(at_hash), expected):
            raise Unauthenticated("the ID token does not match its access token (at_hash)")
    return dict(claims)


def _userinfo(info: ProviderInfo, access_token: str, sub: str) -> dict[str, Any]:
    """Claims from the userinfo endpoint (providers that keep profile claims there)."""
    if not info.userinfo_endpoint:
        return {}
    try:
        with _http() as client:
            response = client.get(
                info.userinfo_endpoint, headers={"Authorization": f"Bearer {access_token}"}
            )
    except httpx.HTTPError as exc:
        raise _unreachable(info.issuer, "userinfo", type(exc).__name__) from None
    if response.status_code != 200:
        return {}
    try:
        data = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        return {}  # a signed (JWT) userinfo answer: not used
    if not isinstance(data, dict) or data.get("sub") != sub:
        return {}  # OIDC Core 5.3.2: must be the same subject, else not used
    return data


# ------------------------------------------------------------------ ID token -> radcloud user


def _by_subject(archive: Archive, iss: str, sub: str) -> Any:
    with archive.read() as conn:
        return conn.execute(
            select(User.id, User.username, User.active, User.institution_fk,
                   Institution.status.label("inst_status"))
            .join(Institution, Institution.id == User.institution_fk)
            .where(User.oidc_issuer == iss, User.oidc_subject == sub)
        ).first()  # fmt: skip


def _usable(row: Any) -> None:
    if not row.active:
        raise Forbidden(f"the radcloud account {row.username!r} is disabled")
    if row.inst_status != "active":
        raise Forbidden(f"the institution of the radcloud account {row.username!r} is not active")


def match_user(archive: Archive, claims: Mapping[str, Any]) -> tuple[int, str]:
    """The radcloud user an ID token stands for, and how: ``known``, ``linked`` or ``created``."""
    settings = archive.settings
    iss, sub = str(claims["iss"]), str(claims["sub"])
    row = _by_subject(archive, iss, sub)
    if row is not None:
        _usable(row)
        return int(row.id), "known"
    name = claims.get(settings.oidc_username_claim)
    if not isinstance(name, str) or not name.strip():
        raise Forbidden(
            f"{NO_ACCOUNT} (the identity provider sent no {settings.oidc_username_claim!r} claim)"
        )
    name = name.strip()
    with archive.read() as conn:
        local = conn.execute(
            select(User.id, User.username, User.active, User.roles, User.oidc_subject,
                   Institution.status.label("inst_status"))
            .join(Institution, Institution.id == User.institution_fk)
            .where(func.lower(User.username) == name.lower())
        ).first()  # fmt: skip
    if local is not None:
        if local.oidc_subject is not None:
            raise Forbidden(
                f"the radcloud account {local.username!r} is linked to another single sign-on "
                "identity; ask your administrator"
            )
        if Role.PLATFORM_ADMIN.value in local.roles.split(","):
            raise Forbidden(
                f"the radcloud account {local.username!r} is a platform administrator and is "
                "not linked to single sign-on by name; sign in with its password"
            )
        _usable(local)
        try:
            with archive.write() as conn:
                linked = conn.execute(
                    update(User)
                    .where(User.id == local.id, User.oidc_subject.is_(None))
                    .values(oidc_issuer=iss, oidc_subject=sub)
                ).rowcount
        except DbIntegrityError:  # another node linked this identity at the same moment
            linked = 0
        if linked:
            return int(local.id), "linked"
        row = _by_subject(archive, iss, sub)
        if row is not None and row.id == local.id:
            return int(row.id), "known"
        raise Forbidden(f"the radcloud account {local.username!r} was just linked elsewhere")
    if not settings.oidc_auto_create:
        raise Forbidden(NO_ACCOUNT)
    try:
        username = accounts.check_username(name)
    except InvalidRequest:
        raise Forbidden(
            f"the single sign-on user name {name[:64]!r} cannot be a radcloud user name; "
            "ask your administrator to create the account"
        ) from None
    display = claims.get("name") or " ".join(
        str(claims[k]) for k in ("given_name", "family_name") if claims.get(k)
    )
    try:
        uid = accounts.create_user(
            archive, username, None, roles=[Role.CLINICIAN], display_name=str(display or ""),
            email=str(claims.get("email") or ""), oidc=(iss, sub),
        )  # fmt: skip
    except Conflict:  # created by a concurrent sign-in on another node
        row = _by_subject(archive, iss, sub)
        if row is None:
            raise Forbidden(NO_ACCOUNT) from None
        _usable(row)
        return int(row.id), "known"
    return uid, "created"


@dataclass(frozen=True)
class SsoLogin:
    token: str
    user_id: int
    username: str
    expires_at: datetime
    next_path: str
    how: str  # known | linked | created


def complete(
    archive: Archive, params: Mapping[str, str], cookie: str | None, *, source: str = ""
) -> SsoLogin:
    """Finish a sign-in from the callback's query parameters and the state cookie.

    Every outcome goes to the audit trail as ``login.sso`` (denials with the reason).
    """
    settings = archive.settings
    issuer, _ = _require(settings)
    who: Principal | None = None
    detail: dict[str, Any] = {"issuer": issuer}
    try:
        state = open_state(settings, cookie)
        if not hmac.compare_digest(str(params.get("state", "")), str(state["state"])):
            raise Unauthenticated(
                "the single sign-on answer does not belong to this browser's sign-in "
                "(state mismatch); start the sign-in again"
            )
        info = discover(settings)
        if params.get("iss", info.issuer if not info.iss_parameter else None) != info.issuer:
            raise Unauthenticated(
                "the sign-in answer does not name this identity provider (iss); start again"
            )
        if "error" in params:
            error = params["error"][:64]
            description = params.get("error_description", "")[:200]
            text = f"the identity provider refused the sign-in ({error}" + (
                f": {description})" if description else ")"
            )
            raise Forbidden(text) if error == "access_denied" else Unauthenticated(text)
        code = params.get("code")
        if not code:
            raise Unauthenticated("the sign-in answer carries no authorization code")
        tokens = _redeem(settings, info, code, state)
        access_token = tokens.get("access_token")
        access_token = access_token if isinstance(access_token, str) else None
        claims = verify_id_token(
            settings, tokens["id_token"], nonce=str(state["nonce"]), access_token=access_token
        )
        detail["subject"] = claims["sub"]
        if settings.oidc_username_claim not in claims and access_token:
            extra = _userinfo(info, access_token, claims["sub"])
            claims = {**extra, **claims}
        name = claims.get(settings.oidc_username_claim)
        who = Principal(kind="user", name=str(name or claims["sub"])[:64], institution_id=0)
        user_id, how = match_user(archive, claims)
        try:
            principal = accounts.principal_for_user(archive, user_id)
        except NotFound:
            raise Forbidden("the radcloud account or its institution is not active") from None
        expires = datetime.now(UTC) + timedelta(hours=settings.session_max_hours)
        token = sessions.issue(
            archive, user_id, sessions.SESSION, name="sso", expires_at=expires, source=source
        )
    except RadcloudError as exc:
        result = audit.DENIED if exc.http_status in (401, 403) else audit.FAILED
        audit.record(archive, who, "login.sso", result, source=source,
                     detail={**detail, "reason": exc.detail[:160]}, wait=True)  # fmt: skip
        raise
    audit.record(archive, principal, "login.sso", source=source,
                 detail={**detail, "how": how}, wait=True)  # fmt: skip
    return SsoLogin(token, user_id, principal.name, expires, safe_next(state.get("next")), how)
