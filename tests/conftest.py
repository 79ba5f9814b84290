"""Shared fixtures: an archive on SQLite and on a real PostgreSQL server.

``archive`` is parametrised over both back ends, so every test that uses it
runs twice.  PostgreSQL comes from ``radcloud.testing.pg`` (env var, local
server, or a throwaway cluster it starts) — never silently skipped.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

from radcloud.archive.service import Archive
from radcloud.config import Settings


@pytest.fixture(scope="session")
def pg_admin_url() -> str:
    from radcloud.testing import pg

    return pg.server_url()


@pytest.fixture
def pg_url(pg_admin_url: str) -> Iterator[str]:
    from radcloud.testing import pg

    url = pg.create_database(pg_admin_url)
    yield url
    pg.drop_database(pg_admin_url, url)


def _open(tmp_path: Path, url: str | None, **kw: object) -> Archive:
    settings = Settings(data_dir=tmp_path / "data", database_url=url, dicom_port=0, **kw)
    archive = Archive.open(settings)
    return archive


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str | None]:
    """None (SQLite in the data dir) or the URL of a fresh PostgreSQL database."""
    if request.param == "sqlite":
        yield None
        return
    yield request.getfixturevalue("pg_url")


@pytest.fixture
def archive(tmp_path: Path, db_url: str | None) -> Iterator[Archive]:
    a = _open(tmp_path, db_url)
    yield a
    a.close()


@pytest.fixture
def make_archive(tmp_path: Path, db_url: str | None) -> Iterator[object]:
    """Factory for an archive with custom settings on the parametrised back end."""
    made: list[Archive] = []

    def factory(**kw: object) -> Archive:
        a = _open(tmp_path, db_url, **kw)
        made.append(a)
        return a

    yield factory
    for a in made:
        a.close()


@pytest.fixture
def base_url(archive: Archive) -> Iterator[str]:
    """The DICOMweb root of a uvicorn server on a free port, serving ``archive``."""
    import threading
    import time

    import uvicorn

    from radcloud.web.app import create_app

    config = uvicorn.Config(
        create_app(archive), host="127.0.0.1", port=0, log_level="warning", lifespan="off"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}/dicom-web"
    server.should_exit = True
    thread.join(10)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[object]:
    """``radcloud serve`` as a child process on free ports (start it with ``.start()``)."""
    from _server import Server

    srv = Server(tmp_path / "data")
    yield srv
    if srv.proc is not None and srv.proc.poll() is None:
        srv.proc.kill()
        srv.proc.wait(30)


@pytest.fixture(autouse=True)
def _quiet_pydicom_warnings() -> Iterator[None]:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", module="pydicom")
        yield
