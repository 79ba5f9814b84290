"""De-identification per DICOM PS3.15 Annex E (Basic Application Level Confidentiality Profile).

``Deidentifier(secret, options).apply(ds)`` returns a de-identified copy of a
data set, for studies shared outside the care team (consultation, teaching,
a patient's share link):

1. every attribute of Table E.1-1 (:mod:`radcloud.share.deid_rules`) gets the
   action of the Basic Profile or of the chosen options;
2. attributes the table does not list are handled by value representation:
   person names emptied, dates shifted (or removed), UIDs replaced, private
   attributes removed, sequences processed item by item;
3. a residual scan then removes any remaining text value that still contains
   one of the original's identifiers (name parts, IDs, accession number,
   institution, physicians, dates), wherever it sits;
4. optionally the pixel band where ultrasound and screen-capture devices burn
   in patient demographics is blacked out (a template, not OCR);
5. the profile's bookkeeping attributes are set (PatientIdentityRemoved,
   DeidentificationMethod(CodeSequence), LongitudinalTemporalInformationModified).

UIDs map through HMAC-SHA256 under ``secret`` to ``2.25.<128-bit integer>``, so
the same original UID gives the same new UID within one share (references
between the shared objects still resolve) and nothing links them to the
originals without the secret.  Dates of one patient move by the same whole
number of days (derived from the secret and the patient ID), so intervals
between a patient's studies are kept.
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import numpy as np
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence
from pydicom.uid import UID, ExplicitVRLittleEndian

from radcloud.share import deid_rules as rules
from radcloud.share.deid_rules import (
    CLEAN_DESC,
    DEV_ID,
    FULL_DATES,
    INST_ID,
    MOD_DATES,
    PAT_CHARS,
    UIDS,
)

#: Attributes holding well-known UIDs (classes, syntaxes, coding schemes): never replaced.
WELL_KNOWN_UID_TAGS = {
    0x00020002,  # MediaStorageSOPClassUID
    0x00020010,  # TransferSyntaxUID
    0x00020012,  # ImplementationClassUID
    0x00080016,  # SOPClassUID
    0x0008001A,  # RelatedGeneralSOPClassUID
    0x0008010C,  # CodingSchemeUID
    0x0008010D,  # ContextGroupExtensionCreatorUID
    0x00080118,  # MappingResourceUID
    0x00081150,  # ReferencedSOPClassUID
    0x00041510,  # ReferencedSOPClassUIDInFile
    0x00041512,  # ReferencedTransferSyntaxUIDInFile
    0x00080062,  # SOPClassesInStudy
}
PIXEL_TAGS = {0x7FE00010, 0x7FE00008, 0x7FE00009}
#: Modalities whose devices burn demographics into the top of the image.
BURNED_IN_MODALITIES = {"US", "SC", "OT", "XC", "ES", "GM"}
#: Height of the masked band, as a fraction of the rows (at least ``MIN_BAND`` pixels).
BAND_FRACTION, MIN_BAND = 0.10, 24
#: Days dates move back by: between one and ten years, per patient.
SHIFT_MIN_DAYS, SHIFT_SPAN_DAYS = 366, 3285

_CODES = {
    "basic": ("113100", "Basic Application Confidentiality Profile"),
    "pixels": ("113101", "Clean Pixel Data Option"),
    "desc": ("113105", "Clean Descriptors Option"),
    "full_dates": ("113106", "Retain Longitudinal Temporal Information Full Dates Option"),
    "mod_dates": ("113107", "Retain Longitudinal Temporal Information Modified Dates Option"),
    "patchars": ("113108", "Retain Patient Characteristics Option"),
    "device": ("113109", "Retain Device Identity Option"),
    "uids": ("113110", "Retain UIDs Option"),
    "institution": ("113112", "Retain Institution Identity Option"),
}
_DUMMY = {"PN": "ANONYMOUS", "DA": "19000101", "TM": "000000", "DT": "19000101000000",
          "AS": "000Y", "AE": "ANONYMOUS"}  # fmt: skip
_TEXT_VRS = {"AE", "AS", "CS", "DA", "DS", "DT", "IS", "LO", "LT", "PN", "SH", "ST", "TM", "UC",
             "UI", "UR", "UT"}  # fmt: skip


@dataclass(frozen=True)
class Options:
    """Which options of Table E.1-1 apply (the defaults suit sharing for care and teaching)."""

    modified_dates: bool = True
    full_dates: bool = False
    retain_patient_characteristics: bool = True
    clean_descriptors: bool = True
    retain_device_identity: bool = False
    retain_institution_identity: bool = False
    retain_uids: bool = False
    clean_pixel_data: bool = True

    def names(self) -> list[str]:
        """The override columns of Table E.1-1 in force, in the order they are tried."""
        on = [
            (self.full_dates, FULL_DATES),
            (self.modified_dates and not self.full_dates, MOD_DATES),
            (self.retain_patient_characteristics, PAT_CHARS),
            (self.retain_device_identity, DEV_ID),
            (self.retain_institution_identity, INST_ID),
            (self.retain_uids, UIDS),
            (self.clean_descriptors, CLEAN_DESC),
        ]
        return [name for flag, name in on if flag]

    @property
    def keeps_dates(self) -> bool:
        return self.full_dates or self.modified_dates


@dataclass
class Report:
    """What one :meth:`Deidentifier.apply` did (counts, for the audit trail)."""

    removed: int = 0
    emptied: int = 0
    replaced: int = 0
    uids_mapped: int = 0
    dates_shifted: int = 0
    residual_removed: int = 0
    pixels_masked: bool = False


class Deidentifier:
    """De-identifies data sets consistently under one secret (one share, one export)."""

    def __init__(self, secret: bytes, options: Options | None = None) -> None:
        if len(secret) < 16:
            raise ValueError("the de-identification secret must be at least 16 bytes")
        self.secret = secret
        self.options = options or Options()
        self._active = self.options.names()

    # -------------------------------------------------------------- consistent replacements

    def _mac(self, purpose: str, value: str) -> bytes:
        return hmac.new(self.secret, f"{purpose}\0{value}".encode(), hashlib.sha256).digest()

    def uid(self, original: str) -> str:
        """The new UID for ``original`` (PS3.5 §B.2: ``2.25.`` + a 128-bit integer)."""
        return "2.25." + str(int.from_bytes(self._mac("uid", original)[:16], "big"))

    def pseudonym(self, patient_id: str) -> str:
        """The Patient ID that stands for ``patient_id`` in this share."""
        return "ANON-" + self._mac("patient", patient_id)[:6].hex().upper()

    def shift(self, patient_id: str) -> timedelta:
        """How far this patient's dates move (always back, whole days)."""
        n = int.from_bytes(self._mac("dates", patient_id)[:4], "big")
        return -timedelta(days=SHIFT_MIN_DAYS + n % SHIFT_SPAN_DAYS)

    # -------------------------------------------------------------- the profile

    def apply(self, source: Dataset) -> tuple[Dataset, Report]:
        """A de-identified copy of ``source`` and what was done; ``source`` is unchanged."""
        ds = copy.deepcopy(source)
        report = Report()
        patient = str(source.get("PatientID", "") or "")
        identifiers = _identifiers(source)
        self._walk(ds, patient, report)
        self._bookkeeping(ds, source, patient)
        report.residual_removed = _residual_scan(ds, identifiers)
        if self.options.clean_pixel_data and _needs_pixel_cleaning(source):
            report.pixels_masked = _mask_band(ds)
        self._method(ds, report)
        if hasattr(ds, "file_meta"):
            meta = ds.file_meta
            meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
            for tag in (0x00020016, 0x00020017, 0x00020018, 0x00020100, 0x00020102):
                if tag in meta:  # source/sending/receiving AE titles, private info
                    del meta[tag]
        return ds, report

    def _action(self, tag: int, vr: str) -> str:
        row = rules.rule_for(tag)
        if row is None:
            return self._by_vr(tag, vr)
        basic, overrides = row
        for name in self._active:
            if name in overrides:
                return overrides[name]
        if basic in rules.COMPOUND:
            if tag in rules.KEEP_EMPTY:
                return "D" if tag == 0x00100020 else "Z"
            return rules.COMPOUND[basic]
        return basic

    def _by_vr(self, tag: int, vr: str) -> str:
        if vr == "PN":
            return "Z"
        if vr in ("DA", "DT"):
            return "K" if self.options.full_dates else "C" if self.options.modified_dates else "X"
        if vr == "TM":
            return "K" if self.options.keeps_dates else "X"
        if vr == "UI":
            return "K" if tag in WELL_KNOWN_UID_TAGS or self.options.retain_uids else "U"
        return "K"

    def _walk(self, ds: Dataset, patient: str, report: Report) -> None:
        for elem in list(ds):
            tag = int(elem.tag)
            if elem.tag.is_private:
                del ds[tag]
                report.removed += 1
                continue
            if tag in PIXEL_TAGS or elem.tag.group == 0x0002:
                continue
            action = self._action(tag, elem.VR)
            if elem.VR == "UI" and action == "U" and _well_known(elem.value):
                action = "K"
            self._do(ds, elem, action, patient, report)

    def _do(
        self, ds: Dataset, elem: DataElement, action: str, patient: str, report: Report
    ) -> None:
        tag, vr = int(elem.tag), elem.VR
        if vr == "SQ":
            if action == "X":
                del ds[tag]
                report.removed += 1
            elif action == "Z":
                elem.value = Sequence()
                report.emptied += 1
            else:  # K, C, D, U*: keep the items, processed by the same rules
                for item in elem.value:
                    self._walk(item, patient, report)
            return
        if action == "K":
            return
        if action == "X" or (action == "C" and tag >> 16 & 0xFF00 in (0x5000, 0x6000)):
            del ds[tag]
            report.removed += 1
        elif action == "Z":
            elem.value = ""
            report.emptied += 1
        elif action == "D":
            elem.value = self.pseudonym(patient) if tag == 0x00100020 else _dummy(vr)
            report.replaced += 1
        elif action in ("U", "U*"):
            elem.value = self._map_uids(elem.value)
            report.uids_mapped += 1
        elif action == "C":
            self._clean(ds, elem, patient, report)

    def _clean(self, ds: Dataset, elem: DataElement, patient: str, report: Report) -> None:
        """C: dates move by the patient's shift; text stays for the residual scan to judge."""
        if elem.VR in ("DA", "DT"):
            shifted = _shift_values(elem.value, elem.VR, self.shift(patient))
            if shifted is None:
                del ds[int(elem.tag)]
                report.removed += 1
            else:
                elem.value = shifted
                report.dates_shifted += 1
        elif elem.VR == "AE":
            elem.value = _dummy("AE")
            report.replaced += 1

    def _map_uids(self, value: Any) -> Any:
        if isinstance(value, MultiValue | list):
            return [self._map_one(v) for v in value]
        return self._map_one(value)

    def _map_one(self, value: Any) -> str:
        text = str(value or "").strip("\0 ")
        if not text or _well_known(text):
            return text
        return self.uid(text)

    def _bookkeeping(self, ds: Dataset, source: Dataset, patient: str) -> None:
        ds.PatientIdentityRemoved = "YES"
        if "PatientID" in ds or "PatientID" in source:
            ds.PatientID = self.pseudonym(patient)
        if "PatientName" not in ds:
            ds.PatientName = ""
        o = self.options
        ds.LongitudinalTemporalInformationModified = (
            "UNMODIFIED" if o.full_dates else "MODIFIED" if o.modified_dates else "REMOVED"
        )

    def _method(self, ds: Dataset, report: Report) -> None:
        o = self.options
        keys = ["basic"]
        keys += ["pixels"] if report.pixels_masked else []
        keys += ["desc"] if o.clean_descriptors else []
        keys += ["full_dates"] if o.full_dates else ["mod_dates"] if o.modified_dates else []
        keys += ["patchars"] if o.retain_patient_characteristics else []
        keys += ["device"] if o.retain_device_identity else []
        keys += ["uids"] if o.retain_uids else []
        keys += ["institution"] if o.retain_institution_identity else []
        ds.DeidentificationMethod = ["radcloud, DICOM PS3.15 Annex E"] + [
            _CODES[k][1][:64] for k in keys
        ]
        items = []
        for k in keys:
            item = Dataset()
            item.CodeValue, item.CodingSchemeDesignator = _CODES[k][0], "DCM"
            item.CodeMeaning = _CODES[k][1]
            items.append(item)
        ds.DeidentificationMethodCodeSequence = Sequence(items)


