"""pynetdicom plumbing: an Application Entity whose sockets never wait for Nagle.

A DIMSE exchange is a request PDU answered by a small response PDU.  With
Nagle's algorithm on (the socket default) and delayed ACKs on the peer, every
exchange stalls ~40 ms, capping a C-STORE sender at ~25 images/s; pynetdicom
has no socket-option hook, so :class:`RadcloudAE` sets ``TCP_NODELAY`` on the
sockets it creates (requestor side) and accepts (listener side).

It also makes pynetdicom's chunked C-STORE receive
(``_config.STORE_RECV_CHUNKED_DATASET``) spool into the archive's temp folder,
on the blob file system, so a received data set is renamed into place rather
than copied, and a crash mid-transfer leaves a ``*.part`` file that
``Archive.reconcile`` sweeps.
"""

from __future__ import annotations

import logging
import os
import socket
import ssl
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import pynetdicom.association as pynetdicom_association
from pynetdicom import AE, _config, dimse_messages
from pynetdicom.association import Association
from pynetdicom.dul import DULServiceProvider
from pynetdicom.transport import (
    AddressInformation,
    AssociationSocket,
    ThreadedAssociationServer,
)

log = logging.getLogger(__name__)

#: Transfer syntaxes accepted for storage: uncompressed, deflated, JPEG family,
#: JPEG-LS, JPEG 2000, HTJ2K and RLE (PS3.5 Annex A, PS3.6 Table A-1).
STORAGE_TRANSFER_SYNTAXES = [
    "1.2.840.10008.1.2.1",  # Explicit VR Little Endian
    "1.2.840.10008.1.2",  # Implicit VR Little Endian
    "1.2.840.10008.1.2.1.99",  # Deflated Explicit VR Little Endian
    "1.2.840.10008.1.2.2",  # Explicit VR Big Endian (retired, still sent)
    "1.2.840.10008.1.2.4.50",  # JPEG Baseline (Process 1)
    "1.2.840.10008.1.2.4.51",  # JPEG Extended (Process 2 & 4)
    "1.2.840.10008.1.2.4.57",  # JPEG Lossless (Process 14)
    "1.2.840.10008.1.2.4.70",  # JPEG Lossless SV1
    "1.2.840.10008.1.2.4.80",  # JPEG-LS Lossless
    "1.2.840.10008.1.2.4.81",  # JPEG-LS Near-Lossless
    "1.2.840.10008.1.2.4.90",  # JPEG 2000 Lossless
    "1.2.840.10008.1.2.4.91",  # JPEG 2000
    "1.2.840.10008.1.2.4.201",  # HTJ2K Lossless
    "1.2.840.10008.1.2.4.202",  # HTJ2K Lossless RPCL
    "1.2.840.10008.1.2.4.203",  # HTJ2K
    "1.2.840.10008.1.2.5",  # RLE Lossless
]
#: Uncompressed little-endian syntaxes every peer must accept (PS3.5 §10.1).
UNCOMPRESSED = ["1.2.840.10008.1.2.1", "1.2.840.10008.1.2"]
#: Syntaxes pynetdicom converts between on the fly (same endianness, not compressed).
CONVERTIBLE = {"1.2.840.10008.1.2.1", "1.2.840.10008.1.2", "1.2.840.10008.1.2.1.99"}


def set_nodelay(sock: socket.socket | None) -> None:
    """Turn Nagle's algorithm off on a TCP socket (no-op for anything else)."""
    if sock is None:
        return
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except OSError:  # pragma: no cover - not a TCP socket
        pass


#: Seconds a peer of the DICOM TLS listener gets to complete its TLS handshake.
TLS_HANDSHAKE_TIMEOUT = 30.0


class SharedContexts(list[Any]):
    """The listener's supported presentation contexts, shared by its associations.

    pynetdicom deep-copies them for every association it accepts (tens of
    milliseconds for the ~180 contexts an archive supports); negotiation
    only reads them and builds new result contexts, so each association
    gets a new list of the same, never modified, context objects.
    """

    def __deepcopy__(self, memo: dict[int, Any]) -> list[Any]:
        return list(self)


