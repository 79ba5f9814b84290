"""PostgreSQL servers and databases for the test suite.

Tests that need PostgreSQL must run against a real server, never skip because
none was found.  :func:`server_url` finds one, in this order:

1. ``RADCLOUD_TEST_DATABASE_URL`` if set (an admin URL; an error if it does not
   answer, since someone asked for that server explicitly);
2. the server on ``127.0.0.1:5432`` with trust auth, as user ``root`` or
   ``postgres`` (what developer machines and CI have);
3. a throwaway cluster in a temporary folder, built with Debian's ``initdb`` /
   ``pg_ctl`` (installing the ``postgresql`` package with apt if it is missing),
   stopped and deleted when the process exits.

Each test (or test module) then gets its own database from
:func:`create_database` and drops it with :func:`drop_database`, so that tests
running in parallel (pytest-xdist) never see each other's rows.
"""

from __future__ import annotations

import atexit
import fcntl
import glob
import os
import pwd
import re
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from urllib.parse import unquote, urlsplit, urlunsplit

import psycopg
from psycopg import sql

ENV_VAR = "RADCLOUD_TEST_DATABASE_URL"
LOCAL_HOST = "127.0.0.1"
LOCAL_PORT = 5432
LOCAL_USERS = ("root", "postgres")
CONNECT_TIMEOUT_S = 3
START_TIMEOUT_S = 60
THROWAWAY_OS_USER = "radcloud-pg"  # created only if there is no ``postgres`` user

_NAME_RE = re.compile(r"^[a-z_][a-z0-9_]{0,40}$")
_CREATED_RE = re.compile(r"^[a-z_][a-z0-9_]{0,40}_[0-9a-f]{12}$")
_PROTECTED_DBS = frozenset({"postgres", "template0", "template1"})

# Run by the watchdog process: waits for EOF on stdin (the owner closed the pipe
# or died), then stops the cluster and removes its folder.
_WATCHDOG = """
import os, shutil, signal, subprocess, sys
signal.signal(signal.SIGINT, signal.SIG_IGN)
sys.stdin.buffer.read()
pg_ctl, data, base, run_as = sys.argv[1:5]
if os.path.exists(os.path.join(data, "postmaster.pid")):
    cmd = [pg_ctl, "-D", data, "-m", "immediate", "-w", "stop"]
    if run_as:
        cmd = ["runuser", "-u", run_as, "--", *cmd]
    subprocess.run(cmd, cwd=base, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
shutil.rmtree(base, ignore_errors=True)
"""

_lock = threading.Lock()
_cached_url: str | None = None


# ---------------------------------------------------------------------------
# finding a server


def server_url() -> str:
    """An admin URL (``postgresql://…``) of a PostgreSQL server usable by tests.

    The answer is cached for the life of the process; a throwaway cluster
    started here is stopped and removed at exit.  Raises ``RuntimeError``
    saying what was tried when no server can be had.
    """
    global _cached_url
    with _lock:
        if _cached_url is None:
            _cached_url = _find_server()
        return _cached_url


def _find_server() -> str:
    env_url = os.environ.get(ENV_VAR, "").strip()
    if env_url:
        problem = _probe(env_url)
        if problem is not None:
            raise RuntimeError(
                f"{ENV_VAR} is set to {_redact(env_url)} but that server does not answer: "
                f"{problem}. Fix or unset {ENV_VAR}."
            )
        return env_url

    tried: list[str] = []
    for user in LOCAL_USERS:
        url = f"postgresql://{user}@{LOCAL_HOST}:{LOCAL_PORT}/postgres"
        problem = _probe(url)
        if problem is None:
            return url
        tried.append(f"{url}: {problem}")

    try:
        url, _stop = start_throwaway_cluster()
    except Exception as exc:  # reported below with the rest
        tried.append(f"throwaway cluster: {exc}")
        raise RuntimeError(
            "no PostgreSQL server for the tests. Tried, in order:\n  - "
            + f"{ENV_VAR}: not set\n  - "
            + "\n  - ".join(tried)
            + f"\nSet {ENV_VAR} to an admin URL (postgresql://user@host:port/postgres), "
            "start the local server, or install Debian's postgresql package."
        ) from exc
    return url


def _probe(url: str) -> str | None:
    """None if ``url`` accepts a connection and a query, else the reason why not."""
    try:
        with psycopg.connect(url, connect_timeout=CONNECT_TIMEOUT_S, autocommit=True) as conn:
            conn.execute("SELECT 1")
    except Exception as exc:  # any failure means "not usable"
        return f"{type(exc).__name__}: {str(exc).strip() or 'no detail'}"
    return None


