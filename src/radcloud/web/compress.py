"""gzip for JSON answers (QIDO results, series metadata) when the client accepts it.

A 500-instance series' metadata is megabytes of repetitive DICOM JSON that gzip
shrinks ~10×, which matters on a hospital's thin links; pixel data is left
alone (it is either already compressed or better served in a compressed
transfer syntax).
"""

from __future__ import annotations

import zlib

from fastapi import Request
from fastapi.responses import Response

#: Bodies smaller than this go out as they are (the header costs more than it saves).
MIN_BYTES = 1024
#: zlib level 1 compresses DICOM JSON ~8× at several hundred MB/s: speed wins.
LEVEL = 1


def accepts_gzip(request: Request) -> bool:
    for part in request.headers.get("accept-encoding", "").split(","):
        name, _, params = part.strip().partition(";")
        refused = params.replace(" ", "") in ("q=0", "q=0.0", "q=0.00", "q=0.000")
        if name.strip().lower() in ("gzip", "*") and not refused:
            return True
    return False


def json_response(request: Request, body: bytes, media_type: str, status: int = 200) -> Response:
    """``body`` as a response, gzip-encoded when the client accepts it and it is worth it."""
    headers = {"Vary": "Accept-Encoding"}
    if len(body) >= MIN_BYTES and accepts_gzip(request):
        packer = zlib.compressobj(LEVEL, zlib.DEFLATED, 31)  # wbits 31: a gzip container
        body = packer.compress(body) + packer.flush()
        headers["Content-Encoding"] = "gzip"
    return Response(body, status_code=status, media_type=media_type, headers=headers)
