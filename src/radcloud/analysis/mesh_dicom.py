"""Meshes kept as DICOM Encapsulated STL in the analysed study, and read back.

Each mesh of a result becomes one Encapsulated STL instance (PS3.3 A.85.1:
Manufacturing 3D Model, Encapsulated Document with MIME type ``model/stl``) in
one "AI 3D model" series, stored through the one ingest path.  So the model
lives with the images (backed up, audited, deleted with the study, reachable
over DICOMweb by any 3D-printing or planning tool), and GLB / OBJ are made
from those instances on request (:func:`load`, then :mod:`radcloud.analysis.mesh`).
Vertices stay in patient millimetres in the CT's frame of reference.
"""

from __future__ import annotations

import io
import struct
from typing import Any

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    EncapsulatedSTLStorage,
    ExplicitVRLittleEndian,
    generate_uid,
)

from radcloud import __version__
from radcloud.analysis import mesh as meshes
from radcloud.analysis.base import AnalysisModule, Code, Mesh
from radcloud.archive import ingest, retrieve
from radcloud.archive.service import Archive
from radcloud.auth.access import SYSTEM, Principal
from radcloud.dicom.wrap import study_attributes
from radcloud.errors import Conflict, InvalidRequest, NotFound
from radcloud.volume.build import Volume

MESH_SERIES_NUMBER = 9003


def build_stl_instance(
    source: Dataset, module: AnalysisModule, m: Mesh, series_uid: str, number: int
) -> Dataset:
    """One Encapsulated STL instance of mesh ``m``, filed under ``source``'s study."""
    ds = Dataset()
    sop_uid = generate_uid()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = EncapsulatedSTLStorage
    ds.file_meta.MediaStorageSOPInstanceUID = sop_uid
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds.update(study_attributes(source))
    ds.SOPClassUID, ds.SOPInstanceUID = EncapsulatedSTLStorage, sop_uid
    ds.Modality = "M3D"
    ds.SeriesInstanceUID, ds.SeriesNumber = series_uid, MESH_SERIES_NUMBER
    ds.SeriesDescription = f"AI {module.title} 3D model"[:64]
    ds.InstanceNumber = number
    ds.FrameOfReferenceUID = source.get("FrameOfReferenceUID", generate_uid())
    ds.PositionReferenceIndicator = ""
    ds.Manufacturer, ds.ManufacturerModelName = "radcloud", f"radcloud analysis {module.name}"
    ds.DeviceSerialNumber = "0"
    ds.SoftwareVersions = f"radcloud {__version__}; {module.name} {module.version}"
    ds.ContentDate = ds.InstanceCreationDate = str(source.get("StudyDate", "")) or "19000101"
    ds.ContentTime = ds.InstanceCreationTime = "000000"
    ds.AcquisitionDateTime = ""
    ds.BurnedInAnnotation = "NO"
    ds.DocumentTitle = m.name[:64]
    concept = Dataset()
    code = m.code or Code("39607008", "Lung")
    concept.CodeValue, concept.CodingSchemeDesignator = code.value, code.scheme
    concept.CodeMeaning = code.meaning
    ds.ConceptNameCodeSequence = [concept]
    unit = Dataset()
    unit.CodeValue, unit.CodingSchemeDesignator, unit.CodeMeaning = "mm", "UCUM", "millimeter"
    ds.MeasurementUnitsCodeSequence = [unit]
    ds.RecommendedDisplayCIELabValue = _cielab(m.color)
    data = meshes.to_stl(m)
    ds.MIMETypeOfEncapsulatedDocument = "model/stl"
    ds.EncapsulatedDocument = data + (b"\x00" if len(data) % 2 else b"")
    ds.EncapsulatedDocumentLength = len(data)
    return ds


def _cielab(rgb: tuple[int, int, int]) -> list[int]:
    """sRGB (0-255) -> DICOM's scaled CIELab (0-65535), PS3.3 C.10.7.1.1."""
    c = np.array(rgb, float) / 255.0
    c = np.where(c > 0.04045, ((c + 0.055) / 1.055) ** 2.4, c / 12.92)
    xyz = np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722],
                    [0.0193, 0.1192, 0.9505]]) @ c / np.array([0.9505, 1.0, 1.089])  # fmt: skip
    f = np.where(xyz > 0.008856, np.cbrt(xyz), 7.787 * xyz + 16 / 116)
    lab = np.array([116 * f[1] - 16, 500 * (f[0] - f[1]), 200 * (f[1] - f[2])])
    scaled = [lab[0] / 100 * 65535, (lab[1] + 128) / 255 * 65535, (lab[2] + 128) / 255 * 65535]
    return [int(np.clip(round(v), 0, 65535)) for v in scaled]


