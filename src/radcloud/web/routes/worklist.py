"""The viewer's study list: ``GET /api/worklist`` (see :mod:`radcloud.archive.worklist`)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from fastapi import APIRouter

from radcloud.archive import worklist
from radcloud.web.deps import ArchiveDep, Who

router = APIRouter()


@router.get("/worklist")
def study_list(
    archive: ArchiveDep, who: Who, patient: str = "", patient_id: str = "", sex: str = "",
    age_min: int | None = None, age_max: int | None = None, modality: str = "",
    body_part: str = "", institution: int | None = None, date_from: str = "", date_to: str = "",
    accession: str = "", status: str = "", sort: str = "-date", limit: int = 50, offset: int = 0,
) -> dict[str, Any]:  # fmt: skip
    """Studies the caller may see, filtered, sorted and paged; ``total`` counts all matches."""
    filters = worklist.Filters(
        patient=patient, patient_id=patient_id, sex=sex, age_min=age_min, age_max=age_max,
        modality=modality, body_part=body_part, institution=institution, date_from=date_from,
        date_to=date_to, accession=accession, status=status, sort=sort, limit=limit, offset=offset,
    )  # fmt: skip
    page = worklist.studies(archive, filters, principal=who)
    return {**asdict(page), "limit": limit, "offset": offset}