class NoDelayServer(ThreadedAssociationServer):
    """The threaded listener, with ``TCP_NODELAY`` on every accepted connection.

    With TLS, pynetdicom's stock ``get_request`` does the handshake in the
    accepting thread, without a timeout: one peer that connects and sends
    nothing (a port scanner, a plain-DICOM client) would stall every other
    association.  Here the handshake runs in the connection's own thread,
    bounded by ``TLS_HANDSHAKE_TIMEOUT``.  Accepted associations share the
    supported contexts (:class:`SharedContexts`).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.contexts = SharedContexts(self.contexts)

    def get_request(self) -> tuple[socket.socket, tuple[str, int]]:
        assert self.socket is not None
        client, address = self.socket.accept()
        set_nodelay(client)
        if self.ssl_context:
            client = self.ssl_context.wrap_socket(
                client, server_side=True, do_handshake_on_connect=False
            )
        return client, address

    def process_request_thread(
        self,
        request: socket.socket | tuple[bytes, socket.socket],
        client_address: tuple[str, int] | str,
    ) -> None:
        if isinstance(request, ssl.SSLSocket) and not _tls_handshake(request, client_address):
            self.shutdown_request(request)
            return
        super().process_request_thread(request, client_address)


def _tls_handshake(sock: ssl.SSLSocket, peer: object) -> bool:
    """Complete a server-side TLS handshake; False (logged) when the peer fails it."""
    timeout = sock.gettimeout()
    sock.settimeout(TLS_HANDSHAKE_TIMEOUT)
    try:
        sock.do_handshake()
    except (OSError, ValueError) as exc:  # SSLError, timeout, reset by peer
        where = ":".join(map(str, peer[:2])) if isinstance(peer, tuple) else peer
        log.warning("DICOM TLS handshake with %s failed: %s", where, exc)
        return False
    sock.settimeout(timeout)
    return True


class RadcloudAE(AE):
    """A pynetdicom AE whose sockets set ``TCP_NODELAY``; spools C-STORE data to ``spool_dir``."""

    spool_dir: Path | None = None

    def _create_socket(
        self, assoc: Association, address: AddressInformation, tls_args: Any
    ) -> AssociationSocket:
        sock = super()._create_socket(assoc, address, tls_args)
        set_nodelay(sock.socket)
        return sock

    def make_server(
        self,
        address: tuple[str, int] | tuple[str, int, int, int],
        ae_title: str | None = None,
        contexts: Any = None,
        ssl_context: Any = None,
        evt_handlers: Any = None,
        server_class: Any = None,
        **kwargs: Any,
    ) -> Any:
        if server_class is None or server_class is ThreadedAssociationServer:
            server_class = NoDelayServer
        return super().make_server(
            address, ae_title, contexts, ssl_context, evt_handlers, server_class, **kwargs
        )


def settle_reactor(assoc: Association, timeout: float = 2.0) -> None:
    """Wait until ``assoc``'s reactor has resumed after the previous ``send_*`` call.

    pynetdicom pauses the association reactor while a ``send_*`` call waits
    for its response, and un-pauses it afterwards; its ``_is_paused`` flag
    stays True until the reactor thread actually wakes up.  A ``send_*``
    issued in that window trusts the stale flag, and the waking reactor can
    take the response as an "unexpected" message, the call then failing after
    the DIMSE timeout (pynetdicom issue #875; it shows on a busy machine).
    Calling this between two sends on one association closes the window.
    """
    deadline = time.monotonic() + timeout
    while (
        assoc._is_paused
        and assoc._reactor_checkpoint.is_set()
        and assoc.is_established
        and time.monotonic() < deadline
    ):
        time.sleep(0.0001)


#: Write buffer of a spooled C-STORE data set (one write call per MiB, not per PDU).
SPOOL_BUFFER = 1024 * 1024


class SpoolFile:
    """A C-STORE data set being received, as pynetdicom's chunked receive writes it.

    pynetdicom calls ``file.flush()`` after every P-DATA fragment (one system
    call per 16 KiB PDU); here the flush waits for :meth:`close`, which the
    C-STORE handler calls before ingest reads the file.  A transfer cut short
    leaves a ``*.part`` file that ``Archive.reconcile`` sweeps.
    """

    def __init__(self, directory: Path | None) -> None:
        try:
            fd, self.name = tempfile.mkstemp(suffix=".part", dir=directory)
        except FileNotFoundError:
            assert directory is not None
            Path(directory).mkdir(parents=True, exist_ok=True)
            fd, self.name = tempfile.mkstemp(suffix=".part", dir=directory)
        self._fh = os.fdopen(fd, "wb", buffering=SPOOL_BUFFER)
        self.file = self  # pynetdicom flushes ``file`` after each fragment

    def write(self, data: bytes) -> int:
        return self._fh.write(data)

    def flush(self) -> None:
        """Deferred to :meth:`close` (see the class docstring)."""

    def close(self) -> None:
        self._fh.close()

    @property
    def closed(self) -> bool:
        return self._fh.closed


def _spool_file(*_args: Any, **_kwargs: Any) -> SpoolFile:
    """Where pynetdicom writes a C-STORE data set being received.

    Runs in the association's DUL thread; the AE it belongs to names the
    folder (the archive's temp folder), else the system temp folder is used.
    """
    assoc = getattr(threading.current_thread(), "assoc", None)
    spool_dir = getattr(getattr(assoc, "ae", None), "spool_dir", None)
    return SpoolFile(spool_dir)


def enable_chunked_receive() -> None:
    """Receive C-STORE data sets straight to disk, in the receiving AE's spool folder."""
    _config.STORE_RECV_CHUNKED_DATASET = True
    dimse_messages.NamedTemporaryFile = _spool_file  # type: ignore[assignment]


#: Seconds after the last received PDU during which the DUL polls fast.
BUSY_WINDOW = 0.5
FAST_POLL, IDLE_POLL = 0.0001, 0.001


class AdaptiveDUL(DULServiceProvider):
    """pynetdicom's DUL reactor, polling every 0.1 ms while the peer is sending.

    The stock reactor sleeps a fixed 1 ms between idle checks, which adds up to
    a millisecond of latency to every DIMSE exchange; polling fast all the time
    would burn CPU on idle associations.  So the delay is short only within
    ``BUSY_WINDOW`` of the last received PDU (the idle timer's restart time).
    """

    @property
    def _run_loop_delay(self) -> float:
        started = self._idle_timer._start_time
        if started is not None and time.time() - started < BUSY_WINDOW:
            return FAST_POLL
        return IDLE_POLL

    @_run_loop_delay.setter
    def _run_loop_delay(self, value: float) -> None:
        pass  # the base class assigns its fixed default; ours is computed


#: The nap pynetdicom's association reactor takes on every turn of its loop.
REACTOR_NAP = 0.001


def _busy(thread: threading.Thread) -> bool:
    """Whether ``thread`` is an association whose peer sent a PDU in the last ``BUSY_WINDOW``."""
    dul = getattr(thread, "dul", None)
    started = getattr(getattr(dul, "_idle_timer", None), "_start_time", None)
    return started is not None and time.time() - started < BUSY_WINDOW


class _ReactorClock:
    """The ``time`` module as pynetdicom's association code sees it.

    The association reactor naps 1 ms per turn, and a ``send_*`` call waits for
    it to reach its pause point first: up to a millisecond of idling per
    C-STORE of a C-MOVE (most of the time a 500-image move took).  While the
    association is busy the nap is :data:`FAST_POLL`; idle associations keep the
    1 ms nap.  Everything else is the real ``time`` module.
    """

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)

    @staticmethod
    def sleep(seconds: float) -> None:
        if seconds == REACTOR_NAP and _busy(threading.current_thread()):
            seconds = FAST_POLL
        time.sleep(seconds)


def enable_adaptive_polling() -> None:
    """Make every association of this process poll fast while busy (DUL and reactor)."""
    pynetdicom_association.DULServiceProvider = AdaptiveDUL  # type: ignore[misc]
    pynetdicom_association.time = _ReactorClock()  # type: ignore[assignment]
