"""The measured rows, identical for every server.

DIMSE rows drive DCMTK's command-line tools (``storescu``, ``movescu``, ``getscu``) with
``TCP_NODELAY=1`` in their environment; DICOMweb rows use one ``httpx`` client with
``Accept-Encoding: identity``.  Every row checks what it got (instance counts, number of
multipart parts, hit counts, returned transfer syntax) and records a wrong answer as such
instead of timing it as if it were right.  A server that dies under a request is recorded
as ``crash``, restarted, and the run goes on.
"""

from __future__ import annotations

import functools
import io
import re
import statistics
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from pydicom import dcmread

from .data import Series, SmallStudies
from .servers import Launched

MY_AET = "BENCHSCU"
J2K_LOSSLESS = "1.2.840.10008.1.2.4.90"
JLS_LOSSLESS = "1.2.840.10008.1.2.4.80"
DICOM_JSON = {"Accept": "application/dicom+json"}


# ------------------------------------------------------------------------- rows
@dataclass(frozen=True)
class RowDef:
    key: str
    label: str
    unit: str
    better: str  # "higher" or "lower"
    group: str


def row_defs(slices: int, small: int) -> list[RowDef]:
    """Every row of the table, in print order; ``group`` is what ``--only`` selects."""
    s, hi, lo = f"{slices}-slice series", "higher", "lower"
    st1, st4 = f"C-STORE {s}, storescu, 1 association", f"C-STORE {s}, 4 parallel storescu"
    rows = [
        ("store1_ips", st1, "img/s", hi, "store"),
        ("store1_mbs", st1, "MB/s", hi, "store"),
        ("store1_cpu", "  server CPU time per series (C-STORE, 1 assoc.)", "s", lo, "store"),
        ("store4_ips", st4, "img/s", hi, "store4"),
        ("store4_mbs", st4, "MB/s", hi, "store4"),
        ("stow1_ips", f"STOW-RS {s}, 50 files/request, 1 in flight", "img/s", hi, "stow"),
        ("stow4_ips", f"STOW-RS {s}, 50 files/request, 4 in flight", "img/s", hi, "stow"),
        ("small_ips", f"C-STORE {small} one-instance studies, 1 association", "img/s", hi, "qido"),
        ("qido_pid", f"QIDO /studies?PatientID= exact ({small} studies)", "ms", lo, "qido"),
        ("qido_date", "QIDO /studies?StudyDate= 30-day range", "ms", lo, "qido"),
        ("qido_name", "QIDO /studies?PatientName=ZHANG* wildcard", "ms", lo, "qido"),
        ("metadata", f"series metadata ({slices} instances)", "ms", lo, "metadata"),
        ("frame", "first frame: /frames/1 of instance 1", "ms", lo, "frame"),
        ("rendered", "first frame: /rendered image/jpeg of instance 1", "ms", lo, "rendered"),
        ("wado_first", "WADO-RS whole series: time to first part", "ms", lo, "wado"),
        ("wado_all", "WADO-RS whole series: time to all bytes", "s", lo, "wado"),
        ("move", "C-MOVE series to storescp (movescu)", "s", lo, "move"),
        ("get", "C-GET series (getscu --ignore)", "s", lo, "get"),
        ("j2k", "WADO-RS series transcoded to JPEG 2000 lossless", "s", lo, "j2k"),
        ("jls", "WADO-RS series transcoded to JPEG-LS lossless", "s", lo, "jls"),
        ("rss_peak", "server peak RSS over the whole run", "MiB", lo, "rss"),
    ]
    return [RowDef(*r) for r in rows]


GROUPS = ["store", "store4", "stow", "qido", "metadata", "frame", "rendered", "wado"]
GROUPS += ["move", "get", "j2k", "jls"]
ALIASES = {"transcode": ["j2k", "jls"], "ingest": ["store", "store4", "stow"], "all": GROUPS}
NEEDS_SERIES = {"metadata", "frame", "rendered", "wado", "move", "get", "j2k", "jls"}
INGEST_GROUPS = {"store": "store1", "store4": "store4", "stow": "stow"}


