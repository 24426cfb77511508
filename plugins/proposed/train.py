"""Training of the generator (paper Sec. III-A and IV-A): pre-training, then adversarial.

Loss (Eq. 11)::

    L = L_c1(Y_lr, down(Ŷ)) + α1 · L_c2(Z, Ẑ) + α2 · L_adv(Proj(g(X)))

with ``down`` the host's forward operator ``U`` (``operator.down``: the s×s block mean by
default), MSE for ``L_c1`` and ``L_c2``, ``Ŷ`` taken **before** the projection, and
``L_adv`` the focused LSGAN loss of Eq. 12 on single-channel patches of the **projected**
output.  Stage 1 (pre-training) leaves ``L_adv`` out; stage 2 adds it and trains the
discriminator (Eq. 13) on pseudo-real patches (Eq. 14) against generated ones.

**Units of the paper's weights.**  ``L_c1`` here is the MSE of the *plain* block mean
(``operator.down``), while the paper's Eq. 10 needs ``U = s·blockmean`` (orthonormal
columns), under which ``L_c1`` is ``s²`` times larger.  So the paper's α1 = 0.003 and
α2 = 0.5e-6, used literally here, weigh ``L_c2`` and ``L_adv`` ``s² = 16×`` (at s = 4)
more heavily relative to ``L_c1`` than under the paper's convention.

The adversarial stage as published, and why it needs a calibration
--------------------------------------------------------------------
Measured with the ``paper`` values (α2 = 0.5e-6, discriminator lr 3e-6; the landed code,
after a short pre-training on sim-demo; ``tests/benchmarks/bench_adversarial.py`` prints
the same figures for the current code): ``‖∇θ(α2·L_adv)‖ / ‖∇θ L_c1‖ ≈ 3e-6``; the
RMS per-parameter gradient of ``α2·L_adv`` (≈ 7e-12) is three orders of magnitude below
Adam's ε = 1e-8, so Adam ignores it; 60 adversarial steps with α2 = 5e-7 and with α2 = 0
give maps that differ by 2e-8 RMS.  The discriminator at 3e-6 moves its weights by 0.9 %
in 100 steps, its scores stay in [−0.014, 0.201] and no patch crosses ±1, so every patch
is "misclassified" and the focused loss equals the standard LSGAN bit for bit.  In short:
with the paper's values the adversarial stage is inert at any budget we can run.

**Calibration (our addition, ``adv_calibration = f``).**  The stage starts with
``disc_warmup`` iterations in which the discriminator trains (at ``lr_discriminator``)
while the generator keeps training on ``L_c1 + α1·L_c2`` alone.  Then α2 is set once::

    α2 = f · mean ‖∇θ L_c1‖ / mean ‖∇θ L_adv‖          (over CALIBRATION_BATCHES batches)

so that the adversarial gradient is the fraction ``f`` of the consistency gradient at the
start of the joint training; the remaining iterations use that fixed α2 (recorded in the
training summary and the checkpoint).  The batches of the calibration come from their own
random stream, so a run with α2 = 0 draws exactly the same batches as a calibrated one.
α2 does not depend on whether ``L_c1`` is used (Table II's ``Lc2+Ladv`` row keeps it).
``adv_calibration = None`` uses ``alpha2`` as given (the ``paper`` preset).

Why training can be fast (``layout="blocks"``, the default)
-----------------------------------------------------------
``g`` is local (per pixel for ``kernel = 1``; a ``(2k−1)²`` neighbourhood of ``X`` for
``kernel = k``) and, for the block-mean operator, ``L_c1`` of an LR pixel depends only on
the ``s × s`` HR pixels of its block.  So the full-image loss is the mean of independent
per-block terms, and a random mini-batch of blocks gives an unbiased estimate of it at a
fraction of the cost.  With ``kernel = 1`` the mini-batch is ``batch_blocks`` lone blocks
(pixel rows through plain matrix products).  With ``kernel > 1`` a block's output needs
``X`` within ``halo = k − 1`` HR pixels, so the mini-batch is ``batch_blocks / t²`` regions
of ``t × t`` blocks (``t = region_blocks``) read with their halo from ``X`` padded by edge
replication — the same function the whole image and the exported tiles compute.  Region
corners are drawn uniformly in ``[−(t−1), h−1]`` (per axis) and blocks outside the scan
are masked, so every LR block lies in exactly ``t`` windows per axis and is drawn with
the same probability: the loss is an unbiased estimate of the full-image ``L_c1`` (and
``L_c2``), edges included.

The adversarial term needs ``Proj(g(X))`` only on the 32×32 patches the discriminator
sees.  Generated patches sit at random HR offsets (any phase with respect to the LR
grid, as the pseudo-real ones), so the generator runs on the ``⌈P/s⌉ + 1`` LR blocks
that cover each patch (plus the halo), the block-mean projection is applied to those
whole blocks with their LR values, and the patch is cut from that region: exactly the
full-image projection restricted to the patch.

For other operators (the Gaussian beam, the coarse scan) the tiles are drawn in the scan's
interior with a margin of LR pixels around them (the beam's support) on which ``L_c1`` is
not taken: exact up to the beam's tails (the projection of an adversarial region is
likewise exact only up to the tails of the inverse Gram operator).  The generator runs only
on the HR window that ``down`` of the interior blocks reads (:func:`tile_window`: the
padded tile less the rows and columns that carry ≤ 1e-5 of any interior pixel's weights),
and ``L_c2`` is taken on that window: for the coarse scan at σ = 0.5 px and step 4, 4 × 8
HR pixels per block instead of the padded tile's 12 × 12.  ``layout="image"`` is
the naive full-image implementation of the paper (1×1 convolutions on ``(1, C, H, W)``,
full-image ``down`` and ``Proj``): exact for any operator, but every step runs all H·W
pixels (64× the 4096 rows of a ``fast`` step at 512²), kept for the benchmark and the
``paper`` preset.

How a step runs (implementation only; the maths above is unchanged).  In training mode the
per-pixel and the ``context="photo"`` generators run on pixel rows, channels last, as one
autograd node with a hand-written backward (``model._ListaRows``; the k×k analysis of the
photograph as one product on its unfolded patches); regions are gathered by one flat row
index; Adam is the fused kernel; glibc's heap keeps the freed megabyte-sized tensors
(:class:`_heap_keeps_freed_memory`).  Profiled before the change (cProfile, 1 thread,
``simulate("sim-flowers", seed=101, size=256)``): autograd's backward 38 %, the
layer-by-layer ``addmm`` 24 %, ``sigmoid`` 8 %, ``conv2d`` (the discriminator) 4 %, the
advanced-indexing gather 2.5 %, Adam's Python loop 2.8 %; at k = 5 the ``conv2d`` analysis
(28 %) and the backward (30 %).  ``tests/test_train_fast_path.py`` pins the step's
outputs and gradients, and a two-stage trajectory, to the plain code.  The backward writes
each layer's activation gradient in place into the product it comes from, and that product
alternates between two buffers (bitwise the same trajectory; 2–6 % less CPU per step).

What is left (``tests/benchmarks/bench_train_profile.py``, ``fast``, 1 thread, 2026-12-05 on
a shared 2-core VM, so CPU seconds): a pre-training step (5000 of the 5200) costs about
10 ms, an adversarial one about 63 ms (the generator on the 16 patches' 20 736 pixel rows,
forward and backward, and the discriminator); the pre-training step is 1.9× the time of its
matrix products alone and 1.4× the time of those products plus the sigmoid's forward and
backward passes.  An fp32 implementation that keeps these products and passes cannot
therefore make the step more than about 1.4× faster; ``torch.compile`` of the step (it
fuses the passes) compiled for 101 s to save about 1–2 ms per step, more than a whole
``fast`` training gains.

Schedules: the paper uses constant learning rates (pre-training rate not given: the
``paper`` preset uses the generator's 3e-4).  ``schedule="cosine"`` decays each stage's
rate to 1 % with a cosine, which reaches the plateau in far fewer steps (``fast``).
"""
from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

