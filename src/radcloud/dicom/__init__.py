"""DICOM encoding: parsing, codecs, UIDs, SOP classes, wrapping of non-DICOM files."""

from __future__ import annotations

from pydicom import config as _pydicom_config


def configure_pydicom() -> None:
    """Process-wide pydicom settings for an archive.

    The archive keeps objects as received and checks what it relies on itself
    (:mod:`radcloud.dicom.parse`: required UIDs, SOP class, completeness), so
    pydicom's per-value checks while *reading* only cost time (a regular
    expression per UID, on every DIMSE message and file) and fill the log with
    warnings about other systems' data.  Values radcloud *writes* stay checked.
    """
    _pydicom_config.settings.reading_validation_mode = _pydicom_config.IGNORE