@dataclass
class Result:
    values: list[float] = field(default_factory=list)
    status: str = "ok"  # ok | failed | crash | wrong | skipped
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def median(self) -> float | None:
        return statistics.median(self.values) if self.values and self.status == "ok" else None

    def as_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = dict(status=self.status, note=self.note, n=len(self.values))
        if self.values:
            d.update(median=statistics.median(self.values), min=min(self.values))
            d.update(max=max(self.values), values=[round(v, 6) for v in self.values])
        if self.extra:
            d["extra"] = self.extra
        return d


class RowFailed(Exception):
    """A row could not be measured; ``status`` says how (failed / wrong / crash)."""

    def __init__(self, status: str, note: str) -> None:
        super().__init__(note)
        self.status, self.note = status, note


# ------------------------------------------------------------------------- context
@dataclass
class Ctx:
    name: str  # "radcloud" or "orthanc"
    srv: Launched
    restart: Callable[[], Launched]
    env: dict[str, str]
    runs: int
    reps: int
    slices: int
    move_aet: str
    ingest_series: dict[str, list[Series]]
    retrieve_series: Series | None
    small: SmallStudies | None
    results: dict[str, Result] = field(default_factory=dict)
    http: httpx.Client = field(
        default_factory=lambda: httpx.Client(
            timeout=httpx.Timeout(600.0, connect=10.0),
            headers={"Accept-Encoding": "identity"},
            limits=httpx.Limits(max_connections=16, max_keepalive_connections=16),
        )
    )
    stored: Series | None = None  # the series the retrieval rows read
    dead_note: str = ""
    budget: float = 240.0  # a whole-series row stops repeating once it has spent this long
    prev_peak: int = 0  # peak RSS of server processes that died and were restarted

    @property
    def web(self) -> str:
        return self.srv.dicomweb

    def log(self, msg: str) -> None:
        print(f"  [{self.name}] {msg}", flush=True)

    def set(self, key: str, res: Result) -> None:
        self.results[key] = res
        med = res.median
        fig = f"median {med:.4g}" if med is not None else res.status.upper()
        vals = ", ".join(f"{v:.4g}" for v in res.values[:8])
        self.log(f"{key:12s} {fig}  [{vals}]  {res.note}")

    def ensure_alive(self, grace: float = 0.0) -> bool:
        """Restart the server if it died (or dies within ``grace`` s); True if it had died."""
        deadline = time.monotonic() + grace
        while self.srv.alive() and time.monotonic() < deadline:
            time.sleep(0.1)
        if self.srv.alive():
            return False
        self.dead_note = f"exit code {self.srv.proc.returncode}"
        if self.srv.watch:
            self.prev_peak = max(self.prev_peak, self.srv.watch.peak)
        self.log(f"server died ({self.dead_note}); restarting it on the same storage")
        self.srv.stop()
        self.srv = self.restart()
        self.log(f"restarted (pid {self.srv.pid})")
        return True

    def over_budget(self, t0: float, res: Result) -> bool:
        """True (and a note) when a repeated row has used up its time; keeps one run at least."""
        spent = time.perf_counter() - t0
        if res.values and spent > self.budget and len(res.values) < self.runs:
            res.note = (
                f"only {len(res.values)} of {self.runs} runs ({spent:.0f} s spent); " + res.note
            )
            return True
        return False

    def series_accept(self, ts: str | None = None) -> str:
        base = 'multipart/related; type="application/dicom"'
        if ts:
            return f"{base}; transfer-syntax={ts}"
        return base + ("; transfer-syntax=*" if self.name == "radcloud" else "")

    def frame_accept(self) -> str:
        base = 'multipart/related; type="application/octet-stream"'
        return base + ("; transfer-syntax=*" if self.name == "radcloud" else "")


# ------------------------------------------------------------------------- helpers
def run(cmd: list[str], env: dict[str, str], timeout: float = 900) -> tuple[float, int, str]:
    """Whole-process wall time, exit code and combined output of a command."""
    t = time.perf_counter()
    p = subprocess.run(
        cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=timeout
    )
    return time.perf_counter() - t, p.returncode, p.stdout


