"""Server-side 3D over HTTP: open a series as a volume, request views, move cross-hairs,
save results as a derived series.

Routes translate HTTP only; :mod:`radcloud.volume.service` does the work.  A view
is one GET whose query says everything about it (stateless: any node can answer,
cuts of the virtual scalpel included), answered with the image and an
``X-Radcloud-View`` header (JSON) describing the plane or camera and the
cross-hair.  Interactive clients send ``client``, ``viewport`` and an increasing
``seq``; a request older than one already seen for the same viewport is answered
``204 No Content`` (``X-Radcloud-Superseded-By``), so only the latest view is
rendered while the user drags.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal, TypeVar

import orjson
from fastapi import APIRouter, Body, Depends, Query
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from radcloud.errors import BadQuery
from radcloud.volume import vr
from radcloud.volume.service import (
    CurvedRequest,
    RenderedView,
    SaveRequest,
    Superseded,
    ViewRequest,
    VolumeService,
)
from radcloud.web.deps import ArchiveDep, Who, invalid, validated

router = APIRouter()

_SERIES = "/volume/studies/{study}/series/{series}"
Vec3 = Annotated[list[float], Field(min_length=3, max_length=3)]
JsonBody = Annotated[dict[str, Any] | None, Body()]
B = TypeVar("B", bound=BaseModel)


class ViewBody(BaseModel):
    """One view (MPR or VR); the JSON twin of the ``view`` query parameters."""

    model_config = ConfigDict(allow_inf_nan=False)

    kind: Literal["mpr", "vr"] = "mpr"
    plane: Literal["axial", "coronal", "sagittal"] = "axial"
    angles: Vec3 = Field(default_factory=lambda: [0.0, 0.0, 0.0], description="degrees")
    u: Vec3 | None = None
    v: Vec3 | None = None
    cursor: Vec3 | None = None
    center: Vec3 | None = None
    pixel_mm: float | None = Field(None, gt=0)
    width: int = Field(512, ge=1, le=2048)
    height: int = Field(512, ge=1, le=2048)
    slab_mm: float = Field(0.0, ge=0, le=500)
    mode: Literal["mip", "minip", "avg"] = "mip"
    window: Annotated[list[float], Field(min_length=2, max_length=2)] | None = None
    format: Literal["jpeg", "png", "webp"] = "jpeg"
    quality: int = Field(90, ge=1, le=100)
    preset: str = "bone"
    opacity: list[Annotated[list[float], Field(min_length=2, max_length=2)]] | None = None
    colors: list[Annotated[list[float], Field(min_length=4, max_length=4)]] | None = None
    shading: bool = True
    orientation: str = "anterior"
    azimuth: float = 0.0
    elevation: float = 0.0
    roll: float = 0.0
    cuts: list[dict[str, Any]] = Field(default_factory=list)
    client: str = Field("", max_length=64)
    viewport: str = Field("", max_length=64)
    seq: int | None = None

    def request(self) -> ViewRequest:
        settings = vr.VRSettings(
            preset=self.preset,
            opacity=[(p[0], p[1]) for p in self.opacity] if self.opacity else None,
            color=[(c[0], (c[1], c[2], c[3])) for c in self.colors] if self.colors else None,
            shading=self.shading,
            orientation=self.orientation,
            azimuth=self.azimuth,
            elevation=self.elevation,
            roll=self.roll,
            pixel_mm=self.pixel_mm,
            center=_vec(self.center),
            cuts=self.cuts,
        )
        return ViewRequest(
            kind=self.kind, plane=self.plane, angles=_vec(self.angles) or (0.0, 0.0, 0.0),
            u=_vec(self.u), v=_vec(self.v), cursor=_vec(self.cursor), center=_vec(self.center),
            pixel_mm=self.pixel_mm, width=self.width, height=self.height, slab_mm=self.slab_mm,
            mode=self.mode, window=(self.window[0], self.window[1]) if self.window else None,
            fmt=self.format, quality=self.quality, vr=settings, client=self.client,
            viewport=self.viewport, seq=self.seq,
        )  # fmt: skip


def _vec(v: list[float] | None) -> tuple[float, float, float] | None:
    return (float(v[0]), float(v[1]), float(v[2])) if v is not None else None


def _numbers(text: str | None, name: str, n: int | None = None) -> list[float] | None:
    if text is None or text == "":
        return None
    try:
        out = [float(p) for p in text.split(",")]
    except ValueError:
        raise BadQuery(f"{name} must be comma-separated numbers") from None
    if n is not None and len(out) != n:
        raise BadQuery(f"{name} must be {n} comma-separated numbers")
    if not all(math.isfinite(x) for x in out):
        raise BadQuery(f"{name} must be finite numbers")
    return out


def _pairs(text: str | None, name: str, width: int) -> list[list[float]] | None:
    """``v:a,v:a`` (opacity) or ``v:#rrggbb,...`` (colours) points."""
    if not text:
        return None
    out = []
    for item in text.split(","):
        value, _, rest = item.partition(":")
        try:
            if width == 2:
                out.append([float(value), float(rest)])
            else:
                rgb = rest.lstrip("#")
                if len(rgb) != 6:
                    raise ValueError
                out.append([float(value), *(int(rgb[i : i + 2], 16) / 255 for i in (0, 2, 4))])
        except ValueError:
            raise BadQuery(f"{name}: bad point {item!r}") from None
    return out


