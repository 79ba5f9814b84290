"""WADO-RS (PS3.18 §10.4): instances, metadata, frames, bulk data, rendered images, thumbnails.

Routes translate HTTP only: they negotiate media type and transfer syntax from
``Accept`` and call :mod:`radcloud.archive.retrieve` and
:mod:`radcloud.archive.render_service`.  Multipart responses are streamed part by
part; the first part is produced before the status line goes out, so an unknown
UID, a refused syntax or a blob failing its integrity check is a problem
response, never a truncated 200.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import Response, StreamingResponse

from radcloud.archive import render_service, retrieve
from radcloud.archive.retrieve import InstanceRef
from radcloud.auth.access import Principal
from radcloud.dicom import codecs
from radcloud.errors import BadQuery, NotAcceptable, NotFound, UnsupportedTransferSyntax
from radcloud.web import compress
from radcloud.web.deps import ArchiveDep, BaseUrlDep, Who
from radcloud.web.multipart import multipart_writer

log = logging.getLogger(__name__)
router = APIRouter()

ELE = "1.2.840.10008.1.2.1"
#: Never sent over DICOMweb (PS3.18 §8.7.3.5.2): Implicit VR LE and Explicit VR Big Endian.
NOT_WEB = {"1.2.840.10008.1.2", "1.2.840.10008.1.2.2"}
#: Frames are never deflated: native frames go out as Explicit VR Little Endian bytes.
NOT_FOR_FRAMES = NOT_WEB | {"1.2.840.10008.1.2.1.99"}
DICOM = "application/dicom"
OCTET = "application/octet-stream"
DICOM_JSON = "application/dicom+json"
PIXEL_DATA = 0x7FE00010
WINDOW_FUNCTIONS = ("linear", "linear-exact", "sigmoid")
MAX_THUMBNAIL = 1024

Accept = Annotated[str | None, Header()]
Param = Annotated[str | None, Query()]


# ------------------------------------------------------------------ Accept negotiation


@dataclass(frozen=True)
class MediaRange:
    """One media range of an Accept header, parameters lower-cased and unquoted."""

    type: str
    params: dict[str, str] = field(default_factory=dict)
    q: float = 1.0


def _split(text: str, sep: str) -> list[str]:
    """Split on ``sep`` outside double quotes."""
    out: list[str] = []
    cur: list[str] = []
    quoted = False
    for ch in text:
        if ch == '"':
            quoted = not quoted
        if ch == sep and not quoted:
            out.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    out.append("".join(cur))
    return [p.strip() for p in out if p.strip()]


def _media_range(item: str) -> MediaRange:
    first, *rest = _split(item, ";")
    params = {}
    for p in rest:
        key, _, value = p.partition("=")
        params[key.strip().lower()] = value.strip().strip('"')
    if "type" in params:
        params["type"] = params["type"].lower()
    try:
        q = float(params.pop("q", "1"))
    except ValueError:
        raise BadQuery(f"Accept: bad q value in {item!r}") from None
    return MediaRange(first.lower(), params, q)


def parse_accept(header: str | None) -> list[MediaRange] | None:
    """Acceptable ranges, most preferred first; None when the client stated nothing."""
    if header is None or not header.strip():
        return None
    ranges = [_media_range(item) for item in _split(header, ",")]
    return sorted((r for r in ranges if r.q > 0), key=lambda r: -r.q)


@dataclass(frozen=True)
class Offer:
    """One (media type, transfer syntax) the client accepts; ``*`` = any syntax."""

    q: float
    media_type: str
    ts: str


def _inner_type(r: MediaRange, default: str) -> str | None:
    """The part type a range asks for, or None when it cannot be multipart/related."""
    if r.type in ("*/*", "multipart/*"):
        return default
    if r.type == "multipart/related":
        return r.params.get("type", default)
    return None


def dicom_offers(accept: str | None) -> list[Offer]:
    """Offers for ``multipart/related; type="application/dicom"`` (default Explicit VR LE)."""
    ranges = parse_accept(accept)
    if ranges is None:
        return [Offer(1.0, DICOM, ELE)]
    offers = [
        Offer(r.q, DICOM, r.params.get("transfer-syntax", ELE))
        for r in ranges
        if _inner_type(r, DICOM) in (DICOM, "application/*", "*/*")
    ]
    if not offers:
        raise NotAcceptable(f'instances are sent as multipart/related; type="{DICOM}"')
    return offers


def _default_ts(media_type: str) -> str | None:
    if media_type == OCTET:
        return ELE
    try:
        return codecs.ts_for_media_type(media_type)
    except UnsupportedTransferSyntax:
        return None


def frame_offers(accept: str | None) -> list[Offer]:
    """Offers for frames/bulk data: octet-stream (native) or a compressed image type."""
    ranges = parse_accept(accept)
    if ranges is None:
        return [Offer(1.0, OCTET, ELE)]
    offers = []
    for r in ranges:
        inner = _inner_type(r, OCTET)
        if inner in ("*/*", "application/*"):
            inner = OCTET
        ts = r.params.get("transfer-syntax") or (_default_ts(inner) if inner else None)
        if inner and ts:
            offers.append(Offer(r.q, inner, ts))
    if not offers:
        raise NotAcceptable(
            'frames are sent as multipart/related; type="application/octet-stream" '
            "or image/jls, image/jp2, image/jphc, image/dicom-rle"
        )
    return offers


def _web_form(stored: str, excluded: set[str] = NOT_WEB) -> str:
    """What ``transfer-syntax=*`` means for data in ``stored``: itself, if DICOMweb allows it."""
    return ELE if stored in excluded else stored


def _frame_label(ts: str) -> str:
    try:
        return codecs.media_type_for(ts)
    except UnsupportedTransferSyntax:
        return ""


@dataclass(frozen=True)
class Source:
    """What one object can be sent as, for :func:`negotiate`."""

    star: str  # what ``transfer-syntax=*`` means for it
    free: Callable[[str], bool]  # syntaxes it can be sent in without codec work
    convertible: Callable[[str], bool]  # syntaxes it can be converted to
    label: Callable[[str], str]  # media type of a part in a syntax
    excluded: set[str]  # syntaxes never sent


def negotiate(src: Source, offers: list[Offer]) -> tuple[str, str] | None:
    """(media type, syntax) to answer with: best q first, and within it no conversion first."""
    for q in sorted({o.q for o in offers}, reverse=True):
        options = []
        for o in offers:
            ts = src.star if o.ts == "*" else o.ts
            mt = src.label(ts) if o.ts == "*" else o.media_type
            if o.q == q and ts not in src.excluded and src.label(ts) == mt:
                options.append((mt, ts))
        for mt, ts in options:
            if src.free(ts):
                return mt, ts
        for mt, ts in options:
            if src.convertible(ts):
                return mt, ts
    return None


def frame_plan(ref: InstanceRef, accept: str | None) -> tuple[str, str]:
    """(media type, syntax) for this instance's frames; NotAcceptable if none fits."""
    at_rest = ref.transfer_syntax_uid
    src = Source(
        star=_web_form(at_rest, NOT_FOR_FRAMES),
        free=lambda ts: render_service.same_frame_bytes(at_rest, ts),
        convertible=lambda ts: codecs.can_transcode(at_rest, ts),
        label=_frame_label,
        excluded=NOT_FOR_FRAMES,
    )
    chosen = negotiate(src, frame_offers(accept))
    if chosen is None:
        raise NotAcceptable(f"frames stored as {at_rest} cannot be sent in any accepted type")
    return chosen


