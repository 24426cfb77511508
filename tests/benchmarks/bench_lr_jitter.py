"""What the acquisition protocol leaves out: the stage's row jitter in the synthetic LR scans.

The simulator's HR scan (the reference line of ``--protocol acquisition``) carries the
scanner's row jitter (``scanner_jitter_px``, 0.15 px: each row lands off its line); the
protocol's LR scans are synthesised from the expected counts with Poisson noise and the gain
excess only.  A coarse scan on the same stage would be jittered too: each LR row's whole
footprint lands ``σ·z`` HR px off.  This measures what that leaves out, on a tuning scene
(never a table scene): the LR scan's own error against the noise-free LR with and without the
jitter, and ``bicubic+P`` from each (3 noise draws each), per operator and scan time; for the
block mean also the block means of an HR-step scan of t× the dwell (``short_dwell_scan``): the
coarse scan that a short-dwell scan contains.

The jittered LR row is exact for the simulator's linear row interpolation: with the row shift
``δ = i0 + f`` (``i0`` integer), ``U(shift_δ c) = (1 − f)·U(shift_i0 c) + f·U(shift_i0+1 c)``
(the operator is linear), taken at that LR row.

Run:  .venv/bin/python tests/benchmarks/bench_lr_jitter.py [--scene sim-virgin:102:256]
"""
from __future__ import annotations

import argparse
import sys
from fractions import Fraction

import numpy as np
from scipy.ndimage import zoom


def _shift(c: np.ndarray, k: int) -> np.ndarray:
    h = c.shape[-2]
    return c[..., np.clip(np.arange(h) + k, 0, h - 1), :]


def lr_scan(c, op, t: Fraction, rng, gain_cv: float, jitter_px: float) -> np.ndarray:
    """An LR scan of time ``t`` (counts per HR dwell), each LR row jittered by ``jitter_px``."""
    k = float(t) * op.scale ** 2
    if jitter_px > 0:
        z = jitter_px * rng.standard_normal(c.shape[-2] // op.scale)
        i0 = np.floor(z).astype(int)
        f = z - i0
        downs = {j: np.asarray(op.down(_shift(c, j))) for j in range(i0.min(), i0.max() + 2)}
        lam = np.stack([(1 - f[i]) * downs[i0[i]][:, i] + f[i] * downs[i0[i] + 1][:, i]
                        for i in range(len(z))], axis=1)
    else:
        lam = np.asarray(op.down(c))
    lam = lam * k * np.maximum(1 + gain_cv * rng.standard_normal(lam.shape), 0)
    return rng.poisson(np.maximum(lam, 0)) / k


def tuning_scene(spec: str):
    """``PRESET:SEED:SIZE`` simulated: the scan, its noise-free counts, its HR maps, their span
    (as the protocol normalises), the scanner's gain excess and row jitter."""
    from maxrf_bench_datasets.simulator import simulate

    preset, seed, size = spec.split(":")
    scan = simulate(preset, int(seed), size=int(size))
    c = scan["maps_clean"].values.astype(np.float64)
    maps = scan["maps"].values.astype(np.float64)
    span = (maps.max(axis=(1, 2)) - maps.min(axis=(1, 2)))[:, None, None]
    return (scan, c, maps, span, float(scan.attrs["scanner_gain_cv"]),
            float(scan.attrs["scanner_jitter_px"]))


def main(argv=None) -> int:
    from maxrf_bench.acquisition import short_dwell_scan
    from maxrf_bench.operators import make_operator

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scene", default="sim-virgin:102:256")
    a = ap.parse_args(argv)
    scan, c, maps, span, gain, jitter = tuning_scene(a.scene)

    def psnr(y, ref):
        return float(-10 * np.log10(np.mean(((y - ref) / span) ** 2)))

    print(f"{a.scene}: HR scan {psnr(maps, c):.2f} dB (with the stage's {jitter} px row jitter)")
    print("operator   t     bicubic+P: no jitter  jittered  Δ      LR scan vs noise-free LR: no jitter  jittered"
          "  binned short-dwell HR scan")
    for name, kw in (("blockmean", {}), ("scan", {"sigma": 0.5})):
        op = make_operator(name, 4, **kw)
        clean_lr = np.asarray(op.down(c))
        for t in (Fraction(1), Fraction(1, 4), Fraction(1, 16)):
            res = []
            for jit in (0.0, jitter):
                vals = []
                for rep in range(3):
                    lr = lr_scan(c, op, t, np.random.default_rng([rep, t.denominator]), gain, jit)
                    up = np.stack([zoom(m, op.scale, order=3, mode="nearest") for m in lr])
                    vals.append((psnr(op.project(up, lr), c), psnr(lr, clean_lr)))
                res.append(np.mean(vals, axis=0))
            # the HR step with t× the dwell, its blocks averaged: the block mean's LR scan of time t
            binned = np.mean([psnr(np.asarray(op.down(short_dwell_scan(
                c, float(t), np.random.default_rng([rep, 9, t.denominator]), gain, jitter))), clean_lr)
                for rep in range(3)]) if name == "blockmean" else float("nan")
            print(f"{name:10} {str(t):5} {res[0][0]:20.3f} {res[1][0]:9.3f} {res[1][0] - res[0][0]:+6.3f} "
                  f"{res[0][1]:36.2f} {res[1][1]:9.2f} {binned:28.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
