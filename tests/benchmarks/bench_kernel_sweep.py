"""The k sweep of the context-aware generator, on tuning scenes (never a results-table scene).

Trains ``proposed`` (the ``fast`` preset, ``context = photo``) with ``kernel`` k on each
scene and method seed, each run in its own child process (so each peak RSS is its own),
and prints one line per run: PSNR (dB, data range 1, after the method's projection)
against the measured and, where the scan has one, the noise-free truth; bicubic followed
by the projection beside; wall seconds of the whole run and peak RSS.  The ``ctx`` preset
(k = 5) was chosen with

    .venv/bin/python tests/benchmarks/bench_kernel_sweep.py \\
        --scene sim-flowers:101:256 --scene sim-virgin:102:256 --seeds 0,1 --kernels 1,3,5

(2026-12-02, 2 threads; the figures are in ``plugins/proposed/__init__.py``).  A scene is
``PRESET:SEED:SIZE`` (simulated on the fly) or a path to a ``.zarr`` scan.  A table scene
(sim-demo, sim-flowers, sim-virgin, sim-isabel with simulator seed 0) is refused.
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import maxrf_bench as mb

TABLE_SCENES = {"sim-demo", "sim-flowers", "sim-virgin", "sim-isabel"}


def psnr(sr, truth) -> float:
    """The overall PSNR of the registered ``psnr`` metric (the figure Table I shows)."""
    return mb.get_metric("psnr").compute(sr, truth, None, None)[1]


def child(scene: str, k: int, seed: int, threads: int) -> dict:
    from maxrf_bench_plugins.proposed import DEFAULTS, PRESETS, run_proposed

    name, load, source = mb.resolve_dataset(scene)
    prep = mb.prepare_scan(load(), name=name, scale=None, source=source)
    p = {**DEFAULTS, **PRESETS["fast"], "kernel": k, "context": "photo", "threads": threads,
         "checkpoint_seconds": 0.0}
    t = time.perf_counter()
    out = run_proposed(prep.inputs(seed=seed), **p).values
    seconds = time.perf_counter() - t
    up = mb.upsample(prep.maps_lr.values, prep.operator.scale, "bicubic")
    bicp = prep.operator.project(up, prep.maps_lr.values)
    clean = prep.truth_clean
    return {"scene": Path(scene).stem, "k": k, "seed": seed,
            "psnr": round(psnr(out, prep.truth), 4), "bicubic_p": round(psnr(bicp, prep.truth), 4),
            "clean": None if clean is None else round(psnr(out, clean), 4),
            "bicubic_p_clean": None if clean is None else round(psnr(bicp, clean), 4),
            "seconds": round(seconds, 1),
            "rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}


def scene_path(spec: str, tmp: Path) -> str:
    if Path(spec).exists():
        return spec
    try:
        preset, seed, size = spec.split(":")
        seed, size = int(seed), int(size)
    except ValueError:
        raise SystemExit(f"--scene expects PRESET:SEED:SIZE or a .zarr path, found {spec!r}")
    if preset in TABLE_SCENES and seed == 0:
        raise SystemExit(f"{spec}: simulator seed 0 of {preset} is a results-table scene; tune elsewhere")
    from maxrf_bench_datasets.simulator import simulate

    path = tmp / f"{preset}-s{seed}-{size}.zarr"
    mb.save_scan(simulate(preset, seed, size=size), path)
    return str(path)


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scene", action="append", default=None, help="PRESET:SEED:SIZE or SCAN.zarr")
    ap.add_argument("--seeds", default="0,1")
    ap.add_argument("--kernels", default="1,3,5")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--child", nargs=3, metavar=("SCENE", "K", "SEED"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child[0], int(args.child[1]), int(args.child[2]), args.threads)))
        return 0
    seeds = [int(s) for s in args.seeds.split(",")]
    kernels = [int(k) for k in args.kernels.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        for spec in args.scene or ["sim-flowers:101:256"]:
            path = scene_path(spec, Path(tmp))
            for seed in seeds:
                for k in kernels:
                    r = subprocess.run([sys.executable, __file__, "--threads", str(args.threads),
                                        "--child", path, str(k), str(seed)], capture_output=True, text=True)
                    last = r.stdout.strip().splitlines()[-1:] if r.returncode == 0 else None
                    print(last[0] if last else json.dumps({"scene": spec, "k": k, "seed": seed,
                                                           "error": r.stderr.strip().splitlines()[-1:]}),
                          flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
