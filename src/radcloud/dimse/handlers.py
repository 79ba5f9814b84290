"""DIMSE event handlers for C-ECHO, C-STORE and C-FIND: translate, call a service, answer.

Each handler turns a :mod:`radcloud.errors` error into its ``dimse_status``
and anything unexpected into 0xC211 (store) / 0xC311 (find), logging the
calling AE title and the SOP Instance UID; none of them lets an exception
escape to pynetdicom, so one bad object never ends the association.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydicom.dataset import Dataset
from pynetdicom.events import Event

from radcloud.archive import ingest, query
from radcloud.archive.query import UNIQUE_KEY, Level, tag_key
from radcloud.archive.service import Archive
from radcloud.dimse.identifiers import Request, parse_identifier, response
from radcloud.errors import RadcloudError

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


def handle_echo(event: Event) -> int:
    return 0x0000


def handle_store(event: Event, ctx: ScpContext) -> int | Dataset:
    """Hand the received data set (already spooled to disk) to the one ingest path."""
    sop_uid = str(getattr(event.request, "AffectedSOPInstanceUID", "") or "")
    try:
        path = _received_file(event, ctx.archive)
        ingest.store(ctx.archive, path, source=f"dimse:{peer(event)}")
    except RadcloudError as exc:
        log.warning(
            "C-STORE from %s refused, SOP Instance %s: %s (0x%04X)",
            peer(event), sop_uid, exc.detail, exc.dimse_status,
        )  # fmt: skip
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


def _pages(archive: Archive, req: Request) -> Iterator[query.SearchResult]:
    """The matches, a page at a time, so a huge result never sits in memory whole."""
    offset = 0
    while True:
        q = query.Query(req.level, req.filters, limit=FIND_PAGE, offset=offset)
        result = query.search(archive, q)
        yield result
        if len(result.items) < FIND_PAGE:
            return
        offset += FIND_PAGE


def handle_find(event: Event, ctx: ScpContext) -> Iterator[tuple[int, Dataset | None]]:
    """C-FIND (Patient Root and Study Root): one 0xFF00 pending response per match."""
    try:
        req = parse_identifier(event.identifier)
        pages = _pages(ctx.archive, req)
        first = next(pages)
    except RadcloudError as exc:
        log.warning(
            "C-FIND from %s refused: %s (0x%04X)", peer(event), exc.detail, exc.dimse_status
        )
        yield exc.dimse_status, None
        return
    except Exception:
        log.exception("C-FIND from %s failed", peer(event))
        yield FIND_UNEXPECTED, None
        return
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
        (evt.EVT_C_ECHO, handle_echo),
        (evt.EVT_C_STORE, handle_store, [ctx]),
        (evt.EVT_C_FIND, handle_find, [ctx]),
        (evt.EVT_C_MOVE, retrieve.handle_move, [ctx]),
        (evt.EVT_C_GET, retrieve.handle_get, [ctx]),
    ]
