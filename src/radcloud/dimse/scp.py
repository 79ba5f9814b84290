"""The DIMSE listener: C-ECHO, C-STORE, C-FIND, C-MOVE and C-GET on one AE.

``DimseServer(archive).start()`` listens in background threads (one per
association, up to ``Settings.dimse_max_associations``) and returns at once;
``stop()`` closes the listener.  Handlers are in :mod:`radcloud.dimse.handlers`
and :mod:`radcloud.dimse.retrieve`; sockets and the spool folder are set up in
:mod:`radcloud.dimse.net`.
"""

from __future__ import annotations

import logging
import socket
import ssl
import time
from typing import Any

from pynetdicom import _config
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    PatientRootQueryRetrieveInformationModelFind,
    PatientRootQueryRetrieveInformationModelGet,
    PatientRootQueryRetrieveInformationModelMove,
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelMove,
    Verification,
)
from sqlalchemy import select

from radcloud.archive.service import Archive
from radcloud.dicom.sopclasses import storage_sop_classes
from radcloud.dimse import fastpath
from radcloud.dimse.handlers import ScpContext, bind
from radcloud.dimse.net import (
    STORAGE_TRANSFER_SYNTAXES,
    RadcloudAE,
    enable_chunked_receive,
    enable_event_reactors,
)
from radcloud.store.models import Institution, RemoteAE

log = logging.getLogger(__name__)

QR_CLASSES = (
    PatientRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelFind,
    PatientRootQueryRetrieveInformationModelMove,
    StudyRootQueryRetrieveInformationModelMove,
    PatientRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelGet,
)
#: Seconds: waiting for an A-ASSOCIATE/A-RELEASE reply, for a DIMSE reply, idle connection.
ACSE_TIMEOUT, DIMSE_TIMEOUT, NETWORK_TIMEOUT = 30, 120, 300


def configure_pynetdicom() -> None:
    """Process-wide pynetdicom settings radcloud relies on."""
    enable_chunked_receive()
    enable_event_reactors()
    fastpath.enable()
    _config.LOG_HANDLER_LEVEL = "none"  # no per-PDU debug formatting
    _config.LOG_REQUEST_IDENTIFIERS = False


class ArchiveAE(RadcloudAE):
    """Our AE, refusing associations from calling AE titles the archive does not know.

    pynetdicom checks ``require_calling_aet`` during A-ASSOCIATE negotiation and
    rejects with reason 3, "calling AE title not recognized"; here it is read from
    the index (the known nodes), empty (= anyone) when an institution accepts
    unknown AEs.  Cached for ``CALLERS_TTL`` seconds.
    """

    archive: Archive | None = None
    _callers: tuple[float, list[str]] = (0.0, [])

    @property  # type: ignore[misc]
    def require_calling_aet(self) -> list[str]:
        if self.archive is None:
            return []
        now = time.monotonic()
        if now - self._callers[0] > CALLERS_TTL:
            self._callers = (now, allowed_callers(self.archive))
        return self._callers[1]


#: Seconds a change to the known AE titles takes to reach a running listener.
CALLERS_TTL = 2.0
#: A title no AE can have (backslash is not allowed in AE values).
NOBODY = "\\"


def allowed_callers(archive: Archive) -> list[str]:
    """AE titles allowed to associate; [] when some institution accepts unknown AEs."""
    with archive.read() as conn:
        if conn.scalar(
            select(Institution.id).where(
                Institution.accept_unknown_aes.is_(True), Institution.status == "active"
            )
        ):
            return []
        titles = list(conn.scalars(select(RemoteAE.ae_title)))
    # never an empty list (that would mean "anyone"): an impossible title keeps it closed
    return titles or [NOBODY]


def make_ae(archive: Archive, ae_title: str | None = None) -> RadcloudAE:
    """Our Application Entity with every context the archive serves."""
    settings = archive.settings
    ae = ArchiveAE(ae_title=ae_title or settings.ae_title)
    ae.archive = archive
    ae.spool_dir = settings.tmp_dir
    ae.maximum_associations = max(1, settings.dimse_max_associations)
    ae.maximum_pdu_size = settings.max_pdu_size
    ae.acse_timeout, ae.dimse_timeout = ACSE_TIMEOUT, DIMSE_TIMEOUT
    ae.network_timeout = NETWORK_TIMEOUT
    ae.add_supported_context(Verification)
    for uid in QR_CLASSES:
        ae.add_supported_context(uid)
    for uid in sorted(storage_sop_classes()):
        # both roles: we are Storage SCP for C-STORE and Storage SCU for C-GET
        ae.add_supported_context(uid, STORAGE_TRANSFER_SYNTAXES, scu_role=True, scp_role=True)
    return ae


def check_port_free(host: str, port: int) -> None:
    """Raise OSError (EADDRINUSE) if anything listens on ``port``.

    The first listener that shares its port (``SO_REUSEPORT``) checks first: it
    would otherwise start beside another radcloud on the same port and
    silently split its traffic.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind((host, port))


class DimseServer:
    """The archive's DIMSE listener."""

    def __init__(
        self,
        archive: Archive,
        *,
        host: str | None = None,
        port: int | None = None,
        ae_title: str | None = None,
        ssl_context: ssl.SSLContext | None = None,
        share_port: bool = False,
    ) -> None:
        settings = archive.settings
        self.archive = archive
        self.host = settings.dicom_host if host is None else host
        self.port = settings.dicom_port if port is None else port
        self.ae_title = ae_title or settings.ae_title
        #: With a context, peers must speak TLS (PS3.15 Annex B); see radcloud.tls.
        self.ssl_context = ssl_context
        #: Let other processes listen on the same port (:mod:`radcloud.dimse.workers`).
        self.share_port = share_port
        self.ae: RadcloudAE | None = None
        self._server: Any = None

    def start(self) -> DimseServer:
        """Start listening (non-blocking); ``port=0`` picks a free port."""
        configure_pynetdicom()
        self.ae = make_ae(self.archive, self.ae_title)
        self.ae.share_port = self.share_port
        ctx = ScpContext(self.archive, self.ae_title)
        self._server = self.ae.start_server(
            (self.host, self.port), block=False, evt_handlers=bind(ctx),
            ssl_context=self.ssl_context,
        )  # fmt: skip
        self.port = int(self._server.server_address[1])
        kind = "DICOM TLS" if self.ssl_context else "DICOM"
        log.info("%s listener %s on %s:%d", kind, self.ae_title, self.host, self.port)
        return self

    @property
    def is_up(self) -> bool:
        """True while the listener accepts associations."""
        server = self._server
        if server is None:
            return False
        try:
            return server.socket is not None and server.socket.fileno() >= 0
        except OSError:
            return False

    def stop(self, grace: float = 10.0) -> None:
        """Stop accepting, give running associations ``grace`` seconds, then abort them."""
        if self._server is not None:
            self._server.shutdown()
            self._server = None
        if self.ae is None:
            return
        deadline = time.monotonic() + grace
        while self.ae.active_associations and time.monotonic() < deadline:
            time.sleep(0.05)
        self.ae.shutdown()

    def __enter__(self) -> DimseServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
