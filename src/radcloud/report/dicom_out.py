"""The signed report as DICOM in its study: Comprehensive SR and Encapsulated PDF.

Both are filed through the one ingest path (:func:`radcloud.archive.ingest.store`),
so every PACS that queries or retrieves the study sees the report.  The SR
follows the shape of TID 2000 (Basic Diagnostic Imaging Report): a document
titled "Diagnostic Imaging Report" (LOINC 18748-4) with Findings, Impressions
and Recommendations sections (DCM 121070/121072/121074), measured values as
NUM items with UCUM units, categories as TEXT ("Lung-RADS 4A"), key images as
IMAGE references, and Verifying Observer = the signer (no template is claimed:
the local codes make it TID 2000-like, not TID 2000 conformant).  Template fields
without a standard concept use the local scheme ``99RADCLOUD``.

SOP Instance UIDs are derived from (study, version), so filing the same
version again is a duplicate, not a second copy.  An amendment's SR lists
the SR it replaces in Predecessor Documents.
"""

from __future__ import annotations

import io
import logging
import uuid
from typing import Any

import highdicom as hd
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code
from pydicom.uid import UID

from radcloud.archive import ingest, retrieve
from radcloud.archive.service import Archive
from radcloud.auth.access import Principal, system
from radcloud.dicom import wrap
from radcloud.errors import NotFound
from radcloud.jobs import queue
from radcloud.report import render, service
from radcloud.report import templates as tpl

log = logging.getLogger(__name__)

SCHEME = "99RADCLOUD"
SR_SERIES_NUMBER = 990
PDF_SERIES_NUMBER = 991
PUBLISH_LANG = "zh"
COMPREHENSIVE_SR = "1.2.840.10008.5.1.4.1.1.88.33"
_SECTIONS = {
    "findings": (codes.DCM.Findings, codes.DCM.Finding),
    "impression": (codes.DCM.Impressions, codes.DCM.Impression),
    "recommendation": (codes.DCM.Recommendations, codes.DCM.Recommendation),
}
_UNITS = {
    "mm": Code("mm", "UCUM", "millimeter"),
    "%": Code("%", "UCUM", "percent"),
    "": Code("1", "UCUM", "no units"),
}
_FILER = system("report-filing")


def derived_uid(study_uid: str, *parts: object) -> str:
    """A stable UID under 2.25 for this study's report object (PS3.5 §B.2)."""
    name = "/".join(["radcloud-report", study_uid, *map(str, parts)])
    return f"2.25.{uuid.uuid5(uuid.NAMESPACE_OID, name).int}"


def person_name(label: str) -> str:
    """A display name as a DICOM PN: one component gets a trailing '^' (PS3.5 §6.2.1.2)."""
    label = label.replace("=", " ").strip()
    return label if "^" in label else label + "^"


def _code(field: dict[str, Any]) -> Code:
    label = field.get("label", {}).get("en") or field["key"]
    return Code(field["key"][:16], SCHEME, label[:64])


def _study_dataset(archive: Archive, p: Principal, study_uid: str) -> Dataset:
    """Patient and study attributes of the study, from an indexed instance's metadata."""
    ref = retrieve.find_instances(archive, study_uid, principal=p)[0]
    ds = wrap.study_attributes(retrieve.instance_meta(archive, ref))
    return ds


def _evidence(archive: Archive, p: Principal, study: Dataset, refs: list[dict[str, Any]]
              ) -> list[Dataset]:  # fmt: skip
    out = []
    for ref in refs:
        ds = Dataset()
        ds.update(study)
        ds.SeriesInstanceUID = ref["series_uid"]
        ds.SOPInstanceUID = ref["sop_uid"]
        ds.SOPClassUID = ref["sop_class_uid"]
        out.append(ds)
    return out


