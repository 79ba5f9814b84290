"""Blob storage behind a small protocol.

Keys are server-generated UUID hex strings, validated before they become
paths and sharded ``aa/bb/<key>``; a path is never built from a DICOM UID.
Writes are atomic: data lands in a temp file on the same file system, is
fsync'ed and renamed into place, so a crash leaves either the whole object or
nothing under its key (stray temp files are swept at start-up).

With a keyring, :class:`FileStorage` encrypts what it writes
(:mod:`radcloud.store.crypto`) and decrypts what it reads; callers always see
the plaintext (``open``, ``get_range`` and ``size`` speak plaintext bytes).
Blobs written before encryption was turned on stay readable as they are.
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

from radcloud.errors import KeyUnavailable, NotFound, StorageFailure
from radcloud.store import crypto
from radcloud.store.crypto import HEADER_SIZE, Decryptor, Keyring

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
    """Blobs as files under ``root`` (the default, embedded mode).

    ``keyring`` lets it read encrypted blobs; ``encrypt`` (default: whether a
    keyring is given) makes it write them encrypted under the active key.
    """

    def __init__(
        self,
        root: Path,
        tmp_dir: Path | None = None,
        *,
        keyring: Keyring | None = None,
        encrypt: bool | None = None,
    ) -> None:
        self.root = Path(root)
        self.tmp_dir = Path(tmp_dir) if tmp_dir else self.root / ".tmp"
        self.keyring = keyring
        self.encrypt = keyring is not None if encrypt is None else encrypt
        if self.encrypt and keyring is None:
            raise ValueError("encrypting storage needs a keyring")
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
        if self.encrypt:
            try:
                with open(src, "rb") as inp:
                    self._write_encrypted(key, inp, os.fstat(inp.fileno()).st_size)
                os.unlink(src)
            except OSError as exc:
                raise StorageFailure(f"cannot write blob: {exc.strerror}") from exc
            return
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
        if self.encrypt:  # straight from memory: no plaintext copy touches the disk
            self._write_encrypted(key, io.BytesIO(data), len(data))
            return
        fh, tmp = self.spool()
        try:
            with fh:
                fh.write(data)
            self.put_file(key, tmp)
        finally:
            if tmp.exists():
                tmp.unlink()

    def _temp_beside(self, dest: Path) -> tuple[BinaryIO, Path]:
        """A new temp file next to ``dest`` (same directory: the rename is atomic)."""
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f"{dest.name}.{uuid.uuid4().hex[:12]}.part")
        return open(tmp, "xb"), tmp

    def _write_encrypted(self, key: str, src: BinaryIO, length: int) -> None:
        assert self.keyring is not None
        dest = self.path(key)
        tmp: Path | None = None
        try:
            out, tmp = self._temp_beside(dest)
            with out:
                crypto.encrypt_stream(self.keyring, src, out, length, bytes.fromhex(key))
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, dest)
            tmp = None
            _fsync_dir(dest.parent)
        except OSError as exc:
            raise StorageFailure(f"cannot write blob: {exc.strerror}") from exc
        finally:
            if tmp is not None:
                tmp.unlink(missing_ok=True)

    def _open_raw(self, key: str) -> BinaryIO:
        try:
            return open(self.path(key), "rb")
        except FileNotFoundError as exc:
            raise NotFound(f"blob {key} is missing from storage") from exc

    def open(self, key: str) -> BinaryIO:
        """The blob's plaintext as a seekable file (decrypting as it is read)."""
        try:
            return crypto.open_file(self.path(key), self.keyring, f"blob {key}", bytes.fromhex(key))
        except FileNotFoundError as exc:
            raise NotFound(f"blob {key} is missing from storage") from exc

    def get_range(self, key: str, start: int, length: int) -> bytes:
        """Plaintext bytes ``start`` .. ``start + length``, decrypting only the chunks needed."""
        with self._open_raw(key) as fh:
            head = fh.read(HEADER_SIZE)
            if not crypto.is_encrypted(head):
                fh.seek(start)
                return fh.read(length)
            dec = Decryptor.open(fh.fileno(), head, self.keyring, f"blob {key}", bytes.fromhex(key))
            return dec.read_range(start, length)

    def delete(self, key: str) -> None:
        try:
            os.unlink(self.path(key))
        except FileNotFoundError:
            pass

    def size(self, key: str) -> int:
        """The plaintext size (what was put), whether the blob is encrypted or not."""
        with self._open_raw(key) as fh:
            head = fh.read(HEADER_SIZE)
            if crypto.is_encrypted(head):
                return crypto.Header.parse(head, f"blob {key}").length
            return os.fstat(fh.fileno()).st_size

    def key_id(self, key: str) -> str | None:
        """Id of the master key the blob is encrypted under; None for a plain blob."""
        with self._open_raw(key) as fh:
            head = fh.read(HEADER_SIZE)
        if not crypto.is_encrypted(head):
            return None
        return crypto.Header.parse(head, f"blob {key}").key_id

    def rewrap(self, key: str, *, encrypt_plain: bool = True) -> str:
        """Put the blob under the active key; returns what happened.

        ``"rewrapped"``: its data key is now wrapped by the active key (the
        header changes, the chunks are copied as they are); ``"encrypted"``: a
        plain blob was encrypted (only with ``encrypt_plain`` on an encrypting
        store); ``"current"``/``"plain"``: nothing to do; ``"missing"``: the blob
        went away meanwhile.  The new file replaces the old by rename, so readers
        see one or the other whole, and an interrupted run leaves only a temp
        file that the next start-up sweeps.
        """
        if self.keyring is None:
            raise KeyUnavailable("no encryption keys are configured")
        dest = self.path(key)
        try:
            src = open(dest, "rb")
        except FileNotFoundError:
            return "missing"
        tmp: Path | None = None
        with src:
            head = src.read(HEADER_SIZE)
            try:
                if crypto.is_encrypted(head):
                    dec = Decryptor.open(src.fileno(), head, self.keyring, f"blob {key}",
                                         bytes.fromhex(key))  # fmt: skip
                    if dec.header.key_id == self.keyring.active:
                        return "current"
                    header = self.keyring.rewrap(dec.header, f"blob {key}")
                    out, tmp = self._temp_beside(dest)
                    with out:
                        out.write(header.raw)
                        out.flush()
                        _copy_range(src.fileno(), out.fileno(), HEADER_SIZE,
                                    header.file_size - HEADER_SIZE)  # fmt: skip
                        os.fsync(out.fileno())
                    outcome = "rewrapped"
                else:
                    if not (encrypt_plain and self.encrypt):
                        return "plain"
                    src.seek(0)
                    out, tmp = self._temp_beside(dest)
                    with out:
                        crypto.encrypt_stream(self.keyring, src, out,
                                              os.fstat(src.fileno()).st_size,
                                              bytes.fromhex(key))  # fmt: skip
                        out.flush()
                        os.fsync(out.fileno())
                    outcome = "encrypted"
                # the blob may have been deleted (or replaced) while we copied it
                try:
                    same = os.stat(dest).st_ino == os.fstat(src.fileno()).st_ino
                except FileNotFoundError:
                    same = False
                if not same:
                    return "missing"
                os.replace(tmp, dest)
                tmp = None
                _fsync_dir(dest.parent)
                return outcome
            except OSError as exc:
                raise StorageFailure(f"cannot rewrite blob {key}: {exc.strerror}") from exc
            finally:
                if tmp is not None:
                    tmp.unlink(missing_ok=True)

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


def _copy_range(src_fd: int, dst_fd: int, offset: int, count: int) -> None:
    """Copy ``count`` bytes from ``src_fd`` at ``offset`` to the end of ``dst_fd``.

    Uses the kernel's copy (``copy_file_range``: no trip through user space, a
    shared extent on file systems with reflinks), falling back to read/write.
    """
    done = 0
    try:
        while done < count:
            n = os.copy_file_range(src_fd, dst_fd, count - done, offset + done)
            if n == 0:
                break
            done += n
    except (AttributeError, OSError):
        pass
    while done < count:
        buf = os.pread(src_fd, min(8 * 1024 * 1024, count - done), offset + done)
        if not buf:
            break
        os.write(dst_fd, buf)
        done += len(buf)
    if done != count:
        raise StorageFailure(f"blob ended after {done} of {count} bytes while copying it")


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
