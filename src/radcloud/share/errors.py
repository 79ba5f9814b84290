"""Errors of share links, on top of :mod:`radcloud.errors`.

::

    RadcloudError
    ├── NotFound        (404)  unknown link, study not visible (all unknown tokens alike)
    ├── ShareGone       (410)  the link expired, was revoked or has no views left
    ├── ShareLocked     (423)  too many wrong identity-check answers
    ├── Unauthenticated (401)  the identity check was not passed (or its session ended)
    └── TooManyRequests (429)  too many failed opens from one address
"""

from __future__ import annotations

from radcloud.errors import RadcloudError


class ShareGone(RadcloudError):
    """The link existed but no longer opens: expired, revoked, or out of views."""

    http_status, dimse_status, failure_reason = 410, 0xC000, 0xC000
    title = "Link no longer valid"


class ShareLocked(RadcloudError):
    """The identity check failed too often; the link stays closed."""

    http_status, dimse_status, failure_reason = 423, 0xC000, 0xC000
    title = "Link locked"
