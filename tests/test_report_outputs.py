"""What a signed report turns into: PDF (Chinese), SR and Encapsulated PDF in the study, film.

The PDF page is rendered with pdftoppm and its text read back with pdftotext;
the SR is read back with pydicom/highdicom from the archive (where every PACS
would fetch it); the film goes to DCMTK's dcmprscp over Basic Grayscale Print
Management and is compared pixel for pixel with what was composed.
"""

from __future__ import annotations

import io
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import highdicom as hd
import numpy as np
import pytest
from _dimse_data import DCMTK_ENV, free_port, wait_port
from _report_world import FINDINGS, IMPRESSION, World, make_world
from PIL import Image
from pydicom import dcmread
from pydicom.dataset import Dataset

from radcloud.archive import nodes, retrieve
from radcloud.archive.service import Archive
from radcloud.auth import accounts
from radcloud.auth.access import SYSTEM
from radcloud.report import dicom_out, film, render, service

COMPREHENSIVE_SR = "1.2.840.10008.5.1.4.1.1.88.33"
ENCAPSULATED_PDF = "1.2.840.10008.5.1.4.1.1.104.1"


@pytest.fixture
def world(archive: Archive) -> World:
    return make_world(archive, slices=4, size=192)


def _signed(w: World) -> dict[str, Any]:
    a, s = w.archive, w.study
    service.create(a, w.attending, s)
    service.save(a, w.attending, s, {
        "fields": {"findings": FINDINGS, "impression": IMPRESSION, "lung_rads": "4A",
                   "largest_nodule_mm": 9.5, "nodule_type": "solid"},
        "key_images": [{"sop_uid": w.sops[1], "window": [-600, 1500], "caption": "结节 9.5 mm"},
                       {"sop_uid": w.sops[2], "caption": "纵隔窗"}],
        "critical": {"flag": True, "note": "已电话通知临床"},
    })  # fmt: skip
    return service.sign(a, w.attending, s)


def _instance(a: Archive, study: str, sop_uid: str) -> Dataset:
    ref = retrieve.find_instances(a, study, sop_uid=sop_uid, principal=SYSTEM)[0]
    return dcmread(io.BytesIO(retrieve.read_verified(a, ref)))


def _pdf_text(pdf: Path) -> str:
    return subprocess.run(["pdftotext", "-layout", str(pdf), "-"], capture_output=True,
                          text=True, check=True).stdout  # fmt: skip


def test_pdf_has_chinese_text_fonts_and_renders(world: World, tmp_path: Path) -> None:
    _signed(world)
    pdf = tmp_path / "report.pdf"
    pdf.write_bytes(render.pdf(world.archive, world.clinician, world.study))
    text = _pdf_text(pdf)
    for wanted in ("王芳", "胸部 CT", "影像所见", "右肺上叶见一实性结节", "Lung-RADS 4A",
                   "9.5 mm", "危急值", "张主任", "正式报告", "ACC-R1"):  # fmt: skip
        assert wanted in text, wanted
    fonts = subprocess.run(["pdffonts", str(pdf)], capture_output=True, text=True).stdout
    rows = [line.split() for line in fonts.splitlines()[2:]]
    assert any("Noto-Sans-CJK-SC" in r[0] for r in rows), fonts
    assert all(r[-5] == "yes" for r in rows), fonts  # every font embedded
    subprocess.run(["pdftoppm", "-r", "50", "-png", "-f", "1", "-l", "1", str(pdf),
                    str(tmp_path / "page")], check=True)  # fmt: skip
    page = np.asarray(Image.open(next(tmp_path.glob("page*.png"))).convert("L"))
    assert page.shape[0] > page.shape[1]  # A4 portrait
    assert (page < 100).mean() > 0.01  # text and the two key images are on the page
    english = tmp_path / "en.pdf"
    english.write_bytes(render.pdf(world.archive, world.clinician, world.study, lang="en"))
    assert "Findings" in _pdf_text(english) and "FINAL" in _pdf_text(english)


def _items(ds: Dataset) -> Iterator[Dataset]:
    for item in ds.get("ContentSequence", []):
        yield item
        yield from _items(item)


def _named(ds: Dataset, meaning: str) -> list[Dataset]:
    return [i for i in _items(ds) if i.ConceptNameCodeSequence[0].CodeMeaning == meaning]