def _instance_source(received: str, at_rest: str) -> Source:
    return Source(
        star=_web_form(received),
        free=lambda ts: ts in (received, at_rest),
        convertible=lambda ts: codecs.can_transcode(at_rest, ts),
        label=lambda ts: DICOM,
        excluded=NOT_WEB,
    )


def instance_plan(refs: list[InstanceRef], accept: str | None) -> dict[tuple[str, str], str]:
    """(received syntax, syntax at rest) → syntax to send, for every pair among ``refs``."""
    offers = dicom_offers(accept)
    plan = {}
    for received, at_rest in {(r.received_ts, r.transfer_syntax_uid) for r in refs}:
        chosen = negotiate(_instance_source(received, at_rest), offers)
        if chosen is None:
            raise NotAcceptable(
                f"instances received as {received} cannot be sent in any accepted transfer syntax"
            )
        plan[received, at_rest] = chosen[1]
    return plan


def _image_format(accept: str | None, png: bool = True) -> str:
    """'jpeg' or 'png' for rendered resources (JPEG by default)."""
    ranges = parse_accept(accept)
    if ranges is None:
        return "jpeg"
    for r in ranges:
        if r.type in ("image/jpeg", "image/*", "*/*"):
            return "jpeg"
        if r.type == "image/png" and png:
            return "png"
    raise NotAcceptable(
        "rendered images are available as image/jpeg" + (" or image/png" if png else "")
    )


