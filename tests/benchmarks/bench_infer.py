"""Speed and memory of the exported model (issue 6), printed side by side in one run.

    .venv/bin/python tests/benchmarks/bench_infer.py [--size 1024] [--big 4096,5120] [--skip-memory]

1. Speed, HR megapixels per second for 21 elements (the paper's generator: M = 64, K = 5,
   about 52 kFLOP per HR pixel), all in this process, interleaved, best of ``--repeat``:
   * PyTorch eager: the exported pipeline as a torch module (whole image), and the
     method's own inference ``super_resolve`` (4096-row batches, numpy projection);
   * onnxruntime CPU: the whole image in one run, and tiled as ``maxrf-infer`` runs it
     (several tile edges, halo included in the cost); and the same network exported as
     ``Gemm`` on a pixels × channels reshape instead of 1×1 convolutions (layout choice);
   * onnxruntime CUDA and PyTorch CUDA when a GPU is present.
2. Peak memory (max RSS of the process) of ``maxrf-infer`` on 21-element scans whose
   outputs are ``--big`` pixels square, against the size of the output.

The generator has random weights (speed and memory do not depend on training); pass
``--run DIR`` to use a trained 'proposed' cell instead.  The machine's CPU may be shared:
the load average is printed next to the figures, and only ratios measured in the same
run should be compared.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import maxrf_bench as mb
import maxrf_infer
from maxrf_bench_plugins.proposed import super_resolve
from maxrf_bench_plugins.proposed.model import Generator
from maxrf_bench_plugins.proposed.onnx_export import SuperResolvePipeline, export_generator

N_ELEMENTS, SCALE = 21, 4
ELEMENTS = [f"E{i:02d}_K" for i in range(N_ELEMENTS)]


def load_average() -> str:
    try:
        return "load average " + " ".join(f"{x:.1f}" for x in os.getloadavg()) + f" on {os.cpu_count()} CPUs"
    except OSError:
        return ""


def make_generator(run: str | None):
    if run:
        from maxrf_bench_plugins.proposed.model import load_generator

        g, meta = load_generator(Path(run) / "work")
        return g, meta["elements"]
    torch.manual_seed(0)
    g = Generator(N_ELEMENTS).eval()
    with torch.no_grad():
        for lam in g.lam:
            lam.normal_(0, 0.3)
    return g, ELEMENTS


class RowsOnly(torch.nn.Module):
    """The fused network without ``forward_image``: exported as ``Gemm`` on a
    pixels × channels reshape instead of 1×1 convolutions (layout comparison only)."""

    def __init__(self, fused):
        super().__init__()
        self.fused = fused

    def forward(self, x):
        return self.fused(x)


def export_rows_layout(g, elements: list[str], path: Path) -> Path:
    from maxrf_bench_plugins.proposed.onnx_export import FusedLista

    n = len(elements)
    return export_generator(RowsOnly(FusedLista(g)), path, elements=elements, scale=SCALE, fuse=False,
                            metadata={"normalisation": {"offset": [0.0] * n, "span": [1.0] * n}})


def bench_speed(model: Path, g: torch.nn.Module, n_el: int, size: int, repeat: int, threads: int):
    torch.set_num_threads(threads)
    rng = np.random.default_rng(0)
    h = size // SCALE
    lr = rng.random((n_el, h, h), dtype=np.float32)
    rgb = rng.random((3, size, size), dtype=np.float32)
    lr_t, rgb_t = torch.from_numpy(lr[None]), torch.from_numpy(rgb[None])
    pipe = SuperResolvePipeline(g, n_el, SCALE).eval()
    op = mb.BlockMean(SCALE)
    cpu_sess, _ = maxrf_infer.create_session(model, "cpu", threads=threads)
    forward = lambda a, b: maxrf_infer.run_model(cpu_sess, a, b)  # noqa: E731
    cases = {
        "pytorch eager, pipeline (whole image)": lambda: pipe(lr_t, rgb_t),
        "pytorch eager, method's super_resolve": lambda: super_resolve(g, lr, rgb, op, batch=4096),
        "onnxruntime CPU, whole image": lambda: forward(lr, rgb),
    }
    for tile in (64, 128, 256):
        if tile < size:
            cases[f"onnxruntime CPU, tiles {tile} (+halo)"] = (
                lambda t=tile: maxrf_infer.infer_tiled(forward, lr, rgb, SCALE, tile_hr=t))
    rows_sess, _ = maxrf_infer.create_session(
        export_rows_layout(g, [f"E{i}_K" for i in range(n_el)], model.with_name("rows.onnx")),
        "cpu", threads=threads)
    rows_fwd = lambda a, b: maxrf_infer.run_model(rows_sess, a, b)  # noqa: E731
    assert np.abs(rows_fwd(lr[:, :8, :8], rgb[:, :32, :32]) - forward(lr[:, :8, :8], rgb[:, :32, :32])).max() < 1e-5
    for tile in (128, None):
        cases[f"  same, Gemm-on-rows layout, {'tiles 128' if tile else 'whole image'}"] = (
            lambda t=tile: maxrf_infer.infer_tiled(rows_fwd, lr, rgb, SCALE, tile_hr=t))
    cuda_sess, used = maxrf_infer.create_session(model, "auto")
    if used == "CUDAExecutionProvider":
        cases["onnxruntime CUDA, whole image"] = lambda: maxrf_infer.run_model(cuda_sess, lr, rgb)
    if torch.cuda.is_available():
        gc, lc, rc = pipe.cuda(), lr_t.cuda(), rgb_t.cuda()

        def torch_cuda():
            gc(lc, rc)
            torch.cuda.synchronize()
        cases["pytorch CUDA, pipeline"] = torch_cuda
    with torch.no_grad():
        # interleave: every case once per round, so a burst of load hits all of them
        best = {k: float("inf") for k in cases}
        cpu = {k: float("inf") for k in cases}
        for fn in cases.values():
            fn()
        for _ in range(repeat):
            for k, fn in cases.items():
                t, c = time.perf_counter(), time.process_time()
                fn()
                best[k] = min(best[k], time.perf_counter() - t)
                cpu[k] = min(cpu[k], time.process_time() - c)
    mp = size * size / 1e6
    rates = {k: mp / v for k, v in best.items()}
    base = max(rates["pytorch eager, pipeline (whole image)"],
               rates["pytorch eager, method's super_resolve"])
    print(f"\n== speed: {n_el} elements, {size}×{size} HR ({mp:.2f} MP), {threads} threads, "
          f"best of {repeat}; {load_average()}")
    print("   MP/s: wall clock (shared CPU: inflated by other processes); MP/CPU-s: per second of\n"
          "   CPU this process got, ×2 = what 2 uncontended cores would give at perfect scaling;\n"
          "   × torch: wall-clock ratio to the faster PyTorch eager variant, same run")
    print(f"{'':44s} {'HR MP/s':>8s} {'MP/CPU-s':>9s} {'× torch':>8s}")
    for k, r in rates.items():
        print(f"{k:44s} {r:8.2f} {mp / cpu[k]:9.2f} {r / base:8.2f}")
    return rates


def write_big_scan(path: Path, size: int, n_el: int) -> None:
    """A 21-element scan streamed to Zarr chunk by chunk (never whole in memory)."""
    import dask.array as da
    import xarray as xr

    h = size // SCALE
    chunk = 512
    rgb = da.random.default_rng(1).random((3, size, size), chunks=(3, chunk, chunk), dtype=np.float32)
    lr = 100 * da.random.default_rng(2).random((n_el, h, h), chunks=(n_el, chunk, chunk),
                                               dtype=np.float32)
    coords = {"element": ELEMENTS[:n_el], "band": ["R", "G", "B"],
              "y": np.arange(size) + 0.5, "x": np.arange(size) + 0.5,
              "y_lr": (np.arange(h) + 0.5) * SCALE, "x_lr": (np.arange(h) + 0.5) * SCALE}
    ds = xr.Dataset({"rgb": (("band", "y", "x"), rgb), "maps_lr": (("element", "y_lr", "x_lr"), lr)},
                    coords=coords, attrs={"scale": SCALE, "title": f"bench {size}"})
    ds.to_zarr(path, mode="w", zarr_format=2, consolidated=True)


def peak_rss_of(cmd: list[str]) -> tuple[float, float, str]:
    """(max RSS in bytes, seconds, stderr tail) of ``cmd`` run in a fresh wrapper process,
    so the figure is this command's own peak and not an earlier one's."""
    wrapper = ("import resource, subprocess, sys, time\n"
               "t = time.perf_counter()\n"
               "r = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
               "dt = time.perf_counter() - t\n"
               "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024, dt, r.returncode)\n"
               "sys.stderr.write(r.stderr[-600:])\n")
    res = subprocess.run([sys.executable, "-c", wrapper, *cmd], capture_output=True, text=True)
    rss, dt, rc = res.stdout.split()
    if rc != "0":
        raise RuntimeError(f"{' '.join(cmd)} failed: {res.stderr}")
    return float(rss), float(dt), res.stderr.strip().splitlines()[-1] if res.stderr.strip() else ""


def bench_memory(model: Path, sizes: list[int], n_el: int, tile: int, workdir: Path):
    print(f"\n== peak memory of maxrf-infer (tile {tile}, {n_el} elements); {load_average()}")
    print(f"{'output':>12s} {'output MB':>10s} {'peak RSS MB':>12s} {'RSS/output':>11s} "
          f"{'seconds':>8s} {'HR MP/s':>8s}")
    rows = []
    for size in sizes:
        scan = workdir / f"scan{size}.zarr"
        out = workdir / f"out{size}.zarr"
        write_big_scan(scan, size, n_el)
        cmd = [sys.executable, "-m", "maxrf_infer.cli", str(model), str(scan), "-o", str(out),
               "--tile", str(tile), "--provider", "cpu"]
        rss, dt, last = peak_rss_of(cmd)
        out_bytes = n_el * size * size * 4
        rows.append((size, out_bytes, rss))
        print(f"{size:>5d}×{size:<6d} {out_bytes / 1e6:10.0f} {rss / 1e6:12.0f} {rss / out_bytes:11.3f} "
              f"{dt:8.1f} {size * size / 1e6 / dt:8.2f}")
        import shutil

        shutil.rmtree(scan, ignore_errors=True)
        shutil.rmtree(out, ignore_errors=True)
    # baseline: what importing the runtime alone costs
    rss0, _, _ = peak_rss_of([sys.executable, "-c", "import maxrf_infer, onnxruntime, xarray, zarr, dask"])
    print(f"(importing numpy+onnxruntime+xarray+zarr+dask alone: {rss0 / 1e6:.0f} MB)")
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=1024, help="HR edge for the speed test")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--big", default="4096,5120", help="HR edges for the memory test")
    ap.add_argument("--tile", type=int, default=maxrf_infer.DEFAULT_TILE)
    ap.add_argument("--run", default=None, help="a finished 'proposed' cell directory to use")
    ap.add_argument("--skip-memory", action="store_true")
    ap.add_argument("--skip-speed", action="store_true")
    args = ap.parse_args(argv)
    g, elements = make_generator(args.run)
    n_el = len(elements)
    with tempfile.TemporaryDirectory(prefix="bench-infer-") as tmp:
        tmp = Path(tmp)
        model = export_generator(g, tmp / "model.onnx", elements=elements, scale=SCALE,
                                 metadata={"normalisation": {"offset": [0.0] * n_el,
                                                             "span": [100.0] * n_el}})
        if not args.skip_speed:
            bench_speed(model, g, n_el, args.size, args.repeat, args.threads)
        if not args.skip_memory:
            bench_memory(model, [int(s) for s in args.big.split(",")], n_el, args.tile, tmp)


if __name__ == "__main__":
    main()
