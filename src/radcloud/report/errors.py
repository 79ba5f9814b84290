"""Report errors: refinements of :mod:`radcloud.errors` (same HTTP problem mapping)."""

from __future__ import annotations

from radcloud.errors import Conflict


class ReportLocked(Conflict):
    """Another person is editing the report (their lock has not expired)."""

    http_status = 423
    title = "Report is being edited by someone else"


class WrongState(Conflict):
    """The action does not fit the report's state (edit a signed report, sign a draft twice...)."""

    title = "Not possible in the report's current state"


class StaleVersion(Conflict):
    """The edit was based on an older version than the latest (someone saved in between)."""

    title = "The report changed since it was loaded"