def store_meshes(
    archive: Archive, volume: Volume, module: AnalysisModule, items: list[Mesh]
) -> list[dict[str, Any]]:
    """Store every non-empty mesh; returns what the result's ``outputs.meshes`` lists."""
    from radcloud.analysis.dicom_out import source_datasets

    source = source_datasets(archive, volume)[0]
    series_uid = generate_uid()
    out = []
    for n, m in enumerate((m for m in items if len(m.faces)), start=1):
        ds = build_stl_instance(source, module, m, series_uid, n)
        result = ingest.store_dataset(archive, ds, source=f"analysis:{module.name}",
                                      principal=SYSTEM)  # fmt: skip
        out.append({"name": m.name, "code": (m.code or Code("39607008", "Lung")).as_json(),
                    "color": list(m.color), "triangles": int(len(m.faces)),
                    "series_uid": series_uid, "sop_uid": result.sop_uid})  # fmt: skip
    return out


def read_stl(data: bytes) -> tuple[np.ndarray, np.ndarray]:
    """(vertices, faces) of a binary STL, corners shared where they coincide exactly."""
    (count,) = struct.unpack_from("<I", data, 80)
    if len(data) < 84 + 50 * count:
        raise ValueError("STL shorter than its triangle count")
    rec = np.frombuffer(data, dtype=[("n", "<f4", 3), ("v", "<f4", (3, 3)), ("a", "<u2")],
                        count=count, offset=84)  # fmt: skip
    corners = rec["v"].reshape(-1, 3).astype(np.float64)
    verts, index = np.unique(corners, axis=0, return_inverse=True)
    return verts, index.reshape(-1, 3).astype(np.int64)


def load(
    archive: Archive, principal: Principal, study_uid: str, listed: list[dict[str, Any]]
) -> list[Mesh]:
    """The meshes a result lists, read back from their Encapsulated STL instances."""
    out = []
    for item in listed:
        refs = retrieve.find_instances(archive, study_uid, item["series_uid"], item["sop_uid"],
                                       principal=principal)  # fmt: skip
        if not refs:
            raise NotFound(f"the 3D model of {item['name']} is no longer in the study")
        ds = pydicom.dcmread(io.BytesIO(retrieve.read_verified(archive, refs[0])))
        data = bytes(ds.EncapsulatedDocument)[: int(ds.EncapsulatedDocumentLength)]
        verts, faces = read_stl(data)
        code = item.get("code") or {}
        out.append(
            Mesh(
                item["name"],
                verts,
                faces,
                Code(code["value"], code["meaning"], code["scheme"]) if code else None,
                tuple(item.get("color") or (255, 255, 255)),
            )
        )
    return out


MEDIA = {"glb": "model/gltf-binary", "obj": "model/obj", "stl": "model/stl"}


def model_file(
    archive: Archive,
    principal: Principal,
    study_uid: str,
    series_uid: str,
    module: str,
    fmt: str,
    index: int | None = None,
) -> tuple[bytes, str, str]:
    """(bytes, media type, file name) of the current result's meshes in ``fmt``."""
    from radcloud.analysis import service

    found = [r for r in service.results(archive, principal, study_uid, series_uid)
             if r["module"] == module]  # fmt: skip
    listed = (found[0]["outputs"].get("meshes") or []) if found else []
    if not listed:  # the series is there and visible: its analysis has made no model (yet)
        raise Conflict(f"there is no 3D model in a {module} result of this series")
    if fmt == "stl":
        if index is None or index >= len(listed):
            raise InvalidRequest(f"name one mesh for STL: ?mesh=0..{len(listed) - 1}")
        listed = [listed[index]]
    elif index is not None:
        if index >= len(listed):
            raise InvalidRequest(f"there are {len(listed)} meshes")
        listed = [listed[index]]
    items = load(archive, principal, study_uid, listed)
    if fmt == "glb":
        data = meshes.to_glb(items)
    elif fmt == "obj":
        data = meshes.to_obj(items)
    elif fmt == "stl":
        data = meshes.to_stl(items[0])
    else:
        raise InvalidRequest("format must be glb, obj or stl")
    stem = f"{module}-model" if len(items) > 1 else items[0].name.replace(" ", "_")
    return data, MEDIA[fmt], f"{stem}.{fmt}"
