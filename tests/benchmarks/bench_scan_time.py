"""The scan-time trade-off grid of one preset, both operators, and the page that shows it.

Runs ``maxrf-bench run --protocol acquisition`` on one preset with one seed for the columns
of issue 21 (``bicubic``, ``guided``, ``ssr`` and the best learned baseline of the operator,
each raw and with the exact projection ``+P``, the first two also with our noise-aware ``+W``;
``proposed`` and ``ctx`` = ``proposed[preset=ctx]`` under the ``fast`` preset, trained without
the projection so that raw, ``+P`` and ``+W`` share one training; ``ctx-quickscan`` raw and
``+W``), once per operator
(``--operators blockmean,scan``: the block mean and the coarse scan of beam σ ``--sigma``),
then prints the times.  The best learned baseline ``+P`` (:data:`BEST_LEARNED`) is
``cs2dips`` under the block mean and ``mmsr`` under the coarse scan, where ``cs2dips+P`` falls
behind (tuning scene ``simulate("sim-isabel", seed=101, size=256)``, t = 1, seed 0: ``mmsr+P``
25.56 dB, ``ssgnet+P`` 25.40, ``cs2dips+P`` 23.71; the coarse scan's projection restores only
what its point-sampled rows see).  It prints every cell's time (the run's manifest; a reused
cell keeps the time of the run that computed it), the per-method and per-operator sums and the whole grid's wall time, and
optionally regenerates the page with ``maxrf-bench tradeoff-page``.  Finished cells are
reused, so an interrupted grid resumes.

The issue's benchmark (not a timed test): the whole grid of one 512² preset, one seed, in
90 min on 2 cores, on an idle machine, for the issue's methods (``--issue-columns`` leaves
out our ``ctx-quickscan``, which alone costs about 25 min of block-mean cells)::

    .venv/bin/python tests/benchmarks/bench_scan_time.py --preset sim-flowers --operators blockmean,scan --issue-columns

``--size N`` simulates the preset at N² (seed 0, ``maxrf-bench simulate``) into the output
directory first, for a quick check of the printing (e.g. ``--size 128 --columns
bicubic,guided+P --scan-times 1,1/4``).

Run:  .venv/bin/python tests/benchmarks/bench_scan_time.py [--preset sim-isabel] [--size N]
      [--operators blockmean,scan] [--scan-times 1,1/4,1/16,1/64] [--out DIR] [--page docs/scan-time.md]
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

COLUMNS = ["bicubic", "bicubic+P", "bicubic+W", "guided", "guided+P", "guided+W", "ssr", "ssr+P",
           "LEARNED", "LEARNED+P",
           "proposed[projection=False]", "proposed+P[projection=False]", "proposed+W[projection=False]",
           "proposed[preset=ctx,projection=False]", "proposed+P[preset=ctx,projection=False]",
           "proposed+W[preset=ctx,projection=False]",
           "proposed[preset=ctx-quickscan]", "proposed+W[preset=ctx-quickscan]"]


#: the best learned baseline per operator (``LEARNED`` in :data:`COLUMNS`), chosen on tuning scenes
BEST_LEARNED = {"blockmean": "cs2dips", "gaussian": "cs2dips", "scan": "mmsr"}


def operator_columns(columns: str, operator: str) -> str:
    """``columns`` with ``LEARNED`` replaced by the operator's best learned baseline."""
    return ",".join(c.replace("LEARNED", BEST_LEARNED[operator]) for c in columns.split(","))


def cell_times(run_dir: Path) -> list[dict]:
    """The manifest's per-cell timings of a run directory."""
    manifest = json.loads((run_dir / "manifest.json").read_text())
    return list(manifest.get("timings", []))


