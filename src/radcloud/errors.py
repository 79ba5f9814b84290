"""Domain errors, each carrying its HTTP status, DIMSE status and STOW failure reason.

Every interface maps errors from this one table: the FastAPI handler answers
``application/problem+json`` with ``http_status``; DIMSE handlers answer
``dimse_status``; STOW-RS puts ``failure_reason`` in FailedSOPSequence.
An error about one object carries the SOP Class / Instance UIDs that could
be read (``sop_class_uid``, ``sop_uid``; '' when unknown) for such reports.

::

    RadcloudError
    ├── InvalidDicom            (400, 0xC210)  cannot parse the data set
    │   ├── MissingAttribute    (400, 0xA900)  a required UID is absent/invalid
    │   └── TruncatedDicom      (400, 0xC210)
    ├── UnsupportedSOPClass     (409, 0x0122)
    ├── UnsupportedTransferSyntax (406, 0xC122)
    ├── StudyMismatch           (409, 0xA900)  STOW to /studies/{uid} with another study
    ├── DuplicateInstance       (409, 0x0111)  only when the policy refuses
    ├── NotFound                (404, 0xC000)
    ├── BadQuery                (400, 0xC000)
    ├── PayloadTooLarge         (413, 0xA700)
    ├── MalformedBody           (400, 0xC000)  request body is not what its Content-Type says
    ├── UnsupportedMediaType    (415, 0xC000)
    ├── NotAcceptable           (406, 0xC000)  no acceptable response media type
    ├── UnknownDestination      (400, 0xA801)
    ├── InvalidNode             (400, 0xC000)  a remote AE definition that cannot be used
    ├── IntegrityError          (500, 0xA700)  stored blob fails its checksum
    ├── KeyUnavailable          (500, 0xA700)  encryption key missing, wrong or unreadable
    └── StorageFailure          (503, 0xA700)  out of resources / write failed
"""

from __future__ import annotations


class RadcloudError(Exception):
    """Base of all domain errors."""

    http_status: int = 500
    dimse_status: int = 0xC000
    failure_reason: int = 0x0110  # Processing failure
    title: str = "Internal error"

    def __init__(self, detail: str, *, sop_class_uid: str = "", sop_uid: str = "") -> None:
        super().__init__(detail)
        self.detail = detail
        self.sop_class_uid = sop_class_uid
        self.sop_uid = sop_uid


class InvalidDicom(RadcloudError):
    http_status, dimse_status, failure_reason = 400, 0xC210, 0xC000
    title = "Not a valid DICOM object"


class MissingAttribute(InvalidDicom):
    http_status, dimse_status, failure_reason = 400, 0xA900, 0xA900
    title = "Required DICOM attribute missing or invalid"


class TruncatedDicom(InvalidDicom):
    title = "Truncated DICOM object"


class UnsupportedSOPClass(RadcloudError):
    http_status, dimse_status, failure_reason = 409, 0x0122, 0x0122
    title = "SOP class not supported"


class UnsupportedTransferSyntax(RadcloudError):
    http_status, dimse_status, failure_reason = 406, 0xC122, 0xC122
    title = "Transfer syntax not supported"


class StudyMismatch(RadcloudError):
    http_status, dimse_status, failure_reason = 409, 0xA900, 0xA900
    title = "Study Instance UID does not match the request"


class DuplicateInstance(RadcloudError):
    http_status, dimse_status, failure_reason = 409, 0x0111, 0x0111
    title = "Instance already stored"


class NotFound(RadcloudError):
    http_status, dimse_status, failure_reason = 404, 0xC000, 0xC000
    title = "Not found"


class BadQuery(RadcloudError):
    http_status, dimse_status, failure_reason = 400, 0xC000, 0xC000
    title = "Bad query"


class PayloadTooLarge(RadcloudError):
    http_status, dimse_status, failure_reason = 413, 0xA700, 0xA700
    title = "Payload too large"


class MalformedBody(RadcloudError):
    http_status, dimse_status, failure_reason = 400, 0xC000, 0xC000
    title = "Malformed request body"


class UnsupportedMediaType(RadcloudError):
    http_status, dimse_status, failure_reason = 415, 0xC000, 0xC000
    title = "Unsupported media type"


class NotAcceptable(RadcloudError):
    http_status, dimse_status, failure_reason = 406, 0xC000, 0xC000
    title = "Not acceptable"


class UnknownDestination(RadcloudError):
    http_status, dimse_status, failure_reason = 400, 0xA801, 0xA801
    title = "Move destination unknown"


class InvalidNode(RadcloudError):
    """A remote AE definition that cannot be used (bad title, host or port)."""

    http_status, dimse_status, failure_reason = 400, 0xC000, 0x0110
    title = "Invalid DICOM node"


class IntegrityError(RadcloudError):
    http_status, dimse_status, failure_reason = 500, 0xA700, 0x0110
    title = "Stored object failed its integrity check"


class KeyUnavailable(RadcloudError):
    """An encryption key needed to read or write a blob is missing, wrong or unreadable."""

    http_status, dimse_status, failure_reason = 500, 0xA700, 0x0110
    title = "Encryption key unavailable"


class StorageFailure(RadcloudError):
    http_status, dimse_status, failure_reason = 503, 0xA700, 0xA700
    title = "Storage failure"


class Unauthenticated(RadcloudError):
    """No credentials, or credentials that are wrong, expired or revoked."""

    http_status, dimse_status, failure_reason = 401, 0x0124, 0x0124
    title = "Authentication required"


class Forbidden(RadcloudError):
    """Authenticated, but this principal may not do this (0x0124: Refused, not authorized)."""

    http_status, dimse_status, failure_reason = 403, 0x0124, 0x0124
    title = "Forbidden"


class Conflict(RadcloudError):
    """The request clashes with what exists (a taken user name, an approved institution…)."""

    http_status, dimse_status, failure_reason = 409, 0xC000, 0xC000
    title = "Conflict"


class InvalidRequest(RadcloudError):
    """A well-formed request whose values are not acceptable (a weak password, a bad role)."""

    http_status, dimse_status, failure_reason = 422, 0xC000, 0xC000
    title = "Invalid request"


class TooManyRequests(RadcloudError):
    """Rate limit hit (login attempts from one address)."""

    http_status, dimse_status, failure_reason = 429, 0xA700, 0xA700
    title = "Too many requests"


class UpstreamUnavailable(RadcloudError):
    """A service radcloud depends on (the SSO identity provider) cannot be reached or failed."""

    http_status, dimse_status, failure_reason = 503, 0xA700, 0xA700
    title = "Upstream service unavailable"
