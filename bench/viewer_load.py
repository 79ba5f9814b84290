#!/usr/bin/env python3
"""The web viewer's load times in a real browser: radcloud's viewer vs Orthanc's Web Viewer.

Draws a 500-slice 512x512 chest CT with the project's phantom, stores it by C-STORE
(``storescu`` with the bench's calling AE) into radcloud and into Debian's Orthanc (with
the ``orthanc-webviewer`` plugin when installed), then opens it in Debian Chromium driven
by playwright-core (``bench/js/viewer_load.mjs``), each run in a fresh browser context (a
cold page load), unthrottled and on a link throttled to 100 Mbit/s with CDP
``Network.emulateNetworkConditions``.  Measures time to first image, time until all
images are cached in the browser, the code transferred before the first image, and the
image bytes on the wire.  Prints a table with the design budgets beside the figures and
writes bench/results/viewer.{md,json}.

Runs in a private network namespace like run_all.py.  Not a test: no thresholds.

  .venv/bin/python bench/viewer_load.py                 # 3 runs per condition, ~5 min
  .venv/bin/python bench/viewer_load.py --runs 1 --skip-orthanc
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import netns, servers  # noqa: E402

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
JS = BENCH / "js" / "viewer_load.mjs"
INNER_FLAG = netns.INNER_FLAG
WEBVIEWER = servers.ORTHANC_PLUGIN_DIR / "libOrthancWebViewer.so"
#: 100 Mbit/s both ways, 2 ms added latency (CDP Network.emulateNetworkConditions)
THROTTLE = {"downloadThroughput": 12.5e6, "uploadThroughput": 12.5e6, "latency": 2}


def parse_args(argv: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--runs", type=int, default=3, help="cold page loads per condition (3)")
    ap.add_argument("--slices", type=int, default=500, help="slices in the CT (500)")
    ap.add_argument("--skip-orthanc", action="store_true", help="radcloud's viewer only")
    ap.add_argument("--out", default="viewer", help="results file stem in bench/results")
    ap.add_argument(
        "--compression",
        choices=["none", "jpeg-ls", "jpeg2000", "htj2k"],
        default="none",
        help="radcloud's lossless compression at rest (RADCLOUD_COMPRESSION; none)",
    )
    ap.add_argument(
        "--transfer",
        choices=["stored", "htj2k", "jpeg-ls"],
        default="stored",
        help="how the viewer asks for frames: as stored, or transcoded by the server (stored)",
    )
    ap.add_argument("--workdir", help="parent of the temporary work folder (default $TMPDIR)")
    ap.add_argument("--keep", action="store_true", help="keep the work folder")
    ap.add_argument("--netns", choices=["auto", "ip", "unshare", "none"], default="auto")
    ap.add_argument(INNER_FLAG, dest="inner", default="", help=argparse.SUPPRESS)
    return ap.parse_args(argv)


def _on_signal(signum: int, _frame: Any) -> None:
    for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, signal.SIG_IGN)
    raise KeyboardInterrupt


# ------------------------------------------------------------------------- data, servers
def make_series(out: Path, slices: int) -> tuple[str, str]:
    """The phantom chest CT as Part-10 files; (study UID, series UID)."""
    from radcloud.testing.phantom import chest_ct_series

    out.mkdir(parents=True, exist_ok=True)
    study = series = ""
    for i, ds in enumerate(
        chest_ct_series(
            slices,
            512,
            512,
            seed=3,
            patient_name="Viewer^Bench",
            patient_id="VIEWBENCH",
            accession_number="VB0001",
        )
    ):
        ds.save_as(out / f"CT{i + 1:04d}.dcm", enforce_file_format=True)
        study, series = str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID)
    return study, series


def start_orthanc_viewer(workdir: Path, env: dict[str, str]) -> servers.Launched:
    """Debian's Orthanc with the DICOMweb and Web Viewer plugins, own storage and cache."""
    http_port, dicom_port = servers.free_port(), servers.free_port()
    while dicom_port == http_port:
        dicom_port = servers.free_port()
    storage, cfg_dir = workdir / "storage", workdir / "config"
    storage.mkdir(parents=True, exist_ok=True)
    cfg_dir.mkdir(parents=True, exist_ok=True)
    plugins = [str(servers.ORTHANC_PLUGIN_DIR / "libOrthancDicomWeb.so"), str(WEBVIEWER)]
    config = {
        "Name": "RADCLOUD-VIEWER-BENCH",
        "StorageDirectory": str(storage),
        "IndexDirectory": str(storage),
        "StorageCompression": False,
        "Plugins": plugins,
        "HttpPort": http_port,
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": False,
        "DicomServerEnabled": True,
        "DicomAet": "ORTHANC",
        "DicomPort": dicom_port,
        "DicomCheckCalledAet": False,
        "DicomAlwaysAllowStore": True,
        "StableAge": 5,
        "SaveJobs": False,
        "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
        # the plugin's server-side cache of decoded/compressed images (100 MB by default)
        "WebViewer": {"CachePath": str(workdir / "webviewer-cache"), "CacheSize": 1000},
    }
    (cfg_dir / "orthanc.json").write_text(json.dumps(config, indent=1))
    log = workdir / "orthanc.log"
    srv = servers._spawn(
        "orthanc",
        [servers.ORTHANC_BIN, f"--logfile={log}", str(cfg_dir)],
        env,
        workdir / "orthanc.stdout",
        http_port=http_port,
        dicom_port=dicom_port,
        aet="ORTHANC",
    )
    srv.log = log
    servers._wait_ready(srv, f"http://127.0.0.1:{http_port}/system", 60)
    srv.version = servers.orthanc_version()
    return srv


