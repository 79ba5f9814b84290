"""What an open share shows: its exams, a study's summary, series, rendered images, DICOM,
report, e-film.

A link opens the studies of its scope (:func:`radcloud.share.links.scope_studies`);
:func:`exams` lists them and :func:`choose` selects the one a call names (by
the UID the link shows; any other is NotFound).  A de-identified share
(``Share.deidentify``) only ever hands out what
:class:`radcloud.share.deid.Deidentifier` made of the study under the share's
own secret: metadata, UIDs (the study, series and instance UIDs in its URLs are
the replaced ones), the DICOM files of the zip, pixels (the burned-in band of
ultrasound / screen captures is blacked out in rendered images too), and the
report's text with names, IDs, accession and institution removed and dates
shifted as in the images.  The report PDF and the e-film name the patient, so
they come only with the patient's own (identified) links.  Everything is read
through the archive's services under :func:`radcloud.share.links.reader`, one
study at a time.
"""

from __future__ import annotations

import io
import logging
import os
import tempfile
import zipfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.fileset import FileSet
from sqlalchemy import select

from radcloud.archive import render_service, retrieve
from radcloud.archive.retrieve import InstanceRef
from radcloud.archive.service import Archive
from radcloud.errors import NotFound
from radcloud.render import pixels
from radcloud.report.models import Report
from radcloud.share import links
from radcloud.share.deid import (
    BURNED_IN_MODALITIES,
    Deidentifier,
    Options,
    band_height,
    scrub_text,
    text_identifiers,
)
from radcloud.share.links import reader
from radcloud.store.models import Series, Study

log = logging.getLogger(__name__)

MODALITY_TAG = "00080060"
#: Attributes of the summary and series list (after de-identification when it applies).
STUDY_KEYS = ("PatientName", "PatientID", "PatientSex", "PatientAge", "PatientBirthDate",
              "StudyDate", "StudyTime", "StudyDescription", "AccessionNumber",
              "InstitutionName")  # fmt: skip
IDENTIFIED_ONLY = "this link is de-identified; the report PDF and the film name the patient"
#: Report states a patient may read; any other is "pending" (a draft is nobody's business yet).
READY = ("final", "amended")
#: Modalities of documents filed with a study (report SR, PDF, key-object notes,
#: segmentations), not of the exam itself: left out of the exam list's modalities.
DOCUMENTS = {"SR", "DOC", "KO", "PR", "SEG", "REG", "RWV"}
#: Type 1 keys of the DICOMDIR records (PS3.3 F.5) and the dummy put in a shared file
#: where de-identification emptied them (action Z allows a dummy value).
RECORD_DUMMIES: dict[str, Any] = {"PatientID": "ANONYMOUS", "StudyDate": "19000101",
                                  "StudyTime": "000000", "StudyID": "1", "Modality": "OT",
                                  "SeriesNumber": 1, "InstanceNumber": 1}  # fmt: skip


def deidentifier(r: Any) -> Deidentifier | None:
    """The share's de-identifier (its own secret), or None for an identified link."""
    return Deidentifier(bytes.fromhex(r.secret), Options()) if r.deidentify else None


def study_uid(archive: Archive, r: Any) -> str:
    with archive.read() as conn:
        return str(conn.scalar(select(Study.study_uid).where(Study.id == r.study_fk)))


def choose(archive: Archive, r: Any, study: str | None) -> Any:
    """The link reading the study ``study`` names (its UID as the link shows it) — the
    link's own study when none is named; NotFound, the same for every other study, whether
    it exists or not."""
    if not study:
        return r
    d = deidentifier(r)
    ids = links.scope_studies(archive, r)
    with archive.read() as conn:
        rows = conn.execute(select(Study.id, Study.study_uid).where(Study.id.in_(ids))).all()
    for row in rows:
        if (d.uid(row.study_uid) if d else row.study_uid) == study:
            return links.at_study(r, row.id)
    raise NotFound(links.NO_EXAM)