import maxrf_bench as mb

from . import check_adversarial_schedule
from .augment import most_correlated_band, pseudo_real_patches, random_flips
from .discriminator import Discriminator
from .losses import discriminator_loss, generator_adversarial_loss
from .model import Generator, pad_replicate

CHECKPOINT = "checkpoint.pt"
PROGRESS_EVERY = 25
#: Mini-batches over which the gradient norms of the calibration are averaged.
CALIBRATION_BATCHES = 8
#: Offset of the calibration's own random stream from the run's seed.
CALIBRATION_SEED_OFFSET = 7919
#: LR blocks per side of a training region for ``kernel > 1`` when ``region_blocks = 0``:
#: a 16×16-pixel core read with its halo (20×20 at k = 3: 1.56× the core's pixels).
AUTO_REGION_BLOCKS = 4


# --- data -----------------------------------------------------------------------------

@dataclass
class TrainData:
    """Everything training reads, as tensors on the training device.

    ``lr`` ``(B, h, w)`` measured maps; ``x_hw`` ``(H, W, B+3)`` the network input
    ``X = [Y↑ ; Z]`` in pixels×channels layout; ``y_up`` ``(B, H, W)`` = ``Y↑`` (bilinear);
    ``rgb`` ``(3, H, W)`` = ``Z``; ``best_band`` ``(B,)`` and ``band_sign`` ``(B,)`` the RGB
    band with the largest ``|r|`` with each element and the sign of ``r`` (Eq. 14);
    ``margin`` LR pixels around a tile on which ``L_c1`` is not taken.  ``x_pad`` is
    ``x_hw`` padded by ``pad`` HR pixels on every side by edge replication (see
    :func:`ensure_padding`).
    """

    lr: torch.Tensor
    x_hw: torch.Tensor
    y_up: torch.Tensor
    rgb: torch.Tensor
    best_band: torch.Tensor
    band_sign: torch.Tensor
    operator: object
    scale: int
    margin: int
    x_pad: torch.Tensor | None = None
    pad: int = 0
    #: ``(B, h, w)`` LR noise std per pixel for ``recorrupt`` (ours); ``None``: blind per element
    noise_std: np.ndarray | None = None
    #: :class:`TileWindow` per tile size, for operators with a margin
    windows: dict = field(default_factory=dict)

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
    best, sign = most_correlated_band(y_up, rgb[:3])   # the photograph's own bands (photo_scales: ours)
    t = lambda a: torch.as_tensor(np.ascontiguousarray(a), dtype=torch.float32, device=device)  # noqa: E731
    x_hw = t(np.moveaxis(x, 0, -1))
    return TrainData(lr=t(maps_lr), x_hw=x_hw, y_up=t(y_up), rgb=t(rgb),
                     best_band=torch.as_tensor(best, dtype=torch.long), band_sign=t(sign),
                     operator=operator, scale=s, margin=operator_margin(operator),
                     x_pad=x_hw, pad=0)


def ensure_padding(data: TrainData, pad: int) -> None:
    """Make ``data.x_pad`` hold ``X`` padded by at least ``pad`` HR pixels (edge replication)."""
    if data.x_pad is not None and data.pad >= pad:
        return
    x = data.x_hw.permute(2, 0, 1).unsqueeze(0)
    data.x_pad = pad_replicate(x, pad)[0].permute(1, 2, 0).contiguous()
    data.pad = pad


def _size_yx(size: int | tuple[int, int]) -> tuple[int, int]:
    """``(sy, sx)`` of a region size given as ``sy = sx`` or ``(sy, sx)``."""
    return (size, size) if isinstance(size, int) else size


def gather_regions(img_hw: torch.Tensor, y0: torch.Tensor, x0: torch.Tensor,
                   size: int | tuple[int, int]) -> torch.Tensor:
    """Regions ``(n, sy, sx, C)`` of ``img_hw`` ``(H, W, C)`` at top-left ``(y0, x0)``; ``size``
    is ``sy = sx`` or ``(sy, sx)``."""
    sy, sx = _size_yx(size)
    dev = img_hw.device
    rows = (y0.to(dev)[:, None] + torch.arange(sy, device=dev))[:, :, None]
    cols = (x0.to(dev)[:, None] + torch.arange(sx, device=dev))[:, None, :]
    if img_hw.is_contiguous():  # whole pixel rows by one flat index: the same values, 5× faster
        flat = (rows * img_hw.shape[1] + cols).reshape(-1)
        return img_hw.reshape(-1, img_hw.shape[2]).index_select(0, flat).reshape(len(y0), sy, sx, -1)
    return img_hw[rows, cols]


def gather_lr(lr: torch.Tensor, y0: torch.Tensor, x0: torch.Tensor, size: int) -> torch.Tensor:
    """LR regions ``(n, B, size, size)`` of ``lr`` ``(B, h, w)`` at LR top-left ``(y0, x0)``."""
    return gather_regions(lr.permute(1, 2, 0), y0, x0, size).permute(0, 3, 1, 2)


