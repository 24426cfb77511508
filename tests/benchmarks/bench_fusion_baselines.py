"""Time and score the HSI–MSI fusion baselines (cstf, cms, lttr) against bicubic.

    .venv/bin/python tests/benchmarks/bench_fusion_baselines.py [DATASET] [PRESET] [METHODS]

defaults: ``sim-flowers fast cstf,cms,lttr`` (512 × 512 × 21 at scale 4).  Prints, per
method, the wall time, its ratio to the 10-minute budget of issue 5, PSNR and the gain
over bicubic measured in the same process, and the peak resident memory so far.
Timings on a shared machine are inflated by CPU contention: compare ratios.
"""
from __future__ import annotations

import resource
import sys
import time

import numpy as np

import maxrf_bench as mb


def main(argv: list[str]) -> None:
    dataset = argv[0] if argv else "sim-flowers"
    preset = argv[1] if len(argv) > 1 else "fast"
    methods = (argv[2] if len(argv) > 2 else "cstf,cms,lttr").split(",")
    name, load, _ = mb.resolve_dataset(dataset)
    prep = mb.prepare_scan(load(), name=name, scale=4)
    truth = prep.truth

    def psnr(a):
        return float(-20 * np.log10(np.sqrt(np.mean((np.asarray(a, float) - truth) ** 2))))

    base = psnr(mb.upsample(prep.maps_lr.values, prep.operator.scale, "bicubic"))
    print(f"{name}: {prep.maps_lr.shape} LR, bicubic PSNR {base:.2f} dB", flush=True)
    for m in methods:
        method = mb.get_method(m)
        params = method.params(preset)
        start = time.time()
        out = method.run(prep.inputs(seed=0), **params)
        secs = time.time() - start
        p = psnr(getattr(out, "values", out))
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
        print(f"{m:5s} {preset}: {secs:7.1f} s ({secs / 600:.2f} of 10 min), PSNR {p:.2f} dB "
              f"({p - base:+.2f} vs bicubic), peak RSS {rss:.2f} GB", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
