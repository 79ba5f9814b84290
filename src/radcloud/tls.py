"""TLS for the HTTP server and the DICOM listener: one policy, built from settings.

The policy is BCP 195 (RFC 9325), which DICOM adopts for secure transport in
PS3.15 Annex B (the "BCP195" and "Non-downgrading BCP195" TLS Secure Transport
Connection Profiles): TLS 1.2 or 1.3 only; under TLS 1.2 only ECDHE key
exchange with AEAD ciphers (AES-GCM, ChaCha20-Poly1305), so every session has
forward secrecy; TLS 1.3's own suites are all AEAD.  No compression, no
renegotiation.  DCMTK's default ``--profile-bcp195-nd`` and every current
browser and HTTP client negotiate within it.

Certificates and keys are PEM files named by settings.  Anything wrong with
them (missing, unreadable, not PEM, passphrase-protected, key not matching
the certificate) is a :class:`TLSConfigError` whose message names the file
and the setting, so ``radcloud serve`` can refuse to start with one readable
line rather than a traceback or an interactive passphrase prompt.
"""

from __future__ import annotations

import datetime as dt
import logging
import ssl
from pathlib import Path

from radcloud.config import Settings

log = logging.getLogger(__name__)

#: TLS 1.2 cipher suites (OpenSSL names): BCP 195 / RFC 9325 §4.2, ECDHE + AEAD
#: only, for RSA and ECDSA certificates.  TLS 1.3 suites are OpenSSL's defaults.
TLS12_CIPHERS = ":".join(
    [
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        "ECDHE-RSA-AES128-GCM-SHA256",
        "ECDHE-ECDSA-AES256-GCM-SHA384",
        "ECDHE-RSA-AES256-GCM-SHA384",
        "ECDHE-ECDSA-CHACHA20-POLY1305",
        "ECDHE-RSA-CHACHA20-POLY1305",
    ]
)
MINIMUM_VERSION = ssl.TLSVersion.TLSv1_2
#: A certificate expiring sooner than this is worth a warning at start-up.
EXPIRY_WARNING = dt.timedelta(days=30)


class TLSConfigError(ValueError):
    """TLS settings or files cannot be used; the message names the file and the setting."""


def _env(setting: str) -> str:
    return f"RADCLOUD_{setting.upper()}"


