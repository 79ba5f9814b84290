#!/usr/bin/env python3
"""radcloud vs Debian's Orthanc, the same work on the same machine, one command.

Generates the data (a 512x512 CT series, 500 slices; 1,000 one-instance studies),
starts each server in turn on free loopback ports with its own temporary storage,
measures the same rows on both (DIMSE ingest and retrieve with DCMTK tools, DICOMweb
with httpx), stops it, and prints a table with ratios (> 1 = radcloud better).
Results go to bench/results/latest.{json,md} (``--quick``: quick.{json,md}).

Everything runs inside a private network namespace created for the run (only its own
loopback exists there, so nothing outside this machine can reach the servers, and
Orthanc's 0.0.0.0 listeners stay private); without root it falls back to
``unshare -rn``, and failing that to plain 127.0.0.1.

Examples:
  .venv/bin/python bench/run_all.py                   # full run, ~10-20 min
  .venv/bin/python bench/run_all.py --quick           # smoke run: 100 slices, 1 run
  .venv/bin/python bench/run_all.py --only qido,wado --skip-orthanc

Row groups for --only: store store4 stow qido metadata frame rendered wado move get
j2k jls (aliases: ingest = store,store4,stow; transcode = j2k,jls).
See bench/README.md for what each row measures and the caveats.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import data, measure, netns, report, servers  # noqa: E402
from harness.measure import Ctx, Result  # noqa: E402

BENCH = Path(__file__).resolve().parent
INNER_FLAG = netns.INNER_FLAG
MOVE_AET = "STORESCP"


def parse_args(argv: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--quick", action="store_true", help="smoke run: 100 slices, 1 run, 5 reps")
    ap.add_argument("--only", default="all", help="comma-separated row groups (default all)")
    ap.add_argument("--skip-orthanc", action="store_true", help="measure radcloud only")
    ap.add_argument("--skip-radcloud", action="store_true", help="measure Orthanc only")
    ap.add_argument("--slices", type=int, help="slices in the CT series (default 500; quick 100)")
    ap.add_argument("--runs", type=int, help="repeats of whole-series rows (default 3; quick 1)")
    ap.add_argument("--reps", type=int, help="repeats of latency rows (default 20; quick 5)")
    ap.add_argument("--small-studies", type=int, help="query studies (default 1000; quick 200)")
    ap.add_argument("--out", help="results file stem in bench/results (default latest / quick)")
    ap.add_argument("--workdir", help="parent of the temporary work folder (default $TMPDIR)")
    ap.add_argument(
        "--sequential",
        action="store_true",
        help="run one server at a time (default: both up, rows interleaved)",
    )
    ap.add_argument("--keep", action="store_true", help="keep the work folder (data, logs)")
    ap.add_argument(
        "--netns",
        choices=["auto", "ip", "unshare", "none"],
        default="auto",
        help="isolation: ip netns (root), unshare -rn, or none (plain loopback)",
    )
    ap.add_argument(INNER_FLAG, dest="inner", default="", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    q = a.quick
    a.slices = a.slices or (100 if q else 500)
    a.runs = a.runs or (1 if q else 3)
    a.reps = a.reps or (5 if q else 20)
    a.small_studies = a.small_studies or (200 if q else 1000)
    a.out = a.out or ("quick" if q else "latest")
    groups: list[str] = []
    for g in a.only.split(","):
        g = g.strip()
        if not g:
            continue
        for x in measure.ALIASES.get(g, [g]):
            if x not in measure.GROUPS:
                ap.error(f"unknown row group {x!r}; choose from {', '.join(measure.GROUPS)}")
            if x not in groups:
                groups.append(x)
    a.groups = groups
    return a


# ------------------------------------------------------------------------- the run
_interrupted = False


def _on_signal(signum: int, _frame: Any) -> None:
    global _interrupted
    # Further signals are ignored so that the clean-up in ``finally`` runs to its end.
    for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, signal.SIG_IGN)
    _interrupted = True
    raise KeyboardInterrupt


def _die_with_parent() -> None:
    """Linux: get SIGTERM if the outer process dies, so the clean-up still runs."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def inner(a: argparse.Namespace, network: str) -> int:
    for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, _on_signal)
    if a.inner:
        _die_with_parent()
    if network.startswith("unshare"):
        subprocess.run(["ip", "link", "set", "lo", "up"], check=False)
    env = dict(os.environ, TCP_NODELAY="1")
    os.environ["TCP_NODELAY"] = "1"
    os.environ["NO_PROXY"] = os.environ["no_proxy"] = "127.0.0.1,localhost"
    for k in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        os.environ.pop(k, None)
        env.pop(k, None)
    started = time.time()
    work = Path(tempfile.mkdtemp(prefix="radcloud-bench-", dir=a.workdir))
    defs = measure.row_defs(a.slices, a.small_studies)
    results: dict[str, dict[str, Result]] = {}
    problems: list[str] = []
    versions: dict[str, str] = {
        "dcmtk": servers.dcmtk_version(),
        "python": platform.python_version(),
    }
    print(f"work folder {work}; network: {network}; rows: {','.join(a.groups)}", flush=True)
    code = 0
    try:
        plan = make_data(a, work)
        scp = servers.start_storescp(work, MOVE_AET, env)
        measure_all(a, work, env, scp.dicom_port, plan, versions, problems, results)
        scp.stop()
    except KeyboardInterrupt:
        problems.append("interrupted (Ctrl-C / signal): results are partial")
        print("\ninterrupted; stopping servers", flush=True)
        code = 130
    finally:
        servers.shut_down(work, a.keep)
    meta = dict(
        started=dt.datetime.fromtimestamp(started).isoformat(timespec="seconds"),
        finished=dt.datetime.now().isoformat(timespec="seconds"),
        duration_s=round(time.time() - started),
        machine=f"{os.cpu_count()} cores, {_mem_gib():.0f} GiB, {platform.platform()}",
        mode=("quick smoke run" if a.quick else "full run")
        + (", servers one at a time" if a.sequential else ", rows interleaved between servers")
        + ("" if a.groups == measure.GROUPS else f", rows {','.join(a.groups)}"),
        network=network,
        params=f"{a.slices} slices, {a.runs} runs per whole-series row, {a.reps} reps per "
        f"latency row, {a.small_studies} query studies, TCP_NODELAY=1",
        versions=versions,
        problems=problems,
    )
    if results:
        js, md, text = report.write(BENCH / "results", a.out, defs, results, meta)
        print("\n" + text)
        for p in problems:
            print(f"problem: {p}")
        print(f"\nwrote {js.relative_to(BENCH.parent)} and {md.relative_to(BENCH.parent)}")
    return code