def exams(archive: Archive, r: Any) -> list[dict[str, Any]]:
    """The studies the link opens, newest first: date, modalities, description, report
    state (``ready`` | ``pending``), as the link shows them (de-identified when it is)."""
    ids = links.scope_studies(archive, r)
    d = deidentifier(r)
    with archive.read() as conn:
        status = dict(
            conn.execute(
                select(Report.study_fk, Report.status).where(Report.study_fk.in_(ids))
            ).all()
        )
        mods: dict[int, set[str]] = {}
        documents: set[str] = set()  # series of filed documents, not counted as images
        for sid, series_uid, modality in conn.execute(
            select(Series.study_fk, Series.series_uid, Series.modality)
            .where(Series.study_fk.in_(ids))
        ):  # fmt: skip
            if modality in DOCUMENTS:
                documents.add(series_uid)
            else:
                mods.setdefault(int(sid), set()).add(str(modality or ""))
    out = []
    for sid in ids:
        found = refs(archive, links.at_study(r, sid))
        if not found:
            continue
        ds = _shown(d, _meta_dataset(archive, found[0]))
        images = [ref for ref in found if ref.series_uid not in documents]
        out.append({
            "study": d.uid(found[0].study_uid) if d else found[0].study_uid,
            "StudyDate": _text(ds, "StudyDate"), "StudyTime": _text(ds, "StudyTime"),
            "StudyDescription": _text(ds, "StudyDescription"),
            "modalities": sorted(m for m in mods.get(sid, set()) if m),
            "series": len({ref.series_uid for ref in images}), "instances": len(images),
            "report": "ready" if status.get(sid) in READY else "pending",
            "own": sid == r.study_fk,
        })  # fmt: skip
    return out


def refs(archive: Archive, r: Any) -> list[InstanceRef]:
    return retrieve.find_instances(archive, study_uid(archive, r), principal=reader(archive, r))


def _meta_dataset(archive: Archive, ref: InstanceRef) -> Dataset:
    """The stored DICOM JSON of an instance as a data set (no bulk data)."""
    meta = retrieve.instance_meta(archive, ref)
    meta = {k: v for k, v in meta.items() if "BulkDataURI" not in v and "InlineBinary" not in v}
    return Dataset.from_json(meta)


def _shown(d: Deidentifier | None, ds: Dataset) -> Dataset:
    return d.apply(ds)[0] if d is not None else ds


def _text(ds: Dataset, keyword: str) -> str:
    value = ds.get(keyword, "")
    return "" if value is None else str(value)


def summary(archive: Archive, r: Any) -> dict[str, Any]:
    """The study as the share shows it: patient and exam lines, modalities, counts."""
    found = refs(archive, r)
    d = deidentifier(r)
    ds = _shown(d, _meta_dataset(archive, found[0]))
    series = list(dict.fromkeys(ref.series_uid for ref in found))
    out: dict[str, Any] = {key: _text(ds, key) for key in STUDY_KEYS}
    out.update({
        "StudyInstanceUID": d.uid(found[0].study_uid) if d else found[0].study_uid,
        "series": len(series), "instances": len(found), "deidentified": d is not None,
        "report": True, "report_pdf": not r.deidentify, "film": not r.deidentify,
        "scope": r.scope,
    })  # fmt: skip
    return out


def series(archive: Archive, r: Any) -> list[dict[str, Any]]:
    """Series in viewing order, each with its instances (UIDs as this share names them)."""
    found = refs(archive, r)
    d = deidentifier(r)
    uid = d.uid if d else (lambda u: u)
    grouped: dict[str, list[InstanceRef]] = {}
    for ref in found:
        grouped.setdefault(ref.series_uid, []).append(ref)
    out = []
    for original, members in grouped.items():
        ds = _shown(d, _meta_dataset(archive, members[0]))
        out.append({
            "SeriesInstanceUID": uid(original), "Modality": _text(ds, "Modality"),
            "SeriesNumber": _text(ds, "SeriesNumber"),
            "SeriesDescription": _text(ds, "SeriesDescription"),
            "Rows": ds.get("Rows"), "Columns": ds.get("Columns"),
            "PixelSpacing": [float(v) for v in ds.get("PixelSpacing") or []] or None,
            "instances": [{"SOPInstanceUID": uid(m.sop_uid), "frames": m.number_of_frames}
                          for m in members],
        })  # fmt: skip
    return out


