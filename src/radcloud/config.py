"""One settings object for the whole process.

Values come from environment variables ``RADCLOUD_*`` and, if
``RADCLOUD_CONFIG`` names one, a TOML file (environment wins).  Every field
documents its default; the README lists the ones operators rely on.
"""

from __future__ import annotations

import os
import tomllib
from enum import StrEnum
from pathlib import Path
from typing import Any

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class DuplicatePolicy(StrEnum):
    """What to do when an instance with a known SOP Instance UID arrives again."""

    KEEP = "keep"  # keep the stored copy, acknowledge the new one as a duplicate
    REPLACE = "replace"  # the new copy replaces the stored one


class CompressionRule(StrEnum):
    """Lossless compression applied to pixel data at rest."""

    NONE = "none"
    JPEG_LS = "jpeg-ls"
    JPEG_2000 = "jpeg2000"
    HTJ2K = "htj2k"


class Settings(BaseSettings):
    """Process settings; see the README for the operator-facing subset."""

    model_config = SettingsConfigDict(env_prefix="RADCLOUD_", extra="ignore")

    data_dir: Path = Field(Path("./radcloud-data"), description="Data folder (blobs, SQLite).")
    database_url: str | None = Field(
        None, description="SQLAlchemy URL; default sqlite:///<data_dir>/index.sqlite (WAL)."
    )
    http_host: str = Field("0.0.0.0", description="HTTP bind address.")
    http_port: int = Field(8042, description="HTTP port (DICOMweb under /dicom-web).")
    dicom_host: str = Field("0.0.0.0", description="DIMSE bind address.")
    dicom_port: int = Field(11112, description="DIMSE port; 0 disables the DICOM listener.")
    ae_title: str = Field("RADCLOUD", max_length=16, description="Our AE title.")
    duplicate_policy: DuplicatePolicy = Field(
        DuplicatePolicy.KEEP, description="Same SOP Instance UID again: keep or replace."
    )
    compression: CompressionRule = Field(
        CompressionRule.NONE, description="Lossless compression of pixel data at rest."
    )
    compression_modalities: str = Field(
        "", description="Comma-separated modalities the compression rule applies to ('' = all)."
    )
    max_upload_bytes: int = Field(
        8 * 1024**3, description="Largest accepted HTTP upload body (bytes)."
    )
    max_pdu_size: int = Field(0, description="Max PDU we receive (0 = unlimited).")
    dimse_max_associations: int = Field(32, description="Concurrent DIMSE associations.")
    render_concurrency: int = Field(4, description="Concurrent render/transcode jobs.")
    verify_on_read: bool = Field(True, description="Check blob SHA-256 when reading a file.")
    demo: bool = Field(False, description="Load the demo study on start if the archive is empty.")
    log_level: str = Field("INFO", description="Python log level.")

    @property
    def resolved_database_url(self) -> str:
        """The configured database URL, or SQLite inside the data folder."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'index.sqlite').resolve()}"

    @property
    def blob_dir(self) -> Path:
        return self.data_dir / "blobs"

    @property
    def tmp_dir(self) -> Path:
        """Spool folder on the same file system as the blobs (rename stays atomic)."""
        return self.data_dir / "tmp"


def load_settings(**overrides: Any) -> Settings:
    """Settings from ``RADCLOUD_CONFIG`` (TOML), then environment, then ``overrides``."""
    file_values: dict[str, Any] = {}
    path = os.environ.get("RADCLOUD_CONFIG")
    if path:
        with open(path, "rb") as fh:
            file_values = tomllib.load(fh)
        env_keys = {k[len("RADCLOUD_") :].lower() for k in os.environ if k.startswith("RADCLOUD_")}
        file_values = {k: v for k, v in file_values.items() if k not in env_keys}
    return Settings(**{**file_values, **overrides})
