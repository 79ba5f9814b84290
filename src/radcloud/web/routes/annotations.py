"""A user's measurements and key images in a study (kept as DICOM GSPS / KOS).

``GET`` gives the caller's latest saved state, ``POST`` saves a new one (a new
presentation state instance; earlier ones stay as history).  ``key-images``
lists what every author flagged in the study's Key Object Selection documents.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from fastapi import APIRouter, Body

from radcloud.archive import annotations as marks
from radcloud.web.deps import ArchiveDep, Who

router = APIRouter()


@router.get("/studies/{study}/annotations")
def get_annotations(study: str, archive: ArchiveDep, who: Who) -> dict[str, Any]:
    """The caller's latest measurements and key images (empty lists when never saved)."""
    return marks.load(archive, study, principal=who)


@router.post(
    "/studies/{study}/annotations",
    status_code=201,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": marks.State.model_json_schema()}},
        }
    },
)
def save_annotations(
    study: str, archive: ArchiveDep, who: Who, body: Any = Body(None)
) -> dict[str, Any]:
    """Save the caller's measurements (GSPS) and key images (KOS) into the study.

    The body is checked after access: a study the caller may not see is 404 whatever is sent.
    """
    return asdict(marks.save(archive, study, body, principal=who))


@router.get("/studies/{study}/key-images")
def get_key_images(study: str, archive: ArchiveDep, who: Who) -> list[dict[str, Any]]:
    """Every key image flagged in the study, by any author or system."""
    return marks.key_images(archive, study, principal=who)
