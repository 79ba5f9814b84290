"""The analysis module interface: what a module accepts, what it is given, what it returns.

A module is an object with ``name``, ``version``, ``title``, ``accepts`` (an
:class:`Accepts` rule on the series header), ``auto`` (run by itself when a
matching series is complete) and two methods:

``recognise(info, volume) -> str | None``
    A second look once the volume is built (e.g. "is this really a chest?"
    from the image itself); ``None`` means go ahead, a string says why not.

``run(volume, ctx) -> AnalysisOutput``
    The work.  ``volume`` is a :class:`radcloud.volume.build.Volume` (values in
    modality units, HU for CT, indexed ``[k, j, i]``, placed in patient space
    by ``volume.geometry``).  ``ctx.progress(fraction, text)`` reports progress
    and raises when the job was cancelled.

The output holds typed findings (JSON), label maps (one integer array shaped
like the volume, segments named in plain words with SNOMED CT codes), meshes
(patient-mm vertices and triangles), a human-readable summary, and values for
the report's AI prefill.  The framework stores all of it; a module never
touches the index, the blob store or DICOM encoding.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from radcloud.volume.build import Volume


@dataclass(frozen=True)
class Code:
    """A coded concept (SNOMED CT unless ``scheme`` says otherwise)."""

    value: str
    meaning: str
    scheme: str = "SCT"

    def as_json(self) -> dict[str, str]:
        return {"value": self.value, "scheme": self.scheme, "meaning": self.meaning}


#: SEG Segmented Property Category "Anatomical structure" (SNOMED CT).
ANATOMICAL_STRUCTURE = Code("91723000", "Anatomical Structure")
#: Category "Morphologically abnormal structure".
ABNORMAL_STRUCTURE = Code("49755003", "Morphologically Abnormal Structure")


@dataclass(frozen=True)
class SeriesInfo:
    """What an accept rule looks at: the series' header, read from the index."""

    study_uid: str
    series_uid: str
    modality: str
    body_part: str = ""
    series_description: str = ""
    study_description: str = ""
    contrast: bool | None = None  # ContrastBolusAgent present; None when unknown
    slice_thickness: float | None = None
    instances: int = 0
    image_types: tuple[str, ...] = ()


@dataclass(frozen=True)
class Accepts:
    """Which series a module takes; :meth:`reason` says why one is refused."""

    modalities: tuple[str, ...] = ("CT",)
    body_parts: tuple[str, ...] = ()  # empty: any (the module may look at the image)
    contrast: bool | None = None  # None: either
    max_slice_thickness_mm: float | None = None
    min_instances: int = 1
    exclude_image_types: tuple[str, ...] = ("LOCALIZER", "DERIVED")

    def reason(self, info: SeriesInfo) -> str | None:
        """None when ``info`` is accepted, else why not (in plain words)."""
        if self.modalities and info.modality not in self.modalities:
            return f"modality {info.modality or '(none)'} is not {'/'.join(self.modalities)}"
        if info.instances < self.min_instances:
            return f"{info.instances} images; at least {self.min_instances} needed"
        bad = set(info.image_types) & set(self.exclude_image_types)
        if bad:
            return f"image type {'/'.join(sorted(bad))}"
        if self.body_parts and info.body_part.upper() not in self.body_parts:
            return f"body part {info.body_part or '(none)'} is not {'/'.join(self.body_parts)}"
        if self.contrast is not None and info.contrast is not None:
            if info.contrast != self.contrast:
                return "contrast-enhanced" if info.contrast else "not contrast-enhanced"
        if (
            self.max_slice_thickness_mm is not None
            and info.slice_thickness is not None
            and info.slice_thickness > self.max_slice_thickness_mm
        ):
            return (
                f"slices of {info.slice_thickness:g} mm; at most {self.max_slice_thickness_mm:g} mm"
            )
        return None


@dataclass(frozen=True)
class Segment:
    """One label of a label map: ``number`` in the array, plain-word ``label``, codes."""

    number: int
    label: str
    code: Code
    category: Code = ANATOMICAL_STRUCTURE
    color: tuple[int, int, int] = (255, 255, 255)


@dataclass
class LabelMap:
    """Integer labels shaped like the volume (``[k, j, i]``), one value per segment."""

    name: str
    array: np.ndarray
    segments: list[Segment]


@dataclass
class Mesh:
    """A triangle surface in patient coordinates (mm): ``vertices`` (n, 3), ``faces`` (m, 3)."""

    name: str
    vertices: np.ndarray
    faces: np.ndarray
    code: Code | None = None
    color: tuple[int, int, int] = (255, 255, 255)


@dataclass(frozen=True)
class Measurement:
    """One coded measurement, written to the DICOM SR (TID 1500) as well as the JSON.

    ``unit`` is a UCUM code (scheme ``UCUM``), e.g. ``Code("ml", "milliliter", "UCUM")``.
    Measurements with the same ``finding`` are grouped (one TID 1501 group each).
    """

    name: Code
    value: float
    unit: Code
    finding: Code  # what was measured, e.g. Right lung
    finding_site: Code | None = None


@dataclass
class AnalysisOutput:
    """What :meth:`AnalysisModule.run` returns."""

    findings: dict[str, Any]  # typed JSON (numbers in stated units), stored and served as is
    summary: str  # one paragraph a person reads
    label_maps: list[LabelMap] = field(default_factory=list)
    meshes: list[Mesh] = field(default_factory=list)
    measurements: list[Measurement] = field(default_factory=list)  # also stored as SR
    #: report template field key -> value, offered to the report editor as AI prefill
    report_values: dict[str, Any] = field(default_factory=dict)
    report_template: str | None = None


@dataclass
class RunContext:
    """What a module gets besides the volume."""

    progress: Callable[[float, str], None] = lambda _f, _m: None
    info: SeriesInfo | None = None
    options: dict[str, Any] = field(default_factory=dict)


class AnalysisModule(Protocol):
    """The plug-in interface (see the module docstring)."""

    name: str
    version: str
    title: str
    accepts: Accepts
    auto: bool

    def recognise(self, info: SeriesInfo, volume: Volume) -> str | None: ...

    def run(self, volume: Volume, ctx: RunContext) -> AnalysisOutput: ...
