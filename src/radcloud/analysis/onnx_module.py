"""A deep model a site owns, plugged in as an ONNX file (ONNX Runtime, CPU, nothing downloaded).

Put ``<name>.onnx`` and ``<name>.json`` in ``analysis_models_dir``.  The JSON says::

    {"name": "site-lungs", "version": "2.1", "title": "Site lung model",
     "auto": false,
     "accepts": {"modalities": ["CT"], "body_parts": [], "min_instances": 20,
                 "max_slice_thickness_mm": 3.0, "contrast": null},
     "window": [-1000, 400],
     "segments": [{"number": 1, "label": "Right lung",
                   "code": {"value": "3341006", "meaning": "Right lung", "scheme": "SCT"}}]}

The model runs slice by slice: input ``float32 (1, 1, rows, columns)``, values
clipped to ``window`` and scaled to 0..1; output ``(1, classes, rows, columns)``
scores, whose arg-max is the label (0 = background, n = segment number n).
Findings are each segment's volume in mL.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from radcloud.analysis import registry
from radcloud.analysis.base import (
    Accepts,
    AnalysisOutput,
    Code,
    LabelMap,
    RunContext,
    Segment,
    SeriesInfo,
)
from radcloud.errors import InvalidRequest
from radcloud.volume.build import Volume

log = logging.getLogger(__name__)


class OnnxModule:
    """An :class:`~radcloud.analysis.base.AnalysisModule` around one ONNX file."""

    def __init__(self, model: Path, spec: dict[str, Any]) -> None:
        try:
            self.name = str(spec["name"])
            self.version = str(spec.get("version", "1"))
            self.title = str(spec.get("title", self.name))
            self.auto = bool(spec.get("auto", False))
            a = spec.get("accepts", {})
            self.accepts = Accepts(
                modalities=tuple(a.get("modalities", ["CT"])),
                body_parts=tuple(p.upper() for p in a.get("body_parts", [])),
                contrast=a.get("contrast"),
                max_slice_thickness_mm=a.get("max_slice_thickness_mm"),
                min_instances=int(a.get("min_instances", 1)),
            )
            lo, hi = (float(v) for v in spec.get("window", [-1000, 1000]))
            self.segments = [
                Segment(int(s["number"]), str(s["label"]),
                        Code(str(s["code"]["value"]), str(s["code"]["meaning"]),
                             str(s["code"].get("scheme", "SCT"))))
                for s in spec["segments"]
            ]  # fmt: skip
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidRequest(f"model description of {model.name} is incomplete: {exc}") from exc
        if not hi > lo:
            raise InvalidRequest(f"model {model.name}: window must be [low, high]")
        self.window = (lo, hi)
        self.model = model
        self._session: Any = None

    def session(self) -> Any:
        if self._session is None:
            import onnxruntime as ort

            opts = ort.SessionOptions()
            opts.intra_op_num_threads = 1  # jobs share the cores with ingest and viewing
            self._session = ort.InferenceSession(
                str(self.model), opts, providers=["CPUExecutionProvider"]
            )
        return self._session

    def recognise(self, info: SeriesInfo, volume: Volume) -> str | None:
        return None

    def run(self, volume: Volume, ctx: RunContext) -> AnalysisOutput:
        session = self.session()
        name = session.get_inputs()[0].name
        lo, hi = self.window
        labels = np.zeros(volume.data.shape, np.uint8)
        n = volume.data.shape[0]
        for k in range(n):
            x = (np.clip(volume.data[k].astype(np.float32), lo, hi) - lo) / (hi - lo)
            scores = session.run(None, {name: x[None, None]})[0]
            labels[k] = np.argmax(scores[0], axis=0).astype(np.uint8)
            if k % 8 == 0:
                ctx.progress(k / n, f"slice {k + 1} of {n}")
        voxel_ml = float(abs(np.linalg.det(volume.geometry.affine))) / 1000.0
        counts = np.bincount(labels.ravel(), minlength=256)
        findings: dict[str, Any] = {
            "model": {"file": self.model.name, "version": self.version},
            "segments": {
                s.label: {"volume_ml": round(float(counts[s.number]) * voxel_ml, 1)}
                for s in self.segments
            },
        }
        parts = ", ".join(f"{k} {v['volume_ml']:.0f} mL" for k, v in findings["segments"].items())
        return AnalysisOutput(
            findings=findings,
            summary=f"{self.title}: {parts}.",
            label_maps=[LabelMap(self.name, labels, self.segments)],
        )


def load_dir(folder: Path | None) -> list[str]:
    """Register every ``*.onnx`` with its ``.json`` in ``folder``; returns the module names.

    A model without a description, or with a broken one, is logged and left out.
    """
    if folder is None or not Path(folder).is_dir():
        return []
    names = []
    for model in sorted(Path(folder).glob("*.onnx")):
        spec_path = model.with_suffix(".json")
        try:
            spec = orjson.loads(spec_path.read_bytes())
            module = OnnxModule(model, spec)
        except (OSError, orjson.JSONDecodeError, InvalidRequest) as exc:
            log.error("analysis model %s left out: %s", model.name, exc)
            continue
        registry.register(module)
        names.append(module.name)
    return names
