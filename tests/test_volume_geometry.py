"""Geometry of server-side 3D on phantoms with known shapes (no archive involved).

Markers sit at known patient coordinates; every view must show them at the pixel
the plane's own mapping predicts, distances measured on reformats must equal the
true distances, and series that cannot be one volume must be refused clearly.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import numpy as np
import pytest

from radcloud.volume import build, mpr, vr
from radcloud.volume.cache import VolumeCache
from radcloud.volume.geometry import GeometryError
from radcloud.volume.phantom import Marker, marker_series

A = (10.0, -7.0, -12.0)
B = (-14.0, 9.0, -27.0)
MARKERS = [Marker(A, 1.6, 1000.0), Marker(B, 1.6, 800.0)]
PLANES = ("axial", "coronal", "sagittal")
ANGLES = [(0.0, 0.0, 0.0), (25.0, 0.0, 0.0), (0.0, 30.0, 15.0), (35.0, -20.0, 50.0)]


def _volume(**kw: Any) -> build.Volume:
    kw.setdefault("rows", 56)
    kw.setdefault("columns", 60)
    kw.setdefault("n_slices", 40)
    return build.from_datasets(list(marker_series(MARKERS, **kw)))


def _centroid(img: np.ndarray, threshold: float) -> tuple[float, float]:
    ys, xs = np.nonzero(np.nan_to_num(img, nan=-2000) > threshold)
    assert xs.size, "marker not visible"
    return float(xs.mean()), float(ys.mean())


def _check_marker_at(
    vol: build.Volume, point: tuple[float, float, float], plane: mpr.Plane
) -> None:
    img = mpr.sample(vol.data, vol.geometry, plane)
    x, y = _centroid(img, 400)
    ex, ey, depth = plane.to_pixel(point)
    assert abs(depth) < 1e-6
    # 0.5 mm pixels: within 1.2 pixels = 0.6 mm of the true position
    assert abs(x - ex) <= 1.2 and abs(y - ey) <= 1.2, (plane, (x, y), (ex, ey))


VARIANTS = {
    "plain": {},
    "anisotropic": {"pixel_spacing": (0.8, 0.6), "slice_gap": 1.25},
    "tilted": {"tilt_deg": 17.0},
    "uneven": {"positions": [0, 1, 2, 3.5, 4.5, 5.5, 7.5, *np.arange(8.5, 40.0, 1.0)]},
    "oblique_stack": {"orientation": (0.9659258, 0.258819, 0, -0.258819, 0.9659258, 0)},
    "float_values": {"modality": "MR"},
}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_a_point_appears_at_its_pixel_in_every_plane_and_oblique(variant: str) -> None:
    vol = _volume(**VARIANTS[variant])
    for point in (A, B):
        for name in PLANES:
            for angles in ANGLES:
                u, v = mpr.orientation(name, angles)
                # the plane through the point, its centre 6 mm away in-plane (not at the marker)
                center = np.asarray(point) + 6 * u - 4 * v
                plane = mpr.Plane(center, u, v, 0.5, 96, 80)
                _check_marker_at(vol, point, plane)


def test_standard_planes_follow_the_radiological_convention() -> None:
    vol = _volume()
    # axial: patient left (+x) to the screen's right, posterior (+y) down
    ax = mpr.Plane(np.zeros(3), *mpr.orientation("axial"), 1.0, 11, 11)
    assert ax.to_pixel((3.0, 2.0, 0.0))[:2] == (8.0, 7.0)
    # coronal and sagittal: head (+z) up
    co = mpr.Plane(np.zeros(3), *mpr.orientation("coronal"), 1.0, 11, 11)
    assert co.to_pixel((3.0, 0.0, 2.0))[:2] == (8.0, 3.0)
    sa = mpr.Plane(np.zeros(3), *mpr.orientation("sagittal"), 1.0, 11, 11)
    assert sa.to_pixel((0.0, 3.0, 2.0))[:2] == (8.0, 3.0)
    # the grid-aligned fast path and the general sampler agree
    plane = mpr.Plane(np.asarray(A), *mpr.orientation("coronal"), 0.7, 64, 64)
    fast = mpr.sample(vol.data, vol.geometry, plane)
    slow = mpr._sample_oblique(vol.data, vol.geometry, plane, 0.0, "mip")
    both = ~np.isnan(fast) & ~np.isnan(slow)
    assert both.sum() > 1000
    assert np.abs(fast[both] - slow[both]).max() < 1.0


@pytest.mark.parametrize("variant", ["plain", "anisotropic", "tilted"])
def test_distances_measured_on_reformats_equal_true_distances(variant: str) -> None:
    vol = _volume(**VARIANTS[variant])
    true = float(np.linalg.norm(np.subtract(A, B)))
    # a plane containing both markers: u along A->B, v perpendicular, oblique to every axis
    u = np.subtract(B, A) / true
    v = np.cross(u, (0.3, 0.2, 0.93))
    v /= np.linalg.norm(v)
    plane = mpr.Plane((np.asarray(A) + B) / 2, u, v, 0.4, 120, 60)
    img = mpr.sample(vol.data, vol.geometry, plane)
    left = np.where(np.arange(120)[None, :] < 60, img, np.nan)
    right = np.where(np.arange(120)[None, :] >= 60, img, np.nan)
    (x1, y1), (x2, y2) = _centroid(left, 400), _centroid(right, 400)
    measured = float(np.hypot(x2 - x1, y2 - y1)) * plane.pixel_mm
    assert measured == pytest.approx(true, abs=0.5)


def test_tilted_series_is_placed_on_a_sheared_grid() -> None:
    vol = _volume(tilt_deg=17.0)
    g = vol.geometry
    assert g.tilt_deg == pytest.approx(17.0, abs=0.01)
    assert g.sheared and any("tilt" in n for n in g.notes)
    # slice planes are 1 mm apart along the table, cos(17) mm along their normal
    assert g.slice_gap == pytest.approx(np.cos(np.radians(17.0)), abs=1e-4)
    # without the shear (treating slices as stacked along the normal) A would be mm off
    naive = (
        g.origin
        + g.to_index(A)
        @ np.column_stack([g.affine[:, 0], g.affine[:, 1], g.normal * g.slice_gap]).T
    )
    assert np.linalg.norm(naive - A) > 2.0
    assert np.allclose(g.to_patient(g.to_index(A)), A)


def test_uneven_spacing_is_resampled_to_an_even_grid() -> None:
    vol = _volume(**VARIANTS["uneven"])
    assert any("uneven" in n for n in vol.geometry.notes)
    assert vol.geometry.spacing[2] == pytest.approx(39.5 / round(39.5 / 1.0), abs=1e-6)
    assert len(vol.sources) == len(VARIANTS["uneven"]["positions"])


@pytest.mark.parametrize(
    "kw, message",
    [
        ({"n_slices": 1}, "at least 2 slices"),
        ({"positions": [0, 1, 2, 2, 3]}, "share the position"),
        ({"positions": [0, 1, 2, 3, 9, 10, 11]}, "slices are missing"),
    ],
)
def test_series_that_cannot_be_a_volume_are_refused_clearly(
    kw: dict[str, Any], message: str
) -> None:
    with pytest.raises(GeometryError, match=message) as err:
        _volume(**kw)
    assert err.value.http_status == 422


def test_mixed_orientations_are_refused() -> None:
    slices = list(marker_series(MARKERS, n_slices=5, shuffle=False))
    odd = list(marker_series(MARKERS, n_slices=1, orientation=(1, 0, 0, 0, 0, -1)))
    with pytest.raises(GeometryError, match="different orientations"):
        build.from_datasets(slices + odd)


def test_slab_mip_minip_and_average() -> None:
    # a bright (1000) and a dark (-900) marker 7 mm apart along z, on a water body (0 HU)
    bright, dark = (0.0, 0.0, -8.0), (0.0, 0.0, -15.0)
    ds = marker_series([Marker(bright, 2.0, 1000), Marker(dark, 2.0, -900)], body_radius=25,
                       rows=48, columns=48, n_slices=24)  # fmt: skip
    vol = build.from_datasets(list(ds))
    for angles in [(0.0, 0.0, 0.0), (0.0, 20.0, 0.0)]:
        u, v = mpr.orientation("axial", angles)
        plane = mpr.Plane(np.array([0.0, 0.0, -11.5]), u, v, 0.5, 40, 40).through((0, 0, -11.5))
        x, y, _ = plane.to_pixel((0.0, 0.0, -11.5))
        at = (int(round(y)), int(round(x)))
        thin = mpr.sample(vol.data, vol.geometry, plane)
        assert abs(thin[at]) < 50  # between the markers: water
        mip = mpr.sample(vol.data, vol.geometry, plane, 10.0, "mip")
        minip = mpr.sample(vol.data, vol.geometry, plane, 10.0, "minip")
        avg = mpr.sample(vol.data, vol.geometry, plane, 10.0, "avg")
        assert mip[at] > 900 and minip[at] < -800
        assert minip[at] < avg[at] < mip[at]
        aside = (at[0], at[1] + 14)  # 7 mm to the side: only water in the slab
        assert abs(mip[aside]) < 50 and abs(minip[aside]) < 50 and abs(avg[aside]) < 50


def test_crosshair_reports_the_cursor_in_every_plane() -> None:
    cursor = np.array(A)
    planes = {
        n: mpr.Plane(cursor + 5.0, *mpr.orientation(n), 0.5, 64, 64).through(cursor) for n in PLANES
    }
    for name, plane in planes.items():
        others = {o: p for o, p in planes.items() if o != name}
        info = mpr.crosshair(plane, cursor, others)
        px = np.asarray(info["pixel"])
        assert np.allclose(plane.to_patient(*px), cursor, atol=1e-3)
        assert info["distance_mm"] == pytest.approx(0.0, abs=1e-6)
        lines = info["lines"]
        assert isinstance(lines, dict)
        # orthogonal standard planes cut each other in horizontal / vertical lines
        assert sorted(tuple(abs(c) for c in line) for line in lines.values()) == [
            (0.0, 1.0),
            (1.0, 0.0),
        ]


def test_vr_shows_markers_where_the_camera_projects_them() -> None:
    vol = _volume()
    proxy = vr.make_proxy(vol.data, vol.geometry)
    for orientation in ("anterior", "left", "superior"):
        settings = vr.VRSettings(preset="bone", orientation=orientation, azimuth=20, elevation=10)
        img, cam_info = vr.render(proxy, settings, 128, 128)
        cam = vr.camera(settings, proxy.geometry, 128, 128)
        assert cam_info["pixel_mm"] == pytest.approx(cam.pixel_mm)
        lum = img.astype(float).mean(axis=-1)
        for point in (A, B):
            x, y = cam.project(np.asarray(point))
            near = lum[int(y) - 2 : int(y) + 3, int(x) - 2 : int(x) + 3]
            assert near.max() > 60, (orientation, point)
        assert lum[:4, :4].max() == 0  # background stays black


def test_cache_builds_once_under_concurrency_and_evicts_by_bytes() -> None:
    class Blob:
        def __init__(self, n: int) -> None:
            self.nbytes = n

    cache: VolumeCache[Blob] = VolumeCache(max_bytes=250)
    calls: list[str] = []

    def slow(key: str, size: int = 100) -> Any:
        def make() -> Blob:
            calls.append(key)
            time.sleep(0.2)
            return Blob(size)

        return make

    got: list[Blob] = []
    threads = [threading.Thread(target=lambda: got.append(cache.get("a", slow("a"))))
               for _ in range(6)]  # fmt: skip
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert calls == ["a"] and len({id(b) for b in got}) == 1
    cache.get("b", slow("b"))
    cache.get("a", slow("a"))  # a is now the most recently used
    cache.get("c", slow("c"))  # 300 bytes > 250: b, the least recently used, goes
    assert cache.peek("b") is None and cache.peek("a") is not None and cache.peek("c") is not None
    assert cache.nbytes <= 250
    cache.get("huge", slow("huge", 1000))  # served but never kept
    assert cache.peek("huge") is None and cache.peek("c") is not None

    def fail() -> Blob:
        raise GeometryError("no")

    with pytest.raises(GeometryError):
        cache.get("bad", fail)
    assert cache.get("bad", slow("bad")).nbytes == 100  # a failure is not remembered
