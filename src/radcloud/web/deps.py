"""Shared request dependencies."""

from __future__ import annotations

from typing import Annotated, Any, TypeVar

from fastapi import Depends, Request
from pydantic import BaseModel, ValidationError

from radcloud.archive.service import Archive
from radcloud.auth.access import Principal
from radcloud.errors import MalformedBody, RadcloudError


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


M = TypeVar("M", bound=BaseModel)


def invalid(exc: ValidationError, error: type[RadcloudError] = MalformedBody) -> RadcloudError:
    """pydantic's complaints about a request, as one problem of kind ``error``."""
    return error("; ".join(str(e.get("msg")) for e in exc.errors()))


def validated(model: type[M], body: Any, error: type[RadcloudError] = MalformedBody) -> M:
    """``body`` checked against ``model`` by the route itself.

    Routes that must look a study up before they judge the body (so a study the
    caller may not see answers 404 whatever was sent) take the body as optional
    JSON and validate it here once access is settled.
    """
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        raise invalid(exc, error) from None
