"""``radcloud serve`` as a child process, for tests that need a real server process."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

from _dimse_data import DCMTK_ENV, free_port, wait_port

RADCLOUD = str(Path(sys.executable).with_name("radcloud"))
#: The platform admin's password in servers started by tests.
ADMIN_PASSWORD = "test-admin-password-1"


class Server:
    """``radcloud serve`` as a child process on free ports, SQLite in ``data_dir``."""

    def __init__(self, data_dir: Path, **env: str) -> None:
        """``env``: extra ``RADCLOUD_*`` variables (they win over the defaults below)."""
        self.http_port, self.dicom_port = free_port(), free_port()
        self.env = {
            **DCMTK_ENV,
            "RADCLOUD_DATA_DIR": str(data_dir),
            "RADCLOUD_HTTP_HOST": "127.0.0.1",
            "RADCLOUD_DICOM_HOST": "127.0.0.1",
            "RADCLOUD_HTTP_PORT": str(self.http_port),
            "RADCLOUD_DICOM_PORT": str(self.dicom_port),
            "RADCLOUD_AE_TITLE": "RADCLOUD",
            "RADCLOUD_ADMIN_PASSWORD": ADMIN_PASSWORD,
        }
        self.env.pop("RADCLOUD_DATABASE_URL", None)
        self.env.pop("RADCLOUD_CONFIG", None)
        self.env.update(env)
        self.log = data_dir.parent / "serve.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [RADCLOUD, "serve"], env=self.env, stdout=log, stderr=subprocess.STDOUT
            )
        for name in ("DICOM_PORT", "DICOM_TLS_PORT", "HTTP_PORT"):  # every listener configured
            port = int(self.env.get(f"RADCLOUD_{name}", "0"))
            if port:
                wait_port(port, timeout=60)

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Run ``radcloud ARGS`` against this server's data (works stopped or running)."""
        return subprocess.run(
            [RADCLOUD, *args], env=self.env, capture_output=True, text=True, timeout=120
        )

    def allow_ae(self, *titles: str) -> None:
        """Register calling AE titles (unknown ones are refused)."""
        for title in titles:
            r = self.cli("ae", "add", title)
            assert r.returncode == 0, r.stderr

    def headers(self) -> dict[str, str]:
        """``Authorization`` for the platform admin (logs in over HTTP)."""
        import httpx

        r = httpx.post(
            f"http://127.0.0.1:{self.http_port}/api/auth/login",
            json={"username": "admin", "password": ADMIN_PASSWORD},
            timeout=30,
        )
        assert r.status_code == 200, r.text
        return {"Authorization": f"Bearer {r.json()['token']}"}

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)

    def stop(self) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(30)
