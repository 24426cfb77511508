"""Speed and memory of the exported model (issue 6; roofline: issue 26 item 4), side by side in one run.

    .venv/bin/python tests/benchmarks/bench_infer.py [--size 1024] [--big 4096,5120] [--skip-memory]
        [--generators proposed,ctx] [--threads 2] [--skip-int8] [--fuse]

1. Speed, HR megapixels per second for 21 elements, for the per-pixel generator of the
   paper (``proposed``: M = 64, K = 5, about 51 kFLOP per HR pixel) and the context-aware
   one (``ctx``: k = 5 photo context, about 97 kFLOP per HR pixel), all in this process,
   interleaved, best of ``--repeat``:
   * the machine's **sgemm rate**, measured first in this process (numpy, 2048² float32,
     best of 5, on ``--threads``), the roofline the figures are compared with;
   * onnxruntime CPU **as maxrf-infer runs it by default** (I/O tiles of ``DEFAULT_TILE``
     read with the model's halo, ``--threads`` of them at once, each on its own
     single-threaded session, computed in pieces of ``CPU_COMPUTE_TILE`` by the core-only
     graph), against one tile at a time on one ``--threads``-thread session
     (``--workers 1``), against the whole-input graph exported before (pieces of 128, one
     tile at a time = maxrf-infer before; and its tiles at once), other piece sizes,
     session options (denormals as zero, graph optimisation ``extended`` = without the
     NCHWc layout pass, intra-op spinning) and the labelled ``--precision int8`` path
     (its difference to fp32 printed);
   * PyTorch eager (the exported pipeline as a torch module, and the method's own
     ``super_resolve``), onnxruntime CUDA and PyTorch CUDA when a GPU is present.
   For each: HR MP/s, the achieved network GFLOP/s (useful FLOPs: the core's pixels × the
   network's FLOPs per pixel; halos, upsampling and projection are overhead) and its
   ratio to the same-process sgemm rate (issue 26 item 4 asks ≥ 66 %).  Variants measured
   slower in earlier sessions and dropped from the run: one 320-channel convolution and a
   split, ``Gemm`` on pixel rows, no memory arena, parallel execution mode, int8 *dynamic*
   quantisation; and in issue 26 item 4: the maps' part of each analysis at LR resolution
   then upsampled (onnxruntime's ``Resize`` leaves the NCHWc layout: 0.39× the default).
2. Peak memory (max RSS of the process) of ``maxrf-infer`` on 21-element scans whose
   outputs are ``--big`` pixels square, against the size of the output; with ``--fuse`` each
   scan carries a short-dwell scan and runs again with ``--fuse`` (``+F`` tile by tile), and
   the wall and peak-RSS ratios of the two are printed.

The generators have random weights (speed and memory do not depend on training); pass
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


def make_generator(run: str | None, kernel: int = 1):
    if run:
        from maxrf_bench_plugins.proposed.model import load_generator

        g, meta = load_generator(Path(run) / "work")
        return g, meta["elements"]
    torch.manual_seed(0)
    g = Generator(N_ELEMENTS, kernel=kernel, context="photo").eval()
    with torch.no_grad():
        for lam in g.lam:
            lam.normal_(0, 0.3)
        for p in [*g.S, g.D]:
            if p.dim() == 4:  # every tap non-zero, as after training
                p.normal_(0, 0.1)
    return g, ELEMENTS


def network_flops(g) -> int:
    """FLOPs of the generator per HR pixel (multiply-adds × 2) as the export computes it:
    the analyses (k×k on the photograph and 1×1 on the maps for ``context="photo"``), the
    ``(I − W)`` products and the synthesis of the ``B`` element rows only."""
    m, c, b = int(g.S[0].shape[0]), int(g.n_channels), int(g.n_elements)
    k = int(getattr(g, "kernel", 1))
    if k == 1 or getattr(g, "context", "all") == "all":
        analysis = m * c * k * k
    else:
        analysis = m * ((c - b) * k * k + b)
    dk = int(g.D.shape[-1]) if g.D.dim() == 4 else 1
    return 2 * (len(g.S) * analysis + len(g.W) * m * m + b * m * dk * dk)


def sgemm_gflops(threads: int) -> tuple[float, float]:
    """numpy sgemm, 2048² float32, best of 5 on ``threads`` threads (as bench_cost.py):
    GFLOP per wall second and per CPU-second of this process."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(threads):
        a = np.random.default_rng(0).standard_normal((2048, 2048), dtype=np.float32)
        b = a.T.copy()
        a @ b
        best = best_cpu = float("inf")
        for _ in range(5):
            t, c = time.perf_counter(), time.process_time()
            a @ b
            best = min(best, time.perf_counter() - t)
            best_cpu = min(best_cpu, time.process_time() - c)
    return 2 * 2048 ** 3 / best / 1e9, 2 * 2048 ** 3 / best_cpu / 1e9


