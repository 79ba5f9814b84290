"""Blob storage behind a small protocol.

Keys are server-generated UUID hex strings, validated before they become
paths and sharded ``aa/bb/<key>``; a path is never built from a DICOM UID.
Writes are atomic: data lands in a temp file on the same file system, is
fsync'ed and renamed into place, so a crash leaves either the whole object or
nothing under its key (stray temp files are swept at start-up).
"""

from __future__ import annotations

import io
import os
import re
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, Protocol

from radcloud.errors import NotFound, StorageFailure

_KEY_RE = re.compile(r"^[0-9a-f]{32}$")


def new_key() -> str:
    """A fresh blob key."""
    return uuid.uuid4().hex


def check_key(key: str) -> str:
    if not _KEY_RE.match(key):
        raise ValueError(f"invalid blob key {key!r}")
    return key


class BlobStorage(Protocol):
    """Where instance files live."""

    def put_file(self, key: str, src: Path) -> None:
        """Move the spooled file ``src`` under ``key`` (consumes ``src``)."""

    def put_bytes(self, key: str, data: bytes) -> None: ...

    def open(self, key: str) -> BinaryIO: ...

    def get_range(self, key: str, start: int, length: int) -> bytes: ...

    def delete(self, key: str) -> None: ...

    def keys(self) -> Iterator[str]: ...

    def size(self, key: str) -> int: ...


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class FileStorage:
    """Blobs as files under ``root`` (the default, embedded mode)."""

    def __init__(self, root: Path, tmp_dir: Path | None = None) -> None:
        self.root = Path(root)
        self.tmp_dir = Path(tmp_dir) if tmp_dir else self.root / ".tmp"
        self.root.mkdir(parents=True, exist_ok=True)
        self.tmp_dir.mkdir(parents=True, exist_ok=True)

    def path(self, key: str) -> Path:
        check_key(key)
        return self.root / key[:2] / key[2:4] / key

    def spool(self) -> tuple[BinaryIO, Path]:
        """A temp file on the blob file system, for streaming an upload into."""
        fd, name = tempfile.mkstemp(dir=self.tmp_dir, suffix=".part")
        return os.fdopen(fd, "w+b"), Path(name)

    def put_file(self, key: str, src: Path) -> None:
        dest = self.path(key)
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
            with open(src, "rb+") as fh:
                os.fsync(fh.fileno())
            if Path(src).stat().st_dev == self.root.stat().st_dev:
                os.replace(src, dest)
            else:  # different file system: copy to a temp beside dest, then rename
                tmp = dest.with_suffix(".part")
                shutil.copyfile(src, tmp)
                with open(tmp, "rb+") as fh:
                    os.fsync(fh.fileno())
                os.replace(tmp, dest)
                os.unlink(src)
            _fsync_dir(dest.parent)
        except OSError as exc:
            raise StorageFailure(f"cannot write blob: {exc.strerror}") from exc

    def put_bytes(self, key: str, data: bytes) -> None:
        fh, tmp = self.spool()
        try:
            with fh:
                fh.write(data)
            self.put_file(key, tmp)
        finally:
            if tmp.exists():
                tmp.unlink()

    def open(self, key: str) -> BinaryIO:
        try:
            return open(self.path(key), "rb")
        except FileNotFoundError as exc:
            raise NotFound(f"blob {key} is missing from storage") from exc

    def get_range(self, key: str, start: int, length: int) -> bytes:
        with self.open(key) as fh:
            fh.seek(start)
            return fh.read(length)

    def delete(self, key: str) -> None:
        try:
            os.unlink(self.path(key))
        except FileNotFoundError:
            pass

    def size(self, key: str) -> int:
        return self.path(key).stat().st_size

    def keys(self) -> Iterator[str]:
        for shard in sorted(self.root.glob("[0-9a-f][0-9a-f]/[0-9a-f][0-9a-f]")):
            for p in shard.iterdir():
                if _KEY_RE.match(p.name):
                    yield p.name

    def sweep_temp(self) -> int:
        """Remove temp files left by a crash; returns how many."""
        n = 0
        for p in list(self.tmp_dir.glob("*.part")) + list(self.root.glob("*/*/*.part")):
            p.unlink(missing_ok=True)
            n += 1
        return n


class MemoryStorage:
    """Blobs in a dict, for fast unit tests."""

    def __init__(self) -> None:
        self._data: dict[str, bytes] = {}

    def put_file(self, key: str, src: Path) -> None:
        self._data[check_key(key)] = Path(src).read_bytes()
        os.unlink(src)

    def put_bytes(self, key: str, data: bytes) -> None:
        self._data[check_key(key)] = bytes(data)

    def open(self, key: str) -> BinaryIO:
        try:
            return io.BytesIO(self._data[key])
        except KeyError as exc:
            raise NotFound(f"blob {key} is missing from storage") from exc

    def get_range(self, key: str, start: int, length: int) -> bytes:
        return self._data[key][start : start + length]

    def delete(self, key: str) -> None:
        self._data.pop(key, None)

    def size(self, key: str) -> int:
        return len(self._data[key])

    def keys(self) -> Iterator[str]:
        yield from list(self._data)
