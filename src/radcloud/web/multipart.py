"""Media types and streaming multipart bodies (RFC 2046 / RFC 2387 / RFC 7578).

Requests: :func:`iter_parts` reads a ``multipart/related`` or
``multipart/form-data`` body chunk by chunk and writes each part's bytes
straight to a spool file on the blob file system, so a body of any size
never sits in memory; :func:`read_body` does the same for a single-object
body.  Both stop with 413 once ``max_bytes`` would be exceeded and never
leave a spool file behind on error.

Responses: :func:`multipart_writer` frames parts (headers, bytes or an
iterator of bytes) as ``multipart/related`` for DICOMweb responses.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    AsyncIterator,
    Callable,
    Iterable,
    Iterator,
)
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from starlette.requests import Request

from radcloud.errors import MalformedBody, NotAcceptable, PayloadTooLarge, UnsupportedMediaType

Spool = Callable[[], tuple[BinaryIO, Path]]
PartBody = bytes | Iterable[bytes] | AsyncIterable[bytes]
Parts = Iterable[tuple[dict[str, str], PartBody]] | AsyncIterable[tuple[dict[str, str], PartBody]]

_PARAM = re.compile(r';\s*([^\s=;]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^;]*)')
_MAX_HEADER_BYTES = 16 * 1024
_MAX_PREAMBLE_BYTES = 64 * 1024
_CRLF = b"\r\n"


# ---------------------------------------------------------------- media types


def parse_media_type(value: str | None) -> tuple[str, dict[str, str]]:
    """``'multipart/related; type="application/dicom"; boundary=x'`` → (type, params).

    The media type and parameter names are lower-cased; quoted values are unquoted.
    """
    if not value:
        return "", {}
    media, _, rest = value.partition(";")
    params: dict[str, str] = {}
    for name, raw in _PARAM.findall(";" + rest):
        raw = raw.strip()
        if len(raw) >= 2 and raw[0] == raw[-1] == '"':
            raw = re.sub(r"\\(.)", r"\1", raw[1:-1])
        params[name.lower()] = raw
    return media.strip().lower(), params


def negotiate(accept: str | None, offered: tuple[str, ...]) -> str:
    """The first of ``offered`` that ``accept`` allows (q > 0); NotAcceptable otherwise."""
    if not accept or not accept.strip():
        return offered[0]
    ranges: list[tuple[float, str]] = []
    for item in accept.split(","):
        media, params = parse_media_type(item)
        try:
            q = float(params.get("q", "1"))
        except ValueError:
            q = 1.0
        if media and q > 0:
            ranges.append((q, media))
    for _q, media in sorted(ranges, key=lambda r: -r[0]):
        for candidate in offered:
            if _media_match(media, candidate):
                return candidate
    raise NotAcceptable(f"cannot answer with {accept!r}; this resource offers {', '.join(offered)}")


def _media_match(pattern: str, media: str) -> bool:
    if pattern in ("*/*", media):
        return True
    main, _, sub = pattern.partition("/")
    return sub == "*" and media.startswith(main + "/")


def multipart_boundary(content_type: str | None, *subtypes: str) -> tuple[str, dict[str, str]]:
    """(boundary, params) of a multipart Content-Type whose subtype is one of ``subtypes``."""
    media, params = parse_media_type(content_type)
    if media not in {f"multipart/{s}" for s in subtypes}:
        wanted = " or ".join(f"multipart/{s}" for s in subtypes)
        raise UnsupportedMediaType(f"Content-Type {content_type!r} is not {wanted}")
    boundary = params.get("boundary", "")
    if not boundary or len(boundary) > 200 or not boundary.isascii():
        raise MalformedBody(f"Content-Type {content_type!r} has no usable boundary parameter")
    return boundary, params


# ---------------------------------------------------------------- reading


@dataclass
class Part:
    """One received body part; ``path`` is a spool file the consumer takes over."""

    headers: dict[str, str]
    path: Path
    size: int = 0

    @property
    def content_type(self) -> str:
        return parse_media_type(self.headers.get("content-type"))[0]

    @property
    def content_location(self) -> str:
        return self.headers.get("content-location", "")

    @property
    def name(self) -> str:
        """The form field name (multipart/form-data), else ''."""
        return _disposition(self.headers).get("name", "")

    @property
    def filename(self) -> str:
        """The file name the client gave (form-data filename, Content-Location), else ''."""
        disp = _disposition(self.headers)
        name = disp.get("filename") or self.content_location
        return os.path.basename(name.replace("\\", "/")) if name else ""

    taken: bool = False

    def take(self) -> Path:
        """The spool file, now the caller's: the reader no longer deletes it."""
        self.taken = True
        return self.path

    def discard(self) -> None:
        if not self.taken:
            self.path.unlink(missing_ok=True)


