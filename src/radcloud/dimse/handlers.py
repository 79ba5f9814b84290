"""DIMSE event handlers for C-ECHO, C-STORE and C-FIND: translate, call a service, answer.

Each handler turns a :mod:`radcloud.errors` error into its ``dimse_status``
and anything unexpected into 0xC211 (store) / 0xC311 (find), logging the
calling AE title and the SOP Instance UID; none of them lets an exception
escape to pynetdicom, so one bad object never ends the association.
"""

from __future__ import annotations

import itertools
import logging
import weakref
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydicom.dataset import Dataset
from pynetdicom.events import Event

from radcloud.archive import ingest, query
from radcloud.archive.query import UNIQUE_KEY, Level, tag_key
from radcloud.archive.service import Archive
from radcloud.auth import accounts, audit
from radcloud.auth.access import Principal
from radcloud.auth.permissions import Perm
from radcloud.dimse.identifiers import Request, parse_identifier, response
from radcloud.errors import Forbidden, RadcloudError

log = logging.getLogger(__name__)

#: C-STORE: unexpected failure ("Cannot understand" family, pynetdicom's default).
STORE_UNEXPECTED = 0xC211
#: C-FIND: unable to process.
FIND_UNEXPECTED = 0xC311
#: Matches fetched from the index per query.
FIND_PAGE = 500


@dataclass
class ScpContext:
    """What the handlers need: the archive and our AE title."""

    archive: Archive
    ae_title: str


def peer(event: Event) -> str:
    """``<calling AE>@<ip>`` of the association an event belongs to."""
    requestor = event.assoc.requestor
    return f"{str(requestor.ae_title).strip()}@{requestor.address}"


def caller(event: Event, ctx: ScpContext) -> Principal:
    """The calling AE as a principal (its institution, its store/query rights), per association.

    Raises :class:`radcloud.errors.Forbidden` when no institution accepts the AE.
    """
    assoc = event.assoc
    found = _CALLERS.get(assoc)
    if found is None:
        requestor = assoc.requestor
        found = _CALLERS[assoc] = accounts.principal_for_ae(
            ctx.archive, str(requestor.ae_title), source=str(requestor.address)
        )
    return found


_CALLERS: weakref.WeakKeyDictionary[Any, Principal] = weakref.WeakKeyDictionary()


def handle_rejected(event: Event, ctx: ScpContext) -> None:
    """An association we refused (unknown calling AE): into the audit trail."""
    requestor = event.assoc.requestor
    who = Principal(kind="ae", name=str(requestor.ae_title).strip(), institution_id=0)
    audit.record(
        ctx.archive, who, "dimse.associate", audit.DENIED, source=str(requestor.address),
        detail={"reason": "calling AE title not recognized"},
    )  # fmt: skip


def handle_echo(event: Event) -> int:
    return 0x0000


def handle_store(event: Event, ctx: ScpContext) -> int | Dataset:
    """Hand the received data set (already spooled to disk) to the one ingest path."""
    sop_uid = str(getattr(event.request, "AffectedSOPInstanceUID", "") or "")
    who: Principal | None = None
    try:
        path = _received_file(event, ctx.archive)
        try:
            who = caller(event, ctx)
        except RadcloudError:
            path.unlink(missing_ok=True)  # ingest.store did not take it over
            raise
        result = ingest.store(ctx.archive, path, source=f"dimse:{peer(event)}", principal=who)
        audit.record(ctx.archive, who, "study.store", study_uid=result.study_uid, fold=True)
    except RadcloudError as exc:
        log.warning(
            "C-STORE from %s refused, SOP Instance %s: %s (0x%04X)",
            peer(event), sop_uid, exc.detail, exc.dimse_status,
        )  # fmt: skip
        if exc.dimse_status == Forbidden.dimse_status:
            audit.record(ctx.archive, who, "study.store", audit.DENIED, source=peer(event),
                         detail={"reason": exc.detail[:200]}, fold=True)  # fmt: skip
        return _status(exc.dimse_status, exc.detail)
    except Exception:
        log.exception("C-STORE from %s failed, SOP Instance %s", peer(event), sop_uid)
        return _status(STORE_UNEXPECTED, "unexpected error while storing the instance")
    return 0x0000


