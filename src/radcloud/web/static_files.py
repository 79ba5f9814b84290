"""Serving the front ends' own files (sign-in/admin pages, the viewer build).

One set of security headers for every page and asset, and one lookup that
turns a requested asset name into a file only when the name is one of the
allowed shape and the file exists in its folder (no path is ever built from
anything else).
"""

from __future__ import annotations

import re
from pathlib import Path

from radcloud.errors import NotFound

MEDIA_TYPES = {
    "js": "text/javascript; charset=utf-8",
    "css": "text/css; charset=utf-8",
    "wasm": "application/wasm",
    "svg": "image/svg+xml",
    "png": "image/png",
    "woff2": "font/woff2",
    "map": "application/json",
}


def security_headers(csp: str, cache: str) -> dict[str, str]:
    """Headers for a page or asset: its CSP, no sniffing, no framing, the cache rule."""
    return {
        "Content-Security-Policy": csp,
        "X-Content-Type-Options": "nosniff",
        "X-Frame-Options": "DENY",
        "Referrer-Policy": "same-origin",
        "Cache-Control": cache,
    }


def asset(folder: Path, name: str, pattern: re.Pattern[str]) -> tuple[Path, str]:
    """(path, media type) of the asset ``name`` in ``folder``; NotFound otherwise.

    ``pattern`` must match the whole name and capture its extension as group 1.
    """
    match = pattern.match(name)
    path = folder / name
    if match is None or not path.is_file():
        raise NotFound(f"no asset {name!r}")
    return path, MEDIA_TYPES[match.group(1)]
