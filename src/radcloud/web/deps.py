"""Shared request dependencies."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from radcloud.archive.service import Archive
from radcloud.auth.access import Principal


def get_archive(request: Request) -> Archive:
    archive: Archive = request.app.state.archive
    return archive


ArchiveDep = Annotated[Archive, Depends(get_archive)]


def get_principal(request: Request) -> Principal:
    """The caller, as authenticated by :func:`radcloud.web.security.enforce`."""
    principal: Principal = request.state.principal
    return principal


Who = Annotated[Principal, Depends(get_principal)]


def dicomweb_base(request: Request) -> str:
    """Absolute base URL of the DICOMweb service, for RetrieveURL values."""
    return str(request.base_url).rstrip("/") + "/dicom-web"


BaseUrlDep = Annotated[str, Depends(dicomweb_base)]
