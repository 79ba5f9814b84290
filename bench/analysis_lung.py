#!/usr/bin/env python3
"""Lung module (steps 1 + 2) on a full-size 3D chest phantom: time per step, memory, accuracy.

Draws :func:`radcloud.analysis.lung_phantom.lung_phantom` at 512x512x300 (0.7 mm
pixels, 0.875 mm slices), runs :class:`radcloud.analysis.lung.LungModule` on it
and prints:

* time of each step (lungs, working grid, airways, vessels, lobes, meshes) and
  the whole run against the 60 s budget, and the peak resident memory;
* Dice of lungs, airways, vessels and each lobe against the phantom's truth;
  airway branch detection and right-generation rates per generation;
  artery/vein accuracy on the vessel voxels found (also on a second phantom
  seed, since the artery rule was tuned on seed 0);
* per-lobe volume error %; mesh surface distance (mean / 95th percentile mm) to
  the label each mesh was made from and to the true structure; STL / OBJ / GLB
  sizes and writing times (the GLB is parsed back).

Writes bench/results/analysis_lung.{md,json}.  Not a test: no thresholds.

  .venv/bin/python bench/analysis_lung.py              # ~2-4 min
  .venv/bin/python bench/analysis_lung.py --size 256 256 150 --spacing 1.4 1.4 1.75
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from radcloud.analysis import lung, lung_lobes, lung_metrics, lung_phantom, mesh
from radcloud.analysis.base import RunContext, SeriesInfo

BUDGET_S = 60.0


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _run(size: tuple[int, int, int], spacing: tuple[float, float, float], seed: int) -> dict:
    t = time.perf_counter()
    p = lung_phantom.lung_phantom(spacing, seed=seed, size=size)
    build_s = time.perf_counter() - t
    print(f"seed {seed}: phantom {p.volume.data.shape} drawn in {build_s:.1f} s", flush=True)
    info = SeriesInfo("1", "2", "CT", body_part="CHEST", instances=size[2])
    t = time.perf_counter()
    out = lung.LungModule().run(p.volume, RunContext(info=info))
    run_s = time.perf_counter() - t
    print(f"seed {seed}: lung module {run_s:.1f} s; measuring", flush=True)
    an = out.findings["anatomy"]
    maps = {m.name: m.array for m in out.label_maps}
    labels, lungs = maps["lung anatomy"], maps["lungs"]
    row: dict[str, Any] = {"seed": seed, "shape": list(p.volume.data.shape),
                           "phantom_s": round(build_s, 1), "run_s": round(run_s, 1),
                           "budget_ratio": round(run_s / BUDGET_S, 2)}  # fmt: skip
    steps = dict(an.get("timing_s", {}))
    steps["lungs (step 1)"] = round(run_s - steps.get("total", 0.0), 2)
    row["steps_s"] = steps
    row["dice"] = {
        "right lung": lung_metrics.dice(lungs == 1, p.lungs == 1),
        "left lung": lung_metrics.dice(lungs == 2, p.lungs == 2),
        "airways": lung_metrics.dice(labels == 6, p.airway),
        "vessels": lung_metrics.dice(
            (labels == 7) | (labels == 8), (p.arteries | p.veins) & (p.lungs > 0)
        ),
    }
    voxel_ml = float(np.prod(p.spacing)) / 1000.0
    row["lobes"] = {}
    for k, key in lung_lobes.KEYS.items():
        want = float((p.lobes == k).sum()) * voxel_ml
        got = an["lobes"].get(key, {}).get("volume_ml", 0.0)
        row["lobes"][key] = {
            "dice": round(lung_metrics.dice(labels == k, (p.lobes == k) & (labels < 6)), 3),
            "volume_ml": got, "true_ml": round(want, 1),
            "volume_error_pct": round(100.0 * (got - want) / want, 1),
        }  # fmt: skip
    row["dice"] = {k: round(v, 3) for k, v in row["dice"].items()}
    row["branches"] = lung_metrics.branch_detection(p, an["airways"]["branches"])
    art, vein = labels == 7, labels == 8
    both = (art | vein) & (p.arteries | p.veins)
    row["artery_vein_accuracy"] = round(
        float(((art & p.arteries).sum() + (vein & p.veins).sum()) / max(int(both.sum()), 1)), 3
    )
    g = p.volume.geometry
    by_name = {s.label: s.number for s in out.label_maps[1].segments}
    truth = {6: p.airway, 7: p.arteries | p.veins, 8: p.arteries | p.veins}
    row["meshes"] = {}
    for m in out.meshes:
        n = by_name[m.name]
        own = labels == n
        if n <= 5:
            own = own | ((labels > 5) & (p.lobes == n))
        true_mask = truth.get(n, p.lobes == n)
        row["meshes"][m.name] = {
            "triangles": int(len(m.faces)),
            "to_own_label": lung_metrics.mesh_to_mask_distance(
                m.vertices, own, g.origin, g.spacing
            ),
            "to_truth": lung_metrics.mesh_to_mask_distance(m.vertices, true_mask, g.origin,
                                                           g.spacing),
        }  # fmt: skip
    files = {}
    writers = {
        "glb": lambda: mesh.to_glb(out.meshes),
        "obj": lambda: mesh.to_obj(out.meshes),
        "stl (all)": lambda: b"".join(mesh.to_stl(m) for m in out.meshes),
    }
    for name, fn in writers.items():
        t = time.perf_counter()
        data = fn()
        files[name] = {
            "mb": round(len(data) / 1e6, 2),
            "write_s": round(time.perf_counter() - t, 2),
        }
        if name == "glb":
            mesh.read_glb(data)
    row["files"] = files
    row["peak_rss_mb"] = round(_peak_mb(), 0)
    return row


def _markdown(rows: list[dict]) -> str:
    lines = ["# Lung module on the 3D chest phantom", ""]
    for r in rows:
        lines += [f"## seed {r['seed']}, volume {r['shape']} (k, j, i)", "",
                  f"run {r['run_s']} s = {r['budget_ratio']} x the 60 s budget; phantom drawn in "
                  f"{r['phantom_s']} s; peak RSS {r['peak_rss_mb']:.0f} MB", "",
                  "| step | s |", "| --- | --- |"]  # fmt: skip
        lines += [f"| {k} | {v} |" for k, v in r["steps_s"].items()]
        lines += ["", "| structure | Dice |", "| --- | --- |"]
        lines += [f"| {k} | {v} |" for k, v in r["dice"].items()]
        lines += [f"| {k} lobe | {v['dice']} (volume {v['volume_ml']} mL vs {v['true_ml']}, "
                  f"{v['volume_error_pct']:+} %) |" for k, v in r["lobes"].items()]  # fmt: skip
        lines += [
            "",
            f"artery/vein accuracy on vessel voxels found: {r['artery_vein_accuracy']}",
            "",
            "| generation | true | found | right generation |",
            "| --- | --- | --- | --- |",
        ]
        lines += [f"| {g} | {b['true']} | {b['found']} ({b['rate']}) | "
                  f"{b['right_generation']} ({b['generation_rate']}) |"
                  for g, b in r["branches"].items()]  # fmt: skip
        lines += [
            "",
            "| mesh | triangles | to own label mean / p95 mm | to truth mean / p95 mm |",
            "| --- | --- | --- | --- |",
        ]
        for k, v in r["meshes"].items():
            a, b = v["to_own_label"], v["to_truth"]
            lines.append(f"| {k} | {v['triangles']} | {a['mean_mm']} / {a['p95_mm']} | "
                         f"{b['mean_mm']} / {b['p95_mm']} |")  # fmt: skip
        lines += ["", "files: " + ", ".join(f"{k} {v['mb']} MB in {v['write_s']} s"
                                            for k, v in r["files"].items()), ""]  # fmt: skip
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, nargs=3, default=(512, 512, 300), metavar=("I", "J", "K"))
    ap.add_argument("--spacing", type=float, nargs=3, default=(0.7, 0.7, 0.875))
    ap.add_argument("--seeds", type=int, nargs="+", default=(0, 1))
    args = ap.parse_args(argv)
    rows = []
    for seed in args.seeds:
        row = _run(tuple(args.size), tuple(args.spacing), seed)
        print(json.dumps(row, indent=1))
        sys.stdout.flush()
        rows.append(row)
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    (out / "analysis_lung.json").write_text(json.dumps(rows, indent=1))
    (out / "analysis_lung.md").write_text(_markdown(rows))
    print(_markdown(rows))


if __name__ == "__main__":
    main()
