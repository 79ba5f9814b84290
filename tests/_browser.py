"""Running a browser scenario (tests/js/*.spec.mjs, playwright-core + Debian Chromium)."""

from __future__ import annotations

import io
import shutil
import subprocess
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest

JS = Path(__file__).parent / "js"
CHROMIUM = Path("/usr/bin/chromium")
#: Screenshots copied here for people to look at after a run.
SHOTS_FOR_PEOPLE = Path("/tmp/radcloud-shots")
ADMIN_PASSWORD = "Admin-pass-2024"


def node() -> str:
    """Node.js, after checking that the browser and its driver are installed."""
    found = shutil.which("node") or "/usr/bin/node"
    if not Path(found).exists():
        pytest.fail("Node.js is missing: run scripts/setup (it installs Debian's nodejs)")
    if not (JS / "node_modules" / "playwright-core").is_dir():
        pytest.fail("tests/js/node_modules/playwright-core is missing: run scripts/setup")
    if not CHROMIUM.exists():
        pytest.fail("Chromium is missing: run scripts/setup (it installs Debian's chromium)")
    return found


def run_spec(
    spec: Path, base: str, shots: Path, home: Path, env: dict[str, str], timeout: float
) -> subprocess.CompletedProcess[str]:
    """``node spec base shots`` with the admin password and Chromium's path; output printed."""
    run = subprocess.run(
        [node(), str(spec), base, str(shots)], cwd=JS, capture_output=True, text=True,
        timeout=timeout,
        env={"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(home),
             "ADMIN_PASSWORD": ADMIN_PASSWORD, "CHROMIUM": str(CHROMIUM), **env},
    )  # fmt: skip
    print(run.stdout)
    print(run.stderr)
    print(f"screenshots: {shots}")
    return run


def keep_shots(shots: Path, names: dict[str, str]) -> None:
    """Copy screenshots (``{file stem: name to keep}``) to ``SHOTS_FOR_PEOPLE``."""
    SHOTS_FOR_PEOPLE.mkdir(parents=True, exist_ok=True)
    for stem, name in names.items():
        if (shots / f"{stem}.png").exists():
            shutil.copy(shots / f"{stem}.png", SHOTS_FOR_PEOPLE / f"{name}.png")


def stow(base: str, instances: Iterable[Any]) -> None:
    """Sign in as the platform admin and STOW-RS ``instances`` (data sets or Part 10 bytes)."""
    import httpx
    from dicom_factory import multipart_related

    parts = []
    for item in instances:
        if isinstance(item, bytes):
            parts.append(item)
            continue
        buf = io.BytesIO()
        item.save_as(buf, enforce_file_format=True)
        parts.append(buf.getvalue())
    body, content_type = multipart_related(parts)
    with httpx.Client(base_url=base, timeout=60) as http:
        login = http.post("/api/auth/login", json={"username": "admin", "password": ADMIN_PASSWORD})
        assert login.status_code == 200, login.text
        r = http.post(
            "/dicom-web/studies", content=body,
            headers={"Content-Type": content_type,
                     "Authorization": f"Bearer {login.json()['token']}"},
        )  # fmt: skip
        assert r.status_code == 200, r.text
