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
    dimse_max_associations: int = Field(
        32, description="Concurrent DIMSE associations (per listening process)."
    )
    dicom_processes: int = Field(
        0,
        description="Processes accepting plain DICOM associations on dicom_port, sharing it "
        "(SO_REUSEPORT): 1 = the server process only; 0 = one per CPU core, at most 4.",
    )
    render_concurrency: int = Field(4, description="Concurrent render/transcode jobs.")
    verify_on_read: bool = Field(True, description="Check blob SHA-256 when reading a file.")
    volume_cache_mb: int = Field(
        2048, description="Memory (MiB) for built 3D volumes, shared by all viewers (LRU)."
    )
    volume_render_threads: int = Field(
        2, description="Concurrent 3D renders (MPR/MIP/VR); more requests wait their turn."
    )
    volume_decode_threads: int = Field(
        2, description="Threads decoding slices while a 3D volume is built."
    )
    demo: bool = Field(False, description="Load the demo study on start if the archive is empty.")

    # --- background jobs (radcloud.jobs) and analysis (radcloud.analysis) ---
    jobs_backend: str = Field(
        "embedded",
        description="Who runs jobs: 'embedded' (worker threads in this process) or 'celery' "
        "(Celery workers via celery_broker_url; this process only schedules).",
    )
    celery_broker_url: str = Field(
        "redis://127.0.0.1:6379/0", description="Celery broker (jobs_backend = 'celery')."
    )
    celery_queue: str = Field(
        "radcloud", description="Celery queue the jobs go to (workers listen with -Q)."
    )
    jobs_worker_threads: int = Field(1, description="Embedded worker threads running jobs.")
    jobs_poll_seconds: float = Field(2.0, description="How often idle workers look for jobs.")
    jobs_lease_seconds: float = Field(
        300.0,
        description="A running job not heard from for this long is taken to have died "
        "and runs again (up to its attempts).",
    )
    analysis_auto: bool = Field(
        True, description="Run the matching analysis modules when a series is complete."
    )
    analysis_quiet_seconds: float = Field(
        60.0, description="A series is complete when no instance arrived for this long."
    )
    analysis_lookback_hours: float = Field(
        24.0, description="At start, series changed this recently are checked for analysis."
    )
    analysis_models_dir: Path | None = Field(
        None, description="Folder of site-provided ONNX models (<name>.onnx + <name>.json)."
    )
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
    # --- share links and patient access (radcloud.share) ---
    share_default_hours: int = Field(72, description="Expiry of a share link when none is given.")
    share_max_days: int = Field(180, description="Longest expiry a share link may have (days).")
    share_patient_days: int = Field(
        30, description="Expiry of the patient's link published when a report is signed (days)."
    )
    share_max_attempts: int = Field(
        5, description="Wrong identity-check answers before a share link locks."
    )
    share_session_minutes: int = Field(
        30, description="How long a browser stays in a share after passing its identity check."
    )
    share_ip_failures: int = Field(
        20, description="Failed share opens (unknown link, wrong answer) per address in 5 minutes."
    )
    share_publish_on_sign: bool = Field(
        True, description="Publish a study to its patient (link + SMS) when its report is signed."
    )
    share_publish_modalities: str = Field(
        "", description="Publish on signing only these modalities (comma list; empty: all)."
    )
    share_publish_departments: str = Field(
        "", description="... and only these departments (InstitutionalDepartmentName; empty: all)."
    )
    sms_provider: str = Field("log", description="SMS provider: 'log' (development) or 'http'.")
    sms_url: str | None = Field(None, description="URL of the HTTP SMS gateway (JSON POST).")
    sms_token: str | None = Field(None, description="Token sent to the SMS gateway (X-Api-Token).")
    sms_sign: str = Field("放射科", description="Sender name put in brackets before SMS texts.")

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
