"""HTTP access control: one rule per endpoint, enforced before any handler runs.

``RULES`` maps every route (method, path template) to the permission it needs
and the audit action it is recorded under.  :func:`enforce` is an app-wide
dependency: it authenticates the caller (``Authorization: Bearer`` token or the
``radcloud_session`` cookie), checks the rule's permission, and leaves the
:class:`Principal` on ``request.state`` for the handler, which passes it to the
services (they filter studies by it).  A route without a rule answers 500 and
fails the test suite (tests/test_authz_matrix.py walks ``app.routes``).

:class:`AuditMiddleware` records every request that has a rule, with its
result, once the response status is known.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from fastapi import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from radcloud.auth import audit, sessions
from radcloud.auth.access import Principal
from radcloud.auth.permissions import Perm
from radcloud.errors import BadQuery, Forbidden, RadcloudError, Unauthenticated

COOKIE = "radcloud_session"
_SAFE = {"GET", "HEAD", "OPTIONS"}


@dataclass(frozen=True)
class Rule:
    """What an endpoint needs: ``perm`` (None = any signed-in caller) or nothing (public)."""

    perm: Perm | None
    action: str
    public: bool = False
    audit: bool = True
    fold: bool = False  # image reads: repeated ones folded into one audit row
    #: The service writes the success event itself (with its own detail and flag);
    #: the middleware records only refusals and failures.
    self_audited: bool = False
    flagged: bool = False  # every attempt is flagged for review (break the glass)


def _public(action: str, audit: bool = False) -> Rule:
    return Rule(None, action, public=True, audit=audit)


def _any(action: str) -> Rule:
    return Rule(None, action)


def _self(perm: Perm, action: str, flagged: bool = False) -> Rule:
    return Rule(perm, action, self_audited=True, flagged=flagged)


_DW = "/dicom-web"
_S, _SE, _I = "/studies/{study}", "/series/{series}", "/instances/{instance}"
_INST = _DW + _S + _SE + _I
_RPT = "/api" + _S + "/report"

RULES: dict[tuple[str, str], Rule] = {
    ("GET", "/healthz"): _public("health"),
    ("GET", "/"): _public("landing"),
    ("GET", "/openapi.json"): _public("api.describe"),
    ("GET", "/api/docs"): _public("api.describe"),
    ("GET", "/docs/oauth2-redirect"): _public("api.describe"),
    ("GET", "/redoc"): _public("api.describe"),
    # QIDO-RS
    **{
        ("GET", _DW + path): Rule(Perm.STUDY_READ, "study.search")
        for path in (
            "/studies",
            _S + "/series",
            _S + _SE + "/instances",
            _S + "/instances",
            "/series",
            "/instances",
        )
    },  # fmt: skip
    # STOW-RS and upload
    ("POST", _DW + "/studies"): Rule(Perm.STUDY_WRITE, "study.store"),
    ("POST", _DW + _S): Rule(Perm.STUDY_WRITE, "study.store"),
    ("POST", "/api/upload"): Rule(Perm.STUDY_WRITE, "study.store"),
    # WADO-RS: whole files out
    ("GET", _DW + _S): Rule(Perm.STUDY_DOWNLOAD, "study.download"),
    ("GET", _DW + _S + _SE): Rule(Perm.STUDY_DOWNLOAD, "study.download"),
    ("GET", _INST): Rule(Perm.STUDY_DOWNLOAD, "study.download"),
    # WADO-RS: metadata, pixels, rendered images, thumbnails (what a viewer shows)
    ("GET", _DW + _S + "/metadata"): Rule(Perm.STUDY_READ, "study.metadata"),
    ("GET", _DW + _S + _SE + "/metadata"): Rule(Perm.STUDY_READ, "study.metadata"),
    ("GET", _INST + "/metadata"): Rule(Perm.STUDY_READ, "study.metadata"),
    **{
        ("GET", path): Rule(Perm.STUDY_READ, "study.view", fold=True)
        for path in (
            _INST + "/frames/{frames}",
            _INST + "/bulkdata/{tag}",
            _INST + "/rendered",
            _INST + "/frames/{frames}/rendered",
            _DW + _S + _SE + "/rendered",
            _DW + _S + "/rendered",
            _DW + _S + "/thumbnail",
            _DW + _S + _SE + "/thumbnail",
            _INST + "/thumbnail",
            _INST + "/frames/{frames}/thumbnail",
        )
    },  # fmt: skip
    # sign-in
    ("POST", "/api/auth/login"): _public("login", audit=False),  # audited by the handler
    ("POST", "/api/auth/logout"): _any("logout"),
    ("GET", "/api/auth/me"): Rule(None, "auth.me", audit=False),
    ("GET", "/api/me/settings"): Rule(None, "settings.read", audit=False),
    ("PUT", "/api/me/settings"): Rule(None, "settings.change", audit=False),
    ("PATCH", "/api/me/settings"): Rule(None, "settings.change", audit=False),
    ("POST", "/api/auth/password"): _any("user.password"),
    ("POST", "/api/auth/totp/setup"): _any("user.totp"),
    ("POST", "/api/auth/totp/enable"): _any("user.totp"),
    ("POST", "/api/auth/totp/disable"): _any("user.totp"),
    ("GET", "/api/auth/oidc/login"): _public("login.sso", audit=False),
    ("GET", "/api/auth/oidc/callback"): _public("login.sso", audit=False),
    # tokens (own; others' with users.manage, checked by the handler)
    ("GET", "/api/tokens"): Rule(None, "token.list", audit=False),
    ("POST", "/api/tokens"): _any("token.create"),
    ("DELETE", "/api/tokens/{token_id}"): _any("token.revoke"),
    # institutions
    ("POST", "/api/institutions/register"): _public("institution.register", audit=True),
    ("GET", "/api/institutions"): Rule(None, "institution.list", audit=False),
    ("POST", "/api/institutions"): Rule(Perm.INSTITUTIONS_MANAGE, "institution.create"),
    ("PATCH", "/api/institutions/{institution_id}"): Rule(
        Perm.INSTITUTIONS_MANAGE, "institution.change"
    ),
    # users, groups, roles
    ("GET", "/api/users"): Rule(Perm.USERS_MANAGE, "user.list"),
    ("POST", "/api/users"): Rule(Perm.USERS_MANAGE, "user.create"),
    ("GET", "/api/users/{user_id}"): Rule(Perm.USERS_MANAGE, "user.read"),
    ("PATCH", "/api/users/{user_id}"): Rule(Perm.USERS_MANAGE, "user.change"),
    ("POST", "/api/users/{user_id}/password"): Rule(Perm.USERS_MANAGE, "user.password"),
    ("POST", "/api/users/{user_id}/unlock"): Rule(Perm.USERS_MANAGE, "user.unlock"),
    ("PUT", "/api/users/{user_id}/permissions/{perm}"): Rule(Perm.USERS_MANAGE, "user.grant"),
    ("GET", "/api/groups"): Rule(Perm.USERS_MANAGE, "group.list"),
    ("POST", "/api/groups"): Rule(Perm.USERS_MANAGE, "group.create"),
    ("PUT", "/api/groups/{group_id}/members/{user_id}"): Rule(Perm.USERS_MANAGE, "group.member"),
    ("DELETE", "/api/groups/{group_id}/members/{user_id}"): Rule(Perm.USERS_MANAGE, "group.member"),
    ("PUT", "/api/groups/{group_id}/permissions/{perm}"): Rule(Perm.USERS_MANAGE, "group.grant"),
    ("GET", "/api/roles"): Rule(None, "role.list", audit=False),
    ("PUT", "/api/roles/{role}/permissions/{perm}"): Rule(Perm.ROLES_MANAGE, "role.grant"),
    # DICOM nodes
    ("GET", "/api/aes"): Rule(Perm.AE_MANAGE, "ae.list"),
    ("PUT", "/api/aes/{title}"): Rule(Perm.AE_MANAGE, "ae.change"),
    ("DELETE", "/api/aes/{title}"): Rule(Perm.AE_MANAGE, "ae.remove"),
    # who sees a study
    ("GET", "/api/studies/{study}/access"): Rule(Perm.STUDY_SHARE, "study.access"),
    ("POST", "/api/studies/{study}/grants"): Rule(
        Perm.STUDY_SHARE, "study.grant", self_audited=True
    ),
    ("DELETE", "/api/studies/{study}/grants/{grant_id}"): Rule(
        Perm.STUDY_SHARE, "study.revoke", self_audited=True
    ),
    ("PUT", "/api/studies/{study}/restriction"): Rule(
        Perm.STUDY_RESTRICT, "study.restrict", self_audited=True
    ),
    ("POST", "/api/studies/{study}/break-glass"): _self(
        Perm.BREAK_GLASS, "study.break_glass", flagged=True
    ),
    # measurements and key images saved as DICOM (GSPS, KOS) in the study
    ("GET", "/api/studies/{study}/annotations"): Rule(Perm.STUDY_READ, "annotations.read"),
    ("POST", "/api/studies/{study}/annotations"): Rule(Perm.STUDY_ANNOTATE, "annotations.save"),
    ("GET", "/api/studies/{study}/key-images"): Rule(Perm.STUDY_READ, "key_images.read"),
    # structured reports (one per study), their outputs, and the HIS/EMR report API
    ("GET", _RPT): Rule(Perm.REPORT_READ, "report.read"),
    ("POST", _RPT): _self(Perm.REPORT_WRITE, "report.create"),
    ("PUT", _RPT): _self(Perm.REPORT_WRITE, "report.save"),
    ("POST", _RPT + "/lock"): Rule(Perm.REPORT_WRITE, "report.lock", audit=False),
    ("DELETE", _RPT + "/lock"): Rule(Perm.REPORT_WRITE, "report.unlock", audit=False),
    ("POST", _RPT + "/submit"): _self(Perm.REPORT_WRITE, "report.submit"),
    ("POST", _RPT + "/return"): _self(Perm.REPORT_SIGN, "report.return"),
    ("POST", _RPT + "/sign"): _self(Perm.REPORT_SIGN, "report.sign"),
    ("POST", _RPT + "/amend"): _self(Perm.REPORT_SIGN, "report.amend"),
    ("GET", _RPT + "/versions"): Rule(Perm.REPORT_READ, "report.versions"),
    ("GET", _RPT + "/html"): Rule(Perm.REPORT_READ, "report.view"),
    ("GET", _RPT + "/pdf"): Rule(Perm.REPORT_READ, "report.view"),
    ("GET", _RPT + "/film"): Rule(Perm.STUDY_READ, "report.film"),
    ("POST", _RPT + "/print"): Rule(Perm.STUDY_READ, "report.print"),
    ("POST", _RPT + "/screenshots"): Rule(Perm.REPORT_WRITE, "report.screenshot"),
    ("GET", "/api/reports"): Rule(Perm.REPORT_READ, "report.search"),
    ("GET", "/api/report-events"): Rule(Perm.REPORT_READ, "report.events", audit=False),
    ("GET", "/api/report-notifications"): Rule(Perm.REPORT_READ, "report.notices", audit=False),
    ("POST", "/api/report-notifications/ack"): Rule(Perm.REPORT_READ, "report.acknowledge"),
    ("GET", "/api/report-templates"): Rule(Perm.REPORT_READ, "report.templates", audit=False),
    ("POST", "/api/report-templates"): _self(Perm.TEMPLATES_MANAGE, "report.template"),
    ("GET", "/api/report-phrases"): Rule(Perm.REPORT_WRITE, "report.phrases", audit=False),
    ("POST", "/api/report-phrases"): Rule(Perm.REPORT_WRITE, "report.phrase"),
    ("DELETE", "/api/report-phrases"): Rule(Perm.REPORT_WRITE, "report.phrase"),
    # server-side 3D (radcloud.volume): views are image reads, saving stores a derived series
    ("GET", "/api/volume/studies/{study}/series/{series}"): Rule(Perm.STUDY_READ, "study.view"),
    **{
        (method, "/api/volume/studies/{study}/series/{series}" + path): Rule(
            Perm.STUDY_READ, "study.view", fold=True
        )
        for method, path in (("GET", "/view"), ("POST", "/crosshair"), ("POST", "/cpr"))
    },  # fmt: skip
    ("POST", "/api/volume/studies/{study}/series/{series}/derived"): Rule(
        Perm.STUDY_WRITE, "study.store"
    ),
    ("GET", "/api/volume/presets"): Rule(Perm.STUDY_READ, "volume.presets", audit=False),
    # AI analysis (radcloud.analysis): results, versions, runs, corrections
    ("GET", "/api/analysis/modules"): Rule(Perm.STUDY_READ, "analysis.modules", audit=False),
    **{
        ("GET", "/api/analysis/studies/{study}" + path): Rule(Perm.STUDY_READ, "analysis.read")
        for path in (
            "",
            "/jobs",
            "/series/{series}",
            "/series/{series}/versions",
            "/series/{series}/model",
        )
    },  # fmt: skip
    **{
        ("POST", "/api/analysis/studies/{study}/series/{series}/" + op): Rule(
            Perm.STUDY_ANNOTATE, "analysis." + op
        )
        for op in ("run", "cancel", "retry")
    },  # fmt: skip
    ("PUT", "/api/analysis/studies/{study}/series/{series}/result"): _self(
        Perm.STUDY_ANNOTATE, "analysis.edit"
    ),
    # share links (radcloud.share): managers of a study's links ...
    ("POST", "/api/studies/{study}/shares"): _self(Perm.STUDY_SHARE, "share.create"),
    ("GET", "/api/studies/{study}/shares"): Rule(Perm.STUDY_SHARE, "share.list"),
    ("DELETE", "/api/studies/{study}/shares"): _self(Perm.STUDY_SHARE, "share.revoke"),
    # ... and the holder of a link, without an account: the token (in the query or body, never
    # the path) and the share-session cookie decide; the handlers audit under the share's id
    **{
        (method, path): _public("share.access")
        for method, path in (
            ("GET", "/s"),
            ("GET", "/s/assets/{name}"),  # the page's own files: no patient data in them
            ("GET", "/api/s/info"),
            ("POST", "/api/s/verify"),
            ("GET", "/api/s/exams"),
            ("GET", "/api/s/study"),
            ("GET", "/api/s/series"),
            ("GET", "/api/s/series/{series}/instances/{instance}/rendered"),
            ("GET", "/api/s/dicom"),
            ("GET", "/api/s/report"),
            ("GET", "/api/s/film"),
            ("GET", "/api/s/qr"),
            ("POST", "/api/s/reshare"),
            ("GET", "/api/s/shares"),
            ("POST", "/api/s/revoke"),
        )
    },  # fmt: skip
    # the audit trail
    ("GET", "/api/audit"): Rule(Perm.AUDIT_READ, "audit.search"),
    ("GET", "/api/worklist"): Rule(Perm.STUDY_READ, "study.search"),
    ("GET", "/api/audit/verify"): Rule(Perm.AUDIT_READ, "audit.verify"),
    ("GET", "/api/audit/export"): Rule(Perm.AUDIT_READ, "audit.export"),
    # admin pages (the page itself is public; its data comes from the API above)
    ("GET", "/admin"): _public("admin.page"),
    ("GET", "/login"): _public("login.page"),
    ("GET", "/admin/assets/{name}"): _public("admin.asset"),
    ("GET", "/api/auth/methods"): _public("auth.methods"),
    # the study list (at "/") and the viewer: the page shell and its built assets carry no
    # patient data (it all comes from the DICOMweb API above)
    ("GET", "/viewer"): _public("viewer.page"),
    ("GET", "/report"): _public("report.page"),
    ("GET", "/app/assets/{name}"): _public("app.asset"),
}


def route_rules(app: Any) -> dict[tuple[str, Any], Rule]:
    """(method, endpoint function) → rule for every route of ``app``.

    Raises ``RuntimeError`` naming any route that has no rule, so an endpoint
    added without an access rule stops the application from starting.
    """
    table: dict[tuple[str, Any], Rule] = {}
    missing = []
    for method, path, endpoint in endpoints(app):
        rule = RULES.get((method, path))
        if rule is None:
            missing.append(f"{method} {path}")
        else:
            table[method, endpoint] = rule
    if missing:
        raise RuntimeError(f"endpoints without an access rule: {', '.join(missing)}")
    return table


def endpoints(app: Any) -> list[tuple[str, str, Any]]:
    """(method, full path template, endpoint function) of every route, included routers too."""
    found: list[tuple[str, str, Any]] = []

    def walk(routes: Any, prefix: str) -> None:
        for route in routes:
            inner = getattr(route, "original_router", None)  # FastAPI >= 0.16x includes lazily
            if inner is not None:
                walk(inner.routes, prefix + route.include_context.prefix)
                continue
            for method in getattr(route, "methods", None) or ():
                if method != "HEAD":
                    found.append((method, prefix + route.path, route.endpoint))

    walk(app.routes, "")
    return found


def rule_for(request: Request) -> Rule | None:
    method = "GET" if request.method == "HEAD" else request.method
    rules: dict[tuple[str, Any], Rule] = request.app.state.rules
    return rules.get((method, request.scope.get("endpoint")))


def client_address(request: Request) -> str:
    """The caller's address; X-Forwarded-For only when the peer is a trusted proxy."""
    peer = request.client.host if request.client else ""
    trusted = request.app.state.archive.settings.trusted_proxies
    if trusted and peer and _in(peer, trusted):
        forwarded = request.headers.get("x-forwarded-for", "")
        if forwarded:
            return forwarded.split(",")[-1].strip()[:64]
    return peer