def _well_known(uid: object) -> bool:
    """A UID the standard defines (SOP classes, transfer syntaxes...): not identifying."""
    text = str(uid or "").strip("\0 ")
    return text.startswith("1.2.840.10008.") or UID(text).name != text


def _dummy(vr: str) -> str:
    return _DUMMY.get(vr, "ANONYMIZED")


def _shift_values(value: Any, vr: str, delta: timedelta) -> Any:
    values = list(value) if isinstance(value, MultiValue | list) else [value]
    out = []
    for v in values:
        shifted = _shift_one(str(v or ""), vr, delta)
        if shifted is None:
            return None
        out.append(shifted)
    return out if len(out) > 1 else out[0]


def _shift_one(text: str, vr: str, delta: timedelta) -> str | None:
    """A DA or DT value moved by ``delta`` (whole days); None when it is not a date."""
    text = text.strip()
    if not text:
        return text
    m = re.fullmatch(r"(\d{4})(\d{2})(\d{2})(.*)", text)
    if m is None or (vr == "DA" and m.group(4)):
        return None
    try:
        day = date(int(m.group(1)), int(m.group(2)), int(m.group(3))) + delta
    except ValueError:
        return None
    return day.strftime("%Y%m%d") + m.group(4)


# ------------------------------------------------------------------ the residual scan

