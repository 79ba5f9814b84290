"""C-MOVE and C-GET SCP: resolve the identifier, then one C-STORE sub-operation per instance.

pynetdicom runs the sub-operations and the pending responses (Remaining /
Completed / Failed / Warning counts); these handlers resolve what to send
and hand each instance over as a :class:`StoredInstance`, whose data set is
sent as the bytes the archive received whenever the peer accepted the
stored transfer syntax.  Otherwise uncompressed data is converted between
implicit/explicit VR, and compressed pixel data is decoded to Explicit VR
Little Endian with pydicom.
"""

from __future__ import annotations

import io
import logging
import struct
from collections import Counter
from collections.abc import Iterator
from typing import Any

from pydicom import dcmread
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import UID
from pynetdicom import association as _association
from pynetdicom import evt
from pynetdicom.association import Association
from pynetdicom.events import Event
from pynetdicom.presentation import PresentationContext, build_context

from radcloud.archive import nodes, retrieve
from radcloud.archive.retrieve import InstanceRef
from radcloud.archive.service import Archive
from radcloud.auth import audit
from radcloud.auth.permissions import Perm
from radcloud.dimse.handlers import ScpContext, caller, peer
from radcloud.dimse.identifiers import parse_identifier
from radcloud.dimse.net import CONVERTIBLE, UNCOMPRESSED, settle_reactor
from radcloud.errors import Forbidden, NotFound, RadcloudError, UnknownDestination

log = logging.getLogger(__name__)

VERIFICATION = "1.2.840.10008.1.1"
#: Presentation contexts one association may propose (PS3.8 §9.3.2.2: odd IDs 1-255).
MAX_CONTEXTS = 128


# ------------------------------------------------------------------ what to send


class StoredInstance(Dataset):
    """An instance to send, standing for a stored Part 10 file.

    pynetdicom needs a Dataset; this one carries the UIDs it picks the
    presentation context by, and the file's bytes, which :func:`_encode` sends
    unchanged when the context's transfer syntax is the file's.
    """

    def __init__(self, ref: InstanceRef, data: bytes, transfer_syntax: str) -> None:
        super().__init__()
        self.SOPClassUID = ref.sop_class_uid
        self.SOPInstanceUID = ref.sop_uid
        ts = UID(transfer_syntax)
        self.file_meta = FileMetaDataset()
        self.file_meta.TransferSyntaxUID = ts
        self.set_original_encoding(ts.is_implicit_VR, ts.is_little_endian, "iso8859")
        self._stored = data
        self._offset = dataset_offset(data)

    def encoded(self, implicit: bool, little: bool, deflated: bool) -> bytes | None:
        """The file's data set bytes if they are in the requested encoding, else None."""
        ts = UID(str(self.file_meta.TransferSyntaxUID))
        if (ts.is_implicit_VR, ts.is_little_endian, ts.is_deflated) == (implicit, little, deflated):
            return self._stored[self._offset :]
        return None

    def decoded(self) -> Dataset:
        """The full data set, parsed from the file."""
        return dcmread(io.BytesIO(self._stored))


def dataset_offset(data: bytes) -> int:
    """Where the data set starts in a Part 10 file (after preamble and file meta)."""
    if data[128:132] != b"DICM":
        return 0
    pos = 132
    while pos + 8 <= len(data):
        group, _elem = struct.unpack_from("<HH", data, pos)
        if group != 0x0002:
            break
        vr = data[pos + 4 : pos + 6]
        if vr in (b"OB", b"OW", b"OF", b"SQ", b"UT", b"UN", b"UC", b"UR", b"OD", b"OL", b"OV"):
            pos += 12 + struct.unpack_from("<I", data, pos + 8)[0]
        else:
            pos += 8 + struct.unpack_from("<H", data, pos + 6)[0]
    return pos


_orig_encode = _association.encode


def _encode(ds: Dataset, implicit: bool, little: bool, deflated: bool = False) -> bytes | None:
    """pynetdicom's data set encoder, sending a :class:`StoredInstance` byte for byte."""
    if isinstance(ds, StoredInstance):
        raw = ds.encoded(implicit, little, deflated)
        if raw is not None:
            return raw
        ds = ds.decoded()
    return _orig_encode(ds, implicit, little, deflated)


_association.encode = _encode  # type: ignore[assignment]


def prepare(archive: Archive, ref: InstanceRef, accepted: set[str]) -> Dataset:
    """What to yield for ``ref`` given the transfer syntaxes the peer accepted for its class.

    In order: the file as received; the copy compressed at rest (no decoding);
    pixel data decoded to Explicit VR Little Endian.  A failed instance comes
    back as a Dataset with only its SOP Instance UID: pynetdicom then counts
    the sub-operation as failed and lists the UID.
    """
    received, at_rest = ref.received_ts, ref.transfer_syntax_uid
    try:
        if received in accepted or (received in CONVERTIBLE and accepted & CONVERTIBLE):
            return StoredInstance(ref, retrieve.read_original(archive, ref), received)
        if at_rest in accepted:
            return StoredInstance(ref, retrieve.read_verified(archive, ref), at_rest)
        if not accepted & set(UNCOMPRESSED):
            raise NotFound(
                f"the peer accepted no transfer syntax for SOP class {ref.sop_class_uid}"
            )
        ds = dcmread(io.BytesIO(retrieve.read_original(archive, ref)))
        ds.decompress()  # → Explicit VR Little Endian; pynetdicom converts to implicit if needed
        return ds
    except Exception as exc:  # noqa: BLE001 - one bad instance must not end the retrieve
        detail = exc.detail if isinstance(exc, RadcloudError) else repr(exc)
        log.error("cannot send instance %s: %s", ref.sop_uid, detail)
        failed = Dataset()
        failed.SOPInstanceUID = ref.sop_uid
        return failed


