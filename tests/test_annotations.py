"""Measurements and key images saved as DICOM (GSPS + KOS) and read back.

Over HTTP (``/api/studies/{study}/annotations``, ``/key-images``) against an
archive holding a small CT series of known geometry; the stored objects are
read back with pydicom and checked against what was sent.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any

import _auth
import pydicom
import pytest
from dicom_factory import make_ct, make_ct_dataset, to_bytes
from fastapi.testclient import TestClient
from pydicom.uid import generate_uid

from radcloud.archive import annotations as marks
from radcloud.archive import ingest, retrieve
from radcloud.archive.service import Archive
from radcloud.auth import accounts
from radcloud.auth.access import SYSTEM
from radcloud.web.app import create_app

ROWS = 64
SPACING = 0.75


@pytest.fixture
def client(archive: Archive) -> Iterator[TestClient]:
    with TestClient(create_app(archive)) as c:
        yield c


@pytest.fixture
def study(archive: Archive) -> dict[str, Any]:
    """Three CT slices of 64×64 pixels of 0.75 mm in one series."""
    study_uid, series_uid = generate_uid(), generate_uid()
    sops = []
    for n in range(3):
        data = make_ct(
            study_uid, series_uid, instance_number=n + 1, n_rows=ROWS,
            PixelSpacing=[SPACING, SPACING], patient_name="Wang^Xiaoming=王^小明",
            charset="ISO_IR 192",
        )  # fmt: skip
        sops.append(ingest.store_bytes(archive, data).sop_uid)
    return {"study": study_uid, "series": series_uid, "sops": sops}


def _h(archive: Archive, name: str, role: str = "radiologist", inst: int = 1) -> dict[str, str]:
    return _auth.headers(archive, username=name, roles=[role], institution_id=inst)


def _state(s: dict[str, Any]) -> dict[str, Any]:
    """One of each tool the viewer saves, with awkward (full-precision) coordinates."""
    img = {"series": s["series"], "sop": s["sops"][1], "frame": 1}
    img0 = {"series": s["series"], "sop": s["sops"][0], "frame": 1}
    length = [[10.123456789012345, 20.5], [50.987654321, 20.25]]
    return {
        "annotations": [
            {"uid": "a-length", "tool": "Length", "image": img, "points": length,
             "measure": {"length": 30.648147398988, "unit": "mm"}},
            {"uid": "a-angle", "tool": "Angle", "image": img,
             "points": [[10, 10], [20, 20], [30, 10]], "measure": {"angle": 90.0}},
            {"uid": "a-cobb", "tool": "CobbAngle", "image": img,
             "points": [[5, 5], [45, 5], [5, 40], [45, 30]],
             "measure": {"angle": 14.036243467926479}},
            {"uid": "a-ellipse", "tool": "EllipticalROI", "image": img,
             "points": [[30, 44], [30, 24], [25, 34], [35, 34]],
             "measure": {"area": 88.35729338221293, "mean": 100.0, "stdDev": 0.0,
                         "areaUnit": "mm²", "modalityUnit": "HU"}},
            {"uid": "a-rect", "tool": "RectangleROI", "image": img,
             "points": [[2, 2], [12, 2], [2, 8], [12, 8]], "measure": {"area": 33.75}},
            {"uid": "a-probe", "tool": "Probe", "image": img0, "points": [[32.5, 32.5]],
             "measure": {"value": 40.0, "modalityUnit": "HU"}},
            {"uid": "a-poly", "tool": "Polyline", "image": img,
             "points": [[1, 1], [40, 1], [40, 40]], "measure": {"length": 58.5, "unit": "mm"}},
            {"uid": "a-free", "tool": "PlanarFreehandROI", "image": img, "closed": True,
             "points": [[20, 20], [30, 20], [30, 30], [20, 30]], "measure": {"area": 56.25}},
            {"uid": "a-ctr", "tool": "CardiothoracicRatio", "image": img,
             "points": [[4, 50], [60, 50]], "measure": {"length": 42.0, "unit": "mm"}},
            {"uid": "a-arrow", "tool": "ArrowAnnotate", "image": img,
             "points": [[40.25, 12.75], [55, 3]], "text": "病灶 lesion"},
            {"uid": "a-outside", "tool": "Length", "image": img,
             "points": [[-5.5, 10], [70.25, 10]], "measure": {"length": 57.5625}},
        ],
        "keyImages": [img, {"series": s["series"], "sop": s["sops"][2], "frame": 1}],
    }  # fmt: skip


def _stored(archive: Archive, study_uid: str, sop_class: str) -> list[pydicom.Dataset]:
    refs = retrieve.find_instances(archive, study_uid, principal=SYSTEM)
    return [
        pydicom.dcmread(io.BytesIO(retrieve.read_verified(archive, r)))
        for r in sorted(refs, key=lambda r: r.id)
        if r.sop_class_uid == sop_class
    ]


def test_save_then_reopen_gives_back_exactly_what_was_drawn(
    archive: Archive, client: TestClient, study: dict[str, Any]
) -> None:
    url = f"/api/studies/{study['study']}/annotations"
    doc = _h(archive, "dr-li")
    assert client.get(url, headers=doc).json() == {
        "annotations": [], "keyImages": [], "saved": None,
    }  # fmt: skip
    sent = _state(study)
    r = client.post(url, json=sent, headers=doc)
    assert r.status_code == 201, r.text
    saved = r.json()
    assert saved["annotations"] == 11 and saved["key_images"] == 2 and saved["instance_number"] == 1
    back = client.get(url, headers=doc).json()
    assert back["saved"]["sop"] == saved["pr_sop_uid"] and back["saved"]["history"] == 1
    by_uid = {a["uid"]: a for a in back["annotations"]}
    for a in sent["annotations"]:
        got = by_uid[a["uid"]]
        assert got["tool"] == a["tool"] and got["image"] == a["image"]
        assert got["points"] == [tuple(p) for p in a["points"]] or got["points"] == a["points"]
        assert got["text"] == a.get("text", "")
        assert got["measure"] == a.get("measure", {})
    assert by_uid["a-length"]["points"][0][0] == 10.123456789012345  # not float32
    assert back["keyImages"] == sent["keyImages"]


def test_the_gsps_other_viewers_read(
    archive: Archive, client: TestClient, study: dict[str, Any]
) -> None:
    url = f"/api/studies/{study['study']}/annotations"
    r = client.post(url, json=_state(study), headers=_h(archive, "dr-li"))
    assert r.status_code == 201, r.text
    [ps] = _stored(archive, study["study"], marks.GSPS)
    assert ps.SOPInstanceUID == r.json()["pr_sop_uid"]
    assert ps.Modality == "PR" and ps.StudyInstanceUID == study["study"]
    assert ps.PatientName == "Wang^Xiaoming=王^小明" and ps.PresentationCreationDate
    [ref_series] = ps.ReferencedSeriesSequence
    assert ref_series.SeriesInstanceUID == study["series"]
    assert {i.ReferencedSOPInstanceUID for i in ref_series.ReferencedImageSequence} == set(
        study["sops"]
    )
    items = ps.GraphicAnnotationSequence
    assert len(items) == 11 and {i.GraphicLayer for i in items} == {"RADCLOUD"}
    length = items[0]
    assert length.ReferencedImageSequence[0].ReferencedSOPInstanceUID == study["sops"][1]
    [g] = length.GraphicObjectSequence
    assert g.GraphicType == "POLYLINE" and g.GraphicAnnotationUnits == "PIXEL"
    assert g.GraphicData == pytest.approx([10.123456789, 20.5, 50.987654321, 20.25], abs=1e-4)
    [t] = length.TextObjectSequence
    assert t.UnformattedTextValue == "30.648147398988 mm"  # the value, full precision
    # the ellipse: major axis (top-bottom, 20 px) first, then the minor axis (10 px)
    [e] = items[3].GraphicObjectSequence
    assert e.GraphicType == "ELLIPSE"
    assert e.GraphicData == pytest.approx([30, 24, 30, 44, 25, 34, 35, 34])
    assert "Area 88.35729338221293 mm²" in items[3].TextObjectSequence[0].UnformattedTextValue
    assert "Mean 100.0 HU" in items[3].TextObjectSequence[0].UnformattedTextValue
    # Cobb: two lines; rectangle and freehand: closed polylines; probe: a point
    assert [o.GraphicType for o in items[2].GraphicObjectSequence] == ["POLYLINE", "POLYLINE"]
    assert items[4].GraphicObjectSequence[0].GraphicData == pytest.approx(
        [2, 2, 12, 2, 12, 8, 2, 8, 2, 2]
    )
    free = items[7].GraphicObjectSequence[0].GraphicData
    assert free[:2] == free[-2:] and len(free) == 10
    assert items[5].GraphicObjectSequence[0].GraphicType == "POINT"
    assert items[5].ReferencedImageSequence[0].ReferencedSOPInstanceUID == study["sops"][0]
    arrow = items[9].TextObjectSequence[0]
    assert arrow.UnformattedTextValue == "病灶 lesion" and arrow.AnchorPointVisibility == "Y"
    assert arrow.AnchorPoint == pytest.approx([40.25, 12.75])
    # graphics outside the image are clipped to it (PIXEL units must be inside)
    assert items[10].GraphicObjectSequence[0].GraphicData == pytest.approx([0, 10, 64, 10])
    # the key images: a KOS naming them
    [ko] = _stored(archive, study["study"], marks.KOS)
    assert r.json()["ko_sop_uid"] == ko.SOPInstanceUID and ko.Modality == "KO"
    named = {
        ref.ReferencedSOPInstanceUID
        for item in ko.ContentSequence
        for ref in item.get("ReferencedSOPSequence", [])
    }
    assert named == {study["sops"][1], study["sops"][2]}
    assert ko.ConceptNameCodeSequence[0].CodeValue == "113000"  # Of Interest


def test_saving_again_adds_an_instance_and_the_latest_per_user_loads(
    archive: Archive, client: TestClient, study: dict[str, Any]
) -> None:
    url = f"/api/studies/{study['study']}/annotations"
    li, wu = _h(archive, "dr-li"), _h(archive, "dr-wu", "resident")  # resident: no study.write
    first = _state(study)
    second = {"annotations": first["annotations"][:1], "keyImages": []}
    second["annotations"][0]["measure"] = {"length": 1.5, "unit": "mm"}
    assert client.post(url, json=first, headers=li).status_code == 201
    r = client.post(url, json=second, headers=li)
    assert r.status_code == 201 and r.json()["instance_number"] == 2
    back = client.get(url, headers=li).json()
    assert [a["uid"] for a in back["annotations"]] == ["a-length"]
    assert back["annotations"][0]["measure"] == {"length": 1.5, "unit": "mm"}
    assert back["keyImages"] == [] and back["saved"]["history"] == 2
    # another user has their own state; theirs does not change dr-li's
    assert client.get(url, headers=wu).json()["annotations"] == []
    r = client.post(url, json={"annotations": first["annotations"][2:4]}, headers=wu)
    assert r.status_code == 201, r.text
    assert [a["uid"] for a in client.get(url, headers=wu).json()["annotations"]] == [
        "a-cobb", "a-ellipse",
    ]  # fmt: skip
    assert [a["uid"] for a in client.get(url, headers=li).json()["annotations"]] == ["a-length"]
    stored = _stored(archive, study["study"], marks.GSPS)
    assert len(stored) == 3 and len({s.SeriesInstanceUID for s in stored}) == 2  # history kept
    # clearing everything is a state too (a PR with no graphics)
    assert (
        client.post(url, json={"annotations": [], "keyImages": []}, headers=li).status_code == 201
    )
    assert client.get(url, headers=li).json()["annotations"] == []
    # key images of every author in the study
    keys = client.get(f"/api/studies/{study['study']}/key-images", headers=wu).json()
    assert {(k["sop"], k["frame"]) for k in keys} == {(study["sops"][1], 1), (study["sops"][2], 1)}


def test_another_institutions_study_is_not_found_and_bad_input_writes_nothing(
    archive: Archive, client: TestClient, study: dict[str, Any]
) -> None:
    url = f"/api/studies/{study['study']}/annotations"
    other = accounts.create_institution(archive, "b-hosp", "B Hospital").id
    b_doc = _h(archive, "b-doc", inst=other)
    assert client.get(url, headers=b_doc).status_code == 404
    assert client.post(url, json=_state(study), headers=b_doc).status_code == 404
    assert client.get(f"/api/studies/{study['study']}/key-images", headers=b_doc).status_code == 404
    tech = _h(archive, "tech", "technologist")  # reads and stores images, does not annotate
    assert client.post(url, json=_state(study), headers=tech).status_code == 403
    doc = _h(archive, "dr-li")
    bad = _state(study)
    bad["annotations"][0]["image"]["sop"] = generate_uid()  # not in the study
    assert client.post(url, json=bad, headers=doc).status_code == 422
    bad = _state(study)
    bad["annotations"][1]["points"] = [[1, 1]]  # an angle needs 3
    assert client.post(url, json=bad, headers=doc).status_code == 400
    bad = _state(study)
    bad["keyImages"][0]["frame"] = 2  # single-frame image
    assert client.post(url, json=bad, headers=doc).status_code == 422
    assert _stored(archive, study["study"], marks.GSPS) == []
    assert _stored(archive, study["study"], marks.KOS) == []
    assert list(archive.settings.tmp_dir.iterdir()) == []


def test_a_presentation_state_from_another_system_is_read_from_its_graphics(
    archive: Archive, study: dict[str, Any]
) -> None:
    """Without radcloud's private description, the standard graphics give the measurements."""
    doc = accounts.principal_for_user(
        archive, accounts.create_user(archive, "dr-x", "test-password-1", roles=["radiologist"])
    )
    state = marks.State.model_validate(_state(study))
    marks.save(archive, study["study"], state, principal=doc)
    [ps] = _stored(archive, study["study"], marks.GSPS)
    for item in [ps, *ps.GraphicAnnotationSequence]:
        del item[marks.PRIVATE_GROUP, 0x0010]
        del item[marks.PRIVATE_GROUP, 0x1001]
    got = marks.parse_presentation_state(ps)["annotations"]
    length = next(a for a in got if a["uid"] == "pr-0-0")
    assert length["tool"] == "Length" and length["image"]["sop"] == study["sops"][1]
    assert length["points"][0] == pytest.approx((10.123456789, 20.5), abs=1e-4)
    ellipse = next(a for a in got if a["tool"] == "EllipticalROI")
    assert ellipse["points"] == [(30, 44), (30, 24), (25, 34), (35, 34)]
    assert any(a["tool"] == "PlanarFreehandROI" and len(a["points"]) == 4 for a in got)
    assert any(a["tool"] == "Probe" for a in got)


