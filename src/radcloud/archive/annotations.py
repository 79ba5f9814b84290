"""A viewer user's measurements and key images, kept in the study as DICOM.

Saving turns the viewer's annotations (image pixel coordinates, PS3.3
C.10.5.1.2 ``PIXEL`` units: (0, 0) is the top left corner of the top left
pixel) into a Grayscale Softcopy Presentation State (graphic and text
objects, one Graphic Annotation item per measurement, its value in full
precision in the text) and the key images into a Key Object Selection
document; both go into the study through the one ingest path, so any DICOM
viewer sees them.  Each user has one PR series and one KO series per study
(UIDs derived from the study and the user); every save adds a new instance,
the history stays, and the newest PR instance is the state that loads.

The viewer's own description of each measurement travels in a private
element next to its graphics, so a restore gives back exactly what was
drawn (DICOM's Graphic Data is 32-bit float); a PR made elsewhere is read
from its standard graphic objects.  The KO is written before the PR that
names it: if the PR cannot be stored, the previous state is still the one
that loads.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Literal

import numpy as np
import orjson
from highdicom import pr
from highdicom.ko import KeyObjectSelection, KeyObjectSelectionDocument
from highdicom.sr import CodedConcept
from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.uid import generate_uid
from sqlalchemy import select

from radcloud import __version__
from radcloud.archive import ingest
from radcloud.archive.retrieve import find_instances, read_verified
from radcloud.archive.service import Archive
from radcloud.auth.access import Principal, study_filter
from radcloud.auth.permissions import Perm
from radcloud.dicom.uids import is_valid_uid
from radcloud.errors import InvalidRequest, MalformedBody, NotFound
from radcloud.store.models import Instance, Series, Study

GSPS = "1.2.840.10008.5.1.4.1.1.11.1"
KOS = "1.2.840.10008.5.1.4.1.1.88.59"
PR_SERIES_NUMBER, KO_SERIES_NUMBER = 9901, 9902
LAYER = "RADCLOUD"
#: Private block holding the viewer's exact description (one per Graphic Annotation item,
#: and one for the state as a whole).
PRIVATE_GROUP, PRIVATE_CREATOR, PRIVATE_ELEMENT = 0x0073, "RADCLOUD ANNOTATIONS", 0x01
STATE_VERSION = 1

Tool = Literal[
    "Length", "Angle", "CobbAngle", "EllipticalROI", "RectangleROI", "Probe", "Polyline",
    "PlanarFreehandROI", "CardiothoracicRatio", "ArrowAnnotate",
]  # fmt: skip
#: How many points each tool's handles hold (None: any number from 2 on).
POINTS: dict[str, int | None] = {
    "Length": 2, "CardiothoracicRatio": 2, "ArrowAnnotate": 2, "Angle": 3, "CobbAngle": 4,
    "EllipticalROI": 4, "RectangleROI": 4, "Probe": 1, "Polyline": None,
    "PlanarFreehandROI": None,
}  # fmt: skip


class ImageRef(BaseModel):
    """One frame of one instance of the study."""

    series: str
    sop: str
    frame: int = Field(1, ge=1, le=100_000)

    @field_validator("series", "sop")
    @classmethod
    def _uid(cls, v: str) -> str:
        if not is_valid_uid(v):
            raise ValueError(f"not a UID: {v!r}")
        return v

    def key(self) -> tuple[str, int]:
        return self.sop, self.frame


class Annotation(BaseModel):
    """A measurement as the viewer holds it; ``points`` in image pixels (PIXEL units)."""

    uid: str = Field(max_length=64)
    tool: Tool
    image: ImageRef
    points: list[tuple[float, float]] = Field(max_length=20_000)
    closed: bool = False
    text: str = Field("", max_length=1000)
    #: The values shown (length, angle, area, mean …, and their units), full precision.
    measure: dict[str, float | str] = Field(default_factory=dict, max_length=40)

    @field_validator("points")
    @classmethod
    def _finite(cls, v: list[tuple[float, float]]) -> list[tuple[float, float]]:
        if not all(math.isfinite(c) for p in v for c in p):
            raise ValueError("points must be finite numbers")
        return v

    @model_validator(mode="after")
    def _point_count(self) -> Annotation:
        want = POINTS[self.tool]
        if want is None and len(self.points) < 2 or want is not None and len(self.points) != want:
            raise ValueError(f"a {self.tool} needs {want or '2 or more'} points")
        return self


class State(BaseModel):
    """Everything one save writes: the measurements and the key images."""

    annotations: list[Annotation] = Field(default_factory=list, max_length=5000)
    keyImages: list[ImageRef] = Field(default_factory=list, max_length=10_000)  # noqa: N815


@dataclass(frozen=True)
class Saved:
    """What a save wrote: the new PR instance, the KO (if any key images), and the count."""

    pr_sop_uid: str
    ko_sop_uid: str | None
    instance_number: int
    annotations: int
    key_images: int


# ------------------------------------------------------------------ who and where


def _author(principal: Principal) -> str:
    who = principal.user_id if principal.user_id is not None else principal.name
    return f"{principal.kind}:{who}"


def series_uids(study_uid: str, principal: Principal) -> tuple[str, str]:
    """The caller's PR and KO series in ``study_uid`` (the same on every node, every save)."""
    author = _author(principal)
    return (
        generate_uid(entropy_srcs=["radcloud-annotations-pr", study_uid, author]),
        generate_uid(entropy_srcs=["radcloud-annotations-ko", study_uid, author]),
    )


