"""A study, its people and a fake analysis source for the report tests."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from radcloud.archive import ingest
from radcloud.archive.service import Archive
from radcloud.auth import accounts
from radcloud.auth.access import Principal
from radcloud.report.prefill import AnalysisResult
from radcloud.testing.phantom import chest_ct_series

PATIENT = "Wang^Fang=王芳"
ACCESSION = "ACC-R1"
FINDINGS = "右肺上叶见一实性结节，平均径约 9.5 mm，边缘光整。"
IMPRESSION = "右肺上叶实性结节，Lung-RADS 4A，建议 3 个月后复查低剂量 CT。"


@dataclass
class World:
    archive: Archive
    study: str
    sops: list[str]
    resident: Principal
    attending: Principal
    clinician: Principal
    admin: Principal
    stranger: Principal  # a radiologist of another hospital


def make_world(archive: Archive, slices: int = 4, size: int = 128) -> World:
    series = list(
        chest_ct_series(slices, size, size, patient_name=PATIENT, patient_id="P100",
                        accession_number=ACCESSION)
    )  # fmt: skip
    for ds in series:
        ingest.store_dataset(archive, ds, principal=accounts.cli_principal(1))
    other = accounts.create_institution(archive, "other-hosp", "Other Hospital").id

    def person(name: str, role: str, display: str = "", inst: int = 1) -> Principal:
        uid = accounts.create_user(archive, name, "report-pass-1", roles=[role],
                                   display_name=display, institution_id=inst)  # fmt: skip
        return accounts.principal_for_user(archive, uid)

    return World(
        archive, str(series[0].StudyInstanceUID), [str(ds.SOPInstanceUID) for ds in series],
        person("res.li", "resident", "李住院"), person("att.zhang", "radiologist", "张主任"),
        person("dr.ward", "clinician", "病房医生"), person("boss", "institution_admin"),
        person("far.away", "radiologist", inst=other),
    )  # fmt: skip


class FakeAnalysis:
    """Stands in for the analysis module: fixed results for one study."""

    def __init__(self, study: str, values: dict[str, Any], **kw: Any) -> None:
        self.study = study
        self.result = AnalysisResult("lung-nodules", "0.9", values, **kw)
        self.calls = 0

    def results_for(self, archive: Archive, study_uid: str) -> Iterable[AnalysisResult]:
        self.calls += 1
        return [self.result] if study_uid == self.study else []
