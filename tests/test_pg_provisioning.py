"""radcloud.testing.pg: real PostgreSQL servers and per-test databases."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from radcloud.testing import pg

pytestmark = pytest.mark.postgres


def _exists(admin_url: str, name: str) -> bool:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_database WHERE datname = %s", (name,)
        ).fetchone()
    assert row is not None
    return bool(row[0])


@pytest.fixture
def admin_url() -> str:
    return pg.server_url()


@pytest.fixture
def fresh_cache(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Let a test call server_url() afresh without disturbing the cached answer."""
    monkeypatch.setattr(pg, "_cached_url", None)
    yield


def test_server_url_answers(admin_url: str) -> None:
    assert admin_url.startswith(("postgresql://", "postgres://"))
    with psycopg.connect(admin_url, autocommit=True) as conn:
        row = conn.execute("SELECT current_setting('server_version_num')::int").fetchone()
    assert row is not None and row[0] >= 120000
    assert pg.server_url() == admin_url  # cached for the process


def test_create_then_drop_database(admin_url: str) -> None:
    url = pg.create_database(admin_url)
    name = pg.database_name(url)
    try:
        assert name.startswith("radcloud_test_") and len(name) == len("radcloud_test_") + 12
        assert _exists(admin_url, name)
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("CREATE TABLE t (x int)")
            conn.execute("INSERT INTO t VALUES (41), (1)")
            row = conn.execute("SELECT current_database(), sum(x) FROM t").fetchone()
        assert row == (name, 42)
    finally:
        pg.drop_database(admin_url, url)
    assert not _exists(admin_url, name)
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(url, connect_timeout=3).close()
    pg.drop_database(admin_url, url)  # already gone: no error


def test_drop_ends_open_sessions(admin_url: str) -> None:
    url = pg.create_database(admin_url, prefix="radcloud_drop")
    conn = psycopg.connect(url, autocommit=True)
    try:
        conn.execute("SELECT 1")
        pg.drop_database(admin_url, url)
        assert not _exists(admin_url, pg.database_name(url))
        with pytest.raises(psycopg.OperationalError):
            conn.execute("SELECT 1")
    finally:
        conn.close()


def test_names_are_unique_and_prefix_checked(admin_url: str) -> None:
    urls = [pg.create_database(admin_url, prefix="radcloud_u") for _ in range(3)]
    try:
        assert len({pg.database_name(u) for u in urls}) == 3
    finally:
        for url in urls:
            pg.drop_database(admin_url, url)
    with pytest.raises(ValueError):
        pg.create_database(admin_url, prefix='x"; DROP DATABASE postgres; --')


def test_drop_refuses_databases_it_did_not_make(admin_url: str) -> None:
    for name in ("postgres", "template1", "radcloud"):
        with pytest.raises(ValueError, match="refusing"):
            pg.drop_database(admin_url, pg.with_database(admin_url, name))
    assert _exists(admin_url, "postgres")


def test_url_helpers() -> None:
    url = "postgresql://u:secret@db.example:6543/postgres?sslmode=disable"
    assert pg.database_name(url) == "postgres"
    assert pg.with_database(url, "x_1") == (
        "postgresql://u:secret@db.example:6543/x_1?sslmode=disable"
    )
    assert pg.sqlalchemy_url(url).startswith("postgresql+psycopg://u:secret@db.example:6543/")
    assert "secret" not in pg._redact(url)


def test_env_url_comes_first(
    admin_url: str, fresh_cache: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    chosen = admin_url + ("&" if "?" in admin_url else "?") + "application_name=from_env"
    monkeypatch.setenv(pg.ENV_VAR, chosen)
    assert pg.server_url() == chosen


def test_unreachable_env_url_is_an_error_not_a_skip(
    fresh_cache: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(pg.ENV_VAR, "postgresql://nobody@127.0.0.1:1/postgres")
    with pytest.raises(RuntimeError, match=pg.ENV_VAR):
        pg.server_url()


@pytest.mark.slow
def test_throwaway_cluster() -> None:
    started = time.monotonic()
    url, stop = pg.start_throwaway_cluster()
    try:
        assert time.monotonic() - started < 30
        with psycopg.connect(url, autocommit=True) as conn:
            row = conn.execute("SELECT current_setting('port'), current_user").fetchone()
            assert row is not None
            data_dir = conn.execute("SHOW data_directory").fetchone()
        assert data_dir is not None
        assert row == (url.rsplit(":", 1)[1].split("/")[0], "postgres")
        assert row[0] != "5432"
        base = Path(data_dir[0]).parent
        assert base.is_dir() and base.name.startswith("radcloud-pg-")
        db = pg.create_database(url)
        assert _exists(url, pg.database_name(db))
        pg.drop_database(url, db)
        assert not _exists(url, pg.database_name(db))
        if os.geteuid() == 0:
            assert base.stat().st_uid != 0  # PostgreSQL refuses to run as root
    finally:
        stop()
    assert not base.exists()
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(url, connect_timeout=3).close()
    stop()  # twice is fine
