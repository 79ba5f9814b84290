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
import queue
import select
import socket
import ssl
import tempfile
import threading
import time
import weakref
from pathlib import Path
from typing import Any

import pynetdicom.association as pynetdicom_association
from pynetdicom import AE, _config, dimse_messages
from pynetdicom.association import Association
from pynetdicom.dul import DULServiceProvider
from pynetdicom.pdu import A_ABORT_RQ
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

    def server_bind(self) -> None:
        if getattr(self.ae, "share_port", False):  # other processes listen here too
            assert self.socket is not None
            self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        super().server_bind()

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
    """A pynetdicom AE whose sockets set ``TCP_NODELAY``; spools C-STORE data to ``spool_dir``;
    its listener shares its port with other processes when ``share_port`` is set."""

    spool_dir: Path | None = None
    #: Bind with ``SO_REUSEPORT`` (see :mod:`radcloud.dimse.workers`).
    share_port: bool = False

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


#: Longest a reactor blocks without a wake-up (timers, kill flags and the
#: ARTIM/idle timeouts are checked at least this often).
MAX_BLOCK = 0.05
#: The nap pynetdicom's association reactor takes on every turn of its loop.
REACTOR_NAP = 0.001
#: The nap of a ``send_*`` call waiting for the association reactor to pause.
SENDER_NAP = 0.0001

#: Wake-up events of the live association reactors (see :class:`_ReactorClock`).
_REACTORS: weakref.WeakSet[threading.Event] = weakref.WeakSet()


class EventDUL(DULServiceProvider):
    """pynetdicom's DUL reactor, blocking until there is something to do.

    The stock reactor polls: every turn checks the socket with a zero
    timeout, then sleeps 1 ms.  That adds up to a millisecond to every DIMSE
    exchange, and polling faster burns the CPU (and the GIL) that ingest
    needs: a profile of a 300-image C-STORE showed the two polling loops in
    about half of the server's samples.  Here the loop blocks in ``select``
    on the peer's socket and on a wake-up socket that :meth:`send_pdu` and
    :meth:`kill_dul` poke, so it runs exactly when a PDU arrives or one is
    to be sent; after each state-machine action it wakes its association's
    reactor (:attr:`wake`).  The state machine, PDU handling and the abort on
    an exception are pynetdicom's.
    """

    def __init__(self, assoc: Association) -> None:
        super().__init__(assoc)
        #: Set when the association reactor has something to look at.
        self.wake = threading.Event()
        _REACTORS.add(self.wake)
        self._poke_r, self._poke_w = socket.socketpair()
        self._poke_r.setblocking(False)
        self._poke_w.setblocking(False)

    def _poke(self) -> None:
        try:
            self._poke_w.send(b"\0")
        except OSError:  # already poked (buffer full) or closed
            pass

    def send_pdu(self, primitive: Any) -> None:
        super().send_pdu(primitive)
        self._poke()

    def kill_dul(self) -> None:
        super().kill_dul()
        self._poke()

    def _block(self) -> None:
        """Wait until the peer sends, a primitive is queued, or ``MAX_BLOCK`` passes."""
        waiting: list[Any] = [self._poke_r]
        sock = self.socket.socket if self.socket is not None else None
        if sock is not None and getattr(self.socket, "_is_connected", False):
            if isinstance(sock, ssl.SSLSocket) and sock.pending():
                return  # TLS data already decrypted: select cannot see it
            waiting.append(sock)
        try:
            ready, _, _ = select.select(waiting, [], [], MAX_BLOCK)
        except (OSError, ValueError):  # the socket was closed under us: the next turn sees it
            return
        if self._poke_r in ready:
            try:
                while self._poke_r.recv(4096):
                    pass
            except OSError:
                pass

    def run_reactor(self) -> None:
        try:
            self._run()
        finally:
            self.wake.set()  # the association reactor checks is_alive() now
            self._poke_r.close()
            self._poke_w.close()

    def _run(self) -> None:
        self._idle_timer.start()
        while True:
            if not self.assoc._dul_ready.is_set():
                self.assoc._dul_ready.set()
            if self._kill_thread:
                return
            if self.artim_timer.expired:
                self.event_queue.put("Evt18")
            try:
                if self._process_recv_primitive():
                    pass
                elif self._is_transport_event():
                    self._idle_timer.restart()
            except Exception:
                log.exception("DICOM upper layer failed; aborting the association")
                self._abort_now()
                return
            try:
                event = self.event_queue.get(block=False)
            except queue.Empty:
                self._block()
                continue
            self.state_machine.do_action(event)
            self.wake.set()

    def _abort_now(self) -> None:
        """Send an A-ABORT (bypassing the state machine, whose state is unknown) and stop."""
        abort = A_ABORT_RQ()
        abort.source = 0x02
        abort.reason_diagnostic = 0x00
        if self.socket is not None:
            self.socket.send(abort.encode())
        self.assoc.is_aborted = True
        self.assoc.is_established = False
        self.assoc._kill = True
        self._kill_thread = True


class _ReactorClock:
    """The ``time`` module as pynetdicom's association code sees it.

    The association reactor naps 1 ms per turn (:data:`REACTOR_NAP`); here it
    waits on its DUL's wake-up event instead, so a decoded DIMSE message or a
    release/abort from the peer is served at once and an idle association
    costs nothing.  A ``send_*`` call on an association first spins
    (:data:`SENDER_NAP`) until that reactor pauses; those naps wake the
    reactors so they reach their pause point.  Everything else is the real
    ``time`` module.
    """

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)

    @staticmethod
    def sleep(seconds: float) -> None:
        if seconds == REACTOR_NAP:
            wake = getattr(getattr(threading.current_thread(), "dul", None), "wake", None)
            if wake is not None:
                wake.wait(MAX_BLOCK)
                wake.clear()
                return
        elif seconds == SENDER_NAP:
            for event in list(_REACTORS):
                event.set()
        time.sleep(seconds)


def enable_event_reactors() -> None:
    """Make every association of this process event-driven (DUL and association reactor)."""
    pynetdicom_association.DULServiceProvider = EventDUL  # type: ignore[misc]
    pynetdicom_association.time = _ReactorClock()  # type: ignore[assignment]
