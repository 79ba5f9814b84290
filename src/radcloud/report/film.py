"""Film: key images in a grid under a report header, exported or sent to a DICOM printer.

The layout is one grayscale image (black film, white text), so a printer
gets exactly what the PNG/PDF export shows.  Printing uses Basic Grayscale
Print Management (PS3.4 Annex H): Film Session → Film Box (``STANDARD\\1,1``)
→ Image Box with the composed film → print → delete the session.

Which images: the report's key images when the caller may read the report,
else a few evenly spaced images of the first image series.  Screenshots a
viewer sends (:func:`store_screenshot`) are filed in the study as Secondary
Capture images, so a key image of mode ``screenshot`` is just another instance.
"""

from __future__ import annotations

import io
import logging
import math
import subprocess
from functools import lru_cache
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from pydicom.dataset import Dataset
from pynetdicom import AE

from radcloud.archive import ingest, nodes, render_service, retrieve
from radcloud.archive.service import Archive
from radcloud.auth.access import Principal
from radcloud.auth.permissions import Perm
from radcloud.dicom import wrap
from radcloud.dicom.uids import new_uid
from radcloud.errors import InvalidRequest, NotFound, UpstreamUnavailable
from radcloud.report import dicom_out, render, service
from radcloud.report import templates as tpl

log = logging.getLogger(__name__)

#: 14 x 17 inch portrait film at about 110 dpi.
FILM_SIZE_ID = "14INX17IN"
FILM_W, FILM_H = 1540, 1870
HEADER_H = 220
MAX_IMAGES = 16
DEFAULT_IMAGES = 4
CALLING_AE = "RADCLOUD"
SEX_ZH = {"M": "男", "F": "女", "O": "其他"}
# Basic Grayscale Print Management (PS3.4 H.4): the meta SOP class and its parts
PRINT_META = "1.2.840.10008.5.1.1.9"
FILM_SESSION = "1.2.840.10008.5.1.1.1"
FILM_BOX = "1.2.840.10008.5.1.1.2"
GRAYSCALE_IMAGE_BOX = "1.2.840.10008.5.1.1.4"


@lru_cache(maxsize=4)
def _font(size: int, bold: bool = False) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """Noto Sans CJK (Debian fonts-noto-cjk) through fontconfig; PIL's own font otherwise."""
    pattern = "Noto Sans CJK SC" + (":bold" if bold else "")
    try:
        found = subprocess.run(
            ["fc-match", "-f", "%{file}:%{index}", pattern],
            capture_output=True, text=True, timeout=10, check=True,
        ).stdout  # fmt: skip
        path, _, index = found.rpartition(":")
        return ImageFont.truetype(path, size, index=int(index or 0))
    except (OSError, ValueError, subprocess.SubprocessError):
        log.warning("no CJK font found through fontconfig; film text may lack Chinese glyphs")
        return ImageFont.load_default(size)