def storescu_cmd(ctx: Ctx, paths: list[Path], scan_dir: bool = False) -> list[str]:
    cmd = ["storescu", "-aet", MY_AET, "-aec", ctx.srv.aet]
    if scan_dir:
        cmd += ["+sd", "+r"]
    return cmd + ["127.0.0.1", str(ctx.srv.dicom_port)] + [str(p) for p in paths]


def check_storescu(rc: int, out: str) -> None:
    if rc != 0 or re.search(r"Store (SCU )?Failed|Association Rejected|Association Abort", out):
        raise RowFailed("failed", f"storescu rc={rc}: {_last(out)}")


def _last(text: str, n: int = 240) -> str:
    text = " ".join(text.split())
    return text[-n:]


def count_instances(ctx: Ctx, s: Series, wait: float = 5.0) -> int:
    """Instances of ``s`` the server lists through QIDO (waits briefly for late indexing)."""
    deadline = time.monotonic() + wait
    n = -1
    while True:
        r = ctx.http.get(
            f"{ctx.web}/studies/{s.study_uid}/series/{s.series_uid}/instances", headers=DICOM_JSON
        )
        n = len(r.json()) if r.status_code == 200 and r.content else 0
        if n >= len(s.files) or time.monotonic() > deadline:
            return n
        time.sleep(0.2)


def verify_stored(ctx: Ctx, s: Series) -> None:
    n = count_instances(ctx, s)
    if n != len(s.files):
        raise RowFailed("wrong", f"server lists {n} of {len(s.files)} instances after ingest")


def timed_get(ctx: Ctx, url: str, headers: dict[str, str]) -> tuple[float, httpx.Response]:
    t = time.perf_counter()
    r = ctx.http.get(url, headers=headers)
    _ = r.content
    return time.perf_counter() - t, r


def guarded(ctx: Ctx, keys: list[str], fn: Callable[[], None]) -> None:
    """Run one row function; turn errors and crashes into recorded results for ``keys``."""
    try:
        fn()
    except RowFailed as e:
        for k in keys:
            if k not in ctx.results:
                ctx.set(k, Result(status=e.status, note=e.note))
    except (httpx.HTTPError, OSError, subprocess.TimeoutExpired, ValueError, KeyError) as e:
        crashed = ctx.ensure_alive(grace=5.0)  # a segfaulting server takes a moment to go
        status = "crash" if crashed else "failed"
        note = f"server crashed ({ctx.dead_note})" if crashed else f"{type(e).__name__}: {e}"
        for k in keys:
            if k not in ctx.results:
                ctx.set(k, Result(status=status, note=_last(note, 300)))
    if ctx.ensure_alive():
        for k in keys:
            r = ctx.results.get(k)
            if r is not None and r.status == "ok":
                r.note = (r.note + "; " if r.note else "") + "server crashed right after"


# ------------------------------------------------------------------------- ingest
def row_store(ctx: Ctx) -> None:
    series = ctx.ingest_series["store1"]
    ips, mbs, cpu, rss = Result(), Result(), Result(), []
    assert ctx.srv.watch is not None
    for i, s in enumerate(series[: ctx.runs]):
        with ctx.srv.watch.window() as w:
            dt, rc, out = run(storescu_cmd(ctx, [s.directory], scan_dir=True), ctx.env)
        check_storescu(rc, out)
        verify_stored(ctx, s)
        ips.values.append(len(s.files) / dt)
        mbs.values.append(s.nbytes / dt / 1e6)
        cpu.values.append(w.cpu)
        rss.append(w.peak / 2**20)
        if ctx.stored is None:
            ctx.stored = s
        ctx.log(f"C-STORE run {i + 1}: {dt:.2f} s")
    mbs.note = f"{series[0].nbytes / 1e6:.1f} MB/series"
    cpu.note = f"peak RSS during C-STORE {max(rss):.0f} MiB"
    cpu.extra = {"peak_rss_mib": rss}
    ctx.set("store1_ips", ips)
    ctx.set("store1_mbs", mbs)
    ctx.set("store1_cpu", cpu)


