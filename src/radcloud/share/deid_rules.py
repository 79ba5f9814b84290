"""PS3.15 Annex E Table E.1-1: what the Basic Application Level Confidentiality Profile does.

One row per attribute (DICOM 2024e, the attributes met in practice; see
``../shared/reference/dicom_essentials.md``): the Basic Profile action and
the actions of the options that change it.  Codes (PS3.15 E.1.1):

- ``D`` a dummy value, ``Z`` empty (or dummy), ``X`` remove, ``K`` keep,
  ``C`` clean, ``U`` a new UID, consistent within the shared set;
- compound codes (``X/Z``, ``X/Z/D``, ``X/Z/U*``...) depend on the IOD; the
  de-identifier resolves them as :data:`COMPOUND` says.

Attributes not listed are handled by value representation in
:mod:`radcloud.share.deid` (names emptied, dates shifted or removed, UIDs
replaced, private attributes removed), so a row missing here still leaves no
identifier behind.
"""

from __future__ import annotations

#: Option names used in the override column.
FULL_DATES, MOD_DATES, PAT_CHARS = "FullDates", "ModDates", "PatChars"
DEV_ID, INST_ID, UIDS, CLEAN_DESC = "DevId", "InstId", "UIDs", "CleanDesc"
CLEAN_SC, CLEAN_GRAPH = "CleanSC", "CleanGraph"

_DATES = {FULL_DATES: "K", MOD_DATES: "C"}