def _require_study(archive: Archive, study_uid: str, principal: Principal) -> None:
    """NotFound unless ``principal`` sees the study (another institution's is not there)."""
    stmt = select(Study.id).where(Study.study_uid == study_uid, study_filter(principal))
    with archive.read() as conn:
        if conn.scalar(stmt) is None:
            raise NotFound("no such study in the archive")


def _image_datasets(
    archive: Archive, study_uid: str, sops: set[str], principal: Principal
) -> dict[str, Dataset]:
    """The stored metadata of the study's instances named in ``sops`` (no bulk data)."""
    stmt = (
        select(Instance.sop_uid, Instance.metadata_json)
        .join(Series, Instance.series_fk == Series.id)
        .join(Study, Series.study_fk == Study.id)
        .where(Study.study_uid == study_uid, study_filter(principal))
        .where(Instance.sop_uid.in_(sorted(sops)))
    )  # fmt: skip
    with archive.read() as conn:
        rows = conn.execute(stmt).all()
    return {sop: _dataset(orjson.loads(text)) for sop, text in rows}


def _first_image(archive: Archive, study_uid: str, principal: Principal) -> Dataset:
    """Some grayscale image of the study: what an empty state's PR refers to."""
    stmt = (
        select(Instance.metadata_json)
        .join(Series, Instance.series_fk == Series.id)
        .join(Study, Series.study_fk == Study.id)
        .where(Study.study_uid == study_uid, study_filter(principal), Instance.rows.is_not(None))
        .order_by(Series.series_number, Instance.instance_number, Instance.id)
        .limit(50)
    )  # fmt: skip
    with archive.read() as conn:
        for text in conn.scalars(stmt):
            ds = _dataset(orjson.loads(text))
            if ds.get("SamplesPerPixel", 1) == 1 and ds.get("Modality") not in ("PR", "KO", "SR"):
                return ds
    raise InvalidRequest("the study has no grayscale image to attach annotations to")


def _dataset(meta: dict[str, Any]) -> Dataset:
    """A data set from stored DICOM JSON, bulk data left out."""
    kept = {k: v for k, v in meta.items() if "BulkDataURI" not in v and k != "7FE00010"}
    return Dataset.from_json(kept)


# ------------------------------------------------------------------ save


