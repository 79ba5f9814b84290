"""Read, validate and describe one received DICOM object.

``parse_file`` reads a Part 10 file (or a bare data set, which gets a file
meta header prepended) without loading bulk data, checks it is complete and
carries the UIDs an archive needs, and returns everything the index stores:
the DICOM JSON model without bulk data (PS3.18 §F.2), and where each frame's
bytes sit in the file so a frame can be served with one ranged read.
"""

from __future__ import annotations

import base64
import io
import os
import shutil
import struct
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from pydicom import dcmread
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.errors import InvalidDicomError
from pydicom.filewriter import write_file_meta_info
from pydicom.uid import UID

from radcloud.dicom.sopclasses import is_storage_sop_class
from radcloud.dicom.uids import is_valid_uid
from radcloud.errors import InvalidDicom, MissingAttribute, TruncatedDicom, UnsupportedSOPClass

#: Binary values above this many bytes become BulkDataURIs in metadata.
BULK_THRESHOLD = 1024
#: Element values above this size are not read into memory at parse time.
DEFER_SIZE = 64 * 1024
#: Prefix of every BulkDataURI the archive emits.
DICOMWEB_ROOT = "/dicom-web"

_BINARY_VRS = {"OB", "OD", "OF", "OL", "OV", "OW", "UN"}
_PIXEL_DATA = 0x7FE00010
#: Transfer syntaxes whose file offsets are not the pixel bytes' offsets.
_NO_DIRECT_OFFSETS = {"1.2.840.10008.1.2.1.99", "1.2.840.10008.1.2.2"}
_ITEM = 0xFFFEE000

PATIENT_TAGS = (0x00100010, 0x00100020, 0x00100021, 0x00100030, 0x00100040, 0x00101000)
STUDY_TAGS = (
    0x00080005, 0x00080020, 0x00080030, 0x00080050, 0x00080090, 0x00080201, 0x00081030,
    0x00101010, 0x00101020, 0x00101030, 0x0020000D, 0x00200010,
)  # fmt: skip
SERIES_TAGS = (
    0x00080021, 0x00080031, 0x00080060, 0x00080070, 0x00080080, 0x00081010, 0x0008103E,
    0x00180015, 0x00181030, 0x0020000E, 0x00200011, 0x00200052, 0x00200060, 0x00400244,
    0x00400245, 0x00400275,
)  # fmt: skip

Frames = list[list[tuple[int, int]]]


@dataclass
class ParsedInstance:
    """What the archive learns from one object."""

    path: Path
    size: int
    ds: Dataset
    transfer_syntax_uid: str
    sop_class_uid: str
    sop_uid: str
    study_uid: str
    series_uid: str
    metadata: dict[str, Any]
    frames: Frames | None = None
    warnings: list[str] = field(default_factory=list)

    def text(self, keyword: str) -> str:
        """A top-level string attribute, '' when absent, empty or undecodable.

        Read from the DICOM JSON already built (no second decoding by pydicom)
        when the attribute has one value, else from the data set.
        """
        item = self.metadata.get(_json_key(keyword))
        if item is None:
            return ""
        values = item.get("Value")
        if values is None and "BulkDataURI" not in item and "InlineBinary" not in item:
            return ""
        if values is not None and len(values) == 1:
            value = values[0]
            if isinstance(value, str):
                return value.strip()
            if isinstance(value, dict) and item.get("vr") == "PN":
                groups = (value.get(g, "") for g in ("Alphabetic", "Ideographic", "Phonetic"))
                return "=".join(groups).rstrip("=").strip()
        try:
            found = self.ds.get(keyword)
        except (TypeError, ValueError, LookupError):
            return ""
        if found is None or found == "":
            return ""
        return str(found).strip()

    def integer(self, keyword: str) -> int | None:
        """A top-level integer attribute (IS, US, UL...), None when absent or not a number."""
        item = self.metadata.get(_json_key(keyword))
        if item is None:
            return None
        values = item.get("Value")
        if values is not None and len(values) == 1 and isinstance(values[0], int | float):
            value = values[0]
            return int(value) if float(value).is_integer() else None
        try:
            found = self.ds.get(keyword)
            return int(found) if found not in (None, "") else None
        except (TypeError, ValueError, OverflowError):
            return None

    def subset(self, tags: tuple[int, ...]) -> dict[str, Any]:
        """Metadata restricted to ``tags`` (for study/series attribute JSON)."""
        out = {}
        for tag in tags:
            key = f"{tag:08X}"
            if key in self.metadata:
                out[key] = self.metadata[key]
        return out


