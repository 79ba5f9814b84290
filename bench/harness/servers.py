"""Start and stop the servers under test (radcloud, Debian's Orthanc) and the storescp peer.

Every process is started in its own session (process group) and stopped by killing that
group: SIGTERM, then SIGKILL after a grace period.  ``Launched.stop`` is idempotent and is
called from ``finally`` blocks, so nothing outlives the benchmark, even on Ctrl-C.
"""

from __future__ import annotations

import json
import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[2]
ORTHANC_BIN = "/usr/sbin/Orthanc"
ORTHANC_PLUGIN_DIR = Path("/usr/share/orthanc/plugins")
#: GDCM transcoding in Orthanc 1.10 overflows the default 8 MiB stack now and then
#: (peer-bench RESULTS.md, finding 2); give Orthanc the 64 MiB that made it reliable.
ORTHANC_STACK_BYTES = 64 * 2**20

LIVE: list[Launched] = []  # everything started and not yet stopped


def free_port() -> int:
    """A TCP port nobody listens on at 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def tree_pids(pid: int) -> list[int]:
    """``pid`` and all its descendants (children lists from /proc)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as fh:
                    todo.extend(int(c) for c in fh.read().split())
        except OSError:
            pass
    return out


def _status_kib(pid: int, key: str) -> int:
    try:
        with open(f"/proc/{pid}/status") as fh:
            m = re.search(rf"^{key}:\s+(\d+)", fh.read(), re.M)
        return int(m.group(1)) if m else 0
    except OSError:
        return 0


def _cpu_s(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except OSError:
        return 0.0


class TreeWatch:
    """Samples the summed RSS of a process tree every ``period`` s in a daemon thread.

    ``peak`` is the largest sum seen since start; ``window()`` gives a fresh peak and the
    tree's CPU seconds over a ``with`` block.
    """

    def __init__(self, pid: int, period: float = 0.05) -> None:
        self.pid, self.period = pid, period
        self.peak = 0
        self._win_peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def rss(self) -> int:
        return sum(_status_kib(p, "VmRSS") for p in tree_pids(self.pid)) * 1024

    def hwm(self) -> int:
        """Summed VmHWM (kernel-recorded peak RSS) of the live tree."""
        return sum(_status_kib(p, "VmHWM") for p in tree_pids(self.pid)) * 1024

    def cpu(self) -> float:
        return sum(_cpu_s(p) for p in tree_pids(self.pid))

    def _loop(self) -> None:
        while not self._stop.is_set():
            r = self.rss()
            self.peak = max(self.peak, r)
            self._win_peak = max(self._win_peak, r)
            time.sleep(self.period)

    def window(self) -> _Window:
        return _Window(self)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)


class _Window:
    def __init__(self, watch: TreeWatch) -> None:
        self.w = watch
        self.peak = 0
        self.cpu = 0.0

    def __enter__(self) -> _Window:
        self.w._win_peak = self.w.rss()
        self._c0 = self.w.cpu()
        return self

    def __exit__(self, *exc: object) -> None:
        self.cpu = self.w.cpu() - self._c0
        self.peak = max(self.w._win_peak, self.w.rss())


@dataclass
class Launched:
    """A started server: its process, ports and log, and how to stop it."""

    name: str
    proc: subprocess.Popen[bytes]
    log: Path
    http_port: int = 0
    dicom_port: int = 0
    aet: str = ""
    dicomweb: str = ""
    version: str = ""
    watch: TreeWatch | None = None
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log_tail(self, n: int = 15) -> str:
        try:
            lines = self.log.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(lines[-n:])

    def stop(self, grace: float = 15.0) -> None:
        if self.watch:
            self.watch.close()
        t = time.monotonic()
        kill_group(self.proc, grace)
        if os.environ.get("RCBENCH_DEBUG"):
            print(f"stopped {self.name} in {time.monotonic() - t:.1f} s", flush=True)
        if self in LIVE:
            LIVE.remove(self)


def kill_group(proc: subprocess.Popen[bytes], grace: float = 15.0) -> None:
    """SIGTERM the process group led by ``proc``, then SIGKILL what is left of it."""
    try:
        pgid = os.getpgid(proc.pid)
    except ProcessLookupError:
        pgid = proc.pid
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            break
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if proc.poll() is not None and not _group_alive(pgid):
                break
            time.sleep(0.1)
        else:
            continue
        break
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        pass


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def stop_all() -> None:
    for p in list(reversed(LIVE)):
        try:
            p.stop()
        except Exception as e:  # keep stopping the others
            print(f"warning: stopping {p.name}: {e!r}", flush=True)


