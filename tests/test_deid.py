"""De-identification (PS3.15 Annex E): walk every attribute of the shared copy for identifiers."""

from __future__ import annotations

from datetime import date

import numpy as np
import pytest
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, UltrasoundImageStorage, generate_uid

from radcloud.share.deid import Deidentifier, Options, band_height

SECRET = b"0123456789abcdef-share-1"
NAME, NAME_ZH = "Zhang^Wei", "张^伟"
PID, OTHER_PID, ACCESSION = "HX20240017", "OLDID-7788", "ACC-99123"
BIRTH, STUDY_DATE = "19580412", "20240105"
INSTITUTION, PHYSICIAN = "West China Hospital", "Li^Ming^Dr"
ADDRESS, PHONE = "37 Guoxue Alley, Chengdu", "+86-28-8542-2114"
STUDY, SERIES, SOP, FOR = (generate_uid() for _ in range(4))

#: Values that must not survive anywhere in the shared copy.
IDENTIFYING = [
    "Zhang", "Wei", "张", "伟", PID, OTHER_PID, ACCESSION, BIRTH, STUDY_DATE, "2024-01-05",
    INSTITUTION, "Li^Ming", "Ming", ADDRESS, PHONE, STUDY, SERIES, SOP, FOR, "Radiology West",
    "Wang^Fang", "CT01-SN4471", "WCH-CT-3",
]  # fmt: skip


def patient_ct(instance: int = 1, sop: str = SOP, study_date: str = STUDY_DATE) -> Dataset:
    """A CT image carrying PHI in every place a real one does (and some it should not)."""
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, sop
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = STUDY, SERIES, FOR
    ds.PatientName = f"{NAME}={NAME_ZH}"
    ds.PatientID, ds.IssuerOfPatientID, ds.OtherPatientIDs = PID, "WCH", OTHER_PID
    ds.PatientBirthDate, ds.PatientSex, ds.PatientAge = BIRTH, "M", "065Y"
    ds.PatientAddress, ds.PatientTelephoneNumbers = ADDRESS, PHONE
    ds.PatientWeight, ds.PatientSize = 71.5, 1.72
    ds.StudyDate = ds.SeriesDate = ds.AcquisitionDate = ds.ContentDate = study_date
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = "093012"
    ds.AccessionNumber, ds.StudyID = ACCESSION, "S7781"
    ds.InstitutionName, ds.InstitutionAddress = INSTITUTION, ADDRESS
    ds.InstitutionalDepartmentName = "Radiology West"
    ds.ReferringPhysicianName, ds.PerformingPhysicianName = PHYSICIAN, "Wang^Fang"
    ds.OperatorsName, ds.StationName, ds.DeviceSerialNumber = "Wang^Fang", "WCH-CT-3", "CT01-SN4471"
    ds.StudyDescription = "CT chest low dose"
    ds.SeriesDescription = f"Lung 1mm for {PID}"  # an ID typed into a description
    ds.ImageComments = f"patient {NAME} moved"
    ds.Modality, ds.Manufacturer, ds.BodyPartExamined = "CT", "ACME", "CHEST"
    ds.SliceThickness, ds.KVP = 1.0, 120
    ds.ImagePositionPatient, ds.ImageOrientationPatient = [-175, -175, -40.5], [1, 0, 0, 0, 1, 0]
    ds.PixelSpacing, ds.InstanceNumber = [0.7, 0.7], instance
    other = Dataset()
    other.PatientID, other.IssuerOfPatientID = OTHER_PID, "CITY"
    ds.OtherPatientIDsSequence = Sequence([other])
    req = Dataset()
    req.AccessionNumber, req.RequestedProcedureID = ACCESSION, "RP-1"
    req.ScheduledProcedureStepID = "SPS-1"
    ds.RequestAttributesSequence = Sequence([req])
    ref = Dataset()
    ref.ReferencedSOPClassUID, ref.ReferencedSOPInstanceUID = CTImageStorage, SOP
    ds.ReferencedImageSequence = Sequence([ref])
    proc = Dataset()
    proc.CodeValue, proc.CodingSchemeDesignator, proc.CodeMeaning = "CT-CHEST", "L", "CT chest"
    ds.ProcedureCodeSequence = Sequence([proc])
    # a physician name and a date in an attribute the Annex E table does not list
    ds.add(DataElement(0x00321034, "SQ", Sequence()))  # RequestingServiceCodeSequence (empty)
    ds.add(DataElement(0x0040A075, "PN", PHYSICIAN))  # VerifyingObserverName (D)
    ds.add(DataElement(0x00181200, "DA", [STUDY_DATE]))  # DateOfLastCalibration
    # private tags with PHI
    ds.add_new(0x00090010, "LO", "ACME PRIVATE")
    ds.add_new(0x00091001, "LO", f"{NAME} {PID}")
    ds.add_new(0x00091002, "OB", PID.encode())
    ds.Rows = ds.Columns = 8
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit, ds.PixelRepresentation, ds.SamplesPerPixel = 15, 1, 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.PixelData = np.arange(64, dtype=np.int16).tobytes()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID, ds.file_meta.MediaStorageSOPInstanceUID = (
        ds.SOPClassUID,
        sop,
    )
    ds.file_meta.SourceApplicationEntityTitle = "WCH-CT-3"
    return ds