def view_query(
    kind: Literal["mpr", "vr"] = "mpr",
    plane: Literal["axial", "coronal", "sagittal"] = "axial",
    angles: Annotated[str | None, Query(description="a,b,c degrees about u, v, normal")] = None,
    u: Annotated[str | None, Query(description="x,y,z screen-right direction")] = None,
    v: Annotated[str | None, Query(description="x,y,z screen-down direction")] = None,
    cursor: Annotated[str | None, Query(description="x,y,z shared cross-hair, mm")] = None,
    center: Annotated[str | None, Query(description="x,y,z image centre (pan), mm")] = None,
    pixel_mm: Annotated[float | None, Query(gt=0, description="zoom: mm per pixel")] = None,
    width: Annotated[int, Query(ge=1, le=2048)] = 512,
    height: Annotated[int, Query(ge=1, le=2048)] = 512,
    slab_mm: Annotated[float, Query(ge=0, le=500)] = 0.0,
    mode: Literal["mip", "minip", "avg"] = "mip",
    window: Annotated[str | None, Query(description="center,width")] = None,
    format: Literal["jpeg", "png", "webp"] = "jpeg",
    quality: Annotated[int, Query(ge=1, le=100)] = 90,
    preset: str = "bone",
    opacity: Annotated[str | None, Query(description="value:opacity,... (per mm)")] = None,
    colors: Annotated[str | None, Query(description="value:#rrggbb,...")] = None,
    shading: bool = True,
    orientation: str = "anterior",
    azimuth: float = 0.0,
    elevation: float = 0.0,
    roll: float = 0.0,
    cuts: Annotated[str | None, Query(description="JSON list of scalpel cuts")] = None,
    client: Annotated[str, Query(max_length=64)] = "",
    viewport: Annotated[str, Query(max_length=64)] = "",
    seq: int | None = None,
) -> ViewBody:
    """The view query parameters as a :class:`ViewBody`."""
    try:
        cut_list = orjson.loads(cuts) if cuts else []
    except orjson.JSONDecodeError:
        raise BadQuery("cuts must be a JSON list") from None
    if not isinstance(cut_list, list):
        raise BadQuery("cuts must be a JSON list")
    try:
        return ViewBody(
            kind=kind, plane=plane, angles=_numbers(angles, "angles", 3) or [0.0, 0.0, 0.0],
            u=_numbers(u, "u", 3), v=_numbers(v, "v", 3), cursor=_numbers(cursor, "cursor", 3),
            center=_numbers(center, "center", 3), pixel_mm=pixel_mm, width=width, height=height,
            slab_mm=slab_mm, mode=mode, window=_numbers(window, "window", 2), format=format,
            quality=quality, preset=preset, opacity=_pairs(opacity, "opacity", 2),
            colors=_pairs(colors, "colors", 4), shading=shading, orientation=orientation,
            azimuth=azimuth, elevation=elevation, roll=roll, cuts=cut_list, client=client,
            viewport=viewport, seq=seq,
        )  # fmt: skip
    except ValidationError as exc:
        raise invalid(exc, BadQuery) from None


@router.get(_SERIES)
def open_volume(study: str, series: str, archive: ArchiveDep, who: Who) -> dict[str, Any]:
    """Build (or find) the series' volume: geometry, default window, presets, histogram."""
    return VolumeService.of(archive).describe(study, series, principal=who)


@router.get(_SERIES + "/view")
def view(
    study: str,
    series: str,
    archive: ArchiveDep,
    who: Who,
    body: Annotated[ViewBody, Depends(view_query)],
) -> Response:
    """One rendered view; ``X-Radcloud-View`` says what it shows, 204 when superseded."""
    try:
        out = VolumeService.of(archive).view(study, series, body.request(), principal=who)
    except Superseded as exc:
        return Response(status_code=204, headers={"X-Radcloud-Superseded-By": str(exc.latest)})
    return _image_response(out)


def _image_response(out: RenderedView) -> Response:
    return Response(
        out.content,
        media_type=out.media_type,
        headers={"X-Radcloud-View": orjson.dumps(out.info).decode(), "Cache-Control": "no-store"},
    )