#: tag → (Basic Profile action, {option: action}).
RULES: dict[int, tuple[str, dict[str, str]]] = {
    0x00080012: ("X/D", _DATES),  # InstanceCreationDate
    0x00080013: ("X/Z/D", _DATES),  # InstanceCreationTime
    0x00080014: ("U", {UIDS: "K"}),  # InstanceCreatorUID
    0x00080018: ("U", {UIDS: "K"}),  # SOPInstanceUID
    0x00080020: ("Z", _DATES),  # StudyDate
    0x00080021: ("X/D", _DATES),  # SeriesDate
    0x00080022: ("X/Z", _DATES),  # AcquisitionDate
    0x00080023: ("Z/D", _DATES),  # ContentDate
    0x0008002A: ("X/Z/D", _DATES),  # AcquisitionDateTime
    0x00080030: ("Z", _DATES),  # StudyTime
    0x00080031: ("X/D", _DATES),  # SeriesTime
    0x00080032: ("X/Z", _DATES),  # AcquisitionTime
    0x00080033: ("Z/D", _DATES),  # ContentTime
    0x00080050: ("Z", {}),  # AccessionNumber
    0x00080080: ("X/Z/D", {INST_ID: "K"}),  # InstitutionName
    0x00080081: ("X", {INST_ID: "K"}),  # InstitutionAddress
    0x00080082: ("X/Z/D", {INST_ID: "K"}),  # InstitutionCodeSequence
    0x00080090: ("Z", {}),  # ReferringPhysicianName
    0x00080092: ("X", {}),  # ReferringPhysicianAddress
    0x00080094: ("X", {}),  # ReferringPhysicianTelephoneNumbers
    0x00080096: ("X", {}),  # ReferringPhysicianIdentificationSequence
    0x0008009C: ("Z", {}),  # ConsultingPhysicianName
    0x00080201: ("X", _DATES),  # TimezoneOffsetFromUTC
    0x00081010: ("X/Z/D", {DEV_ID: "K"}),  # StationName
    0x00081030: ("X", {CLEAN_DESC: "C"}),  # StudyDescription
    0x0008103E: ("X", {CLEAN_DESC: "C"}),  # SeriesDescription
    0x00081040: ("X", {INST_ID: "K"}),  # InstitutionalDepartmentName
    0x00081048: ("X", {}),  # PhysiciansOfRecord
    0x00081050: ("X", {}),  # PerformingPhysicianName
    0x00081060: ("X", {}),  # NameOfPhysiciansReadingStudy
    0x00081070: ("X/Z/D", {}),  # OperatorsName
    0x00081072: ("X/D", {}),  # OperatorIdentificationSequence
    0x00081080: ("X", {CLEAN_DESC: "C"}),  # AdmittingDiagnosesDescription
    0x00081110: ("X/Z", {UIDS: "K"}),  # ReferencedStudySequence
    0x00081111: ("X/Z/D", {UIDS: "K"}),  # ReferencedPerformedProcedureStepSequence
    0x00081120: ("X", {UIDS: "K"}),  # ReferencedPatientSequence
    0x00081140: ("X/Z/U*", {UIDS: "K"}),  # ReferencedImageSequence
    0x00081155: ("U", {UIDS: "K"}),  # ReferencedSOPInstanceUID
    0x00082111: ("X", {CLEAN_DESC: "C"}),  # DerivationDescription
    0x00082112: ("X/Z/U*", {UIDS: "K"}),  # SourceImageSequence
    0x00100010: ("Z", {}),  # PatientName
    0x00100020: ("Z/D", {}),  # PatientID
    0x00100021: ("X", {}),  # IssuerOfPatientID
    0x00100030: ("Z", {}),  # PatientBirthDate
    0x00100032: ("X", {}),  # PatientBirthTime
    0x00100040: ("Z", {PAT_CHARS: "K"}),  # PatientSex
    0x00101000: ("X", {}),  # OtherPatientIDs
    0x00101001: ("X", {}),  # OtherPatientNames
    0x00101002: ("X", {}),  # OtherPatientIDsSequence
    0x00101005: ("X", {}),  # PatientBirthName
    0x00101010: ("X", {PAT_CHARS: "K"}),  # PatientAge
    0x00101020: ("X", {PAT_CHARS: "K"}),  # PatientSize
    0x00101030: ("X", {PAT_CHARS: "K"}),  # PatientWeight
    0x00101040: ("X", {}),  # PatientAddress
    0x00101060: ("X", {}),  # PatientMotherBirthName
    0x00101090: ("X", {}),  # MedicalRecordLocator
    0x00102000: ("X", {CLEAN_DESC: "C"}),  # MedicalAlerts
    0x00102110: ("X", {PAT_CHARS: "C", CLEAN_DESC: "C"}),  # Allergies
    0x00102150: ("X", {}),  # CountryOfResidence
    0x00102154: ("X", {}),  # PatientTelephoneNumbers
    0x00102160: ("X", {PAT_CHARS: "K"}),  # EthnicGroup
    0x00102180: ("X", {CLEAN_DESC: "C"}),  # Occupation
    0x001021A0: ("X", {PAT_CHARS: "K"}),  # SmokingStatus
    0x001021B0: ("X", {CLEAN_DESC: "C"}),  # AdditionalPatientHistory
    0x001021C0: ("X", {PAT_CHARS: "K"}),  # PregnancyStatus
    0x001021D0: ("X", _DATES),  # LastMenstrualDate
    0x001021F0: ("X", {}),  # PatientReligiousPreference
    0x00102203: ("X/Z", {PAT_CHARS: "K"}),  # PatientSexNeutered
    0x00104000: ("X", {CLEAN_DESC: "C"}),  # PatientComments
    0x00180010: ("Z/D", {CLEAN_DESC: "C"}),  # ContrastBolusAgent
    0x00181000: ("X/Z/D", {DEV_ID: "K"}),  # DeviceSerialNumber
    0x00181002: ("U", {UIDS: "K", DEV_ID: "K"}),  # DeviceUID
    0x00181004: ("X", {DEV_ID: "K"}),  # PlateID
    0x00181005: ("X", {DEV_ID: "K"}),  # GeneratorID
    0x00181007: ("X", {DEV_ID: "K"}),  # CassetteID
    0x00181008: ("X", {DEV_ID: "K"}),  # GantryID
    0x00181030: ("X/D", {CLEAN_DESC: "C"}),  # ProtocolName
    0x00181400: ("X/D", {CLEAN_DESC: "C"}),  # AcquisitionDeviceProcessingDescription
    0x00184000: ("X", {CLEAN_DESC: "C"}),  # AcquisitionComments
    0x0018700A: ("X/D", {DEV_ID: "K"}),  # DetectorID
    0x00189516: ("X/D", _DATES),  # StartAcquisitionDateTime
    0x00189517: ("X/D", _DATES),  # EndAcquisitionDateTime
    0x0020000D: ("U", {UIDS: "K"}),  # StudyInstanceUID
    0x0020000E: ("U", {UIDS: "K"}),  # SeriesInstanceUID
    0x00200010: ("Z", {}),  # StudyID
    0x00200052: ("U", {UIDS: "K"}),  # FrameOfReferenceUID
    0x00200200: ("U", {UIDS: "K"}),  # SynchronizationFrameOfReferenceUID
    0x00204000: ("X", {CLEAN_DESC: "C"}),  # ImageComments
    0x00209161: ("U", {UIDS: "K"}),  # ConcatenationUID
    0x00209164: ("U", {UIDS: "K"}),  # DimensionOrganizationUID
    0x00284000: ("X", {}),  # ImagePresentationComments
    0x00321032: ("X", {}),  # RequestingPhysician
    0x00321033: ("X", {}),  # RequestingService
    0x00321060: ("X/Z", {CLEAN_DESC: "C"}),  # RequestedProcedureDescription
    0x00321070: ("X", {CLEAN_DESC: "C"}),  # RequestedContrastAgent
    0x00324000: ("X", {CLEAN_DESC: "C"}),  # StudyComments
    0x00380010: ("X", {}),  # AdmissionID
    0x00380300: ("X", {}),  # CurrentPatientLocation
    0x00380400: ("X", {}),  # PatientInstitutionResidence
    0x00380500: ("X", {PAT_CHARS: "C", CLEAN_DESC: "C"}),  # PatientState
    0x00400001: ("X", {DEV_ID: "C"}),  # ScheduledStationAETitle
    0x00400002: ("X", _DATES),  # ScheduledProcedureStepStartDate
    0x00400003: ("X", _DATES),  # ScheduledProcedureStepStartTime
    0x00400006: ("X", {}),  # ScheduledPerformingPhysicianName
    0x00400007: ("X", {CLEAN_DESC: "C"}),  # ScheduledProcedureStepDescription
    0x00400009: ("X", {}),  # ScheduledProcedureStepID
    0x00400010: ("X", {DEV_ID: "K"}),  # ScheduledStationName
    0x00400011: ("X", {DEV_ID: "K"}),  # ScheduledProcedureStepLocation
    0x00400241: ("X", {DEV_ID: "C"}),  # PerformedStationAETitle
    0x00400242: ("X", {DEV_ID: "K"}),  # PerformedStationName
    0x00400243: ("X", {}),  # PerformedLocation
    0x00400244: ("X", _DATES),  # PerformedProcedureStepStartDate
    0x00400245: ("X", _DATES),  # PerformedProcedureStepStartTime
    0x00400253: ("X", {}),  # PerformedProcedureStepID
    0x00400254: ("X", {CLEAN_DESC: "C"}),  # PerformedProcedureStepDescription
    0x00400275: ("X", {CLEAN_DESC: "C"}),  # RequestAttributesSequence
    0x00400280: ("X", {CLEAN_DESC: "C"}),  # CommentsOnThePerformedProcedureStep
    0x00400555: ("X/Z", {CLEAN_SC: "C"}),  # AcquisitionContextSequence
    0x00401001: ("X", {}),  # RequestedProcedureID
    0x00401400: ("X", {CLEAN_DESC: "C"}),  # RequestedProcedureComments
    0x00402016: ("Z", {}),  # PlacerOrderNumberImagingServiceRequest
    0x00402017: ("Z", {}),  # FillerOrderNumberImagingServiceRequest
    0x00402400: ("X", {CLEAN_DESC: "C"}),  # ImagingServiceRequestComments
    0x0040A027: ("D", {}),  # VerifyingOrganization
    0x0040A030: ("D", _DATES),  # VerificationDateTime
    0x0040A032: ("X/D", _DATES),  # ObservationDateTime
    0x0040A073: ("D", {}),  # VerifyingObserverSequence
    0x0040A075: ("D", {}),  # VerifyingObserverName
    0x0040A123: ("D", {}),  # PersonName
    0x0040A124: ("U", {}),  # UID
    0x0040A730: ("D", {CLEAN_SC: "C"}),  # ContentSequence
    0x00880140: ("U", {UIDS: "K"}),  # StorageMediaFileSetUID
    0x00880200: ("X", {}),  # IconImageSequence
    0x04000402: ("X", {}),  # ReferencedDigitalSignatureSequence
    0x04000403: ("X", {}),  # ReferencedSOPInstanceMACSequence
    0x04000404: ("X", {}),  # MAC
    0x04000550: ("X", {}),  # ModifiedAttributesSequence
    0x04000561: ("X", {}),  # OriginalAttributesSequence
    0x20300020: ("X", {}),  # TextString
    0x30060024: ("U", {UIDS: "K"}),  # ReferencedFrameOfReferenceUID
    0x300600C2: ("U", {UIDS: "K"}),  # RelatedFrameOfReferenceUID
    0x40000010: ("X", {}),  # Arbitrary
    0x40004000: ("X", {}),  # TextComments
    0x40080042: ("X", {}),  # ResultsIDIssuer
    0xFFFAFFFA: ("X", {}),  # DigitalSignaturesSequence
    0xFFFCFFFC: ("X", {}),  # DataSetTrailingPadding
}