@lru_cache(maxsize=512)
def _json_tag(keyword: str) -> int:
    tag = tag_for_keyword(keyword)
    if tag is None:
        raise KeyError(f"{keyword!r} is not a DICOM keyword")
    return int(tag)


def _json_key(keyword: str) -> str:
    return f"{_json_tag(keyword):08X}"


def parse_file(path: Path) -> ParsedInstance:
    """Parse and validate the object at ``path``.

    A bare data set (no preamble/DICM) is rewritten in place as a Part 10 file
    whose data set bytes are unchanged.  Raises an :class:`InvalidDicom`
    subclass or :class:`UnsupportedSOPClass` with a reason a user can act on.
    """
    path = Path(path)
    size = path.stat().st_size
    ds: Dataset
    try:
        ds = dcmread(path, defer_size=DEFER_SIZE)
    except InvalidDicomError:
        _add_file_meta(path)
        size = path.stat().st_size
        ds = _read(path)
    except (EOFError, struct.error, OSError, ValueError, KeyError) as exc:
        raise TruncatedDicom(f"cannot read the data set: {exc}") from exc
    _check_complete(ds, size)
    ts = str(getattr(ds.file_meta, "TransferSyntaxUID", "") or "")
    if not UID(ts).is_transfer_syntax:
        raise InvalidDicom(f"unknown transfer syntax {ts!r} in the file meta information")
    uids = _required_uids(ds)
    if not is_storage_sop_class(uids["SOPClassUID"]):
        raise UnsupportedSOPClass(
            f"SOP Class UID {uids['SOPClassUID']} is not a storage SOP class this archive accepts",
            sop_class_uid=uids["SOPClassUID"],
            sop_uid=uids["SOPInstanceUID"],
        )
    base = (
        f"{DICOMWEB_ROOT}/studies/{uids['StudyInstanceUID']}/series/"
        f"{uids['SeriesInstanceUID']}/instances/{uids['SOPInstanceUID']}"
    )
    frames = frame_locations(ds, size)  # before to_json_model converts raw elements
    metadata = to_json_model(ds, base)
    return ParsedInstance(
        path=path,
        size=size,
        ds=ds,
        transfer_syntax_uid=ts,
        sop_class_uid=uids["SOPClassUID"],
        sop_uid=uids["SOPInstanceUID"],
        study_uid=uids["StudyInstanceUID"],
        series_uid=uids["SeriesInstanceUID"],
        metadata=metadata,
        frames=frames,
    )


def _read(path: Path) -> Dataset:
    try:
        return dcmread(path, defer_size=DEFER_SIZE)
    except InvalidDicomError as exc:
        raise InvalidDicom(f"not a DICOM file: {exc}") from exc
    except (EOFError, struct.error, OSError, ValueError, KeyError) as exc:
        raise TruncatedDicom(f"cannot read the data set: {exc}") from exc


def looks_like_dicom(head: bytes) -> bool:
    """Whether the first 132 bytes of a file are those of a DICOM object ingest can read."""
    return head[128:132] == b"DICM" or _looks_like_dataset(head)[0]


def _looks_like_dataset(head: bytes) -> tuple[bool, bool]:
    """(is a bare data set, is explicit VR) judged from the first element header."""
    if len(head) < 8:
        return False, False
    group, elem = struct.unpack("<HH", head[:4])
    if group not in (0x0002, 0x0008, 0x0010, 0x0018, 0x0020) or elem > 0x00FF:
        return False, False
    explicit = head[4:6].isalpha() and head[4:6].isupper()
    return True, explicit


def _add_file_meta(path: Path) -> None:
    """Prepend preamble + file meta to a bare data set, keeping its bytes as they are."""
    with open(path, "rb") as fh:
        head = fh.read(8)
    ok, explicit = _looks_like_dataset(head)
    if not ok:
        raise InvalidDicom(
            "not a DICOM file: no 'DICM' prefix at byte 128 and the content does not start "
            "with a DICOM data element"
        )
    if head[:2] == b"\x02\x00":  # file meta present, only preamble and prefix missing
        _prepend(path, b"\0" * 128 + b"DICM")
        return
    ds = _read_bare(path, explicit)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID(str(ds.get("SOPClassUID", "")))
    meta.MediaStorageSOPInstanceUID = UID(str(ds.get("SOPInstanceUID", "")))
    meta.TransferSyntaxUID = UID("1.2.840.10008.1.2.1" if explicit else "1.2.840.10008.1.2")
    meta.ImplementationClassUID = UID("1.2.826.0.1.3680043.10.1555.1")
    meta.ImplementationVersionName = "RADCLOUD_01"
    header = io.BytesIO()
    header.write(b"\0" * 128 + b"DICM")
    write_file_meta_info(header, meta, enforce_standard=True)  # type: ignore[arg-type]
    _prepend(path, header.getvalue())