def test_signing_files_sr_and_encapsulated_pdf_in_the_study(world: World, tmp_path: Path) -> None:
    report = _signed(world)
    a, s = world.archive, world.study
    assert report["sr_sop_uid"] and report["pdf_sop_uid"]
    sr = _instance(a, s, report["sr_sop_uid"])
    assert sr.SOPClassUID == COMPREHENSIVE_SR and sr.StudyInstanceUID == s
    assert (sr.CompletionFlag, sr.VerificationFlag) == ("COMPLETE", "VERIFIED")
    assert str(sr.VerifyingObserverSequence[0].VerifyingObserverName) == "张主任^"
    assert str(sr.PatientName) == "Wang^Fang=王芳" and sr.AccessionNumber == "ACC-R1"
    assert sr.ConceptNameCodeSequence[0].CodeValue == "18748-4"
    parsed = hd.sr.ComprehensiveSR.from_dataset(sr)
    assert parsed.SOPInstanceUID == report["sr_sop_uid"]
    findings = _named(sr, "Finding")
    assert [f.TextValue for f in findings] == [FINDINGS]
    assert [f.TextValue for f in _named(sr, "Impression")] == [IMPRESSION]
    size = _named(sr, "Largest nodule, mean diameter")[0].MeasuredValueSequence[0]
    assert float(size.NumericValue) == 9.5
    assert size.MeasurementUnitsCodeSequence[0].CodeValue == "mm"
    assert _named(sr, "Lung-RADS category")[0].TextValue == "Lung-RADS 4A"
    assert _named(sr, "Critical finding")[0].TextValue == "已电话通知临床"
    images = _named(sr, "Illustration of Finding")
    refs = [i.ReferencedSOPSequence[0].ReferencedSOPInstanceUID for i in images]
    assert refs == world.sops[1:3]
    evidence = sr.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence[0]
    assert {r.ReferencedSOPInstanceUID for r in evidence.ReferencedSOPSequence} == set(refs)
    doc = _instance(a, s, report["pdf_sop_uid"])
    assert doc.SOPClassUID == ENCAPSULATED_PDF and doc.MIMETypeOfEncapsulatedDocument == (
        "application/pdf"
    )
    pdf = tmp_path / "filed.pdf"
    pdf.write_bytes(bytes(doc.EncapsulatedDocument)[: doc.EncapsulatedDocumentLength])
    assert "右肺上叶见一实性结节" in _pdf_text(pdf)
    # filing again is idempotent (same UIDs: duplicates, not copies)
    assert dicom_out.publish(a, world.attending, s) == (report["sr_sop_uid"], report["pdf_sop_uid"])
    srs = [r for r in retrieve.find_instances(a, s, principal=SYSTEM)
           if r.sop_class_uid == COMPREHENSIVE_SR]  # fmt: skip
    assert len(srs) == 1


def test_an_amendment_files_a_new_sr_naming_its_predecessor(world: World, tmp_path: Path) -> None:
    first = _signed(world)
    a, s = world.archive, world.study
    amended = service.amend(a, world.attending, s,
                            {"fields": {"lung_rads": "4B"}}, "结节实性成分测量更正")  # fmt: skip
    assert amended["sr_sop_uid"] not in ("", first["sr_sop_uid"])
    sr = _instance(a, s, amended["sr_sop_uid"])
    before = sr.PredecessorDocumentsSequence[0].ReferencedSeriesSequence[0]
    assert before.ReferencedSOPSequence[0].ReferencedSOPInstanceUID == first["sr_sop_uid"]
    assert _named(sr, "Lung-RADS category")[0].TextValue == "Lung-RADS 4B"
    old = _instance(a, s, first["sr_sop_uid"])  # the first SR is still there, unchanged
    assert _named(old, "Lung-RADS category")[0].TextValue == "Lung-RADS 4A"
    pdf = tmp_path / "amended.pdf"
    doc = _instance(a, s, amended["pdf_sop_uid"])
    pdf.write_bytes(bytes(doc.EncapsulatedDocument)[: doc.EncapsulatedDocumentLength])
    text = _pdf_text(pdf)
    assert "修订报告" in text and "结节实性成分测量更正" in text


