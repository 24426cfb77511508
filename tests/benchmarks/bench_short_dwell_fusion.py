"""Feasibility (ours, not a method yet): one short-dwell HR scan serving both ways of scanning
faster, fused per pixel by its known counting noise.

With the block mean a short-dwell HR scan (the HR step, t× the dwell) contains the coarse scan of
the same time: its block means.  This takes one short-dwell scan of a tuning scene (never a table
scene), super-resolves its block means with ``bicubic+P`` (the simplest column; any method could
stand there) and fuses the result ``S`` with the scan's own HR pixels ``Y``:

    F = S + w ⊙ (Y − S),     w = d² / (d² + σ²)

``σ²`` is the counting variance of each HR pixel (``max(S, 0)/t`` in HR-dwell units: Poisson,
known from the counts, evaluated at the smooth estimate as ``+W`` does), ``d²`` the variance of
the detail ``Y − S`` misses, estimated from the data as ``E[(Y − S)²] − σ²`` either once per map
(``global``) or in a Gaussian window of ``--window`` px (``local``).  Per element map, PSNR (dB)
against the noise-free truth (normalised as the acquisition protocol scores) of the HR scan (dwell
1), the short-dwell pixels, the binned ``bicubic+P`` and the two fusions.

Run:  .venv/bin/python tests/benchmarks/bench_short_dwell_fusion.py [--scene sim-virgin:102:256] [--window 3]
"""
from __future__ import annotations

import argparse
import sys

import numpy as np
from scipy.ndimage import zoom


def main(argv=None) -> int:
    from bench_lr_jitter import tuning_scene  # a sibling script: run from tests/benchmarks/'s parent
    from maxrf_bench.acquisition import _render, short_dwell_scan, time_text
    from maxrf_bench.noise import fuse_dwell
    from maxrf_bench.operators import make_operator

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scene", default="sim-virgin:102:256")
    ap.add_argument("--times", default="0.25,0.0625")
    ap.add_argument("--window", type=float, default=3.0)
    a = ap.parse_args(argv)
    scan, c, maps, span, gain, jitter = tuning_scene(a.scene)
    els = [str(e) for e in scan["element"].values]
    op = make_operator("blockmean", 4)

    def psnr(y):
        return -10 * np.log10((((y - c) / span) ** 2).mean(axis=(1, 2)))

    def fuse(y, s, var, local):
        if local:  # what +F does (maxrf_bench.noise.fuse_dwell)
            return fuse_dwell(s, y, var, a.window)
        d2 = np.maximum(((y - s) ** 2 - var).mean(axis=(1, 2)), 0)[:, None, None]
        return s + d2 / (d2 + var + 1e-12) * (y - s)

    order = np.argsort(-span[:, 0, 0])
    for t in (float(x) for x in a.times.split(",")):
        y = short_dwell_scan(c, t, np.random.default_rng(3), gain, jitter)
        lr = np.asarray(op.down(y))
        s = op.project(np.stack([zoom(m, op.scale, order=3, mode="nearest") for m in lr]), lr)
        var = np.maximum(s, 0) / t
        cols = {"HR scan": maps, "short dwell": y, "binned bicubic+P": s,
                "fused (global d²)": fuse(y, s, var, False), f"fused (local d², {a.window:g} px)": fuse(y, s, var, True)}
        db = {k: psnr(v) for k, v in cols.items()}
        rows = [[els[i], f"{span[i, 0, 0]:.0f}", *[f"{db[k][i]:.1f}" for k in cols]] for i in order]
        print(_render(f"{a.scene}, t = {time_text(t)}: PSNR (dB) per element map against the noise-free truth",
                      ["map", "span (counts)", *cols], rows, False))
        print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