def _read_pem(path: Path, setting: str, what: str) -> str:
    """The text of a PEM file, or a TLSConfigError saying why it cannot be used."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise TLSConfigError(f"{what} file {path} ({_env(setting)}) does not exist") from None
    except IsADirectoryError:
        raise TLSConfigError(f"{what} file {path} ({_env(setting)}) is a folder") from None
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise TLSConfigError(
            f"cannot read {what} file {path} ({_env(setting)}): {reason}"
        ) from None
    text = data.decode("ascii", errors="replace")
    if "-----BEGIN " not in text:
        raise TLSConfigError(f"{what} file {path} ({_env(setting)}) is not a PEM file")
    return text


def _check_cert(path: Path, setting: str) -> None:
    text = _read_pem(path, setting, "TLS certificate")
    if "-----BEGIN CERTIFICATE-----" not in text:
        raise TLSConfigError(
            f"TLS certificate file {path} ({_env(setting)}) holds no PEM certificate"
        )
    _warn_if_expiring(text, path)


def _check_key(path: Path, setting: str) -> None:
    text = _read_pem(path, setting, "TLS private key")
    if "ENCRYPTED" in text:
        raise TLSConfigError(
            f"TLS private key file {path} ({_env(setting)}) is protected by a passphrase; "
            "radcloud needs an unencrypted key (protect the file with its permissions instead)"
        )
    if "PRIVATE KEY-----" not in text:
        raise TLSConfigError(
            f"TLS private key file {path} ({_env(setting)}) holds no PEM private key"
        )


def _warn_if_expiring(pem: str, path: Path) -> None:
    """Log when the leaf certificate has expired or soon will: clients will refuse it."""
    try:
        from cryptography import x509

        cert = x509.load_pem_x509_certificate(pem.encode("ascii"))
    except Exception:  # noqa: BLE001 - OpenSSL gives the real error when loading
        return
    now = dt.datetime.now(dt.UTC)
    if cert.not_valid_after_utc < now:
        log.warning("TLS certificate %s expired on %s", path, cert.not_valid_after_utc.date())
    elif cert.not_valid_after_utc - now < EXPIRY_WARNING:
        log.warning("TLS certificate %s expires on %s", path, cert.not_valid_after_utc.date())
    if cert.not_valid_before_utc > now:
        log.warning("TLS certificate %s is not valid before %s", path, cert.not_valid_before_utc)


def _no_passphrase() -> bytes:
    # never let OpenSSL prompt on the terminal of a service
    raise TLSConfigError("the TLS private key is protected by a passphrase")


def _harden(ctx: ssl.SSLContext) -> None:
    ctx.minimum_version = MINIMUM_VERSION
    ctx.set_ciphers(TLS12_CIPHERS)
    ctx.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION


def server_context(
    cert_file: Path,
    key_file: Path,
    ca_file: Path | None = None,
    *,
    cert_setting: str = "tls_cert_file",
    key_setting: str = "tls_key_file",
    ca_setting: str = "dicom_tls_ca_file",
) -> ssl.SSLContext:
    """A server-side context with our certificate; with ``ca_file``, clients must present
    a certificate chaining to it (mutual TLS).  The ``*_setting`` names go into errors."""
    cert_file, key_file = Path(cert_file), Path(key_file)
    _check_cert(cert_file, cert_setting)
    _check_key(key_file, key_setting)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    _harden(ctx)
    ctx.options |= ssl.OP_CIPHER_SERVER_PREFERENCE | ssl.OP_SINGLE_ECDH_USE
    try:
        ctx.load_cert_chain(cert_file, key_file, password=_no_passphrase)
    except TLSConfigError:
        raise TLSConfigError(
            f"TLS private key file {key_file} ({_env(key_setting)}) is protected by a "
            "passphrase; radcloud needs an unencrypted key"
        ) from None
    except ssl.SSLError as exc:
        if exc.reason == "KEY_VALUES_MISMATCH":
            raise TLSConfigError(
                f"TLS private key {key_file} ({_env(key_setting)}) does not belong to "
                f"certificate {cert_file} ({_env(cert_setting)})"
            ) from None
        raise TLSConfigError(
            f"cannot load TLS certificate {cert_file} with key {key_file}: "
            f"{exc.reason or exc.strerror or exc}"
        ) from None
    if ca_file is not None:
        ca_file = Path(ca_file)
        _read_pem(ca_file, ca_setting, "TLS CA certificate")
        try:
            ctx.load_verify_locations(cafile=ca_file)
        except ssl.SSLError as exc:
            raise TLSConfigError(
                f"TLS CA file {ca_file} ({_env(ca_setting)}) holds no usable certificate: "
                f"{exc.reason or exc}"
            ) from None
        ctx.verify_mode = ssl.CERT_REQUIRED  # only this CA: no system trust store
    return ctx


def client_context(
    ca_file: Path | None = None,
    cert_file: Path | None = None,
    key_file: Path | None = None,
    *,
    check_hostname: bool = True,
) -> ssl.SSLContext:
    """A client-side context under the same policy, for our SCU side (and tests).

    Trusts ``ca_file`` (else the system store); ``cert_file``/``key_file`` is
    our client certificate for peers that require one.  DICOM peers are often
    addressed by IP with certificates naming only a host: ``check_hostname=False``
    still verifies the chain.
    """
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca_file)
    _harden(ctx)
    ctx.check_hostname = check_hostname
    if cert_file is not None:
        ctx.load_cert_chain(cert_file, key_file, password=_no_passphrase)
    return ctx


def http_enabled(settings: Settings) -> bool:
    """True when HTTP is to be served over TLS (HTTPS)."""
    return bool(settings.tls_cert_file or settings.tls_key_file)


def http_context(settings: Settings) -> ssl.SSLContext | None:
    """The HTTPS context, or None for plain HTTP (neither file set)."""
    cert, key = settings.tls_cert_file, settings.tls_key_file
    if cert is None and key is None:
        return None
    if cert is None or key is None:
        missing = "tls_key_file" if key is None else "tls_cert_file"
        given = "tls_cert_file" if key is None else "tls_key_file"
        raise TLSConfigError(f"{_env(given)} is set but {_env(missing)} is not; HTTPS needs both")
    return server_context(cert, key)


def dicom_context(settings: Settings) -> ssl.SSLContext | None:
    """The DICOM TLS listener's context, or None when ``dicom_tls_port`` is 0.

    The certificate and key default to the HTTPS ones; ``dicom_tls_ca_file``
    turns on mutual TLS.
    """
    if not settings.dicom_tls_port:
        if settings.dicom_tls_ca_file is not None:
            log.warning("RADCLOUD_DICOM_TLS_CA_FILE is set but the DICOM TLS port is 0 (off)")
        return None
    cert_setting = "dicom_tls_cert_file" if settings.dicom_tls_cert_file else "tls_cert_file"
    key_setting = "dicom_tls_key_file" if settings.dicom_tls_key_file else "tls_key_file"
    cert = settings.dicom_tls_cert_file or settings.tls_cert_file
    key = settings.dicom_tls_key_file or settings.tls_key_file
    if cert is None or key is None:
        raise TLSConfigError(
            f"RADCLOUD_DICOM_TLS_PORT is {settings.dicom_tls_port} but no certificate and key "
            "are set: set RADCLOUD_DICOM_TLS_CERT_FILE and RADCLOUD_DICOM_TLS_KEY_FILE "
            "(or RADCLOUD_TLS_CERT_FILE and RADCLOUD_TLS_KEY_FILE)"
        )
    return server_context(
        cert, key, settings.dicom_tls_ca_file, cert_setting=cert_setting, key_setting=key_setting
    )
