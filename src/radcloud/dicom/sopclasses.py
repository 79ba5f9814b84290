"""Which SOP classes the archive stores."""

from __future__ import annotations

from functools import lru_cache

from pynetdicom import sop_class as _sc


@lru_cache(maxsize=1)
def storage_sop_classes() -> frozenset[str]:
    """Every storage SOP class UID known to pynetdicom (PS3.4 Annex B table B.5-1)."""
    return frozenset(str(uid) for uid in _sc._STORAGE_CLASSES.values())


def is_storage_sop_class(uid: str) -> bool:
    """True when ``uid`` is a storage SOP class we accept."""
    return uid in storage_sop_classes()
