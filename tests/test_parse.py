"""parse.to_json_model: the fast path must give exactly pydicom's DICOM JSON."""

from __future__ import annotations

from pathlib import Path

import pydicom
import pytest
from pydicom import dcmread

from radcloud.dicom import parse

ALL_FILES = sorted((Path(pydicom.__file__).parent / "data" / "test_files").glob("*.dcm"))


def _readable(path: Path) -> bool:
    try:
        dcmread(path, defer_size=parse.DEFER_SIZE)
    except Exception:  # noqa: BLE001 - files pydicom itself cannot read are out of scope
        return False
    return True


TEST_FILES = [p for p in ALL_FILES if _readable(p)]


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
        assert fast[key] == expected, key


def test_corpus_is_large_enough() -> None:
    assert len(TEST_FILES) > 60 and len(ALL_FILES) - len(TEST_FILES) < 10


def test_pixel_data_is_always_bulk() -> None:
    path = next(p for p in TEST_FILES if p.name == "CT_small.dcm")
    meta = parse.to_json_model(dcmread(path, defer_size=parse.DEFER_SIZE), "/base")
    assert meta["7FE00010"] == {"vr": "OW", "BulkDataURI": "/base/bulkdata/7FE00010"}
