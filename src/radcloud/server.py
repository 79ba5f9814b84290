"""``radcloud serve``: the archive, the DIMSE listener and the HTTP app in one process.

Start-up order: open the archive (migrating the index) and reconcile what a
crash may have left (temp files, blobs without a row); bind both listeners
(a busy port is a clear error before anything runs); print where to connect;
serve until SIGTERM/SIGINT, then stop accepting, let running DICOM
associations finish for a few seconds, and close the archive.
"""

from __future__ import annotations

import logging
import signal
import socket
import ssl
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from radcloud import __version__, tls
from radcloud.archive import demo
from radcloud.archive.service import Archive
from radcloud.auth import accounts
from radcloud.config import Settings
from radcloud.dimse import workers as dimse_workers
from radcloud.dimse.scp import DimseServer, check_port_free

log = logging.getLogger(__name__)

#: Seconds running DICOM associations get to finish on shutdown.
SHUTDOWN_GRACE = 10


class StartupError(Exception):
    """The server cannot start (port busy, data folder unusable); the message says why."""


# ------------------------------------------------------------------ start-up


def setup_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if level.upper() != "DEBUG":  # one line per association is noise at INFO
        logging.getLogger("pynetdicom").setLevel(logging.WARNING)
        logging.getLogger("alembic").setLevel(logging.WARNING)


