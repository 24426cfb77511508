"""Training of the generator (paper Sec. III-A and IV-A): pre-training, then adversarial.

Loss (Eq. 11)::

    L = L_c1(Y_lr, down(Ŷ)) + α1 · L_c2(Z, Ẑ) + α2 · L_adv(Proj(g(X)))

with ``down`` the host's forward operator ``U`` (``operator.down``: the s×s block mean by
default), MSE for ``L_c1`` and ``L_c2``, ``Ŷ`` taken **before** the projection, and
``L_adv`` the focused LSGAN loss of Eq. 12 on single-channel patches of the **projected**
output.  Stage 1 (pre-training) leaves ``L_adv`` out; stage 2 adds it and trains the
discriminator (Eq. 13) on pseudo-real patches (Eq. 14) against generated ones.

Why training can be fast (``layout="blocks"``, the default)
-----------------------------------------------------------
``g`` is per pixel and, for the block-mean operator, ``L_c1`` of an LR pixel depends only on
the ``s × s`` HR pixels of its block.  So the full-image loss is the mean of independent
per-block terms, and a random mini-batch of blocks gives an unbiased estimate of it at a
fraction of the cost: pixel rows ``(n·s², C)`` go through the generator as plain matrix
products (cache-friendly), and the gradient of ``L_c1`` needs nothing else.  The
adversarial term needs ``Proj(g(X))`` only on the 32×32 patches the discriminator sees;
with patches aligned to the block grid the block-mean projection of a patch uses only the
patch's own blocks, so the generator runs on the patch pixels alone and the projection is
the host's ``operator.project`` applied to the patch and its LR blocks — exactly the
full-image projection restricted to the patch.

For other operators (the Gaussian beam) the same code runs on tiles padded by a margin of
LR pixels on which the loss is not taken (the blur's support), which is exact up to the
beam's tails (the projection of an adversarial region is likewise exact only up to the
tails of the inverse Gram operator); ``layout="image"`` is the naive full-image implementation of the paper
(1×1 convolutions on ``(1, C, H, W)``, full-image ``down`` and ``Proj``): exact for any
operator, but every step runs all H·W pixels (64× the 4096 rows of a ``fast`` step
at 512²), kept for the benchmark and the ``paper`` preset.

Schedules: the paper uses constant learning rates (pre-training rate not given: we use
the generator's 3e-4).  ``schedule="cosine"`` decays each stage's rate to 1 % with a
cosine, which reaches the plateau in far fewer steps (the ``fast`` preset).
"""
from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

import maxrf_bench as mb

from .augment import most_correlated_band, pseudo_real_patches, random_flips
from .discriminator import Discriminator
from .losses import discriminator_loss, generator_adversarial_loss
from .model import Generator, split_reconstruction

CHECKPOINT = "checkpoint.pt"
PROGRESS_EVERY = 25


# --- atomic files ---------------------------------------------------------------------

def atomic_torch_save(obj, path: Path) -> None:
    with mb.atomic_path(path) as tmp:
        torch.save(obj, tmp)


def atomic_write_json(path: Path, obj) -> None:
    mb.atomic_write_text(path, json.dumps(obj, indent=1, default=str))


# --- data -----------------------------------------------------------------------------

@dataclass
class TrainData:
    """Everything training reads, as tensors on the training device.

    ``lr`` ``(B, h, w)`` measured maps; ``x_hw`` ``(H, W, B+3)`` the network input
    ``X = [Y↑ ; Z]`` in pixels×channels layout; ``y_up`` ``(B, H, W)`` = ``Y↑`` (bilinear);
    ``rgb`` ``(3, H, W)`` = ``Z``; ``best_band`` ``(B,)`` RGB band most correlated with each
    element (Eq. 14); ``margin`` LR pixels around a tile on which ``L_c1`` is not taken.
    """

    lr: torch.Tensor
    x_hw: torch.Tensor
    y_up: torch.Tensor
    rgb: torch.Tensor
    best_band: torch.Tensor
    operator: object
    scale: int
    margin: int

    @property
    def n_elements(self) -> int:
        return int(self.lr.shape[0])


def network_input(maps_lr: np.ndarray, rgb: np.ndarray, scale: int) -> tuple[np.ndarray, np.ndarray]:
    """``X = [Y↑ ; Z]`` (Eq. 7 text): ``(B+3, H, W)`` and ``Y↑`` ``(B, H, W)`` (bilinear)."""
    y_up = mb.upsample(np.asarray(maps_lr, np.float32), scale, "bilinear").astype(np.float32)
    return np.concatenate([y_up, np.asarray(rgb, np.float32)], axis=0), y_up