def c_store(srv: servers.Launched, folder: Path, env: dict[str, str]) -> float:
    t = time.perf_counter()
    cmd = ["storescu", "-aet", servers.BENCH_SCU, "-aec", srv.aet, "+sd", "+r"]
    cmd += ["127.0.0.1", str(srv.dicom_port), str(folder)]
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    if p.returncode != 0:
        raise RuntimeError(f"storescu to {srv.name} failed: {(p.stdout + p.stderr)[-600:]}")
    return time.perf_counter() - t


def radcloud_count(srv: servers.Launched, study: str) -> int:
    r = httpx.get(
        f"http://127.0.0.1:{srv.http_port}/dicom-web/studies",
        params={"StudyInstanceUID": study, "includefield": "00201208"},
        headers={
            "Authorization": f"Bearer {srv.extra.get('token', '')}",
            "Accept": "application/dicom+json",
        },
        timeout=30,
    )
    r.raise_for_status()
    hits = r.json()
    return int(hits[0]["00201208"]["Value"][0]) if hits else 0


def orthanc_series(srv: servers.Launched, series_uid: str) -> tuple[str, int]:
    base = f"http://127.0.0.1:{srv.http_port}"
    hits = httpx.post(f"{base}/tools/lookup", content=series_uid, timeout=30).json()
    sid = next(h["ID"] for h in hits if h["Type"] == "Series")
    return sid, len(httpx.get(f"{base}/series/{sid}", timeout=30).json()["Instances"])


# ------------------------------------------------------------------------- rows
#: key, label, unit, budget, how a row is read from one run's figures
ROWS: list[tuple[str, str, str, str]] = [
    ("first_fast", "first image, unthrottled", "ms", "≤ 500 ms"),
    ("first_slow", "first image, 100 Mbit/s", "ms", "≤ 500 ms"),
    ("lossless_fast", "first lossless image, unthrottled", "ms", ""),
    ("lossless_slow", "first lossless image, 100 Mbit/s", "ms", ""),
    ("all_fast", "all images cached, unthrottled", "s", ""),
    ("all_slow", "all images cached, 100 Mbit/s", "s", "≤ 3 s"),
    ("tti_slow", "viewer ready (interactive), 100 Mbit/s", "ms", ""),
    ("bundle", "code before first image (cold)", "kB", ""),
    ("bundle_lossless", "code before first lossless image (cold)", "kB", ""),
    ("startup", "all bytes before first image (cold)", "kB", ""),
    ("imgbytes", "image bytes on the wire, whole series", "MB", ""),
    ("wire_slow", "image throughput, 100 Mbit/s", "MB/s", "(link 12.5)"),
    ("longtasks", "main-thread long tasks until all cached", "ms", ""),
]


