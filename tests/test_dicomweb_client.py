"""A real DICOMweb client (dicomweb-client) against a real uvicorn server — both back ends."""

from __future__ import annotations

import _auth
import pytest
import requests
from dicom_factory import make_ct_dataset
from dicomweb_client.api import DICOMwebClient
from pydicom import Dataset
from pydicom.uid import generate_uid

from radcloud.archive.service import Archive


@pytest.fixture
def client(base_url: str, archive: Archive) -> DICOMwebClient:
    return DICOMwebClient(url=base_url, headers=_auth.headers(archive))


def _study(patient_id: str, name: str = "Zhang^Wei=张^伟") -> tuple[str, list[Dataset]]:
    study = generate_uid()
    ct, pt = generate_uid(), generate_uid()
    kw = dict(patient_id=patient_id, patient_name=name, charset="ISO_IR 192")
    datasets = [make_ct_dataset(study, ct, instance_number=i, **kw) for i in (1, 2, 3)]
    datasets.append(make_ct_dataset(study, pt, modality="PT", series_number=2, **kw))
    return study, datasets


def test_store_then_search_all_levels(client: DICOMwebClient) -> None:
    study, datasets = _study("DWC1")
    result = client.store_instances(datasets)
    refs = result.ReferencedSOPSequence
    assert [r.ReferencedSOPInstanceUID for r in refs] == [d.SOPInstanceUID for d in datasets]
    assert result.RetrieveURL.endswith(f"/studies/{study}")
    assert "FailedSOPSequence" not in result

    (found,) = client.search_for_studies(search_filters={"PatientID": "DWC1"})
    ds = Dataset.from_json(found)
    assert ds.StudyInstanceUID == study
    assert list(ds.ModalitiesInStudy) == ["CT", "PT"]
    assert int(ds.NumberOfStudyRelatedInstances) == 4

    series = [Dataset.from_json(s) for s in client.search_for_series(study)]
    assert [s.Modality for s in series] == ["CT", "PT"]
    assert [int(s.NumberOfSeriesRelatedInstances) for s in series] == [3, 1]

    ct_uid = series[0].SeriesInstanceUID
    instances = client.search_for_instances(study, ct_uid)
    got = [Dataset.from_json(i).SOPInstanceUID for i in instances]
    assert got == [d.SOPInstanceUID for d in datasets[:3]]


def test_relational_search_and_paging(client: DICOMwebClient) -> None:
    for pid in ("DWC2", "DWC3", "DWC4"):
        client.store_instances(_study(pid)[1])
    pts = client.search_for_instances(search_filters={"Modality": "PT", "PatientID": "DWC*"})
    assert sorted(Dataset.from_json(i).PatientID for i in pts) == ["DWC2", "DWC3", "DWC4"]
    all_series = client.search_for_series(search_filters={"PatientID": "DWC3"})
    assert len(all_series) == 2
    page1 = client.search_for_studies(limit=2)
    page2 = client.search_for_studies(limit=2, offset=2)
    assert len(page1) == 2 and len(page2) == 1
    everything = client.search_for_studies()
    assert [s["0020000D"] for s in page1 + page2] == [s["0020000D"] for s in everything]


def test_fuzzy_chinese_name_and_no_match(client: DICOMwebClient) -> None:
    study, datasets = _study("DWC5", name="Zhang^Wei=张^伟")
    client.store_instances(datasets)
    found = client.search_for_studies(search_filters={"PatientName": "张伟"}, fuzzymatching=True)
    assert [Dataset.from_json(f).StudyInstanceUID for f in found] == [study]
    assert str(Dataset.from_json(found[0]).PatientName) == "Zhang^Wei=张^伟"
    assert client.search_for_studies(search_filters={"PatientID": "NOBODY"}) == []


def test_store_into_a_named_study_and_refusals(client: DICOMwebClient) -> None:
    study, datasets = _study("DWC6")
    result = client.store_instances(datasets[:1], study_instance_uid=study)
    assert len(result.ReferencedSOPSequence) == 1
    with pytest.raises(requests.HTTPError) as err:
        client.store_instances(datasets[1:2], study_instance_uid=generate_uid())
    assert err.value.response.status_code == 409
    bad = make_ct_dataset(sop_class_uid="1.2.3.4")
    with pytest.raises(requests.HTTPError) as err:
        client.store_instances([bad])
    assert err.value.response.status_code == 409
    assert Dataset.from_json(err.value.response.json()).FailedSOPSequence[0].FailureReason == 0x0122
