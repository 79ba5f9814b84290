#!/usr/bin/env python3
"""Server-side 3D: volume build, MPR / slab MIP / VR frame times, memory, concurrent users.

Draws a 512x512x500 chest CT (the project's chest phantom at 50 levels, interpolated
to 500 slices of 0.625 mm with fresh noise), stores it in a throwaway archive through
the one ingest path (SQLite, encryption at rest on, like a default install), then:

* builds the volume cold through :class:`radcloud.volume.service.VolumeService`;
* times 512x512 frames: thin MPR (axial, coronal, sagittal, oblique), 10 mm slab MIP
  (axial, oblique), VR (bone, shaded; several orientations) - render only and
  complete (render + JPEG);
* measures the same VR frame with numpy/scipy sampling (``map_coordinates`` per
  depth plane, no shading: a lower bound) to justify the compiled ray caster;
* runs 4 users at once, each dragging through 30 MPR/MIP views, and reports frames/s.

Prints a table with each figure's ratio to the design budget (MPR/MIP <= 100 ms and
>= 10 frames/s interactive; VR <= 1 s) and writes bench/results/volume.{md,json}.
Not a test: no thresholds.  Figures depend on what else the machine is doing.

  .venv/bin/python bench/volume_3d.py            # ~3-5 min
  .venv/bin/python bench/volume_3d.py --slices 200 --reps 5
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import resource
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent / "src"))

from radcloud.archive import ingest  # noqa: E402
from radcloud.archive.service import Archive  # noqa: E402
from radcloud.auth.access import SYSTEM  # noqa: E402
from radcloud.config import Settings  # noqa: E402
from radcloud.testing.phantom import chest_ct_series  # noqa: E402
from radcloud.volume import mpr, vr  # noqa: E402
from radcloud.volume.service import ViewRequest, VolumeService  # noqa: E402

MPR_BUDGET_MS = 100.0
VR_BUDGET_MS = 1000.0
INTERACTIVE_FPS = 10.0


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def store_chest(archive: Archive, slices: int, levels: int) -> tuple[str, str]:
    """``slices`` 512x512 slices interpolated from ``levels`` phantom slices."""
    base = list(chest_ct_series(n_slices=levels, slice_thickness=0.625 * slices / levels))
    stack = np.stack([ds.pixel_array.astype(np.float32) for ds in base])
    rng = np.random.default_rng(7)
    study, series = str(base[0].StudyInstanceUID), str(base[0].SeriesInstanceUID)
    from pydicom.uid import generate_uid

    for k in range(slices):
        f = k * (levels - 1) / (slices - 1)
        lo = min(int(f), levels - 2)
        w = f - lo
        px = stack[lo] * (1 - w) + stack[lo + 1] * w
        inside = px > 0
        px[inside] += rng.normal(0, 4, int(inside.sum())).astype(np.float32)
        ds = base[lo].copy()
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta = base[lo].file_meta.copy()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.InstanceNumber = k + 1
        z = -k * 0.625
        ds.ImagePositionPatient = [*list(base[0].ImagePositionPatient)[:2], z]
        ds.SliceLocation = z
        ds.SliceThickness = 0.625
        ds.PixelData = np.clip(np.rint(px), 0, 4095).astype(np.uint16).tobytes()
        ingest.store_dataset(archive, ds)
        if (k + 1) % 100 == 0:
            log(f"stored {k + 1}/{slices} slices")
    return study, series


def timed(fn: Callable[[], Any], reps: int) -> dict[str, float]:
    """Wall and CPU time (all threads of this process) per call, in ms."""
    samples, cpu = [], []
    for _ in range(reps):
        t, c = time.perf_counter(), time.process_time()
        fn()
        samples.append((time.perf_counter() - t) * 1000)
        cpu.append((time.process_time() - c) * 1000)
    return {
        "median_ms": round(statistics.median(samples), 1),
        "min_ms": round(min(samples), 1),
        "max_ms": round(max(samples), 1),
        "cpu_ms": round(statistics.median(cpu), 1),
        "n": reps,
    }


def numpy_vr(proxy: vr.Proxy, settings: vr.VRSettings, size: int) -> np.ndarray:
    """The same rays as the compiled caster, sampled with scipy per depth plane (no shading)."""
    from scipy import ndimage

    g = proxy.geometry
    cam = vr.camera(settings, g, size, size)
    step = float(g.spacing.min()) * 0.7
    lut, lo, scale = vr.transfer_lut(settings, proxy.value_range, step)
    inv = np.linalg.inv(g.affine)
    depth = float(np.ptp(g.corners() @ cam.forward)) / 2
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32)
    start = cam.center - depth * cam.forward
    idx0 = g.to_index(start - (size - 1) / 2 * cam.pixel_mm * (cam.u + cam.v))
    du, dv, dd = (inv @ (d * m) for d, m in ((cam.u, cam.pixel_mm), (cam.v, cam.pixel_mm),
                                              (cam.forward, step)))  # fmt: skip
    rgb = np.zeros((size, size, 3), np.float32)
    trans = np.ones((size, size), np.float32)
    for n in range(int(2 * depth / step)):
        coords = np.stack([idx0[c] + xs * du[c] + ys * dv[c] + n * dd[c] for c in (2, 1, 0)])
        val = ndimage.map_coordinates(proxy.data, coords, order=1, cval=proxy.value_range[0])
        e = np.clip(((val - lo) * scale).astype(np.int32), 0, len(lut) - 1)
        a = lut[e, 3] * trans
        rgb += a[..., None] * lut[e, :3]
        trans *= 1 - lut[e, 3]
        if trans.max() < 0.02:
            break
    return rgb


def concurrent_users(svc: VolumeService, study: str, series: str, users: int, frames: int,
                     center: np.ndarray) -> dict[str, Any]:  # fmt: skip
    """``users`` threads each requesting ``frames`` 512x512 JPEG views (drags, slabs)."""
    done = [0] * users
    errors: list[str] = []

    def user(n: int) -> None:
        plane = ("axial", "coronal", "sagittal", "axial")[n % 4]
        for f in range(frames):
            cursor = tuple(center + np.array([0.0, 0.0, (f - frames / 2) * 1.5]))
            req = ViewRequest(
                plane=plane, cursor=cursor, width=512, height=512,  # type: ignore[arg-type]
                slab_mm=10.0 if f % 3 == 2 else 0.0, angles=(0.0, 10.0 * (n == 3), 0.0),
                client=f"user{n}", viewport="v", seq=f,
            )  # fmt: skip
            try:
                svc.view(study, series, req, principal=SYSTEM)
                done[n] += 1
            except Exception as exc:  # noqa: BLE001 - reported
                errors.append(repr(exc))

    threads = [threading.Thread(target=user, args=(n,)) for n in range(users)]
    t = time.perf_counter()
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    wall = time.perf_counter() - t
    total = sum(done)
    return {"users": users, "frames": total, "seconds": round(wall, 2),
            "fps_total": round(total / wall, 1), "fps_per_user": round(total / wall / users, 1),
            "errors": errors[:3]}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--slices", type=int, default=500)
    ap.add_argument("--levels", type=int, default=50, help="phantom slices drawn")
    ap.add_argument("--reps", type=int, default=9)
    ap.add_argument("--users", type=int, default=4)
    ap.add_argument("--frames", type=int, default=30, help="views per concurrent user")
    ap.add_argument("--out", default="volume")
    ap.add_argument("--vr-only", action="store_true", help="VR rows only (with --out volume_vr)")
    args = ap.parse_args()

    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="rc-bench-3d-") as tmp:
        settings = Settings(data_dir=Path(tmp) / "data", dicom_port=0, volume_cache_mb=4096)
        archive = Archive.open(settings)
        try:
            log(f"drawing and storing a 512x512x{args.slices} chest CT")
            study, series = store_chest(archive, args.slices, args.levels)
            svc = VolumeService.of(archive)
            rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            t = time.perf_counter()
            vol = svc.volume(study, series, principal=SYSTEM)
            build_s = time.perf_counter() - t
            rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            log(f"volume built in {build_s:.2f} s: {vol.data.shape} {vol.data.dtype}")
            rows.append({"row": "volume build (cold, 500 slices decoded + verified)",
                         "value": f"{build_s:.2f} s", "seconds": round(build_s, 3)})  # fmt: skip
            rows.append({"row": "memory per cached volume", "value":
                         f"{vol.data.nbytes / 2**20:.0f} MiB ({vol.data.dtype})",
                         "bytes": int(vol.data.nbytes),
                         "peak_rss_growth_mib": round((rss1 - rss0) / 1024, 1)})  # fmt: skip
            lookup = timed(lambda: svc.volume(study, series, principal=SYSTEM), args.reps)
            rows.append({"row": "per-view access check + cache lookup (500 instances)",
                         "value": f"{lookup['median_ms']} ms", "render": lookup})  # fmt: skip
            center = vol.geometry.center
            if not args.vr_only:
                frame_rows(rows, svc, vol, study, series, center, args.reps)
            vr_rows(rows, svc, vol, study, series, args.reps)
            log("concurrent users")
            for users in sorted({1, args.users}) if not args.vr_only else []:
                c = concurrent_users(svc, study, series, users, args.frames, center)
                rows.append({"row": f"{users} concurrent user(s), 512x512 MPR/MIP JPEG views",
                             "value": f"{c['fps_total']} frames/s total, {c['fps_per_user']} "
                             "per user", **c,
                             "ratio": round(c["fps_per_user"] / INTERACTIVE_FPS, 2),
                             "budget": f">= {INTERACTIVE_FPS:g} frames/s per user"})  # fmt: skip
        finally:
            archive.close()
    write(rows, args)


def frame_rows(rows: list[dict[str, Any]], svc: VolumeService, vol: Any, study: str,
               series: str, center: np.ndarray, reps: int) -> None:  # fmt: skip
    cases = [
        ("MPR axial", dict(plane="axial")),
        ("MPR coronal", dict(plane="coronal")),
        ("MPR sagittal", dict(plane="sagittal")),
        ("MPR oblique (20, 15, 0 deg)", dict(plane="axial", angles=(20.0, 15.0, 0.0))),
        ("slab MIP 10 mm axial", dict(plane="axial", slab_mm=10.0)),
        ("slab MIP 10 mm coronal", dict(plane="coronal", slab_mm=10.0)),
        ("slab MIP 10 mm oblique", dict(plane="axial", angles=(20.0, 15.0, 0.0), slab_mm=10.0)),
        (
            "slab MinIP 10 mm oblique",
            dict(plane="coronal", angles=(0.0, 20.0, 0.0), slab_mm=10.0, mode="minip"),
        ),  # fmt: skip
    ]
    for name, kw in cases:
        req = ViewRequest(width=512, height=512, **kw)  # type: ignore[arg-type]
        plane = svc.plane(vol, req)
        r = timed(
            lambda p=plane, q=req: mpr.sample(vol.data, vol.geometry, p, q.slab_mm, q.mode), reps
        )
        full = timed(lambda q=req: svc.view(study, series, q, principal=SYSTEM), reps)
        rows.append({"row": f"{name} 512x512", "value": f"{r['median_ms']} ms render, "
                     f"{full['median_ms']} ms with JPEG (CPU {full['cpu_ms']} ms)",
                     "render": r, "complete": full,
                     "ratio": round(full["median_ms"] / MPR_BUDGET_MS, 2),
                     "budget": f"<= {MPR_BUDGET_MS:g} ms"})  # fmt: skip
        log(rows[-1]["row"] + ": " + rows[-1]["value"])


def vr_rows(rows: list[dict[str, Any]], svc: VolumeService, vol: Any, study: str,
            series: str, reps: int) -> None:  # fmt: skip
    t = time.perf_counter()
    proxy = vr.proxy_of(vol, svc.cache)
    proxy_s = time.perf_counter() - t
    t = time.perf_counter()
    vr.render(proxy, vr.VRSettings(), 16, 16)  # compile (or load the cached machine code)
    compile_s = time.perf_counter() - t
    rows.append({"row": "VR working copy (first VR of a volume) + caster load",
                 "value": f"{proxy_s:.2f} s + {compile_s:.2f} s; copy "
                 f"{proxy.data.shape} at {proxy.geometry.spacing.round(2).tolist()} mm, "
                 f"{proxy.nbytes / 2**20:.0f} MiB with the smoothed copy for normals",
                 "proxy_seconds": round(proxy_s, 3),
                 "compile_seconds": round(compile_s, 3)})  # fmt: skip
    for name, settings in [
        ("VR bone anterior", vr.VRSettings(preset="bone")),
        ("VR bone rotated (az 35, el 20)", vr.VRSettings(preset="bone", azimuth=35, elevation=20)),
        ("VR lung left", vr.VRSettings(preset="lung", orientation="left")),
        ("VR skin superior", vr.VRSettings(preset="skin", orientation="superior")),
        ("VR vessels unshaded", vr.VRSettings(preset="vessels", shading=False)),
    ]:
        for size in (512, 256):
            vr_row(rows, svc, proxy, study, series, name, settings, size, reps)
    settings = vr.VRSettings(preset="bone")
    np_ms = timed(lambda: numpy_vr(proxy, settings, 512), 1)
    rows.append({"row": "VR bone anterior 512x512 with numpy/scipy sampling (not used)",
                 "value": f"{np_ms['median_ms']} ms (no shading)", "render": np_ms,
                 "ratio": round(np_ms["median_ms"] / VR_BUDGET_MS, 2),
                 "budget": f"<= {VR_BUDGET_MS:g} ms"})  # fmt: skip
    log(rows[-1]["row"] + ": " + rows[-1]["value"])


def vr_row(
    rows: list[dict[str, Any]], svc: VolumeService, proxy: vr.Proxy, study: str, series: str,
    name: str, settings: vr.VRSettings, size: int, reps: int,
) -> None:  # fmt: skip
    n = max(3, reps // 2)
    r = timed(lambda: vr.render(proxy, settings, size, size), n)
    req = ViewRequest(kind="vr", vr=settings, width=size, height=size)
    full = timed(lambda: svc.view(study, series, req, principal=SYSTEM), n)
    rows.append({"row": f"{name} {size}x{size}", "value": f"{r['median_ms']} ms render, "
                 f"{full['median_ms']} ms with JPEG (CPU {full['cpu_ms']} ms)",
                 "render": r, "complete": full,
                 "ratio": round(full["median_ms"] / VR_BUDGET_MS, 2),
                 "budget": f"<= {VR_BUDGET_MS:g} ms"})  # fmt: skip
    log(rows[-1]["row"] + ": " + rows[-1]["value"])


def write(rows: list[dict[str, Any]], args: argparse.Namespace) -> None:
    load = os.getloadavg()
    lines = [
        "# Server-side 3D benchmark",
        "",
        f"{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC, {platform.node()}, "
        f"{os.cpu_count()} CPUs, load average {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} "
        "(other work shares this machine: figures are upper bounds).",
        f"512x512x{args.slices} CT (chest phantom), numpy {np.__version__}; ratio = "
        "measured / budget (time rows: < 1 is within budget; frames/s rows: > 1 is). "
        "CPU = CPU time of all threads per frame: on an otherwise idle 2-core machine a "
        "frame takes about CPU / 2 (parallel loops) to CPU (serial parts).",
        "",
        "| work | result | budget | ratio |",
        "| --- | --- | --- | --- |",
    ]
    for r in rows:
        lines.append(f"| {r['row']} | {r['value']} | {r.get('budget', '')} | "
                     f"{r.get('ratio', '')} |")  # fmt: skip
    text = "\n".join(lines) + "\n"
    print(text)
    out = BENCH / "results"
    out.mkdir(exist_ok=True)
    (out / f"{args.out}.md").write_text(text)
    payload = {"when": dt.datetime.now(dt.UTC).isoformat(), "load": load, "args": vars(args),
               "rows": rows}  # fmt: skip
    (out / f"{args.out}.json").write_text(json.dumps(payload, indent=1, default=str))


if __name__ == "__main__":
    main()
