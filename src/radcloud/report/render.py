"""The report as HTML (Jinja2) and PDF (WeasyPrint, Noto CJK fonts for Chinese).

The same HTML is the browser view and the PDF source; key images are
rendered from the archive (the referenced frame with its window) and
inlined as PNG data URIs, so the PDF is self-contained.
"""

from __future__ import annotations

import base64
import logging
from dataclasses import asdict
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

import jinja2

from radcloud.archive import render_service, retrieve
from radcloud.archive.service import Archive
from radcloud.auth.access import Principal
from radcloud.errors import InvalidRequest
from radcloud.report import prefill, service
from radcloud.report import templates as tpl

log = logging.getLogger(__name__)

LANGS = ("zh", "en")
#: Jinja2 layouts (a folder apart from the report-template module ``templates.py``).
TEMPLATES_DIR = Path(__file__).parent / "html"

TEXTS: dict[str, dict[str, str]] = {
    "zh": {
        "page": "第", "department": "放射科", "patient_name": "姓名", "patient_id": "患者ID",
        "sex": "性别", "birth_date": "出生日期", "accession": "检查号", "study_date": "检查日期",
        "exam": "检查项目", "referrer": "申请医生", "critical": "危急值",
        "ai": "AI 预填 · 待确认", "key_images": "关键图像", "author": "报告医生",
        "signer": "审核医生", "signed_at": "审核时间", "amended_because": "修订原因",
        "version": "版本", "status_draft": "草稿", "status_preliminary": "初步报告",
        "status_final": "正式报告", "status_amended": "修订报告",
    },
    "en": {
        "page": "Page", "department": "Department of Radiology", "patient_name": "Name",
        "patient_id": "Patient ID", "sex": "Sex", "birth_date": "Birth date",
        "accession": "Accession", "study_date": "Study date", "exam": "Examination",
        "referrer": "Referrer", "critical": "CRITICAL FINDING",
        "ai": "AI prefill · to confirm", "key_images": "Key images", "author": "Reported by",
        "signer": "Signed by", "signed_at": "Signed at", "amended_because": "Amended because",
        "version": "version", "status_draft": "DRAFT", "status_preliminary": "PRELIMINARY",
        "status_final": "FINAL", "status_amended": "AMENDED",
    },
}  # fmt: skip


@lru_cache(maxsize=1)
def _env() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES_DIR),
        autoescape=jinja2.select_autoescape(["html", "j2"]),
        undefined=jinja2.StrictUndefined,
    )


def _date(da: str) -> str:
    return f"{da[:4]}-{da[4:6]}-{da[6:8]}" if len(da) == 8 and da.isdigit() else da


def _person(pn: str, lang: str = "zh") -> str:
    """A DICOM PN for reading: in Chinese the ideographic group when there is one
    ("王芳"), else the alphabetic one as "Family Given"."""
    groups = pn.split("=")
    order = [1, 0] if lang == "zh" else [0, 1]
    for i in order:
        if i < len(groups) and groups[i].strip("^ "):
            parts = [p for p in groups[i].split("^") if p]
            return "".join(parts) if i == 1 else " ".join(parts)
    return ""


def _when(ts: datetime | None) -> str:
    return ts.strftime("%Y-%m-%d %H:%M UTC") if ts else ""


def key_image_png(archive: Archive, p: Principal, study_uid: str, ref: dict[str, Any],
                  size: int = 512) -> bytes:  # fmt: skip
    """The referenced frame as PNG, in its saved window, at most ``size`` pixels a side."""
    inst = retrieve.find_instances(
        archive, study_uid, ref.get("series_uid"), ref["sop_uid"], principal=p
    )[0]
    window = tuple(ref["window"]) if ref.get("window") else None
    return render_service.rendered(
        archive, inst, ref.get("frame", 1), window=window,
        viewport=(size, size), fmt="png",
    )  # fmt: skip


def context(
    archive: Archive, p: Principal, study_uid: str, report: dict[str, Any], lang: str = "zh",
    *, images: bool = True,
) -> dict[str, Any]:  # fmt: skip
    """What the HTML template needs: header, values, texts, images, signature."""
    if lang not in LANGS:
        raise InvalidRequest(f"lang must be one of {', '.join(LANGS)}")
    with archive.read() as conn:
        info = service.study_info(conn, p, study_uid)
    content = report["content"]
    t = service.templates(archive, p).get(content["template"]) or tpl.BUILTIN_TEMPLATES["generic"]
    pending = set(prefill.pending(content))
    values: list[dict[str, Any]] = []
    texts: list[dict[str, Any]] = []
    for field in t["fields"]:
        value = content["fields"].get(field["key"])
        if value in (None, ""):
            continue
        label = field.get("label", {}).get(lang) or field["key"]
        item = {"label": label, "text": tpl.display_value(field, value, lang),
                "ai": field["key"] in pending}  # fmt: skip
        (texts if field["type"] == "text" else values).append(item)
    sex = {"M": ("男", "male"), "F": ("女", "female"), "O": ("其他", "other")}.get(
        info.patient_sex, (info.patient_sex, info.patient_sex)
    )
    study = asdict(info) | {
        "patient_sex": sex[0] if lang == "zh" else sex[1],
        "patient_name_display": _person(info.patient_name, lang),
        "referring_physician_display": _person(info.referring_physician, lang),
        "birth_date_display": _date(info.patient_birth_date),
        "study_date_display": _date(info.study_date),
    }
    pictures = []
    for ref in content.get("key_images", []) if images else []:
        try:
            png = key_image_png(archive, p, study_uid, ref)
        except Exception:
            log.exception("key image %s of study %s could not be rendered", ref, study_uid)
            continue
        pictures.append({"src": "data:image/png;base64," + base64.b64encode(png).decode(),
                         "caption": ref.get("caption", "")})  # fmt: skip
    versions = service.versions(archive, p, study_uid)
    reason = next((v["reason"] for v in versions if v["version"] == report["version"]), "")
    return {
        "lang": lang, "t": TEXTS[lang], "title": t["title"].get(lang) or t["name"],
        "study": study, "status": report["status"], "version": report["version"],
        "critical": content.get("critical") or {"flag": False}, "values": values,
        "texts": texts, "images": pictures, "author": report["author"],
        "signer": report["signer"] if report["status"] in service.SIGNED else "",
        "signed_at": _when(report["signed_at"]), "reason": reason,
    }  # fmt: skip


def html(archive: Archive, p: Principal, study_uid: str, version: int | None = None,
         lang: str = "zh") -> str:  # fmt: skip
    report = service.require(archive, p, study_uid, version)
    return (
        _env().get_template("report.html.j2").render(**context(archive, p, study_uid, report, lang))
    )


def pdf_from_html(text: str) -> bytes:
    import weasyprint
    from PIL import ImageFile

    # importing WeasyPrint makes Pillow accept truncated images process-wide, which
    # would let a cut-off photo be wrapped into DICOM half black: put it back
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    data: bytes = weasyprint.HTML(string=text, base_url=str(TEMPLATES_DIR)).write_pdf()
    return data


def pdf(archive: Archive, p: Principal, study_uid: str, version: int | None = None,
        lang: str = "zh") -> bytes:  # fmt: skip
    """The report as a PDF document (A4, embedded CJK fonts)."""
    return pdf_from_html(html(archive, p, study_uid, version, lang))
