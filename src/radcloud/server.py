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
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from radcloud import __version__
from radcloud.archive import demo
from radcloud.archive.service import Archive
from radcloud.config import Settings
from radcloud.dimse.scp import DimseServer

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


def start_dimse(archive: Archive) -> DimseServer | None:
    settings = archive.settings
    if not settings.dicom_port:
        return None
    try:
        return DimseServer(archive).start()
    except OSError as exc:
        where = f"{settings.dicom_host}:{settings.dicom_port}"
        raise StartupError(f"cannot listen for DICOM on {where}: {exc.strerror}") from exc


def health_probe(dimse: DimseServer | None) -> Callable[[], dict[str, str]]:
    """Listener states for ``/healthz`` (HTTP answers for itself)."""

    def probe() -> dict[str, str]:
        if dimse is None:
            return {}
        return {"dicom": "up" if dimse.is_up else "down"}

    return probe


def _url_host(host: str) -> str:
    return "localhost" if host in ("0.0.0.0", "::", "") else host


def banner(settings: Settings, http_port: int, dimse: DimseServer | None, first_start: bool) -> str:
    host = _url_host(settings.http_host)
    lines = [
        f"radcloud {__version__} is running",
        f"  HTTP        http://{host}:{http_port}/   (API docs: /api/docs)",
        f"  DICOMweb    http://{host}:{http_port}/dicom-web",
    ]
    if dimse is not None:
        lines.append(
            f"  DICOM       AE title {dimse.ae_title} on {_url_host(dimse.host)}:{dimse.port}"
        )
    else:
        lines.append("  DICOM       listener disabled (dicom_port = 0)")
    lines.append(f"  Data        {settings.data_dir.resolve()}")
    if first_start and settings.demo:
        lines.append("First start: a new archive was created; the demo chest CT is loading.")
    elif first_start:
        lines.append(
            "First start: a new, empty archive was created. Send images by C-STORE or "
            "`radcloud import PATH`, or load a demo chest CT with `radcloud demo`."
        )
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
    data_dir = settings.data_dir
    first_start = not data_dir.exists() or not any(data_dir.iterdir())
    try:
        archive = Archive.open(settings)
    except OSError as exc:
        raise StartupError(f"cannot use data folder {data_dir}: {exc.strerror}") from exc
    dimse: DimseServer | None = None
    stop_demo = threading.Event()
    demo: threading.Thread | None = None
    try:
        cleaned = archive.reconcile()
        if any(cleaned.values()):
            log.warning("start-up clean-up after an unclean stop: %s", cleaned)
        http_sock = bind_http(settings.http_host, settings.http_port)
        dimse = start_dimse(archive)
        app = create_app(archive, health=health_probe(dimse))
        config: Any = uvicorn.Config(
            app, log_config=None, access_log=False, lifespan="on",
            log_level=settings.log_level.lower(), timeout_graceful_shutdown=SHUTDOWN_GRACE,
        )  # fmt: skip
        server = uvicorn.Server(config)
        print(banner(settings, http_sock.getsockname()[1], dimse, first_start), flush=True)
        if settings.demo:
            demo = _demo_in_background(archive, stop_demo)
        with _note_signals():
            server.run(sockets=[http_sock])
        log.info("shutting down")
    finally:
        stop_demo.set()
        if dimse is not None:
            dimse.stop(grace=SHUTDOWN_GRACE)
        if demo is not None:
            demo.join(30)
        archive.close()