def _disposition(headers: dict[str, str]) -> dict[str, str]:
    value = headers.get("content-disposition", "")
    return parse_media_type(value)[1] if value else {}


class _Budget:
    """Counts body bytes and refuses more than ``limit``."""

    def __init__(self, limit: int | None) -> None:
        self.limit, self.seen = limit, 0

    def take(self, n: int) -> None:
        self.seen += n
        if self.limit is not None and self.seen > self.limit:
            raise PayloadTooLarge(f"request body exceeds the limit of {self.limit} bytes")


def check_length(request: Request, max_bytes: int | None) -> None:
    """413 at once when Content-Length already says the body is too large."""
    declared = request.headers.get("content-length", "")
    if max_bytes is not None and declared.isdigit() and int(declared) > max_bytes:
        raise PayloadTooLarge(
            f"request body of {declared} bytes exceeds the limit of {max_bytes} bytes"
        )


async def read_body(request: Request, spool: Spool, max_bytes: int | None = None) -> Part:
    """The whole (single-object) body, streamed into a spool file."""
    check_length(request, max_bytes)
    budget = _Budget(max_bytes)
    fh, path = spool()
    try:
        with fh:
            async for chunk in request.stream():
                budget.take(len(chunk))
                fh.write(chunk)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    headers = {k.lower(): v for k, v in request.headers.items() if k.lower().startswith("content-")}
    return Part(headers, path, budget.seen)


class _Reader:
    """Buffered access to the request stream with a byte budget."""

    def __init__(self, chunks: AsyncIterator[bytes], budget: _Budget) -> None:
        self.chunks, self.budget = chunks, budget
        self.buf = bytearray(_CRLF)  # so the first delimiter matches CRLF--boundary
        self.eof = False

    async def fill(self) -> bool:
        """Append the next chunk; False at the end of the body."""
        if self.eof:
            return False
        try:
            chunk = await self.chunks.__anext__()
        except StopAsyncIteration:
            self.eof = True
            return False
        self.budget.take(len(chunk))
        self.buf += chunk
        return True

    async def find(self, needle: bytes, *, keep_max: int | None = None, what: str = "") -> int:
        """Index of ``needle`` in the buffer, reading on; -1 at the end of the body."""
        start = 0
        while True:
            idx = self.buf.find(needle, start)
            if idx >= 0:
                return idx
            if keep_max is not None and len(self.buf) > keep_max:
                raise MalformedBody(f"multipart body: no {what} within {keep_max} bytes")
            start = max(0, len(self.buf) - len(needle) + 1)
            if not await self.fill():
                return -1

    async def ensure(self, n: int) -> None:
        while len(self.buf) < n and await self.fill():
            pass


async def iter_parts(
    request: Request, boundary: str, spool: Spool, max_bytes: int | None = None
) -> AsyncGenerator[Part, None]:
    """Yield each part of a multipart body with its bytes in a spool file.

    The consumer owns a yielded part's file until it asks for the next part;
    any file still there then (or when the iteration ends) is deleted.
    """
    check_length(request, max_bytes)
    reader = _Reader(request.stream().__aiter__(), _Budget(max_bytes))
    delim = b"\r\n--" + boundary.encode("latin-1")
    if await reader.find(delim, keep_max=_MAX_PREAMBLE_BYTES, what="opening boundary") < 0:
        raise MalformedBody("multipart body has no opening boundary")
    current: Part | None = None
    try:
        while True:
            del reader.buf[: reader.buf.find(delim) + len(delim)]
            if await _closing(reader):
                return
            headers = await _read_headers(reader)
            path, size = await _read_body(reader, delim, spool)
            current = Part(headers, path, size)
            yield current
            current.discard()
            current = None
    finally:
        if current is not None:
            current.discard()


