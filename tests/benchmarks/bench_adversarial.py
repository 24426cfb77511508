"""Does the adversarial stage act?  Diagnostics of the paper's values beside the calibration.

One pre-training (the ``fast`` schedule's stage 1, shortened with ``--pretrain``) is
checkpointed; every configuration below then runs the same adversarial stage from that
checkpoint — same generator, same initial discriminator, same random stream:

* ``paper``       — α2 = 0.5e-6, discriminator lr 3e-6, no warm-up (Sec. IV-A, literal);
* ``calibrated``  — the ``fast`` preset's stage: discriminator warm-up, lr, and α2 set by
  ``adv_calibration`` (see ``plugins/proposed/train.py``).

Each also runs with α2 = 0 (``adv_calibration = none, alpha2 = 0``: the calibration has
its own random stream, so the batches are identical) and, for the calibrated one, with the
standard LSGAN loss.  Printed per configuration:

* ``grad ratio``  — ``‖∇θ(α2·L_adv)‖ / ‖∇θ L_c1‖`` (mean over 8 mini-batches) at the first
  joint iteration, half-way and at the end;
* ``acc real / acc fake`` — share of pseudo-real patches the discriminator scores > 0 and of
  generated ones it scores < 0 (over the last quarter of the stage);
* ``keep G / keep D`` — share of patches the focused masks keep: generated patches with
  d < 1 (Eq. 12), and generated with d > −1 plus pseudo-real with d < 1 (Eq. 13);
* ``score range`` — the discriminator's scores over the stage;
* ``RMS vs α2=0`` — RMS difference (normalised units) of the final maps against the same
  run with α2 = 0; ``RMS focused vs standard`` likewise;
* PSNR (dB, against the ground truth, after projection) of every run.

    .venv/bin/python tests/benchmarks/bench_adversarial.py [--dataset sim-demo]
        [--pretrain 2000] [--adversarial N] [--threads 1]

``--adversarial`` defaults to the ``fast`` preset's adversarial iterations.  Timings on a
shared machine are inflated by other processes; compare the rows of one run.
"""
from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import maxrf_bench as mb
from maxrf_bench_plugins.proposed import DEFAULTS, PRESETS, super_resolve
from maxrf_bench_plugins.proposed.train import CHECKPOINT, gradient_norms, prepare_data, train_generator


class _Stop(Exception):
    pass


def psnr(sr, truth) -> float:
    return float(-20 * np.log10(np.sqrt(np.mean((np.asarray(sr, np.float64) - truth) ** 2))))


def pretrain_checkpoint(data, params: dict, seed: int, workdir: Path) -> Path:
    """Run stage 1 of ``params`` and stop at its end: ``workdir/checkpoint.pt``."""
    n_pre = int(params["pretrain_iterations"])

    def stop(done, total, message=""):
        if done >= n_pre:
            raise _Stop

    try:
        train_generator(data, params, seed=seed, progress=stop, workdir=workdir, fp="bench")
    except _Stop:
        pass
    return workdir / CHECKPOINT