def _in(address: str, networks: str) -> bool:
    try:
        return any(ipaddress.ip_address(address) in n for n in _networks(networks))
    except ValueError:
        return False


@lru_cache(maxsize=8)
def _networks(text: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    """The trusted-proxy setting parsed once, not on every request."""
    return tuple(
        ipaddress.ip_network(n.strip(), strict=False) for n in text.split(",") if n.strip()
    )


def credentials(request: Request) -> tuple[str | None, bool]:
    """(secret, from_cookie) of the request, if any."""
    header = request.headers.get("authorization", "")
    if header:
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise Unauthenticated("use 'Authorization: Bearer <token>'")
        return value.strip(), False
    cookie = request.cookies.get(COOKIE)
    return (cookie, True) if cookie else (None, False)


def enforce(request: Request) -> None:
    """App-wide dependency: authenticate, check the endpoint's rule, keep the principal."""
    rule = rule_for(request)
    if rule is None:
        raise RadcloudError(f"no access rule for {request.method} {request.url.path}")
    request.state.rule = rule
    if "\x00" in request.scope.get("path", "") or any(
        "\x00" in k + v for k, v in request.query_params.multi_items()
    ):  # PostgreSQL cannot take it; refused before it reaches the database
        raise BadQuery("the URL holds a NUL character")
    archive = request.app.state.archive
    source = client_address(request)
    request.state.source = source
    secret, from_cookie = credentials(request)
    if secret is None:
        if rule.public:
            request.state.principal = None
            return
        raise Unauthenticated("sign in first: send 'Authorization: Bearer <token>'")
    try:
        principal = sessions.authenticate(archive, secret, source)
    except Unauthenticated:
        if rule.public:
            request.state.principal = None
            return
        raise
    request.state.principal = principal
    if from_cookie and request.method not in _SAFE:
        origin = request.headers.get("origin")
        if origin is not None and origin.rstrip("/") != str(request.base_url).rstrip("/"):
            raise Forbidden("cross-site request refused")
    if rule.perm is not None:
        principal.require(rule.perm)


#: Largest request head (all header lines) accepted, in bytes; nginx's default is 32 KiB.
MAX_HEADER_BYTES = 32 * 1024


class HeaderLimitMiddleware:
    """Refuses requests whose headers together exceed ``MAX_HEADER_BYTES`` (431)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            size = sum(len(k) + len(v) + 4 for k, v in scope.get("headers", ()))
            if size > MAX_HEADER_BYTES:
                body = (
                    b'{"type":"about:blank","title":"Request header fields too large",'
                    b'"status":431,"detail":"the request headers exceed '
                    + str(MAX_HEADER_BYTES).encode()
                    + b' bytes"}'
                )
                await send({"type": "http.response.start", "status": 431, "headers": [
                    (b"content-type", b"application/problem+json"),
                    (b"content-length", str(len(body)).encode()),
                ]})  # fmt: skip
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)


class AuditMiddleware:
    """Records each ruled request (who, action, study, from where, result) after it is answered."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = {"code": 500}

        async def watch(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, watch)
        finally:
            self._record(scope, status["code"])

    @staticmethod
    def _record(scope: Scope, code: int) -> None:
        state: dict[str, Any] = scope.get("state", {})
        rule: Rule | None = state.get("rule")
        app = scope.get("app")
        if rule is None or not rule.audit or app is None:
            return
        principal: Principal | None = state.get("principal")
        result = (
            audit.SUCCESS if code < 400
            else audit.DENIED if code in (401, 403)
            else audit.FAILED
        )  # fmt: skip
        if rule.self_audited and result == audit.SUCCESS:
            return
        params = scope.get("path_params", {})
        detail: dict[str, Any] = {"status": code, "method": scope.get("method", "")}
        detail.update(state.get("audit_detail", {}))  # what the handler adds (a reason…)
        query = scope.get("query_string", b"")
        if query and rule.action == "study.search":
            detail["keys"] = sorted({k.split("=")[0] for k in query.decode("latin-1").split("&")})
        audit.record(
            app.state.archive, principal, rule.action, result,
            study_uid=str(params.get("study", "")), target=scope.get("path", "")[:255],
            source=state.get("source", ""), detail=detail, fold=rule.fold and result == "success",
            flagged=rule.flagged,
        )  # fmt: skip