def row_values(key: str, runs: list[dict[str, Any]]) -> list[float]:
    fast = [r for r in runs if not r.get("throttled") and "error" not in r]
    slow = [r for r in runs if r.get("throttled") and "error" not in r]
    pick = {
        "first_fast": (fast, lambda r: r["firstImageMs"]),
        "first_slow": (slow, lambda r: r["firstImageMs"]),
        "all_fast": (fast, lambda r: r["allCachedMs"] / 1000),
        "all_slow": (slow, lambda r: r["allCachedMs"] / 1000),
        "lossless_fast": (fast, lambda r: r.get("losslessMs", r["firstImageMs"])),
        "lossless_slow": (slow, lambda r: r.get("losslessMs", r["firstImageMs"])),
        "tti_slow": (slow, lambda r: r["interactiveMs"]),
        "bundle": (fast, lambda r: r["bundleBytes"] / 1000),
        "bundle_lossless": (fast, lambda r: r.get("bundleLosslessBytes", r["bundleBytes"]) / 1000),
        "startup": (fast, lambda r: r["startupBytes"] / 1000),
        "imgbytes": (fast, lambda r: r["imageBytes"] / 1e6),
        "wire_slow": (slow, lambda r: r["imagesWireMBps"]),
        "longtasks": (fast, lambda r: r["longTasks"]["totalMs"]),
    }[key]
    return [float(pick[1](r)) for r in pick[0]]


def fmt(v: float | None, unit: str) -> str:
    if v is None:
        return "–"
    if unit == "s":
        return f"{v:.2f}"
    if unit in ("MB", "MB/s"):
        return f"{v:.1f}"
    return f"{v:.0f}"


