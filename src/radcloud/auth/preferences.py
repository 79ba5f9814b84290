"""Per-user settings kept on the server (viewer layouts, presets, overlay, protocols),
so a doctor finds them on any PC.  A JSON object per user; the client owns its shape."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import delete, insert, select

from radcloud.archive.service import Archive
from radcloud.errors import InvalidRequest, PayloadTooLarge
from radcloud.store.models import UserSettings

MAX_BYTES = 256 * 1024


def get(archive: Archive, user_id: int) -> dict[str, Any]:
    with archive.read() as conn:
        data = conn.scalar(select(UserSettings.data).where(UserSettings.user_fk == user_id))
    return orjson.loads(data) if data else {}


def put(archive: Archive, user_id: int, data: Any) -> dict[str, Any]:
    """Replace the user's settings with ``data`` (a JSON object of at most 256 KiB)."""
    if not isinstance(data, dict):
        raise InvalidRequest("settings are a JSON object")
    text = orjson.dumps(data).decode()
    if len(text) > MAX_BYTES:
        raise PayloadTooLarge(f"settings are limited to {MAX_BYTES // 1024} KiB")
    with archive.write() as conn:  # delete + insert: the same on SQLite and PostgreSQL
        conn.execute(delete(UserSettings).where(UserSettings.user_fk == user_id))
        conn.execute(
            insert(UserSettings),
            dict(user_fk=user_id, data=text, updated_at=datetime.now(UTC)),
        )
    return data


def merge(archive: Archive, user_id: int, changes: Any) -> dict[str, Any]:
    """Set the top-level keys in ``changes`` (``null`` removes one); others stay."""
    if not isinstance(changes, dict):
        raise InvalidRequest("settings changes are a JSON object")
    current = get(archive, user_id)
    for key, value in changes.items():
        if value is None:
            current.pop(key, None)
        else:
            current[key] = value
    return put(archive, user_id, current)
