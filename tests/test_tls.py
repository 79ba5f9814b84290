"""TLS on HTTP and DICOM: the policy, DCMTK peers over DICOM TLS, mutual TLS, start-up errors.

The DICOM listener tests run in-process (``DimseServer`` with a context from
:mod:`radcloud.tls`); the HTTPS and start-up tests run ``radcloud serve`` as a
child process.  Certificates come from :mod:`radcloud.testing.certs`.
The calling AE title used throughout is registered as a known node, so these
tests stay about TLS when the listener checks calling AE titles.
"""

from __future__ import annotations

import socket
import ssl
import subprocess
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from _dimse_data import dcmtk, free_port, write_series
from _server import RADCLOUD, Server
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]
from sqlalchemy import func, select

from radcloud import tls
from radcloud.archive.nodes import add_remote_ae
from radcloud.archive.service import Archive
from radcloud.config import Settings
from radcloud.dimse.net import RadcloudAE
from radcloud.dimse.scp import DimseServer
from radcloud.store.models import Instance, Series
from radcloud.testing.certs import Pki, make_pki

pytestmark = pytest.mark.dcmtk

CALLING = "TLSTEST"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def rogue(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """Another CA with its own client certificate: not trusted by the server."""
    return make_pki(tmp_path_factory.mktemp("rogue"))


@pytest.fixture
def archive(tmp_path: Path) -> Iterator[Archive]:
    """SQLite only: the index back end has nothing to do with TLS."""
    a = Archive.open(Settings(data_dir=tmp_path / "data", dicom_port=0))
    add_remote_ae(a, CALLING, "127.0.0.1", 1)
    yield a
    a.close()


def _listener(archive: Archive, ctx: ssl.SSLContext) -> Iterator[DimseServer]:
    server = DimseServer(archive, host="127.0.0.1", port=0, ssl_context=ctx).start()
    yield server
    server.stop(grace=0)


@pytest.fixture
def mtls_scp(archive: Archive, pki: Pki) -> Iterator[DimseServer]:
    """DICOM TLS listener that requires a client certificate from ``pki``'s CA."""
    yield from _listener(archive, tls.server_context(pki.server_cert, pki.server_key, pki.ca_cert))


@pytest.fixture
def tls_scp(archive: Archive, pki: Pki) -> Iterator[DimseServer]:
    """DICOM TLS listener without client certificates (server authentication only)."""
    yield from _listener(archive, tls.server_context(pki.server_cert, pki.server_key))


def _tls_opts(pki: Pki | None, ca: Path) -> list[str]:
    """DCMTK TLS options: our client certificate (``pki``) or none, trusting ``ca``."""
    own = ["+tls", str(pki.client_key), str(pki.client_cert)] if pki else ["+tla"]
    return [*own, "+cf", str(ca)]


def _echoscu(port: int, *opts: str) -> subprocess.CompletedProcess[str]:
    return dcmtk("echoscu", *opts, "-aet", CALLING, "-aec", "RADCLOUD", "127.0.0.1", str(port))


def _count(archive: Archive, series_uid: str) -> int:
    """Instances of the series in the index (straight from the tables: no access rules)."""
    stmt = (
        select(func.count())
        .select_from(Instance)
        .join(Series, Instance.series_fk == Series.id)
        .where(Series.series_uid == series_uid)
    )
    with archive.read() as conn:
        return int(conn.execute(stmt).scalar_one())


# ------------------------------------------------------------------ DICOM TLS, DCMTK peers


def test_dcmtk_echo_and_store_over_mutual_tls(
    mtls_scp: DimseServer, archive: Archive, pki: Pki, tmp_path: Path
) -> None:
    r = _echoscu(mtls_scp.port, "-v", *_tls_opts(pki, pki.ca_cert))
    assert r.returncode == 0 and "Success" in r.stderr, r.stderr

    series = write_series(tmp_path / "s", 3)
    r = dcmtk(
        "storescu", *_tls_opts(pki, pki.ca_cert), "-aet", CALLING, "-aec", "RADCLOUD",
        "127.0.0.1", str(mtls_scp.port), *map(str, series.paths),
    )  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    assert _count(archive, series.series_uid) == 3


def test_mutual_tls_refuses_clients_without_a_trusted_certificate(
    mtls_scp: DimseServer, archive: Archive, pki: Pki, rogue: Pki, tmp_path: Path
) -> None:
    assert _echoscu(mtls_scp.port, *_tls_opts(None, pki.ca_cert)).returncode != 0
    assert _echoscu(mtls_scp.port, *_tls_opts(rogue, pki.ca_cert)).returncode != 0
    # a certificate from the right CA but for a server (extended key usage serverAuth only)
    server_as_client = ["+tls", str(pki.server_key), str(pki.server_cert), "+cf", str(pki.ca_cert)]
    assert _echoscu(mtls_scp.port, *server_as_client).returncode != 0
    series = write_series(tmp_path / "s", 1)
    r = dcmtk(
        "storescu", *_tls_opts(None, pki.ca_cert), "-aet", CALLING, "-aec", "RADCLOUD",
        "127.0.0.1", str(mtls_scp.port), str(series.paths[0]),
    )  # fmt: skip
    assert r.returncode != 0
    assert _count(archive, series.series_uid) == 0
    # the refusals did not break the listener
    assert _echoscu(mtls_scp.port, *_tls_opts(pki, pki.ca_cert)).returncode == 0


def test_without_a_ca_file_clients_need_no_certificate(tls_scp: DimseServer, pki: Pki) -> None:
    r = _echoscu(tls_scp.port, *_tls_opts(None, pki.ca_cert))
    assert r.returncode == 0, r.stderr


def test_dcmtk_refuses_a_server_certificate_from_another_ca(
    tls_scp: DimseServer, rogue: Pki
) -> None:
    assert _echoscu(tls_scp.port, *_tls_opts(None, rogue.ca_cert)).returncode != 0


def test_plain_dicom_to_the_tls_port_fails_and_idle_peers_stall_nobody(
    tls_scp: DimseServer, pki: Pki
) -> None:
    assert _echoscu(tls_scp.port).returncode != 0  # plain TCP association

    ae = RadcloudAE(ae_title=CALLING)
    ae.add_requested_context(Verification)
    ae.acse_timeout = 10
    assert not ae.associate("127.0.0.1", tls_scp.port, ae_title="RADCLOUD").is_established

    # a peer that connects and never starts its handshake must not block the listener
    with socket.create_connection(("127.0.0.1", tls_scp.port)):
        time.sleep(0.2)
        t0 = time.monotonic()
        r = _echoscu(tls_scp.port, "-to", "10", *_tls_opts(None, pki.ca_cert))
        assert r.returncode == 0, r.stderr
        assert time.monotonic() - t0 < 8


def test_pynetdicom_scu_over_tls_keeps_tcp_nodelay(mtls_scp: DimseServer, pki: Pki) -> None:
    ctx = tls.client_context(pki.ca_cert, pki.client_cert, pki.client_key)
    ae = RadcloudAE(ae_title=CALLING)
    ae.add_requested_context(Verification)
    assoc = ae.associate(
        "127.0.0.1", mtls_scp.port, ae_title="RADCLOUD", tls_args=(ctx, "localhost")
    )
    assert assoc.is_established
    try:
        assert assoc.send_c_echo().Status == 0
        assert mtls_scp.ae is not None
        (acceptor,) = [a for a in mtls_scp.ae.active_associations if a.is_acceptor]
        for end in (assoc, acceptor):
            sock = end.dul.socket.socket  # type: ignore[union-attr]
            assert isinstance(sock, ssl.SSLSocket)
            assert sock.version() in ("TLSv1.2", "TLSv1.3")
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
    finally:
        assoc.release()


# ------------------------------------------------------------------ protocol versions, ciphers


def _handshake(
    port: int,
    ca: Path,
    version: ssl.TLSVersion | None = None,
    ciphers: str | None = None,
) -> tuple[str | None, str]:
    """(protocol, cipher) a Python client negotiates with ``port``; raises ssl.SSLError."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(ca)
    with warnings.catch_warnings():  # TLS 1.1 is deprecated: that's the point
        warnings.simplefilter("ignore", DeprecationWarning)
        if version is not None:
            ctx.minimum_version = ctx.maximum_version = version
        if ciphers is not None:
            ctx.set_ciphers(ciphers)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost") as conn:
            cipher = conn.cipher()
            assert cipher is not None
            return conn.version(), cipher[0]


#: How a server's refusal of TLS 1.1 shows at the client: Python's blocking ssl (the DICOM
#: listener) sends a protocol_version alert; asyncio's (uvicorn) just closes the connection.
SERVER_REFUSALS = {"TLSV1_ALERT_PROTOCOL_VERSION", "UNEXPECTED_EOF_WHILE_READING"}


def _assert_policy(port: int, ca: Path) -> None:
    """TLS 1.2 (ECDHE + AEAD only) and 1.3 accepted; TLS 1.1, CBC and RSA key exchange refused."""
    assert _handshake(port, ca, ssl.TLSVersion.TLSv1_3)[0] == "TLSv1.3"
    version, cipher = _handshake(port, ca, ssl.TLSVersion.TLSv1_2)
    assert version == "TLSv1.2" and cipher.startswith("ECDHE-") and "GCM" in cipher
    with pytest.raises(ssl.SSLError) as refused:  # the client offers TLS 1.1 only
        _handshake(port, ca, ssl.TLSVersion.TLSv1_1, "DEFAULT:@SECLEVEL=0")
    # refused by the server (an alert, or asyncio's bare close), not for want of a client offer
    assert refused.value.reason in SERVER_REFUSALS, refused.value
    for weak in ("ECDHE-RSA-AES128-SHA256", "AES128-GCM-SHA256"):  # CBC; no forward secrecy
        with pytest.raises(ssl.SSLError):
            _handshake(port, ca, ssl.TLSVersion.TLSv1_2, weak)


def test_dicom_tls_policy_versions_and_ciphers(tls_scp: DimseServer, pki: Pki) -> None:
    _assert_policy(tls_scp.port, pki.ca_cert)


# ------------------------------------------------------------------ settings and files


def test_clear_errors_for_unusable_certificate_files(pki: Pki, rogue: Pki, tmp_path: Path) -> None:
    def error(**kw: Path) -> str:
        with pytest.raises(tls.TLSConfigError) as exc:
            tls.server_context(**{"cert_file": pki.server_cert, "key_file": pki.server_key, **kw})
        return str(exc.value)

    missing = tmp_path / "nope.crt"
    assert error(cert_file=missing) == (
        f"TLS certificate file {missing} (RADCLOUD_TLS_CERT_FILE) does not exist"
    )
    text = tmp_path / "notes.txt"
    text.write_text("not a certificate\n")
    assert "is not a PEM file" in error(cert_file=text)
    assert "holds no PEM certificate" in error(cert_file=pki.server_key)
    assert "holds no PEM private key" in error(key_file=pki.server_cert)
    assert "does not belong to certificate" in error(key_file=rogue.server_key)
    locked = tmp_path / "locked.key"
    locked.write_text(
        "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n"
    )
    assert "passphrase" in error(key_file=locked)
    assert "RADCLOUD_DICOM_TLS_CA_FILE" in error(ca_file=tmp_path / "ca-missing.crt")

    only_cert = Settings(data_dir=tmp_path, tls_cert_file=pki.server_cert)
    with pytest.raises(tls.TLSConfigError, match="RADCLOUD_TLS_KEY_FILE is not; HTTPS needs both"):
        tls.http_context(only_cert)
    no_cert = Settings(data_dir=tmp_path, dicom_tls_port=2762)
    with pytest.raises(tls.TLSConfigError, match="no certificate and key"):
        tls.dicom_context(no_cert)
    assert tls.http_context(Settings(data_dir=tmp_path)) is None
    assert tls.dicom_context(Settings(data_dir=tmp_path)) is None


def test_dicom_tls_files_default_to_the_https_ones(pki: Pki, rogue: Pki, tmp_path: Path) -> None:
    shared = Settings(
        data_dir=tmp_path, dicom_tls_port=2762,
        tls_cert_file=pki.server_cert, tls_key_file=pki.server_key,
    )  # fmt: skip
    ctx = tls.dicom_context(shared)
    assert ctx is not None and ctx.verify_mode == ssl.CERT_NONE
    own = shared.model_copy(
        update={
            "dicom_tls_cert_file": rogue.server_cert,
            "dicom_tls_key_file": tmp_path / "missing.key",
            "dicom_tls_ca_file": pki.ca_cert,
        }
    )
    with pytest.raises(tls.TLSConfigError, match="RADCLOUD_DICOM_TLS_KEY_FILE"):
        tls.dicom_context(own)
    own = own.model_copy(update={"dicom_tls_key_file": rogue.server_key})
    ctx = tls.dicom_context(own)
    assert ctx is not None and ctx.verify_mode == ssl.CERT_REQUIRED


# ------------------------------------------------------------------ radcloud serve


def _tls_server(tmp_path: Path, pki: Pki, **env: str) -> Server:
    srv = Server(
        tmp_path / "data",
        RADCLOUD_TLS_CERT_FILE=str(pki.server_cert),
        RADCLOUD_TLS_KEY_FILE=str(pki.server_key),
        RADCLOUD_DICOM_TLS_PORT=str(free_port()),
        RADCLOUD_DICOM_TLS_CA_FILE=str(pki.ca_cert),
        **env,
    )
    add = [RADCLOUD, "ae", "add", CALLING, "--host", "127.0.0.1", "--port", "1"]
    r = subprocess.run(add, env=srv.env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    return srv


@pytest.fixture
def tls_server(tmp_path: Path, pki: Pki) -> Iterator[Server]:
    srv = _tls_server(tmp_path, pki)
    yield srv
    if srv.proc is not None and srv.proc.poll() is None:
        srv.proc.kill()
        srv.proc.wait(30)


def test_serve_https_and_dicom_tls(tls_server: Server, pki: Pki, tmp_path: Path) -> None:
    srv = tls_server
    srv.start()
    tls_port = int(srv.env["RADCLOUD_DICOM_TLS_PORT"])
    https = f"https://localhost:{srv.http_port}"

    r = httpx.get(f"{https}/healthz", verify=tls.client_context(pki.ca_cert), timeout=10)
    assert r.status_code == 200, r.text
    assert r.json()["checks"] | {"dicom": "up", "dicom_tls": "up"} == r.json()["checks"]
    with pytest.raises(httpx.HTTPError):  # plain HTTP to the HTTPS port
        httpx.get(f"http://127.0.0.1:{srv.http_port}/healthz", timeout=10)
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        httpx.get(f"{https}/healthz", timeout=10)  # system trust store: our CA is not in it
    _assert_policy(srv.http_port, pki.ca_cert)

    banner = srv.log.read_text()
    assert f"HTTP        https://127.0.0.1:{srv.http_port}/" in banner
    assert f"DICOM TLS   AE title RADCLOUD on 127.0.0.1:{tls_port}" in banner

    series = write_series(tmp_path / "s", 2)
    store = ["storescu", "-aet", CALLING, "-aec", "RADCLOUD", "127.0.0.1"]
    r = dcmtk(*store[:1], *_tls_opts(pki, pki.ca_cert), *store[1:], str(tls_port),
              *map(str, series.paths))  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    assert dcmtk(*store[:1], *_tls_opts(None, pki.ca_cert), *store[1:], str(tls_port),
                 str(series.paths[0])).returncode != 0  # fmt: skip
    assert _echoscu(srv.dicom_port).returncode == 0  # the plain listener runs alongside

    assert srv.stop() == 0
    settings = Settings(data_dir=Path(srv.env["RADCLOUD_DATA_DIR"]), dicom_port=0)
    archive = Archive.open(settings)
    try:
        assert _count(archive, series.series_uid) == 2
    finally:
        archive.close()


def test_serve_dicom_tls_only(tmp_path: Path, pki: Pki) -> None:
    srv = _tls_server(tmp_path, pki, RADCLOUD_DICOM_PORT="0")
    try:
        srv.start()
        r = httpx.get(
            f"https://localhost:{srv.http_port}/healthz",
            verify=tls.client_context(pki.ca_cert),
            timeout=10,
        )
        assert r.status_code == 200 and "dicom" not in r.json()["checks"], r.text
        assert r.json()["checks"]["dicom_tls"] == "up"
        tls_port = srv.env["RADCLOUD_DICOM_TLS_PORT"]
        assert _echoscu(int(tls_port), *_tls_opts(pki, pki.ca_cert)).returncode == 0
        assert srv.stop() == 0
    finally:
        if srv.proc is not None and srv.proc.poll() is None:
            srv.proc.kill()


@pytest.mark.parametrize("case", ["missing cert", "key of another cert", "TLS port, no cert"])
def test_serve_refuses_to_start_with_a_clear_error(
    case: str, tmp_path: Path, pki: Pki, rogue: Pki
) -> None:
    env = Server(tmp_path / "data").env | {"COLUMNS": "500"}  # one line, however long
    missing = tmp_path / "missing.crt"
    if case == "missing cert":
        env |= {
            "RADCLOUD_TLS_CERT_FILE": str(missing),
            "RADCLOUD_TLS_KEY_FILE": str(pki.server_key),
        }
        expected = f"TLS certificate file {missing} (RADCLOUD_TLS_CERT_FILE) does not exist"
    elif case == "key of another cert":
        env |= {"RADCLOUD_TLS_CERT_FILE": str(pki.server_cert),
                "RADCLOUD_TLS_KEY_FILE": str(rogue.server_key)}  # fmt: skip
        expected = "does not belong to certificate"
    else:
        env |= {"RADCLOUD_DICOM_TLS_PORT": str(free_port())}
        expected = "no certificate and key are set"
    r = subprocess.run([RADCLOUD, "serve"], env=env, capture_output=True, text=True, timeout=60)
    out = " ".join((r.stdout + r.stderr).split())  # rich may wrap long lines
    assert r.returncode == 1, out
    assert expected in out
    assert "Traceback" not in out
    assert not (tmp_path / "data").exists()  # refused before the data folder was touched