def maxrf_infer_tiles(forward, lr, rgb, halo: int, tile: int, compute_tile: int, margin: int = 0):
    """The tile loop of ``maxrf-infer`` (:func:`maxrf_infer.stream.process_tile`) on
    in-memory arrays, one I/O tile at a time: tiles read with the halo, computed in pieces
    (core only; ``margin``: the graph returns its input's core)."""
    b, h, w = lr.shape
    out = np.empty((b, h * SCALE, w * SCALE), np.float32)
    for t in maxrf_infer.plan_tiles(h, w, max(1, tile // SCALE), halo):
        _one_tile(forward, t, lr, rgb, out, compute_tile, halo, margin)
    return out


def _one_tile(forward, t, lr, rgb, out, compute_tile, halo, margin):
    ly, lx = t.read_lr()
    hy, hx = t.read_hr(SCALE)
    core = (t.y0 - t.ey0, t.y1 - t.ey0, t.x0 - t.ex0, t.x1 - t.ex0)
    wy, wx = t.write_hr(SCALE)
    out[:, wy, wx] = maxrf_infer.infer_tiled(forward, lr[:, ly, lx], rgb[:, hy, hx], SCALE,
                                             tile_hr=compute_tile, halo=halo, core=core, margin=margin)


def concurrent_tiles(forwards, lr, rgb, halo: int, tile: int, compute_tile: int, margin: int = 0):
    """The I/O tiles ``len(forwards)`` at a time in a thread pool, each thread on its own
    single-threaded session (what ``maxrf-infer --workers N`` does)."""
    import queue
    from concurrent.futures import ThreadPoolExecutor

    b, h, w = lr.shape
    out = np.empty((b, h * SCALE, w * SCALE), np.float32)
    pool_of: queue.SimpleQueue = queue.SimpleQueue()
    for f in forwards:
        pool_of.put(f)

    def one(t):
        f = pool_of.get()
        try:
            _one_tile(f, t, lr, rgb, out, compute_tile, halo, margin)
        finally:
            pool_of.put(f)
    with ThreadPoolExecutor(len(forwards)) as pool:
        list(pool.map(one, maxrf_infer.plan_tiles(h, w, max(1, tile // SCALE), halo)))
    return out


def without_activations(model: Path) -> bytes:
    """The model with every ``Sigmoid`` replaced by ``Identity`` (a bound, not a model)."""
    import onnx

    m = onnx.load(model)
    for node in m.graph.node:
        if node.op_type == "Sigmoid":
            node.op_type = "Identity"
    return m.SerializeToString()


def ort_session(model, threads: int, level: str = "all", config: dict | None = None):
    """An onnxruntime CPU session with maxrf-infer's options, or some changed."""
    import onnxruntime as ort

    so = maxrf_infer.model._session_options(threads)
    so.graph_optimization_level = {"all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
                                   "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED}[level]
    for k, v in (config or {}).items():
        so.add_session_config_entry(k, v)
    return ort.InferenceSession(model if isinstance(model, bytes) else str(model), so,
                                providers=["CPUExecutionProvider"])


def bench_speed(model: Path, g: torch.nn.Module, n_el: int, size: int, repeat: int, threads: int,
                label: str = "proposed", sgemm: tuple[float, float] | None = None,
                old_model: Path | None = None, int8: bool = True):
    """Sequential against concurrent tiles, the core-only graph against the whole-input
    graph exported before (``old_model``), a few session options, int8; interleaved."""
    from maxrf_infer.stream import CPU_COMPUTE_TILE, CPU_COMPUTE_TILE_WHOLE, DEFAULT_TILE

    torch.set_num_threads(threads)
    rng = np.random.default_rng(0)
    h = size // SCALE
    lr = rng.random((n_el, h, h), dtype=np.float32)
    rgb = rng.random((3, size, size), dtype=np.float32)
    lr_t, rgb_t = torch.from_numpy(lr[None]), torch.from_numpy(rgb[None])
    pipe = SuperResolvePipeline(g, n_el, SCALE).eval()
    op = mb.BlockMean(SCALE)
    info = maxrf_infer.read_model_info(model)
    halo, margin = info.halo_lr, info.margin_lr
    workers = threads  # maxrf-infer's default: one single-threaded session per core

    def run_with(sess, m):
        run = maxrf_infer.run_graph if m else maxrf_infer.run_model
        return lambda a, b: run(sess, a, b)
    seq = run_with(ort_session(model, threads), margin)
    singles = [run_with(ort_session(model, 1), margin) for _ in range(workers)]
    default = (f"maxrf-infer default: {workers} tiles at once, 1 thread each "
               f"(tile {DEFAULT_TILE}, pieces {CPU_COMPUTE_TILE}, core-only graph)")
    cases = {
        default: lambda: concurrent_tiles(singles, lr, rgb, halo, DEFAULT_TILE, CPU_COMPUTE_TILE, margin),
        f"  one tile at a time, one {threads}-thread session (--workers 1)":
            lambda: maxrf_infer_tiles(seq, lr, rgb, halo, DEFAULT_TILE, CPU_COMPUTE_TILE, margin),
    }
    if old_model is not None:
        old_seq = run_with(ort_session(old_model, threads), 0)
        old_singles = [run_with(ort_session(old_model, 1), 0) for _ in range(workers)]
        cases[f"  before: whole-input graph, pieces {CPU_COMPUTE_TILE_WHOLE}, one tile at a time"] = (
            lambda: maxrf_infer_tiles(old_seq, lr, rgb, halo, DEFAULT_TILE, CPU_COMPUTE_TILE_WHOLE))
        cases[f"  whole-input graph, pieces {CPU_COMPUTE_TILE_WHOLE}, {workers} tiles at once"] = (
            lambda: concurrent_tiles(old_singles, lr, rgb, halo, DEFAULT_TILE, CPU_COMPUTE_TILE_WHOLE))
    for piece in (32, 128):
        cases[f"  default, pieces {piece}"] = (
            lambda p=piece: concurrent_tiles(singles, lr, rgb, halo, DEFAULT_TILE, p, margin))
    variants = {"denormals as zero": {"config": {"session.set_denormal_as_zero": "1"}},
                "graph optimisation extended (no NCHWc)": {"level": "extended"}}
    for name, kw in variants.items():
        fw = [run_with(ort_session(model, 1, **kw), margin) for _ in range(workers)]
        cases[f"  default, {name}"] = (
            lambda f=fw: concurrent_tiles(f, lr, rgb, halo, DEFAULT_TILE, CPU_COMPUTE_TILE, margin))
    if threads > 1:
        spin = run_with(ort_session(model, threads, config={"session.intra_op.allow_spinning": "1"}), margin)
        cases["  one tile at a time, intra-op spinning on"] = (
            lambda: maxrf_infer_tiles(spin, lr, rgb, halo, DEFAULT_TILE, CPU_COMPUTE_TILE, margin))
    # the bound: the same graph with every sigmoid an identity (wrong maps): what the
    # convolutions alone (onnxruntime's NCHWc kernels, 24 input channels padded to 32) reach
    no_act = [run_with(ort_session(without_activations(model), 1), margin) for _ in range(workers)]
    cases["  bound: default without the sigmoids (wrong maps; convolutions only)"] = (
        lambda: concurrent_tiles(no_act, lr, rgb, halo, DEFAULT_TILE, CPU_COMPUTE_TILE, margin))
    int8_err = None
    if int8:
        from maxrf_infer.quantize import int8_difference, quantize_int8

        e = CPU_COMPUTE_TILE // SCALE + 2 * margin
        spots = [(0, 0), (h // 2, h // 3), (h - e, h - e), (h // 3, h // 2)]
        pieces = [(lr[:, y:y + e, x:x + e], rgb[:, SCALE * y:SCALE * (y + e), SCALE * x:SCALE * (x + e)])
                  for y, x in spots]
        data = quantize_int8(model, pieces[:2])
        int8_err = int8_difference(ort_session(model, 1), ort_session(data, 1), pieces[2:])
        q = [run_with(ort_session(data, 1), margin) for _ in range(workers)]
        cases[f"  int8 (--precision int8, labelled option), {workers} tiles at once"] = (
            lambda: concurrent_tiles(q, lr, rgb, halo, DEFAULT_TILE, CPU_COMPUTE_TILE, margin))
    cases["pytorch eager, pipeline (whole image)"] = lambda: pipe(lr_t, rgb_t)
    cases["pytorch eager, method's super_resolve"] = lambda: super_resolve(g, lr, rgb, op, batch=4096)
    cuda_sess, used = maxrf_infer.create_session(model, "auto")
    if used == "CUDAExecutionProvider":
        cases["onnxruntime CUDA, whole image"] = lambda: maxrf_infer.run_model(cuda_sess, lr, rgb)
    if torch.cuda.is_available():
        gc, lc, rc = pipe.cuda(), lr_t.cuda(), rgb_t.cuda()

        def torch_cuda():
            gc(lc, rc)
            torch.cuda.synchronize()
        cases["pytorch CUDA, pipeline"] = torch_cuda
    # the maps as maxrf-infer computes them equal the method's own (normalised units), and
    # the concurrent tiles the sequential ones
    ref = super_resolve(g, lr, rgb, op, batch=4096, project=True)
    got = cases[default]()
    err = np.abs(got - ref).max() / max(np.abs(ref).max(), 1e-12)
    seq_key = next(k for k in cases if "one tile at a time, one" in k)
    same = np.array_equal(got, cases[seq_key]())
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
    flops = network_flops(g)
    sgemm, sgemm_cpu = sgemm or sgemm_gflops(threads)
    rates = {k: mp / v for k, v in best.items()}
    print(f"\n== speed, {label}: {n_el} elements, {size}×{size} HR ({mp:.2f} MP), {threads} threads, "
          f"best of {repeat}; network {flops / 1e3:.1f} kFLOP per HR pixel; sgemm {sgemm:.1f} GFLOP/s, "
          f"{sgemm_cpu:.1f} GFLOP/CPU-s (this process); {load_average()}")
    print(f"   max relative difference of maxrf-infer's maps to the method's super_resolve: {err:.1e}; "
          f"concurrent tiles {'identical to' if same else 'DIFFER from'} sequential"
          + (f"; int8 against fp32: {int8_err:.1e}" if int8_err is not None else ""))
    print("   MP/s: wall clock (shared CPU: inflated by other processes); MP/CPU-s: per second of\n"
          "   CPU this process got; GFLOP/s: useful network FLOPs per wall second; % sgemm: of the\n"
          "   sgemm rate measured above (the roofline; issue 26 item 4 asks ≥ 66 %); % CPU-s: the same\n"
          "   ratio per CPU-second of this process (less sensitive to other processes' load)")
    print(f"{'':72s} {'HR MP/s':>8s} {'MP/CPU-s':>9s} {'GFLOP/s':>8s} {'% sgemm':>8s} {'% CPU-s':>8s}")
    for k, r in rates.items():
        print(f"{k:72s} {r:8.2f} {mp / cpu[k]:9.2f} {r * flops / 1e3:8.1f} "
              f"{100 * r * flops / 1e3 / sgemm:8.1f} {100 * mp / cpu[k] * flops / 1e3 / sgemm_cpu:8.1f}")
    return rates


def write_big_scan(path: Path, size: int, n_el: int, dwell: bool = False) -> None:
    """A 21-element scan streamed to Zarr chunk by chunk (never whole in memory); with
    ``dwell`` also a short-dwell HR-step scan ``maps_dwell`` whose block means are the LR maps
    (each LR value repeated over its block plus zero-mean ±1 count noise), for ``--fuse``."""
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
    data = {"rgb": (("band", "y", "x"), rgb), "maps_lr": (("element", "y_lr", "x_lr"), lr)}
    if dwell:
        up = da.repeat(da.repeat(lr, SCALE, axis=1), SCALE, axis=2).rechunk((n_el, chunk, chunk))
        sign = np.tile(np.array([[1.0, -1.0], [-1.0, 1.0]], np.float32), (SCALE // 2, SCALE // 2))
        wiggle = da.from_array(np.tile(sign, (chunk // SCALE, chunk // SCALE)), chunks=chunk)
        data["maps_dwell"] = (("element", "y", "x"), up + da.tile(wiggle, (size // chunk, size // chunk))[None])
    ds = xr.Dataset(data, coords=coords, attrs={"scale": SCALE, "title": f"bench {size}"})
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


def bench_memory(model: Path, sizes: list[int], n_el: int, tile: int, workdir: Path, fuse: bool = False):
    """Peak RSS and wall of ``maxrf-infer`` per output size; with ``fuse`` the same scan also
    with ``--fuse`` (its short-dwell scan fused tile by tile), run right after the plain one,
    and the ratios of the two."""
    print(f"\n== peak memory of maxrf-infer (tile {tile}, {n_el} elements); {load_average()}")
    print(f"{'output':>12s} {'':>7s} {'output MB':>10s} {'peak RSS MB':>12s} {'RSS/output':>11s} "
          f"{'seconds':>8s} {'HR MP/s':>8s}")
    rows = []
    import shutil

    for size in sizes:
        scan = workdir / f"scan{size}.zarr"
        out = workdir / f"out{size}.zarr"
        write_big_scan(scan, size, n_el, dwell=fuse)
        cmd = [sys.executable, "-m", "maxrf_infer.cli", str(model), str(scan), "-o", str(out),
               "--tile", str(tile), "--provider", "cpu"]
        out_bytes = n_el * size * size * 4
        seen = {}
        for mode, extra in [("plain", [])] + ([("--fuse", ["--fuse"])] if fuse else []):
            rss, dt, last = peak_rss_of(cmd + extra)
            seen[mode] = (rss, dt)
            rows.append((size, out_bytes, rss))
            print(f"{size:>5d}×{size:<6d} {mode:>7s} {out_bytes / 1e6:10.0f} {rss / 1e6:12.0f} "
                  f"{rss / out_bytes:11.3f} {dt:8.1f} {size * size / 1e6 / dt:8.2f}")
            shutil.rmtree(out, ignore_errors=True)
        if fuse:
            (r0, t0), (r1, t1) = seen["plain"], seen["--fuse"]
            print(f"{'':>12s} --fuse / plain: wall {t1 / t0:.2f}×, peak RSS {r1 / r0:.2f}×")
        shutil.rmtree(scan, ignore_errors=True)
    # baseline: what importing the runtime alone costs
    rss0, _, _ = peak_rss_of([sys.executable, "-c", "import maxrf_infer, onnxruntime, xarray, zarr, dask"])
    print(f"(importing numpy+onnxruntime+xarray+zarr+dask alone: {rss0 / 1e6:.0f} MB)")
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=1024, help="HR edge for the speed test")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--generators", default="proposed,ctx",
                    help="proposed (per pixel, the paper's) and/or ctx (k = 5, photo context)")
    ap.add_argument("--big", default="4096,5120", help="HR edges for the memory test")
    ap.add_argument("--tile", type=int, default=maxrf_infer.DEFAULT_TILE)
    ap.add_argument("--run", default=None, help="a finished 'proposed' cell directory to use")
    ap.add_argument("--skip-memory", action="store_true")
    ap.add_argument("--skip-speed", action="store_true")
    ap.add_argument("--skip-int8", action="store_true", help="no int8 (quantised) case")
    ap.add_argument("--fuse", action="store_true",
                    help="memory part: each scan also with --fuse (a short-dwell scan fused tile by tile)")
    args = ap.parse_args(argv)
    kernels = {"proposed": 1, "ctx": 5}
    labels = [x for x in args.generators.split(",") if x]
    if any(x not in kernels for x in labels):
        raise SystemExit(f"--generators expects proposed and/or ctx, found {args.generators!r}")
    sgemm = sgemm_gflops(args.threads)
    print(f"sgemm (numpy 2048² float32, {args.threads} threads, best of 5): {sgemm[0]:.1f} GFLOP/s, "
          f"{sgemm[1]:.1f} GFLOP per CPU-second")
    with tempfile.TemporaryDirectory(prefix="bench-infer-") as tmp:
        tmp = Path(tmp)
        for label in labels:
            g, elements = make_generator(args.run, kernels[label])
            n_el = len(elements)
            norm = {"normalisation": {"offset": [0.0] * n_el, "span": [100.0] * n_el}}
            model = export_generator(g, tmp / f"{label}.onnx", elements=elements, scale=SCALE, metadata=norm)
            old = export_generator(g, tmp / f"{label}-whole.onnx", elements=elements, scale=SCALE,
                                   metadata=norm, core_only=False)
            if not args.skip_speed:
                bench_speed(model, g, n_el, args.size, args.repeat, args.threads, label, sgemm, old,
                            int8=not args.skip_int8)
            if not args.skip_memory and label == labels[0]:
                bench_memory(model, [int(s) for s in args.big.split(",")], n_el, args.tile, tmp, args.fuse)


if __name__ == "__main__":
    main()