def _mem_gib() -> float:
    with open("/proc/meminfo") as fh:
        return int(fh.readline().split()[1]) / 2**20


def make_data(a: argparse.Namespace, work: Path) -> dict[str, Any]:
    """Everything both servers will be sent, made once before any server starts."""
    g = set(a.groups)
    plan: dict[str, Any] = {"ingest": {"store1": [], "store4": [], "stow": []}}
    counts = {
        "store1": a.runs if "store" in g else 0,
        "store4": a.runs if "store4" in g else 0,
        "stow": 2 * a.runs if "stow" in g else 0,
    }
    need_retrieve = bool(g & measure.NEEDS_SERIES) and not counts["store1"] + counts["store4"]
    t = time.perf_counter()
    if sum(counts.values()) or need_retrieve:
        base = data.make_base_series(work / "series" / "base", a.slices)
        took = time.perf_counter() - t
        print(f"generated the {a.slices}-slice CT series in {took:.1f} s", flush=True)
        i = 0
        for kind, n in counts.items():
            for _ in range(n):
                i += 1
                s = data.copy_with_new_uids(base, work / "series" / f"{kind}{i:02d}", f"{i:02d}")
                plan["ingest"][kind].append(s)
        plan["retrieve"] = base if need_retrieve else None
        print(f"  + {i} copies with fresh UIDs, {time.perf_counter() - t:.1f} s in all", flush=True)
    if "qido" in g:
        t = time.perf_counter()
        plan["small"] = data.make_small_studies(work / "small", a.small_studies)
        took = time.perf_counter() - t
        print(f"generated {a.small_studies} one-instance studies in {took:.1f} s", flush=True)
    return plan


def start_ctx(
    name: str,
    a: argparse.Namespace,
    work: Path,
    env: dict[str, str],
    move_port: int,
    plan: dict[str, Any],
    info: dict[str, str],
    problems: list[str],
    results: dict[str, Result],
) -> Ctx | None:
    """Start one server; its measuring context, or None (with the reason recorded)."""
    load = os.getloadavg()[0]
    info[f"load before {name}"] = f"{load:.2f} (1-min load average; 2 cores)"
    print(f"\n=== starting {name} (1-min load average {load:.2f})", flush=True)
    sdir = work / name
    if name == "radcloud":
        ok, why = servers.radcloud_serve_ready()
        if not ok:
            problems.append(f"radcloud serve is not available: {why[-300:]}")
            print(f"radcloud serve is not available:\n{why}", flush=True)
            for d in measure.row_defs(a.slices, a.small_studies):
                if d.group in a.groups or d.key == "rss_peak":
                    results[d.key] = Result(status="n/a", note="radcloud serve not available")
            return None

        def start() -> servers.Launched:
            return servers.start_radcloud(sdir, env, MOVE_AET, move_port)
    else:

        def start() -> servers.Launched:
            return servers.start_orthanc(sdir, env, MOVE_AET, move_port)

    try:
        srv = start()
    except (RuntimeError, OSError, subprocess.SubprocessError) as e:
        problems.append(f"{name} did not start: {e}")
        print(f"{name} did not start: {e}", flush=True)
        results["rss_peak"] = Result(status="failed", note="server did not start")
        return None
    if name == "radcloud":
        info["radcloud"] = _radcloud_version() + f" (git {srv.extra.get('git', '?')})"
        if srv.extra.get("ae_add", "").startswith("FAILED"):
            problems.append(f"radcloud ae add: {srv.extra['ae_add']}")
    else:
        info["orthanc"] = (
            f"{srv.version} + DICOMweb plugin {srv.extra.get('dicomweb_plugin', '?')}, "
            f"GDCM plugin {srv.extra.get('gdcm_plugin')}, stack {srv.extra.get('stack_limit')}"
        )
    print(f"{name} pid {srv.pid}: HTTP {srv.http_port}, DICOM {srv.dicom_port}", flush=True)
    ctx = Ctx(
        name=name,
        srv=srv,
        restart=start,
        env=env,
        runs=a.runs,
        reps=a.reps,
        slices=a.slices,
        move_aet=MOVE_AET,
        ingest_series=plan["ingest"],
        retrieve_series=plan.get("retrieve"),
        small=plan.get("small"),
        results=results,
    )
    if srv.extra.get("token"):  # radcloud: every HTTP request is signed in
        ctx.http.headers["Authorization"] = f"Bearer {srv.extra['token']}"
    return ctx


