"""What limits a method at long scan times: how much of each element map the photograph and
the noise-free LR scan carry at all.

Issue 21 asks what stops `ctx` from reaching the HR scan: the LR noise through the projection,
the network's capacity, or the photograph's information.  ``bench_scan_limits.py`` measures the
first; this measures the last directly, with an *oracle* that is allowed to see the truth.  Per
tuning scene (never a table scene), a regressor is fitted **on the noise-free HR maps
themselves** to predict them from what any method may see at t → ∞ (no LR noise): the
photograph (a 7×7 neighbourhood of its three channels) and the bicubic upsampling of the
noise-free block-mean LR scan of every element.  Two regressors: ridge (linear) and an MLP
(two hidden layers), both trained on one half of the scene (columns) and scored on the other
half, then the halves swapped, so the figure is what the photograph and LR carry about
unseen pixels of the same painting (the self-supervised setting), not a memorised fit.  The
MLP's in-sample figure (fitted and scored on the whole scene) is printed too, as an upper
bound that overfits.

Per element, PSNR (dB) against the noise-free truth, normalised by the HR maps' range as the
acquisition protocol scores: the HR scan itself, the bicubic upsampling of the noise-free LR,
the two oracles; then the share of the bicubic upsampling's squared error (the detail the LR
scan lacks) that a method must remove to reach the HR scan, and the share the held-out MLP
removes.  Where the oracles stay below the HR scan, no method that sees only the
photograph and a (however long) LR scan reaches the HR scan on that map, whatever its
capacity: the detail is not in its inputs.

With ``--runs``, the columns of a run on each scene's noise-free copy (``maxrf-bench simulate
-p PRESET --seed SEED --size SIZE --no-noise``, then ``run --protocol full``) are scored
against the same truth, with the noisy scan's normalisation, beside the oracles.

Run:  .venv/bin/python tests/benchmarks/bench_photo_oracle.py [--scenes sim-isabel:101:256,sim-virgin:102:256] [--runs RUN_DIR]
"""
from __future__ import annotations

import argparse
import sys
import time

import numpy as np
import torch
from scipy.ndimage import zoom


def psnr(y: np.ndarray, c: np.ndarray) -> float:
    return float(-10 * np.log10(np.mean((y - c) ** 2)))


def features(rgb: np.ndarray, up: np.ndarray, radius: int = 3) -> np.ndarray:
    """Per HR pixel: the photograph's (2r+1)² neighbourhood of its 3 channels and the
    upsampled LR of every element, ``(H·W, F)`` standardised."""
    pad = np.pad(rgb, ((0, 0), (radius, radius), (radius, radius)), mode="reflect")
    h, w = rgb.shape[1:]
    cols = [pad[:, dy:dy + h, dx:dx + w] for dy in range(2 * radius + 1) for dx in range(2 * radius + 1)]
    f = np.concatenate([np.concatenate(cols, axis=0), up], axis=0).reshape(-1, h * w).T
    f = (f - f.mean(0)) / (f.std(0) + 1e-8)
    return f.astype(np.float32)


def ridge(xtr, ytr, xte, lam=1e-3):
    a = np.c_[xtr, np.ones(len(xtr))].astype(np.float64)
    w = np.linalg.solve(a.T @ a + lam * len(a) * np.eye(a.shape[1]), a.T @ ytr)
    return np.c_[xte, np.ones(len(xte))] @ w


def mlp(xtr, ytr, xte, steps=3000, width=192, seed=0):
    torch.manual_seed(seed)
    net = torch.nn.Sequential(torch.nn.Linear(xtr.shape[1], width), torch.nn.GELU(),
                              torch.nn.Linear(width, width), torch.nn.GELU(),
                              torch.nn.Linear(width, ytr.shape[1]))
    opt = torch.optim.Adam(net.parameters(), lr=2e-3)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    x, y = torch.from_numpy(xtr), torch.from_numpy(ytr.astype(np.float32))
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        idx = torch.randint(len(x), (8192,), generator=g)
        loss = torch.mean((net(x[idx]) - y[idx]) ** 2)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    with torch.no_grad():
        return net(torch.from_numpy(xte)).numpy().astype(np.float64)