def operator_margin(operator) -> int:
    """LR pixels of context a tile needs so that ``down`` of its interior is exact (0 for the
    block mean; the Gaussian beam's 4σ support otherwise)."""
    if isinstance(operator, mb.BlockMean):
        return 0
    sigma = float(getattr(operator, "sigma", 2.0 * operator.scale))
    return max(1, math.ceil(4.0 * sigma / operator.scale))


def prepare_data(maps_lr: np.ndarray, rgb: np.ndarray, operator, device: torch.device) -> TrainData:
    s = operator.scale
    x, y_up = network_input(maps_lr, rgb, s)
    best = most_correlated_band(y_up, rgb)
    t = lambda a: torch.as_tensor(np.ascontiguousarray(a), dtype=torch.float32, device=device)  # noqa: E731
    return TrainData(lr=t(maps_lr), x_hw=t(np.moveaxis(x, 0, -1)), y_up=t(y_up), rgb=t(rgb),
                     best_band=torch.as_tensor(best, dtype=torch.long), operator=operator, scale=s,
                     margin=operator_margin(operator))


def gather_regions(img_hw: torch.Tensor, y0: torch.Tensor, x0: torch.Tensor, size: int) -> torch.Tensor:
    """Square regions ``(n, size, size, C)`` of ``img_hw`` ``(H, W, C)`` at top-left ``(y0, x0)``."""
    d = torch.arange(size, device=img_hw.device)
    rows = (y0.to(img_hw.device)[:, None] + d)[:, :, None]
    cols = (x0.to(img_hw.device)[:, None] + d)[:, None, :]
    return img_hw[rows, cols]


def gather_lr(lr: torch.Tensor, y0: torch.Tensor, x0: torch.Tensor, size: int) -> torch.Tensor:
    """LR regions ``(n, B, size, size)`` of ``lr`` ``(B, h, w)`` at LR top-left ``(y0, x0)``."""
    return gather_regions(lr.permute(1, 2, 0), y0, x0, size).permute(0, 3, 1, 2)


# --- the loss terms on a mini-batch ---------------------------------------------------

