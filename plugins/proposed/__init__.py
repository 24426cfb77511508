"""The proposed method: cross-modal self-supervised adversarial learning for MA-XRF SR.

H. Verinaz-Jadan, S. Yan, C. Higgitt, P. L. Dragotti (``shared/paper/maxrf-sr-paper.md``).
A LISTA-unfolded generator (``model.py``, Eqs. 7–9) maps each pixel of
``X = [bilinear(Y_lr) ; RGB]`` to ``X̂ = [Ŷ ; Ẑ]``; the output is ``Proj(Ŷ)`` (Eq. 10).  It
is trained on the scan itself (``train.py``, Eq. 11): consistency with the LR maps,
reconstruction of the RGB, and a misclassification-focused LSGAN loss (``losses.py``,
Eqs. 12–13) against pseudo-real patches (``augment.py``, Eq. 14).  ``ablation.py`` has the
variants of Tables II–III and the ``maxrf-bench ablate`` command.

Presets: ``paper`` has the paper's values (α1 = 0.003, α2 = 0.5e-6, Adam, patches and
batch 32, learning rates 3e-4 / 3e-6, 1e5 + 5e5 iterations, full-image layout: a GPU job);
``fast`` is the CPU schedule (random mini-batches of blocks, cosine decay) that reaches the
plateau of a 10× longer run in a few minutes on 2 cores.  The defaults are ``fast``.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

import maxrf_bench as mb

from .model import GENERATOR_CONFIG, Generator, load_generator, save_generator
from .train import CHECKPOINT, fingerprint, network_input, prepare_data, train_generator

__all__ = ["DEFAULTS", "PRESETS", "Generator", "load_generator", "run_proposed", "super_resolve"]

#: Every parameter of the method.  Paper values where the paper gives them (Sec. IV-A);
#: the iteration counts and schedule are the ``fast`` CPU schedule.
DEFAULTS: dict = {
    # architecture (Sec. III, IV-A)
    "atoms": 64,                 # M, channels of A
    "layers": 5,                 # K, unfolded LISTA iterations
    "activation": "sigmoid",     # sigmoid (paper) | leaky_relu (Table III ablation)
    "synthesis": "sigmoid",      # sigmoid: Eq. 8 | linear: D A (Table III ablation)
    "projection": True,          # Eq. 10 on the output (and on the adversarial patches)
    # loss, Eq. 11 (Table II switches)
    "use_lc1": True,
    "use_lc2": True,
    "use_adv": True,
    "adv_loss": "focused",       # focused (Eqs. 12-13) | standard LSGAN (Table III)
    "alpha1": 0.003,
    "alpha2": 0.5e-6,
    # optimisation
    "pretrain_iterations": 2000,
    "adversarial_iterations": 100,
    "pretrain_lr": 1e-2,          # not given by the paper (paper preset: 3e-4)
    "lr_generator": 3e-4,
    "lr_discriminator": 3e-6,
    "schedule": "cosine",         # constant (paper) | cosine decay to 1 % within each stage
    "batch_size": 32,             # adversarial patches per iteration
    "patch_size": 32,             # discriminator patches are patch_size × patch_size
    "disc_width": 64,             # channels of the discriminator's first conv (our choice)
    "layout": "blocks",           # blocks: random LR-block mini-batches | image: naive full image
    "batch_blocks": 256,          # LR blocks per pre-training step (0 = the whole image)
    "adv_batch_blocks": 256,     # LR blocks for L_c1/L_c2 per adversarial step (0 = whole image)
    # engineering
    "threads": 0,                 # torch CPU threads (0 = auto: 1 or all, whichever is faster now)
    "checkpoint_seconds": 30.0,   # checkpoint at most this often (0 = never by time)
    "checkpoint_iterations": 0,   # and/or every N iterations (0 = never by count)
    "infer_batch": 4096,          # pixel rows per inference batch (cache-friendly)
}

PRESETS: dict = {
    "paper": {"pretrain_iterations": 100_000, "adversarial_iterations": 500_000,
              "pretrain_lr": 3e-4, "schedule": "constant", "layout": "image",
              "batch_blocks": 0, "adv_batch_blocks": 0},
    # the CPU schedule (= the defaults, spelled out): ~3-4 min for sim-flowers on 2 cores
    "fast": {"pretrain_iterations": 2000, "adversarial_iterations": 100, "pretrain_lr": 1e-2,
             "schedule": "cosine", "layout": "blocks", "batch_blocks": 256, "adv_batch_blocks": 256},
}

_CHOICES = {"activation": ("sigmoid", "leaky_relu"), "synthesis": ("sigmoid", "linear"),
            "adv_loss": ("focused", "standard"), "schedule": ("constant", "cosine"),
            "layout": ("blocks", "image")}


def check_params(params: dict) -> None:
    """One clear :class:`maxrf_bench.ConfigError` per bad parameter."""
    for key, allowed in _CHOICES.items():
        if params[key] not in allowed:
            raise mb.ConfigError(f"proposed.{key} must be one of {', '.join(allowed)}, "
                                 f"found {params[key]!r}")
    positive = ("atoms", "layers", "batch_size", "patch_size", "disc_width", "infer_batch")
    for key in positive:
        if int(params[key]) < 1:
            raise mb.ConfigError(f"proposed.{key} must be a positive integer, found {params[key]!r}")
    for key in ("pretrain_iterations", "adversarial_iterations", "batch_blocks", "adv_batch_blocks",
                "threads", "checkpoint_iterations"):
        if int(params[key]) < 0:
            raise mb.ConfigError(f"proposed.{key} must be ≥ 0, found {params[key]!r}")
    for key in ("pretrain_lr", "lr_generator", "lr_discriminator"):
        if not float(params[key]) > 0:
            raise mb.ConfigError(f"proposed.{key} must be > 0, found {params[key]!r}")
    if int(params["patch_size"]) < 8:
        raise mb.ConfigError(f"proposed.patch_size must be ≥ 8, found {params['patch_size']!r}")


def resolve_device(device: str) -> torch.device:
    """``auto`` → CUDA when torch sees a GPU, else CPU; ``cuda`` without a GPU is an error."""
    if device in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda":
        if not torch.cuda.is_available():
            raise mb.ConfigError("device 'cuda' was asked for but torch sees no CUDA GPU; "
                                 "use --device auto or cpu")
        return torch.device("cuda")
    if device == "cpu":
        return torch.device("cpu")
    raise mb.ConfigError(f"device must be auto, cpu or cuda, found {device!r}")


@torch.no_grad()
def super_resolve(generator: Generator, maps_lr: np.ndarray, rgb: np.ndarray, operator,
                  project: bool = True, batch: int = 4096) -> np.ndarray:
    """Full-image inference: ``Proj(Ŷ)`` ``(B, H, W)`` float32 from numpy inputs.

    Bilinear-upsample ``maps_lr`` ``(B, h, w)``, stack with ``rgb`` ``(3, H, W)`` (Eq. 7's
    ``X``), run the generator on pixel rows ``batch`` at a time (rows of ~4k stay in cache),
    keep ``Ŷ = X̂[0:B]`` (Eq. 9) and apply the projection of Eq. 10 with ``operator``.
    """
    maps_lr = np.asarray(maps_lr, np.float32)
    x, _ = network_input(maps_lr, rgb, operator.scale)
    c, h, w = x.shape
    n_el = maps_lr.shape[0]
    if c != generator.n_channels:
        raise mb.ConfigError(f"the generator takes {generator.n_channels} channels "
                             f"({generator.n_elements} elements + {generator.n_bands} bands), "
                             f"found {n_el} elements + {c - n_el} bands")
    rows = torch.from_numpy(np.ascontiguousarray(x.reshape(c, -1).T))
    device = next(generator.parameters()).device
    out = torch.empty(rows.shape[0], n_el)
    was_training = generator.training
    generator.eval()
    for start in range(0, rows.shape[0], batch):
        chunk = rows[start:start + batch].to(device)
        out[start:start + batch] = generator(chunk)[:, :n_el].cpu()
    generator.train(was_training)
    y_hat = out.numpy().T.reshape(n_el, h, w)
    if project:
        y_hat = operator.project(y_hat, maps_lr)
    return np.asarray(y_hat, dtype=np.float32)


def run_proposed(inputs: mb.MethodInputs, **params):
    """Train the generator on this scan (or reuse the one trained in ``inputs.workdir``) and
    return ``Proj(Ŷ)`` on the HR grid."""
    unknown = set(params) - set(DEFAULTS)
    if unknown:
        raise mb.ConfigError(f"proposed has no parameter(s) {sorted(unknown)}; "
                             f"expected some of: {', '.join(sorted(DEFAULTS))}")
    p = {**DEFAULTS, **params}
    check_params(p)
    device = resolve_device(inputs.device)
    threads_before = torch.get_num_threads()
    try:
        torch.set_num_threads(int(p["threads"]) if int(p["threads"]) > 0 else choose_threads(device))
        return _run(inputs, p, device)
    finally:
        torch.set_num_threads(threads_before)


def choose_threads(device: torch.device) -> int:
    """Torch CPU threads for this run: 1 or all cores, whichever runs a training step faster.

    On a busy machine (cores shared with other processes) OpenMP threads that wait on each
    other are descheduled and a multi-threaded step can be 10× slower than a single-threaded
    one; on an idle machine all cores win.  A 0.2 s probe tells which case this is.
    """
    n_all = torch.get_num_threads()
    if device.type != "cpu" or n_all <= 1:
        return n_all
    g = Generator(8)
    x = torch.rand(2048, g.n_channels)
    timings = {}
    for n in (1, n_all):
        torch.set_num_threads(n)
        best = float("inf")
        for _ in range(3):
            t = time.perf_counter()
            g(x).square().mean().backward()
            best = min(best, time.perf_counter() - t)
        timings[n] = best
    return min(timings, key=timings.get)


def _run(inputs: mb.MethodInputs, p: dict, device: torch.device):
    torch.manual_seed(inputs.seed)
    np.random.seed(inputs.seed % 2**32)
    maps_lr = np.asarray(inputs.maps_lr.values, np.float32)
    rgb = np.asarray(inputs.rgb.values, np.float32)
    op = inputs.operator
    if rgb.shape[0] != 3:
        raise mb.ScanValidationError(f"the proposed method needs an RGB photograph (3 bands), "
                                     f"found {rgb.shape[0]} band(s)")
    fp = fingerprint(p, maps_lr, rgb, op, inputs.seed)
    workdir = Path(inputs.workdir) if inputs.workdir is not None else None
    generator = None
    if workdir is not None and (workdir / GENERATOR_CONFIG).exists():
        try:
            cached, meta = load_generator(workdir)
            if meta.get("fingerprint") == fp:
                generator = cached.to(device)
                inputs.progress(1, 1, "reusing the generator trained earlier")
        except (mb.MaxrfError, KeyError, ValueError, RuntimeError):
            generator = None  # an unreadable model is retrained, not trusted
    if generator is None:
        data = prepare_data(maps_lr, rgb, op, device)
        generator, summary = train_generator(data, p, seed=inputs.seed, progress=inputs.progress,
                                             workdir=workdir, fp=fp)
        if workdir is not None:
            meta = {"fingerprint": fp, "elements": inputs.elements, "scale": op.scale,
                    "operator": op.to_dict(), "params": p,
                    "activation": p["activation"], "synthesis": p["synthesis"],
                    "projection": bool(p["projection"]),
                    "input": "X = [bilinear(maps_lr) ; rgb] per pixel, rgb bands R,G,B in [0,1]",
                    "output": "X_hat = [Y_hat ; Z_hat]; maps = Proj(Y_hat) (Eq. 10) when projection",
                    "training": summary, "seed": inputs.seed}
            save_generator(generator.cpu(), workdir, meta)
            generator.to(device)
            (workdir / CHECKPOINT).unlink(missing_ok=True)
    out = super_resolve(generator, maps_lr, rgb, op, project=bool(p["projection"]),
                        batch=int(p["infer_batch"]) * (16 if device.type == "cuda" else 1))
    return inputs.as_hr(out)


def _export(workdir, path, metadata):
    from .onnx_export import export_onnx  # written by the ONNX helper; imported lazily

    return export_onnx(workdir, path, metadata)


@mb.hookimpl
def maxrf_bench_register_methods(register):
    register(mb.Method(
        "proposed", run_proposed,
        description="self-supervised adversarial LISTA-unfolded network guided by RGB "
                    "(Verinaz-Jadan et al.); trains on the scan itself",
        defaults=DEFAULTS, presets=PRESETS,
        reference="H. Verinaz-Jadan, S. Yan, C. Higgitt, P. L. Dragotti, 'Cross-Modal "
                  "Self-Supervised Adversarial Learning for MA-XRF Super-Resolution'",
        export=_export,
    ))


@mb.hookimpl
def maxrf_bench_register_commands(cli):
    from .ablation import ablate_command

    cli.add_command(ablate_command)