#: Attributes whose values identify the patient, the visit or the people involved.
_IDENTIFYING = {
    0x00100010, 0x00100020, 0x00101000, 0x00101001, 0x00101005, 0x00101060, 0x00100030,
    0x00080050, 0x00080080, 0x00080081, 0x00081040, 0x00080090, 0x0008009C, 0x00081048,
    0x00081050, 0x00081060, 0x00081070, 0x00321032, 0x00080020, 0x00080021, 0x00080022,
    0x00080023, 0x00380010, 0x00401001, 0x00402016, 0x00402017, 0x00400009, 0x00400253,
    0x00081010, 0x00181000, 0x00101040, 0x00102154,
}  # fmt: skip
#: Tokens shorter than this are too common to search for ("F", "CT", "1").
MIN_TOKEN = 3


def _identifiers(source: Dataset) -> list[str]:
    """Strings of the original that must not appear anywhere in the shared copy."""
    found: set[str] = set()
    for elem in _elements(source):
        if int(elem.tag) not in _IDENTIFYING and elem.VR != "PN":
            continue
        for value in _texts(elem):
            found.add(value)
            if elem.VR == "PN":  # each name part on its own
                found.update(p for p in re.split(r"[\^=]", value) if p)
            if elem.VR == "DA" and re.fullmatch(r"\d{8}", value):  # 20240105 → 2024-01-05
                found.add(f"{value[:4]}-{value[4:6]}-{value[6:]}")
                found.add(f"{value[:4]}.{value[4:6]}.{value[6:]}")
    return sorted((t for t in found if len(t.strip()) >= MIN_TOKEN), key=len, reverse=True)