def every_value(ds: Dataset, path: str = "") -> list[tuple[str, str]]:
    """(where, text) for every value at any depth, file meta and bytes included."""
    out = []
    for elem in ds:
        where = f"{path}{elem.keyword or elem.tag}"
        if elem.VR == "SQ":
            for i, item in enumerate(elem.value):
                out += every_value(item, f"{where}[{i}].")
            continue
        value = elem.value
        values = (
            value
            if isinstance(value, list | tuple) or type(value).__name__ == "MultiValue"
            else [value]
        )
        for v in values:
            if isinstance(v, bytes | bytearray):
                v = bytes(v).decode("latin-1")
            out.append((where, str(v)))
    return out


def leaks(ds: Dataset) -> list[str]:
    values = every_value(ds) + (
        every_value(ds.file_meta, "meta.") if hasattr(ds, "file_meta") else []
    )
    return [
        f"{where}={text!r} holds {token!r}"
        for where, text in values
        for token in IDENTIFYING
        if token.lower() in text.lower()
    ]


def test_no_identifier_survives_anywhere() -> None:
    original = patient_ct()
    assert leaks(original)  # the check does find them in the original
    shared, report = Deidentifier(SECRET).apply(original)
    assert leaks(shared) == []
    assert report.residual_removed >= 2  # the ID in SeriesDescription, the name in ImageComments
    assert not [e for e in shared if e.tag.is_private]


def test_what_is_kept_and_the_bookkeeping() -> None:
    shared, _ = Deidentifier(SECRET).apply(patient_ct())
    assert shared.PatientIdentityRemoved == "YES"
    assert shared.LongitudinalTemporalInformationModified == "MODIFIED"
    codes = [item.CodeValue for item in shared.DeidentificationMethodCodeSequence]
    assert codes[0] == "113100" and {"113107", "113108", "113105"} <= set(codes)
    # Retain Patient Characteristics: sex, age, weight, size stay
    assert (shared.PatientSex, shared.PatientAge, float(shared.PatientWeight)) == (
        "M",
        "065Y",
        71.5,
    )
    # what a viewer needs stays exactly
    assert shared.SOPClassUID == CTImageStorage and shared.Modality == "CT"
    assert [float(v) for v in shared.ImagePositionPatient] == [-175, -175, -40.5]
    assert shared.PixelData == patient_ct().PixelData
    assert shared.StudyDescription == "CT chest low dose"  # Clean Descriptors: nothing identifying
    assert shared.ProcedureCodeSequence[0].CodeValue == "CT-CHEST"
    assert shared.ReferencedImageSequence[0].ReferencedSOPClassUID == CTImageStorage
    # empty Type 2 attributes, a pseudonym for the ID
    assert (str(shared.PatientName), shared.AccessionNumber, shared.PatientBirthDate) == (
        "",
        "",
        "",
    )
    assert shared.PatientID.startswith("ANON-")
    assert shared.file_meta.MediaStorageSOPInstanceUID == shared.SOPInstanceUID
    assert "SourceApplicationEntityTitle" not in shared.file_meta


