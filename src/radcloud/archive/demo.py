"""The demo study: a synthetic chest CT a new user sees at once (`serve --demo`, `demo`)."""

from __future__ import annotations

import threading
from collections.abc import Callable

from radcloud.archive import ingest
from radcloud.archive.query import Level, Query, search
from radcloud.archive.service import Archive
from radcloud.auth.access import SYSTEM

#: Slices of the demo chest CT (512×512, ~60 MB).
DEMO_SLICES = 120
DEMO_PATIENT_ID = "DEMO0001"


def is_empty(archive: Archive) -> bool:
    return not search(archive, Query(Level.STUDY, limit=1), principal=SYSTEM).items


def has_demo(archive: Archive) -> bool:
    q = Query(Level.STUDY, {"PatientID": DEMO_PATIENT_ID}, limit=1)
    return bool(search(archive, q, principal=SYSTEM).items)


def load_demo(
    archive: Archive,
    n_slices: int = DEMO_SLICES,
    progress: Callable[[int], None] | None = None,
    stop: threading.Event | None = None,
) -> int:
    """Ingest the synthetic chest CT through the one ingest path; returns slices stored."""
    from radcloud.testing.phantom import chest_ct_series

    n = 0
    for ds in chest_ct_series(n_slices, patient_id=DEMO_PATIENT_ID):
        if stop is not None and stop.is_set():
            break
        ingest.store_dataset(archive, ds, source="demo")
        n += 1
        if progress:
            progress(n)
    return n
