"""What the HTTP routes call: find the series (404 unless the caller sees it), get its
volume from the cache, render a view, drop views a newer request superseded.

One :class:`VolumeService` per archive (in ``archive.caches``) holds the volume
cache, the render slots (``volume_render_threads``: 3D renders queue there, so
one user's rotating VR cannot take every core from ingest) and the
latest-request-wins sequencer.  All of it is per process: a node that has not
built a volume builds it, and a client talks to whichever node it reaches.
"""

from __future__ import annotations

import os
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any

import numba
import numpy as np
from sqlalchemy import func, select

from radcloud.archive import retrieve
from radcloud.archive.service import Archive
from radcloud.auth.access import Principal, study_filter
from radcloud.errors import BadQuery, NotFound
from radcloud.render.pixels import first as pixels_first
from radcloud.store.models import Instance, Series, Study
from radcloud.volume import build, cpr, encode, mpr, save, vr
from radcloud.volume.build import Volume
from radcloud.volume.cache import VolumeCache

MAX_SIZE = 2048
_create_lock = threading.Lock()


class Superseded(Exception):
    """A newer request of the same client viewport arrived; this one is dropped."""

    def __init__(self, latest: int) -> None:
        super().__init__(f"superseded by request {latest}")
        self.latest = latest


@dataclass
class ViewRequest:
    """One image of one viewport; what ``GET .../view`` parameters describe."""

    kind: str = "mpr"  # mpr | vr
    plane: str = "axial"
    angles: tuple[float, float, float] = (0.0, 0.0, 0.0)
    u: tuple[float, float, float] | None = None
    v: tuple[float, float, float] | None = None
    cursor: tuple[float, float, float] | None = None  # shared cross-hair point (patient mm)
    center: tuple[float, float, float] | None = None  # image centre (pan); default the volume's
    pixel_mm: float | None = None  # zoom; default fits the volume
    width: int = 512
    height: int = 512
    slab_mm: float = 0.0
    mode: str = "mip"
    window: tuple[float, float] | None = None
    fmt: str = "jpeg"
    quality: int = 90
    vr: vr.VRSettings = field(default_factory=vr.VRSettings)
    client: str = ""  # with viewport and seq: latest request wins
    viewport: str = ""
    seq: int | None = None

    def check(self) -> None:
        if not (1 <= self.width <= MAX_SIZE and 1 <= self.height <= MAX_SIZE):
            raise BadQuery(f"width and height must be 1..{MAX_SIZE}")
        if self.pixel_mm is not None and not self.pixel_mm > 0:
            raise BadQuery("pixel_mm must be positive")
        if not 1 <= self.quality <= 100:
            raise BadQuery("quality must be 1..100")
        if self.window is not None and self.window[1] <= 0:
            raise BadQuery("window width must be positive")
        encode.media_type(self.fmt)


@dataclass
class CurvedRequest:
    """A curved planar reformat along ``path`` (patient mm); see :mod:`radcloud.volume.cpr`."""

    path: list[tuple[float, float, float]]
    kind: str = "straightened"
    width: int = 256
    pixel_mm: float | None = None
    direction: tuple[float, float, float] | None = None
    angle: float = 0.0
    window: tuple[float, float] | None = None
    fmt: str = "jpeg"
    quality: int = 90
    client: str = ""
    viewport: str = ""
    seq: int | None = None


@dataclass(frozen=True)
class RenderedView:
    """Image bytes plus what the client needs to interact with them."""

    content: bytes
    media_type: str
    info: dict[str, Any]