def content_tree(template: dict[str, Any], content: dict[str, Any]) -> hd.sr.ContainerContentItem:
    """The SR document content: sections, values, key images."""
    root = hd.sr.ContainerContentItem(codes.LN.DiagnosticImagingReport)
    items: list[hd.sr.ContentItem] = []
    sections: dict[str, list[hd.sr.ContentItem]] = {}
    for field in template["fields"]:
        key, value = field["key"], content["fields"].get(field["key"])
        if value in (None, ""):
            continue
        if key in _SECTIONS:
            sections[key] = [hd.sr.TextContentItem(_SECTIONS[key][1], str(value),
                                                   relationship_type="CONTAINS")]  # fmt: skip
        elif field["type"] == "number":
            unit = _UNITS.get(field.get("unit", ""), Code(field.get("unit", "1"), "UCUM", "unit"))
            items.append(hd.sr.NumContentItem(_code(field), float(value), unit,
                                              relationship_type="CONTAINS"))  # fmt: skip
        else:
            text = tpl.display_value(field, value, "en") if field["type"] != "text" else value
            items.append(hd.sr.TextContentItem(_code(field), str(text),
                                               relationship_type="CONTAINS"))  # fmt: skip
    critical = content.get("critical") or {}
    if critical.get("flag"):
        note = critical.get("note") or "critical finding"
        items.append(hd.sr.TextContentItem(Code("critical", SCHEME, "Critical finding"), note,
                                           relationship_type="CONTAINS"))  # fmt: skip
    for key, (section_code, _) in _SECTIONS.items():
        if key in sections:
            box = hd.sr.ContainerContentItem(section_code, relationship_type="CONTAINS")
            box.ContentSequence = hd.sr.ContentSequence(sections[key])
            items.append(box)
    if content.get("key_images"):
        box = hd.sr.ContainerContentItem(codes.DCM.KeyImages, relationship_type="CONTAINS")
        box.ContentSequence = hd.sr.ContentSequence([
            hd.sr.ImageContentItem(
                codes.DCM.IllustrationOfFinding, ref["sop_class_uid"], ref["sop_uid"],
                referenced_frame_numbers=ref.get("frame") if ref.get("frame", 1) > 1 else None,
                relationship_type="CONTAINS",
            )
            for ref in content["key_images"]
        ])  # fmt: skip
        items.append(box)
    root.ContentSequence = hd.sr.ContentSequence(items)
    return root


def _previous_sr(archive: Archive, p: Principal, study_uid: str, sop_uid: str) -> list[Dataset]:
    if not sop_uid:
        return []
    try:
        ref = retrieve.find_instances(archive, study_uid, sop_uid=sop_uid, principal=p)[0]
    except NotFound:
        return []
    return [dcmread(io.BytesIO(retrieve.read_verified(archive, ref)))]


def build_sr(
    archive: Archive, p: Principal, study_uid: str, report: dict[str, Any],
    *, previous_sr_uid: str = "",
) -> Dataset:  # fmt: skip
    """A Comprehensive SR of the signed ``report`` (a :func:`service.get` result)."""
    content = report["content"]
    template = service.templates(archive, p).get(content["template"])
    if template is None:
        template = tpl.BUILTIN_TEMPLATES["generic"]
    study = _study_dataset(archive, p, study_uid)
    evidence = _evidence(archive, p, study, content.get("key_images", []))
    with archive.read() as conn:
        info = service.study_info(conn, p, study_uid)
    sr = hd.sr.ComprehensiveSR(
        evidence=evidence or [_as_evidence(study)],
        content=content_tree(template, content),
        series_instance_uid=derived_uid(study_uid, "sr-series"),
        series_number=SR_SERIES_NUMBER,
        sop_instance_uid=derived_uid(study_uid, "sr", report["version"]),
        instance_number=report["version"],
        manufacturer="radcloud",
        is_complete=True, is_final=True, is_verified=True,
        institution_name=info.institution_name or None,
        verifying_observer_name=person_name(report["signer"] or "Unknown"),
        verifying_organization=info.institution_name or "radcloud",
        previous_versions=_previous_sr(archive, p, study_uid, previous_sr_uid) or None,
        record_evidence=bool(evidence),
    )  # fmt: skip
    sr.SeriesDescription = "Report"
    sr.SpecificCharacterSet = "ISO_IR 192"  # Chinese text in names and findings
    return sr


