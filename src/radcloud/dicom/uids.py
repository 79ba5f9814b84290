"""UID syntax checks and generation (PS3.5 §9.1)."""

from __future__ import annotations

import re
import uuid

_UID_RE = re.compile(r"^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*$")


def is_valid_uid(value: object) -> bool:
    """True for a syntactically valid UID: ≤ 64 chars, digits and dots, no leading zeros."""
    return isinstance(value, str) and 0 < len(value) <= 64 and bool(_UID_RE.match(value))


def new_uid() -> str:
    """A new UID under the UUID-derived root 2.25 (PS3.5 §B.2), unique without registration."""
    return f"2.25.{uuid.uuid4().int}"
