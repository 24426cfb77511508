"""Time and peak memory of ``car``, ``hat`` and ``swin2sr`` at their released size (issue 11).

    flock /tmp/maxrf-cpu.lock .venv/bin/python tests/benchmarks/bench_sisr.py \
        [--size 512] [--elements 21] [--methods car,hat,swin2sr] [--threads 1] [--tile 256]

No released weights exist on these machines, so each network is built at the size of the
file the ``paper`` preset names, with random weights (the cost of a forward pass does not
depend on the values), and saved in the release layout:

* ``car``: EDSR 32 blocks × 256 features, ×4 (CAR's ``run.py``: ``EDSR(32, 256, scale)``);
* ``hat``: HAT as ``options/test/HAT_SRx4_ImageNet-pretrain.yml`` (embed 180, 6 × 6 blocks,
  6 heads, window 16, mlp 2, compress 3, squeeze 30, 64 upsampler features);
* ``swin2sr``: Swin2SR as ``main_test_swin2sr.py --task classical_sr --scale 4
  --training_patch_size 64`` (embed 180, 6 × 6 blocks, 6 heads, window 8, mlp 2).

Each method then runs in its own child process (so its peak RSS is its own) on
``--elements`` random LR maps of ``size/4`` pixels square (an HR scan of ``--size``²), the
way the host calls it (``run(inputs, **paper preset)``: weights loading included), with
``--threads`` torch threads.  Printed: wall seconds, seconds per element, the RSS after
the imports and the peak RSS (``ru_maxrss``) of the child.  The machine's CPU may be
shared: the load average is printed next to the figures.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

SCALE = 4


def load_average() -> str:
    try:
        return "load average " + " ".join(f"{x:.1f}" for x in os.getloadavg()) + f" on {os.cpu_count()} CPUs"
    except OSError:
        return ""


def build_checkpoint(method: str, path: Path) -> Path:
    """A real-size network of ``method`` with random weights, saved as the release is."""
    import torch

    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"torch\.meshgrid", category=UserWarning)
        if method == "car":
            from maxrf_bench_plugins.sisr.edsr import EDSR

            sd = EDSR(32, 256, SCALE).state_dict()
            torch.save({"module." + k: v for k, v in sd.items()}, path)
            return path
        from maxrf_bench_plugins.sisr._spandrel import import_spandrel

        import_spandrel()
        if method == "hat":
            from spandrel.architectures.HAT import HAT

            net = HAT(upscale=SCALE, in_chans=3, img_size=64, window_size=16, compress_ratio=3,
                      squeeze_factor=30, conv_scale=0.01, overlap_ratio=0.5, img_range=1.0,
                      depths=[6] * 6, embed_dim=180, num_heads=[6] * 6, mlp_ratio=2,
                      upsampler="pixelshuffle", resi_connection="1conv")
            torch.save({"params_ema": net.state_dict()}, path)
        else:
            from spandrel.architectures.Swin2SR import Swin2SR

            net = Swin2SR(upscale=SCALE, in_chans=3, img_size=64, window_size=8, img_range=1.0,
                          depths=[6] * 6, embed_dim=180, num_heads=[6] * 6, mlp_ratio=2,
                          upsampler="pixelshuffle", resi_connection="1conv")
            torch.save({"params": net.state_dict()}, path)
    return path


def child(method: str, weights: str, size: int, elements: int, threads: int, tile: int) -> None:
    import numpy as np
    import torch
    import xarray as xr

    import maxrf_bench as mb

    torch.set_num_threads(threads)
    h = size // SCALE
    rng = np.random.default_rng(0)
    maps = rng.random((elements, h, h)).astype(np.float32)
    inputs = mb.MethodInputs(
        maps_lr=xr.DataArray(maps, dims=("element", "y_lr", "x_lr"),
                             coords={"element": [f"E{i:02d}_K" for i in range(elements)]}),
        rgb=xr.DataArray(np.zeros((3, size, size), np.float32), dims=("band", "y", "x"),
                         coords={"band": ["R", "G", "B"], "y": np.arange(size), "x": np.arange(size)}),
        operator=mb.BlockMean(SCALE), device="cpu")
    spec = mb.get_method(method)
    params = spec.params("paper", {"weights": weights, "tile": tile})
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t0 = time.perf_counter()
    sr = np.asarray(spec.run(inputs, **params))
    seconds = time.perf_counter() - t0
    assert sr.shape == (elements, size, size) and np.isfinite(sr).all()
    print(json.dumps({"method": method, "seconds": seconds, "per_element": seconds / elements,
                      "rss_imports_mb": rss_before,
                      "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=int, default=512, help="HR edge (pixels); LR = size / 4")
    ap.add_argument("--elements", type=int, default=21)
    ap.add_argument("--methods", default="car,hat,swin2sr")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--tile", type=int, default=256, help="LR tile edge (0 = whole map)")
    ap.add_argument("--child", nargs=2, metavar=("METHOD", "WEIGHTS"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(*args.child, args.size, args.elements, args.threads, args.tile)
        return
    print(f"{args.elements} elements, {args.size}² HR (x{SCALE}), {args.threads} torch thread(s), "
          f"tile {args.tile}; {load_average()}")
    with tempfile.TemporaryDirectory() as tmp:
        for method in args.methods.split(","):
            weights = build_checkpoint(method, Path(tmp) / f"{method}.pth")
            mb_file = weights.stat().st_size / 2**20
            res = subprocess.run([sys.executable, __file__, "--child", method, str(weights),
                                  "--size", str(args.size), "--elements", str(args.elements),
                                  "--threads", str(args.threads), "--tile", str(args.tile)],
                                 capture_output=True, text=True)
            if res.returncode != 0:
                print(f"{method}: failed\n{res.stderr}")
                continue
            r = json.loads(res.stdout.strip().splitlines()[-1])
            print(f"{method:8s} {r['seconds']:8.1f} s  ({r['per_element']:.2f} s/element)  "
                  f"peak RSS {r['peak_rss_mb']:7.0f} MB (after imports {r['rss_imports_mb']:.0f} MB); "
                  f"checkpoint {mb_file:.0f} MB; {load_average()}", flush=True)


if __name__ == "__main__":
    main()