def _elements(ds: Dataset) -> Iterator[DataElement]:
    for elem in ds:
        yield elem
        if elem.VR == "SQ":
            for item in elem.value:
                yield from _elements(item)


def _texts(elem: DataElement) -> Iterable[str]:
    value = elem.value
    values = list(value) if isinstance(value, MultiValue | list) else [value]
    for v in values:
        if v is None or isinstance(v, bytes | bytearray | Dataset):
            continue
        text = str(v).strip()
        if text:
            yield text


def _residual_scan(ds: Dataset, identifiers: list[str]) -> int:
    """Remove every text element (any depth) that still holds an original identifier."""
    if not identifiers:
        return 0
    pattern = re.compile(
        "|".join(
            rf"(?<![0-9A-Za-z]){re.escape(t)}(?![0-9A-Za-z])" if len(t) < 6 else re.escape(t)
            for t in identifiers
        ),
        re.IGNORECASE,
    )
    return _scan(ds, pattern)


def _scan(ds: Dataset, pattern: re.Pattern[str]) -> int:
    removed = 0
    for elem in list(ds):
        if elem.VR == "SQ":
            for item in elem.value:
                removed += _scan(item, pattern)
        elif elem.VR in _TEXT_VRS and elem.VR != "UI":
            if any(pattern.search(t) for t in _texts(elem)):
                del ds[int(elem.tag)]
                removed += 1
    return removed


