"""parse.to_json_model: the fast path must give exactly pydicom's DICOM JSON."""

from __future__ import annotations

from pathlib import Path

import pydicom
import pytest
from pydicom import dcmread
from pydicom.dataelem import RawDataElement

from radcloud.dicom import parse

_DATA = Path(pydicom.__file__).parent / "data"
ALL_FILES = sorted(_DATA.glob("test_files/*.dcm")) + sorted(_DATA.glob("charset_files/*.dcm"))


def _readable(path: Path) -> bool:
    try:
        dcmread(path, defer_size=parse.DEFER_SIZE)
    except Exception:  # noqa: BLE001 - files pydicom itself cannot read are out of scope
        return False
    return True


TEST_FILES = [p for p in ALL_FILES if _readable(p)]


#: VRs whose leading spaces are significant (PS3.5 §6.2); trailing ones never are.
_KEEP_LEADING = {"LT", "ST", "UT", "UR"}


def _per_standard(expected: dict) -> dict:
    """pydicom's DICOM JSON with string values as PS3.18 §F.2 wants them.

    pydicom keeps spaces that PS3.5 §6.2 calls insignificant (``"DERIVED "``)
    and writes an empty value of a multi-valued attribute as ``""`` where
    PS3.18 §F.2.5 asks for ``null``; radcloud does what the standard says.
    """
    values = expected.get("Value")
    if not values or expected["vr"] in ("SQ", "PN"):
        return expected
    out = []
    for v in values:
        if isinstance(v, str):
            v = v.rstrip(" ") if expected["vr"] in _KEEP_LEADING else v.strip(" ")
            v = v or None
        out.append(v)
    return {**expected, "Value": out}


@pytest.mark.parametrize("path", TEST_FILES, ids=[p.name for p in TEST_FILES])
def test_json_model_matches_pydicom(path: Path) -> None:
    fast = parse.to_json_model(dcmread(path, defer_size=parse.DEFER_SIZE), "/x")
    ref = dcmread(path, defer_size=parse.DEFER_SIZE)
    for tag in ref.keys():
        key = f"{int(tag):08X}"
        if "BulkDataURI" in fast.get(key, {}):
            continue
        try:
            expected = ref[tag].to_json_dict(None, 2**31)
        except Exception:  # noqa: BLE001
            expected = {"vr": "UN"}
        assert _per_standard(fast[key]) == _per_standard(expected), key
        assert fast[key] == _per_standard(fast[key]), key  # already as the standard wants


def test_corpus_is_large_enough() -> None:
    assert len(TEST_FILES) > 60 and len(ALL_FILES) - len(TEST_FILES) < 10


def test_pixel_data_is_always_bulk() -> None:
    path = next(p for p in TEST_FILES if p.name == "CT_small.dcm")
    meta = parse.to_json_model(dcmread(path, defer_size=parse.DEFER_SIZE), "/base")
    assert meta["7FE00010"] == {"vr": "OW", "BulkDataURI": "/base/bulkdata/7FE00010"}


def _gb18030_file(tmp_path: Path) -> Path:
    ds = pydicom.Dataset()
    ds.SpecificCharacterSet = "GB18030"
    ds.PatientName = "王^小明"
    ds.InstitutionName = "北京协和医院\\第二院区"
    ds.StudyDescription = "胸部 CT 平扫"
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    ds.SOPInstanceUID = "1.2.3.4"
    path = tmp_path / "gb.dcm"
    ds.file_meta = pydicom.dataset.FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
    ds.save_as(path, enforce_file_format=True)
    return path


def test_gb18030_text_matches_pydicom(tmp_path: Path) -> None:
    path = _gb18030_file(tmp_path)
    fast = parse.to_json_model(dcmread(path, defer_size=parse.DEFER_SIZE), "/x")
    ref = dcmread(path)
    assert fast["00080080"] == ref["InstitutionName"].to_json_dict(None, 2**31)
    assert fast["00080080"]["Value"] == ["北京协和医院", "第二院区"]
    assert fast["00081030"]["Value"] == ["胸部 CT 平扫"]


@pytest.mark.parametrize("name", ["CT_small.dcm", "MR_small.dcm", "chrGerm.dcm"])
def test_plain_elements_take_the_fast_path(name: str) -> None:
    """Text, numbers and small binaries of a single-charset header skip pydicom's converter.

    (pydicom converts Specific Character Set while reading, so the charset
    lookup must accept a converted element; when it did not, every element
    took the slow path and ingest spent 3x longer parsing.)
    """
    path = next(p for p in TEST_FILES if p.name == name)
    ds = dcmread(path, defer_size=parse.DEFER_SIZE)
    encoding = parse._charset(ds)
    assert encoding is not None
    slow = []
    for tag in ds.keys():
        raw = ds.get_item(tag, keep_deferred=True)
        vr = parse._vr_of(raw, ds)
        if isinstance(raw, RawDataElement) and vr not in ("SQ", "PN") and tag != 0x7FE00010:
            if parse._fast_json(raw, vr, encoding) is None:
                slow.append(f"{int(tag):08X} {vr}")
    assert not slow


#: The attributes ingest indexes (radcloud.archive.ingest).
INDEXED_TEXT = (
    "Modality", "SeriesDescription", "BodyPartExamined", "PerformedProcedureStepStartDate",
    "PerformedProcedureStepStartTime", "StudyDate", "StudyTime", "AccessionNumber", "StudyID",
    "StudyDescription", "ReferringPhysicianName", "InstitutionName", "PatientID",
    "IssuerOfPatientID", "PatientName", "PatientBirthDate", "PatientSex",
    "PhotometricInterpretation",
)  # fmt: skip
INDEXED_INT = ("InstanceNumber", "Rows", "Columns", "BitsAllocated", "NumberOfFrames",
               "SeriesNumber")  # fmt: skip


def _from_dataset(ds: pydicom.Dataset, keyword: str, as_int: bool) -> object:
    """What ingest indexed before values were read from the DICOM JSON."""
    try:
        value = ds.get(keyword)
    except (TypeError, ValueError, LookupError):
        return None if as_int else ""
    if value is None or value == "":
        return None if as_int else ""
    if as_int:
        try:
            return int(value)
        except (TypeError, ValueError):
            return None
    return str(value).strip()


@pytest.mark.parametrize("path", TEST_FILES, ids=[p.name for p in TEST_FILES])
def test_indexed_values_read_from_json_match_the_data_set(path: Path) -> None:
    parsed = parse.ParsedInstance(
        path=path, size=0, ds=dcmread(path, defer_size=parse.DEFER_SIZE), transfer_syntax_uid="",
        sop_class_uid="", sop_uid="", study_uid="", series_uid="",
        metadata=parse.to_json_model(dcmread(path, defer_size=parse.DEFER_SIZE), "/x"),
    )  # fmt: skip
    ref = dcmread(path, defer_size=parse.DEFER_SIZE)
    for keyword in INDEXED_TEXT:
        assert parsed.text(keyword) == _from_dataset(ref, keyword, False), keyword
    for keyword in INDEXED_INT:
        assert parsed.integer(keyword) == _from_dataset(ref, keyword, True), keyword
