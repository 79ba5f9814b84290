"""``radcloud serve`` as a child process, for tests that need a real server process."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

from _dimse_data import DCMTK_ENV, free_port, wait_port

RADCLOUD = str(Path(sys.executable).with_name("radcloud"))


class Server:
    """``radcloud serve`` as a child process on free ports, SQLite in ``data_dir``."""

    def __init__(self, data_dir: Path) -> None:
        self.http_port, self.dicom_port = free_port(), free_port()
        self.env = {
            **DCMTK_ENV,
            "RADCLOUD_DATA_DIR": str(data_dir),
            "RADCLOUD_HTTP_HOST": "127.0.0.1",
            "RADCLOUD_DICOM_HOST": "127.0.0.1",
            "RADCLOUD_HTTP_PORT": str(self.http_port),
            "RADCLOUD_DICOM_PORT": str(self.dicom_port),
            "RADCLOUD_AE_TITLE": "RADCLOUD",
        }
        self.env.pop("RADCLOUD_DATABASE_URL", None)
        self.env.pop("RADCLOUD_CONFIG", None)
        self.log = data_dir.parent / "serve.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [RADCLOUD, "serve"], env=self.env, stdout=log, stderr=subprocess.STDOUT
            )
        wait_port(self.dicom_port, timeout=60)
        wait_port(self.http_port, timeout=60)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)

    def stop(self) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(30)