def _as_evidence(study: Dataset) -> Dataset:
    """Patient/study attributes dressed as an instance (highdicom copies them from evidence)."""
    ds = Dataset()
    ds.update(study)
    ds.SeriesInstanceUID = derived_uid(str(study.StudyInstanceUID), "no-evidence")
    ds.SOPInstanceUID = derived_uid(str(study.StudyInstanceUID), "no-evidence", 1)
    ds.SOPClassUID = (
        hd.sr.ComprehensiveSRStorage
        if hasattr(hd.sr, "ComprehensiveSRStorage")
        else "1.2.840.10008.5.1.4.1.1.88.33"
    )
    return ds


def build_pdf_instance(
    archive: Archive, p: Principal, study_uid: str, report: dict[str, Any], pdf: bytes
) -> Dataset:
    """The report PDF as an Encapsulated PDF instance of the study."""
    study = _study_dataset(archive, p, study_uid)
    ds = wrap.wrap_pdf(
        pdf, study, title=f"Radiology report v{report['version']}",
        series_uid=derived_uid(study_uid, "pdf-series"), series_number=PDF_SERIES_NUMBER,
        instance_number=report["version"],
    )  # fmt: skip
    uid = UID(derived_uid(study_uid, "pdf", report["version"]))
    ds.SOPInstanceUID = uid
    ds.file_meta.MediaStorageSOPInstanceUID = uid
    return ds


#: The job filing a signed report when the first attempt failed, and its attempts
#: (the retries wait 30 s, 1 min, 2 min, …).
PUBLISH_TASK, PUBLISH_ATTEMPTS = "report.publish", 6


def publish_later(archive: Archive, study_uid: str, requested_by: str) -> int:
    """Queue the filing of the study's signed report (after a failed attempt); the job id."""
    return queue.enqueue(
        archive, PUBLISH_TASK, {"study_uid": study_uid}, study_uid=study_uid,
        dedupe_key=f"{PUBLISH_TASK}:{study_uid}", requested_by=requested_by,
        max_attempts=PUBLISH_ATTEMPTS,
    )  # fmt: skip


@queue.task(PUBLISH_TASK)
def _publish_job(archive: Archive, args: dict[str, Any], ctx: queue.JobContext) -> dict[str, str]:
    """File the latest signed version; storage or index trouble is retried later."""
    try:
        sr, pdf = publish(archive, _FILER, args["study_uid"])
    except (service.WrongState, NotFound):
        raise  # nothing signed to file, or the study is gone: retrying cannot help
    except Exception as exc:  # noqa: BLE001 - anything else may pass (disk full, DB away)
        raise queue.RetryLater(f"filing the report's SR/PDF failed: {exc}") from exc
    return {"sr_sop_uid": sr, "pdf_sop_uid": pdf}


def publish(archive: Archive, p: Principal, study_uid: str) -> tuple[str, str]:
    """File the latest signed version as SR + Encapsulated PDF; returns their SOP UIDs."""
    signed = [v for v in service.versions(archive, p, study_uid)
              if v["action"] in service.SIGNED_ACTIONS]  # fmt: skip
    if not signed:
        raise service.WrongState("the report is not signed")
    report = service.require(archive, p, study_uid, signed[-1]["version"])
    previous = derived_uid(study_uid, "sr", signed[-2]["version"]) if len(signed) > 1 else ""
    sr = build_sr(archive, p, study_uid, report, previous_sr_uid=previous)
    pdf = render.pdf(archive, p, study_uid, report["version"], PUBLISH_LANG)
    doc = build_pdf_instance(archive, p, study_uid, report, pdf)
    for ds in (sr, doc):
        ingest.store_dataset(archive, ds, source="report", principal=_FILER)
    with archive.read() as conn:
        info = service.study_info(conn, p, study_uid)
    service.set_outputs(archive, info.study_id, str(sr.SOPInstanceUID), str(doc.SOPInstanceUID))
    return str(sr.SOPInstanceUID), str(doc.SOPInstanceUID)