def _require(accept: str | None, *types: str) -> None:
    ranges = parse_accept(accept)
    if ranges is not None and not any(r.type in types for r in ranges):
        raise NotAcceptable(f"this resource is available as {types[0]}")


# ------------------------------------------------------------------ multipart writer


@dataclass(frozen=True)
class Part:
    content_type: str
    body: bytes
    location: str = ""

    def headers(self) -> dict[str, str]:
        h = {"Content-Type": self.content_type}
        if self.location:
            h["Content-Location"] = self.location
        return h


class StreamAborted(RuntimeError):
    """A part failed after the response started: the connection is dropped, not completed."""


def _framed(parts: Iterable[Part]) -> Iterator[tuple[dict[str, str], bytes]]:
    try:
        for p in parts:
            yield p.headers(), p.body
    except Exception as exc:
        log.error("WADO-RS response aborted after it started: %s", exc)
        raise StreamAborted(str(exc)) from exc


async def _framed_async(
    first: Part, rest: AsyncIterator[Part]
) -> AsyncIterator[tuple[dict[str, str], bytes]]:
    yield first.headers(), first.body
    try:
        async for p in rest:
            yield p.headers(), p.body
    except Exception as exc:
        log.error("WADO-RS response aborted after it started: %s", exc)
        raise StreamAborted(str(exc)) from exc


def multipart(parts: Iterator[Part], media_type: str) -> StreamingResponse:
    """Stream ``parts`` as multipart/related; the first part is made before responding."""
    first = next(parts, None)
    if first is None:
        raise NotFound("nothing to send")
    content_type, body = multipart_writer(
        _framed(itertools.chain([first], parts)), media_type=media_type
    )
    return StreamingResponse(body, media_type=content_type)


def _url(base: str, ref: InstanceRef) -> str:
    return f"{base}/studies/{ref.study_uid}/series/{ref.series_uid}/instances/{ref.sop_uid}"


def _one(
    archive: ArchiveDep, who: Principal, study: str, series: str, instance: str
) -> InstanceRef:
    return retrieve.find_instances(archive, study, series, instance, principal=who)[0]


# ------------------------------------------------------------------ instances


def _instances(
    archive: ArchiveDep, base: str, accept: str | None, refs: list[InstanceRef]
) -> Response:
    """The instances as multipart/related: the first made before responding (so that
    a failure is still an error status), the rest streamed as the loop awaits them."""
    plan = instance_plan(refs, accept)

    def syntax(ref: InstanceRef) -> str:
        return plan[ref.received_ts, ref.transfer_syntax_uid]

    def part(ref: InstanceRef, ts: str, body: bytes) -> Part:
        return Part(f"{DICOM}; transfer-syntax={ts}", body, _url(base, ref))

    if not refs:
        raise NotFound("nothing to send")
    ts = syntax(refs[0])
    first = part(refs[0], ts, render_service.instance_in(archive, refs[0], ts))

    async def rest() -> AsyncIterator[Part]:
        async for ref, ts, body in render_service.instances_in_async(archive, refs[1:], syntax):
            yield part(ref, ts, body)

    content_type, body = multipart_writer(_framed_async(first, rest()), media_type=DICOM)
    return StreamingResponse(body, media_type=content_type)


