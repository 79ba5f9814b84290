"""radcloud: an open-source cloud imaging platform (DICOM archive, DICOMweb, DIMSE)."""

__version__ = "0.1.0"