def test_film_export_has_header_and_key_images(world: World, tmp_path: Path) -> None:
    _signed(world)
    png = film.export(world.archive, world.clinician, world.study, "png")
    img = np.asarray(Image.open(io.BytesIO(png)))
    assert img.shape == (film.FILM_H, film.FILM_W) and img.dtype == np.uint8
    header, grid = img[: film.HEADER_H], img[film.HEADER_H :]
    assert (header > 200).mean() > 0.01  # white text on black
    halves = grid[:, : film.FILM_W // 2], grid[:, film.FILM_W // 2 :]
    assert all((h > 30).mean() > 0.1 for h in halves)  # two key images side by side
    pdf = film.export(world.archive, world.clinician, world.study, "pdf")
    assert pdf.startswith(b"%PDF-")
    _, lines = film._header_lines(world.archive, world.clinician, world.study)
    assert any(line.startswith("诊断意见：右肺上叶实性结节") for line in lines)
    assert "Lung-RADS 4A" in lines[-1]
    # a technologist (no report access) prints the images without the report's words
    uid = accounts.create_user(world.archive, "tech.wu", "report-pass-1", roles=["technologist"])
    tech = accounts.principal_for_user(world.archive, uid)
    _, lines = film._header_lines(world.archive, tech, world.study)
    assert not any("诊断意见" in line for line in lines)
    picked = [r["sop_uid"] for r in film._references(world.archive, tech, world.study)]
    assert picked == world.sops  # four evenly spaced images of the series (all four here)


PRINTER_CFG = """[[GENERAL]]
[DATABASE]
Directory = {db}
[PRINT]
Directory = {spool}
DetailedLog = false
BinaryLog = false
[[COMMUNICATION]]
[TESTPRINTER]
Aetitle = TESTPRINTER
Description = radcloud test print SCP
Hostname = localhost
Port = {port}
Type = LOCALPRINTER
DisableNewVRs = false
DisplayFormat = 1,1\\2,2
FilmDestination = MAGAZINE\\PROCESSOR
FilmSizeID = 8INX10IN\\14INX17IN
ImplicitOnly = false
MagnificationType = REPLICATE\\BILINEAR\\CUBIC\\NONE
MaxDensity = 320
MinDensity = 20
MaxPDU = 32768
MediumType = PAPER\\CLEAR FILM\\BLUE FILM
OmitSOPClassUIDFromCreateResponse = false
PresentationLUTMatchRequired = false
PresentationLUTinFilmSession = false
Supports12Bit = true
SupportsPresentationLUT = true
"""


@pytest.fixture
def printer(archive: Archive, tmp_path: Path) -> Iterator[Path]:
    """DCMTK's dcmprscp on a free port, registered as the DICOM node TESTPRINTER."""
    db, spool = tmp_path / "printdb", tmp_path / "spool"
    db.mkdir()
    spool.mkdir()
    port = free_port()
    cfg = tmp_path / "printer.cfg"
    cfg.write_text(PRINTER_CFG.format(db=db, spool=spool, port=port))
    proc = subprocess.Popen(["dcmprscp", "-c", str(cfg), "-p", "TESTPRINTER"], env=DCMTK_ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    wait_port(port)
    nodes.add_remote_ae(archive, "TESTPRINTER", "127.0.0.1", port, "film printer")
    yield db
    proc.terminate()
    proc.wait(10)


@pytest.mark.dcmtk
def test_film_is_printed_on_dcmprscp(world: World, printer: Path) -> None:
    _signed(world)
    done = film.print_film(world.archive, world.attending, world.study, "TESTPRINTER")
    assert done["printer"] == "TESTPRINTER" and done["film_size"] == "14INX17IN"
    deadline = time.monotonic() + 30
    while not list(printer.glob("HG_*.dcm")) and time.monotonic() < deadline:
        time.sleep(0.1)
    hardcopy = [dcmread(p) for p in printer.glob("HG_*.dcm")]
    stored_print = list(printer.glob("SP_*.dcm"))
    assert len(hardcopy) == 1 and len(stored_print) == 1
    received = hardcopy[0]
    assert (received.Rows, received.Columns) == (film.FILM_H, film.FILM_W)
    sent = np.asarray(film.compose(world.archive, world.attending, world.study))
    assert np.array_equal(received.pixel_array.astype(np.uint8), sent)
    with pytest.raises(Exception, match="no DICOM printer"):
        film.print_film(world.archive, world.stranger, world.study, "TESTPRINTER")