@router.get("/studies/{study}")
def retrieve_study(
    study: str, archive: ArchiveDep, who: Who, base: BaseUrlDep, accept: Accept = None
) -> Response:
    return _instances(archive, base, accept, retrieve.find_instances(archive, study, principal=who))


@router.get("/studies/{study}/series/{series}")
def retrieve_series(
    study: str, series: str, archive: ArchiveDep, who: Who, base: BaseUrlDep, accept: Accept = None
) -> Response:
    return _instances(
        archive, base, accept, retrieve.find_instances(archive, study, series, principal=who)
    )


@router.get("/studies/{study}/series/{series}/instances/{instance}")
def retrieve_instance(
    study: str, series: str, instance: str, archive: ArchiveDep, who: Who,
    base: BaseUrlDep, accept: Accept = None,
) -> Response:  # fmt: skip
    return _instances(archive, base, accept, [_one(archive, who, study, series, instance)])


# ------------------------------------------------------------------ metadata


def _metadata(
    request: Request, archive: ArchiveDep, who: Principal, accept: str | None, *uids: str
) -> Response:
    _require(accept, DICOM_JSON, "application/json", "application/*", "*/*")
    body = retrieve.metadata(archive, *uids, principal=who)
    return compress.json_response(request, body, DICOM_JSON)


@router.get("/studies/{study}/metadata")
def study_metadata(
    study: str, request: Request, archive: ArchiveDep, who: Who, accept: Accept = None
) -> Response:
    return _metadata(request, archive, who, accept, study)


@router.get("/studies/{study}/series/{series}/metadata")
def series_metadata(
    study: str, series: str, request: Request, archive: ArchiveDep, who: Who,
    accept: Accept = None,
) -> Response:  # fmt: skip
    return _metadata(request, archive, who, accept, study, series)


@router.get("/studies/{study}/series/{series}/instances/{instance}/metadata")
def instance_metadata(
    study: str, series: str, instance: str, request: Request, archive: ArchiveDep, who: Who,
    accept: Accept = None,
) -> Response:  # fmt: skip
    return _metadata(request, archive, who, accept, study, series, instance)


# ------------------------------------------------------------------ frames and bulk data


def frame_numbers(text: str) -> list[int]:
    """``1,2,3`` → [1, 2, 3] (1-based); BadQuery otherwise."""
    try:
        numbers = [int(p) for p in text.split(",")]
    except ValueError:
        raise BadQuery(f"frame list {text!r} is not comma-separated frame numbers") from None
    if not numbers or min(numbers) < 1:
        raise BadQuery("frame numbers start at 1")
    return numbers


def _frame_parts(
    archive: ArchiveDep, ref: InstanceRef, numbers: list[int], plan: tuple[str, str], url: str
) -> Iterator[Part]:
    mt, ts = plan
    frames = render_service.iter_frames_in(archive, ref, numbers, ts)
    for n, body in zip(numbers, frames, strict=True):
        yield Part(f"{mt}; transfer-syntax={ts}", body, f"{url}/frames/{n}")


@router.get("/studies/{study}/series/{series}/instances/{instance}/frames/{frames}")
def retrieve_frames(
    study: str, series: str, instance: str, frames: str, archive: ArchiveDep, who: Who,
    base: BaseUrlDep, accept: Accept = None,
) -> Response:  # fmt: skip
    ref = _one(archive, who, study, series, instance)
    numbers, plan = frame_numbers(frames), frame_plan(ref, accept)
    return multipart(_frame_parts(archive, ref, numbers, plan, _url(base, ref)), plan[0])


def _tag(text: str) -> int:
    try:
        if len(text) == 8:
            return int(text, 16)
    except ValueError:
        pass
    raise BadQuery(f"bulk data tag {text!r} is not 8 hexadecimal digits")