def shut_down(work: Path, keep: bool) -> None:
    """End of a run: ignore further signals, stop every server, remove (or keep) ``work``."""
    for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, signal.SIG_IGN)
    stop_all()
    if keep:
        print(f"kept {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)


def stop_all_named(name: str) -> None:
    for p in list(reversed(LIVE)):
        if p.name == name:
            p.stop()


def _spawn(name: str, cmd: list[str], env: dict[str, str], log: Path, **kw: object) -> Launched:
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as fh:
        proc = subprocess.Popen(
            cmd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=fh,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    srv = Launched(name, proc, log, **kw)  # type: ignore[arg-type]
    LIVE.append(srv)
    return srv


def _wait_ready(srv: Launched, url: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        if not srv.alive():
            raise RuntimeError(f"{srv.name} exited ({srv.proc.returncode}):\n{srv.log_tail()}")
        try:
            r = httpx.get(url, timeout=2)
            if r.status_code == 200 and (not srv.dicom_port or port_open(srv.dicom_port)):
                return
            last = f"HTTP {r.status_code}"
        except httpx.HTTPError as e:
            last = repr(e)
        time.sleep(0.2)
    raise RuntimeError(f"{srv.name} not ready after {timeout:.0f} s ({last}):\n{srv.log_tail()}")


def start_storescp(workdir: Path, aet: str, env: dict[str, str]) -> Launched:
    """A DCMTK storescp that accepts and discards everything (the C-MOVE destination)."""
    port = free_port()
    cmd = ["storescp", "--ignore", "-aet", aet, str(port)]
    scp = _spawn("storescp", cmd, env, workdir / "storescp.log", dicom_port=port, aet=aet)
    deadline = time.monotonic() + 10
    while not port_open(port):
        if not scp.alive() or time.monotonic() > deadline:
            raise RuntimeError(f"storescp did not start:\n{scp.log_tail()}")
        time.sleep(0.05)
    return scp


# ------------------------------------------------------------------------- Orthanc
def orthanc_version() -> str:
    try:
        out = subprocess.run([ORTHANC_BIN, "--version"], capture_output=True, text=True).stdout
        return out.splitlines()[0].split()[-1]
    except (OSError, IndexError):
        return "?"


def start_orthanc(workdir: Path, env: dict[str, str], move_aet: str, move_port: int) -> Launched:
    """Debian's Orthanc with the DICOMweb (and, if installed, GDCM) plugin, own storage."""
    if not Path(ORTHANC_BIN).exists():
        raise RuntimeError("Orthanc is not installed (apt-get install orthanc orthanc-dicomweb)")
    plugins = [str(ORTHANC_PLUGIN_DIR / "libOrthancDicomWeb.so")]
    if not Path(plugins[0]).exists():
        raise RuntimeError(
            "Orthanc's DICOMweb plugin is missing (apt-get install orthanc-dicomweb)"
        )
    gdcm = ORTHANC_PLUGIN_DIR / "libOrthancGdcm.so"
    if gdcm.exists():
        plugins.append(str(gdcm))
    http_port, dicom_port = free_port(), free_port()
    while dicom_port == http_port:
        dicom_port = free_port()
    storage = workdir / "storage"
    storage.mkdir(parents=True, exist_ok=True)
    cfg_dir = workdir / "config"
    cfg_dir.mkdir(parents=True, exist_ok=True)
    config = {
        "Name": "RADCLOUD-BENCH",
        "StorageDirectory": str(storage),
        "IndexDirectory": str(storage),
        "StorageCompression": False,
        "Plugins": plugins,
        "HttpServerEnabled": True,
        "HttpPort": http_port,
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": False,
        "SslEnabled": False,
        "DicomServerEnabled": True,
        "DicomAet": "ORTHANC",
        "DicomPort": dicom_port,
        "DicomCheckCalledAet": False,
        "DicomCheckModalityHost": False,
        "DicomAlwaysAllowEcho": True,
        "DicomAlwaysAllowStore": True,
        "DicomAlwaysAllowFind": True,
        "DicomAlwaysAllowGet": True,
        "DicomAlwaysAllowMove": True,
        "UnknownSopClassAccepted": True,
        "DicomModalities": {move_aet: [move_aet, "127.0.0.1", move_port]},
        "SaveJobs": False,
        "StableAge": 60,
        "OverwriteInstances": False,
        "DicomWeb": {"Enable": True, "Root": "/dicom-web/", "EnableWado": True, "Ssl": False},
        "Gdcm": {"Enable": True, "Throttling": 4},
    }
    (cfg_dir / "orthanc.json").write_text(json.dumps(config, indent=1))
    log = workdir / "orthanc.log"
    cmd = [ORTHANC_BIN, f"--logfile={log}", str(cfg_dir)]
    soft, hard = resource.getrlimit(resource.RLIMIT_STACK)
    want = ORTHANC_STACK_BYTES if hard == resource.RLIM_INFINITY else min(ORTHANC_STACK_BYTES, hard)
    resource.setrlimit(resource.RLIMIT_STACK, (want, hard))  # inherited by the child only
    try:
        srv = _spawn(
            "orthanc",
            cmd,
            env,
            workdir / "orthanc.stdout",
            http_port=http_port,
            dicom_port=dicom_port,
            aet="ORTHANC",
            dicomweb=f"http://127.0.0.1:{http_port}/dicom-web",
        )
    finally:
        resource.setrlimit(resource.RLIMIT_STACK, (soft, hard))
    srv.log = log
    _wait_ready(srv, f"http://127.0.0.1:{http_port}/system", 60)
    srv.version = orthanc_version()
    try:
        plug = httpx.get(f"http://127.0.0.1:{http_port}/plugins/dicom-web", timeout=5).json()
        srv.extra["dicomweb_plugin"] = str(plug.get("Version", "?"))
    except (httpx.HTTPError, ValueError):
        pass
    srv.extra["gdcm_plugin"] = "loaded" if gdcm.exists() else "not installed"
    srv.extra["stack_limit"] = f"{want // 2**20} MiB"
    srv.watch = TreeWatch(srv.pid)
    return srv


# ------------------------------------------------------------------------- radcloud
#: The calling AE title of the benchmark's DCMTK clients (measure.MY_AET).
BENCH_SCU = "BENCHSCU"


def radcloud_cmd() -> list[str]:
    exe = os.environ.get("RADCLOUD_BENCH_CMD") or str(REPO / ".venv" / "bin" / "radcloud")
    return exe.split()


def radcloud_serve_ready() -> tuple[bool, str]:
    """Whether ``radcloud serve --help`` answers (the server has been built)."""
    try:
        p = subprocess.run(
            radcloud_cmd() + ["serve", "--help"], capture_output=True, text=True, timeout=60
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        return False, repr(e)
    return p.returncode == 0, (p.stdout + p.stderr).strip()[-600:]


def start_radcloud(workdir: Path, env: dict[str, str], move_aet: str, move_port: int) -> Launched:
    """``radcloud serve`` on its embedded defaults (SQLite, filesystem blobs) in a temp dir."""
    http_port, dicom_port = free_port(), free_port()
    while dicom_port == http_port:
        dicom_port = free_port()
    data = workdir / "data"
    data.mkdir(parents=True, exist_ok=True)
    env = dict(env)
    env.update(
        RADCLOUD_DATA_DIR=str(data),
        RADCLOUD_HTTP_HOST="127.0.0.1",
        RADCLOUD_HTTP_PORT=str(http_port),
        RADCLOUD_DICOM_HOST="127.0.0.1",
        RADCLOUD_DICOM_PORT=str(dicom_port),
        RADCLOUD_AE_TITLE="RADCLOUD",
        RADCLOUD_ADMIN_PASSWORD="bench-admin-password-1",
        # Orthanc runs no analysis: keep the automatic lung analysis of the bench CT
        # from competing with the rows measured (its cost is bench/ of its own)
        RADCLOUD_ANALYSIS_AUTO="false",
    )
    env.pop("RADCLOUD_DATABASE_URL", None)
    env.pop("RADCLOUD_CONFIG", None)
    log = workdir / "radcloud.log"
    ae_cmd = radcloud_cmd() + ["ae", "add", move_aet, "--host", "127.0.0.1"]
    ae_cmd += ["--port", str(move_port)]
    # Register the C-MOVE destination before start (the index is created on demand);
    # if that is refused, try again once the server has created its index.
    pre = subprocess.run(ae_cmd, env=env, capture_output=True, text=True, timeout=120)
    # the benchmark's own SCU must be a known calling AE (unknown ones are refused)
    caller = radcloud_cmd() + ["ae", "add", BENCH_SCU]
    subprocess.run(caller, env=env, capture_output=True, text=True, timeout=120)
    srv = _spawn(
        "radcloud",
        radcloud_cmd() + ["serve"],
        env,
        log,
        http_port=http_port,
        dicom_port=dicom_port,
        aet="RADCLOUD",
        dicomweb=f"http://127.0.0.1:{http_port}/dicom-web",
    )
    _wait_ready(srv, f"http://127.0.0.1:{http_port}/healthz", 120)
    srv.extra["ae_add"] = "before start" if pre.returncode == 0 else "after start"
    if pre.returncode != 0:
        post = subprocess.run(ae_cmd, env=env, capture_output=True, text=True, timeout=120)
        if post.returncode != 0:
            srv.extra["ae_add"] = "FAILED: " + (post.stdout + post.stderr).strip()[-300:]
    try:
        v = subprocess.run(radcloud_cmd() + ["--version"], env=env, capture_output=True, text=True)
        srv.version = (v.stdout.strip() or v.stderr.strip()).splitlines()[-1][-60:]
    except (OSError, IndexError):
        srv.version = "?"
    srv.extra["git"] = git_describe()
    # an API token for the HTTP rows (every request must be signed in)
    tok = subprocess.run(
        radcloud_cmd() + ["token", "create", "--user", "admin", "--name", "bench"],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    if tok.returncode == 0 and tok.stdout.strip():
        srv.extra["token"] = tok.stdout.strip().splitlines()[-1]
    srv.watch = TreeWatch(srv.pid)
    return srv


def git_describe() -> str:
    try:
        head = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no", "src"],
            capture_output=True,
            text=True,
        ).stdout.strip()
        return head + ("+dirty" if dirty else "")
    except OSError:
        return "?"


def dcmtk_version() -> str:
    try:
        out = subprocess.run(["storescu", "--version"], capture_output=True, text=True).stdout
        m = re.search(r"v(\d+\.\d+\.\d+)", out)
        return m.group(1) if m else "?"
    except OSError:
        return "missing"


def have_tool(name: str) -> bool:
    return shutil.which(name) is not None
