"""Load: a grid of 10 simulated datasets × 4 methods (``fast`` presets) in one process, with
the peak resident memory of every cell and the memory left after it (issue 13).

Memory must not grow from cell to cell: every cell's inputs, outputs and the method's
intermediates must be freed when it ends.  The benchmark prints, per cell, its time, the
peak RSS while it ran (sampled every 10 ms) and the RSS after it (after ``gc.collect()``),
then, per method, the slope of the after-cell RSS over the datasets (least squares, MB per
cell, after the first dataset: the first cells pay for imports and caches) and a verdict.
Exit status 1 when some method's RSS grows by more than ``--max-growth`` MB (default 40)
from its second to its last dataset.

Datasets: the simulator's four presets in turn at ``--size`` px (default 128) with seeds
2001–2010: none of them is a scene the results tables use (those are seed 0).
Methods: ``bicubic``, ``guided``, ``cms`` with their ``fast`` presets, and ``proposed``
with the fast preset shortened (``--proposed-iterations`` pre-training iterations, default
400; 40 adversarial ones after 10 of discriminator warm-up, 8 patches a batch; one thread):
a load test, not a quality run.

    flock /tmp/maxrf-cpu.lock .venv/bin/python tests/benchmarks/bench_load.py [--size 128]
"""
from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse  # noqa: E402
import gc  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import psutil  # noqa: E402

import maxrf_bench as mb  # noqa: E402

PRESETS = ["sim-demo", "sim-flowers", "sim-virgin", "sim-isabel"]
METHODS = ["bicubic", "guided", "cms", "proposed"]


class Sampler:
    """Peak RSS of this process while a block runs (a thread samples every ``period`` s)."""

    def __init__(self, period: float = 0.01):
        self.proc, self.period = psutil.Process(), period

    def __enter__(self):
        self.peak = self.proc.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, self.proc.memory_info().rss)
            self._stop.wait(self.period)

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.proc.memory_info().rss)


class MeasuredRunner(mb.Runner):
    """The ordinary runner; every cell is timed and its memory sampled."""

    def __init__(self, *a, **k):
        super().__init__(*a, **k)
        self.records: list[dict] = []

    def run_cell(self, out, prep, unit, seed, worker=None):
        t0 = time.perf_counter()
        with Sampler() as s:
            res = super().run_cell(out, prep, unit, seed, worker)
        gc.collect()
        after = psutil.Process().memory_info().rss
        self.records.append({"dataset": prep.name, "method": unit.method_name,
                             "seconds": time.perf_counter() - t0, "peak_mb": s.peak / 2**20,
                             "after_mb": after / 2**20, "error": res.error})
        return res


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--datasets", type=int, default=10)
    ap.add_argument("--proposed-iterations", type=int, default=400)
    ap.add_argument("--max-growth", type=float, default=40.0)
    ap.add_argument("--out", default=None, help="run directory (default: a temporary one)")
    args = ap.parse_args(argv)

    from maxrf_bench_datasets.simulator import simulate

    with tempfile.TemporaryDirectory(prefix="bench-load-") as tmp:
        tmp = Path(tmp)
        stores = []
        t0 = time.perf_counter()
        for i in range(args.datasets):
            preset, seed = PRESETS[i % len(PRESETS)], 2001 + i
            scan = simulate(preset, seed, size=args.size)
            stores.append(str(mb.save_scan(scan, tmp / f"{preset}-s{seed}.zarr")))
            del scan
        print(f"simulated {len(stores)} scans of {args.size}×{args.size} px in "
              f"{time.perf_counter() - t0:.0f} s", flush=True)
        gc.collect()
        base = psutil.Process().memory_info().rss / 2**20
        cfg = mb.RunConfig(methods=METHODS, datasets=stores, out=Path(args.out or tmp / "run"),
                           preset="fast", metrics=["psnr", "rmse", "ssim"],
                           sets={"proposed": {"pretrain_iterations": args.proposed_iterations,
                                              "adversarial_iterations": 40, "disc_warmup": 10,
                                              "batch_size": 8, "threads": 1}},
                           command=["bench_load.py", *(argv or sys.argv[1:])])
        runner = MeasuredRunner(cfg)
        t0 = time.perf_counter()
        runner.run()
        wall = time.perf_counter() - t0
    recs = runner.records
    print(f"\n{len(recs)} cells in {wall:.0f} s; RSS before the grid {base:.0f} MB\n")
    print(f"{'dataset':<22}{'method':<10}{'seconds':>8}{'peak MB':>9}{'after MB':>10}")
    for r in recs:
        flag = "  FAILED: " + r["error"] if r["error"] else ""
        print(f"{r['dataset']:<22}{r['method']:<10}{r['seconds']:>8.1f}{r['peak_mb']:>9.0f}"
              f"{r['after_mb']:>10.0f}{flag}")
    status = 0
    print(f"\n{'method':<10}{'max peak MB':>12}{'after: 2nd→last MB':>20}{'slope MB/cell':>15}  verdict")
    for m in METHODS:
        rows = [r for r in recs if r["method"] == m]
        after = np.array([r["after_mb"] for r in rows])
        x = np.arange(len(after))
        slope = float(np.polyfit(x[1:], after[1:], 1)[0]) if len(after) > 2 else float("nan")
        growth = float(after[-1] - after[1]) if len(after) > 1 else 0.0
        ok = growth <= args.max_growth
        status |= 0 if ok else 1
        print(f"{m:<10}{max(r['peak_mb'] for r in rows):>12.0f}{after[1]:>9.0f} → {after[-1]:<8.0f}"
              f"{slope:>15.2f}  {'flat' if ok else 'GROWS'}")
    failed = [r for r in recs if r["error"]]
    if failed:
        print(f"\n{len(failed)} cells failed")
        status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