# ------------------------------------------------------------------ burned-in text


def _needs_pixel_cleaning(ds: Dataset) -> bool:
    modality = str(ds.get("Modality", "") or "").upper()
    return "PixelData" in ds and modality in BURNED_IN_MODALITIES


def band_height(rows: int) -> int:
    """Rows blacked out at the top of an image of ``rows`` rows."""
    return min(rows, max(MIN_BAND, round(rows * BAND_FRACTION)))


def _mask_band(ds: Dataset) -> bool:
    """Black out the top band of every frame; False (nothing changed) if pixels can't be decoded."""
    try:
        if ds.file_meta.TransferSyntaxUID.is_compressed:
            ds.decompress()
        pixels = np.array(ds.pixel_array)
    except Exception:  # noqa: BLE001 - no decoder for this syntax: the caller reports it
        return False
    band = band_height(int(ds.Rows))
    frames = int(ds.get("NumberOfFrames") or 1)
    if frames > 1:
        pixels[:, :band] = 0
    else:
        pixels[:band] = 0
    ds.PixelData = pixels.tobytes()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    return True


# ------------------------------------------------------------------ free text (report text)

#: Dates in report prose: 20240105, 2024-01-05, 2024.1.5, 2024/01/05, 2024年1月5日.
_TEXT_DATE = re.compile(
    r"(?<!\d)(?P<y>\d{4})(?:(?P<sep>[-./])(?P<m>\d{1,2})(?P=sep)(?P<d>\d{1,2})"
    r"|年(?P<m2>\d{1,2})月(?P<d2>\d{1,2})日|(?P<m3>\d{2})(?P<d3>\d{2}))(?!\d)"
)
#: What stands where an identifier was removed from prose.
REMOVED = "***"


def text_identifiers(source: Dataset, extra: Iterable[str] = ()) -> list[str]:
    """Strings of ``source`` (and ``extra``: e.g. the report's author) that must not appear
    in shared prose; unlike the attribute scan, two-character CJK names count too."""
    found = set(_identifiers(source))
    for elem in _elements(source):
        if elem.VR == "PN":
            for value in _texts(elem):
                found.update(
                    p for p in re.split(r"[\^= ]", value) if len(p) >= 2 and not p.isascii()
                )
    for text in extra:
        text = (text or "").strip()
        if len(text) >= MIN_TOKEN or (len(text) >= 2 and not text.isascii()):
            found.add(text)
    return sorted(found, key=len, reverse=True)


def _shift_match(m: re.Match[str], delta: timedelta) -> str:
    y, mo, d = m["y"], m["m"] or m["m2"] or m["m3"], m["d"] or m["d2"] or m["d3"]
    try:
        day = date(int(y), int(mo), int(d)) + delta
    except ValueError:
        return m.group(0)
    if m["sep"]:
        return f"{day:%Y}{m['sep']}{day:%m}{m['sep']}{day:%d}"
    if m["m2"]:
        return f"{day.year}年{day.month}月{day.day}日"
    return f"{day:%Y%m%d}"


def scrub_text(text: str, identifiers: list[str], delta: timedelta) -> str:
    """Prose with its dates moved by ``delta`` (the images' shift, so intervals and the
    study date agree with the shared images) and every identifier replaced by ``***``."""
    out = _TEXT_DATE.sub(lambda m: _shift_match(m, delta), text)
    if not identifiers:
        return out
    pattern = re.compile(
        "|".join(
            rf"(?<![0-9A-Za-z]){re.escape(t)}(?![0-9A-Za-z])" if len(t) < 6 else re.escape(t)
            for t in identifiers
        ),
        re.IGNORECASE,
    )
    return pattern.sub(REMOVED, out)