def _pixel_bulkdata(
    archive: ArchiveDep, ref: InstanceRef, accept: str | None, url: str
) -> Response:
    mt, ts = frame_plan(ref, accept)
    numbers = list(range(1, ref.number_of_frames + 1))
    if mt != OCTET:  # compressed: one part per frame
        return multipart(
            _frame_parts(archive, ref, numbers, (mt, ts), url.rsplit("/bulkdata", 1)[0]), mt
        )
    body = b"".join(render_service.iter_frames_in(archive, ref, numbers, ts))
    return multipart(iter([Part(f"{OCTET}; transfer-syntax={ts}", body, url)]), OCTET)


@router.get("/studies/{study}/series/{series}/instances/{instance}/bulkdata/{tag}")
def retrieve_bulkdata(
    study: str, series: str, instance: str, tag: str, archive: ArchiveDep, who: Who,
    base: BaseUrlDep, accept: Accept = None,
) -> Response:  # fmt: skip
    ref = _one(archive, who, study, series, instance)
    number, url = _tag(tag), f"{_url(base, ref)}/bulkdata/{tag}"
    if number == PIXEL_DATA:
        return _pixel_bulkdata(archive, ref, accept, url)
    frame_offers(accept)  # 406 unless octet-stream (or anything) is acceptable
    value = render_service.bulk_value(archive, ref, number)
    return multipart(iter([Part(OCTET, value, url)]), OCTET)


# ------------------------------------------------------------------ rendered


def _numbers(
    text: str | None, name: str, count: tuple[int, ...], blank: bool = False
) -> list[float]:
    """Comma-separated numbers; with ``blank``, empty items read as 0."""
    items = (text or "").split(",")
    try:
        values = [float(v) if v.strip() or not blank else 0.0 for v in items]
    except ValueError:
        values = []
    if len(values) not in count:
        raise BadQuery(f"{name}={text!r}: expected {' or '.join(map(str, count))} numbers")
    return values


def parse_window(text: str | None) -> render_service.Window | None:
    """``center,width[,function]`` (PS3.18 §8.3.5.1.4), function linear by default."""
    if text is None:
        return None
    items = text.split(",")
    function = items.pop().strip().lower() if len(items) == 3 else "linear"
    if function not in WINDOW_FUNCTIONS:
        raise BadQuery(f"window function {function!r} is not one of {', '.join(WINDOW_FUNCTIONS)}")
    center, width = _numbers(",".join(items), "window", (2,))
    if width <= 0:
        raise BadQuery(f"window width must be positive, not {width:g}")
    return center, width, function


def parse_viewport(text: str | None) -> tuple[int, ...] | None:
    """``vw,vh[,sx,sy,sw,sh]`` (PS3.18 §8.3.5.1.3); empty source items mean the defaults."""
    if text is None:
        return None
    vw, _, region = text.partition(",")
    values = _numbers(vw, "viewport", (1,)) + _numbers(region, "viewport", (1, 5), blank=True)
    vp = tuple(int(v) for v in values)
    if vp[0] < 1 or vp[1] < 1 or max(vp[:2]) > 8192:
        raise BadQuery(f"viewport size {vp[0]}x{vp[1]} must be 1..8192 pixels")
    return vp


def parse_quality(text: str | None) -> int:
    if text is None:
        return 90
    (q,) = _numbers(text, "quality", (1,))
    if not (1 <= q <= 100 and q == int(q)):
        raise BadQuery(f"quality must be an integer 1..100, not {text!r}")
    return int(q)


def _image(fmt: str, data: bytes) -> Response:
    return Response(data, media_type=f"image/{fmt}")


def _rendered(
    archive: ArchiveDep, ref: InstanceRef, frame: int, accept: str | None,
    window: str | None, viewport: str | None, quality: str | None,
) -> Response:  # fmt: skip
    fmt = _image_format(accept)
    win, vp, q = parse_window(window), parse_viewport(viewport), parse_quality(quality)
    data = render_service.rendered(archive, ref, frame, window=win, viewport=vp, fmt=fmt, quality=q)
    return _image(fmt, data)


@router.get("/studies/{study}/series/{series}/instances/{instance}/rendered")
def rendered_instance(
    study: str, series: str, instance: str, archive: ArchiveDep, who: Who, accept: Accept = None,
    window: Param = None, viewport: Param = None, quality: Param = None,
) -> Response:  # fmt: skip
    ref = _one(archive, who, study, series, instance)
    return _rendered(archive, ref, 1, accept, window, viewport, quality)