def test_measurements_on_a_colour_image_are_kept_too(archive: Archive, client: TestClient) -> None:
    """A GSPS draws on grayscale images only: an ultrasound (RGB) measurement still saves and
    comes back (from radcloud's own description), next to a CT one drawn as DICOM graphics."""
    study_uid = generate_uid()
    ct = ingest.store_bytes(archive, make_ct(study_uid, generate_uid(), n_rows=ROWS))
    us = make_ct_dataset(study_uid, generate_uid(), modality="US", n_rows=32)
    us.SamplesPerPixel, us.PhotometricInterpretation, us.PlanarConfiguration = 3, "RGB", 0
    us.BitsAllocated, us.BitsStored, us.HighBit = 8, 8, 7
    us.PixelData = bytes(32 * 32 * 3)
    del us.RescaleIntercept, us.RescaleSlope
    us_ref = ingest.store_bytes(archive, to_bytes(us))
    body = {
        "annotations": [
            {"uid": "on-us", "tool": "Length", "points": [[1.25, 2.5], [20, 2.5]],
             "image": {"series": us_ref.series_uid, "sop": us_ref.sop_uid, "frame": 1}},
            {"uid": "on-ct", "tool": "Length", "points": [[1, 1], [9, 1]],
             "image": {"series": ct.series_uid, "sop": ct.sop_uid, "frame": 1}},
        ],
        "keyImages": [{"series": us_ref.series_uid, "sop": us_ref.sop_uid, "frame": 1}],
    }  # fmt: skip
    url = f"/api/studies/{study_uid}/annotations"
    doc = _h(archive, "dr-us")
    r = client.post(url, json=body, headers=doc)
    assert r.status_code == 201, r.text
    back = client.get(url, headers=doc).json()
    assert {a["uid"] for a in back["annotations"]} == {"on-us", "on-ct"}
    assert next(a for a in back["annotations"] if a["uid"] == "on-us")["points"][0] == [1.25, 2.5]
    assert back["keyImages"] == body["keyImages"]
    [ps] = _stored(archive, study_uid, marks.GSPS)
    [item] = ps.GraphicAnnotationSequence  # only the CT measurement is DICOM graphics
    assert item.ReferencedImageSequence[0].ReferencedSOPInstanceUID == ct.sop_uid
    referenced = {i.ReferencedSOPInstanceUID for s in ps.ReferencedSeriesSequence
                  for i in s.ReferencedImageSequence}  # fmt: skip
    assert referenced == {ct.sop_uid}
