"""Per element map: the break-even scan time of one column of acquisition runs.

The whole-cube PSNR of the scan-time page pools each element's MSE *normalised by its
range*, so the noisiest maps (few counts: their HR scan is far from the truth) weigh most.
This prints, per element of each run, its range in counts, its ``hidden_share``, the
column's PSNR minus the HR scan's at the longest scan time measured, and its own
break-even against the HR scan's same element (log-t interpolation, as the page).

Run:  .venv/bin/python tests/benchmarks/bench_element_breakeven.py RUN_DIR[,RUN_DIR…] COLUMN
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from maxrf_bench.acquisition import break_even_text
from maxrf_bench.results import read_results


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2:
        print(__doc__.strip().splitlines()[-1], file=sys.stderr)
        return 2
    runs, col = argv[0].split(","), argv[1]
    for d in runs:
        m = json.loads((Path(d) / "manifest.json").read_text())
        for ds, info in m["acquisition"].items():
            ref = info["reference"]["psnr_elements"]
            share = next((i.get("hidden_share", {}) for i in m["inputs"].values() if i["dataset"] == ds), {})
            rows = read_results(d).rows
            print(f"\n{ds}, operator {info['operator']['name']}, column {col}")
            print(f"{'element':8} {'range (counts)':>14} {'hidden':>6} {'Δ dB at longest t':>17}  break-even")
            for e, span in zip(info["elements"], info["span"]):
                pts = sorted((float(r["scan_time"]), r["value"]) for r in rows
                             if r["dataset"] == ds and r["method"] == col and r["element"] == e
                             and r["metric"] == "psnr" and r["truth"] == "clean")
                if not pts:
                    continue
                ts, ps = [p[0] for p in pts], [p[1] for p in pts]
                txt = break_even_text(ts, ps, ref[e], decimal=False)
                print(f"{e:8} {span:14.0f} {share.get(e, 0.0):6.2f} {ps[-1] - ref[e]:+17.1f}  {txt}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
