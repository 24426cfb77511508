"""The grid's makespan on one machine (issue 26 item 6): a representative grid run
sequentially and with ``--scheduler processes``, and the full grid extrapolated from its
per-cell times.

    .venv/bin/python tests/benchmarks/bench_makespan.py [--size 512] [--seeds 0,1]
        [--methods bicubic,guided,...] [--presets sim-flowers] [--set proposed.x=1 ...]
        [--out DIR] [--json makespan.json]

The full comparison (``--fair``, three simulated presets, three seeds, every method that
needs no weights file, ``--preset fast``, 512²) takes hours on 2 cores, so this runs a
*representative* grid (by default one preset at ``--size``, tuning scene seed 101 — not a
table scene — and seeds 0,1) twice in this one call:

1. sequentially (``maxrf-bench run`` without ``--scheduler``: one cell at a time on every
   core), and
2. with ``--scheduler processes`` (one worker process per core, one thread each; cells
   submitted longest first, :func:`maxrf_bench.scheduler.longest_first`),

and prints both wall times (measured) and every cell's seconds under each.  It then
**extrapolates** the full grid from those per-cell times (said so in the output): every
cell of a method is assumed to cost what its measured cells cost on average (the presets
are the same size and the methods' schedules do not depend on the scene), deterministic
methods run once per dataset; sequential = the sum, ``processes`` = a list schedule of
the cells on ``cores`` workers in the longest-first order the scheduler uses (and, for
comparison, in the grid's order, as before item 6).  At ``--size`` below 512 the
per-cell times are not those of the full grid (pixel-bound methods scale with the area,
iteration-bound ones do not): run ``--size 512`` on the idle VM for the real figure.
Wall times on a shared machine are inflated by the other processes (the load average is
printed).
"""
from __future__ import annotations

import argparse
import heapq
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from bench_cost import REFERENCE_GFLOPS  # this folder: the reference rate of sgemm-seconds

FULL_PRESETS = ("sim-flowers", "sim-virgin", "sim-isabel")
FULL_SEEDS = 3


def load_average() -> str:
    try:
        return "load average " + " ".join(f"{x:.1f}" for x in os.getloadavg()) + f" on {os.cpu_count()} CPUs"
    except OSError:
        return ""


def weightless_methods() -> list[str]:
    import maxrf_bench as mb

    return sorted(n for n, m in mb.get_methods().items() if "weights" not in (m.needs or ""))


def run_grid(methods, scans, out: Path, seeds, sets, scheduler) -> tuple[float, list[dict]]:
    from maxrf_bench.runner import RunConfig, Runner

    t = time.perf_counter()
    Runner(RunConfig(list(methods), list(scans), out=out, seeds=list(seeds), preset="fast",
                     fair=True, sets=sets, scheduler=scheduler, metrics=["psnr"])).run()
    wall = time.perf_counter() - t
    timings = json.loads((out / "manifest.json").read_text())["timings"]
    return wall, timings


def list_schedule(times: list[float], workers: int) -> float:
    """Makespan of running ``times`` in this order, each on the first free worker."""
    free = [0.0] * workers
    for t in times:
        start = heapq.heappop(free)
        heapq.heappush(free, start + t)
    return max(free)


def per_method(timings: list[dict]) -> dict[str, float]:
    acc: dict[str, list[float]] = {}
    for t in timings:
        if not t.get("error"):
            acc.setdefault(t["method"], []).append(float(t["seconds"]))
    return {k: sum(v) / len(v) for k, v in acc.items()}


def base_method(label: str):
    """The registered method behind a column label (``ssr+P`` → ``ssr``), or None."""
    import maxrf_bench as mb

    try:
        return mb.get_method(label.split("+")[0].split("[")[0])
    except Exception:  # noqa: BLE001 - a column label that is no method name
        return None