def _references(archive: Archive, p: Principal, study_uid: str) -> list[dict[str, Any]]:
    """Key images of the report the caller may read, else a default selection."""
    report = service.get(archive, p, study_uid) if p.can(Perm.REPORT_READ) else None
    refs = list(report["content"].get("key_images", [])) if report else []
    if refs:
        return refs[:MAX_IMAGES]
    try:
        first = render_service.representative(archive, study_uid, principal=p)
    except NotFound:
        return []
    series = retrieve.find_instances(archive, study_uid, first.series_uid, principal=p)
    step = max(1, len(series) // DEFAULT_IMAGES)
    picked = series[step // 2 :: step][:DEFAULT_IMAGES]
    return [{"sop_uid": r.sop_uid, "series_uid": r.series_uid, "frame": 1} for r in picked]


def _header_lines(archive: Archive, p: Principal, study_uid: str) -> tuple[str, list[str]]:
    with archive.read() as conn:
        info = service.study_info(conn, p, study_uid)
    name = render._person(info.patient_name)
    title = f"{info.institution_name or '放射科'}   {name}   {info.patient_id}"
    lines = [
        f"性别 {SEX_ZH.get(info.patient_sex, info.patient_sex or '-')}   "
        f"出生日期 {render._date(info.patient_birth_date)}   "
        f"检查日期 {render._date(info.study_date)}   检查号 {info.accession_number or '-'}",
        f"{info.study_description} ({', '.join(info.modalities)})",
    ]
    report = service.get(archive, p, study_uid) if p.can(Perm.REPORT_READ) else None
    if report and report["status"] in service.SIGNED:
        impression = report["content"]["fields"].get("impression") or ""
        if impression:
            lines.append("诊断意见：" + " ".join(str(impression).split())[:90])
        cats = _categories(archive, p, report)
        if cats:
            lines.append("   ".join(cats))
    return title, lines


def _categories(archive: Archive, p: Principal, report: dict[str, Any]) -> list[str]:
    t = service.templates(archive, p).get(report["content"]["template"])
    if t is None:
        return []
    return [
        tpl.display_value(f, report["content"]["fields"].get(f["key"]), "zh")
        for f in t["fields"]
        if f["type"] == "category" and report["content"]["fields"].get(f["key"]) is not None
    ]


def compose(archive: Archive, p: Principal, study_uid: str) -> Image.Image:
    """The film as an 8-bit grayscale image: header band, then the image grid."""
    film = Image.new("L", (FILM_W, FILM_H), 0)
    draw = ImageDraw.Draw(film)
    title, lines = _header_lines(archive, p, study_uid)
    draw.text((30, 18), title, fill=255, font=_font(44, bold=True))
    for i, line in enumerate(lines):
        draw.text((30, 76 + i * 28), line, fill=225, font=_font(24))
    draw.line((0, HEADER_H - 4, FILM_W, HEADER_H - 4), fill=160, width=2)
    refs = _references(archive, p, study_uid)
    if not refs:
        draw.text((30, HEADER_H + 30), "（无图像）", fill=200, font=_font(32))
        return film
    cols = math.ceil(math.sqrt(len(refs)))
    rows = math.ceil(len(refs) / cols)
    cell_w, cell_h = FILM_W // cols, (FILM_H - HEADER_H) // rows
    for i, ref in enumerate(refs):
        x0, y0 = (i % cols) * cell_w, HEADER_H + (i // cols) * cell_h
        try:
            png = render.key_image_png(archive, p, study_uid, ref, size=min(cell_w, cell_h) - 8)
        except Exception:
            log.exception("film: image %s could not be rendered", ref.get("sop_uid"))
            continue
        tile = Image.open(io.BytesIO(png)).convert("L")
        film.paste(tile, (x0 + (cell_w - tile.width) // 2, y0 + (cell_h - tile.height) // 2))
        if ref.get("caption"):
            draw.text((x0 + 10, y0 + 8), str(ref["caption"])[:40], fill=255, font=_font(22))
    return film


def export(archive: Archive, p: Principal, study_uid: str, fmt: str = "png") -> bytes:
    """The film as PNG, or as a one-page PDF of the same image."""
    if fmt not in ("png", "pdf"):
        raise InvalidRequest("film format: png or pdf")
    img = compose(archive, p, study_uid)
    buf = io.BytesIO()
    if fmt == "png":
        img.save(buf, format="PNG", optimize=True)
    else:
        img.save(buf, format="PDF", resolution=110.0)
    return buf.getvalue()


# ------------------------------------------------------------------ DICOM print


def _image_box_item(img: Image.Image) -> Dataset:
    pixels = np.asarray(img, dtype=np.uint8)
    ds = Dataset()
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = pixels.shape
    ds.PixelAspectRatio = [1, 1]
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    ds.PixelData = pixels.tobytes()
    return ds


def _check(status: Dataset | None, what: str) -> None:
    code = getattr(status, "Status", None)
    if code is None or code not in (0x0000, 0xB600, 0xB602, 0xB603, 0xB604, 0xB605, 0xB609):
        shown = "no answer" if code is None else f"status 0x{code:04X}"
        raise UpstreamUnavailable(f"printer refused {what}: {shown}")


def send_to_printer(img: Image.Image, host: str, port: int, ae_title: str, *,
                    copies: int = 1, label: str = "") -> dict[str, Any]:  # fmt: skip
    """Print ``img`` on one film through Basic Grayscale Print Management."""
    ae = AE(ae_title=CALLING_AE)
    ae.add_requested_context(PRINT_META)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 60
    assoc = ae.associate(host, port, ae_title=ae_title)
    if not assoc.is_established:
        raise UpstreamUnavailable(f"printer {ae_title} at {host}:{port} refused the association")
    meta = PRINT_META
    try:
        session = Dataset()
        session.NumberOfCopies = copies
        session.PrintPriority = "MED"
        session.MediumType = "PAPER"
        session.FilmDestination = "MAGAZINE"
        session.FilmSessionLabel = label[:64]
        session_uid = new_uid()
        status, _ = assoc.send_n_create(session, FILM_SESSION, session_uid, meta_uid=meta)
        _check(status, "the film session")
        box = Dataset()
        box.ImageDisplayFormat = "STANDARD\\1,1"
        box.FilmOrientation = "PORTRAIT"
        box.FilmSizeID = FILM_SIZE_ID
        ref = Dataset()
        ref.ReferencedSOPClassUID = FILM_SESSION
        ref.ReferencedSOPInstanceUID = session_uid
        box.ReferencedFilmSessionSequence = [ref]
        box_uid = new_uid()
        status, attrs = assoc.send_n_create(box, FILM_BOX, box_uid, meta_uid=meta)
        _check(status, "the film box")
        if attrs is None or not attrs.get("ReferencedImageBoxSequence"):
            raise UpstreamUnavailable("printer answered the film box without image boxes")
        image_box = attrs.ReferencedImageBoxSequence[0]
        content = Dataset()
        content.ImageBoxPosition = 1
        content.Polarity = "NORMAL"
        content.BasicGrayscaleImageSequence = [_image_box_item(img)]
        status, _ = assoc.send_n_set(content, GRAYSCALE_IMAGE_BOX,
                                     image_box.ReferencedSOPInstanceUID, meta_uid=meta)  # fmt: skip
        _check(status, "the image")
        status, _ = assoc.send_n_action(None, 1, FILM_BOX, box_uid, meta_uid=meta)
        _check(status, "printing")
        assoc.send_n_delete(FILM_SESSION, session_uid, meta_uid=meta)
    finally:
        assoc.release()
    return {"printer": ae_title, "film_session": str(session_uid), "copies": copies,
            "film_size": FILM_SIZE_ID, "rows": img.height, "columns": img.width}  # fmt: skip


def print_film(archive: Archive, p: Principal, study_uid: str, printer: str,
               *, copies: int = 1) -> dict[str, Any]:  # fmt: skip
    """Send the study's film to a configured DICOM printer of the caller's institution."""
    try:
        node = nodes.get_node(archive, printer)
    except NotFound:
        node = None
    if node is None or not (p.is_platform or node.institution_id in p.institution_ids):
        raise InvalidRequest(f"no DICOM printer {printer!r} is configured")
    if node.host is None or node.port is None:
        raise InvalidRequest(f"DICOM node {printer!r} has no address to print to")
    img = compose(archive, p, study_uid)
    return send_to_printer(img, node.host, node.port, node.ae_title, copies=copies,
                           label=study_uid)  # fmt: skip


# ------------------------------------------------------------------ screenshots


def store_screenshot(archive: Archive, p: Principal, study_uid: str, data: bytes) -> dict[str, Any]:
    """File a viewer screenshot (PNG/JPEG) in the study; returns its key image reference."""
    p.require(Perm.REPORT_WRITE)
    if len(data) > 20 * 1024 * 1024:
        raise InvalidRequest("a screenshot is at most 20 MB")
    with archive.read() as conn:
        service.study_info(conn, p, study_uid)  # NotFound for a study the caller cannot see
    study = dicom_out._study_dataset(archive, p, study_uid)
    ds = wrap.wrap_image(
        data, study, series_description="Report screenshots",
        series_uid=dicom_out.derived_uid(study_uid, "screenshots"),
    )  # fmt: skip
    done = ingest.store_dataset(archive, ds, source="report", principal=dicom_out._FILER)
    return {"sop_uid": done.sop_uid, "series_uid": done.series_uid,
            "sop_class_uid": done.sop_class_uid, "frame": 1, "mode": "screenshot"}  # fmt: skip
