"""The thinning estimate's row-jitter correction against a Monte-Carlo of the simulator's scanner.

For each scene (never a table scene: tuning seeds), the simulator's noise-free expected counts
``c`` (``maps_clean``) are scanned again and again as the simulator's scanner does (row jitter
of the scan's ``scanner_jitter_px``, or ``--sigma``; the gain excess ``scanner_gain_cv``;
Poisson counting), each scan thinned, and a fixed method run on the input half: bicubic
interpolation of the block-mean LR scan, projected onto it (``bicubic+P``).  Averaged over the
scans, the whole-cube clean MSE (every map normalised by its peak, as the ``psnr`` metric) is
compared with thinning's estimate of it:

* ``raw``: the thinning estimate with no correction for the shared noise;
* ``plug-in``: the jitter's sums taken at the scoring half as it is (the estimator before
  session 12), plus the leak and gain terms;
* ``now``: :func:`maxrf_bench.thinning.shared_noise_correction`'s terms as the protocol adds
  them (the sums with the jitter's mean blur undone and its variance removed).

Prints ``10·log10(true MSE / estimated MSE)`` per row: the estimate's bias in dB of PSNR
(positive: optimistic).  Only the estimator differs between the rows; the scans are the same.

Run:  .venv/bin/python tests/benchmarks/bench_thinning_jitter.py
      [--scenes sim-flowers:101:128,sim-virgin:102:128,sim-isabel:101:128] [--scans 200] [--sigma S]

About 2 min on 2 cores with the defaults.
"""
from __future__ import annotations

import argparse
import math

import numpy as np
from scipy import ndimage as ndi

import maxrf_bench as mb
from maxrf_bench import thinning as th


def plug_in_jitter(sr, half, var, sigma) -> np.ndarray:
    """The jitter's sums at the scoring half as it is, its counting noise removed (before)."""
    h, w = half.shape[-2:]
    kappa = th._jitter_diagonal(h, sigma, 0.0)
    return th._jitter_terms(sr, half, sigma) + np.einsum("i,eiw->e", kappa, var) / (h * w)


def one_scene(preset: str, seed: int, size: int, scans: int, sigma: float | None, scale: int = 4):
    from maxrf_bench_datasets.simulator import simulate
    from maxrf_bench.acquisition import row_jitter

    scan = simulate(preset, seed, size=size)
    c = scan["maps_clean"].values.astype(np.float64)
    jitter = float(scan.attrs["scanner_jitter_px"]) if sigma is None else sigma
    gain = float(scan.attrs["scanner_gain_cv"])
    op = mb.BlockMean(scale)
    n_el, h, w = c.shape
    weight = 1.0 / c.reshape(n_el, -1).max(axis=1) ** 2        # per map: ÷ peak², as psnr
    rng = np.random.default_rng([seed, 12])
    sums = np.zeros((5, n_el))                                  # true, raw, leak + gain, plug-in, now
    for _ in range(scans):
        mu = row_jitter(c, rng, jitter)
        mu = mu * np.maximum(1 + gain * rng.standard_normal(mu.shape), 0)
        a, b = th.split_counts(rng.poisson(mu), rng)
        lr = op.down(2 * a)
        up = ndi.zoom(lr, (1, scale, scale), order=3, mode="nearest")[:, :h, :w]
        sr = np.asarray(op.project(up, lr), np.float64)
        half, var = 2 * b, 4 * b
        now, _ = th.jitter_correction(sr, half, var, jitter)
        other = th.jitter_leak(half, var, jitter, op) + th.gain_correction(b, np.ones(n_el), gain, scale)
        sums += np.stack([((sr - c) ** 2).mean(axis=(1, 2)), ((sr - half) ** 2 - var).mean(axis=(1, 2)),
                          other, plug_in_jitter(sr, half, var, jitter), now])
    true, raw, other, plug, now = (x @ weight for x in sums)
    bias = lambda est: 10 * math.log10(true / est)  # noqa: E731
    return jitter, {"raw": bias(raw), "plug-in": bias(raw + other + plug), "now": bias(raw + other + now)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scenes", default="sim-flowers:101:128,sim-virgin:102:128,sim-isabel:101:128",
                    help="preset:seed:size, comma-separated (tuning seeds, never a table scene)")
    ap.add_argument("--scans", type=int, default=200)
    ap.add_argument("--sigma", type=float, default=None, help="row jitter std (px); default: the scan's")
    args = ap.parse_args(argv)
    print(f"{'scene':24s} {'σ px':>5s} {'raw':>8s} {'plug-in':>8s} {'now':>8s}   (bias, dB; {args.scans} scans each)")
    for spec in args.scenes.split(","):
        preset, seed, size = spec.split(":")
        jitter, b = one_scene(preset, int(seed), int(size), args.scans, args.sigma)
        print(f"{preset + '-' + seed + ' ' + size + '²':24s} {jitter:5.2f} {b['raw']:+8.3f} {b['plug-in']:+8.3f} {b['now']:+8.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
