"""Sending DIMSE messages without pydicom in the loop.

pynetdicom builds every command set as a pydicom ``Dataset`` (validating each
value as it is set), encodes it twice (once to learn the group length), and
hands each P-DATA fragment of the message to its DUL thread through a queue:
about a millisecond of CPU per C-STORE, which made C-GET/C-MOVE and the
C-STORE responses cost several times what the peer spends.

:class:`FastDIMSE` encodes the command set directly (Implicit VR Little
Endian, PS3.7 §6.3.1; the elements of PS3.7 §9.3 and §E.1 in tag order), cuts
the message into P-DATA-TF PDUs of the negotiated size (PS3.8 §9.3.5, one PDV
per PDU as pynetdicom does) and queues the whole wire image as one item, so
the DUL thread writes it with one ``send``.  The bytes are those pynetdicom
would have sent (``tests/test_dimse_fastpath.py`` compares them); anything
it does not cover (a data set sent from a file, attribute lists, a bound
``EVT_DIMSE_SENT`` handler) goes the stock way.

On the receiving side, the File Meta Information pynetdicom writes ahead of a
C-STORE data set it spools to disk is encoded here too (:func:`file_meta_bytes`,
again byte for byte what pydicom writes).
"""

from __future__ import annotations

import struct
from io import BytesIO
from typing import Any, NamedTuple

from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.filewriter import write_file_meta_info as _pydicom_write_file_meta_info
from pynetdicom import PYNETDICOM_IMPLEMENTATION_UID, PYNETDICOM_IMPLEMENTATION_VERSION, evt
from pynetdicom import dimse_messages as _messages
from pynetdicom import fsm as _fsm
from pynetdicom.dimse import DIMSEServiceProvider
from pynetdicom.dimse_messages import _COMMAND_SET_KEYWORDS, _MESSAGE_TYPES
from pynetdicom.pdu import P_DATA_TF
from pynetdicom.pdu_primitives import P_DATA

#: Data sets above this size go the stock way (which streams them fragment by fragment).
MAX_WIRE_BYTES = 64 * 1024 * 1024

#: Command Field value of each message type ("C-STORE-RQ" → 0x0001).
_FIELD = {name: field for field, (name, _cls) in _MESSAGE_TYPES.items()}
#: Primitive class name → DIMSE service name ("C_STORE" → "C-STORE").
_SERVICE = {"C_ECHO", "C_STORE", "C_FIND", "C_GET", "C_MOVE"}
#: Where a primitive keeps its data set, by service.
_DATASET_ATTR = {"C_STORE": "DataSet", "C_FIND": "Identifier", "C_GET": "Identifier",
                 "C_MOVE": "Identifier"}  # fmt: skip
_US, _UL = struct.Struct("<HHIH"), struct.Struct("<HHII")
_PDU_HEAD = struct.Struct(">BBI")
_PDV_HEAD = struct.Struct(">IBB")


def _layout(name: str) -> list[tuple[str, int, str]]:
    """(keyword, tag, VR) of the command elements of message ``name``, in tag order."""
    out = []
    for keyword in _COMMAND_SET_KEYWORDS[name]:
        tag = tag_for_keyword(keyword)
        assert tag is not None
        out.append((keyword, tag, dictionary_VR(tag)))
    return sorted(out, key=lambda item: item[1])


_LAYOUTS = {name: _layout(name) for name in _COMMAND_SET_KEYWORDS}


def _element(tag: int, vr: str, value: Any) -> bytes | None:
    """One Implicit VR Little Endian element, or None for a value this module leaves alone."""
    group, elem = tag >> 16, tag & 0xFFFF
    if vr == "US" and isinstance(value, int):
        return _US.pack(group, elem, 2, value)
    if vr == "UL" and isinstance(value, int):
        return _UL.pack(group, elem, 4, value)
    if vr in ("UI", "AE", "LO", "SH") and isinstance(value, str):
        try:
            data = value.encode("ascii")
        except UnicodeEncodeError:
            return None  # pydicom's character set handling decides
        if len(data) % 2:
            data += b"\0" if vr == "UI" else b" "
        return struct.pack("<HHI", group, elem, len(data)) + data
    return None


def command_set(primitive: Any) -> tuple[bytes, bytes | None] | None:
    """(encoded command set, data set bytes) for a DIMSE-C primitive; None if not covered."""
    service = type(primitive).__name__
    if service not in _SERVICE:
        return None
    is_rsp = primitive.MessageIDBeingRespondedTo is not None
    name = service.replace("_", "-") + ("-RSP" if is_rsp else "-RQ")
    dataset: bytes | None = None
    attr = _DATASET_ATTR.get(service)
    if attr is not None and name != "C-STORE-RSP":
        buffer = getattr(primitive, attr, None)
        if getattr(primitive, "_dataset_path", None) is not None:
            return None  # streamed from a file: the stock path reads it in chunks
        if buffer is not None and not isinstance(buffer, BytesIO):
            return None
        dataset = buffer.getvalue() if buffer is not None else None
        dataset = dataset or None
    parts = []
    for keyword, tag, vr in _LAYOUTS[name]:
        if keyword == "CommandGroupLength":
            continue
        if keyword == "CommandField":
            value: Any = _FIELD[name]
        elif keyword == "CommandDataSetType":
            value = 0x0001 if dataset is not None else 0x0101
        else:
            value = getattr(primitive, keyword, None)
            if value is None:
                continue
        encoded = _element(tag, vr, value)
        if encoded is None:
            return None
        parts.append(encoded)
    body = b"".join(parts)
    return _UL.pack(0x0000, 0x0000, 4, len(body)) + body, dataset


