"""radcloud.dimse.fastpath sends exactly the bytes pynetdicom's own encoder would."""

from __future__ import annotations

from io import BytesIO

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydicom.filereader import _read_file_meta_info
from pydicom.filewriter import write_file_meta_info
from pydicom.uid import UID
from pynetdicom.dimse_messages import C_GET_RSP, C_STORE_RQ, C_STORE_RSP
from pynetdicom.dimse_primitives import C_FIND, C_GET, C_STORE
from pynetdicom.dsutils import create_file_meta
from pynetdicom.pdu import P_DATA_TF

from radcloud.dimse import fastpath

uids = st.from_regex(r"1\.2(\.[1-9][0-9]{0,5}){1,8}", fullmatch=True)  # ≤ 59 chars
ids = st.integers(0, 0xFFFF)
pdu_sizes = st.sampled_from([0, 16384, 4096, 30, 1 << 20])


def stock_wire(message: object, primitive: object, context_id: int, max_pdu: int) -> bytes:
    """What pynetdicom itself puts on the wire for ``primitive``."""
    message.primitive_to_message(primitive)  # type: ignore[attr-defined]
    pdus = message.encode_msg(context_id, max_pdu)  # type: ignore[attr-defined]
    return b"".join(P_DATA_TF(p).encode() for p in pdus)


def fast_wire(primitive: object, context_id: int, max_pdu: int) -> bytes:
    encoded = fastpath.command_set(primitive)
    assert encoded is not None
    return fastpath.wire(context_id, encoded[0], encoded[1], max_pdu)


@settings(max_examples=30, deadline=None)
@given(
    sop_class=uids, sop_uid=uids, msg_id=ids, ctx=st.integers(1, 255).filter(lambda x: x % 2),
    data=st.binary(min_size=1, max_size=20_000), max_pdu=pdu_sizes,
    origin=st.one_of(st.none(), st.from_regex(r"[A-Z][A-Z0-9_]{0,15}", fullmatch=True)),
)  # fmt: skip
def test_c_store_request(
    sop_class: str, sop_uid: str, msg_id: int, ctx: int, data: bytes, max_pdu: int,
    origin: str | None,
) -> None:  # fmt: skip
    def primitive() -> C_STORE:
        p = C_STORE()
        p.MessageID, p.Priority = msg_id, 2
        p.AffectedSOPClassUID, p.AffectedSOPInstanceUID = sop_class, sop_uid
        if origin:
            p.MoveOriginatorApplicationEntityTitle, p.MoveOriginatorMessageID = origin, 7
        p.DataSet = BytesIO(data)
        return p

    assert fast_wire(primitive(), ctx, max_pdu) == stock_wire(
        C_STORE_RQ(), primitive(), ctx, max_pdu
    )


@settings(max_examples=40, deadline=None)
@given(status=st.sampled_from([0x0000, 0xB000, 0xA700, 0xC000]), msg_id=ids, uid=uids,
       comment=st.one_of(st.none(), st.text("abc XYZ-0.", max_size=40)))  # fmt: skip
def test_c_store_response(status: int, msg_id: int, uid: str, comment: str | None) -> None:
    def primitive() -> C_STORE:
        p = C_STORE()
        p.MessageIDBeingRespondedTo, p.Status = msg_id, status
        p.AffectedSOPClassUID, p.AffectedSOPInstanceUID = "1.2.840.10008.5.1.4.1.1.2", uid
        if comment:
            p.ErrorComment = comment
        return p

    assert fast_wire(primitive(), 1, 16384) == stock_wire(C_STORE_RSP(), primitive(), 1, 16384)


@pytest.mark.parametrize("counts", [(5, 3, 0, 1), (0, 10, 2, 0)])
def test_c_get_pending_response(counts: tuple[int, int, int, int]) -> None:
    def primitive() -> C_GET:
        p = C_GET()
        p.MessageIDBeingRespondedTo, p.Status = 3, 0xFF00
        p.AffectedSOPClassUID = "1.2.840.10008.5.1.4.1.2.2.3"
        (p.NumberOfRemainingSuboperations, p.NumberOfCompletedSuboperations,
         p.NumberOfFailedSuboperations, p.NumberOfWarningSuboperations) = counts  # fmt: skip
        return p

    assert fast_wire(primitive(), 3, 16384) == stock_wire(C_GET_RSP(), primitive(), 3, 16384)


def test_what_it_does_not_cover_goes_the_stock_way() -> None:
    p = C_STORE()
    p.MessageIDBeingRespondedTo, p.Status = 1, 0xA900
    p.OffendingElement = [0x00100010]  # AT values: left to pynetdicom
    assert fastpath.command_set(p) is None
    find = C_FIND()
    find.MessageIDBeingRespondedTo, find.Status = 1, 0xFF00
    find.Identifier = BytesIO(b"\x08\x00\x52\x00\x06\x00\x00\x00STUDY ")
    assert fastpath.command_set(find) is not None


@settings(max_examples=30, deadline=None)
@given(sop_class=uids, sop_uid=uids,
       ts=st.sampled_from(["1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.4.80"]),
       version=st.from_regex(r"[A-Z0-9_]{1,16}", fullmatch=True))  # fmt: skip
def test_file_meta_matches_pydicom(sop_class: str, sop_uid: str, ts: str, version: str) -> None:
    stock = BytesIO()
    write_file_meta_info(
        stock,  # type: ignore[arg-type]
        create_file_meta(sop_class_uid=UID(sop_class), sop_instance_uid=UID(sop_uid),
                         transfer_syntax=UID(ts), implementation_version=version),
    )  # fmt: skip
    fast = BytesIO()
    fastpath.write_file_meta_info(
        fast,
        fastpath.create_file_meta(sop_class_uid=sop_class, sop_instance_uid=sop_uid,
                                  transfer_syntax=ts, implementation_version=version),
    )  # fmt: skip
    assert fast.getvalue() == stock.getvalue()
    # and pydicom reads it back
    meta = _read_file_meta_info(BytesIO(fast.getvalue()))
    assert (meta.MediaStorageSOPInstanceUID, meta.TransferSyntaxUID) == (sop_uid, ts)


def test_accepted_associations_share_the_supported_contexts() -> None:
    """Each association gets a new list of the same contexts, not a deep copy."""
    import copy

    from pynetdicom.presentation import build_context

    from radcloud.dimse.net import SharedContexts

    contexts = SharedContexts([build_context("1.2.840.10008.1.1")])
    copied = copy.deepcopy(contexts)
    assert copied == list(contexts) and copied is not contexts
    assert copied[0] is contexts[0]
