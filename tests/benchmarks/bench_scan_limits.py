"""What limits a method at short scan times: the noise an exact projection keeps.

For each tuning scene (never a table scene) and operator, the oracle ``Proj(maps_clean; Y↓_t)``
— perfect detail, projected exactly onto the noisy LR scan of time t as the acquisition
protocol synthesises it — against the HR scan's PSNR (dB, against the noise-free truth,
each element normalised by the HR maps' range, as the protocol scores).  For the block mean
it is ``10·log10(t·s²)`` dB above the HR scan: no exactly projected output breaks even below
``t = 1/s²``.  ``bicubic+P`` from the noise-free and the noisy LR scans for scale.  Where the
scan records ``hidden_share``, the HR scan and the oracle also per group (photo-visible /
hidden elements, pooled).

Run:  .venv/bin/python tests/benchmarks/bench_scan_limits.py [--scenes sim-isabel:101:256,sim-virgin:102:128]
      .venv/bin/python tests/benchmarks/bench_scan_limits.py --scenes sim-virgin:102:128 --rescore RUN_DIR
"""
from __future__ import annotations

import argparse
import sys
from fractions import Fraction

import numpy as np

import maxrf_bench as mb
from maxrf_bench.acquisition import parse_scan_times, synthesise_lr


def psnr_of(y: np.ndarray, c: np.ndarray, span: np.ndarray, idx: list[int]) -> float:
    """PSNR (dB) of the elements ``idx`` pooled (normalised by the HR maps' span)."""
    return float(-10 * np.log10(np.mean(((y[idx] - c[idx]) / span[idx]) ** 2)))


def _groups(scan) -> dict[str, list[int]]:
    """Photo-visible and hidden element indices by the scan's ``hidden_share``."""
    from maxrf_bench.trust import HIDDEN_THRESHOLD

    if "hidden_share" not in scan:
        return {}
    hs = scan["hidden_share"].values
    return {"visible": [i for i, v in enumerate(hs) if v < HIDDEN_THRESHOLD],
            "hidden": [i for i, v in enumerate(hs) if v >= HIDDEN_THRESHOLD]}


def rescore(run_dir: str, spec: str) -> int:
    """PSNR (dB) of each saved column of ``run_dir`` against the noise-free truth of the scene
    ``spec``, normalised by that (noisy) scan's span: comparable with its HR scan's line."""
    from pathlib import Path

    import xarray as xr
    from maxrf_bench_datasets.simulator import simulate

    preset, seed, size = spec.split(":")
    scan = simulate(preset, int(seed), size=int(size))
    maps = scan["maps"].values.astype(np.float64)
    c = scan["maps_clean"].values.astype(np.float64)
    span = (maps.max(axis=(1, 2)) - maps.min(axis=(1, 2)))[:, None, None]
    groups = {"all": list(range(c.shape[0])), **_groups(scan)}
    print(f"{spec}: HR scan " + ", ".join(f"{g} {psnr_of(maps, c, span, i):.2f}" for g, i in groups.items()))
    for sr in sorted(Path(run_dir).glob("cells/*/*/sr.zarr")):
        y = xr.open_zarr(sr)["maps"].values.astype(np.float64)
        print(f"  {sr.parent.parent.name} {sr.parent.name}: "
              + ", ".join(f"{g} {psnr_of(y, c, span, i):.2f}" for g, i in groups.items()))
    return 0


def main(argv=None) -> int:
    from maxrf_bench_datasets.simulator import simulate

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scenes", default="sim-isabel:101:256,sim-virgin:102:128")
    ap.add_argument("--scan-times", default="1,1/4,1/16,1/64")
    ap.add_argument("--scale", type=int, default=4)
    ap.add_argument("--rescore", metavar="RUN_DIR", help="instead: score every column's saved maps "
                    "(counts) of a run on the first scene against its noise-free truth, with the "
                    "noisy scan's normalisation, whole cube and per group (e.g. a run of "
                    "--protocol full on a copy of the scan whose maps are maps_clean)")
    args = ap.parse_args(argv)
    if args.rescore:
        return rescore(args.rescore, args.scenes.split(",")[0])
    times = parse_scan_times(args.scan_times)
    for spec in args.scenes.split(","):
        preset, seed, size = spec.split(":")
        scan = simulate(preset, int(seed), size=int(size))
        maps = scan["maps"].values.astype(np.float64)
        c = scan["maps_clean"].values.astype(np.float64)
        span = (maps.max(axis=(1, 2)) - maps.min(axis=(1, 2)))[:, None, None]
        psnr = lambda y: -10 * np.log10(np.mean(((y - c) / span) ** 2))  # noqa: E731
        gain = float(scan.attrs.get("scanner_gain_cv", 0) or 0)
        print(f"{preset} seed {seed} {size}²: HR scan {psnr(maps):.2f} dB")
        groups = _groups(scan)
        if groups:
            print("  groups (hidden_share ≥ 0.3 hidden): " + "; ".join(
                f"{g} {', '.join(scan['element'].values[i] for i in idx)}: HR scan "
                f"{psnr_of(maps, c, span, idx):.2f} dB" for g, idx in groups.items()))
        for name, kw in (("blockmean", {}), ("scan", {"sigma": 0.5})):
            op = mb.make_operator(name, args.scale, **kw)
            up = lambda lr: mb.upsample(np.asarray(lr, np.float32), args.scale, "bicubic").astype(np.float64)  # noqa: E731
            clean_lr = np.asarray(op.down(c), np.float64)
            bic0 = np.asarray(op.project(up(clean_lr), clean_lr), np.float64)
            cells = [f"bicubic+P noise-free LR {psnr(bic0):.2f}"
                     + "".join(f" ({g} {psnr_of(bic0, c, span, idx):.2f})" for g, idx in groups.items())]
            for t in times:
                rng = np.random.default_rng([0, 17, Fraction(t).denominator])
                ylr = synthesise_lr(c, op, t, rng, gain)
                oracle = np.asarray(op.project(c, ylr), np.float64)
                bic = np.asarray(op.project(up(ylr), ylr), np.float64)
                cells.append(f"t={t}: oracle+P {psnr(oracle):.2f}, bicubic+P {psnr(bic):.2f}"
                             + "".join(f", oracle+P {g} {psnr_of(oracle, c, span, idx):.2f}"
                                       for g, idx in groups.items()))
            print(f"  {name}: " + "; ".join(cells), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