class CrosshairBody(BaseModel):
    """Viewports by name; move the cursor to ``cursor`` or to a picked pixel of one view."""

    model_config = ConfigDict(allow_inf_nan=False)

    views: dict[str, ViewBody] = Field(min_length=1, max_length=8)
    cursor: Vec3 | None = None
    pick_view: str | None = None
    pick: Annotated[list[float], Field(min_length=2, max_length=2)] | None = None


def _parse(model: type[B], study: str, series: str, body: Any, archive: Any, who: Any) -> B:
    """Validate ``body`` only once the caller is known to see the series (404 first)."""
    VolumeService.of(archive).check(study, series, principal=who)
    if body is None:
        raise BadQuery("a JSON body is required")
    return validated(model, body, BadQuery)


@router.post(_SERIES + "/crosshair")
def crosshair(
    study: str, series: str, archive: ArchiveDep, who: Who, body: JsonBody = None
) -> dict[str, Any]:
    """Where the shared cross-hair lies in every viewport (pixel and patient mm)."""
    req = _parse(CrosshairBody, study, series, body, archive, who)
    pick = None
    if req.pick is not None:
        if req.pick_view is None:
            raise BadQuery("pick needs pick_view (the name of the view it was made in)")
        pick = (req.pick_view, req.pick[0], req.pick[1])
    views = {name: v.request() for name, v in req.views.items()}
    return VolumeService.of(archive).crosshair(
        study, series, views, req.cursor, pick, principal=who
    )


class CurvedBody(BaseModel):
    """A curved planar reformat along ``path`` (patient mm points, e.g. a vessel centre line)."""

    model_config = ConfigDict(allow_inf_nan=False)

    path: list[Vec3] = Field(min_length=2, max_length=5000)
    kind: Literal["straightened", "stretched"] = "straightened"
    width: int = Field(256, ge=1, le=2048)
    pixel_mm: float | None = Field(None, gt=0)
    direction: Vec3 | None = None
    angle: float = 0.0
    window: Annotated[list[float], Field(min_length=2, max_length=2)] | None = None
    format: Literal["jpeg", "png", "webp"] = "jpeg"
    quality: int = Field(90, ge=1, le=100)
    client: str = Field("", max_length=64)
    viewport: str = Field("", max_length=64)
    seq: int | None = None

    def request(self) -> CurvedRequest:
        return CurvedRequest(
            path=[(p[0], p[1], p[2]) for p in self.path], kind=self.kind, width=self.width,
            pixel_mm=self.pixel_mm, direction=_vec(self.direction), angle=self.angle,
            window=(self.window[0], self.window[1]) if self.window else None, fmt=self.format,
            quality=self.quality, client=self.client, viewport=self.viewport, seq=self.seq,
        )  # fmt: skip


@router.post(_SERIES + "/cpr")
def curved(
    study: str, series: str, archive: ArchiveDep, who: Who, body: JsonBody = None
) -> Response:
    """Curved planar reformat (stretched or straightened); 204 when superseded."""
    req = _parse(CurvedBody, study, series, body, archive, who)
    try:
        out = VolumeService.of(archive).curved(study, series, req.request(), principal=who)
    except Superseded as exc:
        return Response(status_code=204, headers={"X-Radcloud-Superseded-By": str(exc.latest)})
    return _image_response(out)


class SaveBody(BaseModel):
    """Store ``count`` images of ``view`` as a new series of the same study."""

    model_config = ConfigDict(allow_inf_nan=False)

    view: ViewBody = Field(default_factory=lambda: ViewBody.model_validate({}))
    cpr: CurvedBody | None = Field(None, description="save this curved reformat instead")
    count: int = Field(1, ge=1, le=1000)
    step_mm: float | None = Field(None, gt=0)
    angle_step: float | None = None
    description: str = Field("", max_length=64)
    series_number: int | None = Field(None, ge=1)


@router.post(_SERIES + "/derived", status_code=201)
def save_derived(
    study: str, series: str, archive: ArchiveDep, who: Who, body: JsonBody = None
) -> dict[str, Any]:
    """Save a reformat or rendering as a derived series (through the one ingest path)."""
    req = _parse(SaveBody, study, series, body, archive, who)
    save = SaveRequest(
        view=req.view.request(), count=req.count, step_mm=req.step_mm,
        angle_step=req.angle_step, description=req.description,
        series_number=req.series_number,
        curved=req.cpr.request() if req.cpr is not None else None,
    )  # fmt: skip
    return VolumeService.of(archive).save(study, series, save, principal=who)


@router.get("/volume/presets")
def presets() -> dict[str, Any]:
    """VR presets (opacity and colour points) and camera orientations, for editors."""
    return {"presets": vr.PRESETS, "orientations": vr.ORIENTATIONS}
