"""The lung module on generated chest phantoms with known ground truth (Dice, surface distance).

Ground truth comes from the phantom's own painting steps (radcloud.testing.phantom):
the lung ellipses minus what mediastinum, abdomen and airways paint over them,
vessels inside the lungs counted as lung (as a lung mask should).
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from radcloud.analysis import lung
from radcloud.analysis.base import RunContext, SeriesInfo
from radcloud.testing import phantom
from radcloud.volume.build import Volume, from_datasets

SIZE, SLICES, THICKNESS = 128, 40, 5.0
SPACING = round(0.7 * 512 / SIZE, 4)


def _truth(n_slices: int) -> np.ndarray:
    """Labels per phantom slice (apex first): 1 right lung, 2 left lung."""
    out = np.zeros((n_slices, SIZE, SIZE), np.uint8)
    xs = (np.arange(SIZE, dtype=np.float32) - (SIZE - 1) / 2.0) * SPACING
    for k in range(n_slices):
        t = (k + 0.5) / n_slices
        cv = phantom._Canvas(np.full((SIZE, SIZE), phantom.HU["air"], np.float32), xs, xs,
                             SPACING)  # fmt: skip
        phantom._paint_body(cv, t)
        painted = phantom._paint_lungs(cv, t)
        phantom._paint_mediastinum(cv, t, painted)
        phantom._paint_abdomen(cv, t, painted)
        phantom._paint_airways(cv, t, painted)
        lungs = (painted > 0) & (cv.img == phantom.HU["lung"])
        out[k][lungs & (xs[None, :] < 0)] = 1  # patient right is -x (LPS)
        out[k][lungs & (xs[None, :] >= 0)] = 2
    return out


def _phantom(n_slices: int = SLICES) -> tuple[Volume, np.ndarray]:
    series = phantom.chest_ct_series(
        n_slices=n_slices, rows=SIZE, columns=SIZE, pixel_spacing=SPACING,
        slice_thickness=THICKNESS,
    )  # fmt: skip
    datasets = list(series)
    volume = from_datasets(datasets)
    by_uid = {str(d.SOPInstanceUID): k for k, d in enumerate(datasets)}
    order = [by_uid[uid] for _cls, uid in volume.sources]
    return volume, _truth(n_slices)[order]


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * float((a & b).sum()) / float(a.sum() + b.sum())


def mean_surface_mm(a: np.ndarray, b: np.ndarray, spacing: tuple[float, float, float]) -> float:
    """Symmetric mean distance (mm) between the surfaces of masks ``a`` and ``b``."""

    def surface(m: np.ndarray) -> np.ndarray:
        return m & ~ndimage.binary_erosion(m)

    sa, sb = surface(a), surface(b)
    da = ndimage.distance_transform_edt(~sb, sampling=spacing)[sa]
    db = ndimage.distance_transform_edt(~sa, sampling=spacing)[sb]
    return float(np.concatenate([da, db]).mean())


@pytest.fixture(scope="module")
def analysed() -> tuple[Volume, np.ndarray, object]:
    volume, truth = _phantom()
    info = SeriesInfo("1", "2", "CT", body_part="CHEST", instances=SLICES)
    out = lung.LungModule().run(volume, RunContext(info=info))
    return volume, truth, out


def test_lungs_match_the_phantom_ground_truth(analysed: tuple) -> None:
    volume, truth, out = analysed
    labels = out.label_maps[0].array
    spacing = (THICKNESS, SPACING, SPACING)
    for number, name in ((1, "right"), (2, "left")):
        found, want = labels == number, truth == number
        d, msd = dice(found, want), mean_surface_mm(found, want, spacing)
        print(f"{name} lung: Dice {d:.3f}, mean surface distance {msd:.2f} mm")
        assert d > 0.95, name
        assert msd < SPACING, name  # within one pixel on average


def test_volumes_are_reported_in_ml_and_agree_with_the_truth(analysed: tuple) -> None:
    volume, truth, out = analysed
    voxel_ml = THICKNESS * SPACING * SPACING / 1000.0
    for number, key in ((1, "right_lung"), (2, "left_lung")):
        want = float((truth == number).sum()) * voxel_ml
        assert out.findings[key]["volume_ml"] == pytest.approx(want, rel=0.05)
    assert out.findings["is_chest_ct"] is True
    assert out.findings["trachea"]["found"] is True
    assert -900 < out.findings["lungs"]["mean_hu"] < -700


def test_segments_are_named_in_plain_words_with_snomed_codes(analysed: tuple) -> None:
    segs = {s.label: s.code for s in analysed[2].label_maps[0].segments}
    assert segs["Right lung"].value == "3341006" and segs["Right lung"].scheme == "SCT"
    assert segs["Left lung"].value == "44029006"
    assert segs["Trachea"].value == "44567001"


def test_the_trachea_is_found_at_the_top_in_the_midline(analysed: tuple) -> None:
    volume, _truth_, out = analysed
    k, _j, i = np.nonzero(out.label_maps[0].array == 3)
    assert abs(i.mean() - (SIZE - 1) / 2) < 3
    top = volume.data.shape[0] - 1 if volume.geometry.affine[2, 2] > 0 else 0
    assert top in set(k.tolist())


def test_emphysema_index_counts_lung_voxels_at_or_below_minus_950(analysed: tuple) -> None:
    volume, truth, _out = analysed
    rng = np.random.default_rng(7)
    lungs = np.argwhere(truth > 0)
    chosen = lungs[rng.choice(len(lungs), size=len(lungs) // 5, replace=False)]
    data = volume.data.copy()
    data[tuple(chosen.T)] = -980  # 20 % of the lung made emphysema-like
    holed = Volume(data=data, geometry=volume.geometry, study_uid="1", series_uid="2",
                   modality="CT", window=(0, 1), sources=volume.sources,
                   source_positions=volume.source_positions, header={})  # fmt: skip
    out = lung.LungModule().run(holed, RunContext())
    assert out.findings["lungs"]["laa950_pct"] == pytest.approx(20.0, abs=1.0)
    assert out.findings["lungs"]["perc15_hu"] == -980  # 15th percentile inside the 20 %


def test_a_ct_without_lungs_is_not_taken_for_a_chest() -> None:
    volume, _truth_ = _phantom(24)
    volume.data[volume.data < -400] = 40  # no air anywhere: an abdomen-like body
    out = lung.LungModule().run(volume, RunContext())
    assert out.findings["is_chest_ct"] is False
    assert out.label_maps == []
    assert "not taken as a chest CT" in out.summary


def test_the_header_decides_when_it_says_something() -> None:
    chest = SeriesInfo("1", "2", "CT", series_description="Thorax routine")
    head = SeriesInfo("1", "2", "CT", body_part="HEAD")
    unknown = SeriesInfo("1", "2", "CT")
    assert lung.is_chest_header(chest) is True
    assert lung.is_chest_header(head) is False
    assert lung.is_chest_header(unknown) is None


def test_a_lung_cut_in_two_by_a_dense_fissure_is_still_one_lung() -> None:
    from radcloud.volume.geometry import Geometry

    air = np.zeros((40, 60, 80), bool)  # [k, j, i]: two box "lungs", right at low i
    air[5:35, 10:50, 8:34] = True
    air[5:35, 10:50, 46:72] = True
    fissure = np.zeros_like(air)
    fissure[:, 22, :] = True  # a sheet denser than the air threshold cuts both lungs
    geometry = Geometry(shape=air.shape, origin=np.array([-40.0, -30.0, 0.0]),
                        affine=np.eye(3))  # fmt: skip
    volume = Volume(data=np.zeros(air.shape, np.float32), geometry=geometry, study_uid="1",
                    series_uid="2", modality="CT", window=(0, 1), sources=[],
                    source_positions=np.arange(40.0), header={})  # fmt: skip
    right, left = lung._split(air & ~fissure, volume, 0.001)
    assert right.sum() == left.sum() == (air & ~fissure)[:, :, :40].sum()
    assert not right[:, :, 40:].any() and not left[:, :, :40].any()