def _prepend(path: Path, header: bytes) -> None:
    tmp = path.with_suffix(".meta")
    with open(tmp, "wb") as out:
        out.write(header)
        with open(path, "rb") as src:
            shutil.copyfileobj(src, out, 1024 * 1024)
    os.replace(tmp, path)


def _read_bare(path: Path, explicit: bool) -> Dataset:
    try:
        return dcmread(
            path, defer_size=DEFER_SIZE, force=True, specific_tags=[0x00080016, 0x00080018]
        )
    except Exception as exc:  # noqa: BLE001 - any failure here means "not DICOM"
        raise InvalidDicom(f"not a DICOM file: {exc}") from exc


def _check_complete(ds: Dataset, size: int) -> None:
    """Raise TruncatedDicom when any top-level value runs past the end of the file."""
    for tag in list(ds.keys()):
        raw = ds.get_item(tag, keep_deferred=True)
        if not isinstance(raw, RawDataElement):
            continue
        if raw.length == 0xFFFFFFFF:
            continue
        if raw.value is None:
            if raw.value_tell + raw.length > size:
                raise TruncatedDicom(
                    f"file ends inside element ({tag >> 16:04X},{tag & 0xFFFF:04X}): "
                    f"{raw.value_tell + raw.length - size} bytes missing"
                )
        elif len(raw.value) < raw.length:
            raise TruncatedDicom(
                f"file ends inside element ({tag >> 16:04X},{tag & 0xFFFF:04X}): "
                f"{raw.length - len(raw.value)} bytes missing"
            )


def _required_uids(ds: Dataset) -> dict[str, str]:
    uids: dict[str, str] = {}

    def missing(detail: str) -> MissingAttribute:
        return MissingAttribute(
            detail,
            sop_class_uid=uids.get("SOPClassUID", ""),
            sop_uid=uids.get("SOPInstanceUID", ""),
        )

    for keyword in ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID"):
        try:
            value = _peek(ds, keyword)
        except Exception as exc:  # noqa: BLE001 - a malformed value is as bad as none
            raise missing(f"{keyword} cannot be decoded: {exc}") from exc
        value = str(value).strip().rstrip("\0") if value is not None else ""
        if not value:
            raise missing(f"{keyword} is missing or empty")
        if not is_valid_uid(value):
            raise missing(f"{keyword} {value!r} is not a valid UID")
        uids[keyword] = value
    return uids


def _peek(ds: Dataset, keyword: str) -> Any:
    """A top-level single value, decoded from its raw bytes when they are plain (no pydicom).

    Falls back to ``ds.get`` (pydicom's conversion) for anything else.
    """
    raw = ds.get_item(_json_tag(keyword), keep_deferred=True)
    if raw is None:
        return None
    if isinstance(raw, RawDataElement) and not _ambiguous(raw):
        fast = _fast_json(raw, _vr_of(raw, ds), "ascii")
        if fast is not None:
            values = fast.get("Value")
            if not values:
                return None
            if len(values) == 1:
                return values[0]
    return ds.get(keyword)


def _vr_of(raw: RawDataElement | DataElement, ds: Dataset) -> str:
    vr = raw.VR
    if vr and " or " not in vr:
        return str(vr)
    try:
        vr = dictionary_VR(raw.tag)
    except KeyError:
        return "UN"
    if vr == "US or SS":  # pixel value attributes follow Pixel Representation (PS3.3 C.7.6.3)
        return "SS" if ds.get("PixelRepresentation") == 1 else "US"
    if " or " in vr:
        return "OW" if (ds.get("BitsAllocated") or 8) > 8 else "OB"
    return str(vr)


def _ambiguous(raw: RawDataElement | DataElement) -> bool:
    """Whether the element's VR had to be guessed in a way pydicom might resolve otherwise."""
    if raw.VR and " or " not in raw.VR:
        return False
    try:
        vr = dictionary_VR(raw.tag)
    except KeyError:
        return False
    return " or " in vr and vr not in ("US or SS", "OB or OW")


def _length(elem: RawDataElement | DataElement) -> int:
    if isinstance(elem, RawDataElement):
        return int(elem.length)
    value = elem.value
    return len(value) if isinstance(value, bytes | bytearray) else 0