def test_uids_are_consistent_within_a_share_and_unlinkable_across_shares() -> None:
    d = Deidentifier(SECRET)
    a, _ = d.apply(patient_ct(1, sop=SOP))
    b, _ = d.apply(patient_ct(2, sop=generate_uid()))
    assert a.StudyInstanceUID == b.StudyInstanceUID != STUDY
    assert (
        a.SeriesInstanceUID == b.SeriesInstanceUID
        and a.FrameOfReferenceUID == b.FrameOfReferenceUID
    )
    assert a.SOPInstanceUID != b.SOPInstanceUID
    # a reference to the SOP instance points at its new UID
    assert a.ReferencedImageSequence[0].ReferencedSOPInstanceUID == a.SOPInstanceUID
    for uid in (a.StudyInstanceUID, a.SOPInstanceUID):
        assert (
            uid.startswith("2.25.") and len(uid) <= 64 and all(p.isdigit() for p in uid.split("."))
        )
    other, _ = Deidentifier(b"another-secret-16bytes").apply(patient_ct())
    assert other.StudyInstanceUID != a.StudyInstanceUID
    assert other.PatientID != a.PatientID


def test_dates_move_by_one_offset_per_patient_keeping_intervals() -> None:
    d = Deidentifier(SECRET)
    first, _ = d.apply(patient_ct(study_date="20240105"))
    later, _ = d.apply(patient_ct(study_date="20240315", sop=generate_uid()))

    def day(text: str) -> date:
        return date(int(text[:4]), int(text[4:6]), int(text[6:]))

    assert (day(later.StudyDate) - day(first.StudyDate)).days == 70  # interval kept
    moved = (date(2024, 1, 5) - day(first.StudyDate)).days
    assert 366 <= moved < 366 + 3285
    assert first.StudyTime == "093012"  # times stay with Modified Dates
    assert day(first[0x00181200].value) == day(first.StudyDate)  # unlisted DA shifted the same


def test_basic_profile_without_options_removes_dates_and_characteristics() -> None:
    opts = Options(modified_dates=False, retain_patient_characteristics=False,
                   clean_descriptors=False, clean_pixel_data=False)  # fmt: skip
    shared, _ = Deidentifier(SECRET, opts).apply(patient_ct())
    assert (
        shared.StudyDate == "" and "SeriesDate" not in shared and "StudyDescription" not in shared
    )
    assert shared.PatientSex == "" and "PatientAge" not in shared and "PatientWeight" not in shared
    assert shared.LongitudinalTemporalInformationModified == "REMOVED"
    assert leaks(shared) == []


def test_ultrasound_burned_in_band_is_blacked_out() -> None:
    ds = patient_ct()
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = UltrasoundImageStorage
    ds.Modality, ds.Rows, ds.Columns = "US", 240, 320
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit, ds.PixelRepresentation = 7, 0
    ds.PixelData = np.full((240, 320), 200, np.uint8).tobytes()
    shared, report = Deidentifier(SECRET).apply(ds)
    pixels = shared.pixel_array
    band = band_height(240)
    assert report.pixels_masked and band == 24
    assert (pixels[:band] == 0).all() and (pixels[band:] == 200).all()
    assert "113101" in [i.CodeValue for i in shared.DeidentificationMethodCodeSequence]


def test_the_original_is_not_touched() -> None:
    original = patient_ct()
    Deidentifier(SECRET).apply(original)
    assert original.PatientID == PID and original.StudyInstanceUID == STUDY


def test_short_secrets_are_refused() -> None:
    with pytest.raises(ValueError, match="16 bytes"):
        Deidentifier(b"short")
