"""C-FIND (Patient Root and Study Root) against the DIMSE listener, driven by findscu."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import _auth
import pytest
from _dimse_data import dcmtk, write_series
from pydicom import dcmread
from pydicom.dataset import Dataset

from radcloud.archive import ingest
from radcloud.archive.service import Archive
from radcloud.dimse import handlers
from radcloud.dimse.handlers import ScpContext, handle_find
from radcloud.dimse.scp import DimseServer

pytestmark = pytest.mark.dcmtk
_run = itertools.count()


@dataclass
class Data:
    wang_ct: str
    wang_mr: str
    smith: str
    smith_series: list[str]
    zhang: str


@pytest.fixture
def scp(archive: Archive) -> Iterator[DimseServer]:
    _auth.accept_any_calling_ae(archive)
    server = DimseServer(archive, host="127.0.0.1", port=0, ae_title="QRSCP").start()
    yield server
    server.stop(grace=0)


@pytest.fixture
def data(archive: Archive, tmp_path: Path) -> Data:
    def put(name: str, n: int, **kw: object) -> object:
        s = write_series(tmp_path / name, n, **kw)  # type: ignore[arg-type]
        for p in s.paths:
            ingest.store_copy(archive, p, source="test")
        return s

    wang = dict(patient_id="QA1", patient_name="Wang^Xiaodong")
    ct = put("a", 3, study_date="20240110", **wang)
    mr = put("b", 2, study_date="20240220", modality="MR", **wang)
    smith = dict(patient_id="QB2", patient_name="Smith^Anna", study_date="20240305")
    s1 = put("c", 2, **smith)
    s2 = put("d", 4, study_uid=s1.study_uid, modality="PT", series_number=2, **smith)  # type: ignore[attr-defined]
    zh = put("e", 1, patient_id="QC3", patient_name="张^三", study_date="20231201")
    return Data(
        ct.study_uid, mr.study_uid, s1.study_uid,  # type: ignore[attr-defined]
        [s1.series_uid, s2.series_uid], zh.study_uid,  # type: ignore[attr-defined]
    )  # fmt: skip


def find(scp: DimseServer, tmp_path: Path, model: str, *keys: str) -> list[Dataset]:
    """Run findscu; return the response identifiers it extracted (-X)."""
    out = tmp_path / f"find{next(_run)}"
    out.mkdir()
    args = ["findscu", model, "-X", "-od", str(out), "-aec", scp.ae_title]
    for k in keys:
        args += ["-k", k]
    r = dcmtk(*args, "127.0.0.1", str(scp.port))
    assert r.returncode == 0, r.stderr
    return [dcmread(p) for p in sorted(out.glob("rsp*.dcm"))]


def _keywords(ds: Dataset) -> set[str]:
    return {e.keyword for e in ds}


def test_study_root_study_level_by_patient_id(scp: DimseServer, data: Data, tmp_path: Path) -> None:
    rsps = find(
        scp, tmp_path, "-S", "QueryRetrieveLevel=STUDY", "PatientID=QA1", "StudyInstanceUID",
        "StudyDate", "PatientName", "ModalitiesInStudy", "NumberOfStudyRelatedInstances",
    )  # fmt: skip
    assert {r.StudyInstanceUID for r in rsps} == {data.wang_ct, data.wang_mr}
    by_uid = {r.StudyInstanceUID: r for r in rsps}
    assert by_uid[data.wang_ct].ModalitiesInStudy == "CT"
    assert by_uid[data.wang_ct].NumberOfStudyRelatedInstances == 3
    assert by_uid[data.wang_mr].StudyDate == "20240220"
    for r in rsps:  # exactly the requested keys, plus level and where to retrieve
        assert _keywords(r) == {
            "QueryRetrieveLevel", "RetrieveAETitle", "PatientID", "StudyInstanceUID", "StudyDate",
            "PatientName", "ModalitiesInStudy", "NumberOfStudyRelatedInstances",
        }  # fmt: skip
        assert r.RetrieveAETitle == "QRSCP"
        assert str(r.PatientName) == "Wang^Xiaodong"


def test_wildcard_name_date_range_modalities_and_uid_list(
    scp: DimseServer, data: Data, tmp_path: Path
) -> None:
    study = ("-S", "QueryRetrieveLevel=STUDY", "StudyInstanceUID")
    wild = find(scp, tmp_path, *study, "PatientName=wang*")
    assert {r.StudyInstanceUID for r in wild} == {data.wang_ct, data.wang_mr}
    assert str(wild[0].PatientName) == "Wang^Xiaodong"
    dated = find(scp, tmp_path, *study, "StudyDate=20240201-20240331")
    assert {r.StudyInstanceUID for r in dated} == {data.wang_mr, data.smith}
    open_ended = find(scp, tmp_path, *study, "StudyDate=-20240115")
    assert {r.StudyInstanceUID for r in open_ended} == {data.wang_ct, data.zhang}
    pt = find(scp, tmp_path, *study, "ModalitiesInStudy=PT")
    assert [r.StudyInstanceUID for r in pt] == [data.smith]
    assert list(pt[0].ModalitiesInStudy) == ["CT", "PT"]
    listed = find(scp, tmp_path, *study[:2], f"StudyInstanceUID={data.wang_ct}\\{data.zhang}")
    assert {r.StudyInstanceUID for r in listed} == {data.wang_ct, data.zhang}
    assert find(scp, tmp_path, *study, "PatientID=NOBODY") == []


def test_series_and_image_levels(scp: DimseServer, data: Data, tmp_path: Path) -> None:
    series = find(
        scp, tmp_path, "-S", "QueryRetrieveLevel=SERIES", f"StudyInstanceUID={data.smith}",
        "SeriesInstanceUID", "Modality", "SeriesNumber", "NumberOfSeriesRelatedInstances",
    )  # fmt: skip
    assert [r.SeriesInstanceUID for r in series] == data.smith_series
    assert [r.Modality for r in series] == ["CT", "PT"]
    assert [r.NumberOfSeriesRelatedInstances for r in series] == [2, 4]
    only_pt = find(
        scp, tmp_path, "-S", "QueryRetrieveLevel=SERIES", "Modality=PT", "SeriesInstanceUID"
    )
    assert [r.SeriesInstanceUID for r in only_pt] == [data.smith_series[1]]
    images = find(
        scp, tmp_path, "-S", "QueryRetrieveLevel=IMAGE", f"StudyInstanceUID={data.smith}",
        f"SeriesInstanceUID={data.smith_series[1]}", "SOPInstanceUID", "InstanceNumber",
        "SOPClassUID",
    )  # fmt: skip
    assert [r.InstanceNumber for r in images] == [1, 2, 3, 4]
    assert {r.SOPClassUID for r in images} == {"1.2.840.10008.5.1.4.1.1.2"}
    assert all(r.QueryRetrieveLevel == "IMAGE" for r in images)


def test_patient_root(scp: DimseServer, data: Data, tmp_path: Path) -> None:
    patients = find(
        scp, tmp_path, "-P", "QueryRetrieveLevel=PATIENT", "PatientID=Q?2", "PatientName",
        "NumberOfPatientRelatedStudies",
    )  # fmt: skip
    assert [(r.PatientID, str(r.PatientName)) for r in patients] == [("QB2", "Smith^Anna")]
    assert patients[0].NumberOfPatientRelatedStudies == 1
    studies = find(
        scp, tmp_path, "-P", "QueryRetrieveLevel=STUDY", "PatientID=QA1", "StudyInstanceUID",
        "StudyDate=20240101-20240131",
    )  # fmt: skip
    assert [r.StudyInstanceUID for r in studies] == [data.wang_ct]
    series = find(
        scp, tmp_path, "-P", "QueryRetrieveLevel=SERIES", "PatientID=QB2",
        f"StudyInstanceUID={data.smith}", "SeriesInstanceUID", "Modality=CT",
    )  # fmt: skip
    assert [r.SeriesInstanceUID for r in series] == [data.smith_series[0]]
    images = find(
        scp, tmp_path, "-P", "QueryRetrieveLevel=IMAGE", "PatientID=QA1",
        f"StudyInstanceUID={data.wang_mr}", "SOPInstanceUID",
    )  # fmt: skip
    assert len(images) == 2


def test_non_ascii_names_come_back_in_utf8(scp: DimseServer, data: Data, tmp_path: Path) -> None:
    rsps = find(
        scp, tmp_path, "-S", "QueryRetrieveLevel=STUDY", "SpecificCharacterSet=ISO_IR 192",
        "PatientName=张*", "StudyInstanceUID",
    )  # fmt: skip
    assert [r.StudyInstanceUID for r in rsps] == [data.zhang]
    assert rsps[0].SpecificCharacterSet == "ISO_IR 192"
    assert str(rsps[0].PatientName) == "张^三"
    ascii_only = find(scp, tmp_path, "-S", "QueryRetrieveLevel=STUDY", "PatientID=QB2")
    assert "SpecificCharacterSet" not in ascii_only[0]


def test_matches_are_fetched_in_pages(
    scp: DimseServer, data: Data, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(handlers, "FIND_PAGE", 3)
    images = find(
        scp, tmp_path, "-S", "QueryRetrieveLevel=IMAGE", f"StudyInstanceUID={data.smith}",
        "SOPInstanceUID", "InstanceNumber", "SeriesInstanceUID",
    )  # fmt: skip
    assert len(images) == 6 and len({r.SOPInstanceUID for r in images}) == 6
    studies = find(scp, tmp_path, "-S", "QueryRetrieveLevel=STUDY", "StudyInstanceUID")
    assert {r.StudyInstanceUID for r in studies} == {
        data.wang_ct,
        data.wang_mr,
        data.smith,
        data.zhang,
    }
    assert len(studies) == 4


def test_cancel_stops_the_matches(archive: Archive, data: Data) -> None:
    """C-CANCEL between two matches ends the responses with 0xFE00 (pynetdicom sends it)."""
    _auth.accept_any_calling_ae(archive)
    identifier = Dataset()
    identifier.QueryRetrieveLevel = "STUDY"
    identifier.StudyInstanceUID = ""
    polls: list[bool] = []

    class Assoc:  # a plain object: the SCP keeps per-association state in a weak map
        requestor = SimpleNamespace(ae_title="FINDSCU", address="127.0.0.1")

    class CancelAfterFirst:
        assoc = Assoc()

        def __init__(self) -> None:
            self.identifier = identifier

        @property
        def is_cancelled(self) -> bool:
            polls.append(True)
            return len(polls) > 1

    rsps = list(handle_find(CancelAfterFirst(), ScpContext(archive, "QRSCP")))  # type: ignore[arg-type]
    assert [status for status, _ in rsps] == [0xFF00, 0xFE00]
    assert rsps[0][1] is not None and "StudyInstanceUID" in rsps[0][1]


def test_findscu_cancel_and_bad_identifier(scp: DimseServer, data: Data, tmp_path: Path) -> None:
    out = tmp_path / "cancel"
    out.mkdir()
    r = dcmtk(
        "findscu", "-v", "-S", "-X", "-od", str(out), "--cancel", "1", "-aec", scp.ae_title,
        "-k", "QueryRetrieveLevel=STUDY", "-k", "StudyInstanceUID", "127.0.0.1", str(scp.port),
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "Sending Cancel Request" in r.stderr
    # 4 studies match; the SCP may have sent them all before the cancel arrived
    assert 1 <= len(list(out.glob("rsp*.dcm"))) <= 4
    assert "Releasing Association" in r.stderr  # the association survived the cancel
    bad = dcmtk(
        "findscu", "-v", "-S", "-aec", scp.ae_title, "-k", "QueryRetrieveLevel=WARD",
        "-k", "PatientID", "127.0.0.1", str(scp.port),
    )  # fmt: skip
    assert "Error: DataSetDoesNotMatchSOPClass" in bad.stderr, bad.stderr  # 0xA900
    missing = dcmtk(
        "findscu", "-v", "-S", "-aec", scp.ae_title, "-k", "PatientID", "127.0.0.1", str(scp.port)
    )  # no QueryRetrieveLevel at all
    assert "Error: DataSetDoesNotMatchSOPClass" in missing.stderr, missing.stderr
