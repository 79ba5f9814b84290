"""A site's own ONNX model plugged in through the same interface (ONNX Runtime, CPU).

The model is built here with ``onnx.helper`` (nothing is downloaded): two score
channels, ``0.5 - x`` and ``x - 0.5``, so its arg-max labels every voxel whose
windowed value is above the window's middle, which the test knows exactly.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import orjson
import pytest
from onnx import TensorProto, helper

from radcloud.analysis import onnx_module, registry, service
from radcloud.analysis.base import RunContext
from radcloud.archive import ingest
from radcloud.archive.service import Archive
from radcloud.auth.access import SYSTEM
from radcloud.jobs import queue
from radcloud.jobs.models import DONE
from radcloud.testing import phantom
from radcloud.volume.build import from_datasets

SPEC = {
    "name": "site-dense",
    "version": "2.1",
    "title": "Site model: dense tissue",
    "accepts": {"modalities": ["CT"], "min_instances": 3},
    "window": [-1000, 1000],
    "segments": [{"number": 1, "label": "Soft tissue",
                  "code": {"value": "87784001", "meaning": "Soft tissue"}}],
}  # fmt: skip


def _write_model(folder: Path, spec: dict[str, Any] = SPEC) -> Path:
    half = helper.make_tensor("half", TensorProto.FLOAT, [1], [0.5])
    nodes = [
        helper.make_node("Sub", ["half", "x"], ["background"]),
        helper.make_node("Sub", ["x", "half"], ["dense"]),
        helper.make_node("Concat", ["background", "dense"], ["scores"], axis=1),
    ]
    graph = helper.make_graph(
        nodes, "dense",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, None, None])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, [1, 2, None, None])],
        initializer=[half],
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path = folder / f"{spec['name']}.onnx"
    onnx.save(model, str(path))
    path.with_suffix(".json").write_bytes(orjson.dumps(spec))
    return path


@pytest.fixture
def site_model(tmp_path: Path) -> Iterator[str]:
    folder = tmp_path / "models"
    folder.mkdir()
    _write_model(folder)
    (folder / "broken.onnx").write_bytes(b"no description beside it")
    names = onnx_module.load_dir(folder)
    yield names[0]
    registry._modules.pop(names[0], None)


def test_the_model_is_registered_from_the_folder(site_model: str) -> None:
    assert site_model == "site-dense"  # broken.onnx (no .json) left out
    m = registry.get(site_model)
    assert (m.version, m.auto, m.accepts.min_instances) == ("2.1", False, 3)


def test_the_model_labels_exactly_what_its_graph_computes(site_model: str) -> None:
    volume = from_datasets(list(phantom.tiny_ct_series(n=4, size=32)))
    out = registry.get(site_model).run(volume, RunContext())
    labels = out.label_maps[0].array
    assert np.array_equal(labels == 1, volume.data > 0)
    voxel_ml = float(abs(np.linalg.det(volume.geometry.affine))) / 1000
    want = round(float((volume.data > 0).sum()) * voxel_ml, 1)
    assert out.findings["segments"]["Soft tissue"]["volume_ml"] == want
    assert out.label_maps[0].segments[0].code.value == "87784001"


def test_the_model_runs_as_a_job_and_its_labels_are_stored_as_seg(
    archive: Archive, site_model: str
) -> None:
    for ds in phantom.tiny_ct_series(n=4, size=32):
        r = ingest.store_dataset(archive, ds)
    [job_id] = service.request_run(archive, SYSTEM, r.study_uid, r.series_uid, site_model)
    while queue.run_next(archive, "w") is not None:
        pass
    assert queue.get(archive, job_id)["state"] == DONE, queue.get(archive, job_id)["error"]
    [result] = service.results(archive, SYSTEM, r.study_uid)
    assert result["module"] == "site-dense" and result["module_version"] == "2.1"
    assert result["seg_sop_uid"]
    assert result["outputs"]["label_maps"][0]["segments"][0]["label"] == "Soft tissue"


def test_an_incomplete_description_is_refused_with_the_reason(tmp_path: Path) -> None:
    bad = {k: v for k, v in SPEC.items() if k != "segments"}
    path = _write_model(tmp_path, bad)
    with pytest.raises(Exception, match="incomplete"):
        onnx_module.OnnxModule(path, bad)
