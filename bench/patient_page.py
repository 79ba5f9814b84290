#!/usr/bin/env python3
"""The patient's phone page on a thin link: time to the first image and to the report text.

Builds the setup of tests/test_patient_ui.py (a synthetic chest CT with a signed
report, served by uvicorn on a socket; here 512×512 pixels and ``--slices`` slices),
makes the patient's link through the API, then drives Debian Chromium as a phone
(390×844, touch) through ``tests/js/patient.spec.mjs`` in its bench mode, each visit
in a fresh browser context with the cache off, on a link throttled with CDP
``Network.emulateNetworkConditions`` (≈10 Mbit/s down, 40 ms latency).  The
answer is typed and the tiles tapped as soon as they appear, so the figures are the
page's and the server's time, not a person's.

Prints, per target, the median and the spread over ``--runs`` visits: ms from opening
the link to the question, to the first CT slice drawn, and to the report's text;
and the page weight (HTML + script + style sheet, bytes on the wire).  Not a test.

  .venv/bin/python bench/patient_page.py              # 5 visits per target
  .venv/bin/python bench/patient_page.py --runs 1 --slices 40
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

import _browser  # noqa: E402
import test_patient_ui  # noqa: E402

#: ≈10 Mbit/s down, 5 Mbit/s up, 40 ms added latency (bytes per second for CDP).
THROTTLE = {"downloadThroughput": 10e6 / 8, "uploadThroughput": 5e6 / 8, "latency": 40}


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    ap.add_argument("--runs", type=int, default=5, help="cold visits per target (5)")
    ap.add_argument("--slices", type=int, default=100, help="CT slices of 512×512 (100)")
    args = ap.parse_args(argv)
    _browser.node()
    with tempfile.TemporaryDirectory(prefix="radcloud-patient-bench-") as tmp:
        work = Path(tmp)
        for site in test_patient_ui.open_site(work / "data", slices=args.slices, size=512):
            made = site.link(kind="patient", verify="id4", hours=24)
            env = {
                "PATIENT": json.dumps({"main": made["url"], "answer": "P100",
                                       "findings": test_patient_ui.FINDINGS[:8]}),
                "PATIENT_BENCH": json.dumps({"runs": args.runs, "throttle": THROTTLE}),
            }  # fmt: skip
            run = _browser.run_spec(test_patient_ui.SPEC, site.base, work / "shots", work, env,
                                    timeout=120 + 60 * args.runs)  # fmt: skip
    if run.returncode != 0:
        print("the browser run failed", file=sys.stderr)
        return 1
    rows = [json.loads(line[6:]) for line in run.stdout.splitlines() if line.startswith("BENCH ")]
    mbit = THROTTLE["downloadThroughput"] * 8 / 1e6
    print(f"\nphone page, {args.slices}×512² CT, link {mbit:g} Mbit/s + {THROTTLE['latency']} ms, "
          f"{args.runs} cold visits each (median [min–max]):")  # fmt: skip
    for key in ("question_ms", "images_ms", "report_ms", "page_bytes"):
        values = [r[key] for r in rows if key in r]
        if values:
            print(f"  {key:<12} {statistics.median(values):>9.0f}  "
                  f"[{min(values):.0f}–{max(values):.0f}]")  # fmt: skip
    for target in ("images", "report"):
        values = [r["bytes_until_done"] for r in rows if r["target"] == target]
        print(f"  bytes on the wire until {target} shown: {statistics.median(values):.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