def bind_http(host: str, port: int) -> socket.socket:
    """The HTTP listening socket, bound now so a busy port fails before anything runs."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise StartupError(f"cannot listen for HTTP on {host}:{port}: {exc.strerror}") from exc
    sock.listen(2048)
    sock.setblocking(False)
    return sock


def start_dimse(
    archive: Archive, ssl_context: ssl.SSLContext | None = None, share_port: bool = False
) -> DimseServer | None:
    """The plain DICOM listener on ``dicom_port``, or with a TLS context the DICOM TLS
    listener on ``dicom_tls_port``; None when that port is 0.  ``share_port``: other
    processes will listen on the same port (:mod:`radcloud.dimse.workers`)."""
    settings = archive.settings
    port = settings.dicom_tls_port if ssl_context is not None else settings.dicom_port
    if not port:
        return None
    try:
        if share_port:
            check_port_free(settings.dicom_host, port)
        server = DimseServer(archive, port=port, ssl_context=ssl_context, share_port=share_port)
        return server.start()
    except OSError as exc:
        what = "DICOM TLS" if ssl_context is not None else "DICOM"
        where = f"{settings.dicom_host}:{port}"
        raise StartupError(f"cannot listen for {what} on {where}: {exc.strerror}") from exc


def health_probe(
    dimse: DimseServer | None,
    dimse_tls: DimseServer | None = None,
    workers: dimse_workers.Workers | None = None,
) -> Callable[[], dict[str, str]]:
    """Listener states for ``/healthz`` (HTTP answers for itself)."""

    def probe() -> dict[str, str]:
        listeners = {"dicom": dimse, "dicom_tls": dimse_tls}
        states = {k: "up" if s.is_up else "down" for k, s in listeners.items() if s is not None}
        if workers is not None:  # the extra listener processes on the DICOM port
            states["dicom_processes"] = "up" if workers.alive == workers.count else "down"
        return states

    return probe


def _url_host(host: str) -> str:
    return "localhost" if host in ("0.0.0.0", "::", "") else host


def banner(
    settings: Settings,
    http_port: int,
    dimse: DimseServer | None,
    first_start: bool,
    dimse_tls: DimseServer | None = None,
    admin_password: str | None = None,
    processes: int = 1,
) -> str:
    host = _url_host(settings.http_host)
    scheme = "https" if tls.http_enabled(settings) else "http"
    lines = [
        f"radcloud {__version__} is running",
        f"  HTTP        {scheme}://{host}:{http_port}/   (API docs: /api/docs)",
        f"  DICOMweb    {scheme}://{host}:{http_port}/dicom-web",
    ]
    if dimse is not None:
        shared = f"   ({processes} processes)" if processes > 1 else ""
        lines.append(
            f"  DICOM       AE title {dimse.ae_title} on {_url_host(dimse.host)}:{dimse.port}"
            f"{shared}"
        )
    else:
        lines.append("  DICOM       listener disabled (dicom_port = 0)")
    if dimse_tls is not None:
        mutual = ", client certificate required" if settings.dicom_tls_ca_file else ""
        lines.append(
            f"  DICOM TLS   AE title {dimse_tls.ae_title} on "
            f"{_url_host(dimse_tls.host)}:{dimse_tls.port}   (TLS 1.2+{mutual})"
        )
    lines.append(f"  Data        {settings.data_dir.resolve()}")
    if first_start and settings.demo:
        lines.append("First start: a new archive was created; the demo chest CT is loading.")
    elif first_start:
        lines.append(
            "First start: a new, empty archive was created. Send images by C-STORE or "
            "`radcloud import PATH`, or load a demo chest CT with `radcloud demo`."
        )
    if admin_password:
        lines += [
            "",
            "  Sign in as 'admin' with the password below. It is shown only this once: keep",
            "  it or set RADCLOUD_ADMIN_PASSWORD before the first start next time.",
            f"      {admin_password}",
            "",
        ]
    lines.append("Stop with Ctrl+C (or SIGTERM).")
    return "\n".join(lines)


@contextmanager
def _note_signals() -> Iterator[list[int]]:
    """Record SIGINT/SIGTERM instead of dying: uvicorn re-raises them after its shutdown."""
    seen: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield seen
        return
    previous = {
        s: signal.signal(s, lambda sig, _f: seen.append(sig))
        for s in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        yield seen
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _demo_in_background(archive: Archive, stop: threading.Event) -> threading.Thread | None:
    if not demo.is_empty(archive):
        log.info("--demo: the archive already holds studies; not loading the demo study")
        return None

    def work() -> None:
        log.info("loading the demo chest CT (%d slices)…", demo.DEMO_SLICES)
        try:
            n = demo.load_demo(archive, stop=stop)
            log.info("demo chest CT loaded: %d slices, patient ID %s", n, demo.DEMO_PATIENT_ID)
        except Exception:
            log.exception("loading the demo study failed")

    thread = threading.Thread(target=work, name="demo-loader", daemon=True)
    thread.start()
    return thread


def run(settings: Settings) -> None:
    """Serve until SIGTERM/SIGINT.  Raises :class:`StartupError` when it cannot start."""
    import uvicorn

    from radcloud.web.app import create_app

    setup_logging(settings.log_level)
    try:  # bad certificate settings fail before anything is opened or bound
        http_ssl, dicom_ssl = tls.http_context(settings), tls.dicom_context(settings)
    except tls.TLSConfigError as exc:
        raise StartupError(str(exc)) from exc
    data_dir = settings.data_dir
    first_start = not data_dir.exists() or not any(data_dir.iterdir())
    try:
        archive = Archive.open(settings)
    except OSError as exc:
        raise StartupError(f"cannot use data folder {data_dir}: {exc.strerror}") from exc
    dimse: DimseServer | None = None
    dimse_tls: DimseServer | None = None
    stop_demo = threading.Event()
    demo: threading.Thread | None = None
    stop_jobs: Callable[[], None] | None = None
    workers: dimse_workers.Workers | None = None
    try:
        cleaned = archive.reconcile()
        if any(cleaned.values()):
            log.warning("start-up clean-up after an unclean stop: %s", cleaned)
        admin_password = accounts.ensure_admin(archive)
        from radcloud.analysis import runtime as analysis_runtime

        stop_jobs = analysis_runtime.start(archive)  # job worker + series-complete analysis
        from radcloud.share import publish as share_publish

        share_publish.install(archive)  # the patient's link + SMS when a report is signed
        http_sock = bind_http(settings.http_host, settings.http_port)
        processes = dimse_workers.process_count(settings)
        dimse = start_dimse(archive, share_port=processes > 1)
        if dimse is not None and processes > 1:
            workers = dimse_workers.Workers(settings, dimse.port, processes - 1).start()
        if dicom_ssl is not None:
            dimse_tls = start_dimse(archive, dicom_ssl)
        app = create_app(archive, health=health_probe(dimse, dimse_tls, workers))
        config: Any = uvicorn.Config(
            app, log_config=None, access_log=False, lifespan="on",
            log_level=settings.log_level.lower(), timeout_graceful_shutdown=SHUTDOWN_GRACE,
            ssl_context_factory=None if http_ssl is None else (lambda _c, _d: http_ssl),
        )  # fmt: skip
        server = uvicorn.Server(config)
        http_port = http_sock.getsockname()[1]
        text = banner(
            settings, http_port, dimse, first_start, dimse_tls, admin_password,
            processes=1 if workers is None else workers.count + 1,
        )  # fmt: skip
        print(text, flush=True)
        if settings.demo:
            demo = _demo_in_background(archive, stop_demo)
        with _note_signals():
            server.run(sockets=[http_sock])
        log.info("shutting down")
    finally:
        stop_demo.set()
        if workers is not None:
            workers.stop(grace=SHUTDOWN_GRACE)
        if dimse is not None:
            dimse.stop(grace=SHUTDOWN_GRACE)
        if dimse_tls is not None:
            dimse_tls.stop(grace=SHUTDOWN_GRACE)
        if demo is not None:
            demo.join(30)
        if stop_jobs is not None:
            stop_jobs()
        archive.close()
