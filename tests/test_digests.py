"""store.digests: one streaming pass gives the file SHA-256 and every frame's digest."""

from __future__ import annotations

import hashlib
import zlib
from pathlib import Path

import orjson
import pytest

from radcloud.store import digests


@pytest.mark.parametrize("chunk", [3, 7, 64, 1024 * 1024])
def test_digests_match_direct_computation(tmp_path: Path, monkeypatch, chunk: int) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(digests, "CHUNK", chunk)
    data = bytes(range(256)) * 3
    path = tmp_path / "f"
    path.write_bytes(data)
    frames = [[(10, 50)], [(60, 5), (100, 200)], [(500, 268)]]  # multi-fragment frame too
    sha, frame_json = digests.file_digests(path, frames)
    assert sha == hashlib.sha256(data).hexdigest()
    expected = [
        digests.frame_digest(b"".join(data[o : o + n] for o, n in frags)) for frags in frames
    ]
    assert orjson.loads(frame_json or "[]") == expected
    assert expected[0] == f"crc32:{zlib.crc32(data[10:60]):08x}"


def test_no_frames(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"abc")
    assert digests.file_digests(path, None) == (hashlib.sha256(b"abc").hexdigest(), None)