def row_store4(ctx: Ctx) -> None:
    ips, mbs = Result(), Result()
    for s in ctx.ingest_series["store4"][: ctx.runs]:
        procs = []
        t = time.perf_counter()
        try:
            for chunk in s.chunks(4):
                procs.append(
                    subprocess.Popen(
                        storescu_cmd(ctx, chunk),
                        env=ctx.env,
                        stdout=subprocess.PIPE,
                        stderr=subprocess.STDOUT,
                        text=True,
                    )
                )
            outs = [(p.communicate(timeout=900)[0], p.returncode) for p in procs]
        finally:
            for p in procs:
                if p.poll() is None:
                    p.kill()
                    p.wait()
        dt = time.perf_counter() - t
        for out, rc in outs:
            check_storescu(rc, out)
        verify_stored(ctx, s)
        ips.values.append(len(s.files) / dt)
        mbs.values.append(s.nbytes / dt / 1e6)
        if ctx.stored is None:
            ctx.stored = s
    ctx.set("store4_ips", ips)
    ctx.set("store4_mbs", mbs)


def stow_bodies(s: Series, batch: int) -> tuple[list[bytes], str]:
    bnd = uuid.uuid4().hex
    bodies = []
    for j in range(0, len(s.files), batch):
        parts = [
            b"--" + bnd.encode() + b"\r\nContent-Type: application/dicom\r\n\r\n" + f.read_bytes()
            for f in s.files[j : j + batch]
        ]
        bodies.append(b"\r\n".join(parts) + b"\r\n--" + bnd.encode() + b"--\r\n")
    return bodies, f'multipart/related; type="application/dicom"; boundary={bnd}'


def _stow_post(ctx: Ctx, ctype: str, errors: list[str], body: bytes) -> None:
    r = ctx.http.post(
        f"{ctx.web}/studies",
        content=body,
        headers={"Content-Type": ctype, "Accept": "application/dicom+json"},
    )
    if r.status_code not in (200, 202):
        errors.append(f"HTTP {r.status_code}: {r.text[:200]}")
        return
    failed = r.json().get("00081198", {}).get("Value") if r.content else None
    if failed:
        errors.append(f"{len(failed)} instances in FailedSOPSequence")


def row_stow(ctx: Ctx) -> None:
    series = ctx.ingest_series["stow"]
    for conc, key in ((1, "stow1_ips"), (4, "stow4_ips")):
        res = Result()
        chosen = series[: ctx.runs] if conc == 1 else series[ctx.runs : 2 * ctx.runs]
        assert ctx.srv.watch is not None
        peaks = []
        for s in chosen:
            bodies, ctype = stow_bodies(s, 50)
            errors: list[str] = []
            send = functools.partial(_stow_post, ctx, ctype, errors)
            with ctx.srv.watch.window() as w:
                t = time.perf_counter()
                with ThreadPoolExecutor(conc) as ex:
                    list(ex.map(send, bodies))
                dt = time.perf_counter() - t
            if errors:
                raise RowFailed("failed", f"STOW-RS: {errors[0]}")
            verify_stored(ctx, s)
            res.values.append(len(s.files) / dt)
            peaks.append(w.peak / 2**20)
        res.note = f"peak RSS {max(peaks):.0f} MiB"
        res.extra = {"peak_rss_mib": peaks}
        ctx.set(key, res)


# ------------------------------------------------------------------------- query
def qido_queries(small: SmallStudies) -> list[tuple[str, str, str]]:
    pid = f"QIDO{7 % small.patients:04d}"
    return [
        ("qido_pid", "PatientID", pid),
        ("qido_date", "StudyDate", "20240201-20240301"),
        ("qido_name", "PatientName", "ZHANG*"),
    ]


def row_qido(ctx: Ctx) -> None:
    small = ctx.small
    assert small is not None
    dt, rc, out = run(storescu_cmd(ctx, [small.directory], scan_dir=True), ctx.env)
    check_storescu(rc, out)
    r = ctx.http.get(f"{ctx.web}/studies?PatientID=QIDO*&limit=100000", headers=DICOM_JSON)
    held = len(r.json()) if r.status_code == 200 and r.content else 0
    load = Result([small.count / dt], note=f"{dt:.2f} s; server lists {held} studies QIDO*")
    if held < small.count:
        load.status = "wrong"
    ctx.set("small_ips", load)
    for key, attr, value in qido_queries(small):
        want = small.expected(attr, value)
        res = Result()
        url = f"{ctx.web}/studies?{attr}={value}"
        got = -1
        for i in range(ctx.reps + 1):
            dt, r = timed_get(ctx, url, DICOM_JSON)
            if r.status_code not in (200, 204):
                raise RowFailed("failed", f"{attr}: HTTP {r.status_code}: {r.text[:200]}")
            got = len(r.json()) if r.content else 0
            if i:  # the first request warms up
                res.values.append(dt * 1e3)
        res.note = f"{got} hits"
        if got != want:
            res.status, res.note = "wrong", f"{got} hits, expected {want}"
        ctx.set(key, res)