def save(archive: Archive, study_uid: str, state: State | Any, *, principal: Principal) -> Saved:
    """Write the caller's state as a new PR instance (and a KO when there are key images).

    ``state`` may be the request's raw JSON: it is validated once access has been checked.
    """
    principal.require(Perm.STUDY_ANNOTATE)
    _require_study(archive, study_uid, principal)
    if not isinstance(state, State):
        try:
            state = State.model_validate(state)
        except ValidationError as exc:
            detail = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
            raise MalformedBody(detail or "not a valid annotation state") from exc
    refs = [a.image for a in state.annotations] + list(state.keyImages)
    images = _image_datasets(archive, study_uid, {r.sop for r in refs}, principal)
    for r in refs:
        ds = images.get(r.sop)
        if ds is None or ds.SeriesInstanceUID != r.series:
            raise InvalidRequest(f"instance {r.sop} is not in series {r.series} of this study")
        if r.frame > int(ds.get("NumberOfFrames", 1) or 1):
            raise InvalidRequest(f"instance {r.sop} has no frame {r.frame}")
    pr_series, ko_series = series_uids(study_uid, principal)
    number = _next_number(archive, study_uid, pr_series, principal)
    # study.annotate lets a clinician add these two objects to a study they see; ingest
    # checks study.write and visibility, so it gets a caller with both, seeing no more
    writer = replace(principal, permissions=principal.permissions | {str(Perm.STUDY_WRITE)})
    ko_uid = None
    if state.keyImages:
        ko = _key_objects(state.keyImages, images, ko_series, number, principal)
        ingest.store_dataset(
            archive, ko, source="annotations", expected_study_uid=study_uid, principal=writer
        )
        ko_uid = str(ko.SOPInstanceUID)
    named = [a.image for a in state.annotations if _grayscale(images[a.image.sop])]
    named += [k for k in state.keyImages if _grayscale(images[k.sop])]
    fallback = None if named else _first_image(archive, study_uid, principal)
    gsps = _presentation_state(state, images, fallback, pr_series, number, principal, ko_uid)
    ingest.store_dataset(
        archive, gsps, source="annotations", expected_study_uid=study_uid, principal=writer
    )
    return Saved(
        str(gsps.SOPInstanceUID), ko_uid, number, len(state.annotations), len(state.keyImages)
    )


def _grayscale(ds: Dataset) -> bool:
    return int(ds.get("SamplesPerPixel", 1) or 1) == 1


def _next_number(archive: Archive, study_uid: str, series_uid: str, principal: Principal) -> int:
    try:
        refs = find_instances(archive, study_uid, series_uid, principal=principal)
    except NotFound:
        return 1
    return len(refs) + 1


def _equipment() -> dict[str, Any]:
    return {
        "manufacturer": "radcloud",
        "manufacturer_model_name": "radcloud viewer",
        "software_versions": __version__,
        "device_serial_number": "1",
    }


def _presentation_state(
    state: State,
    images: dict[str, Dataset],
    fallback: Dataset | None,
    series_uid: str,
    number: int,
    principal: Principal,
    ko_uid: str | None,
) -> Dataset:
    layer = pr.GraphicLayer(layer_name=LAYER, order=1, description="radcloud measurements")
    # a grayscale presentation state draws on grayscale images only: measurements on colour
    # images (ultrasound, photos) are kept in radcloud's own description of the state
    grey = [a for a in state.annotations if _grayscale(images[a.image.sop])]
    colour = [a for a in state.annotations if not _grayscale(images[a.image.sop])]
    items = [_graphic_annotation(a, images[a.image.sop], layer) for a in grey]
    named = [images[r.sop] for r in [a.image for a in grey] + state.keyImages]
    referenced = _unique([ds for ds in named if _grayscale(ds)])
    gsps = pr.GrayscaleSoftcopyPresentationState(
        referenced_images=referenced or ([fallback] if fallback is not None else []),
        series_instance_uid=series_uid,
        series_number=PR_SERIES_NUMBER,
        sop_instance_uid=generate_uid(),
        instance_number=number,
        content_label="RADCLOUD",
        content_description=f"Measurements by {principal.name}"[:64],
        graphic_annotations=items or None,  # type: ignore[arg-type]
        graphic_layers=[layer] if items else None,
        content_creator_name=_person(principal.name),
        specific_character_set="ISO_IR 192",
        **_equipment(),
    )
    gsps.SeriesDescription = f"Annotations ({principal.name})"[:64]
    whole = {
        "version": STATE_VERSION,
        "author": _author(principal),
        "keyImages": [r.model_dump() for r in state.keyImages],
        "colourAnnotations": [a.model_dump() for a in colour],
        "keyObjectSelection": ko_uid,
        "savedAt": datetime.now(UTC).isoformat(),
    }
    _put_private(gsps, whole)
    return gsps


