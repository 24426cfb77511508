"""Where ``+W`` takes the LR counting noise's variance: at the measured counts or at ``U(Ŷ)``.

``+W`` (ours, :mod:`maxrf_bench.noise`) shrinks each LR pixel's correction by
``g = τ²/(τ² + σ²)``.  Version 1 plugged the measured LR counts into the Poisson variance
``σ² = N/k``: a pixel that happens to count 0 gets ``σ² = 0`` and the full correction, so on
short scans ``+W`` pulled the output towards the zero-count pixels.  Version 2 (the default)
evaluates the variance at the method's own LR estimate ``U(Ŷ)``.

For each tuning scene (never a table scene; ``--scenes preset:seed:size``) this runs
``bicubic`` and ``guided`` (deterministic, seconds) under ``--protocol acquisition`` and scores
each raw output four ways against the noise-free truth: raw, ``+P``, ``+W`` with the measured
counts' variance (version 1) and ``+W`` with ``U(Ŷ)``'s (version 2), with the share of LR pixels
that count 0.  Only post-processing differs between the columns; nothing is trained.

Run:  .venv/bin/python tests/benchmarks/bench_weighted_variance.py
      [--scenes sim-flowers:101:256,sim-virgin:102:256,sim-isabel:101:256] [--scan-times 1,1/4,1/16,1/64]
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from fractions import Fraction
from functools import partial
from pathlib import Path

import numpy as np


def rescore(run_dir: Path) -> list[tuple[str, str, float, dict[str, float]]]:
    """Per cell of ``run_dir``: (scan time tag, method, zero-count share, PSNR per column)."""
    from maxrf_bench import rundir
    from maxrf_bench.noise import lr_noise_variance, weighted_projection
    from maxrf_bench.scoring import evaluate

    rows = []
    for record in sorted(run_dir.glob(f"cells/*/*/*/{rundir.CELL_RECORD}")):
        cell = record.parent
        key = cell.parent.parent.name
        prep = rundir.load_prepared(run_dir, key)
        sr = np.asarray(rundir.read_raw(cell), np.float64)
        lr = np.asarray(prep.maps_lr.values, np.float64)
        op = prep.operator
        outs = {"raw": sr, "+P": op.project(sr, lr),
                "+W v1 (measured)": weighted_projection(sr, op, lr, lr_noise_variance(prep)),
                "+W v2 (U(Ŷ))": weighted_projection(sr, op, lr, partial(lr_noise_variance, prep))}
        psnr = {k: evaluate(v.astype(np.float32), prep, ["psnr"])["clean"]["psnr"]["all"] for k, v in outs.items()}
        counts = lr * np.asarray(prep.span)[:, None, None] + np.asarray(prep.offset)[:, None, None]
        rows.append((key.split("@")[-1], cell.parent.name, float(np.mean(counts <= 0)), psnr))
    return rows


def _time(tag: str) -> Fraction:
    """``acquisition-1_16`` → 1/16."""
    return Fraction(tag.split("-", 1)[-1].replace("_", "/"))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scenes", default="sim-flowers:101:256,sim-virgin:102:256,sim-isabel:101:256")
    ap.add_argument("--scan-times", default="1,1/4,1/16,1/64")
    args = ap.parse_args(argv)
    exe = [sys.executable, "-m", "maxrf_bench.cli"]
    with tempfile.TemporaryDirectory(prefix="bench-w-") as tmp:
        for spec in args.scenes.split(","):
            preset, seed, size = spec.split(":")
            scan, run = Path(tmp) / f"{preset}-{seed}.zarr", Path(tmp) / f"{preset}-{seed}-run"
            subprocess.run([*exe, "simulate", "-p", preset, "--seed", seed, "--size", size, "-o", scan],
                           check=True, capture_output=True)
            subprocess.run([*exe, "-q", "run", "-m", "bicubic,guided", "-d", scan, "--protocol",
                            "acquisition", "--scan-times", args.scan_times, "-o", run],
                           check=True, capture_output=True)
            print(f"\n{spec} (tuning scene), PSNR dB against the noise-free truth")
            header = None
            for tag, method, zero, psnr in sorted(rescore(run), key=lambda r: (-_time(r[0]), r[1])):
                if header is None:
                    header = list(psnr)
                    print(f"{'t':>10} {'method':8} {'zero LR':>7} " + " ".join(f"{h:>17}" for h in header)
                          + f" {'v2 − v1':>8} {'v2 − raw':>8}")
                t = str(_time(tag))
                print(f"{t:>10} {method:8} {zero:7.2f} " + " ".join(f"{psnr[h]:17.2f}" for h in header)
                      + f" {psnr['+W v2 (U(Ŷ))'] - psnr['+W v1 (measured)']:+8.2f}"
                      + f" {psnr['+W v2 (U(Ŷ))'] - psnr['raw']:+8.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