#: Repeating groups: (group mask, group, element) → rule (curves 50xx, overlays 60xx).
REPEATING: list[tuple[int, int, int | None, tuple[str, dict[str, str]]]] = [
    (0xFF00, 0x5000, None, ("X", {CLEAN_GRAPH: "C"})),  # curve data (retired)
    (0xFF00, 0x6000, 0x3000, ("X", {CLEAN_GRAPH: "C"})),  # OverlayData
    (0xFF00, 0x6000, 0x4000, ("X", {CLEAN_GRAPH: "C"})),  # OverlayComments
]

#: How compound codes are resolved without the IOD at hand: the attributes a
#: viewer or PACS needs to file an object keep an empty (Z) or dummy (D)
#: value; the rest go (X).  "X/Z/U*" sequences are kept with their UIDs
#: replaced, so references between shared objects still resolve.
COMPOUND = {"X/Z": "X", "X/D": "X", "X/Z/D": "X", "Z/D": "Z", "X/Z/U*": "U*"}
#: Attributes whose compound code resolves to Z/D anyway (Type 1/2 in image IODs).
KEEP_EMPTY = {
    0x00080023,  # ContentDate
    0x00080033,  # ContentTime
    0x00100020,  # PatientID (gets a pseudonym: D)
}


def rule_for(tag: int) -> tuple[str, dict[str, str]] | None:
    """The table row for ``tag``, repeating groups included; None when not listed."""
    row = RULES.get(tag)
    if row is not None:
        return row
    group, element = tag >> 16, tag & 0xFFFF
    for mask, value, elem, rep in REPEATING:
        if group & mask == value and (elem is None or elem == element):
            return rep
    return None