def full_grid_cells(timings: list[dict], seeds: int, presets: int) -> list[tuple[str, int]]:
    """(run label, copies) of the full grid: seeded runs × ``seeds``, deterministic ones (the
    method says so; they run once whatever ``--seeds``) × 1; both × ``presets``."""
    labels = sorted({t["method"] for t in timings})
    det = {r: bool(getattr(base_method(r), "deterministic", False)) for r in labels}
    return [(r, presets * (1 if det[r] else seeds)) for r in labels]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--seeds", default="0,1")
    ap.add_argument("--presets", default="sim-flowers", help="simulated presets of the measured grid")
    ap.add_argument("--methods", default=None, help="default: every method that needs no weights")
    ap.add_argument("--set", action="append", default=[], help="METHOD.KEY=VALUE (e.g. a cut schedule)")
    ap.add_argument("--out", default=None, help="keep the two run directories here")
    ap.add_argument("--json", default=None)
    ap.add_argument("--from-json", default=None,
                    help="no runs: the extrapolation again from a --json an earlier call wrote")
    args = ap.parse_args(argv)
    if args.from_json:
        saved = json.loads(Path(args.from_json).read_text())
        print(f"from {args.from_json}: {len(saved['methods'])} methods, seeds {saved['seeds']}, "
              f"{saved['size']}², {saved['cores']} cores (measured walls: sequential "
              f"{saved['measured']['sequential']['wall_s']:.1f} s, processes "
              f"{saved['measured']['processes']['wall_s']:.1f} s)")
        extrapolate(saved["measured"], saved["cores"], saved["size"])
        return 0

    import maxrf_bench as mb
    from maxrf_bench.scheduler import available_cores
    from maxrf_bench_datasets.simulator import simulate

    methods = args.methods.split(",") if args.methods else weightless_methods()
    seeds = [int(s) for s in args.seeds.split(",")]
    sets: dict[str, dict] = {}
    for item in args.set:
        key, value = item.split("=", 1)
        m, k = key.split(".", 1)
        sets.setdefault(m, {})[k] = json.loads(value) if value[:1] in "0123456789-[{tfn" else value
    root = Path(args.out or tempfile.mkdtemp(prefix="bench-makespan-"))
    root.mkdir(parents=True, exist_ok=True)
    scans = []
    for preset in args.presets.split(","):
        ds = simulate(preset, seed=101, size=args.size)  # a tuning scene, not a table scene
        scans.append(str(mb.save_scan(ds, root / f"{preset}-101-{args.size}.zarr")))
    cores = available_cores()
    print(f"grid: {len(methods)} methods ({','.join(methods)}), --fair, --preset fast, seeds {seeds}, "
          f"{len(scans)} scan(s) of {args.size}² (seed 101); {cores} cores; {load_average()}")
    from bench_infer import sgemm_gflops  # this folder: the sgemm rate as bench_cost measures it

    rates = [sgemm_gflops(cores)[0]]
    print(f"sgemm (numpy 2048² float32, {cores} threads, best of 5): {rates[0]:.1f} GFLOP/s")
    results = {}
    for label, scheduler in (("sequential", None), ("processes", "processes")):
        out = root / f"run-{label}"
        wall, timings = run_grid(methods, scans, out, seeds, sets, scheduler)
        results[label] = {"wall_s": wall, "timings": timings}
        print(f"\n== {label}: MEASURED wall {wall:.1f} s for {len(timings)} cells "
              f"(sum of cells {sum(t['seconds'] for t in timings):.1f} s); {load_average()}")
        for t in timings:
            print(f"   {t['method']:24s} seed {t['seed']}  {t['seconds']:8.1f} s"
                  + (f"  FAILED {t['error'][:60]}" if t.get("error") else ""))
    rates.append(sgemm_gflops(cores)[0])
    results["sgemm_gflops"] = sum(rates) / len(rates)
    print(f"sgemm after the runs: {rates[1]:.1f} GFLOP/s (mean {results['sgemm_gflops']:.1f})")
    extra = extrapolate(results, cores, args.size)
    if args.json:
        Path(args.json).write_text(json.dumps({
            "size": args.size, "methods": methods, "seeds": seeds, "cores": cores,
            "measured": results, **extra}, indent=1, default=str))
    return 0


def extrapolate(results: dict, cores: int, size: int) -> dict:
    """The full grid's makespan from the measured grid's per-cell times (printed; see the
    module docstring): sequential, and on ``cores`` workers in the grid's order, in the
    scheduler's longest-first order by the methods' cost hints, and by the measured times."""
    from types import SimpleNamespace

    from maxrf_bench.scheduler import longest_first

    seq, par = per_method(results["sequential"]["timings"]), per_method(results["processes"]["timings"])
    cells = full_grid_cells(results["sequential"]["timings"], FULL_SEEDS, len(FULL_PRESETS))
    n_cells = sum(c for _, c in cells)
    seq_total = sum(seq.get(r, 0.0) * c for r, c in cells)
    par_times = [(r, par.get(r, seq.get(r, 0.0))) for r, c in cells for _ in range(c)]
    grid_order = list_schedule([t for _, t in par_times], cores)
    lpt = list_schedule(sorted((t for _, t in par_times), reverse=True), cores)
    # the order the scheduler would use with no recorded times (the methods' cost hints)
    prep = SimpleNamespace(rgb=SimpleNamespace(sizes={"y": 512, "x": 512}), elements=[0] * 21)
    units = {}
    for r, _ in cells:
        m = base_method(r)
        units[r] = SimpleNamespace(run_label=r, method=m or SimpleNamespace(cost=None),
                                   params=m.params("fast") if m else {})
    flat = [(prep, units[r], 0) for r, _ in par_times]
    hinted = list_schedule([par_times[i][1] for i in longest_first(flat, list(range(len(flat))))], cores)
    print(f"\n== EXTRAPOLATED full grid ({len(FULL_PRESETS)} presets × {FULL_SEEDS} seeds, {n_cells} cells; "
          f"per-cell times of the measured {size}² grid, not measured)")
    print(f"   sequential:                         {seq_total / 3600:6.2f} h")
    print(f"   processes, grid order (before):     {grid_order / 3600:6.2f} h")
    print(f"   processes, longest first (hints):   {hinted / 3600:6.2f} h")
    print(f"   processes, longest first (times):   {lpt / 3600:6.2f} h")
    rate = results.get("sgemm_gflops")
    if rate:  # machine-neutral: hours at the fixed reference sgemm rate of bench_cost.py
        print(f"   in sgemm-hours (× {rate:.1f} ÷ {REFERENCE_GFLOPS:.0f} GFLOP/s): sequential "
              f"{seq_total / 3600 * rate / REFERENCE_GFLOPS:.2f}, processes {lpt / 3600 * rate / REFERENCE_GFLOPS:.2f}")
    print(f"   measured grid: processes / sequential wall = "
          f"{results['processes']['wall_s'] / results['sequential']['wall_s']:.2f}")
    return {"extrapolated_s": {"sequential": seq_total, "processes_grid_order": grid_order,
                               "processes_hints": hinted, "processes_longest_first": lpt},
            "cells": n_cells}


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