# ------------------------------------------------------------------------- retrieve
def _timed_gets(
    ctx: Ctx, url: str, headers: dict[str, str], check: Callable[[Any], None]
) -> tuple[Result, float, Any]:
    """``ctx.reps`` timed GETs after one cold one: (warm ms, cold s, last response).

    ``check(response)`` raises :class:`RowFailed` when an answer is wrong.
    """
    res, first, r = Result(), 0.0, None
    for i in range(ctx.reps + 1):
        dt, r = timed_get(ctx, url, headers)
        if r.status_code != 200:
            raise RowFailed("failed", f"HTTP {r.status_code}: {r.text[:200]}")
        check(r)
        if i == 0:
            first = dt
        else:
            res.values.append(dt * 1e3)
    return res, first, r


def row_metadata(ctx: Ctx) -> None:
    s = ctx.stored
    assert s is not None
    url = f"{ctx.web}/studies/{s.study_uid}/series/{s.series_uid}/metadata"

    def check(r: Any) -> None:
        n = len(r.json())
        if n != len(s.files):
            raise RowFailed("wrong", f"{n} instances in metadata, expected {len(s.files)}")

    res, first, r = _timed_gets(ctx, url, DICOM_JSON, check)
    res.note = f"first (cold) {first * 1e3:.0f} ms; {len(r.content) / 1e6:.1f} MB JSON"
    ctx.set("metadata", res)


def _instance_url(ctx: Ctx) -> str:
    s = ctx.stored
    assert s is not None
    return f"{ctx.web}/studies/{s.study_uid}/series/{s.series_uid}/instances/{s.sop_uids[0]}"


def row_frame(ctx: Ctx) -> None:
    def check(r: Any) -> None:
        if len(r.content) < 512 * 512 * 2:
            raise RowFailed("wrong", f"frame response only {len(r.content)} B")

    url = _instance_url(ctx) + "/frames/1"
    res, first, r = _timed_gets(ctx, url, {"Accept": ctx.frame_accept()}, check)
    res.note = f"first (cold) {first * 1e3:.1f} ms; {len(r.content) / 1e3:.0f} kB"
    ctx.set("frame", res)


def row_rendered(ctx: Ctx) -> None:
    def check(r: Any) -> None:
        if not r.content.startswith(b"\xff\xd8"):
            raise RowFailed("wrong", f"not a JPEG ({r.headers.get('content-type')})")

    url = _instance_url(ctx) + "/rendered"
    res, first, r = _timed_gets(ctx, url, {"Accept": "image/jpeg"}, check)
    res.note = f"first (cold) {first * 1e3:.1f} ms; {len(r.content) / 1e3:.0f} kB JPEG"
    ctx.set("rendered", res)


@dataclass
class SeriesFetch:
    t_first: float
    t_all: float
    nbytes: int
    parts: int
    first_part: bytes


def fetch_series(ctx: Ctx, accept: str) -> SeriesFetch:
    """Stream a whole-series WADO-RS multipart response, counting parts as they arrive."""
    s = ctx.stored
    assert s is not None
    url = f"{ctx.web}/studies/{s.study_uid}/series/{s.series_uid}"
    t0 = time.perf_counter()
    t_first, seen, tail, head = 0.0, 0, b"", bytearray()
    with ctx.http.stream("GET", url, headers={"Accept": accept}) as r:
        if r.status_code != 200:
            r.read()
            raise RowFailed("failed", f"HTTP {r.status_code}: {r.text[:200]}")
        m = re.search(r'boundary="?([^";]+)', r.headers.get("content-type", ""))
        if not m:
            raise RowFailed("wrong", f"not multipart: {r.headers.get('content-type')}")
        bnd = b"--" + m.group(1).encode()
        for chunk in _chunks(r.iter_raw(1 << 20)):
            buf = tail + chunk
            seen += buf.count(bnd)
            tail = buf[-(len(bnd) - 1) :]  # a whole boundary never hides in here
            if not t_first:
                head += chunk
                if seen >= 2:
                    t_first = time.perf_counter() - t0
        nbytes = r.num_bytes_downloaded
    t_all = time.perf_counter() - t0
    return SeriesFetch(t_first or t_all, t_all, nbytes, max(seen - 1, 0), bytes(head))


