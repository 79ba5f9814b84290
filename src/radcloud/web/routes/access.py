"""Who sees a study: grants (consultation, care team, explicit), care-team restriction,
break the glass."""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from radcloud.auth import studies
from radcloud.web.deps import ArchiveDep, Who

router = APIRouter()


@router.get("/studies/{study}/access")
def study_access(study: str, archive: ArchiveDep, who: Who) -> dict[str, Any]:
    return asdict(studies.access(archive, who, study))


class GrantBody(BaseModel):
    grantee_kind: str = Field(description="user, group or institution")
    grantee_id: int
    reason: str = "explicit"
    note: str = Field("", max_length=255)
    expires_at: datetime | None = None


@router.post("/studies/{study}/grants", status_code=201)
def grant(study: str, body: GrantBody, archive: ArchiveDep, who: Who) -> dict[str, int]:
    gid = studies.grant(
        archive, who, study, body.grantee_kind, body.grantee_id, reason=body.reason,
        note=body.note, expires_at=body.expires_at,
    )  # fmt: skip
    return {"id": gid}


@router.delete("/studies/{study}/grants/{grant_id}", status_code=204)
def revoke(study: str, grant_id: int, archive: ArchiveDep, who: Who) -> None:
    studies.revoke_grant(archive, who, study, grant_id)


class RestrictionBody(BaseModel):
    team_id: int | None = Field(description="A care team's group id; null lifts it")


@router.put("/studies/{study}/restriction", status_code=204)
def restrict(study: str, body: RestrictionBody, archive: ArchiveDep, who: Who) -> None:
    studies.restrict(archive, who, study, body.team_id)


class BreakGlassBody(BaseModel):
    reason: str = Field(min_length=1, max_length=255)


@router.post("/studies/{study}/break-glass")
def break_glass(
    study: str, body: BreakGlassBody, request: Request, archive: ArchiveDep, who: Who
) -> dict[str, Any]:
    """Emergency access for a few hours; audited and flagged for review."""
    request.state.audit_detail = {"reason": body.reason}  # a refused attempt is audited with it
    until = studies.break_glass(archive, who, study, body.reason)
    return {"study": study, "until": until.isoformat()}