def x_regions(data: TrainData, y0: torch.Tensor, x0: torch.Tensor, size: int | tuple[int, int],
              halo: int) -> torch.Tensor:
    """``X`` on HR regions ``[y0, y0+sy) × [x0, x0+sx)`` (``size`` = ``sy = sx`` or ``(sy, sx)``)
    grown by ``halo`` on every side, ``(n, sy+2·halo, sx+2·halo, C)``, read from the
    edge-replicated ``data.x_pad`` (corners may lie outside the scan by up to ``data.pad − halo``)."""
    off = data.pad - halo
    sy, sx = _size_yx(size)
    return gather_regions(data.x_pad, y0 + off, x0 + off, (sy + 2 * halo, sx + 2 * halo))


# --- learned alignment of the photograph (ours, off by default) -------------------------

class PhotoAlign(torch.nn.Module):
    """A smooth displacement of the photograph learned with the generator (our extension,
    ``align = n > 0``; not the paper's method).

    ``field`` is an ``n × n`` grid of ``(dy, dx)`` in HR pixels, upsampled bilinearly to the
    image (corners aligned); the photograph is resampled at ``u + d(u)`` with
    ``grid_sample`` (bilinear, border values).  It starts at zero (the identity up to float
    rounding: bilinear sampling at integer positions), is trained by the same
    self-supervised losses as the generator (``L_c1`` moves the photograph's edges to where the LR maps say they
    are) plus ``align_smooth · mean(Δfield²)`` over neighbouring grid points, during
    pre-training only."""

    def __init__(self, n: int, shape: tuple[int, int]):
        super().__init__()
        self.field = torch.nn.Parameter(torch.zeros(1, 2, int(n), int(n)))
        self.shape = (int(shape[0]), int(shape[1]))

    def displacement(self) -> torch.Tensor:
        """``(2, H, W)`` displacement in HR pixels."""
        return F.interpolate(self.field, size=self.shape, mode="bilinear", align_corners=True)[0]

    def forward(self, rgb: torch.Tensor) -> torch.Tensor:
        h, w = self.shape
        d = self.displacement()
        yy = torch.arange(h, dtype=rgb.dtype, device=rgb.device)[:, None] + d[0]
        xx = torch.arange(w, dtype=rgb.dtype, device=rgb.device)[None, :] + d[1]
        grid = torch.stack([xx * (2.0 / max(w - 1, 1)) - 1, yy * (2.0 / max(h - 1, 1)) - 1], -1)
        return F.grid_sample(rgb[None], grid[None], mode="bilinear", padding_mode="border",
                             align_corners=True)[0]

    def smoothness(self) -> torch.Tensor:
        f = self.field
        return ((f[..., 1:, :] - f[..., :-1, :]) ** 2).mean() + ((f[..., :, 1:] - f[..., :, :-1]) ** 2).mean()


def apply_alignment(rgb: np.ndarray, field) -> np.ndarray:
    """The photograph ``(3, H, W)`` moved by a learned ``field`` (``(1, 2, n, n)`` nested
    lists, from the training summary)."""
    t = torch.as_tensor(np.asarray(field, np.float32))
    align = PhotoAlign(t.shape[-1], rgb.shape[-2:])
    with torch.no_grad():
        align.field.copy_(t)
        return align(torch.as_tensor(np.asarray(rgb, np.float32))).numpy()


# --- warp augmentation of the photograph (ours, off by default) ------------------------

#: warped copies of the photograph a training run with ``warp_augment > 0`` draws from
WARP_BANK = 6
#: offset of the augmentation's own random stream (and of the fields' seeds) from the run's seed
WARP_SEED_OFFSET = 4271


class WarpBank:
    """Training on randomly misregistered copies of the photograph (our extension,
    ``warp_augment = A > 0``; not the paper's method).

    :data:`WARP_BANK` smooth random displacement fields of RMS ``A`` HR pixels, drawn by the
    host's misregistration model (``mb.displacement_field``: local + affine + lens parts,
    seeds from the run's seed), warp the photograph once before training; each training
    iteration then reads ``X`` with one of them or the photograph as given (uniformly, from
    the augmentation's own random stream, so the mini-batches are those of a run without
    it).  ``L_c2`` and the pseudo-real patches read the same copy.  The generator cannot
    count on one exact pixel alignment of the photograph with the maps; inference uses the
    photograph as given."""

    def __init__(self, data: TrainData, amplitude: float, seed: int, pad: int):
        rgb = data.rgb.detach().cpu().numpy()
        h, w = rgb.shape[-2:]
        base = int(seed) + WARP_SEED_OFFSET
        photos = [data.rgb] + [
            torch.as_tensor(mb.warp_photo(rgb, mb.displacement_field((h, w), float(amplitude), base + j)),
                            dtype=data.rgb.dtype, device=data.rgb.device)
            for j in range(WARP_BANK)]
        self.original = (data.x_hw, data.x_pad, data.pad, data.rgb)
        self.entries = []
        for z in photos:
            x = torch.cat([data.y_up, z], 0)
            self.entries.append((x.permute(1, 2, 0).contiguous(),
                                 pad_replicate(x[None], pad)[0].permute(1, 2, 0).contiguous(), pad, z))
        self.gen = torch.Generator().manual_seed(base)

    def select(self, data: TrainData) -> None:
        """Point ``data`` at a copy drawn at random (the photograph as given included)."""
        j = int(torch.randint(0, len(self.entries), (1,), generator=self.gen))
        data.x_hw, data.x_pad, data.pad, data.rgb = self.entries[j]

    def restore(self, data: TrainData) -> None:
        data.x_hw, data.x_pad, data.pad, data.rgb = self.original


# --- the loss terms on a mini-batch ---------------------------------------------------

# --- noise-aware training (ours, option ``recorrupt``) -----------------------------------
#
# Recorrupted-to-Recorrupted (Pang, Zhang, Wang, Zhang & Li, CVPR 2021): with LR maps
# ``Y = Y* + n``, ``n`` of variance ``σ²``, and a fresh ``z ~ N(0, σ²)`` per LR pixel and
# iteration, the network reads ``Y + α·z`` (its LR channels: ``Y↑ + α·z↑``) and ``L_c1``
# compares ``down(Ŷ)`` with ``Y − z/α``.  The two noises ``n + αz`` and ``n − z/α`` are
# uncorrelated, so (for Gaussian ``n``) the expected ``L_c1`` is the clean-target loss plus a
# constant: the network is no longer rewarded for passing the LR scan's counting noise to
# its output.  ``σ`` (option ``recorrupt_noise``): ``"counts"`` (default) the per-pixel
# Poisson std the host knows from the LR counts (``MethodInputs.noise_var``, ``--protocol
# acquisition``; ``E[N/k²] = λ/k²`` makes it an unbiased variance), ``"blind"`` — or where
# the host gives none — one std per element map (``recorrupt_sigma``, skimage's wavelet MAD:
# white noise assumed).  Inference averages the generator over ``RECORRUPT_DRAWS``
# recorrupted inputs (``method.recorrupted_inference``).