@router.get("/studies/{study}/series/{series}/instances/{instance}/frames/{frames}/rendered")
def rendered_frames(
    study: str, series: str, instance: str, frames: str, archive: ArchiveDep, who: Who,
    base: BaseUrlDep, accept: Accept = None, window: Param = None, viewport: Param = None,
    quality: Param = None,
) -> Response:  # fmt: skip
    ref = _one(archive, who, study, series, instance)
    numbers = frame_numbers(frames)
    if len(numbers) == 1:
        return _rendered(archive, ref, numbers[0], accept, window, viewport, quality)
    fmt = _image_format(accept)
    win, vp, q = parse_window(window), parse_viewport(viewport), parse_quality(quality)
    parts = (
        Part(f"image/{fmt}", render_service.rendered(archive, ref, n, win, vp, fmt, q),
             f"{_url(base, ref)}/frames/{n}/rendered")
        for n in numbers
    )  # fmt: skip
    return multipart(parts, f"image/{fmt}")


@router.get("/studies/{study}/series/{series}/rendered")
def rendered_series(
    study: str, series: str, archive: ArchiveDep, who: Who, accept: Accept = None,
    window: Param = None, viewport: Param = None, quality: Param = None,
) -> Response:  # fmt: skip
    ref = render_service.representative(archive, study, series, principal=who)
    return _rendered(archive, ref, 1, accept, window, viewport, quality)


@router.get("/studies/{study}/rendered")
def rendered_study(
    study: str, archive: ArchiveDep, who: Who, accept: Accept = None,
    window: Param = None, viewport: Param = None, quality: Param = None,
) -> Response:  # fmt: skip
    ref = render_service.representative(archive, study, principal=who)
    return _rendered(archive, ref, 1, accept, window, viewport, quality)


# ------------------------------------------------------------------ thumbnails


def _thumbnail_size(viewport: str | None) -> int:
    vp = parse_viewport(viewport)
    return 128 if vp is None else min(max(vp[:2]), MAX_THUMBNAIL)


def _thumbnail(
    archive: ArchiveDep, ref: InstanceRef, accept: str | None, viewport: str | None
) -> Response:
    _image_format(accept, png=False)
    return _image("jpeg", render_service.thumbnail(archive, ref, _thumbnail_size(viewport)))


@router.get("/studies/{study}/thumbnail")
def study_thumbnail(
    study: str, archive: ArchiveDep, who: Who, accept: Accept = None, viewport: Param = None
) -> Response:
    return _thumbnail(
        archive, render_service.representative(archive, study, principal=who), accept, viewport
    )


@router.get("/studies/{study}/series/{series}/thumbnail")
def series_thumbnail(
    study: str,
    series: str,
    archive: ArchiveDep,
    who: Who,
    accept: Accept = None,
    viewport: Param = None,
) -> Response:
    ref = render_service.representative(archive, study, series, principal=who)
    return _thumbnail(archive, ref, accept, viewport)


@router.get("/studies/{study}/series/{series}/instances/{instance}/thumbnail")
def instance_thumbnail(
    study: str, series: str, instance: str, archive: ArchiveDep, who: Who, accept: Accept = None,
    viewport: Param = None,
) -> Response:  # fmt: skip
    return _thumbnail(archive, _one(archive, who, study, series, instance), accept, viewport)


@router.get("/studies/{study}/series/{series}/instances/{instance}/frames/{frames}/thumbnail")
def frame_thumbnail(
    study: str, series: str, instance: str, frames: str, archive: ArchiveDep, who: Who,
    accept: Accept = None, viewport: Param = None,
) -> Response:  # fmt: skip
    ref = _one(archive, who, study, series, instance)
    _image_format(accept, png=False)
    size = _thumbnail_size(viewport)
    data = render_service.rendered(archive, ref, frame_numbers(frames)[0], viewport=(size, size))
    return _image("jpeg", data)