def _chunks(it: Iterator[bytes]) -> Iterator[bytes]:
    for c in it:
        if c:
            yield c


def first_part_ts(head: bytes) -> str:
    """Transfer syntax of the first part of a multipart DICOM body (from its file meta)."""
    i = head.find(b"\r\n\r\n")
    body = head[i + 4 :] if i >= 0 else head
    j = body.find(b"DICM")
    if j < 0:
        return "?"
    ds = dcmread(io.BytesIO(bytes(128) + body[j:]), stop_before_pixels=True, force=True)
    return str(ds.file_meta.get("TransferSyntaxUID", "?"))


def row_wado(ctx: Ctx) -> None:
    s = ctx.stored
    assert s is not None and ctx.srv.watch is not None
    first, alls = Result(), Result()
    with ctx.srv.watch.window() as w:
        for _ in range(ctx.runs):
            f = fetch_series(ctx, ctx.series_accept())
            if f.parts != len(s.files):
                raise RowFailed("wrong", f"{f.parts} parts, expected {len(s.files)}")
            first.values.append(f.t_first * 1e3)
            alls.values.append(f.t_all)
    rate = len(s.files) / statistics.median(alls.values)
    alls.note = f"{f.nbytes / 1e6:.1f} MB, {rate:.0f} img/s"
    alls.note += f"; peak RSS {w.peak / 2**20:.0f} MiB"
    first.note = f"Accept {ctx.series_accept().split(';', 1)[1].strip()}"
    ctx.set("wado_first", first)
    ctx.set("wado_all", alls)


def row_transcode(ctx: Ctx, key: str, ts: str) -> None:
    """Whole series in another transfer syntax.  A request that kills the server counts as
    a crash; the server is restarted and the row goes on, so that an intermittent crash
    (Orthanc's GDCM J2K) still gives figures, while one that always crashes (Orthanc's
    JPEG-LS) is given up after two."""
    s = ctx.stored
    assert s is not None
    res, t0, crashes, f = Result(), time.perf_counter(), 0, None
    for _ in range(ctx.runs + 1):
        if len(res.values) >= ctx.runs or ctx.over_budget(t0, res):
            break
        if crashes >= 2 and not res.values:
            break
        try:
            f = fetch_series(ctx, ctx.series_accept(ts))
        except httpx.HTTPError as e:
            if not ctx.ensure_alive(grace=5.0):
                raise
            crashes += 1
            ctx.log(f"{key}: the server died under the request ({type(e).__name__})")
            continue
        if f.parts != len(s.files):
            raise RowFailed("wrong", f"{f.parts} parts, expected {len(s.files)}")
        got = first_part_ts(f.first_part)
        if got != ts:
            raise RowFailed("wrong", f"asked for {ts}, first part is {got}")
        res.values.append(f.t_all)
    if crashes:
        res.extra["crashes"] = crashes
    if f is None or not res.values:
        raise RowFailed(
            "crash", f"server crashed on {crashes} of {crashes} requests ({ctx.dead_note})"
        )
    if crashes:
        res.note += f"server crashed on {crashes} of {crashes + len(res.values)} requests; "
    res.note += f"{f.nbytes / 1e6:.1f} MB ({f.nbytes / len(s.files) / 1e3:.0f} kB/img)"
    res.extra["bytes"] = f.nbytes
    ctx.set(key, res)


def retrieve_keys(ctx: Ctx) -> list[str]:
    s = ctx.stored
    assert s is not None
    keys = ["-k", "QueryRetrieveLevel=SERIES", "-k", f"StudyInstanceUID={s.study_uid}"]
    return keys + ["-k", f"SeriesInstanceUID={s.series_uid}"]


