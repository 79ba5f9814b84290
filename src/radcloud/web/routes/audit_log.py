"""The audit trail for auditors: search, chain check, export (JSON lines or ATNA syslog)."""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from typing import Any

import orjson
from fastapi import APIRouter
from fastapi.responses import Response

from radcloud.auth import audit
from radcloud.errors import BadQuery
from radcloud.web.deps import ArchiveDep, Who

router = APIRouter()


@router.get("/audit")
def search(
    archive: ArchiveDep, who: Who, actor: str | None = None, study: str | None = None,
    action: str | None = None, result: str | None = None, since: datetime | None = None,
    until: datetime | None = None, flagged: bool | None = None, limit: int = 100, offset: int = 0,
) -> list[dict[str, Any]]:  # fmt: skip
    """Events of the auditor's institutions (all of them for a platform auditor), newest first."""
    if not 1 <= limit <= 1000 or offset < 0:
        raise BadQuery("limit is 1..1000 and offset not negative")
    return audit.search(
        archive, who, actor=actor, study_uid=study, action=action, result=result, since=since,
        until=until, flagged=flagged, limit=limit, offset=offset,
    )  # fmt: skip


@router.get("/audit/verify")
def verify(archive: ArchiveDep) -> dict[str, Any]:
    """Walk the hash chain; ``ok`` false names the rows that were changed or removed."""
    return asdict(audit.verify(archive))


@router.get("/audit/export")
def export(
    archive: ArchiveDep, who: Who, format: str = "jsonl", since: datetime | None = None,
    limit: int = 10000,
) -> Response:  # fmt: skip
    if format not in ("jsonl", "atna"):
        raise BadQuery("format is jsonl or atna")
    events = audit.search(archive, who, since=since, limit=min(limit, 1000))
    events.reverse()
    if format == "atna":
        body = "".join(line + "\n" for line in audit.syslog_lines(events))
        return Response(body, media_type="text/plain; charset=utf-8")
    return Response(
        b"".join(orjson.dumps(e) + b"\n" for e in events), media_type="application/x-ndjson"
    )