def find(archive: Archive, r: Any, series_uid: str, sop_uid: str) -> InstanceRef:
    """The instance a share URL names (by the share's UIDs); NotFound otherwise."""
    d = deidentifier(r)
    for ref in refs(archive, r):
        s, i = (d.uid(ref.series_uid), d.uid(ref.sop_uid)) if d else (ref.series_uid, ref.sop_uid)
        if s == series_uid and i == sop_uid:
            return ref
    raise NotFound("no such image in this share")


def rendered(
    archive: Archive, r: Any, series_uid: str, sop_uid: str, *, frame: int = 1,
    fmt: str = "jpeg", size: int | None = None, window: Sequence[Any] | None = None,
) -> bytes:  # fmt: skip
    """One frame as JPEG/PNG, with the burned-in band masked as in the shared DICOM;
    ``window`` (center, width) in modality units, default the instance's own."""
    ref = find(archive, r, series_uid, sop_uid)
    if not 1 <= frame <= ref.number_of_frames:
        raise NotFound(f"the image has {ref.number_of_frames} frame(s), no frame {frame}")
    f = render_service.frame_pixels(archive, ref, frame)
    arr = f.pixels
    modality = str((f.meta.get(MODALITY_TAG, {}).get("Value") or [""])[0]).upper()
    if r.deidentify and modality in BURNED_IN_MODALITIES:
        arr = arr.copy()
        arr[: band_height(arr.shape[0])] = 0
    viewport = (size, size) if size else None
    return pixels.render(arr, f.meta, window=window, viewport=viewport, fmt=fmt,
                         photometric=f.photometric)  # fmt: skip


def shared_dataset(archive: Archive, r: Any, ref: InstanceRef) -> Dataset:
    """The instance as the share hands it out (de-identified when the share is)."""
    ds = dcmread(io.BytesIO(retrieve.read_original(archive, ref)))
    return _shown(deidentifier(r), ds)


def _save_for_fileset(ds: Dataset, path: Path) -> None:
    for key, dummy in RECORD_DUMMIES.items():
        if ds.get(key) in (None, ""):
            setattr(ds, key, dummy)
    ds.save_as(path, enforce_file_format=True)


def _add(fs: FileSet, path: Path) -> None:
    """Add a file to the File-set; one lacking a value its record needs gets the dummy."""
    try:
        fs.add(path)
    except (ValueError, InvalidDicomError):
        _save_for_fileset(dcmread(path, force=True), path)
        fs.add(path)