def _unique(datasets: list[Dataset]) -> list[Dataset]:
    seen: dict[str, Dataset] = {}
    for ds in datasets:
        seen.setdefault(str(ds.SOPInstanceUID), ds)
    return list(seen.values())


def _person(name: str) -> str:
    """A user name as a one-component person name (family name only, hence the caret)."""
    return (name.replace("^", " ").replace("=", " ")[:60] or "radcloud") + "^"


def _put_private(ds: Dataset, value: dict[str, Any]) -> None:
    block = ds.private_block(PRIVATE_GROUP, PRIVATE_CREATOR, create=True)
    block.add_new(PRIVATE_ELEMENT, "UT", orjson.dumps(value).decode())


def _get_private(ds: Dataset) -> dict[str, Any] | None:
    try:
        block = ds.private_block(PRIVATE_GROUP, PRIVATE_CREATOR)
        raw = block[PRIVATE_ELEMENT].value
    except KeyError:
        return None
    if isinstance(raw, bytes):
        raw = raw.decode("utf-8")
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


# ------------------------------------------------------------------ graphics


def _graphic_annotation(a: Annotation, image: Dataset, layer: pr.GraphicLayer) -> Dataset:
    """One measurement: its graphics (clipped to the image, as PIXEL units must be) and text."""
    cols, rows = float(image.Columns), float(image.Rows)
    pts = np.array(a.points, dtype=float)
    pts[:, 0] = pts[:, 0].clip(0, cols)
    pts[:, 1] = pts[:, 1].clip(0, rows)
    graphics = [
        pr.GraphicObject(kind, data, "PIXEL") for kind, data in _shapes(a.tool, pts, a.closed)
    ]
    text = _text(a)
    texts = []
    if text:
        anchor = pts[0] if a.tool == "ArrowAnnotate" else pts[-1]
        texts.append(
            pr.TextObject(
                text_value=text[:1024], units="PIXEL",
                anchor_point=(float(anchor[0]), float(anchor[1])),
                anchor_point_visible=a.tool == "ArrowAnnotate",
            )
        )  # fmt: skip
    frames = int(image.get("NumberOfFrames", 1) or 1)
    item = pr.GraphicAnnotation(
        referenced_images=[image],
        graphic_layer=layer,
        referenced_frame_number=a.image.frame if frames > 1 else None,
        graphic_objects=graphics,
        text_objects=texts or None,
    )
    _put_private(item, a.model_dump())
    return item


def _shapes(tool: str, p: np.ndarray, closed: bool) -> list[tuple[str, np.ndarray]]:
    """The DICOM graphic objects that draw ``tool`` with handle points ``p``."""
    if tool == "Probe":
        return [("POINT", p[:1])]
    if tool == "CobbAngle":
        return [("POLYLINE", p[0:2]), ("POLYLINE", p[2:4])]
    if tool == "EllipticalROI":  # Cornerstone's handles: bottom, top, left, right
        a, b = p[[1, 0]], p[[2, 3]]
        major, minor = (a, b) if _span(a) >= _span(b) else (b, a)
        return [("ELLIPSE", np.vstack([major, minor]))]
    if tool == "RectangleROI":  # top left, top right, bottom left, bottom right
        return [("POLYLINE", p[[0, 1, 3, 2, 0]])]
    if tool == "PlanarFreehandROI" or (tool == "Polyline" and closed):
        return [("POLYLINE", np.vstack([p, p[:1]]))]
    return [("POLYLINE", p)]


def _span(p: np.ndarray) -> float:
    return float(np.hypot(*(p[1] - p[0])))