class Sequencer:
    """Latest request wins, per (caller, client, viewport); remembers ``size`` viewports."""

    def __init__(self, size: int = 10000) -> None:
        self._latest: OrderedDict[tuple[str, str, str], int] = OrderedDict()
        self._lock = threading.Lock()
        self.size = size

    def begin(self, key: tuple[str, str, str], seq: int) -> None:
        """Register request ``seq``; raise :class:`Superseded` if a newer one was seen."""
        with self._lock:
            latest = self._latest.get(key)
            if latest is not None and seq < latest:
                raise Superseded(latest)
            self._latest[key] = seq
            self._latest.move_to_end(key)
            while len(self._latest) > self.size:
                self._latest.popitem(last=False)

    def check(self, key: tuple[str, str, str], seq: int) -> None:
        """Raise :class:`Superseded` if a newer request for ``key`` arrived meanwhile."""
        with self._lock:
            latest = self._latest.get(key, seq)
        if latest > seq:
            raise Superseded(latest)


class VolumeService:
    """The per-archive volume cache, render slots and sequencer."""

    def __init__(self, archive: Archive) -> None:
        s = archive.settings
        self.archive = archive
        self.cache: VolumeCache[Volume] = VolumeCache(int(s.volume_cache_mb) * 1024 * 1024)
        renders = max(1, int(s.volume_render_threads))
        self.slots = threading.BoundedSemaphore(renders)
        #: Compiled loops share the cores between the renders running at once, so that
        #: all of 3D together uses at most the machine's cores and ingest is never starved.
        numba_threads = int(numba.config.NUMBA_NUM_THREADS)  # type: ignore[attr-defined]
        self.cores = max(1, min(numba_threads, os.cpu_count() or 1))
        self._active = 0
        self._active_lock = threading.Lock()
        self.building = threading.BoundedSemaphore(1)  # one volume build at a time
        self.sequencer = Sequencer()
        self.decode_threads = max(1, int(s.volume_decode_threads))

    @classmethod
    def of(cls, archive: Archive) -> VolumeService:
        with _create_lock:
            svc = archive.caches.get("volume")
            if svc is None:
                svc = archive.caches["volume"] = cls(archive)
        assert isinstance(svc, VolumeService)
        return svc

    # -------------------------------------------------------------- volumes

    def check(self, study_uid: str, series_uid: str, *, principal: Principal) -> str:
        """The series' version key; NotFound unless it exists and ``principal`` may see it.

        One aggregate row (instance count, newest instance, last change), not the
        instance list: this runs for every view.
        """
        stmt = (
            select(func.count(Instance.id), func.max(Instance.id), Series.updated_at)
            .join(Series, Instance.series_fk == Series.id)
            .join(Study, Series.study_fk == Study.id)
            .where(
                Study.study_uid == study_uid,
                Series.series_uid == series_uid,
                study_filter(principal),
            )
            .group_by(Series.id, Series.updated_at)
        )
        with self.archive.read() as conn:
            row = conn.execute(stmt).first()
        if row is None or not row[0]:
            raise NotFound("no such series in the archive")
        return f"{series_uid}:{row[0]}:{row[1]}:{row[2]}"

    def volume(self, study_uid: str, series_uid: str, *, principal: Principal) -> Volume:
        """The series' volume, built once and cached; NotFound if ``principal`` cannot see it."""
        key = self.check(study_uid, series_uid, principal=principal)

        def make() -> Volume:
            with self.building:
                refs = retrieve.find_instances(
                    self.archive, study_uid, series_uid, principal=principal
                )
                metas = build.load_metadata(self.archive, refs, principal=principal)
                vol = build.build_volume(
                    self.archive, refs, metas, decode_threads=self.decode_threads
                )
            vol.key = key
            return vol

        if self.cache.peek(key) is None:  # new or changed series: drop older versions
            self.cache.discard(f"{series_uid}:")
        return self.cache.get(key, make)

    def describe(self, study_uid: str, series_uid: str, *, principal: Principal) -> dict[str, Any]:
        """Geometry, default window, value range, presets and value histogram of the series'
        volume (the histogram is what the transfer-function editor draws over)."""
        vol = self.volume(study_uid, series_uid, principal=principal)
        lo, hi = vol.value_range
        return {
            "study_uid": vol.study_uid,
            "series_uid": vol.series_uid,
            "modality": vol.modality,
            "geometry": vol.geometry.describe(),
            "center": [round(float(c), 4) for c in vol.geometry.center],
            "window": list(vol.window),
            "value_range": [lo, hi],
            "bytes": vol.nbytes,
            "build_seconds": round(vol.build_seconds, 3),
            "presets": sorted(vr.PRESETS),
            "orientations": sorted(vr.ORIENTATIONS),
            "histogram": vr.histogram(vol),
        }

    # -------------------------------------------------------------- views

    @contextmanager
    def slot(self) -> Iterator[None]:
        """Hold one of the 3D render slots (and use this thread's share of the cores)."""
        with self.slots:
            with self._active_lock:
                self._active += 1
                threads = max(1, self.cores // self._active)
            numba.set_num_threads(threads)
            try:
                yield
            finally:
                with self._active_lock:
                    self._active -= 1

    def plane(self, vol: Volume, req: ViewRequest) -> mpr.Plane:
        """The plane ``req`` shows: orientation, zoom, centre (pan) moved through the cursor."""
        u, v = mpr.orientation(req.plane, req.angles, req.u, req.v)
        pixel_mm = req.pixel_mm or mpr.fit_pixel_mm(vol.geometry, u, v, req.width, req.height)
        center = np.asarray(req.center if req.center is not None else vol.geometry.center, float)
        cursor = np.asarray(req.cursor if req.cursor is not None else vol.geometry.center, float)
        plane = mpr.Plane(center, u, v, float(pixel_mm), req.width, req.height)
        return plane.through(cursor)

    def view(
        self, study_uid: str, series_uid: str, req: ViewRequest, *, principal: Principal
    ) -> RenderedView:
        """Render ``req``; raises :class:`Superseded` when a newer request made it moot."""
        req.check()
        if req.kind not in ("mpr", "vr"):
            raise BadQuery(f"unknown view kind {req.kind!r} (mpr, vr)")
        render = self._render_vr if req.kind == "vr" else self._render_mpr
        return self._run(
            study_uid, series_uid, principal, (req.client, req.viewport, req.seq),
            lambda vol: render(vol, req), req.fmt, req.quality,
        )  # fmt: skip

    def curved(
        self, study_uid: str, series_uid: str, req: CurvedRequest, *, principal: Principal
    ) -> RenderedView:
        """A curved planar reformat along ``req.path`` (latest request wins, like views)."""
        encode.media_type(req.fmt)

        def render(vol: Volume) -> tuple[np.ndarray, dict[str, Any]]:
            out = cpr.curved(
                vol.data, vol.geometry, req.path, kind=req.kind, width=req.width,
                pixel_mm=req.pixel_mm, direction=req.direction, angle=req.angle,
            )  # fmt: skip
            window = req.window or vol.window
            img = encode.display(out.values, window, background=vol.value_range[0])
            info = {
                "kind": "cpr",
                "cpr": req.kind,
                "rows": int(out.values.shape[0]),
                "width": int(out.values.shape[1]),
                "pixel_mm": out.pixel_mm,
                "length_mm": round(out.length_mm, 4),
                "center_column": (out.values.shape[1] - 1) / 2,
                "window": list(window),
            }
            return img, info

        return self._run(
            study_uid, series_uid, principal, (req.client, req.viewport, req.seq), render,
            req.fmt, req.quality,
        )  # fmt: skip

    def _run(
        self,
        study_uid: str,
        series_uid: str,
        principal: Principal,
        sequence: tuple[str, str, int | None],
        render: Any,
        fmt: str,
        quality: int,
    ) -> RenderedView:
        """Sequencing, the render slot and encoding around one ``render(volume)``."""
        client, viewport, seq = sequence
        key = (principal.name, client, viewport)
        track = bool(client) and seq is not None
        if track:
            self.sequencer.begin(key, int(seq))  # type: ignore[arg-type]
        vol = self.volume(study_uid, series_uid, principal=principal)
        with self.slot():
            if track:  # superseded while waiting for the slot: drop without rendering
                self.sequencer.check(key, int(seq))  # type: ignore[arg-type]
            start = time.perf_counter()
            img, info = render(vol)
            if track:
                self.sequencer.check(key, int(seq))  # type: ignore[arg-type]
            content = encode.encode(img, fmt, quality)
            info["render_ms"] = round((time.perf_counter() - start) * 1000, 1)
        info["seq"] = seq
        return RenderedView(content, encode.media_type(fmt), info)

    def _render_mpr(self, vol: Volume, req: ViewRequest) -> tuple[np.ndarray, dict[str, Any]]:
        plane = self.plane(vol, req)
        values = mpr.sample(vol.data, vol.geometry, plane, req.slab_mm, req.mode)
        window = req.window or vol.window
        img = encode.display(values, window, background=vol.value_range[0])
        cursor = req.cursor if req.cursor is not None else vol.geometry.center
        others = {
            name: self.plane(vol, ViewRequest(plane=name, width=req.width, height=req.height))
            for name in mpr.STANDARD
        }
        info = {
            "kind": "mpr",
            "plane": plane.describe(),
            "slab_mm": req.slab_mm,
            "mode": req.mode if req.slab_mm > 0 else "thin",
            "window": list(window),
            "crosshair": mpr.crosshair(plane, cursor, others),
        }
        return img, info

    def _render_vr(self, vol: Volume, req: ViewRequest) -> tuple[np.ndarray, dict[str, Any]]:
        proxy = vr.proxy_of(vol, self.cache)
        img, camera = vr.render(proxy, req.vr, req.width, req.height)
        return img, {"kind": "vr", "camera": camera, "settings": req.vr.describe()}

    def crosshair(
        self,
        study_uid: str,
        series_uid: str,
        views: dict[str, ViewRequest],
        cursor: Sequence[float] | None = None,
        pick: tuple[str, float, float] | None = None,
        *,
        principal: Principal,
    ) -> dict[str, Any]:
        """Move the shared cursor (to ``cursor``, or to pixel (x, y) of view ``pick[0]``) and
        say where it lies in every view: pixel and patient coordinates, no rendering."""
        vol = self.volume(study_uid, series_uid, principal=principal)
        planes = {name: self.plane(vol, req) for name, req in views.items()}
        if pick is not None:
            name, x, y = pick
            if name not in planes:
                raise BadQuery(f"pick names view {name!r}, which is not among the views")
            point = planes[name].to_patient(x, y)
        elif cursor is not None:
            point = np.asarray(cursor, float)
        else:
            point = vol.geometry.center
        if len(point) != 3:
            raise BadQuery("cursor must be three numbers (patient x, y, z in mm)")
        index = vol.geometry.to_index(point)
        inside = all(-0.5 <= index[c] <= vol.geometry.shape[2 - c] - 0.5 for c in range(3))
        value = None  # the nearest voxel's modality value (CT number): the viewer's probe
        if inside:
            i, j, k = (
                min(max(int(round(float(index[c]))), 0), vol.geometry.shape[2 - c] - 1)
                for c in range(3)
            )
            value = round(float(vol.data[k, j, i]), 2)
        out: dict[str, Any] = {
            "cursor": [round(float(c), 4) for c in point],
            "voxel": [round(float(c), 3) for c in index],
            "inside": bool(inside),
            "value": value,
            "views": {},
        }
        for name, plane in planes.items():
            moved = plane.through(point)
            others = {o: p.through(point) for o, p in planes.items() if o != name}
            out["views"][name] = {
                "plane": moved.describe(),
                "crosshair": mpr.crosshair(moved, point, others),
            }
        return out

    # -------------------------------------------------------------- save as a series

    def save(
        self, study_uid: str, series_uid: str, req: SaveRequest, *, principal: Principal
    ) -> dict[str, Any]:
        """Render ``req.count`` images of ``req.view`` and store them as a new derived series.

        MPR: parallel planes ``step_mm`` apart, centred on the view's plane.  VR: the
        camera turned by ``angle_step`` degrees of azimuth between images.  CPR
        (``req.curved``): the cut turned about the path by ``angle_step`` degrees.
        """
        req.check()
        view = req.view
        view.check()
        vol = self.volume(study_uid, series_uid, principal=principal)
        number = req.series_number or 900 + int(pixels_first(vol.header, "00200011", 0) or 0)
        if req.curved is not None:
            datasets = self._curved_series(vol, req, req.curved, number)
        elif view.kind == "mpr":
            base = self.plane(vol, view)
            step = req.step_mm or (view.slab_mm or float(vol.geometry.slice_gap))
            planes = [
                replace(base, center=base.center + (n - (req.count - 1) / 2) * step * base.normal)
                for n in range(req.count)
            ]
            images = []
            for plane in planes:
                with self.slot():
                    images.append(
                        mpr.sample(vol.data, vol.geometry, plane, view.slab_mm, view.mode)
                    )
            datasets = save.mpr_images(
                vol, planes, images, slab_mm=view.slab_mm, mode=view.mode, series_number=number,
                description=req.description or _mpr_title(view), window=view.window or vol.window,
            )  # fmt: skip
        elif view.kind == "vr":
            proxy = vr.proxy_of(vol, self.cache)
            step = req.angle_step if req.angle_step is not None else 360.0 / req.count
            rgbs = []
            for n in range(req.count):
                settings = replace(view.vr, azimuth=view.vr.azimuth + n * step)
                with self.slot():
                    rgbs.append(vr.render(proxy, settings, view.width, view.height)[0])
            datasets = save.vr_images(
                vol, rgbs, series_number=number, edited=bool(view.vr.cuts),
                description=req.description or f"VR {view.vr.preset}",
            )  # fmt: skip
        else:
            raise BadQuery(f"unknown view kind {view.kind!r} (mpr, vr)")
        return save.store_series(self.archive, datasets, principal=principal).describe()

    def _curved_series(
        self, vol: Volume, req: SaveRequest, curved: CurvedRequest, number: int
    ) -> list[Any]:
        """CPR images, turned about the path by ``angle_step`` degrees between them."""
        encode.media_type(curved.fmt)
        step = req.angle_step if req.angle_step is not None else 180.0 / req.count
        images = []
        pixel_mm = 0.0
        for n in range(req.count):
            with self.slot():
                out = cpr.curved(
                    vol.data, vol.geometry, curved.path, kind=curved.kind, width=curved.width,
                    pixel_mm=curved.pixel_mm, direction=curved.direction,
                    angle=curved.angle + n * step,
                )  # fmt: skip
            images.append(out.values)
            pixel_mm = out.pixel_mm
        return save.cpr_images(
            vol, images, pixel_mm=pixel_mm, kind=curved.kind, series_number=number,
            description=req.description or f"CPR {curved.kind}",
            window=curved.window or vol.window,
        )  # fmt: skip


@dataclass
class SaveRequest:
    """A derived series to make from a view."""

    view: ViewRequest
    count: int = 1
    step_mm: float | None = None  # MPR: distance between planes (default slab or slice gap)
    angle_step: float | None = None  # VR: azimuth step in degrees (default 360 / count)
    description: str = ""
    series_number: int | None = None
    curved: CurvedRequest | None = None  # save this curved reformat instead of ``view``

    def check(self) -> None:
        if not 1 <= self.count <= MAX_SAVED_IMAGES:
            raise BadQuery(f"count must be 1..{MAX_SAVED_IMAGES}")
        if self.step_mm is not None and not self.step_mm > 0:
            raise BadQuery("step_mm must be positive")


MAX_SAVED_IMAGES = 1000


def _mpr_title(view: ViewRequest) -> str:
    plane = view.plane if view.angles == (0.0, 0.0, 0.0) and view.u is None else "oblique"
    if view.slab_mm > 0:
        return f"MPR {plane} {view.slab_mm:g}mm {view.mode.upper()}"
    return f"MPR {plane}"