def finish_ctx(
    ctx: Ctx, a: argparse.Namespace, work: Path, info: dict[str, str], problems: list[str]
) -> None:
    """Record peak RSS and problems, stop the server, delete its storage."""
    name, srv, results = ctx.name, ctx.srv, ctx.results
    try:
        watch = srv.watch
        if watch is not None:
            peak = max(ctx.prev_peak, watch.peak, watch.hwm() if srv.alive() else 0)
            note = "summed over the process tree; VmHWM and 50 ms RSS samples"
            if ctx.prev_peak:
                note += "; includes the process that crashed"
            results["rss_peak"] = Result([peak / 2**20], note=note)
        crashes = [k for k, r in results.items() if r.status == "crash" or r.extra.get("crashes")]
        if crashes:
            problems.append(f"{name} crashed during: {', '.join(crashes)}")
        bad = [k for k, r in results.items() if r.status in ("failed", "wrong")]
        if bad:
            problems.append(f"{name}: rows failed or wrong: {', '.join(bad)}")
        info[f"load after {name}"] = f"{os.getloadavg()[0]:.2f}"
        log_errors = _log_errors(srv.log)
        if log_errors:
            problems.append(f"{name} log has {log_errors} error/traceback lines ({srv.log})")
        ctx.http.close()
    finally:
        servers.stop_all_named(name)
        if not a.keep:
            shutil.rmtree(work / name / "data", ignore_errors=True)
            shutil.rmtree(work / name / "storage", ignore_errors=True)


def measure_all(
    a: argparse.Namespace,
    work: Path,
    env: dict[str, str],
    move_port: int,
    plan: dict[str, Any],
    info: dict[str, str],
    problems: list[str],
    results: dict[str, dict[str, Result]],
) -> None:
    """Interleaved (default): both servers up, each row group measured on one, then the
    other, the order alternating, so that load from elsewhere on the machine hits both
    alike. ``--sequential``: one server at a time, the other one not running."""
    names = [n for n in ("radcloud", "orthanc") if not getattr(a, f"skip_{n}")]
    groups = [g for g in measure.GROUPS if g in a.groups]
    batches = [names] if not a.sequential else [[n] for n in names]
    for batch in batches:
        ctxs: list[Ctx] = []
        try:
            for name in batch:
                results[name] = {}  # filled as rows finish, so an interrupted run keeps them
                c = start_ctx(name, a, work, env, move_port, plan, info, problems, results[name])
                if c is not None:
                    ctxs.append(c)
            for i, g in enumerate(groups):
                for c in ctxs if i % 2 == 0 else ctxs[::-1]:
                    measure.run_group(c, g)
        finally:
            for c in ctxs:
                finish_ctx(c, a, work, info, problems)


def _log_errors(log: Path) -> int:
    try:
        text = log.read_text(errors="replace")
    except OSError:
        return 0
    pat = re.compile(r"Traceback|\bERROR\b|^E\d{4} ")  # Python logging / Orthanc's glog
    return sum(1 for line in text.splitlines() if pat.search(line))


def _radcloud_version() -> str:
    try:
        return metadata.version("radcloud")
    except metadata.PackageNotFoundError:
        return "?"


def main() -> int:
    argv = sys.argv[1:]
    a = parse_args(argv)
    if a.inner:
        return inner(a, a.inner)
    if not a.skip_orthanc:  # the peer is installed by the bench itself, not by hand
        subprocess.run(["bash", str(Path(__file__).with_name("setup"))], check=True)
    return netns.outer(__file__, argv, a, inner, "rcbench")


if __name__ == "__main__":
    sys.exit(main())