def row_move(ctx: Ctx) -> None:
    s = ctx.stored
    assert s is not None
    cmd = ["movescu", "-v", "-S", "-aet", MY_AET, "-aec", ctx.srv.aet, "-aem", ctx.move_aet]
    cmd += retrieve_keys(ctx) + ["127.0.0.1", str(ctx.srv.dicom_port)]
    res, t0 = Result(), time.perf_counter()
    for _ in range(ctx.runs):
        if ctx.over_budget(t0, res):
            break
        dt, rc, out = run(cmd, ctx.env, timeout=600)
        m = re.search(r"Number of Completed Suboperations\s*:\s*(\d+)", out.split("Final")[-1])
        if rc != 0 or "Final Move Response (Success)" not in out:
            raise RowFailed("failed", f"movescu rc={rc}: {_last(out)}")
        if m and int(m.group(1)) != len(s.files):
            raise RowFailed("wrong", f"{m.group(1)} of {len(s.files)} sub-operations completed")
        res.values.append(dt)
    res.note += f"{len(s.files) / statistics.median(res.values):.0f} img/s"
    ctx.set("move", res)


def row_get(ctx: Ctx) -> None:
    s = ctx.stored
    assert s is not None
    cmd = ["getscu", "-v", "--ignore", "-S", "-aet", MY_AET, "-aec", ctx.srv.aet]
    cmd += retrieve_keys(ctx) + ["127.0.0.1", str(ctx.srv.dicom_port)]
    res, t0 = Result(), time.perf_counter()
    for _ in range(ctx.runs):
        if ctx.over_budget(t0, res):
            break
        dt, rc, out = run(cmd, ctx.env, timeout=600)
        m = re.findall(r"Completed Suboperations\s*:\s*(\d+)", out)
        if rc != 0 or not m:
            raise RowFailed("failed", f"getscu rc={rc}: {_last(out)}")
        if int(m[-1]) != len(s.files):
            raise RowFailed("wrong", f"{m[-1]} of {len(s.files)} sub-operations completed")
        res.values.append(dt)
    res.note += f"{len(s.files) / statistics.median(res.values):.0f} img/s"
    ctx.set("get", res)


def load_retrieve_series(ctx: Ctx) -> None:
    """Store the retrieval series (unmeasured) when no ingest row has stored one."""
    s = ctx.retrieve_series
    assert s is not None
    dt, rc, out = run(storescu_cmd(ctx, [s.directory], scan_dir=True), ctx.env)
    check_storescu(rc, out)
    verify_stored(ctx, s)
    ctx.stored = s
    ctx.log(f"loaded the retrieval series by C-STORE in {dt:.2f} s (not a row)")


ROW_FUNCS: dict[str, tuple[list[str], Callable[[Ctx], None]]] = {
    "store": (["store1_ips", "store1_mbs", "store1_cpu"], row_store),
    "store4": (["store4_ips", "store4_mbs"], row_store4),
    "stow": (["stow1_ips", "stow4_ips"], row_stow),
    "qido": (["small_ips", "qido_pid", "qido_date", "qido_name"], row_qido),
    "metadata": (["metadata"], row_metadata),
    "frame": (["frame"], row_frame),
    "rendered": (["rendered"], row_rendered),
    "wado": (["wado_first", "wado_all"], row_wado),
    "move": (["move"], row_move),
    "get": (["get"], row_get),
    "j2k": (["j2k"], lambda c: row_transcode(c, "j2k", J2K_LOSSLESS)),
    "jls": (["jls"], lambda c: row_transcode(c, "jls", JLS_LOSSLESS)),
}


def run_group(ctx: Ctx, g: str) -> None:
    """One row group against one server (loading the retrieval series first if needed)."""
    keys, fn = ROW_FUNCS[g]
    if g in NEEDS_SERIES and ctx.stored is None:
        guarded(ctx, keys, lambda: load_retrieve_series(ctx))
        if ctx.stored is None:
            for k in keys:
                ctx.results.setdefault(k, Result(status="skipped", note="no series stored"))
            return
    ctx.log(f"--- {g}")
    guarded(ctx, keys, lambda: fn(ctx))