def to_json_model(ds: Dataset, base_uri: str) -> dict[str, Any]:
    """The DICOM JSON model of ``ds`` without bulk data (PS3.18 §F.2).

    Large binary top-level values become ``BulkDataURI`` under ``base_uri``;
    deferred values are never read.
    """
    out: dict[str, Any] = {}
    encoding = _charset(ds)
    for tag in sorted(ds.keys()):
        raw = ds.get_item(tag, keep_deferred=True)
        key = f"{int(tag):08X}"
        if raw is None:
            continue
        vr = _vr_of(raw, ds)
        deferred = isinstance(raw, RawDataElement) and raw.value is None and raw.length > 0
        big = vr in _BINARY_VRS and _length(raw) > BULK_THRESHOLD
        if deferred or big or tag == _PIXEL_DATA:
            out[key] = {"vr": vr, "BulkDataURI": f"{base_uri}/bulkdata/{key}"}
            continue
        fast = _fast_json(raw, vr, encoding) if encoding and not _ambiguous(raw) else None
        if fast is not None:
            out[key] = fast
            continue
        try:
            elem = ds[tag]
            out[key] = _significant(elem.to_json_dict(None, 2**31))
        except Exception:  # noqa: BLE001 - keep metadata of a value pydicom can't decode
            out[key] = {"vr": "UN"}
    return out


def _significant(model: dict[str, Any]) -> dict[str, Any]:
    """pydicom's JSON of a string attribute, as PS3.18 §F.2 wants it.

    pydicom keeps spaces PS3.5 §6.2 calls insignificant and writes an empty
    value of a multi-valued attribute as "" where PS3.18 §F.2.5 asks for null;
    the fast path (:func:`_fast_json`) already follows the standard.
    """
    vr, values = model.get("vr"), model.get("Value")
    if not values or vr not in _TEXT_VRS and vr not in _SINGLE_TEXT_VRS:
        return model
    keep_leading = vr in _SINGLE_TEXT_VRS
    out = []
    for v in values:
        if isinstance(v, str):
            v = (v.rstrip(" \0") if keep_leading else v.strip(" \0")) or None
        out.append(v)
    return {**model, "Value": out}


_TEXT_VRS = {"AE", "AS", "CS", "DA", "DT", "LO", "SH", "TM", "UI", "UC"}
_SINGLE_TEXT_VRS = {"LT", "ST", "UT", "UR"}
_NUMERIC = {"US": "H", "SS": "h", "UL": "I", "SL": "i", "FL": "f", "FD": "d"}
_FAST_CHARSETS = {
    "": "ascii",
    "ISO_IR 6": "ascii",
    "ISO_IR 100": "latin-1",
    "ISO_IR 192": "utf-8",
    "GB18030": "gb18030",
    "GBK": "gbk",
}


def _charset(ds: Dataset) -> str | None:
    """The Python codec for the data set's single character set, else None (pydicom decodes).

    pydicom reads Specific Character Set eagerly, so it is usually a converted
    element already; several values (ISO 2022 code extensions) are left to pydicom.
    """
    elem = ds.get_item(0x00080005, keep_deferred=True)
    if elem is None:
        return "ascii"
    value = elem.value
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace").strip(" \0")
        if "\\" in value:
            return None
    elif isinstance(value, str):
        value = value.strip()
    elif value is None:
        value = ""
    else:  # a multi-valued converted element
        names = [str(v).strip() for v in value]
        if len(names) > 1:
            return None
        value = names[0] if names else ""
    return _FAST_CHARSETS.get(value)


