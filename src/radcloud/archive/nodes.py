"""Remote DICOM nodes: the peers C-MOVE may send to (the ``remote_aes`` table).

One service for every interface (CLI ``radcloud ae``, the C-MOVE SCP, later the
admin UI).  AE titles are compared without their insignificant trailing
spaces (PS3.5 §6.2, AE value representation).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import delete, insert, select, update

from radcloud.archive.service import Archive
from radcloud.errors import InvalidNode, NotFound, UnknownDestination
from radcloud.store.models import RemoteAE


@dataclass(frozen=True)
class RemoteNode:
    """A configured DICOM peer."""

    ae_title: str
    host: str
    port: int
    description: str = ""


def _check_title(ae_title: str) -> str:
    title = ae_title.strip()
    if not title or len(title) > 16:
        raise InvalidNode(f"AE title {ae_title!r} must be 1 to 16 characters")
    if "\\" in title or any(ord(c) < 0x20 or ord(c) > 0x7E for c in title):
        raise InvalidNode(f"AE title {ae_title!r} may hold printable ASCII only, no backslash")
    return title


def _check_address(host: str, port: int) -> str:
    host = host.strip()
    if not host or any(c.isspace() for c in host):
        raise InvalidNode(f"host {host!r} is not a host name or IP address")
    if not 1 <= int(port) <= 65535:
        raise InvalidNode(f"port {port} is not between 1 and 65535")
    return host


def add_remote_ae(
    archive: Archive, ae_title: str, host: str, port: int, description: str = ""
) -> tuple[RemoteNode, bool]:
    """Add the node, or update the address of an existing one; returns (node, created)."""
    title = _check_title(ae_title)
    host = _check_address(host, port)
    values = dict(host=host, port=int(port), description=description[:255])

    def _write() -> bool:
        with archive.write() as conn:
            done = conn.execute(
                update(RemoteAE).where(RemoteAE.ae_title == title).values(**values)
            ).rowcount
            if not done:
                conn.execute(insert(RemoteAE).values(ae_title=title, **values))
            return not done

    created = bool(archive.retrying(_write))
    return RemoteNode(title, host, int(port), description[:255]), created


def list_remote_aes(archive: Archive) -> list[RemoteNode]:
    """Every configured node, by AE title."""
    stmt = select(RemoteAE.ae_title, RemoteAE.host, RemoteAE.port, RemoteAE.description)
    with archive.read() as conn:
        rows = conn.execute(stmt.order_by(RemoteAE.ae_title)).all()
    return [RemoteNode(r.ae_title, r.host, int(r.port), r.description or "") for r in rows]


def get_remote_ae(archive: Archive, ae_title: str) -> RemoteNode:
    """The node called ``ae_title``; :class:`UnknownDestination` when none is configured."""
    title = ae_title.strip()
    stmt = select(RemoteAE.ae_title, RemoteAE.host, RemoteAE.port, RemoteAE.description)
    with archive.read() as conn:
        row = conn.execute(stmt.where(RemoteAE.ae_title == title)).first()
    if row is None:
        raise UnknownDestination(f"AE title {title!r} is not a configured DICOM node")
    return RemoteNode(row.ae_title, row.host, int(row.port), row.description or "")


def remove_remote_ae(archive: Archive, ae_title: str) -> None:
    """Forget the node; :class:`NotFound` when there is none with that title."""
    title = ae_title.strip()

    def _write() -> int:
        with archive.write() as conn:
            return int(conn.execute(delete(RemoteAE).where(RemoteAE.ae_title == title)).rowcount)

    if not archive.retrying(_write):
        raise NotFound(f"no DICOM node with AE title {title!r}")