@contextmanager
def dicom_zip(archive: Archive, r: Any) -> Iterator[Path]:
    """A zip of the share's DICOM files with a DICOMDIR (PS3.10 File-set); removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="radcloud-share-") as tmp:
        root = Path(tmp)
        staged, fileset = root / "staged", root / "fileset"
        staged.mkdir()
        fs = FileSet()
        fs.ID = "RADCLOUD"
        unlisted: list[Path] = []
        for n, ref in enumerate(refs(archive, r)):
            path = staged / f"{n:06d}.dcm"
            if r.deidentify:
                _save_for_fileset(shared_dataset(archive, r, ref), path)
            else:  # the patient's own files, exactly as received
                path.write_bytes(retrieve.read_original(archive, ref))
            try:
                _add(fs, path)
            except ValueError as exc:  # no directory record fits it: still handed out
                log.warning("share %d: %s left out of the DICOMDIR: %s", r.id, ref.sop_uid, exc)
                unlisted.append(path)
        fs.write(fileset)
        out = root / "study.zip"
        with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as z:
            for dirpath, _dirs, files in os.walk(fileset):
                for name in sorted(files):
                    full = Path(dirpath) / name
                    z.write(full, full.relative_to(fileset).as_posix())
            for n, path in enumerate(unlisted):
                z.write(path, f"OTHER/OT{n:06d}")
        yield out


def report_pdf(archive: Archive, r: Any, lang: str = "zh") -> bytes:
    """The signed report as PDF (identified links only)."""
    if r.deidentify:
        raise NotFound(IDENTIFIED_ONLY)
    from radcloud.report import render

    return render.pdf(archive, reader(archive, r), study_uid(archive, r), lang=lang)


#: What the phone page shows of a report (the PDF's header, values, texts and signature).
REPORT_STUDY_KEYS = ("institution_name", "patient_name_display", "patient_id", "patient_sex",
                     "birth_date_display", "accession_number", "study_date_display",
                     "study_description", "modalities", "referring_physician_display")  # fmt: skip


def report_view(archive: Archive, r: Any, lang: str = "zh") -> dict[str, Any]:
    """The signed report as data for the phone page: the same content as the PDF, so that
    it reflows and zooms on a small screen; de-identified with the link (:func:`_deid_report`)."""
    from radcloud.report import render, service

    p, uid = reader(archive, r), study_uid(archive, r)
    ctx = render.context(archive, p, uid, service.require(archive, p, uid), lang, images=False)
    out = {k: ctx[k] for k in ("lang", "title", "status", "version", "critical", "values",
                               "texts", "author", "signer", "signed_at")}  # fmt: skip
    out["study"] = {k: ctx["study"].get(k) for k in REPORT_STUDY_KEYS}
    out["labels"] = ctx["t"]
    d = deidentifier(r)
    return out if d is None else _deid_report(archive, r, d, out)


def _deid_report(archive: Archive, r: Any, d: Deidentifier, out: dict[str, Any]) -> dict[str, Any]:
    """The report as a de-identified link shows it: the header as the shared images name the
    study (pseudonym, shifted date, no names, accession or institution), no author or signer,
    and every string (findings, impression, values, the signing time) with the patient's,
    visit's and people's identifiers replaced and dates moved by the images' shift."""
    source = _meta_dataset(archive, refs(archive, r)[0])
    shown = _shown(d, source)
    delta = d.shift(str(source.get("PatientID", "") or ""))
    people = [
        out["author"],
        out["signer"],
        *(
            out["study"].get(k) or ""
            for k in ("patient_name_display", "referring_physician_display", "institution_name")
        ),
    ]
    identifiers = text_identifiers(source, people)

    def walk(value: Any) -> Any:
        if isinstance(value, str):
            return scrub_text(value, identifiers, delta)
        if isinstance(value, dict):
            return {k: walk(v) for k, v in value.items()}
        if isinstance(value, list):
            return [walk(v) for v in value]
        return value

    shared = {k: (v if k == "labels" else walk(v)) for k, v in out.items()}
    shared["study"] = {**shared["study"], "institution_name": "", "patient_name_display": "",
                       "patient_id": _text(shown, "PatientID"), "birth_date_display": "",
                       "accession_number": "", "referring_physician_display": "",
                       "study_date_display": _date_display(_text(shown, "StudyDate")),
                       "study_description": _text(shown, "StudyDescription")}  # fmt: skip
    shared.update(author="", signer="", deidentified=True)
    return shared


def _date_display(da: str) -> str:
    return f"{da[:4]}-{da[4:6]}-{da[6:8]}" if len(da) == 8 and da.isdigit() else da


def film(archive: Archive, r: Any, fmt: str = "png") -> bytes:
    """The e-film (key images + signed impression) as PNG or PDF (identified links only)."""
    if r.deidentify:
        raise NotFound(IDENTIFIED_ONLY)
    from radcloud.report import film as films

    return films.export(archive, reader(archive, r), study_uid(archive, r), fmt)