def build_table(results: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    table = []
    for key, label, unit, budget in ROWS:
        med: dict[str, float | None] = {}
        samples: dict[str, list[float]] = {}
        for srv, runs in results.items():
            vals = row_values(key, runs)
            samples[srv] = vals
            med[srv] = statistics.median(vals) if vals else None
        rc, orth = med.get("radcloud"), med.get("orthanc")
        ratio = ""
        if rc and orth and key != "wire_slow":  # throughput: a check of the throttle only
            ratio = f"{orth / rc:.2f}"
        table.append(
            dict(
                key=key,
                label=label,
                unit=unit,
                budget=budget,
                ratio=ratio,
                radcloud=fmt(rc, unit),
                orthanc=fmt(orth, unit) if "orthanc" in results else "n/a",
                samples=samples,
            )
        )
    return table


def console(table: list[dict[str, Any]]) -> str:
    w = max(len(r["label"]) for r in table)
    head = f"{'row':{w}s}  {'unit':5s} {'radcloud':>10s} {'Orthanc':>10s} {'ratio':>7s}  budget"
    lines = [head, "-" * len(head)]
    for r in table:
        lines.append(
            f"{r['label']:{w}s}  {r['unit']:5s} {r['radcloud']:>10s} {r['orthanc']:>10s}"
            f" {r['ratio']:>7s}  {r['budget']}"
        )
    lines.append("medians of the runs; ratio > 1: radcloud better (time, bytes: Orthanc/radcloud)")
    return "\n".join(lines)


def notes_for(results: dict[str, list[dict[str, Any]]]) -> list[str]:
    out = []
    for srv, runs in results.items():
        ok = [r for r in runs if "error" not in r]
        if not ok:
            continue
        r0 = ok[0]
        slow = [r for r in ok if r["throttled"]]
        out.append(
            f"{srv}: image requests seen by the page's own CDP target {r0['imageRequests']} "
            f"(types {', '.join(map(str, r0['imageRequestTypes']))}), seen by playwright "
            f"(page + workers) {r0['imageRequestsPlaywright']}; workers: "
            f"{', '.join(sorted(set(r0['workers']))) or 'none'}"
        )
        out.append(
            f"{srv}: all-cached signal: {r0.get('cacheSignal')}; images cached "
            f"{sorted({int(r.get('cachedImages') or 0) for r in ok})}; HTTP status of image "
            f"responses {r0['imageStatus']}"
        )
        out.append(
            f"{srv}: canvas at first image: {r0['canvas']['lit']} lit samples, "
            f"{r0['canvas']['levels']} grey levels ({r0['canvas']['w']}×{r0['canvas']['h']})"
        )
        files = ", ".join(f"{p.rsplit('/', 1)[-1]} {b / 1000:.0f} kB" for p, b in r0["bundleFiles"])
        out.append(
            f"{srv}: code before first image: {files}; code fetched later "
            f"{r0['laterCodeBytes'] / 1000:.0f} kB"
        )
        if srv == "radcloud":
            mods = [r["viewerModuleToFirstImageMs"] for r in ok]
            out.append(
                f"radcloud: viewer module start → first lossless image (its own firstImageMs): "
                f"{', '.join(str(m) for m in mods)} ms"
            )
            out.append(
                "radcloud: first image = the marked preview (server-rendered JPEG) when one "
                "showed, else the lossless image; runs (preview / lossless / ready, ms): "
                + "; ".join(
                    f"{r.get('previewMs')} / {r.get('losslessMs')} / {r.get('readyMs')}"
                    f" (steps {r.get('loadSteps')})"
                    for r in ok
                )
            )
        for r in ok:
            lt = r["longTasks"]
            out.append(
                f"{srv} {'100 Mbit/s' if r['throttled'] else 'unthrottled'} run {r['run']}: "
                f"first {r['firstImageMs']:.0f} ms, all {r['allCachedMs'] / 1000:.2f} s, DCL "
                f"{(r['domContentLoadedMs'] or 0):.0f} ms, "
                f"images {r['imageBytes'] / 1e6:.1f} MB in "
                f"{r['imagesWireS']:.2f} s ({r['imagesWireMBps']:.1f} MB/s), long tasks "
                f"{lt['count']} / {lt['totalMs']:.0f} ms (max {lt['maxMs']:.0f})"
            )
        if slow:
            top = max(r["imagesWireMBps"] for r in slow)
            out.append(
                f"{srv}: throttle check: fastest image throughput under the 12.5 MB/s "
                f"throttle {top:.1f} MB/s"
            )
    return out


def markdown(table: list[dict[str, Any]], meta: dict[str, Any], notes: list[str]) -> str:
    out = ["# Viewer load: radcloud's viewer vs Orthanc Web Viewer", ""]
    out.append(f"Run {meta['finished']} on {meta['machine']}; {meta['params']}.")
    out.append("")
    for k, v in meta["versions"].items():
        out.append(f"- {k}: {v}")
    out.append(f"- network: {meta['network']}")
    out += ["", "Medians of cold page loads (fresh browser context each). Ratio > 1 means"]
    out.append("radcloud is better (times and bytes: Orthanc ÷ radcloud; throughput radcloud ÷")
    out.append("Orthanc). `bench/README.md` (Viewer load) explains each row.")
    out += [
        "",
        "| row | unit | radcloud | Orthanc | ratio | budget |",
        "|---|---|---:|---:|---:|---|",
    ]
    for r in table:
        cells = [r["label"], r["unit"], r["radcloud"], r["orthanc"], r["ratio"], r["budget"]]
        out.append("| " + " | ".join(cells) + " |")
    out += ["", "## Notes", ""] + [f"- {n}" for n in notes]
    if meta["problems"]:
        out += ["", "## Problems during the run", ""] + [f"- {p}" for p in meta["problems"]]
    return "\n".join(out) + "\n"


# ------------------------------------------------------------------------- the run
def inner(a: argparse.Namespace, network: str) -> int:
    for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, _on_signal)
    if network.startswith("unshare"):
        subprocess.run(["ip", "link", "set", "lo", "up"], check=False)
    env = dict(os.environ, TCP_NODELAY="1")
    for k in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        os.environ.pop(k, None)
        env.pop(k, None)
    os.environ["NO_PROXY"] = os.environ["no_proxy"] = env["NO_PROXY"] = "127.0.0.1,localhost"
    started = time.time()
    work = Path(tempfile.mkdtemp(prefix="radcloud-viewer-bench-", dir=a.workdir))
    problems: list[str] = []
    versions: dict[str, str] = {"python": platform.python_version()}
    results: dict[str, list[dict[str, Any]]] = {}
    use_orthanc = not a.skip_orthanc
    if use_orthanc and not WEBVIEWER.exists():
        problems.append("orthanc-webviewer is not installed: radcloud figures only")
        use_orthanc = False
    print(f"work folder {work}; network: {network}", flush=True)
    code = 0
    try:
        t = time.perf_counter()
        study, series = make_series(work / "series", a.slices)
        print(f"phantom: {a.slices} slices in {time.perf_counter() - t:.1f} s", flush=True)
        dummy = servers.free_port()  # no C-MOVE here; start_radcloud wants a destination
        rc_env = dict(env)
        if a.compression != "none":
            rc_env["RADCLOUD_COMPRESSION"] = a.compression
        versions["radcloud settings"] = f"compression at rest {a.compression}, frames {a.transfer}"
        rc = servers.start_radcloud(work / "radcloud", rc_env, "STORESCP", dummy)
        versions["radcloud"] = f"{rc.version} (git {rc.extra.get('git', '?')})"
        print(
            f"radcloud up: HTTP {rc.http_port}; C-STORE {c_store(rc, work / 'series', env):.1f} s",
            flush=True,
        )
        n = radcloud_count(rc, study)
        if n != a.slices:
            problems.append(f"radcloud lists {n} instances, expected {a.slices}")
        base = f"http://127.0.0.1:{rc.http_port}"
        targets: list[dict[str, Any]] = [
            dict(
                name="radcloud",
                kind="radcloud",
                base=base,
                url=f"{base}/viewer?study={study}"
                + (f"&transfer={a.transfer}" if a.transfer != "stored" else ""),
                login={"username": "admin", "password": "bench-admin-password-1"},
                slices=a.slices,
            )
        ]
        if use_orthanc:
            orth = start_orthanc_viewer(work / "orthanc", env)
            versions["orthanc"] = f"{orth.version} + Web Viewer plugin " + _deb("orthanc-webviewer")
            took = c_store(orth, work / "series", env)
            sid, n = orthanc_series(orth, series)
            print(
                f"Orthanc up: HTTP {orth.http_port}; C-STORE {took:.1f} s; series {sid}", flush=True
            )
            if n != a.slices:
                problems.append(f"Orthanc lists {n} instances, expected {a.slices}")
            obase = f"http://127.0.0.1:{orth.http_port}"
            targets.append(
                dict(
                    name="orthanc",
                    kind="orthanc",
                    base=obase,
                    series=sid,
                    slices=a.slices,
                    url=f"{obase}/web-viewer/app/viewer.html?series={sid}",
                )
            )
        cfg = dict(runs=a.runs, throttle=THROTTLE, targets=targets)
        cfg_path = work / "viewer-config.json"
        cfg_path.write_text(json.dumps(cfg))
        print(f"browser: {a.runs} cold loads per server and link", flush=True)
        p = subprocess.run(
            ["node", str(JS), str(cfg_path)],
            env=env,
            stdout=subprocess.PIPE,
            text=True,
            timeout=1800,
        )
        if p.returncode != 0 or not p.stdout.strip():
            raise RuntimeError(f"node {JS.name} exited {p.returncode}")
        doc = json.loads(p.stdout.strip().splitlines()[-1])
        versions["chromium"] = doc.get("chromium", "?")
        problems += doc.get("problems", [])
        for r in doc["results"]:
            results.setdefault(r["server"], []).append(r)
    except KeyboardInterrupt:
        problems.append("interrupted: results are partial")
        code = 130
    except (RuntimeError, OSError, subprocess.SubprocessError, httpx.HTTPError) as e:
        problems.append(f"failed: {e}")
        print(f"failed: {e}", flush=True)
        code = 1
    finally:
        servers.shut_down(work, a.keep)
    if not results:
        for p_ in problems:
            print(f"problem: {p_}")
        return code or 1
    table = build_table(results)
    notes = notes_for(results)
    meta = dict(
        started=dt.datetime.fromtimestamp(started).isoformat(timespec="seconds"),
        finished=dt.datetime.now().isoformat(timespec="seconds"),
        duration_s=round(time.time() - started),
        machine=f"{os.cpu_count()} cores, {platform.platform()}",
        params=f"{a.slices} slices 512×512 (radcloud.testing.phantom), {a.runs} cold loads per "
        f"server and link, throttle {THROTTLE}",
        network=network,
        versions=versions,
        problems=problems,
    )
    out = BENCH / "results"
    out.mkdir(parents=True, exist_ok=True)
    js, md = out / f"{a.out}.json", out / f"{a.out}.md"
    js.write_text(json.dumps(dict(meta=meta, table=table, notes=notes, runs=results), indent=1))
    md.write_text(markdown(table, meta, notes))
    print("\n" + console(table))
    for p_ in problems:
        print(f"problem: {p_}")
    print(f"\nwrote {js.relative_to(REPO)} and {md.relative_to(REPO)}")
    return code


def _deb(pkg: str) -> str:
    p = subprocess.run(["dpkg-query", "-W", "-f=${Version}", pkg], capture_output=True, text=True)
    return p.stdout.strip() or "?"


def main() -> int:
    argv = sys.argv[1:]
    a = parse_args(argv)
    if a.inner:
        return inner(a, a.inner)
    if not a.skip_orthanc:  # the peer (with its web viewer) is installed by the bench itself
        subprocess.run(["bash", str(BENCH / "setup")], check=True)
    return netns.outer(__file__, argv, a, inner, "rcview")


if __name__ == "__main__":
    sys.exit(main())