def print_times(by_operator: dict[str, list[dict]]) -> float:
    """Every cell's seconds, the sums per method and operator; returns the grid's sum."""
    total = 0.0
    for op, times in by_operator.items():
        print(f"\nper-cell times, operator {op} (s; 'reused': computed by an earlier run):")
        per_method: dict[str, float] = defaultdict(float)
        for t in times:
            sec = float(t.get("seconds") or 0.0)
            per_method[t["method"]] += sec
            tag = t["protocol"].split("-", 1)[-1].replace("_", "/")
            print(f"  t={tag:5s} {t['method']:40s} seed {t.get('seed')} {sec:8.1f}"
                  + ("  reused" if t.get("reused") else "") + (f"  ERROR {t['error']}" if t.get("error") else ""))
        for m, s in per_method.items():
            print(f"  sum {m:44s} {s:8.1f}")
        op_sum = sum(per_method.values())
        print(f"  operator {op}: {op_sum:.0f} s over {len(times)} cells")
        total += op_sum
    print(f"\ngrid: {total:.0f} s ({total / 60:.1f} min) summed over every cell")
    return total


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--preset", default="sim-isabel")
    ap.add_argument("--size", type=int, default=None,
                    help="simulate the preset at this size (seed 0) instead of its own")
    ap.add_argument("--operators", default="blockmean,scan",
                    help="comma-separated: blockmean, gaussian, scan")
    ap.add_argument("--sigma", default="0.5", help="beam std, HR px (the simulator's beam_sigma_px)")
    ap.add_argument("--scan-times", default="1,1/4,1/16,1/64")
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--columns", default=None, help="comma-separated columns (default: all below; "
                    "LEARNED: the operator's best learned baseline)")
    ap.add_argument("--issue-columns", action="store_true",
                    help="only the issue's methods: every default column but our ctx-quickscan")
    ap.add_argument("--out", default=None, help="parent directory of the run directories")
    ap.add_argument("--page", default=None, help="also write this page from the runs (and --also)")
    ap.add_argument("--also", nargs="*", default=[], help="more run directories for the page")
    args = ap.parse_args(argv)
    if args.issue_columns and args.columns is not None:
        print("--issue-columns and --columns: expected one of them, found both", file=sys.stderr)
        return 2
    columns = (",".join(c for c in COLUMNS if "quickscan" not in c) if args.issue_columns
               else args.columns or ",".join(COLUMNS))
    operators = [o for o in args.operators.split(",") if o]
    bad = set(operators) - {"blockmean", "gaussian", "scan"}
    if bad:
        print(f"--operators: expected blockmean, gaussian or scan, found {', '.join(sorted(bad))}",
              file=sys.stderr)
        return 2
    parent = Path(args.out or f"scan-time-{args.preset}" + (f"-{args.size}" if args.size else ""))
    parent.mkdir(parents=True, exist_ok=True)
    bin_dir = Path(sys.executable).parent
    mb = str(bin_dir / "maxrf-bench")
    dataset = args.preset
    if args.size:
        dataset = str(parent / f"{args.preset}-{args.size}.zarr")
        if not Path(dataset).exists():
            subprocess.check_call([mb, "simulate", "--preset", args.preset, "--seed", "0",
                                   "--size", str(args.size), "-o", dataset])
    runs, times, rc = [], {}, 0
    t0 = time.perf_counter()
    for op in operators:
        out = parent / op
        cmd = [mb, "run", "-q", "-m", operator_columns(columns, op), "-d", dataset, "--protocol", "acquisition",
               "--scan-times", args.scan_times, "--operator", op, "--preset", "fast",
               "--seeds", args.seeds, "-o", str(out)] + (["--sigma", args.sigma] if op != "blockmean" else [])
        print("+ " + " ".join(cmd), flush=True)
        rc = subprocess.call(cmd) or rc
        runs.append(out)
        if (out / "manifest.json").exists():
            times[op] = cell_times(out)
    wall = time.perf_counter() - t0
    print_times(times)
    print(f"grid wall time: {wall:.0f} s ({wall / 60:.1f} min; exit {rc})")
    if args.page:
        subprocess.check_call([mb, "tradeoff-page", *map(str, runs), *args.also, "-o", args.page])
    return rc


if __name__ == "__main__":
    sys.exit(main())
