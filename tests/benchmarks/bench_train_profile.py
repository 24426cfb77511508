"""Where the proposed generator's training spends its time (issue 26 item 3), on a tuning scene.

    .venv/bin/python tests/benchmarks/bench_train_profile.py [--preset fast|ctx] [--threads 1]
        [--pretrain 300] [--adversarial 200] [--scene sim-flowers:101:256] [--seed 0] [--top 25]

Three parts, each on ``simulate(SCENE, seed, size)`` (never a table scene):

1. **Phases**: one training (``--pretrain`` pre-training iterations, then the preset's
   adversarial stage or ``--adversarial``) with the process CPU time of each phase:
   generator forward on the consistency mini-batch and on the adversarial patches (with
   the projection), pseudo-real sampling, discriminator forward, ``backward`` (generator
   and discriminator together), Adam, the calibration, and the rest (Python, bookkeeping).
2. **Operators**: ``torch.profiler``'s top ``--top`` operators of the same training, by
   self CPU time.
3. **Bound**: in one process, interleaved, a pre-training step against the matrix products
   alone that the step computes (the same shapes and count: forward, ``∂S``, ``∂W``, ``∂D``,
   the activation gradients) and against those products plus the sigmoid's forward and
   backward passes.  The step cannot get faster than the second figure by implementation
   alone at fp32 without fusing the sigmoid into the products.

CPU times on a shared machine are inflated by other processes; the ratios of part 3 are
taken in one process and are the robust figures.
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

import maxrf_bench as mb
from maxrf_bench_plugins.proposed import DEFAULTS, PRESETS
from maxrf_bench_plugins.proposed import train as T
from maxrf_bench_plugins.proposed.model import Generator


def scene_data(spec: str, seed: int):
    from maxrf_bench_datasets.simulator.presets import simulate

    name, scene_seed, size = spec.split(":")
    prep = mb.prepare_scan(simulate(name, seed=int(scene_seed), size=int(size)), name="tuning", scale=4)
    inp = prep.inputs(seed=seed)
    return T.prepare_data(np.asarray(inp.maps_lr.values, np.float32), np.asarray(inp.rgb.values, np.float32),
                          inp.operator, torch.device("cpu"))


def phases(data, params: dict, seed: int) -> None:
    acc: dict[str, float] = {}
    stage = {"now": "pre"}
    patched = []

    def wrap(owner, attr: str, label: str) -> None:
        original = getattr(owner, attr)

        def timed(*a, **k):
            t0 = time.process_time()
            try:
                return original(*a, **k)
            finally:
                key = f"{stage['now']}: {label}"
                acc[key] = acc.get(key, 0.0) + time.process_time() - t0
        setattr(owner, attr, timed)
        patched.append((owner, attr, original))

    wrap(T, "consistency_losses", "generator forward, consistency mini-batch")
    wrap(T, "generated_patches", "generator forward, adversarial patches (+ projection)")
    wrap(T, "pseudo_real_patches", "pseudo-real sampling")
    wrap(T.Discriminator, "__call__", "discriminator forward")
    wrap(torch.Tensor, "backward", "backward (generator + discriminator)")
    wrap(torch.optim.Adam, "step", "Adam step")
    wrap(T, "calibrate_alpha2", "calibration of alpha2")
    n_pre = int(params["pretrain_iterations"])
    lr_factor = T._lr_factor

    def which_stage(schedule, i, n):
        stage["now"] = "pre" if n == n_pre else "adv"
        return lr_factor(schedule, i, n)
    T._lr_factor = which_stage
    try:
        t0, w0 = time.process_time(), time.perf_counter()
        T.train_generator(data, params, seed=seed)
        total, wall = time.process_time() - t0, time.perf_counter() - w0
    finally:
        T._lr_factor = lr_factor
        for owner, attr, original in patched:
            setattr(owner, attr, original)
    print(f"\n1. phases: {total:.2f} CPU s ({wall:.2f} s wall), {n_pre} + "
          f"{params['adversarial_iterations']} iterations")
    for key, value in sorted(acc.items(), key=lambda kv: -kv[1]):
        print(f"   {key:62s} {value:7.2f} s {100 * value / total:5.1f} %")
    rest = total - sum(acc.values())
    print(f"   {'rest (Python, sampling, losses, bookkeeping)':62s} {rest:7.2f} s {100 * rest / total:5.1f} %")


def operators(data, params: dict, seed: int, top: int) -> None:
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        T.train_generator(data, params, seed=seed)
    print(f"\n2. operators (torch.profiler, top {top} by self CPU time)")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=top))


def bound(data, params: dict, seed: int, reps: int = 8, steps: int = 30) -> None:
    B = data.n_elements
    g = Generator(B, data.x_hw.shape[-1] - B, n_atoms=params["atoms"], n_layers=params["layers"],
                  kernel=int(params["kernel"]), context=params["context"])
    g.init_from_data(data.x_hw.reshape(-1, data.x_hw.shape[-1]))
    opt = torch.optim.Adam(g.parameters(), lr=1e-3, fused=True)
    gen = torch.Generator().manual_seed(seed)
    tile = T.region_blocks(params)

    def step():
        lc1, lc2 = T.consistency_losses(g, data, int(params["batch_blocks"]), gen, tile)
        opt.zero_grad(set_to_none=True)
        (lc1 + params["alpha1"] * lc2).backward()
        opt.step()

    n, c, m, K = int(params["batch_blocks"]) * data.scale ** 2, g.n_channels, g.S[0].shape[0], len(g.S)
    cin = c + 1 if g.kernel == 1 else g.n_bands * g.kernel ** 2 + B + 1     # analysis input, with the ones
    xa, S, W = torch.randn(n, cin), torch.randn(m, cin), torch.randn(m, m)
    acts, D, dz = [torch.rand(n, m) for _ in range(K)], torch.randn(c, m), torch.randn(n, c)

    def products(pointwise: bool) -> None:
        for k in range(K):
            p = xa @ S.t()
            if k:
                p.addmm_(acts[k - 1], W)
            if pointwise:
                p.sigmoid_()
        out = acts[-1] @ D.t()
        if pointwise:
            out.sigmoid_()
        _ = dz.t() @ acts[-1]
        da = dz @ D
        for k in range(K - 1, -1, -1):
            dp = torch.ops.aten.sigmoid_backward(da, acts[k]) if pointwise else da
            _ = dp.t() @ xa
            if k:
                _ = dp.t() @ acts[k - 1]
                da = dp @ W.t()

    runs = {"training step": step, "its matrix products": lambda: products(False),
            "products + sigmoid passes": lambda: products(True)}
    times: dict[str, list[float]] = {k: [] for k in runs}
    for f in runs.values():
        f()
    for _ in range(reps):
        for name, f in runs.items():
            t0 = time.process_time()
            for _ in range(steps):
                f()
            times[name].append((time.process_time() - t0) / steps * 1e3)
    macs = K * n * cin * m + (K - 1) * n * m * m + n * m * c          # forward
    macs += 2 * n * m * c + K * n * cin * m + 2 * (K - 1) * n * m * m   # backward
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"\n3. bound, one pre-training step of {n} rows ({2 * macs / 1e9:.3f} GFLOP), CPU ms, "
          f"median of {reps} × {steps}")
    for name, value in med.items():
        print(f"   {name:28s} {value:7.2f} ms   step ÷ this {med['training step'] / value:5.2f}×")
    print(f"   products alone: {2 * macs / 1e9 / (med['its matrix products'] / 1e3):.0f} GFLOP/s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="fast", choices=sorted(PRESETS))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--pretrain", type=int, default=300, help="pre-training iterations of parts 1-2")
    ap.add_argument("--adversarial", type=int, help="adversarial iterations (default: the preset's)")
    ap.add_argument("--scene", default="sim-flowers:101:256", help="NAME:SEED:SIZE of mb simulate")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--skip", default="", help="comma-separated parts to skip: phases,operators,bound")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    params = {**DEFAULTS, **PRESETS[args.preset], "threads": args.threads,
              "pretrain_iterations": args.pretrain, "checkpoint_seconds": 0.0}
    if args.adversarial is not None:
        params["adversarial_iterations"] = args.adversarial
        params["disc_warmup"] = min(int(params["disc_warmup"]), max(0, args.adversarial - 1))
    data = scene_data(args.scene, args.seed)
    skip = set(filter(None, args.skip.split(",")))
    print(f"preset {args.preset}, {args.threads} thread(s), scene {args.scene}, seed {args.seed}")
    if "phases" not in skip:
        phases(data, params, args.seed)
    if "operators" not in skip:
        operators(data, params, args.seed, args.top)
    if "bound" not in skip:
        with T._heap_keeps_freed_memory():
            bound(data, params, args.seed)


if __name__ == "__main__":
    main()
