"""Reformatted and rendered results as a new derived series, stored through the one ingest path.

MPR images keep the source's IOD (CT or MR Image Storage; other modalities become
Secondary Capture) with the plane's ImagePositionPatient, ImageOrientationPatient
and PixelSpacing in the source's frame of reference, so measurements and
cross-references work in any viewer.  VR images are RGB Secondary Capture.
Every image names its sources (SourceImageSequence, purpose 121322) and the
series (ReferencedSeriesSequence), with DerivationDescription and a
DerivationCodeSequence (DCM 113072 MPR, 113073 CPR, 113078 MIP, 113079 MinIP,
113074 VR, 113077 volume editing).  Curved reformats are 16-bit Secondary Capture.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    UID,
    CTImageStorage,
    ExplicitVRLittleEndian,
    MRImageStorage,
    SecondaryCaptureImageStorage,
    generate_uid,
)

from radcloud.archive import ingest
from radcloud.archive.service import Archive
from radcloud.auth.access import Principal
from radcloud.volume.build import Volume
from radcloud.volume.mpr import Plane

SOURCE_PURPOSE = ("121322", "DCM", "Source image for image processing operation")
DERIVATION = {
    "thin": ("113072", "DCM", "Multiplanar reformatting"),
    "mip": ("113078", "DCM", "Maximum intensity projection"),
    "minip": ("113079", "DCM", "Minimum intensity projection"),
    "avg": ("113072", "DCM", "Multiplanar reformatting"),
    "cpr": ("113073", "DCM", "Curved multiplanar reformatting"),
    "vr": ("113074", "DCM", "Volume rendering"),
    "edit": ("113077", "DCM", "Volume editing"),
}
_HEADER_SKIP = {"00080016", "0020000E", "00200011", "0008103E", "00080060"}


@dataclass(frozen=True)
class SavedSeries:
    series_uid: str
    series_number: int
    instances: int
    sop_class_uid: str

    def describe(self) -> dict[str, Any]:
        return {
            "series_uid": self.series_uid,
            "series_number": self.series_number,
            "instances": self.instances,
            "sop_class_uid": self.sop_class_uid,
        }


def _code(value: tuple[str, str, str]) -> Dataset:
    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value
    return item


def _base(vol: Volume, sop_class: str, series_uid: str, number: int, description: str) -> Dataset:
    """Patient, study and series modules shared by every image of the new series."""
    header = {k: v for k, v in vol.header.items() if k not in _HEADER_SKIP}
    ds = Dataset.from_json(header)
    now = datetime.now()
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = UID(sop_class)
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds.StudyInstanceUID = vol.study_uid
    ds.SeriesInstanceUID = series_uid
    ds.SeriesNumber = number
    ds.SeriesDescription = description[:64]
    ds.Modality = vol.modality or "OT"
    ds.SeriesDate = ds.ContentDate = now.strftime("%Y%m%d")
    ds.SeriesTime = ds.ContentTime = now.strftime("%H%M%S")
    ds.Manufacturer = "radcloud"
    ds.InstitutionName = ""
    for keyword in ("PatientName", "PatientID", "PatientBirthDate", "PatientSex",
                    "StudyDate", "StudyTime", "ReferringPhysicianName", "StudyID",
                    "AccessionNumber"):  # fmt: skip
        if keyword not in ds:
            setattr(ds, keyword, "")
    return ds


def _references(ds: Dataset, vol: Volume, sources: Sequence[tuple[str, str]], how: str) -> None:
    items = []
    for sop_class, sop_uid in sources:
        item = Dataset()
        item.ReferencedSOPClassUID, item.ReferencedSOPInstanceUID = sop_class, sop_uid
        item.PurposeOfReferenceCodeSequence = DicomSequence([_code(SOURCE_PURPOSE)])
        items.append(item)
    ds.SourceImageSequence = DicomSequence(items)
    series = Dataset()
    series.SeriesInstanceUID = vol.series_uid
    series.ReferencedInstanceSequence = DicomSequence(
        [_instance(c, u) for c, u in sources]
    )  # fmt: skip
    ds.ReferencedSeriesSequence = DicomSequence([series])
    ds.DerivationDescription = how[:1024]


def _instance(sop_class: str, sop_uid: str) -> Dataset:
    item = Dataset()
    item.ReferencedSOPClassUID, item.ReferencedSOPInstanceUID = sop_class, sop_uid
    return item


def _pixels_int16(values: np.ndarray, background: float) -> tuple[np.ndarray, float, float]:
    """(stored int16, slope, intercept) keeping the modality values as exactly as fits."""
    arr = np.where(np.isnan(values), np.float32(background), values).astype(np.float64)
    if np.allclose(arr, np.rint(arr)) and arr.min() >= -32768 and arr.max() <= 32767:
        return np.rint(arr).astype(np.int16), 1.0, 0.0
    peak = max(float(np.abs(arr).max()), 1e-6)
    slope = peak / 32000.0
    return np.rint(arr / slope).astype(np.int16), slope, 0.0


def mpr_images(
    vol: Volume,
    planes: Sequence[Plane],
    images: Sequence[np.ndarray],
    *,
    slab_mm: float,
    mode: str,
    series_number: int,
    description: str,
    window: tuple[float, float],
) -> list[Dataset]:
    """One CT/MR (or Secondary Capture) image per plane, ``images`` its modality values."""
    sop_class = {"CT": CTImageStorage, "MR": MRImageStorage}.get(
        vol.modality, SecondaryCaptureImageStorage
    )
    series_uid = generate_uid()
    how = "thin" if slab_mm <= 0 else mode
    background = -1024.0 if vol.modality == "CT" else vol.value_range[0]
    out = []
    for n, (plane, values) in enumerate(zip(planes, images, strict=True), 1):
        ds = _base(vol, sop_class, series_uid, series_number, description)
        ds.ImageType = ["DERIVED", "SECONDARY", "REFORMATTED", how.upper()]
        ds.InstanceNumber = n
        ds.FrameOfReferenceUID = vol.header.get("00200052", {}).get("Value", [generate_uid()])[0]
        ds.PositionReferenceIndicator = ""
        ds.ImagePositionPatient = [round(float(c), 4) for c in plane.origin]
        ds.ImageOrientationPatient = [round(float(c), 6) for c in (*plane.u, *plane.v)]
        ds.PixelSpacing = [round(plane.pixel_mm, 6)] * 2
        ds.SliceThickness = round(slab_mm, 4) if slab_mm > 0 else round(
            float(vol.geometry.slice_gap), 4
        )  # fmt: skip
        ds.SliceLocation = round(float(plane.center @ plane.normal), 4)
        stored, slope, intercept = _pixels_int16(values, background)
        ds.Rows, ds.Columns = stored.shape
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleSlope, ds.RescaleIntercept = slope, intercept
        if vol.modality == "CT":
            ds.RescaleType = "HU"
            ds.KVP = ""
            ds.AcquisitionNumber = ""
        ds.WindowCenter, ds.WindowWidth = round(window[0], 2), round(window[1], 2)
        ds.PixelData = stored.tobytes()
        depth = max(slab_mm / 2, float(vol.geometry.slice_gap))
        corners = [plane.to_patient(x, y) for x in (0, plane.width - 1)
                   for y in (0, plane.height - 1)]  # fmt: skip
        ks = [vol.geometry.to_index(c + s * depth * plane.normal)[2]
              for c in corners for s in (-1, 1)]  # fmt: skip
        _references(ds, vol, vol.sources_between(min(ks), max(ks)), _describe(how, slab_mm, vol))
        ds.DerivationCodeSequence = DicomSequence([_code(DERIVATION[how])])
        out.append(ds)
    return out


def _describe(how: str, slab_mm: float, vol: Volume) -> str:
    what = {"thin": "Multiplanar reformat", "mip": "Slab MIP", "minip": "Slab MinIP",
            "avg": "Slab average"}[how]  # fmt: skip
    slab = f" {slab_mm:g} mm" if slab_mm > 0 else ""
    return f"{what}{slab} of series {vol.series_uid} (radcloud)"


def vr_images(
    vol: Volume,
    images: Sequence[np.ndarray],
    *,
    series_number: int,
    description: str,
    edited: bool,
) -> list[Dataset]:
    """RGB Secondary Capture images of volume renderings."""
    series_uid = generate_uid()
    out = []
    for n, rgb in enumerate(images, 1):
        ds = _base(vol, SecondaryCaptureImageStorage, series_uid, series_number, description)
        ds.ImageType = ["DERIVED", "SECONDARY", "VOLUME_RENDERING"]
        ds.ConversionType = "WSD"
        ds.InstanceNumber = n
        ds.BurnedInAnnotation = "NO"
        ds.Rows, ds.Columns = rgb.shape[:2]
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 3, "RGB"
        ds.PlanarConfiguration = 0
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
        ds.PixelData = np.ascontiguousarray(rgb, np.uint8).tobytes()
        how = f"Volume rendering of series {vol.series_uid} (radcloud)"
        _references(ds, vol, vol.sources, how + (", edited" if edited else ""))
        codes = [_code(DERIVATION["vr"])] + ([_code(DERIVATION["edit"])] if edited else [])
        ds.DerivationCodeSequence = DicomSequence(codes)
        out.append(ds)
    return out


def cpr_images(
    vol: Volume,
    images: Sequence[np.ndarray],
    *,
    pixel_mm: float,
    kind: str,
    series_number: int,
    description: str,
    window: tuple[float, float],
) -> list[Dataset]:
    """Curved reformats as 16-bit grayscale Secondary Capture (modality values kept)."""
    series_uid = generate_uid()
    background = -1024.0 if vol.modality == "CT" else vol.value_range[0]
    out = []
    for n, values in enumerate(images, 1):
        ds = _base(vol, SecondaryCaptureImageStorage, series_uid, series_number, description)
        ds.ImageType = ["DERIVED", "SECONDARY", "CURVED_REFORMAT"]
        ds.ConversionType = "WSD"
        ds.InstanceNumber = n
        ds.BurnedInAnnotation = "NO"
        stored, slope, intercept = _pixels_int16(values, background)
        ds.Rows, ds.Columns = stored.shape
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleSlope, ds.RescaleIntercept = slope, intercept
        ds.RescaleType = "HU" if vol.modality == "CT" else "US"
        ds.WindowCenter, ds.WindowWidth = round(window[0], 2), round(window[1], 2)
        ds.NominalScannedPixelSpacing = [round(pixel_mm, 6)] * 2
        ds.PixelData = stored.tobytes()
        how = (f"{kind.capitalize()} curved planar reformat, {pixel_mm:g} mm per pixel along "
               f"the path, of series {vol.series_uid} (radcloud)")  # fmt: skip
        _references(ds, vol, vol.sources, how)
        ds.DerivationCodeSequence = DicomSequence([_code(DERIVATION["cpr"])])
        out.append(ds)
    return out


def store_series(
    archive: Archive, datasets: Sequence[Dataset], *, principal: Principal
) -> SavedSeries:
    """Store ``datasets`` (one new series) through :func:`radcloud.archive.ingest.store`."""
    for ds in datasets:
        ingest.store_dataset(
            archive, ds, principal=principal, source="volume",
            expected_study_uid=str(ds.StudyInstanceUID),
        )  # fmt: skip
    first = datasets[0]
    return SavedSeries(
        str(first.SeriesInstanceUID), int(first.SeriesNumber), len(datasets), str(first.SOPClassUID)
    )
