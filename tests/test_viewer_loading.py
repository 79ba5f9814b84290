"""The viewer's loading path (issue 4 "Loading"), in a real browser against ``radcloud serve``.

``tests/js/viewer_loading.spec.mjs``: with the lossless frames held back, a server-rendered
JPEG of the first slice shows at once, marked "PREVIEW / 预览", and goes when Cornerstone
draws the lossless image; frames are asked for shown-slice-first, then outward, with at
most the prefetch bound in flight; frames asked for as HTJ2K lossless or JPEG-LS lossless
(transcoded by the server, decoded by Cornerstone's WASM codecs) give every slice exactly
the pixels of the native frames (per-slice sums checked against the stored data here);
the user's "Transfer" choice is saved on the server and used at the next opening.
The build: the entry (study list) does not load Cornerstone; its libraries are split
chunks that only the viewer fetches.
Screenshots: ``/tmp/radcloud-shots/loading-*.png``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import _browser
import numpy as np
import pytest
from pydicom.uid import generate_uid
from test_viewer_ui import SIZE, SLICES, SPACING, _built, _series

from radcloud.web.routes import app_pages

SPEC = _browser.JS / "viewer_loading.spec.mjs"


def test_entry_does_not_load_cornerstone() -> None:
    _built()
    html = (app_pages.APP / "index.html").read_text()
    entry = re.search(r'<script type="module"[^>]*src="/app/assets/([^"]+)"', html)
    assert entry, html
    static = set(re.findall(r'from"\./([^"]+)"', (app_pages.ASSETS / entry[1]).read_text()))
    preloaded = set(re.findall(r'rel="modulepreload"[^>]*href="/app/assets/([^"]+)"', html))
    libraries = {"-".join(n.name.split("-")[:2]) for n in app_pages.ASSETS.glob("cs-*.js")}
    assert {"cs-core", "cs-tools", "cs-loader"} <= libraries
    for name in static | preloaded:
        assert not name.startswith("cs-"), f"the entry loads {name} at once"
        assert (app_pages.ASSETS / name).stat().st_size < 20_000, f"{name} is not small"


def _hashes(values: list[np.ndarray]) -> list[list[int]]:
    """[sum, sum weighted by (k % 251) + 1] of each slice, as the spec computes them."""
    weight = (np.arange(SIZE * SIZE) % 251 + 1).astype(np.int64)
    return [[int(v.sum()), int((v.ravel().astype(np.int64) * weight).sum())] for v in values]


def _store(base: str) -> tuple[str, dict[str, list[list[int]]]]:
    study = generate_uid()
    series = _series(study, generate_uid(), generate_uid(), 2, SLICES, 2.5, False)
    _browser.stow(base, series)
    ordered = sorted(series, key=lambda ds: int(ds.InstanceNumber))
    stored = [np.frombuffer(ds.PixelData, "<u2").astype(np.int64) for ds in ordered]
    hu = [v - 1024 for v in stored]  # Cornerstone applies the modality LUT (pre-scaling)
    return study, {"stored": _hashes(stored), "hu": _hashes(hu)}


@pytest.mark.slow
def test_viewer_loading_in_a_real_browser(tmp_path: Path) -> None:
    from _server import Server

    _built()
    _browser.node()
    server = Server(tmp_path / "data", RADCLOUD_ADMIN_PASSWORD=_browser.ADMIN_PASSWORD)
    server.start()
    try:
        base = f"http://127.0.0.1:{server.http_port}"
        study, hashes = _store(base)
        shots = tmp_path / "shots"
        phantom = {
            "size": SIZE, "spacing": SPACING, "slices": SLICES, "hashes": hashes,
            "downloads": str(tmp_path / "downloads"),
        }  # fmt: skip
        env = {"STUDY_UID": study, "PHANTOM": json.dumps(phantom)}
        run = _browser.run_spec(SPEC, base, shots, tmp_path, env, 300)
        _browser.keep_shots(shots, {p.stem: f"loading-{p.stem}" for p in shots.glob("*.png")})
        assert run.returncode == 0, f"browser scenario failed:\n{run.stdout}\n{run.stderr}"
        assert "ok: viewer loading passed" in run.stdout
        for mode in ("stored", "&transfer=htj2k", "&transfer=jpeg-ls"):
            assert f"PIXELS {mode} " in run.stdout
        assert {"preview", "lossless", "tools-transfer"} <= {p.stem for p in shots.glob("*.png")}
    finally:
        server.stop()
