"""Shared request dependencies."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from radcloud.archive.service import Archive


def get_archive(request: Request) -> Archive:
    archive: Archive = request.app.state.archive
    return archive


ArchiveDep = Annotated[Archive, Depends(get_archive)]


def dicomweb_base(request: Request) -> str:
    """Absolute base URL of the DICOMweb service, for RetrieveURL values."""
    return str(request.base_url).rstrip("/") + "/dicom-web"


BaseUrlDep = Annotated[str, Depends(dicomweb_base)]
