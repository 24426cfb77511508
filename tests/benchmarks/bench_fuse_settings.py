"""How ``+F`` (ours) should weigh the short-dwell scan: a sweep over its window and a noise
margin on the finished cells of an ``--acquire dwell`` run of a **tuning scene** (never a
table scene).

``+F`` keeps ``F = S + w(Y − S)`` with ``w = d²/(d² + σ²)`` and ``d²`` the local detail variance
``G_window * ((Y − S)² − σ²)``.  The local estimate is itself noisy: where ``S`` is right
(``d² = 0``), half the windows still estimate ``d² > 0`` and let the scan's noise through, which
costs the weak maps.  ``margin`` κ subtracts ``(1 + κ)σ²`` instead of ``σ²``; ``base`` fuses the
raw output or the ``+W`` output.  Printed per setting: the mean per-map PSNR (dB, against the
noise-free truth) over maps, scan times and methods, and how often (of the map × time × method
cases) ``F`` is more than 0.1 dB below the better of its two parts (``S`` or the scan), and the
whole-cube PSNR (pooled MSE, where the weak maps weigh most) averaged over scan times and
methods.  ``domain``: ``counts`` is ``+F`` version 1 (the counts with ``σ² = c/t + (g·c)²``),
``anscombe`` version 2, the default (:func:`maxrf_infer.fuse.fuse_counts`).

Run:  .venv/bin/python tests/benchmarks/bench_fuse_settings.py RUN_DIR [--windows 2,3,5] [--margins 0,0.5,1,2]
(RUN_DIR: e.g. ``maxrf-bench run -m 'bicubic+F,guided+F,proposed+F[preset=ctx-quickscan]'
-d sim-virgin@seed102 … --protocol acquisition --acquire dwell``; the tuning scenes of
docs/noise.md are sim-virgin seed 102 and sim-isabel seed 101 at 256².)
"""
from __future__ import annotations

import argparse
import itertools
import sys

import numpy as np


def main(argv=None) -> int:
    from maxrf_bench import rundir
    from maxrf_bench.noise import (count_time, dwell_noise_variance, fuse_dwell, lr_noise_variance,
                                   weighted_projection)
    from maxrf_bench.rundir import read_manifest
    from maxrf_infer.fuse import fuse_counts

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_dir")
    ap.add_argument("--windows", default="2,3,5")
    ap.add_argument("--margins", default="0,0.5,1,2")
    a = ap.parse_args(argv)
    manifest = read_manifest(a.run_dir)
    keys = [k for k in manifest["inputs"] if "@acquisition-" in k]
    raw_runs = sorted({c["run"] for c in manifest["columns"].values()})
    settings = list(itertools.product(("anscombe", "counts"), ("raw", "W"),
                                      [float(w) for w in a.windows.split(",")],
                                      [float(m) for m in a.margins.split(",")]))
    db = {s: [] for s in settings}
    pooled = {s: [] for s in settings}
    worse = {s: 0 for s in settings}
    for key in keys:
        prep = rundir.load_prepared(a.run_dir, key)
        truth = np.asarray(prep.truth_clean, np.float64)
        y = np.asarray(prep.maps_dwell, np.float64)

        def psnr(x):
            return -10 * np.log10(((x - truth) ** 2).mean(axis=(1, 2)))

        for run in raw_runs:
            base = rundir.RunDir(a.run_dir).run_folder(key, run)
            cell = next(p for p in sorted(base.iterdir()) if (p / "sr.zarr").exists())
            raw = np.asarray(rundir.read_raw(cell), np.float64)
            parts = {"raw": raw, "W": weighted_projection(raw, prep.operator, prep.maps_lr.values,
                                                          lambda lr: lr_noise_variance(prep, lr))}
            off, span = prep.offset[:, None, None], prep.span[:, None, None]
            gain = float(prep.scan.attrs.get("scanner_gain_cv", 0.0) or 0.0)
            for setting in settings:
                domain, part, window, margin = setting
                s = parts[part]
                if domain == "counts":
                    f = fuse_dwell(s, y, dwell_noise_variance(prep, s), window, margin)
                else:
                    f = (fuse_counts(s * span + off, y * span + off, count_time(prep), gain, window,
                                     margin) - off) / span
                p = psnr(f)
                db[setting].append(p)
                pooled[setting].append(-10 * np.log10(((f - truth) ** 2).mean()))
                worse[setting] += int((p < np.maximum(psnr(s), psnr(y)) - 0.1).sum())
    n = sum(len(x) for x in next(iter(db.values())))
    print(f"{a.run_dir}: {len(keys)} scan times × {len(raw_runs)} methods, {n} map cases")
    print(f"{'domain':>8} {'base':>4} {'window':>6} {'margin':>6} {'mean dB':>8} {'F < both':>9} {'cube dB':>8}")
    for s in settings:
        print(f"{s[0]:>8} {s[1]:>4} {s[2]:>6g} {s[3]:>6g} {np.mean(np.concatenate(db[s])):>8.3f} "
              f"{worse[s]:>9} {np.mean(pooled[s]):>8.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
