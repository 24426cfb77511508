"""Wall time of one comparison grid, sequentially and on a 2-worker dask LocalCluster (issue 14).

    flock /tmp/maxrf-cpu.lock .venv/bin/python tests/benchmarks/bench_cluster.py \
        [--methods guided,ssr,cms,lttr] [--datasets sim-demo,sim-virgin] [--preset fast] \
        [--workers 2] [--json PATH]

The same grid (default 4 quick methods × 2 simulated datasets, ``fast``, seed 0) runs
three times in fresh run directories, side by side in one process:

1. ``sequential``: ``maxrf-bench run`` without ``--scheduler`` (cells one after another in
   this process, torch/BLAS with their default threads);
2. ``cluster, cold``: a ``LocalCluster`` of ``--workers`` one-thread worker processes on
   loopback is started (its start-up is timed apart), and the grid runs on it with
   ``--scheduler ADDRESS``; each worker pays its first imports (the plugins) on its first cell;
3. ``cluster, warm``: the same grid once more on the same workers (``--force``, another
   directory), imports already paid;
4. ``sequential, again``: the first run repeated, to show how much the shared machine's
   load moved the figures while the benchmark ran.

Besides wall times, the CPU seconds the cells' processes used (``getrusage`` of this
process, or of the worker processes) are printed: a wall time that grows while the CPU
time does not is time spent waiting for a core (other processes), not extra work.

Printed: each wall time and its ratio to the sequential one, the sum of the cells' own
times (what the cores did) and the longest cell, and the best wall time any schedule of
these cells on ``--workers`` slots could reach (``max(longest cell, sum / workers)``), so
what limits the speed-up can be read off: the cores (2 here), the longest cell (a grid
cannot finish before its slowest cell), the per-cell slow-down when two cells share the
memory bandwidth and caches (sum on the cluster vs sum sequential), the start-up of the
worker processes and their imports, and the other processes of a shared machine (the load
average is printed).  The dataset preparation (simulation) is done once before the timings,
so none of the three pays it.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path


def load_average() -> str:
    try:
        return "load average " + " ".join(f"{x:.1f}" for x in os.getloadavg()) + f" on {os.cpu_count()} CPUs"
    except OSError:
        return ""


def cpu_seconds() -> float:
    """CPU (user + system) seconds this process has used, all its threads."""
    import resource

    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def cell_times(run_dir: Path) -> dict[tuple[str, str], dict]:
    m = json.loads((run_dir / "manifest.json").read_text())
    return {(t["dataset"], t["method"]): t for t in m["timings"]}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--methods", default="guided,ssr,cms,lttr")
    ap.add_argument("--datasets", default="sim-demo,sim-virgin")
    ap.add_argument("--preset", default="fast")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--json", default=None, help="also write the figures here")
    args = ap.parse_args(argv)

    import distributed

    from maxrf_bench.runner import RunConfig, Runner

    methods, datasets = args.methods.split(","), args.datasets.split(",")
    tmp = Path(tempfile.mkdtemp(prefix="bench-cluster-"))

    def config(name: str, **kw) -> RunConfig:
        return RunConfig(methods, datasets, out=tmp / name, preset=args.preset, **kw)

    print(f"grid: {len(methods)} methods ({', '.join(methods)}) × {len(datasets)} datasets "
          f"({', '.join(datasets)}), preset {args.preset}; {load_average()}", flush=True)
    t = time.perf_counter()
    Runner(config("warm-up")).check()  # simulate and prepare the datasets once (cached)
    print(f"dataset preparation (not counted): {time.perf_counter() - t:.1f} s", flush=True)

    walls: dict[str, float] = {}
    cpu: dict[str, float] = {}

    def sequential(name: str) -> None:
        t, c = time.perf_counter(), cpu_seconds()
        Runner(config(name.replace(", ", "-"), force=True)).run()
        walls[name], cpu[name] = time.perf_counter() - t, cpu_seconds() - c
        print(f"{name}: {walls[name]:.1f} s wall, {cpu[name]:.1f} s CPU; {load_average()}", flush=True)

    sequential("sequential")

    t = time.perf_counter()
    with distributed.LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True,
                                  dashboard_address=None, host="127.0.0.1",
                                  scheduler_kwargs={"dashboard_address": ":0"},
                                  silence_logs=logging.ERROR) as cluster:
        startup = time.perf_counter() - t
        print(f"LocalCluster of {args.workers} one-thread workers started in {startup:.1f} s", flush=True)
        with distributed.Client(cluster, set_as_default=False) as client:
            for name, kw in (("cluster, cold", {}), ("cluster, warm", {"force": True})):
                t, c = time.perf_counter(), sum(client.run(cpu_seconds).values())
                Runner(config(name.replace(", ", "-"), scheduler=cluster.scheduler_address, **kw)).run()
                walls[name] = time.perf_counter() - t
                cpu[name] = sum(client.run(cpu_seconds).values()) - c
                print(f"{name}: {walls[name]:.1f} s wall, {cpu[name]:.1f} s CPU of the workers; "
                      f"{load_average()}", flush=True)
    sequential("sequential, again")

    seq = cell_times(tmp / "sequential")
    runs = {"sequential": seq, "cluster, cold": cell_times(tmp / "cluster-cold"),
            "cluster, warm": cell_times(tmp / "cluster-warm"),
            "sequential, again": cell_times(tmp / "sequential-again")}
    print("\nper cell (s)                 " + "  ".join(f"{n:>14}" for n in runs) + "  worker (warm)")
    for key in seq:
        row = "  ".join(f"{runs[n][key]['seconds']:14.1f}" for n in runs)
        print(f"{key[0] + ' / ' + key[1]:28} {row}  {runs['cluster, warm'][key]['worker']}")
    sums = {n: sum(c["seconds"] for c in r.values()) for n, r in runs.items()}
    longest = {n: max(c["seconds"] for c in r.values()) for n, r in runs.items()}
    best = {n: max(longest[n], sums[n] / args.workers) for n in runs}

    print(f"\n{'':24} {'wall s':>8} {'ratio':>7} {'CPU s':>7} {'sum of cells':>13} "
          f"{'longest cell':>13} {'best on ' + str(args.workers) + ' slots':>16}")
    for n in runs:
        ratio = walls["sequential"] / walls[n]
        print(f"{n:24} {walls[n]:8.1f} {ratio:6.2f}x {cpu[n]:7.1f} {sums[n]:13.1f} {longest[n]:13.1f} "
              f"{best[n] if n.startswith('cluster') else float('nan'):16.1f}")
    end_to_end = startup + walls["cluster, cold"]
    print(f"{'cluster start + cold':24} {end_to_end:8.1f} {walls['sequential'] / end_to_end:6.2f}x"
          "   (what `--scheduler processes` costs end to end)")
    print(f"\nspeed-up limits: {args.workers} slots on {os.cpu_count()} CPUs; the longest cell "
          f"({longest['cluster, warm']:.1f} s) against a perfect split of the warm cells "
          f"({sums['cluster, warm'] / args.workers:.1f} s); per-cell slow-down with the cores "
          f"shared: sum {sums['cluster, warm']:.1f} s on the cluster vs {sums['sequential']:.1f} s "
          f"sequentially ({sums['cluster, warm'] / sums['sequential']:.2f}x); worker start "
          f"{startup:.1f} s and first imports (cold − warm: "
          f"{walls['cluster, cold'] - walls['cluster, warm']:.1f} s); {load_average()}")
    figures = {"methods": methods, "datasets": datasets, "preset": args.preset,
               "workers": args.workers, "cpus": os.cpu_count(), "walls_s": walls, "cpu_s": cpu,
               "cluster_startup_s": startup, "sum_of_cells_s": sums, "longest_cell_s": longest,
               "best_possible_s": best, "load_average_end": load_average(),
               "cells": {n: {f"{k[0]} / {k[1]}": v["seconds"] for k, v in r.items()}
                         for n, r in runs.items()}}
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=1))
    return figures


if __name__ == "__main__":
    main(sys.argv[1:])