_LABELS = {
    "length": "", "angle": "", "ctr": "CTR", "area": "Area", "mean": "Mean", "stdDev": "SD",
    "min": "Min", "max": "Max", "perimeter": "Perimeter", "value": "",
}  # fmt: skip


def _text(a: Annotation) -> str:
    """The measurement's text, values in full precision (shortest exact decimal)."""
    m = a.measure
    unit_of = {
        "length": m.get("unit", "mm"), "perimeter": m.get("unit", "mm"), "angle": "°",
        "area": m.get("areaUnit", "mm²"), "mean": m.get("modalityUnit", ""),
        "stdDev": m.get("modalityUnit", ""), "min": m.get("modalityUnit", ""),
        "max": m.get("modalityUnit", ""), "value": m.get("modalityUnit", ""), "ctr": "",
    }  # fmt: skip
    parts = [a.text] if a.text else []
    for key, label in _LABELS.items():
        v = m.get(key)
        if isinstance(v, float | int) and math.isfinite(v):
            parts.append(" ".join(x for x in (label, repr(float(v)), str(unit_of[key])) if x))
    return "; ".join(parts)


def _key_objects(
    keys: list[ImageRef],
    images: dict[str, Dataset],
    series_uid: str,
    number: int,
    principal: Principal,
) -> Dataset:
    title = CodedConcept(value="113000", scheme_designator="DCM", meaning="Of Interest")
    selected = _unique([images[k.sop] for k in keys])
    content = KeyObjectSelection(
        document_title=title, referenced_objects=selected,
        description=f"Key images by {principal.name}"[:64],
    )  # fmt: skip
    ko = KeyObjectSelectionDocument(
        evidence=selected,
        content=content,
        series_instance_uid=series_uid,
        series_number=KO_SERIES_NUMBER,
        sop_instance_uid=generate_uid(),
        instance_number=number,
        manufacturer="radcloud",
        specific_character_set="ISO_IR 192",
    )
    ko.SeriesDescription = f"Key images ({principal.name})"[:64]
    _put_private(ko, {"version": STATE_VERSION, "keyImages": [k.model_dump() for k in keys]})
    return ko


# ------------------------------------------------------------------ load


def load(archive: Archive, study_uid: str, *, principal: Principal) -> dict[str, Any]:
    """The caller's latest saved state in ``study_uid`` (empty when never saved)."""
    _require_study(archive, study_uid, principal)
    pr_series, _ = series_uids(study_uid, principal)
    try:
        refs = find_instances(archive, study_uid, pr_series, principal=principal)
    except NotFound:
        return {"annotations": [], "keyImages": [], "saved": None}
    latest = max(refs, key=lambda r: r.id)
    ds = dcmread(io.BytesIO(read_verified(archive, latest)))
    state = parse_presentation_state(ds)
    state["saved"] = {
        "sop": latest.sop_uid,
        "instanceNumber": int(ds.get("InstanceNumber", 0) or 0),
        "history": len(refs),
        "date": str(ds.get("PresentationCreationDate", "")),
        "time": str(ds.get("PresentationCreationTime", "")),
    }
    return state


def parse_presentation_state(ds: Dataset) -> dict[str, Any]:
    """The viewer's JSON from a GSPS: exact from radcloud's private description, else from
    the standard graphic objects (PRs made by other systems)."""
    whole = _get_private(ds) or {}
    out: list[dict[str, Any]] = []
    series_of = {
        str(img.ReferencedSOPInstanceUID): str(s.SeriesInstanceUID)
        for s in ds.get("ReferencedSeriesSequence", [])
        for img in s.get("ReferencedImageSequence", [])
    }
    for n, item in enumerate(ds.get("GraphicAnnotationSequence", [])):
        mine = _get_private(item)
        if mine is not None:
            try:
                out.append(Annotation.model_validate(mine).model_dump())
                continue
            except ValueError:
                pass
        out.extend(_from_graphics(item, series_of, n))
    for extra in whole.get("colourAnnotations", []):
        try:
            out.append(Annotation.model_validate(extra).model_dump())
        except ValueError:
            continue
    keys = []
    for k in whole.get("keyImages", []):
        try:
            keys.append(ImageRef.model_validate(k).model_dump())
        except ValueError:
            continue
    return {"annotations": out, "keyImages": keys}