def _redact(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return urlunsplit(parts._replace(netloc=netloc))


# ---------------------------------------------------------------------------
# databases


def create_database(admin_url: str, prefix: str = "radcloud_test") -> str:
    """Create an empty database named ``<prefix>_<12 hex>`` and return its URL.

    The URL is ``admin_url`` with only the database name changed, so it keeps
    the admin's user, host, port and query options.
    """
    if not _NAME_RE.match(prefix):
        raise ValueError(f"database prefix must match {_NAME_RE.pattern}: {prefix!r}")
    name = f"{prefix}_{secrets.token_hex(6)}"
    with psycopg.connect(admin_url, connect_timeout=CONNECT_TIMEOUT_S, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return with_database(admin_url, name)


def drop_database(admin_url: str, url: str) -> None:
    """Drop the database of ``url`` (made by :func:`create_database`), ending its sessions.

    Only names of the form ``<prefix>_<12 hex>`` are dropped, so a mistaken URL
    cannot remove a real database.  Dropping one that is already gone is fine.
    """
    name = database_name(url)
    if name in _PROTECTED_DBS or name == database_name(admin_url) or not _CREATED_RE.match(name):
        raise ValueError(f"refusing to drop {name!r}: not a database made by create_database()")
    with psycopg.connect(admin_url, connect_timeout=CONNECT_TIMEOUT_S, autocommit=True) as conn:
        # Stop new sessions, end the current ones, then drop.
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if not exists:
            return
        conn.execute(
            sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS false").format(sql.Identifier(name))
        )
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = %s AND pid <> pg_backend_pid()",
            (name,),
        )
        if conn.info.server_version >= 130000:
            stmt = "DROP DATABASE IF EXISTS {} WITH (FORCE)"
        else:
            stmt = "DROP DATABASE IF EXISTS {}"
        conn.execute(sql.SQL(stmt).format(sql.Identifier(name)))


def database_name(url: str) -> str:
    """The database named by a ``postgresql://`` URL."""
    name = unquote(urlsplit(url).path.lstrip("/"))
    if not name:
        raise ValueError(f"no database name in {_redact(url)}")
    return name


def with_database(url: str, name: str) -> str:
    """``url`` with its database name replaced by ``name``."""
    return urlunsplit(urlsplit(url)._replace(path="/" + name))


def sqlalchemy_url(url: str) -> str:
    """The SQLAlchemy form (``postgresql+psycopg://``) of a ``postgresql://`` URL."""
    parts = urlsplit(url)
    if parts.scheme not in ("postgresql", "postgres"):
        return url
    return urlunsplit(parts._replace(scheme="postgresql+psycopg"))


# ---------------------------------------------------------------------------
# a throwaway cluster


def start_throwaway_cluster() -> tuple[str, Callable[[], None]]:
    """Start a private PostgreSQL cluster; return its admin URL and a ``stop`` function.

    The cluster lives in a new temporary folder, listens on a free port of
    127.0.0.1 (and a socket in that folder), trusts local connections and
    skips fsync.  ``stop`` shuts it down and deletes the folder; it is safe to
    call twice and is also registered to run at exit.  As root, the server runs
    as the ``postgres`` user (or a ``radcloud-pg`` user created for it), since
    PostgreSQL refuses to run as root.
    """
    bindir = _postgres_bindir()
    run_as = _cluster_os_user() if os.geteuid() == 0 else None

    base = Path(tempfile.mkdtemp(prefix="radcloud-pg-"))
    data = base / "data"
    log = base / "server.log"
    if run_as is not None:
        entry = pwd.getpwnam(run_as)
        os.chown(base, entry.pw_uid, entry.pw_gid)

    pg_ctl = str(bindir / "pg_ctl")
    # A watchdog process stops the cluster if this process dies without running
    # its atexit handlers (SIGKILL, os._exit in a timed-out test worker).
    watchdog = subprocess.Popen(
        [sys.executable, "-c", _WATCHDOG, pg_ctl, str(data), str(base), run_as or ""],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd="/",
        start_new_session=True,
    )
    stopped = False

    def stop() -> None:
        nonlocal stopped
        if stopped:
            return
        stopped = True
        atexit.unregister(stop)
        if (data / "postmaster.pid").exists():
            _run_pg(
                [pg_ctl, "-D", str(data), "-m", "immediate", "-w", "stop"],
                run_as,
                base,
                check=False,
            )
        shutil.rmtree(base, ignore_errors=True)
        if watchdog.stdin is not None:
            watchdog.stdin.close()
        try:
            watchdog.wait(timeout=10)
        except subprocess.TimeoutExpired:
            watchdog.kill()

    atexit.register(stop)
    try:
        _run_pg(
            [
                str(bindir / "initdb"),
                "-D",
                str(data),
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-locale",
                "--no-sync",
            ],
            run_as,
            base,
        )
        last_error = ""
        for _attempt in range(3):  # another process may grab the port we picked
            port = _free_port()
            options = (
                f"-p {port} -k {base} -c listen_addresses={LOCAL_HOST} -c fsync=off"
                " -c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
            )
            result = _run_pg(
                [
                    pg_ctl,
                    "-D",
                    str(data),
                    "-l",
                    str(log),
                    "-w",
                    "-t",
                    str(START_TIMEOUT_S),
                    "-o",
                    options,
                    "start",
                ],
                run_as,
                base,
                check=False,
            )
            url = f"postgresql://postgres@{LOCAL_HOST}:{port}/postgres"
            if result.returncode == 0:
                if _probe(url) is None:
                    return url, stop
                _run_pg(
                    [pg_ctl, "-D", str(data), "-m", "immediate", "-w", "stop"],
                    run_as,
                    base,
                    check=False,
                )
            last_error = _tail(log) or result.stdout
        raise RuntimeError(f"pg_ctl could not start the throwaway cluster:\n{last_error}")
    except BaseException:
        stop()
        raise


def _postgres_bindir() -> Path:
    """Newest /usr/lib/postgresql/<v>/bin holding initdb, installing postgresql if needed."""
    found = _find_bindir()
    if found is None:
        _apt_install("postgresql")
        found = _find_bindir()
    if found is None:
        raise RuntimeError("installed postgresql but found no /usr/lib/postgresql/*/bin/initdb")
    return found


def _find_bindir() -> Path | None:
    candidates = []
    for initdb in glob.glob("/usr/lib/postgresql/*/bin/initdb"):
        bindir = Path(initdb).parent
        version = bindir.parent.name
        if version.isdigit() and (bindir / "pg_ctl").exists():
            candidates.append((int(version), bindir))
    return max(candidates)[1] if candidates else None


def _apt_install(package: str) -> None:
    if shutil.which("apt-get") is None:
        raise RuntimeError(f"Debian's {package} package is needed but there is no apt-get here")
    if os.geteuid() != 0:
        raise RuntimeError(
            f"Debian's {package} package is needed; install it as root: apt-get install {package}"
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    apt = ["apt-get", "-o", "DPkg::Lock::Timeout=300", "-q"]
    # One installer at a time across processes (pytest-xdist workers).
    with open(os.path.join(tempfile.gettempdir(), "radcloud-apt.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _find_bindir() is not None:
            return
        for args in (["update"], ["install", "-y", "--no-install-recommends", package]):
            result = subprocess.run(
                apt + args,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                timeout=900,
                check=False,
            )
            if result.returncode != 0:
                tail = "\n".join(result.stdout.splitlines()[-20:])
                raise RuntimeError(f"apt-get {' '.join(args)} failed:\n{tail}")


def _cluster_os_user() -> str:
    """A non-root account to run the server as: ``postgres``, else one made for it."""
    for name in ("postgres", THROWAWAY_OS_USER):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            pass
    useradd = ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin"]
    result = subprocess.run(
        [*useradd, THROWAWAY_OS_USER], capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise RuntimeError(f"could not create user {THROWAWAY_OS_USER}: {result.stderr.strip()}")
    return THROWAWAY_OS_USER


def _run_pg(
    cmd: list[str], run_as: str | None, cwd: Path, *, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run a PostgreSQL tool, as ``run_as`` when given, from a folder it can read."""
    if run_as is not None:
        if shutil.which("runuser") is None:
            raise RuntimeError("runuser (util-linux) is needed to run PostgreSQL as non-root")
        cmd = ["runuser", "-u", run_as, "--", *cmd]
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["LC_ALL"] = "C"
    result = subprocess.run(
        cmd,
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=START_TIMEOUT_S + 30,
        check=False,
    )
    if check and result.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({result.returncode}):\n{result.stdout}")
    return result


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOCAL_HOST, 0))
        return int(sock.getsockname()[1])


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""
