"""The scan-time trade-off grid of one preset, and the page that shows it.

Runs ``maxrf-bench run --protocol acquisition`` on one 512² preset with one seed for the
columns of docs/scan-time.md (each method raw, with the exact projection ``+P`` and with our
noise-aware projection ``+W``; ``proposed`` and ``ctx`` = ``proposed[kernel=5]`` under the
``fast`` preset, trained without the projection so that raw, ``+P`` and ``+W`` share one
training), then regenerates the page with ``maxrf-bench tradeoff-page``.  The manifest's
timings (printed on the page) are the per-cell times.  Finished cells are reused, so an
interrupted grid resumes.

Run:  .venv/bin/python tests/benchmarks/bench_scan_time.py [--preset sim-isabel]
      [--operator blockmean|scan] [--scan-times 1,1/4,1/16,1/64] [--out DIR] [--page docs/scan-time.md]
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

COLUMNS = ["bicubic", "bicubic+P", "bicubic+W", "guided", "guided+P", "guided+W",
           "proposed[projection=False]", "proposed+P[projection=False]", "proposed+W[projection=False]",
           "proposed[kernel=5,projection=False]", "proposed+P[kernel=5,projection=False]",
           "proposed+W[kernel=5,projection=False]"]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--preset", default="sim-isabel")
    ap.add_argument("--operator", default="blockmean", choices=["blockmean", "gaussian", "scan"])
    ap.add_argument("--sigma", default="0.5", help="beam std, HR px (the simulator's beam_sigma_px)")
    ap.add_argument("--scan-times", default="1,1/4,1/16,1/64")
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--columns", default=",".join(COLUMNS))
    ap.add_argument("--out", default=None)
    ap.add_argument("--page", default=None, help="also write this page from --out (and --also)")
    ap.add_argument("--also", nargs="*", default=[], help="more run directories for the page")
    args = ap.parse_args(argv)
    out = args.out or f"scan-time-{args.preset}-{args.operator}"
    bin_dir = Path(sys.executable).parent
    cmd = [str(bin_dir / "maxrf-bench"), "run", "-m", args.columns, "-d", args.preset, "--protocol",
           "acquisition", "--scan-times", args.scan_times, "--operator", args.operator, "--sigma",
           args.sigma, "--preset", "fast", "--seeds", args.seeds, "-o", out]
    t0 = time.perf_counter()
    rc = subprocess.call(cmd)
    print(f"grid: {time.perf_counter() - t0:.0f} s wall (exit {rc})")
    if args.page:
        subprocess.check_call([str(bin_dir / "maxrf-bench"), "tradeoff-page", out, *args.also,
                               "-o", args.page])
    return rc


if __name__ == "__main__":
    sys.exit(main())