def accepted_syntaxes(assoc: Association, sop_class_uid: str) -> set[str]:
    """Transfer syntaxes the peer accepted for us to send ``sop_class_uid`` (SCU role)."""
    return {
        str(cx.transfer_syntax[0])
        for cx in assoc.accepted_contexts
        if cx.abstract_syntax == sop_class_uid and cx.as_scu
    }


def contexts_for(refs: list[InstanceRef]) -> list[PresentationContext]:
    """Contexts to propose: per SOP class uncompressed, then each stored syntax alone."""
    pairs = list(
        dict.fromkeys(
            (r.sop_class_uid, ts) for r in refs for ts in (r.received_ts, r.transfer_syntax_uid)
        )
    )
    classes = list(dict.fromkeys(c for c, _ in pairs))
    contexts = [build_context(c, UNCOMPRESSED) for c in classes]
    for sop_class, ts in pairs:
        if len(contexts) < MAX_CONTEXTS:
            contexts.append(build_context(sop_class, [ts]))
    return contexts[:MAX_CONTEXTS]


# ------------------------------------------------------------------ handlers


def _refs(event: Event, ctx: ScpContext, action: str) -> list[InstanceRef]:
    """The instances the identifier names that the calling AE may retrieve; audited."""
    who = caller(event, ctx)
    try:
        who.require(Perm.STUDY_DOWNLOAD)
    except Forbidden as exc:
        audit.record(ctx.archive, who, action, audit.DENIED, source=peer(event),
                     detail={"reason": exc.detail[:200]})  # fmt: skip
        raise
    req = parse_identifier(event.identifier)
    refs = retrieve.find_for_retrieve(ctx.archive, req.level, req.filters, principal=who)
    for study_uid, n in Counter(r.study_uid for r in refs).items():
        audit.record(ctx.archive, who, action, study_uid=study_uid, source=peer(event),
                     detail={"instances": n, "level": req.level.value})  # fmt: skip
    return refs


def _send(
    event: Event, ctx: ScpContext, refs: list[InstanceRef], assoc: Association
) -> Iterator[tuple[int, Dataset | None]]:
    accepted: dict[str, set[str]] = {}  # SOP class → syntaxes (contexts are fixed once accepted)
    for ref in refs:
        if event.is_cancelled:
            yield 0xFE00, None
            return
        if ref.sop_class_uid not in accepted:
            accepted[ref.sop_class_uid] = accepted_syntaxes(assoc, ref.sop_class_uid)
        ds = prepare(ctx.archive, ref, accepted[ref.sop_class_uid])
        if assoc is not event.assoc:  # C-MOVE: its own association, with its own reactor
            settle_reactor(assoc)
        yield 0xFF00, ds


def handle_move(event: Event, ctx: ScpContext) -> Iterator[Any]:
    """C-MOVE: a new association to the configured destination, one C-STORE per instance."""
    destination = event.move_destination or ""
    if isinstance(destination, bytes):
        destination = destination.decode("ascii", "replace")
    destination = destination.strip()
    try:
        node = nodes.get_remote_ae(ctx.archive, destination)
    except UnknownDestination as exc:
        log.warning("C-MOVE from %s refused: %s", peer(event), exc.detail)
        yield None, None
        return
    try:
        refs = _refs(event, ctx, "study.move")
    except Exception as exc:  # noqa: BLE001 - answered as a failure status
        # pynetdicom associates with the destination before it takes a status
        yield node.host, node.port, {"contexts": [build_context(VERIFICATION)]}
        yield 1
        yield _failure(event, "C-MOVE", exc), None
        return
    store_assoc: list[Association] = []
    handlers = [(evt.EVT_ACCEPTED, lambda e: store_assoc.append(e.assoc))]
    log.info("C-MOVE from %s: %d instance(s) to %s", peer(event), len(refs), destination)
    yield node.host, node.port, {"contexts": contexts_for(refs), "evt_handlers": handlers}
    yield len(refs)
    yield from _send(event, ctx, refs, store_assoc[0])


def handle_get(event: Event, ctx: ScpContext) -> Iterator[Any]:
    """C-GET: the C-STOREs go back over the requesting association."""
    try:
        refs = _refs(event, ctx, "study.get")
    except Exception as exc:  # noqa: BLE001 - answered as a failure status
        yield 1
        yield _failure(event, "C-GET", exc), None
        return
    log.info("C-GET from %s: %d instance(s)", peer(event), len(refs))
    yield len(refs)
    yield from _send(event, ctx, refs, event.assoc)


def _failure(event: Event, service: str, exc: Exception) -> int:
    if isinstance(exc, RadcloudError):
        log.warning("%s from %s refused: %s", service, peer(event), exc.detail)
        return exc.dimse_status
    log.exception("%s from %s failed", service, peer(event), exc_info=exc)
    return 0xC000
