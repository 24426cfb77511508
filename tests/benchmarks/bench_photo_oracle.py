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
the two oracles.  Where the oracles stay below the HR scan, no method that sees only the
photograph and a (however long) LR scan reaches the HR scan on that map, whatever its
capacity: the detail is not in its inputs.

Run:  .venv/bin/python tests/benchmarks/bench_photo_oracle.py [--scenes sim-isabel:101:256,sim-virgin:102:256]
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


def run(spec: str, steps: int) -> None:
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
    x = features(rgb, upn)
    y = cn.reshape(n, -1).T
    left = (np.arange(h * w) % w) < w // 2
    t0 = time.perf_counter()
    pred_r, pred_m = np.empty_like(y), np.empty_like(y)
    for tr in (left, ~left):  # fit on one half, score the other
        pred_r[~tr] = ridge(x[tr], y[tr], x[~tr])
        pred_m[~tr] = mlp(x[tr], y[tr], x[~tr], steps=steps)
    pred_in = mlp(x, y, x, steps=steps)
    pr, pm, pin = (p.T.reshape(n, h, w) for p in (pred_r, pred_m, pred_in))
    print(f"\n{spec} (block mean, s = {s}; {x.shape[1]} features; {time.perf_counter() - t0:.0f} s)")
    print(f"{'element':8} {'span':>7} {'hidden':>6} {'HR scan':>8} {'bicubic':>8} {'ridge':>8} "
          f"{'MLP':>8} {'MLP in-sample':>14}   MLP − HR scan")
    for i in sorted(range(n), key=lambda i: -span[i, 0, 0]):
        hr = psnr(hrn[i], cn[i])
        row = [psnr(v[i], cn[i]) for v in (upn, pr, pm, pin)]
        tag = " (hidden)" if hs[i] >= HIDDEN_THRESHOLD else ""
        print(f"{els[i]:8} {span[i, 0, 0]:7.0f} {hs[i]:6.2f} {hr:8.2f} " + " ".join(f"{v:8.2f}" for v in row[:3])
              + f" {row[3]:14.2f}   {row[2] - hr:+6.2f}{tag}")
    print(f"{'all':8} {'':7} {'':6} {psnr(hrn, cn):8.2f} "
          + " ".join(f"{psnr(v, cn):8.2f}" for v in (upn, pr, pm)) + f" {psnr(pin, cn):14.2f}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scenes", default="sim-isabel:101:256,sim-virgin:102:256")
    ap.add_argument("--steps", type=int, default=3000)
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    for spec in a.scenes.split(","):
        run(spec, a.steps)
    return 0


if __name__ == "__main__":
    sys.exit(main())