def _fast_json(raw: RawDataElement | DataElement, vr: str, encoding: str) -> dict | None:
    """DICOM JSON of a plain little-endian value without building a DataElement.

    Covers the VRs that make up most of an image header; returns None for
    anything else (sequences, person names, big endian…) so pydicom handles it.
    """
    if not isinstance(raw, RawDataElement) or not raw.is_little_endian or vr == "SQ":
        return None
    if vr == "UN" or raw.VR == "UN":  # pydicom knows more VRs (private dictionaries, UN→VR)
        return None
    data = raw.value
    if not data:
        return {"vr": vr} if raw.length == 0 else None
    if vr in _TEXT_VRS or vr in _SINGLE_TEXT_VRS:
        try:
            text = data.decode(encoding)
        except UnicodeDecodeError:
            return None
        if vr == "UI":
            text = text.rstrip("\0 ")
        parts = [text] if vr in _SINGLE_TEXT_VRS else text.split("\\")
        parts = [p.rstrip(" \0") if vr in _SINGLE_TEXT_VRS else p.strip(" \0") for p in parts]
        values = [p if p else None for p in parts]
        return {"vr": vr, "Value": values} if any(v is not None for v in values) else {"vr": vr}
    if vr in ("IS", "DS"):
        try:
            nums = [_number(p.strip(" \0"), vr) for p in data.decode("ascii").split("\\")]
        except (UnicodeDecodeError, ValueError):
            return None
        return {"vr": vr, "Value": nums}
    if vr in _BINARY_VRS:
        return {"vr": vr, "InlineBinary": base64.b64encode(data).decode("ascii")}
    if vr in _NUMERIC:
        fmt = _NUMERIC[vr]
        size = struct.calcsize(fmt)
        if len(data) % size:
            return None
        return {"vr": vr, "Value": list(struct.unpack(f"<{len(data) // size}{fmt}", data))}
    return None


def _number(text: str, vr: str) -> int | float | None:
    if not text:
        return None
    if vr == "IS":
        return int(text)
    value = float(text)
    return (
        int(value) if value.is_integer() and "." not in text and "e" not in text.lower() else value
    )


def frame_locations(ds: Dataset, size: int) -> Frames | None:
    """File offsets of each frame's bytes (native) or fragments (encapsulated)."""
    if _PIXEL_DATA not in ds:
        return None
    raw = ds.get_item(_PIXEL_DATA, keep_deferred=True)
    ts = str(getattr(ds.file_meta, "TransferSyntaxUID", ""))
    if not isinstance(raw, RawDataElement) or ts in _NO_DIRECT_OFFSETS:
        return None  # served by parsing the file instead
    try:
        n_frames = int(_peek(ds, "NumberOfFrames") or 1)
    except (TypeError, ValueError):
        raise InvalidDicom("NumberOfFrames is not an integer") from None
    if raw.length != 0xFFFFFFFF:
        return _native_frames(ds, raw, n_frames)
    if raw.value is None:
        return None
    return _encapsulated_frames(raw.value, raw.value_tell, n_frames)


def _native_frames(ds: Dataset, raw: RawDataElement, n_frames: int) -> Frames | None:
    bits = int(_peek(ds, "BitsAllocated") or 0)
    if bits < 8:
        return None
    samples = int(_peek(ds, "SamplesPerPixel") or 1)
    if str(_peek(ds, "PhotometricInterpretation") or "") == "YBR_FULL_422":
        samples = 2  # two samples per pixel on average with 4:2:2 subsampling (PS3.3 C.7.6.3.1.2)
    rows, columns = int(_peek(ds, "Rows") or 0), int(_peek(ds, "Columns") or 0)
    frame_len = rows * columns * samples * bits // 8
    if frame_len * n_frames > raw.length:
        raise TruncatedDicom(
            f"Pixel Data holds {raw.length} bytes, {frame_len * n_frames} expected "
            f"for {n_frames} frame(s) of {rows}x{columns}"
        )
    return [[(raw.value_tell + i * frame_len, frame_len)] for i in range(n_frames)]


def _encapsulated_frames(value: bytes, value_tell: int, n_frames: int) -> Frames | None:
    items: list[tuple[int, int]] = []  # (offset in value of item header, length)
    pos = 0
    while pos + 8 <= len(value):
        tag_group, tag_elem, length = struct.unpack_from("<HHI", value, pos)
        tag = (tag_group << 16) | tag_elem
        if tag != _ITEM:
            break
        items.append((pos, length))
        pos += 8 + length
    if not items:
        raise TruncatedDicom("encapsulated Pixel Data has no Basic Offset Table item")
    bot_pos, bot_len = items[0]
    fragments = [(value_tell + p + 8, n) for p, n in items[1:]]
    if not fragments:
        raise TruncatedDicom("encapsulated Pixel Data has no fragments")
    if n_frames == 1:
        return [fragments]
    if len(fragments) == n_frames:
        return [[f] for f in fragments]
    if bot_len >= 4 * n_frames:
        offsets = struct.unpack_from(f"<{n_frames}I", value, bot_pos + 8)
        first = items[1][0]
        starts = [first + o for o in offsets] + [len(value) + 1]
        frames: Frames = []
        for i in range(n_frames):
            frames.append(
                [(value_tell + p + 8, n) for p, n in items[1:] if starts[i] <= p < starts[i + 1]]
            )
        return frames
    return None
