"""The archive context: settings, index engine, blob storage.

Every interface builds one :class:`Archive` at start-up and passes it to the
service functions (ingest, query, retrieve); nothing else holds state, so
any number of API nodes can share one database and one blob store.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, Engine, event, select
from sqlalchemy.exc import OperationalError

from radcloud.config import Settings
from radcloud.dicom import configure_pydicom
from radcloud.store import db
from radcloud.store.blobs import BlobStorage, FileStorage
from radcloud.store.crypto import Keyring
from radcloud.store.models import Instance, Thumbnail

log = logging.getLogger(__name__)


class Archive:
    """Holds what the services need; cheap to pass around, safe across threads."""

    def __init__(self, settings: Settings, engine: Engine, storage: BlobStorage) -> None:
        self.settings = settings
        self.engine = engine
        self.storage = storage
        self._write_lock = threading.Lock() if db.is_sqlite(engine) else None
        #: Called (last registered first) by close(): e.g. the audit writer's final flush.
        self.on_close: list[Any] = []
        #: Per-archive caches of the services (only caches: every node rebuilds its own).
        self.caches: dict[str, Any] = {}

    @classmethod
    def open(cls, settings: Settings, *, migrate: bool = True) -> Archive:
        """Open (and create/upgrade) the archive the settings describe."""
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        configure_pydicom()
        engine = db.make_engine(settings.resolved_database_url)
        if db.is_sqlite(engine):
            _immediate_transactions(engine)
        if migrate:
            db.upgrade(engine)
        # keys are loaded even with encryption off, so blobs encrypted earlier still read
        keyring = Keyring.from_settings(settings, create=settings.encrypt_at_rest)
        storage = FileStorage(
            settings.blob_dir, settings.tmp_dir, keyring=keyring, encrypt=settings.encrypt_at_rest
        )
        archive = cls(settings, engine, storage)
        return archive

    def close(self) -> None:
        for fn in reversed(self.on_close):
            fn()
        self.on_close.clear()
        self.engine.dispose()

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """A write transaction; serialised in-process on SQLite (one writer at a time)."""
        if self._write_lock is None:
            with self.engine.begin() as conn:
                yield conn
            return
        with self._write_lock, self.engine.begin() as conn:
            yield conn

    @contextmanager
    def read(self) -> Iterator[Connection]:
        with self.engine.connect() as conn:
            yield conn

    def retrying(self, fn: Any, attempts: int = 5) -> Any:
        """Run ``fn()`` again when the database reports a lock or serialisation conflict."""
        for i in range(attempts):
            try:
                return fn()
            except OperationalError as exc:
                text = str(exc).lower()
                if i == attempts - 1 or not ("locked" in text or "serializ" in text):
                    raise
                time.sleep(0.05 * (2**i))
        raise AssertionError("unreachable")

    def reconcile(self, grace_seconds: float | None = None) -> dict[str, int]:
        """Remove what a crash can leave behind: temp files and blobs no index row names.

        Blobs younger than ``grace_seconds`` are left alone (another node may be
        about to commit their row); embedded SQLite uses 0 at start-up.
        """
        if grace_seconds is None:
            grace_seconds = 0.0 if db.is_sqlite(self.engine) else 3600.0
        swept = self.storage.sweep_temp() if isinstance(self.storage, FileStorage) else 0
        with self.read() as conn:
            known = set(conn.scalars(select(Instance.blob_key)))
            known |= set(conn.scalars(select(Thumbnail.blob_key)))
            known |= set(
                conn.scalars(
                    select(Instance.envelope_key).where(Instance.envelope_key.is_not(None))
                )
            )
        now = time.time()
        orphans = 0
        for key in list(self.storage.keys()):
            if key in known:
                continue
            if isinstance(self.storage, FileStorage):
                age = now - self.storage.path(key).stat().st_mtime
                if age < grace_seconds:
                    continue
            self.storage.delete(key)
            orphans += 1
        if swept or orphans:
            log.warning("reconcile: removed %d temp files and %d orphan blobs", swept, orphans)
        return {"temp_files": swept, "orphan_blobs": orphans}


def _immediate_transactions(engine: Engine) -> None:
    """Make pysqlite transactions explicit so SQLite's locking is predictable."""

    @event.listens_for(engine, "connect")
    def _connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN")
