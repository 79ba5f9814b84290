"""The Image Pixel module of an instance (PS3.3 C.7.6.3), read from its DICOM JSON.

Retrieve, rendering and compression at rest all need the same description of
an instance's pixels without opening its file; this is the one place it is read.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from radcloud.errors import NotFound, UnsupportedTransferSyntax


def _value(meta: dict[str, Any], tag: str, default: Any) -> Any:
    values = meta.get(tag, {}).get("Value") or [default]
    return values[0] if values[0] is not None else default


@dataclass(frozen=True)
class PixelInfo:
    """The Image Pixel module of one instance, read from its stored DICOM JSON."""

    rows: int
    columns: int
    samples: int
    bits_allocated: int
    bits_stored: int
    signed: bool
    photometric: str
    planar: int

    @classmethod
    def of(cls, meta: dict[str, Any]) -> PixelInfo:
        if "7FE00010" not in meta:
            raise NotFound("instance has no pixel data")
        bits = int(_value(meta, "00280100", 16))
        return cls(
            rows=int(_value(meta, "00280010", 0)),
            columns=int(_value(meta, "00280011", 0)),
            samples=int(_value(meta, "00280002", 1)),
            bits_allocated=bits,
            bits_stored=int(_value(meta, "00280101", bits)),
            signed=int(_value(meta, "00280103", 0)) == 1,
            photometric=str(_value(meta, "00280004", "MONOCHROME2")),
            planar=int(_value(meta, "00280006", 0)),
        )

    def dtype(self) -> np.dtype[Any]:
        """Little-endian dtype of native samples."""
        if self.bits_allocated not in (8, 16, 32):
            raise UnsupportedTransferSyntax(
                f"{self.bits_allocated}-bit pixel data cannot be converted to another syntax"
            )
        kind = "i" if self.signed else "u"
        return np.dtype(f"<{kind}{self.bits_allocated // 8}")

    def native_bytes(self, arr: np.ndarray) -> bytes:
        """A decoded frame as little-endian native bytes, laid out as the metadata says."""
        out = np.ascontiguousarray(arr, dtype=self.dtype())
        if self.samples > 1 and self.planar == 1:
            out = np.ascontiguousarray(out.transpose(2, 0, 1))
        return out.tobytes()

    def codec_args(self) -> dict[str, Any]:
        return dict(
            rows=self.rows,
            columns=self.columns,
            samples_per_pixel=self.samples,
            bits_allocated=self.bits_allocated,
            bits_stored=self.bits_stored,
            pixel_representation=int(self.signed),
            photometric=self.photometric,
            planar_configuration=self.planar,
        )
