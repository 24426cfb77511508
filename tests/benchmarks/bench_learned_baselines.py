"""``fast`` against ``paper`` for the learned self-supervised baselines (PSNR, seconds, RSS).

    .venv/bin/python tests/benchmarks/bench_learned_baselines.py [DATASET] [PRESETS] [METHODS]
        [--threads N] [--log FILE.jsonl] [--reuse]

defaults: ``sim-demo fast,paper mmsr,cs2dips,ssgnet`` (any registered method names
work).  Every (method, preset) runs in its own subprocess so that its peak resident
memory is its own; the table prints, per method, seconds and PSNR (dB, the method's own
output and with the host's projection ``+P``) for each preset side by side, the difference
to the first preset, and bicubic measured in the same way.  ``paper`` presets are long
(hours on a CPU); run ``fast`` alone first.  Timings on a shared machine are inflated by
CPU contention: run it under ``flock /tmp/maxrf-cpu.lock`` and compare ratios.
``--log`` appends every result as a JSON line; with ``--reuse`` a (method, preset, dataset)
already in the log is not run again (so a ``paper`` run of hours is done once).
"""
from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time


def run_one(method: str, preset: str, dataset: str, threads: int) -> dict:
    """One run in this process: the JSON line the parent reads."""
    import numpy as np
    import torch

    import maxrf_bench as mb

    if threads > 0:
        torch.set_num_threads(threads)
    name, load, _ = mb.resolve_dataset(dataset)
    prep = mb.prepare_scan(load(), name=name, scale=4)
    truth = prep.truth

    def psnr(a):
        return float(-20 * np.log10(np.sqrt(np.mean((np.asarray(a, float) - truth) ** 2))))

    m = mb.get_method(method)
    start = time.time()
    out = np.asarray(getattr(r := m.run(prep.inputs(seed=0), **m.params(preset)), "values", r))
    secs = time.time() - start
    proj = prep.operator.project(out, prep.maps_lr.values)
    return {"method": method, "preset": preset, "dataset": name, "shape": list(out.shape),
            "seconds": round(secs, 1), "psnr": round(psnr(out), 3), "psnr_p": round(psnr(proj), 3),
            "finite": bool(np.isfinite(out).all()),
            "rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6, 3),
            "threads": torch.get_num_threads()}


def main(argv: list[str]) -> None:
    threads = 0
    if "--threads" in argv:
        i = argv.index("--threads")
        threads = int(argv[i + 1])
        argv = argv[:i] + argv[i + 2:]
    log, reuse = None, False
    if "--log" in argv:
        i = argv.index("--log")
        log = argv[i + 1]
        argv = argv[:i] + argv[i + 2:]
    if "--reuse" in argv:
        argv.remove("--reuse")
        reuse = True
    if argv and argv[0] == "--one":
        print("RESULT " + json.dumps(run_one(argv[1], argv[2], argv[3], threads)), flush=True)
        return
    dataset = argv[0] if argv else "sim-demo"
    presets = (argv[1] if len(argv) > 1 else "fast,paper").split(",")
    methods = (argv[2] if len(argv) > 2 else "mmsr,cs2dips,ssgnet").split(",")
    rows: dict = {}
    done: dict = {}
    if reuse and log and os.path.exists(log):
        with open(log) as fh:
            for text in fh:
                r = json.loads(text)
                done[(r["method"], r["preset"], r["dataset"])] = r
    for method in ["bicubic"] + [m for m in methods if m != "bicubic"]:
        for preset in (presets if method != "bicubic" else [presets[0]]):
            key = (method, preset, dataset)
            if key in done:
                rows[(method, preset)] = r = done[key]
                print(f"{method:8s} {preset:6s} {r['seconds']:8.1f} s  PSNR {r['psnr']:6.2f} dB  "
                      f"+P {r['psnr_p']:6.2f} dB  peak RSS {r['rss_gb']:.2f} GB  (from {log})", flush=True)
                continue
            cmd = [sys.executable, __file__, "--one", method, preset, dataset, "--threads", str(threads)]
            proc = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ))
            line = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
            if proc.returncode or not line:
                print(f"{method} {preset}: failed (exit {proc.returncode})\n{proc.stderr[-2000:]}",
                      flush=True)
                continue
            r = json.loads(line[-1][7:])
            r["dataset"] = dataset
            rows[(method, preset)] = r
            if log:
                with open(log, "a") as fh:
                    fh.write(json.dumps(r) + "\n")
            print(f"{method:8s} {preset:6s} {r['seconds']:8.1f} s  PSNR {r['psnr']:6.2f} dB  "
                  f"+P {r['psnr_p']:6.2f} dB  peak RSS {r['rss_gb']:.2f} GB  "
                  f"({r['dataset']} {r['shape']}, {r['threads']} threads)", flush=True)
    base = rows.get(("bicubic", presets[0]))
    print(f"\n{dataset}: " + " | ".join(f"{p}: s, dB, +P dB" for p in presets)
          + (f"   (bicubic {base['psnr']:.2f} dB)" if base else ""))
    for method in methods:
        cells, first = [], None
        for preset in presets:
            r = rows.get((method, preset))
            if r is None:
                cells.append("—")
                continue
            first = first or r
            delta = f" (Δ {r['psnr'] - first['psnr']:+.2f} dB, ×{r['seconds'] / max(first['seconds'], 1e-9):.1f} time)" \
                if r is not first else ""
            cells.append(f"{r['seconds']:.0f} s, {r['psnr']:.2f}, {r['psnr_p']:.2f}{delta}")
        print(f"  {method:8s} " + " | ".join(cells))


if __name__ == "__main__":
    main(sys.argv[1:])
