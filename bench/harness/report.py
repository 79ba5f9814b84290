"""The comparison table: console text, Markdown and JSON."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .measure import Result, RowDef

SERVERS = [("radcloud", "radcloud"), ("orthanc", "Orthanc")]


def fmt(v: float | None, unit: str) -> str:
    if v is None:
        return ""
    if unit == "MiB":
        return f"{v:.0f}"
    if unit == "ms":
        return f"{v:.2f}" if v < 10 else f"{v:.1f}" if v < 1000 else f"{v:.0f}"
    if unit == "s":
        return f"{v:.3f}" if v < 1 else f"{v:.2f}"
    return f"{v:.1f}" if v < 1000 else f"{v:.0f}"


def cell(res: Result | None, unit: str) -> str:
    if res is None:
        return "–"
    if res.status == "ok":
        return fmt(res.median, unit)
    return {"crash": "crash/failed", "wrong": "WRONG", "failed": "failed"}.get(
        res.status, res.status
    )


def ratio(d: RowDef, rc: Result | None, orth: Result | None) -> str:
    """> 1 means radcloud is better: throughput rc/orthanc, latency and size orthanc/rc."""
    a = rc.median if rc else None
    b = orth.median if orth else None
    if a is not None and b is not None and a > 0 and b > 0:
        r = a / b if d.better == "higher" else b / a
        return f"{r:.2f}"
    if a is not None and orth is not None and orth.status in ("crash", "failed", "wrong"):
        return "radcloud only"
    if b is not None and rc is not None and rc.status in ("crash", "failed", "wrong"):
        return "Orthanc only"
    return ""


def table_rows(defs: list[RowDef], results: dict[str, dict[str, Result]]) -> list[dict[str, Any]]:
    out = []
    for d in defs:
        rc, orth = results.get("radcloud", {}).get(d.key), results.get("orthanc", {}).get(d.key)
        if rc is None and orth is None:
            continue
        out.append(
            dict(
                key=d.key,
                label=d.label,
                unit=d.unit,
                better=d.better,
                radcloud=cell(rc, d.unit),
                orthanc=cell(orth, d.unit),
                ratio=ratio(d, rc, orth),
                notes={k: r.note for k, r in (("radcloud", rc), ("orthanc", orth)) if r and r.note},
            )
        )
    return out


def console(rows: list[dict[str, Any]]) -> str:
    w = max([len(r["label"]) for r in rows] + [10])
    lines = [f"{'row':{w}s}  {'unit':6s} {'radcloud':>13s} {'Orthanc':>13s} {'ratio':>13s}"]
    lines.append("-" * len(lines[0]))
    for r in rows:
        lines.append(
            f"{r['label']:{w}s}  {r['unit']:6s} {r['radcloud']:>13s} {r['orthanc']:>13s}"
            f" {r['ratio']:>13s}"
        )
    lines.append(
        "ratio > 1: radcloud better (throughput radcloud/Orthanc; time, memory Orthanc/radcloud)"
    )
    return "\n".join(lines)


def markdown(rows: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    out = ["# radcloud vs Orthanc: latest benchmark run", ""]
    out.append(f"Run {meta['finished']} on {meta['machine']}; {meta['mode']}.")
    out.append("")
    for k, v in meta["versions"].items():
        out.append(f"- {k}: {v}")
    out.append(f"- network: {meta['network']}")
    out.append(f"- parameters: {meta['params']}")
    out.append("")
    out.append("Ratio > 1 means radcloud is better (throughput: radcloud ÷ Orthanc; time and")
    out.append("memory: Orthanc ÷ radcloud). Figures are medians; `bench/README.md` explains")
    out.append("each row. `crash/failed` = the server died or the request failed; `WRONG` =")
    out.append("it answered, but with the wrong content (see the notes).")
    out.append("")
    out.append("| row | unit | radcloud | Orthanc | ratio |")
    out.append("|---|---|---:|---:|---:|")
    for r in rows:
        cells = [r["label"].strip(), r["unit"], r["radcloud"], r["orthanc"], r["ratio"]]
        out.append("| " + " | ".join(cells) + " |")
    notes = [(r["label"].strip(), s, n) for r in rows for s, n in r["notes"].items()]
    if notes:
        out += ["", "## Notes", ""]
        for label, server, note in notes:
            out.append(f"- {label} — {server}: {note}")
    if meta.get("problems"):
        out += ["", "## Problems during the run", ""]
        out += [f"- {p}" for p in meta["problems"]]
    return "\n".join(out) + "\n"


def write(
    out_dir: Path,
    stem: str,
    defs: list[RowDef],
    results: dict[str, dict[str, Result]],
    meta: dict[str, Any],
) -> tuple[Path, Path, str]:
    rows = table_rows(defs, results)
    out_dir.mkdir(parents=True, exist_ok=True)
    js, md = out_dir / f"{stem}.json", out_dir / f"{stem}.md"
    doc = dict(
        meta=meta,
        table=rows,
        servers={s: {k: r.as_dict() for k, r in res.items()} for s, res in results.items()},
    )
    tmp = js.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(doc, indent=1))
    tmp.replace(js)
    md.write_text(markdown(rows, meta))
    return js, md, console(rows)