def consistency_losses(generator: Generator, data: TrainData, n_tiles: int, gen: torch.Generator,
                       tile: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """``L_c1`` and ``L_c2`` (Eq. 11, MSE) on ``n_tiles`` random tiles of ``tile × tile`` LR
    pixels (``n_tiles = 0``: the whole image, i.e. the paper's full-image loss).

    ``L_c1 = MSE(down(Ŷ), Y_lr)`` with ``Ŷ`` before projection; ``L_c2 = MSE(Ẑ, Z)``.
    """
    B, h, w = data.lr.shape
    s, m = data.scale, data.margin
    if n_tiles <= 0:
        x = data.x_hw.reshape(-1, data.x_hw.shape[-1])
        y_hat, z_hat = split_reconstruction(generator(x), B)
        H, W = data.x_hw.shape[:2]
        y_img = y_hat.t().reshape(B, H, W)
        lc1 = torch.mean((data.operator.down(y_img) - data.lr) ** 2)
        lc2 = torch.mean((z_hat - x[:, B:]) ** 2)
        return lc1, lc2
    span = tile + 2 * m
    if span > min(h, w):
        raise mb.ConfigError(f"the scan's LR grid {h}×{w} is smaller than a training tile with its "
                             f"operator margin ({span} LR pixels)")
    by = torch.randint(0, h - span + 1, (n_tiles,), generator=gen)
    bx = torch.randint(0, w - span + 1, (n_tiles,), generator=gen)
    size = span * s
    x = gather_regions(data.x_hw, by * s, bx * s, size)              # (n, size, size, C)
    x_rows = x.reshape(-1, x.shape[-1])
    y_hat, z_hat = split_reconstruction(generator(x_rows), B)
    y_tiles = y_hat.reshape(n_tiles, size, size, B).permute(0, 3, 1, 2)
    down = data.operator.down(y_tiles)[:, :, m:m + tile, m:m + tile]  # interior LR pixels only
    target = gather_lr(data.lr, by + m, bx + m, tile)
    lc1 = torch.mean((down - target) ** 2)
    lc2 = torch.mean((z_hat - x_rows[:, B:]) ** 2)
    return lc1, lc2


def generated_patches(generator: Generator, data: TrainData, n: int, patch: int,
                      gen: torch.Generator, project: bool) -> torch.Tensor:
    """``n`` single-channel patches ``(n, 1, patch, patch)`` of ``Proj(g(X))`` (Eq. 10–11).

    Each patch has a random element and a random block-aligned position; the generator runs
    on the patch pixels (plus the operator margin) only, and the projection is the host's
    ``operator.project`` on that region — exact for the block mean, whose projection is
    local to each block.
    """
    B, h, w = data.lr.shape
    s, m = data.scale, data.margin
    blocks = -(-patch // s) + 2 * m
    if blocks > min(h, w):
        raise mb.ConfigError(f"adversarial patches of {patch} px need an LR grid of at least "
                             f"{blocks}×{blocks}, found {h}×{w}; lower patch_size")
    size = blocks * s
    el = torch.randint(0, B, (n,), generator=gen)
    by = torch.randint(0, h - blocks + 1, (n,), generator=gen)
    bx = torch.randint(0, w - blocks + 1, (n,), generator=gen)
    x = gather_regions(data.x_hw, by * s, bx * s, size)
    y_hat, _ = split_reconstruction(generator(x.reshape(-1, x.shape[-1])), B)
    y_hat = y_hat.reshape(n, size, size, B)
    idx = el.to(y_hat.device)
    y_sel = y_hat[torch.arange(n, device=y_hat.device), :, :, idx]    # (n, size, size)
    if project:
        lr_sel = gather_lr(data.lr, by, bx, blocks)[torch.arange(n), idx]  # (n, blocks, blocks)
        y_sel = data.operator.project(y_sel, lr_sel)
    y_sel = y_sel[:, m * s:m * s + patch, m * s:m * s + patch]
    return random_flips(y_sel, gen).unsqueeze(1)


def full_image_step_tensors(generator: Generator, data: TrainData, conv: bool = True):
    """Naive full-image forward: ``X̂`` as ``(C, H, W)`` via 1×1 convolutions on ``(1, C, H, W)``."""
    x = data.x_hw.permute(2, 0, 1).unsqueeze(0)
    if conv:
        return forward_conv1x1(generator, x)[0]
    H, W, C = data.x_hw.shape
    return generator(data.x_hw.reshape(-1, C)).t().reshape(C, H, W)


def forward_conv1x1(generator: Generator, x: torch.Tensor) -> torch.Tensor:
    """The paper's formulation of ``g``: every product of Eqs. 7–8 as a 1×1 convolution on
    an image batch ``(N, C, H, W)``.  Same weights and result as ``generator(rows)``."""
    from torch.nn.functional import conv2d

    act = generator._act
    x = (x - generator.input_offset[:, None, None]) / generator.input_scale[:, None, None]
    a = None
    for k in range(len(generator.S)):
        pre = conv2d(x, generator.S[k][:, :, None, None], -generator.lam[k])
        if a is not None:
            pre = pre + a - conv2d(a, generator.W[k - 1][:, :, None, None])
        a = act(pre)
    lam = generator.lam_synthesis
    if lam is None:
        return conv2d(a, generator.D[:, :, None, None])
    return act(conv2d(a, generator.D[:, :, None, None], -lam))


def image_losses(generator: Generator, data: TrainData, n_patches: int, patch: int,
                 gen: torch.Generator, project: bool, need_patches: bool):
    """Naive layout: ``L_c1``, ``L_c2`` on the whole image and patches cut from ``Proj(Ŷ)``."""
    B = data.n_elements
    x_hat = full_image_step_tensors(generator, data, conv=True)
    y_img, z_img = x_hat[:B], x_hat[B:]
    lc1 = torch.mean((data.operator.down(y_img) - data.lr) ** 2)
    lc2 = torch.mean((z_img - data.rgb) ** 2)
    fake = None
    if need_patches:
        y_out = data.operator.project(y_img, data.lr) if project else y_img
        H, W = y_img.shape[-2:]
        el = torch.randint(0, B, (n_patches,), generator=gen)
        y0 = torch.randint(0, H - patch + 1, (n_patches,), generator=gen)
        x0 = torch.randint(0, W - patch + 1, (n_patches,), generator=gen)
        regions = gather_regions(y_out.permute(1, 2, 0), y0, x0, patch)   # (n, P, P, B)
        fake = regions[torch.arange(n_patches), :, :, el.to(regions.device)]
        fake = random_flips(fake, gen).unsqueeze(1)
    return lc1, lc2, fake


# --- the training loop ----------------------------------------------------------------

def _lr_factor(schedule: str, i: int, n: int) -> float:
    if schedule == "constant" or n <= 1:
        return 1.0
    if schedule == "cosine":
        return 0.01 + 0.99 * 0.5 * (1.0 + math.cos(math.pi * min(i, n) / n))
    raise mb.ConfigError(f"schedule must be 'constant' or 'cosine', found {schedule!r}")


def fingerprint(params: dict, maps_lr: np.ndarray, rgb: np.ndarray, operator, seed: int) -> str:
    """Identifies a training run: a checkpoint of another run is never resumed."""
    keys = sorted(k for k in params if k not in NON_TRAINING_PARAMS)
    blob = json.dumps({"params": {k: params[k] for k in keys}, "operator": operator.to_dict(),
                       "seed": seed, "shape": [list(maps_lr.shape), list(rgb.shape)]},
                      sort_keys=True, default=str).encode()
    h = hashlib.sha256(blob)
    h.update(np.ascontiguousarray(maps_lr, np.float32).tobytes())
    h.update(np.ascontiguousarray(rgb, np.float32).tobytes())
    return h.hexdigest()[:20]


NON_TRAINING_PARAMS = {"threads", "checkpoint_seconds", "checkpoint_iterations", "infer_batch",
                       "device"}


def train_generator(data: TrainData, params: dict, *, seed: int = 0,
                    progress: Callable = lambda *a, **k: None, workdir: Path | None = None,
                    fp: str = "", monitor: Callable | None = None, monitor_every: int = 0
                    ) -> tuple[Generator, dict]:
    """Two-stage training (pre-training, then adversarial), resumable from ``workdir``.

    ``params`` are the method's parameters (see ``maxrf_bench_plugins.proposed.DEFAULTS``).
    ``monitor(iteration, generator)`` (benchmarks only) is called every ``monitor_every``
    iterations.  Returns the trained generator and a summary (iterations, seconds, losses).
    """
    device = data.x_hw.device
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    generator = Generator(data.n_elements, data.x_hw.shape[-1] - data.n_elements,
                          n_atoms=params["atoms"], n_layers=params["layers"],
                          activation=params["activation"], synthesis=params["synthesis"]).to(device)
    generator.init_from_data(data.x_hw.reshape(-1, data.x_hw.shape[-1]))
    discriminator = Discriminator(params["patch_size"], params["disc_width"]).to(device)
    gen = torch.Generator().manual_seed(seed)
    n_pre, n_adv = int(params["pretrain_iterations"]), int(params["adversarial_iterations"])
    total = n_pre + n_adv
    use_lc1, use_lc2, use_adv = params["use_lc1"], params["use_lc2"], params["use_adv"]
    if not (use_lc1 or use_lc2 or use_adv):
        raise mb.ConfigError("at least one of use_lc1, use_lc2, use_adv must be true")
    alpha1, alpha2 = float(params["alpha1"]), float(params["alpha2"])
    project, adv_kind, layout = bool(params["projection"]), params["adv_loss"], params["layout"]
    if layout not in ("blocks", "image"):
        raise mb.ConfigError(f"layout must be 'blocks' or 'image', found {layout!r}")
    n_patches, patch = int(params["batch_size"]), int(params["patch_size"])
    H, W = data.x_hw.shape[:2]
    if patch > min(H, W):
        raise mb.ConfigError(f"patch_size {patch} is larger than the scan ({H}×{W}); lower it")

    def make_opt_g(stage: int):
        lr = params["pretrain_lr"] if stage == 1 else params["lr_generator"]
        return torch.optim.Adam(generator.parameters(), lr=lr)

    opt_d = torch.optim.Adam(discriminator.parameters(), lr=params["lr_discriminator"])
    start, elapsed0 = 0, 0.0
    ckpt_path = Path(workdir) / CHECKPOINT if workdir is not None else None
    opt_g = make_opt_g(1)
    if ckpt_path is not None and ckpt_path.exists():
        try:  # weights_only: a pickle naming anything but tensors is refused, never executed
            state = torch.load(ckpt_path, map_location="cpu", weights_only=True)
            state = state if isinstance(state, dict) else {}
        except Exception as exc:  # noqa: BLE001 - unreadable or foreign: train from scratch
            progress(0, total, f"ignoring unreadable checkpoint {ckpt_path.name} "
                               f"({type(exc).__name__}); training from the start")
            ckpt_path.unlink(missing_ok=True)
            state = {}
        if state.get("fingerprint") == fp:
            start = int(state["iteration"])
            generator.load_state_dict(state["generator"])
            discriminator.load_state_dict(state["discriminator"])
            opt_g = make_opt_g(1 if start < n_pre else 2)
            opt_g.load_state_dict(state["opt_g"])
            opt_d.load_state_dict(state["opt_d"])
            gen.set_state(state["rng"])
            elapsed0 = float(state.get("elapsed", 0.0))

    t0 = time.perf_counter()
    last_ckpt = t0
    history: dict[str, float] = {}

    def save_checkpoint(iteration: int) -> None:
        if ckpt_path is None:
            return
        atomic_torch_save({"fingerprint": fp, "iteration": iteration,
                           "generator": generator.state_dict(),
                           "discriminator": discriminator.state_dict(),
                           "opt_g": opt_g.state_dict(), "opt_d": opt_d.state_dict(),
                           "rng": gen.get_state(),
                           "elapsed": elapsed0 + time.perf_counter() - t0}, ckpt_path)

    def report(done: int, message: str) -> None:
        try:
            progress(done, total, message)
        except BaseException:
            save_checkpoint(done)  # interrupted between two iterations: resume from here
            raise

    ck_iters, ck_secs = int(params["checkpoint_iterations"]), float(params["checkpoint_seconds"])
    tile = 1  # LR pixels per tile side: single blocks give the most independent samples
    i = start
    while i < total:
        stage = 1 if i < n_pre else 2
        if stage == 2 and i == n_pre:
            opt_g = make_opt_g(2)  # the adversarial stage restarts Adam at its own rate
        n_stage, i_stage = (n_pre, i) if stage == 1 else (n_adv, i - n_pre)
        base_lr = params["pretrain_lr"] if stage == 1 else params["lr_generator"]
        for g in opt_g.param_groups:
            g["lr"] = base_lr * _lr_factor(params["schedule"], i_stage, n_stage)
        adversarial = stage == 2 and use_adv
        n_tiles = int(params["batch_blocks"] if stage == 1 else params["adv_batch_blocks"])
        # -- L_c1, L_c2 (and, for the naive layout, the generated patches) --
        if layout == "image":
            lc1, lc2, fake = image_losses(generator, data, n_patches, patch, gen, project, adversarial)
        else:
            lc1, lc2 = consistency_losses(generator, data, n_tiles, gen, tile)
            fake = generated_patches(generator, data, n_patches, patch, gen, project) if adversarial else None
        loss = lc1 * (1.0 if use_lc1 else 0.0) + (alpha1 * lc2 if use_lc2 else 0.0)
        if adversarial:
            # -- discriminator step, Eq. 13, on pseudo-real (Eq. 14) vs generated patches --
            real, beta, _ = pseudo_real_patches(data.y_up, data.rgb, data.best_band, n_patches, patch, gen)
            loss_d = discriminator_loss(discriminator(real), discriminator(fake.detach()), adv_kind)
            opt_d.zero_grad(set_to_none=True)
            loss_d.backward()
            opt_d.step()
            # -- generator's adversarial term, Eq. 12 --
            for p in discriminator.parameters():
                p.requires_grad_(False)
            l_adv = generator_adversarial_loss(discriminator(fake), adv_kind)
            for p in discriminator.parameters():
                p.requires_grad_(True)
            loss = loss + alpha2 * l_adv
        opt_g.zero_grad(set_to_none=True)
        loss.backward()
        opt_g.step()
        i += 1
        if monitor is not None and monitor_every and (i % monitor_every == 0 or i == total):
            monitor(i, generator)
        if i % PROGRESS_EVERY == 0 or i == total or i == n_pre:
            history = {"Lc1": float(lc1.detach()), "Lc2": float(lc2.detach())}
            msg = f"{'pretrain' if stage == 1 else 'adversarial'} Lc1 {history['Lc1']:.2e} Lc2 {history['Lc2']:.2e}"
            if adversarial:
                history.update(Ladv=float(l_adv.detach()), LD=float(loss_d.detach()), beta=beta)
                msg += f" Ladv {history['Ladv']:.3f} LD {history['LD']:.3f}"
            report(i, msg)
        now = time.perf_counter()
        if i < total and ((ck_iters and i % ck_iters == 0) or (ck_secs > 0 and now - last_ckpt >= ck_secs)
                          or i == n_pre):
            save_checkpoint(i)
            last_ckpt = now
    generator.eval()
    summary = {"iterations": total, "resumed_from": start,
               "seconds": elapsed0 + time.perf_counter() - t0, "final_losses": history}
    return generator, summary
