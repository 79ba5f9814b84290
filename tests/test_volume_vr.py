"""Image quality of the ray caster on smooth phantoms: no sampling rings, no staircase bands.

A hard-edged sphere or cylinder drawn on a 1 mm grid is what showed the artefacts:
rays that all sample at the same depths draw rings of equal depth ("wood grain") on
a sphere, and normals taken from the voxel staircase band a cylinder's side.  A
headlight on a sphere must shade it brighter at the centre and darker towards the
rim, monotonically; these tests measure exactly that.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from radcloud.volume import vr
from radcloud.volume.geometry import Geometry

N = 64
GREY = [(-600.0, (0.7, 0.7, 0.7)), (200.0, (0.7, 0.7, 0.7))]
SKIN = [(-600.0, 0.0), (-400.0, 0.6), (200.0, 0.9)]


def _phantom(kind: str) -> vr.Proxy:
    k, j, i = np.mgrid[0:N, 0:N, 0:N].astype(np.float32)
    c = (N - 1) / 2
    r2 = (i - c) ** 2 + (j - c) ** 2
    if kind == "sphere":
        inside = r2 + (k - c) ** 2 <= (N * 0.35) ** 2
    else:  # a cylinder along the patient's z axis
        inside = (r2 <= (N * 0.35) ** 2) & (k > 4) & (k < N - 5)
    data = np.where(inside, 0.0, -1000.0).astype(np.float32)
    geometry = Geometry(shape=(N, N, N), origin=np.full(3, -c), affine=np.eye(3))
    return vr.make_proxy(data, geometry)


def _render(proxy: vr.Proxy, **kw: object) -> np.ndarray:
    settings = vr.VRSettings(preset="skin", opacity=SKIN, color=GREY, **kw)  # type: ignore[arg-type]
    img, _ = vr.render(proxy, settings, 256, 256)
    return img.mean(axis=-1)


def _ripple(profile: np.ndarray) -> float:
    """Mean distance (grey levels) of a profile from its own smoothed course."""
    p = profile.astype(np.float64)
    return float(np.abs(p - ndimage.gaussian_filter1d(p, 4)).mean())


@pytest.mark.parametrize("kind", ["sphere", "cylinder"])
def test_a_lit_round_object_darkens_smoothly_towards_its_rim(kind: str) -> None:
    img = _render(_phantom(kind))
    centre = 128
    # the object covers about 0.7 N mm of 1.05 N mm across: stay inside its rim
    half = int(256 * 0.7 / 1.05 / 2) - 6
    for profile in (img[centre, centre : centre + half], img[centre, centre - half : centre][::-1]):
        assert profile[0] > 150 and profile[-1] < profile[0] - 60  # lit, and darker at the rim
        rises = np.clip(np.diff(profile), 0, None)  # brightening while going outwards
        assert rises.sum() < 12, rises.round()
        assert _ripple(profile) < 2.5
    if kind == "sphere":  # the same along a diagonal radius
        diag = np.array([img[centre + d, centre + d] for d in range(int(half / 1.5))])
        assert np.clip(np.diff(diag), 0, None).sum() < 12


def test_the_ray_start_jitter_is_fixed_per_pixel() -> None:
    proxy = _phantom("sphere")
    assert np.array_equal(_render(proxy), _render(proxy))
    assert np.array_equal(_render(proxy, shading=False), _render(proxy, shading=False))


def test_opacity_per_sample_is_corrected_for_the_step() -> None:
    """The same opacity per mm gives the same result whatever the sample step."""
    settings = vr.VRSettings(preset="skin", opacity=[(-2000.0, 0.3), (2000.0, 0.3)])
    one, _, _ = vr.transfer_lut(settings, (-1000.0, 1000.0), 1.0)
    half, _, _ = vr.transfer_lut(settings, (-1000.0, 1000.0), 0.5)
    assert one[0, 3] == pytest.approx(0.3, abs=1e-6)
    assert 1 - (1 - half[0, 3]) ** 2 == pytest.approx(one[0, 3], abs=1e-6)


def test_an_unshaded_sphere_is_a_flat_disc() -> None:
    img = _render(_phantom("sphere"), shading=False)
    inner = img[128 - 40 : 128 + 40, 128 - 40 : 128 + 40]
    assert inner.std() < 1.0  # no rings of sample depth in the accumulated opacity
