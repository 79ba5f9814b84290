"""Label maps as DICOM SEG in the analysed study, written through the one ingest path."""

from __future__ import annotations

import highdicom as hd
import numpy as np
import orjson
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.uid import generate_uid

from radcloud import __version__
from radcloud.analysis.base import AnalysisModule, Code, LabelMap, Measurement
from radcloud.archive import ingest, retrieve
from radcloud.archive.service import Archive
from radcloud.auth.access import SYSTEM
from radcloud.errors import InvalidRequest
from radcloud.volume.build import Volume

#: Series numbers of analysis output series (clear of scanner series numbers).
SEG_SERIES_NUMBER = 9001
SR_SERIES_NUMBER = 9002


def _concept(code: Code) -> hd.sr.CodedConcept:
    return hd.sr.CodedConcept(value=code.value, scheme_designator=code.scheme,
                              meaning=code.meaning)  # fmt: skip


def source_datasets(archive: Archive, volume: Volume) -> list[Dataset]:
    """The source slices' headers (from the index), in the volume's stack order."""
    if volume.data.shape[0] != len(volume.sources):
        raise InvalidRequest("unevenly spaced slices: a SEG would not line up with the images")
    text = retrieve.metadata(archive, volume.study_uid, volume.series_uid, principal=SYSTEM)
    by_uid = {}
    for meta in orjson.loads(text):
        meta.pop("7FE00010", None)
        ds = Dataset.from_json(meta)
        by_uid[str(ds.SOPInstanceUID)] = ds
    return [by_uid[uid] for _cls, uid in volume.sources]


def build_seg(
    sources: list[Dataset], module: AnalysisModule, label_map: LabelMap
) -> hd.seg.Segmentation:
    """One SEG of ``label_map``'s non-empty segments, named in plain words, SNOMED-coded."""
    present = set(np.unique(label_map.array).tolist())
    segments = [s for s in label_map.segments if s.number in present]
    if not segments:
        raise InvalidRequest("the label map is empty")
    array = np.zeros(label_map.array.shape, np.uint8)
    algorithm = hd.AlgorithmIdentificationSequence(
        name=f"radcloud {module.name}", version=module.version,
        family=codes.cid7162.ArtificialIntelligence,
    )  # fmt: skip
    descriptions = []
    for n, seg in enumerate(segments, start=1):  # SEG segment numbers are 1..n, no gaps
        array[label_map.array == seg.number] = n
        descriptions.append(
            hd.seg.SegmentDescription(
                segment_number=n, segment_label=seg.label,
                segmented_property_category=_concept(seg.category),
                segmented_property_type=_concept(seg.code),
                algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
                algorithm_identification=algorithm,
            )
        )  # fmt: skip
    return hd.seg.Segmentation(
        source_images=sources, pixel_array=array,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions, series_instance_uid=generate_uid(),
        series_number=SEG_SERIES_NUMBER, sop_instance_uid=generate_uid(), instance_number=1,
        manufacturer="radcloud", manufacturer_model_name=f"radcloud analysis {module.name}",
        software_versions=f"radcloud {__version__}; {module.name} {module.version}",
        device_serial_number="0", series_description=f"AI {module.title}"[:64],
        omit_empty_frames=True,
    )  # fmt: skip


def store_seg(
    archive: Archive, volume: Volume, module: AnalysisModule, label_maps: list[LabelMap]
) -> str:
    """Store the first label map as a SEG in the study; returns its SOP Instance UID."""
    sources = source_datasets(archive, volume)
    seg = build_seg(sources, module, label_maps[0])
    result = ingest.store_dataset(archive, seg, source=f"analysis:{module.name}",
                                  principal=SYSTEM)  # fmt: skip
    return result.sop_uid


def build_sr(
    sources: list[Dataset], module: AnalysisModule, measurements: list[Measurement]
) -> hd.sr.Comprehensive3DSR:
    """A TID 1500 measurement report: one TID 1501 group per finding, algorithm identified."""
    algorithm = hd.sr.AlgorithmIdentification(name=f"radcloud {module.name}",
                                              version=module.version)  # fmt: skip
    groups: dict[Code, list[Measurement]] = {}
    for m in measurements:
        groups.setdefault(m.finding, []).append(m)
    items = []
    for finding, ms in groups.items():
        items.append(
            hd.sr.MeasurementsAndQualitativeEvaluations(
                tracking_identifier=hd.sr.TrackingIdentifier(
                    uid=generate_uid(), identifier=f"{module.name}: {finding.meaning}"
                ),
                finding_type=_concept(finding), algorithm_id=algorithm,
                measurements=[
                    hd.sr.Measurement(
                        name=_concept(m.name), value=float(m.value), unit=_concept(m.unit),
                        algorithm_id=algorithm,
                        finding_sites=[hd.sr.FindingSite(_concept(m.finding_site))]
                        if m.finding_site is not None else None,
                    )
                    for m in ms
                ],
            )
        )  # fmt: skip
    device = hd.sr.ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=generate_uid(), name=f"radcloud {module.name} {module.version}"
        ),
    )
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(observer_device_context=device),
        procedure_reported=codes.LN.CTUnspecifiedBodyRegion,
        imaging_measurements=items,
    )
    return hd.sr.Comprehensive3DSR(
        evidence=sources, content=report[0], series_instance_uid=generate_uid(),
        series_number=SR_SERIES_NUMBER, sop_instance_uid=generate_uid(), instance_number=1,
        manufacturer="radcloud", is_complete=True,
        series_description=f"AI {module.title} measurements"[:64],
    )  # fmt: skip


def store_sr(
    archive: Archive, volume: Volume, module: AnalysisModule, measurements: list[Measurement]
) -> str:
    """Store the measurements as a TID 1500 SR in the study; returns its SOP Instance UID."""
    sr = build_sr(source_datasets(archive, volume), module, measurements)
    result = ingest.store_dataset(archive, sr, source=f"analysis:{module.name}",
                                  principal=SYSTEM)  # fmt: skip
    return result.sop_uid
