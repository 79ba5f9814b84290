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

    # --- accounts, sessions, audit (radcloud.auth) ---
    admin_password: str | None = Field(
        None,
        description="Password of the platform admin 'admin' on first start; "
        "generated and printed once if unset.",
    )
    session_idle_minutes: int = Field(30, description="A session expires after this idle time.")
    session_max_hours: int = Field(12, description="A session expires this long after login.")
    login_max_failures: int = Field(5, description="Failed logins before the account locks.")
    login_lockout_minutes: int = Field(15, description="How long a locked account stays locked.")
    break_glass_hours: int = Field(4, description="How long a break-the-glass grant lasts.")
    audit_flush_seconds: float = Field(
        0.5, description="Audit events are written in batches at least this often."
    )
    trusted_proxies: str = Field(
        "", description="Comma-separated proxy addresses whose X-Forwarded-For is believed."
    )
    oidc_issuer: str | None = Field(
        None, description="OIDC issuer URL of the hospital identity provider (enables SSO)."
    )
    oidc_client_id: str | None = Field(None, description="OIDC client id registered for radcloud.")
    oidc_client_secret: str | None = Field(None, description="OIDC client secret.")
    oidc_scopes: str = Field("openid profile email", description="Scopes asked for at SSO login.")
    oidc_username_claim: str = Field(
        "preferred_username", description="ID-token claim that names the radcloud user."
    )
    oidc_auto_create: bool = Field(
        False, description="Create unknown SSO users (as clinician of the default institution)."
    )
    public_url: str | None = Field(
        None, description="External base URL (for SSO redirects); default: from the request."
    )

    # --- encryption at rest (radcloud.store.crypto) ---
    encrypt_at_rest: bool = Field(True, description="Encrypt blobs with AES-256-GCM.")
    key_file: Path | None = Field(
        None,
        description="Key file (one 'key-id base64-key' per line, first line = active key); "
        "default <data_dir>/keys/radcloud.keys, created on first start.",
    )
    encryption_keys: str | None = Field(
        None,
        description="Keys from the environment instead of a file: 'id:base64,id:base64' "
        "(first = active).",
    )

    # --- TLS on HTTP and DICOM ---
    tls_cert_file: Path | None = Field(None, description="PEM certificate chain for HTTPS.")
    tls_key_file: Path | None = Field(None, description="PEM private key for HTTPS.")
    dicom_tls_port: int = Field(
        0, description="DICOM TLS port (PS3.15; 2762 is customary); 0 disables it."
    )
    dicom_tls_cert_file: Path | None = Field(
        None, description="PEM certificate for DICOM TLS (default: tls_cert_file)."
    )
    dicom_tls_key_file: Path | None = Field(
        None, description="PEM key for DICOM TLS (default: tls_key_file)."
    )
    dicom_tls_ca_file: Path | None = Field(
        None, description="CA bundle that peers' client certificates must chain to (mutual TLS)."
    )

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
