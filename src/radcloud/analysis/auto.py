"""Series-complete detection: run the automatic modules on series that went quiet.

A series is complete when no instance arrived for ``analysis_quiet_seconds``
(``Series.updated_at`` is touched by every stored instance).  The worker's
periodic step :func:`scan` looks at series that went quiet since its last look
(at start: within ``analysis_lookback_hours``) and queues the modules whose
rules take them.  Jobs are keyed by module, series and instance count, so a
series is analysed once, and again only if instances are added later; several
nodes scanning at once add no duplicates.  Nothing in ingest had to change.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from sqlalchemy import select

from radcloud.analysis import registry, service
from radcloud.archive.service import Archive
from radcloud.auth.access import system
from radcloud.jobs import queue
from radcloud.store.db import as_utc
from radcloud.store.models import Series, Study

log = logging.getLogger(__name__)
AUTO = system("analysis-auto")


def scan(archive: Archive) -> list[int]:
    """Queue the automatic modules for series complete since the last scan; returns job ids."""
    s = archive.settings
    if not s.analysis_auto:
        return []
    modalities = sorted({m for mod in registry.modules() if mod.auto
                         for m in mod.accepts.modalities})  # fmt: skip
    t = queue.now()
    cutoff = t - timedelta(seconds=float(s.analysis_quiet_seconds))
    since = archive.caches.get("analysis.scanned_until")
    if since is None:
        since = t - timedelta(hours=float(s.analysis_lookback_hours))
    stmt = (
        select(Study.study_uid, Series.series_uid, Series.updated_at)
        .join(Study, Series.study_fk == Study.id)
        .where(Series.updated_at > since, Series.updated_at <= cutoff)
        .order_by(Series.updated_at)
    )
    if modalities:
        stmt = stmt.where(Series.modality.in_(modalities))
    with archive.read() as conn:
        rows = conn.execute(stmt).all()
    ids: list[int] = []
    for study_uid, series_uid, _updated in rows:
        try:
            ids += service.request_run(archive, AUTO, study_uid, series_uid, auto=True)
        except Exception:
            log.exception("queuing analysis of series %s failed", series_uid)
    archive.caches["analysis.scanned_until"] = as_utc(cutoff)
    return ids