def adversarial_run(label: str, data, prep, params: dict, seed: int, ckpt: Path, tmp: Path) -> dict:
    """The adversarial stage of ``params`` from the pre-trained checkpoint, with diagnostics."""
    work = tmp / label
    work.mkdir()
    shutil.copy(ckpt, work / CHECKPOINT)
    n_adv, warm = int(params["adversarial_iterations"]), int(params["disc_warmup"])
    tail = max(1, n_adv // 4)
    marks = {warm, warm + (n_adv - warm) // 2, n_adv - 1}
    st = {"real": [], "fake": [], "lo": np.inf, "hi": -np.inf, "ratio": {}}
    probe = torch.Generator().manual_seed(12345)

    def watch(i_stage, generator, discriminator, stats):
        d_real, d_fake = stats["d_real"].cpu(), stats["d_fake"].cpu()
        st["lo"] = min(st["lo"], float(d_real.min()), float(d_fake.min()))
        st["hi"] = max(st["hi"], float(d_real.max()), float(d_fake.max()))
        if i_stage >= n_adv - tail:
            st["real"].append(d_real)
            st["fake"].append(d_fake)
        if i_stage in marks and stats["joint"]:
            norms = gradient_norms(generator, discriminator, data, params, probe)
            a2 = stats["alpha2"] or 0.0
            st["ratio"][i_stage] = a2 * norms["grad_ladv"] / max(norms["grad_lc1"], 1e-30)

    t = time.perf_counter()
    g, summary = train_generator(data, params, seed=seed, workdir=work, fp="bench", adv_monitor=watch)
    seconds = time.perf_counter() - t
    lr, rgb, op = prep.maps_lr.values, prep.rgb.values, prep.operator
    out = super_resolve(g, lr, rgb, op, project=bool(params["projection"]))
    real = torch.cat(st["real"]) if st["real"] else torch.zeros(0)
    fake = torch.cat(st["fake"]) if st["fake"] else torch.zeros(0)
    n = max(1, real.numel() + fake.numel())
    return {"label": label, "out": out, "psnr": psnr(out, prep.truth), "seconds": seconds,
            "alpha2": summary["alpha2"], "ratio": st["ratio"],
            "acc_real": float((real > 0).float().mean()) if real.numel() else float("nan"),
            "acc_fake": float((fake < 0).float().mean()) if fake.numel() else float("nan"),
            "keep_g": float((fake < 1).float().mean()) if fake.numel() else float("nan"),
            "keep_d": float(((fake > -1).sum() + (real < 1).sum()) / n),
            "range": (st["lo"], st["hi"])}


def rms(a, b) -> float:
    return float(np.sqrt(np.mean((np.asarray(a, np.float64) - b) ** 2)))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dataset", default="sim-demo")
    ap.add_argument("--pretrain", type=int, default=2000, help="pre-training iterations")
    ap.add_argument("--adversarial", type=int, default=None,
                    help="adversarial iterations (default: the fast preset's)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)

    name, load, source = mb.resolve_dataset(args.dataset)
    prep = mb.prepare_scan(load(), name=name, scale=None, source=source)
    if prep.truth is None:
        raise SystemExit(f"{args.dataset} has no ground truth: PSNR cannot be measured")
    data = prepare_data(prep.maps_lr.values, prep.rgb.values, prep.operator, torch.device("cpu"))
    fast = {**DEFAULTS, **PRESETS["fast"], "pretrain_iterations": args.pretrain, "threads": args.threads,
            "checkpoint_seconds": 0.0}
    if args.adversarial is not None:
        fast["adversarial_iterations"] = args.adversarial
    paper_stage = {k: PRESETS["paper"][k] for k in ("alpha2", "adv_calibration", "lr_discriminator",
                                                     "disc_warmup", "disc_width")}
    configs = {
        "paper": {**fast, **paper_stage},
        "calibrated": dict(fast),
    }
    print(f"dataset {name}: {prep.maps_lr.shape[0]} elements, {prep.rgb.shape[1]}×{prep.rgb.shape[2]}; "
          f"pre-training {args.pretrain} it, adversarial {fast['adversarial_iterations']} it, seed {args.seed}")
    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        runs: dict[str, dict] = {}
        ckpts = {}
        for label, p in configs.items():
            key = p["disc_width"]
            if key not in ckpts:   # the initial discriminator depends on its width only
                d = tmp / f"pre-{key}"
                d.mkdir()
                t = time.perf_counter()
                ckpts[key] = pretrain_checkpoint(data, p, args.seed, d)
                print(f"pre-training (disc_width {key}): {time.perf_counter() - t:.1f} s", flush=True)
            variants = {label: p, f"{label}/α2=0": {**p, "adv_calibration": None, "alpha2": 0.0}}
            if label == "calibrated":
                variants[f"{label}/standard"] = {**p, "adv_loss": "standard"}
            for vlabel, vp in variants.items():
                runs[vlabel] = adversarial_run(vlabel.replace("/", "_").replace("=", ""), data, prep, vp,
                                               args.seed, ckpts[key], tmp)
                r = runs[vlabel]
                print(f"  {vlabel:<22} α2 {r['alpha2']:.3g}  PSNR {r['psnr']:.3f} dB  {r['seconds']:.1f} s",
                      flush=True)
    print(f"\n{'configuration':<14}{'α2':>10}{'grad ratio (start, mid, end)':>34}{'acc real':>10}"
          f"{'acc fake':>10}{'keep G':>8}{'keep D':>8}{'score range':>18}{'RMS vs α2=0':>13}{'PSNR':>8}")
    for label in configs:
        r, r0 = runs[label], runs[f"{label}/α2=0"]
        ratios = ", ".join(f"{v:.2g}" for _, v in sorted(r["ratio"].items()))
        lo, hi = r["range"]
        print(f"{label:<14}{r['alpha2']:>10.3g}{ratios:>34}{r['acc_real']:>10.2f}{r['acc_fake']:>10.2f}"
              f"{r['keep_g']:>8.2f}{r['keep_d']:>8.2f}{f'[{lo:.3g}, {hi:.3g}]':>18}"
              f"{rms(r['out'], r0['out']):>13.2e}{r['psnr']:>8.3f}")
    for label in configs:
        print(f"PSNR {label}: {runs[label]['psnr']:.3f} dB, with α2 = 0: {runs[f'{label}/α2=0']['psnr']:.3f} dB")
    c, s = runs["calibrated"], runs["calibrated/standard"]
    print(f"calibrated, focused vs standard LSGAN: RMS {rms(c['out'], s['out']):.2e}, "
          f"PSNR {c['psnr']:.3f} vs {s['psnr']:.3f} dB")


if __name__ == "__main__":
    main()