def run(spec: str, steps: int, runs: list[str], oracles: list[str], markdown: bool) -> None:
    from maxrf_bench.acquisition import _render
    from maxrf_bench.trust import HIDDEN_THRESHOLD
    from maxrf_bench_datasets.simulator import simulate

    preset, seed, size = spec.split(":")
    scan = simulate(preset, int(seed), size=int(size))
    maps = scan["maps"].values.astype(np.float64)
    c = scan["maps_clean"].values.astype(np.float64)
    rgb = scan["rgb"].values.astype(np.float64)
    els = [str(e) for e in scan["element"].values]
    hs = scan["hidden_share"].values if "hidden_share" in scan else np.zeros(len(els))
    lo = maps.min(axis=(1, 2))[:, None, None]
    span = (maps.max(axis=(1, 2)) - maps.min(axis=(1, 2)))[:, None, None]
    n, h, w = c.shape
    s = 4
    lr = c.reshape(n, h // s, s, w // s, s).mean(axis=(2, 4))
    up = np.stack([zoom(m, s, order=3, mode="nearest") for m in lr])
    cn, upn, hrn = (c - lo) / span, (up - lo) / span, (maps - lo) / span
    cols = {"HR scan": hrn, "bicubic": upn}
    t0 = time.perf_counter()
    if oracles:
        x = features(rgb, upn)
        y = cn.reshape(n, -1).T
        left = (np.arange(h * w) % w) < w // 2
        fits = {"ridge": ridge, "MLP": lambda a, b, c_: mlp(a, b, c_, steps=steps)}
        for name in oracles:
            pred = np.empty_like(y)
            for tr in (left, ~left):  # fit on one half, score the other
                pred[~tr] = fits[name](x[tr], y[tr], x[~tr])
            cols[name] = pred.T.reshape(n, h, w)
        if "MLP" in oracles:
            cols["MLP in-sample"] = mlp(x, y, x, steps=steps).T.reshape(n, h, w)
    for label, yc in columns(runs, els, (h, w)):
        cols[label] = (yc - lo) / span
    order = sorted(range(n), key=lambda i: -span[i, 0, 0])
    db = {k: [psnr(v[i], cn[i]) for i in order] + [psnr(v, cn)] for k, v in cols.items()}
    names = [els[i] + (" (hidden)" if hs[i] >= HIDDEN_THRESHOLD else "") for i in order] + ["all"]
    spans = [f"{span[i, 0, 0]:.0f}" for i in order] + [""]
    print()
    print(_render(f"{spec} (block mean, s = {s}; oracles {time.perf_counter() - t0:.0f} s): PSNR (dB) "
                  "against the noise-free truth", ["element", "span", *cols],
                  [[e, sp, *(f"{db[k][j]:.2f}" for k in cols)] for j, (e, sp) in enumerate(zip(names, spans))],
                  markdown))
    # the share of the bicubic upsampling's squared error (the detail a noise-free LR scan
    # lacks) that each column removes; the HR scan's share is what a method must remove
    share = {k: [max(0.0, 1 - 10 ** ((b - v) / 10)) for b, v in zip(db["bicubic"], db[k])]
             for k in cols if k != "bicubic"}
    print()
    print(_render("Share of the bicubic upsampling's squared error removed (HR scan: what reaching "
                  "it takes)", ["element", *share],
                  [[e, *(f"{share[k][j]:.0%}" for k in share)] for j, e in enumerate(names)], markdown))


def columns(runs: list[str], elements: list[str], shape: tuple[int, int]):
    """``(label, maps in counts)`` of every cell of the run directories ``runs`` whose saved
    maps have this scene's elements and shape (a run of ``--protocol full`` on the scene's
    noise-free copy, ``maxrf-bench simulate … --no-noise``)."""
    from pathlib import Path

    import xarray as xr

    for d in runs:
        for sr in sorted(Path(d).glob("cells/*/*/sr.zarr")):
            ds = xr.open_zarr(sr)
            if [str(e) for e in ds["element"].values] == elements and ds["maps"].shape[1:] == shape:
                yield sr.parent.name, ds["maps"].values.astype(np.float64)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scenes", default="sim-isabel:101:256,sim-virgin:102:256")
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--markdown", action="store_true", help="the tables in Markdown")
    ap.add_argument("--oracles", default="ridge,MLP", help="ridge, MLP, both or '' (none)")
    ap.add_argument("--runs", default="", metavar="RUN_DIR[,RUN_DIR…]",
                    help="also score the columns of these runs on the scenes' noise-free copies "
                         "against the same truth and normalisation")
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    for spec in a.scenes.split(","):
        run(spec, a.steps, [r for r in a.runs.split(",") if r],
            [o for o in a.oracles.split(",") if o], a.markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
