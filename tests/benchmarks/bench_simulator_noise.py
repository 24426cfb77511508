"""Calibrate the simulator's scanner noise against two real repeat scans.

The ``vinca_fresco`` sample (../shared/data) holds two independent scans (``prova1``,
``prova2``) of the same object, 60×120 px, 3 s dwell, two SDD detectors.  For each ROI
element map, the real statistics of the pair (``a``, ``b``) are compared with those of two
simulated repeats drawn by the simulator's scanner model from λ = (a + b)/2:

* ``disp``  = Σ(a−b)² / Σ(a+b)         (1 for pure Poisson counting noise)
* ``flat``  = the same on the 30 % flattest pixels (no positioning effect there)
* ``k``     = excess coefficient of Var = λ + k²λ², fitted on the flat pixels

for three models: Poisson only, Poisson + gain (k), and the default (Poisson + gain +
row jitter).  Run:  .venv/bin/python tests/benchmarks/bench_simulator_noise.py
"""
from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

from maxrf_bench.acquisition import row_jitter
from maxrf_bench_datasets.real import shared_data_dir, vinca_roi_maps
from maxrf_bench_datasets.simulator.scanner import ScannerModel, repeat_statistics


def simulated_pair(lam: np.ndarray, model: ScannerModel, rng: np.random.Generator):
    """Two independent repeats of an expected-count map ``lam`` (y, x) under ``model``
    (beam blur is not re-applied: the real maps already contain it)."""
    out = []
    for _ in range(2):
        x = row_jitter(lam[None].astype(np.float32), rng, model.jitter_px)[0] if model.noise else lam
        if model.gain_cv > 0:
            x = x * np.maximum(1 + model.gain_cv * rng.standard_normal(x.shape), 0)
        out.append(rng.poisson(x).astype(float))
    return out


def compare(data: Path | None = None, seed: int = 0, verbose: bool = True) -> dict:
    """The repeat statistics of both detectors' ROI maps (``data``: the shared data folder,
    default :func:`maxrf_bench_datasets.real.shared_data_dir`)."""
    default = ScannerModel()
    models = {"poisson": replace(default, gain_cv=0.0, jitter_px=0.0),
              "poisson+gain": replace(default, jitter_px=0.0),
              "default": default}
    rng = np.random.default_rng(seed)
    rows = []
    for det in ("10264", "19511"):
        names, a = vinca_roi_maps(f"prova1_{det}", data)
        _, b = vinca_roi_maps(f"prova2_{det}", data)
        a, b = a.astype(float), b.astype(float)
        for i, name in enumerate(names):
            real = repeat_statistics(a[i], b[i])
            lam = (a[i] + b[i]) / 2
            sims = {m: repeat_statistics(*simulated_pair(lam, mod, rng)) for m, mod in models.items()}
            rows.append((det, name, real, sims))
    summary = {}
    for key in ("disp", "flat"):
        field = {"disp": "dispersion", "flat": "dispersion_flat"}[key]
        r = np.array([row[2][field] for row in rows])
        for m in models:
            s = np.array([row[3][m][field] for row in rows])
            summary[f"{key}_{m}_median_ratio"] = float(np.median(s / r))
            summary[f"{key}_{m}_mean_abs_log_ratio"] = float(np.mean(np.abs(np.log(s / r))))
    summary["real_k_median"] = float(np.median([row[2]["k"] for row in rows]))
    if verbose:
        print(f"{'det':6s} {'line':6s} {'mean':>7s} | {'real disp':>9s} {'flat':>5s} {'k':>5s} | "
              f"{'poisson':>7s} {'+gain':>6s} {'default':>7s} (disp) | {'default flat':>12s}")
        for det, name, real, sims in rows:
            print(f"{det:6s} {name:6s} {real['mean']:7.0f} | {real['dispersion']:9.2f} "
                  f"{real['dispersion_flat']:5.2f} {real['k']:5.3f} | {sims['poisson']['dispersion']:7.2f} "
                  f"{sims['poisson+gain']['dispersion']:6.2f} {sims['default']['dispersion']:7.2f}        | "
                  f"{sims['default']['dispersion_flat']:12.2f}")
        print()
        for k, v in summary.items():
            print(f"{k:40s} {v:.3f}")
    return summary


if __name__ == "__main__":
    if vinca_roi_maps() is None:
        print(f"skipped: {shared_data_dir() / 'vinca_fresco'} not present")
        sys.exit(0)
    compare()