def _received_file(event: Event, archive: Archive) -> Path:
    """The spooled Part 10 file of a C-STORE (file meta + the data set bytes as received)."""
    fh = getattr(event.request, "_dataset_file", None)
    if fh is not None:  # chunked receive: close pynetdicom's writer; ingest consumes the file
        fh.close()
        return Path(event.dataset_path)
    spooled, path = ingest.spool(archive)  # data set received in memory
    with spooled:
        spooled.write(event.encoded_dataset())
    return path


def _status(code: int, comment: str) -> Dataset:
    ds = Dataset()
    ds.Status = code
    ds.ErrorComment = comment.encode("ascii", "replace").decode()[:64]
    return ds


def _pages(archive: Archive, req: Request, who: Principal) -> Iterator[query.SearchResult]:
    """The matches ``who`` may see, a page at a time (a huge result never sits in memory)."""
    offset = 0
    while True:
        q = query.Query(req.level, req.filters, limit=FIND_PAGE, offset=offset)
        result = query.search(archive, q, principal=who)
        yield result
        if len(result.items) < FIND_PAGE:
            return
        offset += FIND_PAGE


def handle_find(event: Event, ctx: ScpContext) -> Iterator[tuple[int, Dataset | None]]:
    """C-FIND (Patient Root and Study Root): one 0xFF00 pending response per match."""
    who: Principal | None = None
    try:
        who = caller(event, ctx)
        who.require(Perm.STUDY_READ)
        req = parse_identifier(event.identifier)
        pages = _pages(ctx.archive, req, who)
        first = next(pages)
    except RadcloudError as exc:
        log.warning(
            "C-FIND from %s refused: %s (0x%04X)", peer(event), exc.detail, exc.dimse_status
        )
        denied = exc.dimse_status == Forbidden.dimse_status
        audit.record(ctx.archive, who, "study.search", audit.DENIED if denied else audit.FAILED,
                     source=peer(event), detail={"reason": exc.detail[:200]})  # fmt: skip
        yield exc.dimse_status, None
        return
    except Exception:
        log.exception("C-FIND from %s failed", peer(event))
        yield FIND_UNEXPECTED, None
        return
    audit.record(ctx.archive, who, "study.search", source=peer(event),
                 detail={"level": req.level.value, "keys": sorted(req.filters)})  # fmt: skip
    # 0xFF01: a key could not be matched on, so matches may include non-matches
    pending = 0xFF01 if first.ignored else 0xFF00
    # a row added between two pages can shift the next page by one: skip repeats
    unique = None if req.level is Level.PATIENT else tag_key(UNIQUE_KEY[req.level])
    seen: set[str] = set()
    try:
        for item in itertools.chain(first.items, (i for page in pages for i in page.items)):
            if event.is_cancelled:
                yield 0xFE00, None
                return
            if unique is not None:
                key = str(item.get(unique, {}).get("Value", [""])[0])
                if key in seen:
                    continue
                seen.add(key)
            yield pending, response(req, item, ctx.ae_title)
    except Exception:
        log.exception("C-FIND from %s failed while answering", peer(event))
        yield FIND_UNEXPECTED, None


def bind(ctx: ScpContext) -> list[Any]:
    """pynetdicom ``evt_handlers`` for the listener."""
    from pynetdicom import evt

    from radcloud.dimse import retrieve

    return [
        (evt.EVT_REJECTED, handle_rejected, [ctx]),
        (evt.EVT_C_ECHO, handle_echo),
        (evt.EVT_C_STORE, handle_store, [ctx]),
        (evt.EVT_C_FIND, handle_find, [ctx]),
        (evt.EVT_C_MOVE, retrieve.handle_move, [ctx]),
        (evt.EVT_C_GET, retrieve.handle_get, [ctx]),
    ]