def _from_graphics(item: Dataset, series_of: dict[str, str], n: int) -> list[dict[str, Any]]:
    """Standard graphic objects in PIXEL units as viewer annotations (best effort)."""
    refs = item.get("ReferencedImageSequence", [])
    if not refs:
        return []
    ref = refs[0]
    sop = str(ref.ReferencedSOPInstanceUID)
    frame = (_frames(ref.get("ReferencedFrameNumber")) or [1])[0]
    image = {"series": series_of.get(sop, ""), "sop": sop, "frame": frame}
    text = " ".join(str(t.UnformattedTextValue) for t in item.get("TextObjectSequence", []))
    out = []
    for k, g in enumerate(item.get("GraphicObjectSequence", [])):
        if g.get("GraphicAnnotationUnits") != "PIXEL":
            continue
        pts = np.array(g.GraphicData, dtype=float).reshape(-1, 2).tolist()
        kind = str(g.GraphicType)
        closed = len(pts) > 2 and pts[0] == pts[-1]
        tool = {"POINT": "Probe", "ELLIPSE": "EllipticalROI"}.get(kind)
        if kind == "ELLIPSE":  # major, minor → Cornerstone's bottom, top, left, right
            pts = [pts[1], pts[0], pts[2], pts[3]]
        if tool is None:
            tool = "PlanarFreehandROI" if closed else "Length" if len(pts) == 2 else "Polyline"
            if closed:
                pts = pts[:-1]
        try:
            ann = Annotation.model_validate(
                {"uid": f"pr-{n}-{k}", "tool": tool, "image": image, "points": pts,
                 "closed": closed, "text": text[:1000]}
            )  # fmt: skip
        except ValueError:
            continue
        out.append(ann.model_dump())
    return out


def key_images(archive: Archive, study_uid: str, *, principal: Principal) -> list[dict[str, Any]]:
    """Every key image flagged in the study's KO documents (any author, any system)."""
    _require_study(archive, study_uid, principal)
    stmt = (
        select(Instance.id)
        .join(Series, Instance.series_fk == Series.id)
        .join(Study, Series.study_fk == Study.id)
        .where(Study.study_uid == study_uid, study_filter(principal), Instance.sop_class_uid == KOS)
    )  # fmt: skip
    with archive.read() as conn:
        ids = set(conn.scalars(stmt))
    if not ids:
        return []
    seen: dict[tuple[str, int], dict[str, Any]] = {}
    for ref in find_instances(archive, study_uid, principal=principal):
        if ref.id not in ids:
            continue
        ds = dcmread(io.BytesIO(read_verified(archive, ref)))
        for key in _ko_references(ds):
            seen.setdefault((key["sop"], key["frame"]), {**key, "document": ref.sop_uid})
    return list(seen.values())


def _ko_references(ds: Dataset) -> list[dict[str, Any]]:
    mine = _get_private(ds)
    if mine and isinstance(mine.get("keyImages"), list):
        return [ImageRef.model_validate(k).model_dump() for k in mine["keyImages"]]
    series_of = {
        str(i.ReferencedSOPInstanceUID): str(s.SeriesInstanceUID)
        for e in ds.get("CurrentRequestedProcedureEvidenceSequence", [])
        for s in e.get("ReferencedSeriesSequence", [])
        for i in s.get("ReferencedSOPSequence", [])
    }
    out = []
    for item in ds.get("ContentSequence", []):
        for ref in item.get("ReferencedSOPSequence", []):
            sop = str(ref.ReferencedSOPInstanceUID)
            for f in _frames(ref.get("ReferencedFrameNumber")) or [1]:
                out.append({"series": series_of.get(sop, ""), "sop": sop, "frame": f})
    return out


def _frames(value: Any) -> list[int]:
    """Referenced Frame Number (IS, one or many values) as ints."""
    if value is None or value == "":
        return []
    if isinstance(value, MultiValue | list | tuple):
        return [int(v) for v in value]
    return [int(value)]
