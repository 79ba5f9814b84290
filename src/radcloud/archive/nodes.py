"""Known DICOM nodes (the ``remote_aes`` table): who may call us, where C-MOVE may send.

Each node belongs to an institution: what it stores becomes that institution's,
and its queries and retrieves see that institution's studies.  A node with an
address is also a C-MOVE destination.  One service for every interface (CLI
``radcloud ae``, the admin API, the DIMSE SCP).  AE titles are compared without
their insignificant trailing spaces (PS3.5 §6.2, AE value representation).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, insert, select, update

from radcloud.archive.service import Archive
from radcloud.auth.access import DEFAULT_INSTITUTION
from radcloud.errors import InvalidNode, NotFound, UnknownDestination
from radcloud.store.models import Institution, RemoteAE


@dataclass(frozen=True)
class RemoteNode:
    """A configured DICOM peer."""

    ae_title: str
    host: str | None
    port: int | None
    description: str = ""
    institution_id: int = DEFAULT_INSTITUTION
    allow_store: bool = True
    allow_query: bool = True


_COLUMNS = (
    RemoteAE.ae_title, RemoteAE.host, RemoteAE.port, RemoteAE.description,
    RemoteAE.institution_fk, RemoteAE.allow_store, RemoteAE.allow_query,
)  # fmt: skip


def _node(r: Any) -> RemoteNode:
    return RemoteNode(
        r.ae_title, r.host, None if r.port is None else int(r.port), r.description or "",
        r.institution_fk, bool(r.allow_store), bool(r.allow_query),
    )  # fmt: skip


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
    archive: Archive,
    ae_title: str,
    host: str | None = None,
    port: int | None = None,
    description: str = "",
    *,
    institution_id: int = DEFAULT_INSTITUTION,
    allow_store: bool = True,
    allow_query: bool = True,
) -> tuple[RemoteNode, bool]:
    """Add the node, or update an existing one; returns (node, created).

    Without ``host`` and ``port`` the node may call us but is no C-MOVE destination.
    """
    title = _check_title(ae_title)
    if (host is None) != (port is None):
        raise InvalidNode("give both a host and a port, or neither")
    if host is not None and port is not None:
        host = _check_address(host, port)
        port = int(port)
    values = dict(
        host=host, port=port, description=description[:255], institution_fk=institution_id,
        allow_store=allow_store, allow_query=allow_query,
    )  # fmt: skip

    def _write() -> bool:
        with archive.write() as conn:
            done = conn.execute(
                update(RemoteAE).where(RemoteAE.ae_title == title).values(**values)
            ).rowcount
            if not done:
                if (
                    conn.scalar(select(Institution.id).where(Institution.id == institution_id))
                    is None
                ):
                    raise NotFound(f"no institution {institution_id}")
                conn.execute(insert(RemoteAE).values(ae_title=title, **values))
            return not done

    created = bool(archive.retrying(_write))
    return get_node(archive, title), created


def list_remote_aes(
    archive: Archive, institution_ids: Iterable[int] | None = None
) -> list[RemoteNode]:
    """Configured nodes by AE title (of ``institution_ids`` only, when given)."""
    stmt = select(*_COLUMNS).order_by(RemoteAE.ae_title)
    if institution_ids is not None:
        stmt = stmt.where(RemoteAE.institution_fk.in_(sorted(institution_ids)))
    with archive.read() as conn:
        return [_node(r) for r in conn.execute(stmt)]


def get_node(archive: Archive, ae_title: str) -> RemoteNode:
    """The node called ``ae_title``; :class:`NotFound` when there is none."""
    title = ae_title.strip()
    with archive.read() as conn:
        row = conn.execute(select(*_COLUMNS).where(RemoteAE.ae_title == title)).first()
    if row is None:
        raise NotFound(f"no DICOM node with AE title {title!r}")
    return _node(row)


def get_remote_ae(archive: Archive, ae_title: str) -> RemoteNode:
    """The C-MOVE destination ``ae_title``; :class:`UnknownDestination` when it has no address."""
    try:
        node = get_node(archive, ae_title)
    except NotFound:
        node = None
    if node is None or node.host is None or node.port is None:
        raise UnknownDestination(
            f"AE title {ae_title.strip()!r} is not a configured DICOM node with an address"
        )
    return node


def remove_remote_ae(archive: Archive, ae_title: str) -> None:
    """Forget the node; :class:`NotFound` when there is none with that title."""
    title = ae_title.strip()

    def _write() -> int:
        with archive.write() as conn:
            return int(conn.execute(delete(RemoteAE).where(RemoteAE.ae_title == title)).rowcount)

    if not archive.retrying(_write):
        raise NotFound(f"no DICOM node with AE title {title!r}")
