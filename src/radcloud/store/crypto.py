"""Encryption at rest: the keyring and the chunked AES-256-GCM blob format.

Why chunked: the archive reads single frames of big multi-frame files by byte
offset, so a ranged read must decrypt only the few chunks that cover it, and
every chunk must be authenticated on its own.  Why a per-blob data key wrapped
by a master key: rotating the master key then rewrites a 160-byte header, not
the data, and a leaked data key exposes one blob only.

Layout of an encrypted blob (all integers big-endian)::

    header, HEADER_SIZE = 160 bytes
      0   8  MAGIC  b"\\x89RCENC\\r\\n"
      8   1  format version (1)
      9   1  length of the key id
     10   2  reserved, zero
     12   4  plaintext bytes per chunk (CHUNK_SIZE = 64 KiB when written here)
     16   8  plaintext length
     24  16  blob id: the storage key the blob was written under (or random)
     40   8  nonce prefix (random)
     48   8  key check: HMAC-SHA256(master key, "radcloud key check")[:8]
     56  12  wrap nonce (random)
     68  48  the 32-byte data key sealed by AES-256-GCM under the master key
    116  32  key id (ASCII, NUL-padded)
    148  12  reserved, zero
    chunk i, for i in 0 .. max(1, ceil(length / chunk size)) - 1
      AES-256-GCM(data key, nonce = prefix || uint32 i,
                  aad = b"RCC1" || blob id || uint64 i || last-chunk flag)
      = plaintext chunk (chunk size bytes, the last one shorter) + 16-byte tag

The wrapped data key is sealed with every other header field as associated
data, so the header cannot be altered (length, blob id, nonce prefix, key id)
without the unwrap failing; the chunk associated data stops chunks from being
reordered, dropped or moved to another blob; the file size is implied by the
plaintext length and checked on every open.  The key check tells a wrong key
(an operator problem: :class:`~radcloud.errors.KeyUnavailable`) from an altered
header (:class:`~radcloud.errors.IntegrityError`).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import io
import logging
import os
import re
import struct
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from radcloud.errors import IntegrityError, KeyUnavailable

if TYPE_CHECKING:
    from radcloud.config import Settings

log = logging.getLogger(__name__)

MAGIC = b"\x89RCENC\r\n"
VERSION = 1
HEADER_SIZE = 160
CHUNK_SIZE = 64 * 1024
TAG_SIZE = 16
KEY_SIZE = 32
MAX_KEY_ID = 32
#: Chunk indexes live in 4 nonce bytes.
MAX_CHUNKS = 2**32

_KEY_ID_RE = re.compile(r"^[A-Za-z0-9._-]{1,32}$")
_HEAD = struct.Struct(">8sBBHIQ16s8s8s12s48s32s12s")
_CHUNK_AAD = struct.Struct(">4s16sQB")
_WRAP_AAD_SLICES = ((0, 56), (116, HEADER_SIZE))
_KCV_LABEL = b"radcloud key check"
#: How often a keyring loaded from a file looks at the file again (seconds).
REFRESH_SECONDS = 2.0
#: Ciphertext read per system call on big reads (bytes).
READ_BATCH = 4 * 1024 * 1024
_HAS_INTO = hasattr(AESGCM, "decrypt_into") and hasattr(AESGCM, "encrypt_into")
#: Unwrapped data keys kept per keyring (unwrapping is cheap, but ranged reads are hot).
DATA_KEY_CACHE = 4096

assert _HEAD.size == HEADER_SIZE


def is_encrypted(head: bytes) -> bool:
    """Whether a blob starting with ``head`` is in the encrypted format (else: plain)."""
    return head[: len(MAGIC)] == MAGIC


def key_check(master: bytes) -> bytes:
    """A public fingerprint of a master key: tells a wrong key from an altered header."""
    return hmac.new(master, _KCV_LABEL, hashlib.sha256).digest()[:8]


def new_key_id() -> str:
    """A fresh, sortable key id such as ``k20260512-3fa9c1``."""
    return f"k{datetime.now(UTC):%Y%m%d}-{os.urandom(3).hex()}"


def _b64_key(text: str, where: str) -> bytes:
    try:
        key = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise KeyUnavailable(f"{where}: the key is not valid base64") from None
    if len(key) != KEY_SIZE:
        raise KeyUnavailable(
            f"{where}: the key is {len(key)} bytes; AES-256 needs {KEY_SIZE} (base64 of 32 bytes)"
        )
    return key


def _check_id(key_id: str, where: str) -> str:
    if not _KEY_ID_RE.match(key_id):
        raise KeyUnavailable(
            f"{where}: key id {key_id!r} must be 1-{MAX_KEY_ID} characters of A-Z a-z 0-9 . _ -"
        )
    return key_id


# ------------------------------------------------------------------ keyring


def parse_key_file(text: str, where: str) -> list[tuple[str, bytes]]:
    """``key-id base64-key`` lines (blank lines and ``#`` comments ignored), first = active."""
    keys: list[tuple[str, bytes]] = []
    for n, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split()
        if len(parts) != 2:
            raise KeyUnavailable(f"{where} line {n}: expected 'key-id base64-key'")
        at = f"{where} line {n}"
        keys.append((_check_id(parts[0], at), _b64_key(parts[1], at)))
    return _checked(keys, where)


def parse_key_list(text: str, where: str = "RADCLOUD_ENCRYPTION_KEYS") -> list[tuple[str, bytes]]:
    """``id:base64,id:base64`` (the environment form), first = active."""
    keys: list[tuple[str, bytes]] = []
    for n, item in enumerate((p.strip() for p in text.split(",")), 1):
        if not item:
            continue
        key_id, sep, b64 = item.partition(":")
        if not sep:
            raise KeyUnavailable(f"{where} entry {n}: expected 'key-id:base64-key'")
        at = f"{where} entry {n}"
        keys.append((_check_id(key_id.strip(), at), _b64_key(b64, at)))
    return _checked(keys, where)


def _checked(keys: list[tuple[str, bytes]], where: str) -> list[tuple[str, bytes]]:
    if not keys:
        raise KeyUnavailable(f"{where} holds no keys")
    seen: set[str] = set()
    for key_id, _ in keys:
        if key_id in seen:
            raise KeyUnavailable(f"{where}: key id {key_id!r} appears twice")
        seen.add(key_id)
    return keys


def default_key_file(settings: Settings) -> Path:
    """Where the key file is: the configured path, else ``<data_dir>/keys/radcloud.keys``."""
    return settings.key_file or settings.data_dir / "keys" / "radcloud.keys"


def _write_private(path: Path, text: str, *, exclusive: bool) -> None:
    """Write ``text`` to ``path`` with mode 0600, atomically (temp + fsync + rename/link).

    ``exclusive`` creates the file only if it does not exist (two processes
    starting at once agree on one key).
    """
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.{os.urandom(4).hex()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="ascii") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        if exclusive:
            os.link(tmp, path)  # FileExistsError if another process won
        else:
            os.replace(tmp, path)
        dfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    finally:
        tmp.unlink(missing_ok=True)


def _key_line(key_id: str, key: bytes) -> str:
    return f"{key_id} {base64.b64encode(key).decode()}\n"


def create_key_file(path: Path) -> str:
    """Create ``path`` holding one fresh key; returns its id.  FileExistsError if it exists."""
    key_id = new_key_id()
    header = (
        "# radcloud encryption keys: 'key-id base64-key' per line; the FIRST line is the\n"
        "# active key (new writes), the others still decrypt older blobs.  Keep a copy\n"
        "# somewhere safe and NOT on the disk that holds the data: lose it, lose the data.\n"
    )
    _write_private(path, header + _key_line(key_id, AESGCM.generate_key(256)), exclusive=True)
    return key_id


def add_key(path: Path) -> str:
    """Prepend a fresh key to the key file (creating it), making it active; returns its id."""
    try:
        text = path.read_text(encoding="ascii")
    except FileNotFoundError:
        return create_key_file(path)
    except (OSError, UnicodeDecodeError) as exc:
        raise KeyUnavailable(f"cannot read key file {path}: {exc}") from None
    known = {k for k, _ in parse_key_file(text, str(path))}
    key_id = new_key_id()
    while key_id in known:
        key_id = new_key_id()
    lines = text.splitlines(keepends=True)
    at = next(
        (i for i, ln in enumerate(lines) if ln.strip() and not ln.lstrip().startswith("#")),
        len(lines),
    )
    lines.insert(at, _key_line(key_id, AESGCM.generate_key(256)))
    _write_private(path, "".join(lines), exclusive=False)
    return key_id


class Keyring:
    """Master keys by id; the first is active (used for new writes), all are used to read.

    A keyring loaded from a file notices when the file changes (``radcloud keys
    new`` on a running server): an unknown key id reloads it at once, and the
    active key is re-checked every :data:`REFRESH_SECONDS`.
    """

    def __init__(self, keys: Iterable[tuple[str, bytes]], source: Path | None = None) -> None:
        self.source = source
        self._lock = threading.Lock()
        self._cache: OrderedDict[bytes, AESGCM] = OrderedDict()
        self._install(list(keys))
        self._stamp = self._file_stamp()
        self._checked_at = time.monotonic()

    def _install(self, keys: list[tuple[str, bytes]]) -> None:
        keys = _checked(keys, str(self.source or "keyring"))
        self._ids = [k for k, _ in keys]
        self._master = {k: AESGCM(v) for k, v in keys}
        self._kcv = {k: key_check(v) for k, v in keys}

    @classmethod
    def from_file(cls, path: Path) -> Keyring:
        try:
            text = path.read_text(encoding="ascii")
        except FileNotFoundError:
            raise KeyUnavailable(
                f"key file {path} does not exist (create one with 'radcloud keys new')"
            ) from None
        except (OSError, UnicodeDecodeError) as exc:
            raise KeyUnavailable(f"cannot read key file {path}: {exc}") from None
        ring = cls(parse_key_file(text, str(path)), source=path)
        if path.stat().st_mode & 0o077:
            log.warning("key file %s can be read by other users; chmod 600 it", path)
        return ring

    @classmethod
    def from_settings(cls, settings: Settings, *, create: bool = False) -> Keyring | None:
        """The configured keyring: ``encryption_keys``, else the key file.

        With ``create``, a missing key file at the default place is created with
        one fresh key (first start); a missing key file the settings name
        explicitly is an error (a lost mount must not silently start a new key).
        Returns None when no keys are configured and none were created.
        """
        if settings.encryption_keys:
            return cls(parse_key_list(settings.encryption_keys))
        path = default_key_file(settings)
        if not path.exists():
            if settings.key_file is not None and create:
                raise KeyUnavailable(
                    f"key file {path} does not exist (create one with 'radcloud keys new')"
                )
            if not create:
                return None
            try:
                key_id = create_key_file(path)
                log.warning(
                    "created encryption key %s in %s: back it up, away from the data disk",
                    key_id,
                    path,
                )
            except FileExistsError:
                pass
        return cls.from_file(path)

    # -- lookup

    @property
    def active(self) -> str:
        """Id of the key new blobs are written under."""
        self._maybe_refresh()
        return self._ids[0]

    @property
    def ids(self) -> list[str]:
        self._maybe_refresh()
        return list(self._ids)

    def fingerprint(self, key_id: str) -> str:
        """The key check value of ``key_id`` as hex (safe to print)."""
        return self._kcv[key_id].hex()

    def _master_key(self, key_id: str) -> tuple[AESGCM, bytes]:
        if key_id not in self._master:
            self._maybe_refresh(force=True)
        try:
            return self._master[key_id], self._kcv[key_id]
        except KeyError:
            where = f"key file {self.source}" if self.source else "the configured keys"
            raise KeyUnavailable(
                f"the blob is encrypted with key {key_id!r}, which is not in {where}"
            ) from None

    # -- reload

    def _file_stamp(self) -> tuple[int, int, int] | None:
        if self.source is None:
            return None
        try:
            st = self.source.stat()
        except OSError:
            return None
        return (st.st_ino, st.st_mtime_ns, st.st_size)

    def _maybe_refresh(self, force: bool = False) -> None:
        if self.source is None:
            return
        now = time.monotonic()
        if not force and now - self._checked_at < REFRESH_SECONDS:
            return
        self._checked_at = now
        stamp = self._file_stamp()
        if stamp is None or stamp == self._stamp:
            return
        try:
            keys = parse_key_file(self.source.read_text(encoding="ascii"), str(self.source))
        except (OSError, UnicodeDecodeError, KeyUnavailable) as exc:
            log.warning("key file %s changed but cannot be used; keeping the old keys: %s",
                        self.source, exc)  # fmt: skip
            return
        with self._lock:
            self._install(keys)
            self._stamp = stamp
        log.info("reloaded key file %s; active key %s", self.source, self._ids[0])

    # -- data keys

    def seal_header(self, blob_id: bytes, length: int, chunk_size: int = CHUNK_SIZE) -> Header:
        """A header with a fresh data key, wrapped under the active key."""
        if not 0 < chunk_size < 2**32 or _n_chunks(length, chunk_size) > MAX_CHUNKS:
            raise ValueError("blob too large for the encrypted format")
        return self._wrap(
            self.active, AESGCM.generate_key(256), blob_id, length, chunk_size, os.urandom(8)
        )

    def _wrap(
        self, key_id: str, data_key: bytes, blob_id: bytes, length: int, chunk_size: int,
        prefix: bytes,
    ) -> Header:  # fmt: skip
        master, kcv = self._master_key(key_id)
        wrap_nonce = os.urandom(12)
        fields = [MAGIC, VERSION, len(key_id), 0, chunk_size, length, blob_id, prefix, kcv,
                  wrap_nonce, b"\0" * 48, key_id.encode("ascii"), b"\0" * 12]  # fmt: skip
        draft = _HEAD.pack(*fields)
        fields[10] = master.encrypt(wrap_nonce, data_key, _wrap_aad(draft))
        header = Header.parse(_HEAD.pack(*fields))
        with self._lock:
            self._remember(header.raw, AESGCM(data_key))
        return header

    def data_key(self, header: Header, where: str = "blob") -> AESGCM:
        """The blob's data key (cached), unwrapped with the key the header names."""
        with self._lock:
            cached = self._cache.get(header.raw)
            if cached is not None:
                self._cache.move_to_end(header.raw)
                return cached
        return AESGCM(self._unwrap(header, where))

    def _unwrap(self, header: Header, where: str) -> bytes:
        master, kcv = self._master_key(header.key_id)
        if not hmac.compare_digest(kcv, header.key_check):
            raise KeyUnavailable(
                f"{where}: key {header.key_id!r} in the keyring is not the key this blob was "
                "written with (or its header was altered)"
            )
        try:
            data_key = master.decrypt(header.wrap_nonce, header.wrapped_key, _wrap_aad(header.raw))
        except InvalidTag:
            raise IntegrityError(f"{where}: the encryption header was altered") from None
        with self._lock:
            self._remember(header.raw, AESGCM(data_key))
        return data_key

    def _remember(self, raw: bytes, aead: AESGCM) -> None:
        self._cache[raw] = aead
        self._cache.move_to_end(raw)
        while len(self._cache) > DATA_KEY_CACHE:
            self._cache.popitem(last=False)

    def rewrap(self, header: Header, where: str = "blob") -> Header:
        """The same blob's header with its data key wrapped under the active key."""
        data_key = self._unwrap(header, where)
        return self._wrap(
            self.active, data_key, header.blob_id, header.length, header.chunk_size,
            header.nonce_prefix,
        )  # fmt: skip


def _wrap_aad(raw: bytes) -> bytes:
    return b"".join(raw[a:b] for a, b in _WRAP_AAD_SLICES)


def _n_chunks(length: int, chunk_size: int) -> int:
    return max(1, -(-length // chunk_size))


# ------------------------------------------------------------------ format


@dataclass(frozen=True)
class Header:
    """The parsed fixed-size header of an encrypted blob."""

    raw: bytes
    key_id: str
    chunk_size: int
    length: int
    blob_id: bytes
    nonce_prefix: bytes
    key_check: bytes
    wrap_nonce: bytes
    wrapped_key: bytes

    @classmethod
    def parse(cls, raw: bytes, where: str = "blob") -> Header:
        """Check the structure of a header (authenticity is checked when unwrapping)."""
        if len(raw) < HEADER_SIZE:
            raise IntegrityError(f"{where}: encrypted blob is truncated inside its header")
        raw = bytes(raw[:HEADER_SIZE])
        (magic, version, id_len, reserved, chunk_size, length, blob_id, prefix, kcv, wnonce,
         wrapped, key_id, tail) = _HEAD.unpack(raw)  # fmt: skip
        if magic != MAGIC:
            raise IntegrityError(f"{where}: not an encrypted blob")
        if version != VERSION:
            raise IntegrityError(f"{where}: unsupported encryption format version {version}")
        if not 0 < id_len <= MAX_KEY_ID or reserved or chunk_size < 1 or tail.strip(b"\0"):
            raise IntegrityError(f"{where}: the encryption header is malformed")
        try:
            kid = key_id[:id_len].decode("ascii")
        except UnicodeDecodeError:
            raise IntegrityError(f"{where}: the encryption header is malformed") from None
        if key_id[id_len:].strip(b"\0") or not _KEY_ID_RE.match(kid):
            raise IntegrityError(f"{where}: the encryption header is malformed")
        return cls(raw, kid, chunk_size, length, blob_id, prefix, kcv, wnonce, wrapped)

    @property
    def n_chunks(self) -> int:
        return _n_chunks(self.length, self.chunk_size)

    @property
    def file_size(self) -> int:
        """Size of the whole encrypted file this header describes."""
        return HEADER_SIZE + self.length + self.n_chunks * TAG_SIZE

    def chunk_offset(self, i: int) -> int:
        return HEADER_SIZE + i * (self.chunk_size + TAG_SIZE)

    def chunk_plain_size(self, i: int) -> int:
        if i < self.n_chunks - 1:
            return self.chunk_size
        return self.length - (self.n_chunks - 1) * self.chunk_size

    def nonce(self, i: int) -> bytes:
        return self.nonce_prefix + i.to_bytes(4, "big")

    def aad(self, i: int) -> bytes:
        return _CHUNK_AAD.pack(b"RCC1", self.blob_id, i, i == self.n_chunks - 1)


def encrypt_stream(
    keyring: Keyring, src: BinaryIO, dst: BinaryIO, length: int, blob_id: bytes
) -> Header:
    """Write ``length`` bytes of ``src`` to ``dst`` in the encrypted format."""
    header = keyring.seal_header(blob_id, length)
    aead = keyring.data_key(header)
    dst.write(header.raw)
    batch = max(1, (4 * 1024 * 1024) // header.chunk_size)  # ~4 MiB at a time
    i = 0
    while i < header.n_chunks:
        todo = min(batch, header.n_chunks - i)
        sizes = [header.chunk_plain_size(j) for j in range(i, i + todo)]
        buf = _read_exactly(src, sum(sizes))
        if len(buf) != sum(sizes):
            raise ValueError(f"source ended after {i * header.chunk_size + len(buf)} bytes, "
                             f"expected {length}")  # fmt: skip
        plain = memoryview(buf)
        sealed = memoryview(bytearray(sum(sizes) + todo * TAG_SIZE))
        pos = opos = 0
        for j, n in enumerate(sizes, i):
            _encrypt_into(aead, header.nonce(j), plain[pos : pos + n], header.aad(j),
                          sealed[opos : opos + n + TAG_SIZE])  # fmt: skip
            pos += n
            opos += n + TAG_SIZE
        dst.write(sealed)
        i += todo
    if src.read(1):
        raise ValueError(f"source is longer than {length} bytes")
    return header


def _read_exactly(src: BinaryIO, n: int) -> bytes:
    parts = []
    while n > 0:
        part = src.read(n)
        if not part:
            break
        parts.append(part)
        n -= len(part)
    return b"".join(parts)


def seal_bytes(keyring: Keyring, data: bytes, blob_id: bytes | None = None) -> bytes:
    """``data`` in the encrypted format (exports: ``blob_id`` random by default)."""
    out = io.BytesIO()
    encrypt_stream(keyring, io.BytesIO(data), out, len(data), blob_id or os.urandom(16))
    return out.getvalue()


class Decryptor:
    """Decrypts chunks of one encrypted file, given its checked header and data key."""

    def __init__(self, fd: int, header: Header, aead: AESGCM, where: str) -> None:
        self.fd = fd
        self.header = header
        self.aead = aead
        self.where = where

    @classmethod
    def open(
        cls, fd: int, head: bytes, keyring: Keyring | None, where: str,
        blob_id: bytes | None = None,
    ) -> Decryptor:  # fmt: skip
        """Check ``head`` (read from ``fd``), unwrap the data key and the file size."""
        header = Header.parse(head, where)
        if keyring is None:
            raise KeyUnavailable(
                f"{where} is encrypted (key {header.key_id!r}) but no encryption keys are "
                "configured"
            )
        aead = keyring.data_key(header, where)
        if blob_id is not None and not hmac.compare_digest(header.blob_id, blob_id):
            raise IntegrityError(f"{where}: the file holds another blob (blob id differs)")
        size = os.fstat(fd).st_size
        if size != header.file_size:
            what = "truncated" if size < header.file_size else "longer than its header says"
            raise IntegrityError(f"{where}: encrypted blob is {what}")
        return cls(fd, header, aead, where)

    def plaintext(self, first: int, last: int) -> memoryview:
        """Plaintext of chunks ``first`` .. ``last`` (inclusive).

        The ciphertext is read in pieces of about 4 MiB into one reused buffer,
        so a whole-file read holds the plaintext and little more.
        """
        h = self.header
        sizes = [h.chunk_plain_size(i) for i in range(first, last + 1)]
        out = memoryview(bytearray(sum(sizes)))
        per_read = max(1, READ_BATCH // (h.chunk_size + TAG_SIZE))
        buf = memoryview(bytearray(min(len(sizes), per_read) * (h.chunk_size + TAG_SIZE)))
        opos = 0
        for b0 in range(0, len(sizes), per_read):
            batch = sizes[b0 : b0 + per_read]
            want = sum(batch) + len(batch) * TAG_SIZE
            got = os.preadv(self.fd, [buf[:want]], h.chunk_offset(first + b0))
            if got != want:
                raise IntegrityError(f"{self.where}: encrypted blob is truncated")
            pos = 0
            for i, n in enumerate(batch, first + b0):
                try:
                    _decrypt_into(self.aead, h.nonce(i), buf[pos : pos + n + TAG_SIZE], h.aad(i),
                                  out[opos : opos + n])  # fmt: skip
                except InvalidTag:
                    raise IntegrityError(
                        f"{self.where}: encrypted chunk {i} failed authentication (altered or "
                        "misplaced data)"
                    ) from None
                pos += n + TAG_SIZE
                opos += n
        return out

    def read_range(self, start: int, length: int) -> bytes:
        """Plaintext bytes ``start`` .. ``start + length`` (clipped at the end, like a file)."""
        h = self.header
        end = min(h.length, start + max(0, length))
        if start >= end:
            return b""
        first, last = start // h.chunk_size, (end - 1) // h.chunk_size
        skip = start - first * h.chunk_size
        return bytes(self.plaintext(first, last)[skip : skip + end - start])


def _decrypt_into(
    aead: AESGCM, nonce: bytes, data: memoryview, aad: bytes, buf: memoryview
) -> None:
    """Decrypt into ``buf``: without a fresh bytes object per chunk where the library can."""
    if _HAS_INTO:
        aead.decrypt_into(nonce, data, aad, buf)
    else:  # cryptography < 45
        buf[:] = aead.decrypt(nonce, data, aad)


def _encrypt_into(
    aead: AESGCM, nonce: bytes, data: memoryview, aad: bytes, buf: memoryview
) -> None:
    if _HAS_INTO:
        aead.encrypt_into(nonce, data, aad, buf)
    else:  # cryptography < 45
        buf[:] = aead.encrypt(nonce, data, aad)


class DecryptingReader(io.BufferedIOBase):
    """A seekable, read-only file object over an encrypted blob's plaintext.

    Reads decrypt only the chunks they touch; ``read(n)`` returns ``n`` bytes
    unless at the end, like a buffered file.  Closing closes the file.
    """

    #: Every byte read has passed AES-GCM authentication (a read that fails raises).
    authenticated = True

    def __init__(self, fh: BinaryIO, decryptor: Decryptor) -> None:
        super().__init__()
        self._fh = fh
        self._dec = decryptor
        self._pos = 0
        self._held: tuple[int, memoryview] = (-1, memoryview(b""))

    @property
    def header(self) -> Header:
        return self._dec.header

    @property
    def length(self) -> int:
        return self._dec.header.length

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        self._check_open()
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        self._check_open()
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self.length}[whence]
        if base + offset < 0:
            raise ValueError("negative seek position")
        self._pos = base + offset
        return self._pos

    def read(self, size: int | None = -1) -> bytes:
        self._check_open()
        if size is None or size < 0:
            size = self.length - self._pos
        h = self._dec.header
        end = min(h.length, self._pos + size)
        if self._pos >= end:
            return b""
        first, last = self._pos // h.chunk_size, (end - 1) // h.chunk_size
        skip = self._pos - first * h.chunk_size
        if first == last:
            data = bytes(self._chunk(first)[skip : skip + end - self._pos])
        else:
            plain = self._dec.plaintext(first, last)
            # small reads that follow often stay in the last chunk: keep it
            self._held = (last, plain[(last - first) * h.chunk_size :])
            data = bytes(plain[skip : skip + end - self._pos])
        self._pos += len(data)
        return data

    def _chunk(self, i: int) -> memoryview:
        if self._held[0] != i:
            self._held = (i, self._dec.plaintext(i, i))
        return self._held[1]

    def read1(self, size: int = -1) -> bytes:
        return self.read(size)

    def readinto(self, b: bytearray | memoryview) -> int:  # type: ignore[override]
        data = self.read(len(b))
        n = len(data)
        memoryview(b).cast("B")[:n] = data
        return n

    def fileno(self) -> int:
        raise io.UnsupportedOperation("an encrypted blob has no plaintext file descriptor")

    def close(self) -> None:
        if not self.closed:
            self._fh.close()
            self._held = (-1, memoryview(b""))
        super().close()

    def _check_open(self) -> None:
        if self.closed:
            raise ValueError("I/O operation on closed file")


def open_file(
    path: Path, keyring: Keyring | None, where: str | None = None, blob_id: bytes | None = None
) -> BinaryIO:
    """``path`` for reading: a :class:`DecryptingReader` if encrypted, else the plain file."""
    fh = open(path, "rb")
    try:
        head = fh.read(HEADER_SIZE)
        if not is_encrypted(head):
            fh.seek(0)
            return fh
        dec = Decryptor.open(fh.fileno(), head, keyring, where or str(path), blob_id)
    except BaseException:
        fh.close()
        raise
    return DecryptingReader(fh, dec)  # type: ignore[return-value]
