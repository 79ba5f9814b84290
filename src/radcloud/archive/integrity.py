"""Integrity check: every index row has its blob with the recorded SHA-256, every blob a row.

Run by ``radcloud verify`` (and usable by a scheduled job).  Read-only: it
reports, it never repairs; ``Archive.reconcile`` is what removes orphans.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import func, select

from radcloud.archive.service import Archive
from radcloud.errors import IntegrityError, NotFound
from radcloud.store.models import Instance, Patient, Series, Study, Thumbnail


@dataclass(frozen=True)
class Problem:
    kind: str  # "corrupt" | "missing" | "orphan"
    blob_key: str
    sop_uid: str = ""
    detail: str = ""


@dataclass
class IntegrityReport:
    instances: int = 0
    blobs_checked: int = 0
    problems: list[Problem] = field(default_factory=list)

    def count(self, kind: str) -> int:
        return sum(1 for p in self.problems if p.kind == kind)

    @property
    def ok(self) -> bool:
        return not self.problems


def instance_count(archive: Archive) -> int:
    with archive.read() as conn:
        return int(conn.scalar(select(func.count(Instance.id))) or 0)


def _sha256(archive: Archive, key: str) -> str:
    h = hashlib.sha256()
    with archive.storage.open(key) as fh:
        while chunk := fh.read(1024 * 1024):
            h.update(chunk)
    return h.hexdigest()


def verify(archive: Archive, progress: Callable[[int], None] | None = None) -> IntegrityReport:
    """Re-hash every instance blob and match index rows and blobs both ways.

    ``progress(n)`` is called after each instance.  Blobs written after the
    listing started (a live archive) are not reported as orphans.
    """
    report = IntegrityReport()
    stored_before = set(archive.storage.keys())
    stmt = select(Instance.sop_uid, Instance.blob_key, Instance.sha256, Instance.envelope_key)
    with archive.read() as conn:
        rows = conn.execute(stmt.order_by(Instance.id)).all()
        known = {k for k in conn.scalars(select(Thumbnail.blob_key))}
    for i, row in enumerate(rows, 1):
        known.add(row.blob_key)
        _check_blob(archive, report, row.sop_uid, row.blob_key, row.sha256)
        if row.envelope_key:
            known.add(row.envelope_key)
            if row.envelope_key not in stored_before:
                detail = "envelope blob (received file minus pixel data) is missing"
                report.problems.append(Problem("missing", row.envelope_key, row.sop_uid, detail))
        if progress:
            progress(i)
    report.instances = len(rows)
    for key in sorted(stored_before - known):
        report.problems.append(Problem("orphan", key, "", "blob has no index row"))
    return report


def _check_blob(
    archive: Archive, report: IntegrityReport, sop_uid: str, key: str, sha: str
) -> None:
    try:
        actual = _sha256(archive, key)
    except (NotFound, FileNotFoundError):
        report.problems.append(Problem("missing", key, sop_uid, "blob is missing from storage"))
        return
    except IntegrityError as exc:  # an encrypted blob that fails authentication
        report.blobs_checked += 1
        report.problems.append(Problem("corrupt", key, sop_uid, exc.detail))
        return
    report.blobs_checked += 1
    if actual != sha:
        detail = f"SHA-256 is {actual[:12]}…, index says {sha[:12]}…"
        report.problems.append(Problem("corrupt", key, sop_uid, detail))


def counts(archive: Archive) -> tuple[int, int, int, int]:
    """Patients, studies, series and instances in the index."""
    with archive.read() as conn:
        return tuple(  # type: ignore[return-value]
            int(conn.scalar(select(func.count()).select_from(t)) or 0)
            for t in (Patient, Study, Series, Instance)
        )
