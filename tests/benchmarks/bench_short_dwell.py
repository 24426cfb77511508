"""The other way to scan faster: keep the HR step and shorten the dwell.

``--protocol acquisition`` asks how much coarser (and so faster) a scan may be when a
photograph helps super-resolve it.  A scanner can also cover the painting faster at the HR
step with a shorter dwell per pixel (the stage moves faster): the maps keep their resolution
and get noisier.  For each acquisition run directory, per element map and scan time t, this
prints the PSNR (dB, against the noise-free truth, normalised as the protocol scores) of

* an HR scan of dwell t, synthesised from the run's own noise-free truth with the scanner's
  recorded noise (Poisson counts, the gain excess ``scanner_gain_cv`` and the row jitter
  ``scanner_jitter_px``, as the simulator scans), mean of ``--draws`` noise draws;
* the best column of the run at that t for that map (mean over its method seeds);

and which of the two acquisitions wins.  At t = 1 the first is a fresh HR scan: compare it with
the run's HR reference to see the synthesis agrees with the simulator.

Run:  .venv/bin/python tests/benchmarks/bench_short_dwell.py RUN_DIR[,RUN_DIR…] [--markdown]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import xarray as xr


def short_dwell(clean: np.ndarray, t: float, rng, gain_cv: float, jitter_px: float) -> np.ndarray:
    """An HR scan of ``t`` times the HR dwell, in counts per HR dwell."""
    from maxrf_bench_datasets.simulator.scanner import row_jitter

    lam = row_jitter(clean, rng, jitter_px) * t
    if gain_cv > 0:
        lam = lam * np.maximum(1 + gain_cv * rng.standard_normal(lam.shape), 0)
    return rng.poisson(np.maximum(lam, 0)) / t


def main(argv=None) -> int:
    from maxrf_bench.acquisition import _render, element_psnr, map_curve, time_text
    from maxrf_bench.results import read_results

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs")
    ap.add_argument("--draws", type=int, default=2)
    ap.add_argument("--markdown", action="store_true")
    a = ap.parse_args(argv)
    for d in a.runs.split(","):
        d = Path(d)
        m = json.loads((d / "manifest.json").read_text())
        res = read_results(d)
        for ds, info in m["acquisition"].items():
            inp = next(p for p in sorted((d / "inputs").glob(f"{ds}@acquisition-*.zarr")))
            scan = xr.open_zarr(inp)
            off = np.asarray(scan.attrs["offset"], np.float64)[:, None, None]
            span = np.asarray(scan.attrs["span"], np.float64)[:, None, None]
            cn = scan["maps_clean"].values.astype(np.float64)
            clean = cn * span + off
            gain = float(scan.attrs.get("scanner_gain_cv", 0) or 0)
            jitter = float(scan.attrs.get("scanner_jitter_px", 0) or 0)
            els = [str(e) for e in scan["element"].values]
            times = sorted(info["scan_times"], reverse=True)
            ref = info["reference"]["psnr_elements"]
            acc = element_psnr(res, ds)
            hr = {}
            for t in times:
                per = []
                for k in range(a.draws):
                    y = (short_dwell(clean, t, np.random.default_rng([k, round(1 / t)]), gain, jitter) - off) / span
                    per.append(-10 * np.log10(((y - cn) ** 2).mean(axis=(1, 2))))
                hr[t] = np.mean(per, axis=0)
            rows = []
            for i in sorted(range(len(els)), key=lambda i: -span[i, 0, 0]):
                e = els[i]
                cells = []
                for t in times:
                    best = max((dict(zip(*map_curve(by_t, e))).get(t, -np.inf) for by_t in acc.values()),
                               default=-np.inf)
                    win = "dwell" if hr[t][i] > best else "SR"
                    cells.append(f"{hr[t][i]:.1f} / {best:.1f} ({win})")
                rows.append([e, f"{span[i, 0, 0]:.0f}", f"{ref[e]:.1f}", *cells])
            caption = (f"{d.name}: {ds}, operator {info['operator']['name']}: per element map, PSNR (dB) of an "
                       f"HR scan of dwell t (same step, {a.draws} draws) / the best column at t, and which "
                       "acquisition wins; 'HR scan' is the run's reference (dwell 1)")
            print(_render(caption, ["map", "span (counts)", "HR scan", *[f"t={time_text(t)}" for t in times]],
                          rows, a.markdown))
            print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