def wire(context_id: int, command: bytes, dataset: bytes | None, max_pdu: int) -> bytes:
    """The P-DATA-TF PDUs carrying a message: command fragments then data set fragments."""
    out = bytearray()
    for data, more, last in ((command, 0x01, 0x03), (dataset, 0x00, 0x02)):
        if data is None:
            continue
        view = memoryview(data)
        step = max_pdu - 6 if max_pdu else max(len(view), 1)
        starts = range(0, max(len(view), 1), step)
        for i, start in enumerate(starts):
            chunk = view[start : start + step]
            flag = last if i == len(starts) - 1 else more
            out += _PDU_HEAD.pack(0x04, 0x00, len(chunk) + 6)
            out += _PDV_HEAD.pack(len(chunk) + 2, context_id, flag)
            out += chunk
    return bytes(out)


class WirePData(P_DATA):
    """A P-DATA request whose PDUs are already encoded (one or more P-DATA-TF)."""

    def __init__(self, data: bytes) -> None:
        super().__init__()
        self.wire = data

    def encode(self) -> bytes:
        return self.wire


def _p_data_tf(primitive: P_DATA) -> Any:
    """What the DUL's DT-1 action sends for a P-DATA request."""
    if isinstance(primitive, WirePData):
        return primitive
    return P_DATA_TF(primitive)


class FastDIMSE(DIMSEServiceProvider):
    """pynetdicom's DIMSE provider, sending covered messages through :func:`wire`."""

    def send_msg(self, primitive: Any, context_id: int) -> None:
        encoded = None
        if not self.assoc.get_handlers(evt.EVT_DIMSE_SENT):
            encoded = command_set(primitive)
        if encoded is None or len(encoded[1] or b"") > MAX_WIRE_BYTES:
            super().send_msg(primitive, context_id)
            return
        command, dataset = encoded
        self.dul.send_pdu(WirePData(wire(context_id, command, dataset, self.maximum_pdu_size)))


def enable() -> None:
    """Make every association of this process send through :class:`FastDIMSE`."""
    import pynetdicom.association as _association

    _fsm.P_DATA_TF = _p_data_tf  # type: ignore[assignment,misc]
    _association.DIMSEServiceProvider = FastDIMSE  # type: ignore[misc]
    _messages.create_file_meta = create_file_meta  # type: ignore[assignment]
    _messages.write_file_meta_info = write_file_meta_info


# ------------------------------------------------------------------ receiving


class FileMeta(NamedTuple):
    """The File Meta Information pynetdicom writes ahead of a received data set."""

    sop_class_uid: str
    sop_instance_uid: str
    transfer_syntax: str
    implementation_uid: str
    implementation_version: str


def create_file_meta(
    *,
    sop_class_uid: str,
    sop_instance_uid: str,
    transfer_syntax: str,
    implementation_uid: str = PYNETDICOM_IMPLEMENTATION_UID,
    implementation_version: str = PYNETDICOM_IMPLEMENTATION_VERSION,
) -> FileMeta:
    """Stands for :func:`pynetdicom.dsutils.create_file_meta` in the receive path."""
    return FileMeta(str(sop_class_uid), str(sop_instance_uid), str(transfer_syntax),
                    str(implementation_uid), str(implementation_version))  # fmt: skip


def _explicit(tag: int, vr: bytes, value: bytes) -> bytes:
    group, elem = tag >> 16, tag & 0xFFFF
    if vr == b"OB":
        return struct.pack("<HH2s2xI", group, elem, vr, len(value)) + value
    return struct.pack("<HH2sH", group, elem, vr, len(value)) + value


def _padded(text: str, pad: bytes) -> bytes:
    data = text.encode("ascii")
    return data + pad if len(data) % 2 else data


def file_meta_bytes(meta: FileMeta) -> bytes:
    """The File Meta Information group (Explicit VR LE, PS3.10 §7.1) as pydicom writes it."""
    body = b"".join(
        (
            _explicit(0x00020001, b"OB", b"\x00\x01"),
            _explicit(0x00020002, b"UI", _padded(meta.sop_class_uid, b"\0")),
            _explicit(0x00020003, b"UI", _padded(meta.sop_instance_uid, b"\0")),
            _explicit(0x00020010, b"UI", _padded(meta.transfer_syntax, b"\0")),
            _explicit(0x00020012, b"UI", _padded(meta.implementation_uid, b"\0")),
            _explicit(0x00020013, b"SH", _padded(meta.implementation_version, b" ")),
        )
    )
    return _explicit(0x00020000, b"UL", struct.pack("<I", len(body))) + body


def write_file_meta_info(fp: Any, file_meta: Any, enforce_standard: bool = True) -> None:
    """Stands for pydicom's writer in pynetdicom's receive path."""
    if isinstance(file_meta, FileMeta):
        fp.write(file_meta_bytes(file_meta))
    else:
        _pydicom_write_file_meta_info(fp, file_meta, enforce_standard)
