"""QIDO-RS (PS3.18 §10.6): search studies, series and instances.

Translates query parameters into a :class:`radcloud.archive.query.Query`
and the result into DICOM JSON; matching itself lives in the query engine.
"""

from __future__ import annotations

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response

from radcloud.archive import query
from radcloud.archive.query import Level, Query
from radcloud.auth.access import Principal
from radcloud.errors import BadQuery
from radcloud.web import compress
from radcloud.web.deps import ArchiveDep, BaseUrlDep
from radcloud.web.multipart import negotiate

router = APIRouter()

SERVICE = "radcloud"
_OFFERED = ("application/dicom+json", "application/json")
_CONTROL = {"fuzzymatching", "includefield", "limit", "offset"}
_IGNORED_CONTROL = {"emptyvaluematching", "multiplevaluematching", "charset"}


def parse_params(request: Request, q: Query) -> list[str]:
    """Fill ``q`` from the request's query parameters; returns the keys it cannot match on."""
    unsupported: list[str] = []
    for key, value in request.query_params.multi_items():
        name = key.strip()
        low = name.lower()
        if low in _CONTROL:
            _control(q, low, value)
        elif low in _IGNORED_CONTROL:
            unsupported.append(name)
        elif "." in name:
            for part in name.split("."):
                query.tag_key(part)  # unknown keyword → 400
            unsupported.append(name)
        else:
            query.tag_key(name)  # unknown keyword → 400
            q.filters[name] = value
    return unsupported


def _control(q: Query, name: str, value: str) -> None:
    if name == "fuzzymatching":
        if value.lower() not in ("true", "false"):
            raise BadQuery(f"fuzzymatching must be true or false, not {value!r}")
        q.fuzzy = value.lower() == "true"
    elif name == "includefield":
        for field in (f.strip() for f in value.split(",")):
            if field.lower() == "all":
                q.include_all = True
            elif field:
                query.tag_key(field.split(".")[0])
                q.include.add(field.split(".")[0])
    elif name == "limit":
        q.limit = _count(name, value, minimum=1)
    else:
        q.offset = _count(name, value, minimum=0)


#: Largest limit/offset accepted (the databases' integer range is not a user's business).
_MAX_COUNT = 2**31 - 1


def _count(name: str, value: str, minimum: int) -> int:
    text = value.strip()
    if not (text.isascii() and text.isdigit()) or not minimum <= int(text) <= _MAX_COUNT:
        kind = "a positive" if minimum else "a non-negative"
        raise BadQuery(f"{name} must be {kind} integer up to {_MAX_COUNT}, not {value!r}")
    return int(text)


def _search(request: Request, archive: ArchiveDep, base: str, q: Query) -> Response:
    who: Principal = request.state.principal
    media = negotiate(request.headers.get("accept"), _OFFERED)
    unsupported = parse_params(request, q)
    result = query.search(archive, q, base, principal=who)
    warnings = _warnings(result.remaining, unsupported + result.ignored)
    if not result.items:
        response = Response(status_code=204)
    else:
        response = compress.json_response(request, orjson.dumps(result.items), media)
    for text in warnings:
        response.headers.append("Warning", text)
    return response


def _warnings(remaining: int, unsupported: list[str]) -> list[str]:
    out = []
    if remaining:
        out.append(f"299 {SERVICE}: There are {remaining} additional results that can be requested")
    if unsupported:
        names = ", ".join(dict.fromkeys(unsupported))
        out.append(
            f"299 {SERVICE}: The following attributes were not supported for matching: {names}"
        )
    return out


@router.get("/studies")
def search_studies(request: Request, archive: ArchiveDep, base: BaseUrlDep) -> Response:
    return _search(request, archive, base, Query(Level.STUDY))


@router.get("/studies/{study}/series")
def search_study_series(
    study: str, request: Request, archive: ArchiveDep, base: BaseUrlDep
) -> Response:
    return _search(request, archive, base, Query(Level.SERIES, study_uid=study))


@router.get("/studies/{study}/series/{series}/instances")
def search_series_instances(
    study: str, series: str, request: Request, archive: ArchiveDep, base: BaseUrlDep
) -> Response:
    return _search(request, archive, base, Query(Level.IMAGE, study_uid=study, series_uid=series))


@router.get("/studies/{study}/instances")
def search_study_instances(
    study: str, request: Request, archive: ArchiveDep, base: BaseUrlDep
) -> Response:
    return _search(request, archive, base, Query(Level.IMAGE, study_uid=study, relational=True))


@router.get("/series")
def search_series(request: Request, archive: ArchiveDep, base: BaseUrlDep) -> Response:
    return _search(request, archive, base, Query(Level.SERIES, relational=True))


@router.get("/instances")
def search_instances(request: Request, archive: ArchiveDep, base: BaseUrlDep) -> Response:
    return _search(request, archive, base, Query(Level.IMAGE, relational=True))
