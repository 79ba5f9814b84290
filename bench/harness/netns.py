"""Run a benchmark script inside a private network namespace, so that its servers
listen where nothing else on the machine does (``ip netns`` as root, else
``unshare -rn``, else the host's loopback with a warning)."""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

#: The hidden flag that tells the re-executed script it already runs inside.
INNER_FLAG = "--_inner"


def outer(
    script: str,
    argv: list[str],
    a: argparse.Namespace,
    inner: Callable[[argparse.Namespace, str], int],
    prefix: str,
) -> int:
    """Create the namespace, run ``script argv`` again inside it, remove the namespace."""
    mode = a.netns
    if mode == "auto":
        if os.geteuid() == 0 and shutil.which("ip"):
            mode = "ip"
        elif shutil.which("unshare") and _ok(["unshare", "-rn", "true"]):
            mode = "unshare"
        else:
            mode = "none"
    if mode == "none":
        print("warning: no network namespace; servers listen on this machine's interfaces")
        return inner(a, "loopback of the host (no namespace)")
    me = [sys.executable, str(Path(script).resolve())] + argv
    ns = f"{prefix}-{os.getpid()}"
    if mode == "ip":
        subprocess.run(["ip", "netns", "add", ns], check=True)
        cmd = ["ip", "netns", "exec", ns] + me + [INNER_FLAG, f"ip netns {ns}"]
    else:
        cmd = ["unshare", "-rn"] + me + [INNER_FLAG, "unshare -rn"]
    child: subprocess.Popen[bytes] | None = None

    def forward(signum: int, _frame: Any) -> None:
        if child is not None and child.poll() is None:
            child.send_signal(signal.SIGINT)

    old = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    try:
        if mode == "ip":
            subprocess.run(["ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up"], check=True)
        child = subprocess.Popen(cmd)
        while True:
            try:
                return child.wait()
            except KeyboardInterrupt:
                continue
    finally:
        if mode == "ip":
            # Safety net: anything of ours still inside the namespace is ended by its pid.
            left = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True)
            for pid in left.stdout.split():
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except (ProcessLookupError, ValueError):
                    pass
            subprocess.run(["ip", "netns", "del", ns], check=False)
        for s, h in old.items():
            signal.signal(s, h)


def _ok(cmd: list[str]) -> bool:
    try:
        return subprocess.run(cmd, capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False