RECORRUPT_DRAWS = 8


def recorrupt_sigma(maps_lr: np.ndarray, noise_var: np.ndarray | None = None) -> np.ndarray:
    """``(B, h, w)`` or ``(B, 1, 1)`` noise std of the LR maps (normalised units): the square
    root of ``noise_var`` where given (per pixel, from the counts), else blind per element."""
    if noise_var is not None:
        var = np.broadcast_to(np.asarray(noise_var, np.float64), np.shape(maps_lr))
        return np.sqrt(np.maximum(var, 0.0)).astype(np.float32)
    from skimage.restoration import estimate_sigma

    return np.array([float(estimate_sigma(np.asarray(m, np.float64))) for m in maps_lr],
                    np.float32)[:, None, None]


def noise_share(maps_lr: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    """``(B,)`` share of each LR map's pixel-to-pixel detail that is counting noise, from the
    LR maps and their noise std alone: ``ρ = 2·mean σ² / mean (Y_i − Y_j)²`` over horizontal
    and vertical neighbours (white noise adds ``2σ²`` to each squared difference, so ``ρ`` ≈ 1
    for a map of pure noise and ≈ 0 for one whose detail is all signal)."""
    y = np.asarray(maps_lr, np.float64)
    var = np.broadcast_to(np.square(np.asarray(sigma, np.float64)), y.shape)
    d2 = 0.5 * (np.mean(np.diff(y, axis=-1) ** 2, axis=(-2, -1))
                + np.mean(np.diff(y, axis=-2) ** 2, axis=(-2, -1)))
    with np.errstate(divide="ignore", invalid="ignore"):
        rho = np.where(d2 > 0, 2.0 * var.mean(axis=(-2, -1)) / d2, 1.0)
    return rho


def select_recorruption(maps_lr: np.ndarray, sigma: np.ndarray, min_share: float) -> np.ndarray:
    """``sigma`` with the elements whose :func:`noise_share` is below ``min_share`` set to 0
    (option ``recorrupt_share``): those are trained and inferred as without ``recorrupt``
    (``z = 0``: their input and target are the LR map itself); ``min_share = 0`` keeps all."""
    sigma = np.asarray(sigma, np.float32)
    if min_share <= 0:
        return sigma
    keep = recorrupted_elements(maps_lr, sigma, min_share)
    return np.where(keep[:, None, None], sigma, np.float32(0.0)).astype(np.float32)


def recorrupted_elements(maps_lr: np.ndarray, sigma: np.ndarray, min_share: float) -> np.ndarray:
    """``(B,)`` bool: the elements :func:`select_recorruption` keeps (all when ``min_share ≤ 0``)."""
    if min_share <= 0:
        return np.ones(np.shape(maps_lr)[0], bool)
    return noise_share(maps_lr, np.asarray(sigma, np.float32)) >= float(min_share)


def lr_recorruption(lr_shape, sigma: np.ndarray, seed: int, index: int, device) -> torch.Tensor:
    """``z ~ N(0, σ²)`` per LR pixel, seeded by ``(seed, index)`` (resumable, reproducible)."""
    gen = torch.Generator().manual_seed(int(seed) * 1_000_003 + int(index) + 0x2F2)
    z = torch.randn(tuple(lr_shape), generator=gen) * torch.as_tensor(sigma)
    return z.to(device)


class Recorrupter:
    """Swaps ``data``'s LR target and network input for recorrupted ones, per iteration."""

    def __init__(self, data: TrainData, alpha: float, sigma: np.ndarray, seed: int):
        self.data, self.alpha, self.sigma, self.seed = data, float(alpha), sigma, int(seed)
        self.lr0, self.x0 = data.lr, data.x_hw

    def draw(self, index: int) -> None:
        d, a = self.data, self.alpha
        z = lr_recorruption(self.lr0.shape, self.sigma, self.seed, index, self.lr0.device)
        z_up = F.interpolate(z[None], scale_factor=d.scale, mode="bilinear", align_corners=False)[0]
        b = self.lr0.shape[0]
        d.lr = self.lr0 - z / a
        d.x_hw = torch.cat([self.x0[..., :b] + a * z_up.permute(1, 2, 0), self.x0[..., b:]], -1)
        d.x_pad, d.pad = None, 0

    def restore(self) -> None:
        self.data.lr, self.data.x_hw = self.lr0, self.x0
        self.data.x_pad, self.data.pad = None, 0


#: Share of an interior tile's ``down`` weights (by absolute mass, per side of each axis) that
#: :func:`tile_window` may leave out of the HR window the generator runs on.
WINDOW_TAIL = 1e-5


@dataclass(frozen=True)
class TileWindow:
    """``down`` of a tile's ``t × t`` interior LR pixels as weights on an HR window.

    ``weights`` ``(t², wy·wx)``; the window's top-left lies ``(oy, ox)`` HR pixels from the
    first interior block's top-left (``oy, ox ≤ 0``) and spans ``wy × wx`` HR pixels.
    """

    weights: torch.Tensor
    oy: int
    ox: int
    wy: int
    wx: int


def _kept_span(profiles: np.ndarray, tail: float) -> tuple[int, int]:
    """``[a, b)``: the widest cut of ``profiles`` ``(k, n)`` (one row per impulse) that leaves
    out at most ``tail`` of any row's mass at each end."""
    c = np.cumsum(profiles, axis=1) / profiles.sum(axis=1, keepdims=True)
    a = min(int(np.searchsorted(row, tail, side="right")) for row in c)
    b = max(int(np.searchsorted(row, 1.0 - tail, side="left")) for row in c) + 1
    return a, min(b, profiles.shape[1])


def tile_window(operator, tile: int, margin: int, tail: float = WINDOW_TAIL) -> TileWindow:
    """The HR window a ``tile × tile`` interior needs for ``down`` with the operator's margin.

    The weights are the operator's own adjoint applied to a unit impulse at each interior LR
    pixel of a ``tile + 2·margin`` LR grid, i.e. the rows of ``down`` on the padded tile: so
    ``weights @ window`` is ``down`` of the whole padded tile restricted to its interior
    except for the beam's tails beyond the window: at most ``tail`` of any interior pixel's
    weight mass at each end of each axis.  For the coarse scan at σ = 0.5 px and step 4 this
    is the block's 4 rows by 4 + 2 + 2 columns, against the padded tile's 12 × 12.
    """
    span = tile + 2 * margin
    impulses = np.zeros((tile * tile, span, span))
    iy, ix = np.divmod(np.arange(tile * tile), tile)
    impulses[np.arange(tile * tile), margin + iy, margin + ix] = 1.0
    w = np.asarray(operator.adjoint(impulses), dtype=np.float64)       # (t², span·s, span·s)
    mass = np.abs(w)
    y0, y1 = _kept_span(mass.sum(axis=2), tail)
    x0, x1 = _kept_span(mass.sum(axis=1), tail)
    w = w[:, y0:y1, x0:x1]
    return TileWindow(weights=torch.as_tensor(w.reshape(tile * tile, -1), dtype=torch.float32),
                      oy=y0 - margin * operator.scale, ox=x0 - margin * operator.scale,
                      wy=y1 - y0, wx=x1 - x0)


def region_blocks(params: dict) -> int:
    """LR blocks per side of a training region (``region_blocks``; 0 = 1 for ``kernel = 1``,
    :data:`AUTO_REGION_BLOCKS` otherwise)."""
    t = int(params.get("region_blocks", 0))
    if t > 0:
        return t
    return 1 if int(params.get("kernel", 1)) == 1 else AUTO_REGION_BLOCKS


def required_padding(generator: Generator, data: TrainData, tile: int) -> int:
    """HR pixels of padding ``x_pad`` needs: the halo, plus ``(t−1)`` blocks for the region
    corners drawn outside the scan (block mean only)."""
    extra = (tile - 1) * data.scale if data.margin == 0 else 0
    return generator.halo + extra


def consistency_losses(generator: Generator, data: TrainData, n_blocks: int, gen: torch.Generator,
                       tile: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """``L_c1`` and ``L_c2`` (Eq. 11, MSE) on a random mini-batch of about ``n_blocks`` LR
    blocks, in regions of ``tile × tile`` blocks (``n_blocks = 0``: the whole image, i.e.
    the paper's full-image loss).

    ``L_c1 = MSE(down(Ŷ), Y_lr)`` with ``Ŷ`` before projection; ``L_c2 = MSE(Ẑ, Z)``.  For the
    block mean both are unbiased estimates of the full-image MSEs (see the module docstring).
    """
    B, h, w = data.lr.shape
    s, m, halo = data.scale, data.margin, generator.halo
    if n_blocks <= 0:
        x = data.x_hw.permute(2, 0, 1).unsqueeze(0)
        x_hat = generator.forward_image(pad_replicate(x, halo))[0]
        y_img, z_img = x_hat[:B], x_hat[B:]
        lc1 = torch.mean((data.operator.down(y_img) - data.lr) ** 2)
        lc2 = torch.mean((z_img - data.rgb) ** 2)
        return lc1, lc2
    n_tiles = max(1, n_blocks // (tile * tile))
    ensure_padding(data, required_padding(generator, data, tile))
    if m == 0:
        # corners in [-(t-1), h-1]: every block in exactly t windows per axis; outside: masked
        by = torch.randint(0, h + tile - 1, (n_tiles,), generator=gen) - (tile - 1)
        bx = torch.randint(0, w + tile - 1, (n_tiles,), generator=gen) - (tile - 1)
        size = tile * s
        x = x_regions(data, by * s, bx * s, size, halo)
        x_hat = generator.forward_nhwc(x)                               # (n, size, size, C)
        y_hat, z_hat = x_hat[..., :B].permute(0, 3, 1, 2), x_hat[..., B:]
        down = data.operator.down(y_hat)                                # (n, B, t, t)
        z = x[:, halo:halo + size, halo:halo + size, B:]                # (n, size, size, b)
        if tile == 1:
            target = data.lr[:, by, bx].t()[:, :, None, None]           # (n, B, 1, 1)
            err1 = ((down - target) ** 2).sum()
            err2 = ((z_hat - z) ** 2).sum()
        else:
            d = torch.arange(tile)
            ry, rx = by[:, None] + d, bx[:, None] + d                   # (n, t) LR indices
            valid = (((ry >= 0) & (ry < h))[:, :, None] & ((rx >= 0) & (rx < w))[:, None, :])
            valid = valid.to(down.device, down.dtype)                   # (n, t, t)
            cy, cx = ry.clamp(0, h - 1), rx.clamp(0, w - 1)
            target = data.lr[:, cy[:, :, None], cx[:, None, :]].permute(1, 0, 2, 3)  # (n, B, t, t)
            err1 = (((down - target) ** 2) * valid[:, None]).sum()
            err2 = (((z_hat - z) ** 2) * mb.nearest_up(valid, s)[..., None]).sum()
        # each block lies in a window with probability t²/((h+t-1)(w+t-1)): unbiased means
        windows = (h + tile - 1) * (w + tile - 1) / (n_tiles * tile * tile * h * w)
        lc1 = err1 * windows / B
        lc2 = err2 * windows / (s * s * z_hat.shape[-1])
        return lc1, lc2
    # operators with a margin (beam spot, coarse scan): interior tiles, L_c1 on the inner
    # blocks only, the generator on the HR window their down reads (tile_window)
    span = tile + 2 * m
    if span > min(h, w):
        raise mb.ConfigError(f"the scan's LR grid {h}×{w} is smaller than a training tile with its "
                             f"operator margin ({span} LR pixels)")
    by = torch.randint(0, h - span + 1, (n_tiles,), generator=gen)
    bx = torch.randint(0, w - span + 1, (n_tiles,), generator=gen)
    if tile not in data.windows:
        data.windows[tile] = tile_window(data.operator, tile, m)
    win = data.windows[tile]
    x = x_regions(data, (by + m) * s + win.oy, (bx + m) * s + win.ox, (win.wy, win.wx), halo)
    x_hat = generator.forward_nhwc(x)                                   # (n, wy, wx, C)
    y_hat = x_hat[..., :B].reshape(len(by), win.wy * win.wx, B)
    down = win.weights.to(y_hat.device, y_hat.dtype) @ y_hat            # (n, t², B)
    target = gather_lr(data.lr, by + m, bx + m, tile).flatten(2).transpose(1, 2)
    lc1 = torch.mean((down - target) ** 2)
    z = x[:, halo:halo + win.wy, halo:halo + win.wx, B:]
    lc2 = torch.mean((x_hat[..., B:] - z) ** 2)
    return lc1, lc2


def generated_patches(generator: Generator, data: TrainData, n: int, patch: int,
                      gen: torch.Generator, project: bool) -> torch.Tensor:
    """``n`` single-channel patches ``(n, 1, patch, patch)`` of ``Proj(g(X))`` (Eq. 10–11).

    Each patch has a random element and a random HR position (any phase with respect to
    the LR grid, like the pseudo-real patches).  The generator runs on the whole LR blocks
    that cover the patch (``⌈patch/s⌉ + 1`` per side, plus the operator margin) read with
    their halo; the host's ``operator.project`` is applied to those blocks with their LR
    values — exact for the block mean, whose projection is local to each block — and the
    patch is cut from that region.
    """
    B, h, w = data.lr.shape
    s, m, halo = data.scale, data.margin, generator.halo
    H, W = h * s, w * s
    blocks = -(-patch // s) + 1 + 2 * m
    if blocks > min(h, w):
        raise mb.ConfigError(f"adversarial patches of {patch} px need an LR grid of at least "
                             f"{blocks}×{blocks}, found {h}×{w}; lower patch_size")
    ensure_padding(data, halo)
    el = torch.randint(0, B, (n,), generator=gen)
    y0 = torch.randint(0, H - patch + 1, (n,), generator=gen)
    x0 = torch.randint(0, W - patch + 1, (n,), generator=gen)
    by = (torch.div(y0, s, rounding_mode="floor") - m).clamp(0, h - blocks)
    bx = (torch.div(x0, s, rounding_mode="floor") - m).clamp(0, w - blocks)
    size = blocks * s
    x = x_regions(data, by * s, bx * s, size, halo)
    x_hat = generator.forward_nhwc(x)                                   # (n, size, size, C)
    ar = torch.arange(n, device=x_hat.device)
    idx = el.to(x_hat.device)
    y_sel = x_hat[ar, :, :, idx]                                        # (n, size, size)
    if project:
        lr_sel = gather_lr(data.lr, by, bx, blocks)[torch.arange(n), el]  # (n, blocks, blocks)
        y_sel = data.operator.project(y_sel, lr_sel.to(y_sel.device))
    d = torch.arange(patch, device=x_hat.device)
    rows = ((y0 - by * s).to(x_hat.device)[:, None] + d)[:, :, None]    # (n, P, 1)
    cols = ((x0 - bx * s).to(x_hat.device)[:, None] + d)[:, None, :]    # (n, 1, P)
    y_sel = y_sel[ar[:, None, None], rows, cols]
    return random_flips(y_sel, gen).unsqueeze(1)


def full_image_step_tensors(generator: Generator, data: TrainData, conv: bool = True):
    """Naive full-image forward: ``X̂`` as ``(C, H, W)`` (1×1 convolutions on ``(1, C, H, W)``
    for ``kernel = 1``; the k×k network on the edge-padded image otherwise)."""
    x = data.x_hw.permute(2, 0, 1).unsqueeze(0)
    if generator.kernel > 1:
        return generator.forward_image(pad_replicate(x, generator.halo))[0]
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


# --- the adversarial calibration --------------------------------------------------------

def _grad_norm(loss: torch.Tensor, params: list[torch.Tensor]) -> float:
    grads = torch.autograd.grad(loss, params, allow_unused=True, retain_graph=False)
    return math.sqrt(sum(float((g.detach() ** 2).sum()) for g in grads if g is not None))


def gradient_norms(generator: Generator, discriminator: Discriminator, data: TrainData, params: dict,
                   gen: torch.Generator, batches: int = CALIBRATION_BATCHES) -> dict:
    """Mean ``‖∇θ L_c1‖`` and ``‖∇θ L_adv‖`` over ``batches`` mini-batches (θ: the generator's
    parameters; the discriminator is not changed).  Batches as in training
    (``adv_batch_blocks`` blocks, ``batch_size`` generated patches of ``patch_size``)."""
    theta = [p for p in generator.parameters() if p.requires_grad]
    tile = region_blocks(params)
    n1 = n2 = 0.0
    for _ in range(batches):
        lc1, _ = consistency_losses(generator, data, int(params["adv_batch_blocks"]), gen, tile)
        n1 += _grad_norm(lc1, theta)
        fake = generated_patches(generator, data, int(params["batch_size"]), int(params["patch_size"]),
                                 gen, bool(params["projection"]))
        with _frozen(discriminator):
            l_adv = generator_adversarial_loss(discriminator(fake), params["adv_loss"])
        n2 += _grad_norm(l_adv, theta) if l_adv.requires_grad else 0.0
    return {"grad_lc1": n1 / batches, "grad_ladv": n2 / batches}


def calibrate_alpha2(generator: Generator, discriminator: Discriminator, data: TrainData,
                     params: dict, seed: int) -> tuple[float, dict]:
    """α2 = ``adv_calibration`` · mean‖∇θ L_c1‖ / mean‖∇θ L_adv‖ (see the module docstring).

    Uses its own random stream (``seed + CALIBRATION_SEED_OFFSET``).  When no generated patch
    is misclassified (``∇ L_adv = 0``) α2 stays 0 — the focused loss has nothing to push.
    """
    gen = torch.Generator().manual_seed(int(seed) + CALIBRATION_SEED_OFFSET)
    norms = gradient_norms(generator, discriminator, data, params, gen)
    f = float(params["adv_calibration"])
    alpha2 = f * norms["grad_lc1"] / norms["grad_ladv"] if norms["grad_ladv"] > 0 else 0.0
    return alpha2, {**norms, "fraction": f, "alpha2": alpha2}


class _frozen:
    """Context: the discriminator's parameters do not require gradients (generator steps)."""

    def __init__(self, module: torch.nn.Module):
        self.params = list(module.parameters())

    def __enter__(self):
        for p in self.params:
            p.requires_grad_(False)

    def __exit__(self, *exc):
        for p in self.params:
            p.requires_grad_(True)


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
                       "device", "gate", "gate_full"}   # the gate acts after inference (gate.py)


class _heap_keeps_freed_memory:
    """Context: glibc's ``malloc`` keeps freed blocks of up to 32 MiB in its heap instead of
    returning them to the system (``mallopt`` of the mmap and trim thresholds), restored
    on exit (and the heap trimmed).  A training step frees and re-allocates the same
    megabyte-sized tensors; by default many come back from ``mmap`` as fresh pages, and the
    adversarial step took ~9000 page faults (about 20 % of its CPU time on the 2-core VM).
    Nothing changes where the C library is not glibc."""

    M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
    DEFAULT = 128 * 1024          # glibc's initial values of both thresholds

    def __enter__(self):
        import ctypes
        import ctypes.util

        self.libc = None
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            if hasattr(libc, "mallopt") and hasattr(libc, "gnu_get_libc_version"):
                if libc.mallopt(self.M_MMAP_THRESHOLD, 32 << 20) and libc.mallopt(self.M_TRIM_THRESHOLD, 1 << 30):
                    self.libc = libc
        except OSError:
            pass
        return self

    def __exit__(self, *exc):
        if self.libc is not None:
            self.libc.mallopt(self.M_MMAP_THRESHOLD, self.DEFAULT)
            self.libc.mallopt(self.M_TRIM_THRESHOLD, self.DEFAULT)
            if hasattr(self.libc, "malloc_trim"):
                self.libc.malloc_trim(0)


def train_generator(*args, **kwargs) -> tuple[Generator, dict]:
    """:func:`_train_generator` (the two-stage training) with the heap tuned for its
    allocation pattern (:class:`_heap_keeps_freed_memory`)."""
    with _heap_keeps_freed_memory():
        return _train_generator(*args, **kwargs)


def _train_generator(data: TrainData, params: dict, *, seed: int = 0,
                    progress: Callable = lambda *a, **k: None, workdir: Path | None = None,
                    fp: str = "", monitor: Callable | None = None, monitor_every: int = 0,
                    adv_monitor: Callable | None = None) -> tuple[Generator, dict]:
    """Two-stage training (pre-training, then adversarial), resumable from ``workdir``.

    ``params`` are the method's parameters (see ``maxrf_bench_plugins.proposed.DEFAULTS``).
    ``monitor(iteration, generator)`` (benchmarks only) is called every ``monitor_every``
    iterations; ``adv_monitor(stage_iteration, generator, discriminator, stats)`` after
    every adversarial-stage iteration that trained the discriminator, with ``stats`` the
    scores ``d_real``, ``d_fake`` (before that step's update), ``alpha2`` and ``joint``
    (whether ``L_adv`` entered the generator's loss).
    Returns the trained generator and a summary (iterations, seconds, losses, α2).
    """
    device = data.x_hw.device
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    generator = Generator(data.n_elements, data.x_hw.shape[-1] - data.n_elements,
                          n_atoms=params["atoms"], n_layers=params["layers"],
                          activation=params["activation"], synthesis=params["synthesis"],
                          kernel=int(params.get("kernel", 1)),
                          context=params.get("context", "all")).to(device)
    generator.init_from_data(data.x_hw.reshape(-1, data.x_hw.shape[-1]))
    discriminator = Discriminator(params["patch_size"], params["disc_width"]).to(device)
    gen = torch.Generator().manual_seed(seed)
    n_pre, n_adv = int(params["pretrain_iterations"]), int(params["adversarial_iterations"])
    total = n_pre + n_adv
    use_lc1, use_lc2, use_adv = params["use_lc1"], params["use_lc2"], params["use_adv"]
    if not (use_lc1 or use_lc2 or use_adv):
        raise mb.ConfigError("at least one of use_lc1, use_lc2, use_adv must be true")
    warmup = int(params.get("disc_warmup", 0))
    check_adversarial_schedule(params)
    calibration = params.get("adv_calibration")
    alpha1 = float(params["alpha1"])
    alpha2 = float(params["alpha2"]) if calibration is None else None   # None: not yet calibrated
    project, adv_kind, layout = bool(params["projection"]), params["adv_loss"], params["layout"]
    if layout not in ("blocks", "image"):
        raise mb.ConfigError(f"layout must be 'blocks' or 'image', found {layout!r}")
    n_patches, patch = int(params["batch_size"]), int(params["patch_size"])
    H, W = data.x_hw.shape[:2]
    if patch > min(H, W):
        raise mb.ConfigError(f"patch_size {patch} is larger than the scan ({H}×{W}); lower it")
    tile = region_blocks(params)
    n_align = int(params.get("align", 0))
    align = PhotoAlign(n_align, (H, W)).to(device) if n_align > 0 else None
    rgb0 = data.rgb
    warp_amp = float(params.get("warp_augment", 0.0))
    if warp_amp > 0 and align is not None:
        raise mb.ConfigError("proposed: warp_augment and align cannot be combined (both move the "
                             "photograph during training); set one of them to 0")
    bank = (WarpBank(data, warp_amp, seed, required_padding(generator, data, tile))
            if warp_amp > 0 else None)
    recorrupter = None  # noise-aware training (ours): see Recorrupter
    if float(params.get("recorrupt", 0.0)) > 0:
        std = data.noise_std if data.noise_std is not None else recorrupt_sigma(data.lr.cpu().numpy())
        recorrupter = Recorrupter(data, float(params["recorrupt"]), std, seed)

    def refresh_input() -> None:
        """With a learned alignment: ``X`` (and its padded copy) from the moved photograph."""
        z = align(rgb0)
        x = torch.cat([data.y_up, z], 0)
        pad = required_padding(generator, data, tile)
        data.x_hw = x.permute(1, 2, 0)
        data.x_pad = pad_replicate(x[None], pad)[0].permute(1, 2, 0)
        data.pad = pad
        data.rgb = z.detach()

    def make_opt_g(stage: int):
        lr = params["pretrain_lr"] if stage == 1 else params["lr_generator"]
        groups = [{"params": list(generator.parameters()), "base_lr": lr}]
        if align is not None and stage == 1:
            groups.append({"params": list(align.parameters()), "base_lr": float(params["align_lr"])})
        return torch.optim.Adam(groups, lr=lr, fused=fused_adam)

    # Adam's update as one fused kernel per step (the same update as the default loop over
    # parameters, which spends more time in Python than in arithmetic at these sizes)
    fused_adam = device.type in ("cpu", "cuda")
    opt_d = torch.optim.Adam(discriminator.parameters(), lr=params["lr_discriminator"], fused=fused_adam)
    start, elapsed0 = 0, 0.0
    ckpt_path = Path(workdir) / CHECKPOINT if workdir is not None else None
    opt_g = make_opt_g(1)
    calib_info: dict = {}
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
            if align is not None and "align" in state:
                align.load_state_dict(state["align"])
            discriminator.load_state_dict(state["discriminator"])
            opt_g = make_opt_g(1 if start < n_pre else 2)
            opt_g.load_state_dict(state["opt_g"])
            opt_d.load_state_dict(state["opt_d"])
            gen.set_state(state["rng"])
            if bank is not None and "warp_rng" in state:
                bank.gen.set_state(state["warp_rng"])
            elapsed0 = float(state.get("elapsed", 0.0))
            if state.get("calibrated_alpha2") is not None:   # calibrated before the interruption
                alpha2 = float(state["calibrated_alpha2"])
                calib_info = json.loads(state.get("calibration", "{}"))

    t0 = time.perf_counter()
    last_ckpt = t0
    history: dict[str, float] = {}

    def save_checkpoint(iteration: int) -> None:
        if ckpt_path is None:
            return
        mb.atomic_torch_save({"fingerprint": fp, "iteration": iteration,
                              "generator": generator.state_dict(),
                              **({"align": align.state_dict()} if align is not None else {}),
                              "discriminator": discriminator.state_dict(),
                              "opt_g": opt_g.state_dict(), "opt_d": opt_d.state_dict(),
                              "rng": gen.get_state(),
                              **({"warp_rng": bank.gen.get_state()} if bank is not None else {}),
                              "calibrated_alpha2": alpha2 if calib_info else None,
                              "calibration": json.dumps(calib_info),
                              "elapsed": elapsed0 + time.perf_counter() - t0}, ckpt_path)

    def report(done: int, message: str) -> None:
        try:
            progress(done, total, message)
        except BaseException:
            save_checkpoint(done)  # interrupted between two iterations: resume from here
            raise

    ck_iters, ck_secs = int(params["checkpoint_iterations"]), float(params["checkpoint_seconds"])
    i = start
    while i < total:
        stage = 1 if i < n_pre else 2
        if stage == 2 and i == n_pre:
            opt_g = make_opt_g(2)  # the adversarial stage restarts Adam at its own rate
        n_stage, i_stage = (n_pre, i) if stage == 1 else (n_adv, i - n_pre)
        base_lr = params["pretrain_lr"] if stage == 1 else params["lr_generator"]
        for g in opt_g.param_groups:
            g["lr"] = g.get("base_lr", base_lr) * _lr_factor(params["schedule"], i_stage, n_stage)
        if align is not None:
            with torch.set_grad_enabled(stage == 1):
                refresh_input()
        if bank is not None:
            bank.select(data)
        train_d = stage == 2 and use_adv                 # the discriminator trains (Eq. 13)
        joint = train_d and i_stage >= warmup            # L_adv enters the generator's loss
        if joint and alpha2 is None:                     # first joint iteration: calibrate α2
            alpha2, calib_info = calibrate_alpha2(generator, discriminator, data, params, seed)
            report(i, f"adversarial: α2 calibrated to {alpha2:.3g} (fraction {calibration} of "
                      f"‖∇L_c1‖ {calib_info['grad_lc1']:.3g} / ‖∇L_adv‖ {calib_info['grad_ladv']:.3g})")
        n_blocks = int(params["batch_blocks"] if stage == 1 else params["adv_batch_blocks"])
        if recorrupter is not None:
            recorrupter.draw(i)
        # -- L_c1, L_c2 (and, for the naive layout, the generated patches) --
        if layout == "image":
            lc1, lc2, fake = image_losses(generator, data, n_patches, patch, gen, project, train_d)
        else:
            lc1, lc2 = consistency_losses(generator, data, n_blocks, gen, tile)
            fake = None
            if train_d:
                with torch.set_grad_enabled(joint):      # warm-up: no generator gradient needed
                    fake = generated_patches(generator, data, n_patches, patch, gen, project)
        loss = lc1 * (1.0 if use_lc1 else 0.0) + (alpha1 * lc2 if use_lc2 else 0.0)
        if align is not None and stage == 1:
            loss = loss + float(params["align_smooth"]) * align.smoothness()
        if train_d:
            # -- discriminator step, Eq. 13, on pseudo-real (Eq. 14) vs generated patches --
            real, beta, _ = pseudo_real_patches(data.y_up, data.rgb, data.best_band, n_patches, patch,
                                                gen, band_sign=data.band_sign)
            d_real, d_fake = discriminator(real), discriminator(fake.detach())
            loss_d = discriminator_loss(d_real, d_fake, adv_kind)
            opt_d.zero_grad(set_to_none=True)
            loss_d.backward()
            opt_d.step()
            if adv_monitor is not None:
                adv_monitor(i_stage, generator, discriminator,
                            {"d_real": d_real.detach(), "d_fake": d_fake.detach(), "alpha2": alpha2,
                             "joint": joint})
            if joint:
                # -- generator's adversarial term, Eq. 12 --
                with _frozen(discriminator):
                    l_adv = generator_adversarial_loss(discriminator(fake), adv_kind)
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
            if train_d:
                history.update(LD=float(loss_d.detach()), beta=beta)
                msg += f" LD {history['LD']:.3f}"
                if joint:
                    history["Ladv"] = float(l_adv.detach())
                    msg += f" Ladv {history['Ladv']:.3f}"
            report(i, msg)
        now = time.perf_counter()
        if i < total and ((ck_iters and i % ck_iters == 0) or (ck_secs > 0 and now - last_ckpt >= ck_secs)
                          or i == n_pre):
            save_checkpoint(i)
            last_ckpt = now
    generator.eval()
    if bank is not None:
        bank.restore(data)
    if recorrupter is not None:
        recorrupter.restore()
    summary = {"iterations": total, "resumed_from": start,
               "seconds": elapsed0 + time.perf_counter() - t0, "final_losses": history,
               "alpha2": alpha2 if alpha2 is not None else float(params["alpha2"]),
               "alpha2_calibrated": calibration is not None and bool(calib_info),
               "calibration": calib_info}
    if recorrupter is not None:
        summary["recorrupt_sigma"] = [float(np.sqrt(np.mean(np.square(v)))) for v in recorrupter.sigma]
    if align is not None:
        with torch.no_grad():
            d = align.displacement()
            summary["align_field"] = align.field.detach().cpu().tolist()
            summary["align_rms_px"] = float(torch.sqrt((d ** 2).sum(0).mean()))
        data.x_hw = data.x_hw.detach()
        data.x_pad = None
        data.pad = 0
    return generator, summary