async def _closing(reader: _Reader) -> bool:
    """After a delimiter: True for the close delimiter ``--``, else skip to the CRLF."""
    await reader.ensure(2)
    if reader.buf[:2] == b"--":
        return True
    end = await reader.find(_CRLF, keep_max=1024, what="end of the boundary line")
    if end < 0 or reader.buf[:end].strip(b" \t"):
        raise MalformedBody("multipart boundary line is malformed or the body ends early")
    del reader.buf[: end + 2]
    return False


async def _read_headers(reader: _Reader) -> dict[str, str]:
    await reader.ensure(2)
    if reader.buf[:2] == _CRLF:  # no headers at all
        del reader.buf[:2]
        return {}
    end = await reader.find(b"\r\n\r\n", keep_max=_MAX_HEADER_BYTES, what="end of part headers")
    if end < 0:
        raise MalformedBody("multipart body ends inside a part's headers")
    raw = bytes(reader.buf[:end]).decode("utf-8", "replace")
    del reader.buf[: end + 4]
    headers: dict[str, str] = {}
    for line in re.split(r"\r\n(?![ \t])", raw):
        name, sep, value = line.partition(":")
        if not sep or not name.strip():
            raise MalformedBody(f"malformed part header line {line[:80]!r}")
        headers[name.strip().lower()] = " ".join(value.split())
    return headers


async def _read_body(reader: _Reader, delim: bytes, spool: Spool) -> tuple[Path, int]:
    """Write the part's bytes up to the next delimiter to a new spool file."""
    fh, path = spool()
    size = 0
    try:
        with fh:
            while True:
                idx = reader.buf.find(delim)
                if idx >= 0:
                    fh.write(reader.buf[:idx])
                    size += idx
                    del reader.buf[:idx]
                    return path, size
                safe = max(0, len(reader.buf) - len(delim) + 1)
                fh.write(reader.buf[:safe])
                size += safe
                del reader.buf[:safe]
                if not await reader.fill():
                    raise MalformedBody("multipart body ends inside a part (no closing boundary)")
    except BaseException:
        path.unlink(missing_ok=True)
        raise


# ---------------------------------------------------------------- writing


def multipart_writer(
    parts: Parts,
    *,
    media_type: str | None = None,
    boundary: str | None = None,
) -> tuple[str, Iterator[bytes] | AsyncIterator[bytes]]:
    """(Content-Type, body iterator) of a ``multipart/related`` response.

    Each part is (headers, body) with body bytes or an (async) iterator of
    bytes.  Sync parts with sync bodies give a sync iterator (Starlette runs
    it in a thread, so blocking blob reads are fine); async parts give an
    async iterator that accepts either kind of body.
    """
    boundary = boundary or uuid.uuid4().hex
    content_type = "multipart/related"
    if media_type:
        content_type += f'; type="{media_type}"'
    token = re.fullmatch(r"[A-Za-z0-9'+_.-]+", boundary)
    content_type += f"; boundary={boundary}" if token else f'; boundary="{boundary}"'
    if isinstance(parts, AsyncIterable):
        return content_type, _write_async(parts, boundary)
    return content_type, _write_sync(parts, boundary)


def _part_head(headers: dict[str, str], boundary: str) -> bytes:
    lines = [f"--{boundary}"] + [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _write_sync(parts: Iterable[tuple[dict[str, str], PartBody]], boundary: str) -> Iterator[bytes]:
    for headers, body in parts:
        yield _part_head(headers, boundary)
        if isinstance(body, bytes | bytearray | memoryview):
            yield bytes(body)
        elif isinstance(body, AsyncIterable):
            raise TypeError("async part bodies need async parts; pass an async iterable")
        else:
            yield from body
        yield _CRLF
    yield f"--{boundary}--\r\n".encode("latin-1")


async def _write_async(
    parts: AsyncIterable[tuple[dict[str, str], PartBody]], boundary: str
) -> AsyncIterator[bytes]:
    async for headers, body in parts:
        yield _part_head(headers, boundary)
        if isinstance(body, bytes | bytearray | memoryview):
            yield bytes(body)
        elif isinstance(body, AsyncIterable):
            async for chunk in body:
                yield chunk
        else:
            for chunk in body:
                yield chunk
        yield _CRLF
    yield f"--{boundary}--\r\n".encode("latin-1")
