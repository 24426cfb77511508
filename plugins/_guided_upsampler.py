"""The MMSR network and its self-supervised training, shared by ``mmsr`` and ``ssgnet``.

Re-implementation of the mutual-modulation network of Dong, Yokoya, Wang, Uezato (ECCV 2022,
"Learning Mutual Modulation for Self-Supervised Cross-Modal Super-Resolution"), written
from a reading of the authors' release ``palmdong/MMSR`` (``model/network.py``,
``model/main.py``, ``inference.ipynb``); no code was copied.  ``ssgnet`` uses the same
network with a scene-structure branch in front of the guide branch, as
``jsshin98/SSGNet`` (``Depth_Upsampling/model/network.py``) does.

The network (the paper's Fig. 2; shapes for one source map, ``H × W`` HR pixels)::

    guide (3, H, W) ─ branch_guide: 3×3 conv 64, ReLU, 3×3 conv 64, ReLU, 2 res-blocks (3×3)
    source ↑ (1, H, W) ─ branch_source: the same with 1×1 convs   (source ↑ = bilinear(LR))
    mutual modulation:  f_g = mlp_g(guide features), f_s = mlp_s(source features)
        source→guide: f_s2g(p) = Σ_{d ∈ 11×11} softmax_d(⟨f_s(p+d), f_g(p)⟩) f_s(p+d)
        guide→source: f_g2s(p) = Σ_{d ∈ 5×5}  softmax_d(⟨f_g(p+d), f_s(p)⟩) f_g(p+d)
        fusion = mlp_f([f_s2g ; f_g2s])                              (1×1 convs, 64 channels)
    branch_pred: 3 res-blocks (1×1), 1×1 conv → prediction (1, H, W)

Training (``model/main.py``): the guide is z-scored per channel, the source map z-scored by
its own mean and standard deviation; the loss is the L1 distance between
``avg_pool(pred, r)`` and the LR source (here ``inputs.operator.down``, the host's forward
model, so that the Gaussian beam works too); Adam, lr 2e-3 multiplied by 0.9998 before
every 5th epoch, weight decay 5e-4 on the guide branch only (``weights_regularizer =
[5e-4, 0, 0, 0]``), 1000 epochs of one whole-image batch, the last iterate is returned
(no early stopping, nothing reads a ground truth), de-normalised by the source statistics.

Departures, all engineering and exact unless said otherwise:

* **Memory.**  ``F.unfold`` with an 11 × 11 window materialises 64·121 floats (31 KB) per HR
  pixel, several times over for autograd.  :func:`window_attention` computes the same sums
  on 8 × 8 pixel tiles with batched matrix products (the neighbourhood of a tile is one
  ``(8+k-1)²`` key block; the ``k²`` logits of each pixel are gathered from the tile's
  Gram matrix), and the whole network runs on spatial tiles with a halo of its receptive
  radius (:func:`predict`), so the result equals the whole-image computation (zero padding
  at the image border included; tested) with memory bounded by the tile.  A whole-image
  training step over several tiles is exact too (:func:`whole_image_step`): the loss
  gradient with respect to the prediction is taken once on the full image (any operator),
  then back-propagated tile by tile.
* **Crop training** (``crop > 0``, the ``fast`` presets): a step uses one random
  LR-aligned crop of ``crop`` HR pixels, instead of the whole image, processed on its own
  (zero padding at its edges, as SSGNet's authors run MMSR on 256² crops); the loss is the
  same L1 over the LR pixels of the crop.  This departs from MMSR's schedule.
* **Shared network** (``share_elements = true``, the ``fast`` presets): MMSR trains one
  network per source map, and ``paper`` does so, element by element.  Sharing one network
  over the elements (a batch of source maps with one guide) computes the guide branch once
  per step and lets every step serve ``elements_per_step`` maps: the only way we found to
  fit 21 maps of 512² in minutes on a CPU.  This departs from the authors' method.
* The bilinear upsampling of the source (``align_corners=False``) is done once on the full
  map, then cropped, instead of inside ``forward`` (the same values).
* A constant source map (standard deviation 0) cannot be z-scored; it is returned as is.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

import maxrf_bench as mb

WIDTH = 64            # feature channels everywhere (network.py)
SOURCE_WINDOW = 11    # source→guide neighbourhood (network.py, Modulation)
GUIDE_WINDOW = 5      # guide→source neighbourhood


def conv(in_channels: int, out_channels: int, kernel: int, bias: bool = True) -> nn.Conv2d:
    """``kernel × kernel`` convolution with zero 'same' padding (``default_conv``)."""
    return nn.Conv2d(in_channels, out_channels, kernel, padding=kernel // 2, bias=bias)


class ResBlock(nn.Module):
    """``x + conv(ReLU(conv(x)))`` with ``kernel × kernel`` convolutions."""

    def __init__(self, channels: int, kernel: int):
        super().__init__()
        self.body = nn.Sequential(conv(channels, channels, kernel), nn.ReLU(),
                                  conv(channels, channels, kernel))

    def forward(self, x):
        return x + self.body(x)


_WINDOW_INDEX: dict = {}


def _window_index(tile: int, window: int, device) -> torch.Tensor:
    """``(tile², window²)`` positions, in a tile's flattened ``(tile+window-1)²`` key block,
    of every pixel's neighbours (row-major offsets, as ``F.unfold`` orders them)."""
    key = (tile, window, str(device))
    if key not in _WINDOW_INDEX:
        side = tile + window - 1
        py, px = torch.meshgrid(torch.arange(tile), torch.arange(tile), indexing="ij")
        dy, dx = torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")
        idx = (py.reshape(-1, 1) + dy.reshape(1, -1)) * side + (px.reshape(-1, 1) + dx.reshape(1, -1))
        _WINDOW_INDEX[key] = idx.to(device)
    return _WINDOW_INDEX[key]


class KeyBlocks(torch.autograd.Function):
    """The overlapping ``side × side`` key blocks of the padded keys ``k`` ``(B, Hpad, Wpad,
    C)``, one every ``tile`` pixels (``ny × nx`` of them), copied as ``(B·ny·nx, side², C)``:
    the same values as ``k.as_strided(...).reshape(...)``.

    Only the backward pass differs: autograd's ``as_strided`` backward scatters the
    blocks' gradient with a serial ``index_add_`` over an int64 index of every block
    element (40 ms of CPU per call for 4 maps of 64² pixels, 64 channels and an 11 × 11
    window, 17 ms for 5 × 5); here it is a few strided additions (7 and 4 ms): the blocks
    are cut in ``tile × tile`` chunks, which within one chunk do not overlap.  The chunks are added in the order ``index_add_`` meets them
    (for one key: blocks by increasing row, then column, i.e. chunk offsets decreasing),
    starting from zeros, so the gradient is bit-identical (tested).
    """

    @staticmethod
    def forward(ctx, k, tile: int, side: int, ny: int, nx: int):
        ctx.shape, ctx.geometry = k.shape, (tile, side, ny, nx)
        return _key_blocks(k, tile, side, ny, nx)

    @staticmethod
    def backward(ctx, grad):
        b, _, _, c = ctx.shape
        tile, side, ny, nx = ctx.geometry
        grad = grad.reshape(b, ny, nx, side, side, c)
        out = grad.new_zeros(ctx.shape)
        sb, sy, sx, sc = out.stride()
        starts = list(range(0, side, tile))
        for i0 in reversed(starts):
            i1 = min(i0 + tile, side)
            for j0 in reversed(starts):
                j1 = min(j0 + tile, side)
                chunk = out.as_strided((b, ny, nx, i1 - i0, j1 - j0, c),
                                       (sb, tile * sy, tile * sx, sy, sx, sc), i0 * sy + j0 * sx)
                chunk.add_(grad[:, :, :, i0:i1, j0:j1])
        return out, None, None, None, None


def _key_blocks(k, tile: int, side: int, ny: int, nx: int):
    """``(B·ny·nx, side², C)`` copy of the key blocks of the contiguous ``k`` (a strided view)."""
    b, c = k.shape[0], k.shape[3]
    sb, sy, sx, sc = k.stride()
    blocks = k.as_strided((b, ny, nx, side, side, c), (sb, tile * sy, tile * sx, sy, sx, sc))
    return blocks.reshape(b * ny * nx, side * side, c)


def window_attention(query: torch.Tensor, keys: torch.Tensor, window: int, tile: int = 8):
    """Local attention of MMSR's modulation, without unfolding the keys per pixel.

    ``query``, ``keys``: ``(B, C, H, W)`` (fastest in ``channels_last`` memory format).  For
    every pixel ``p`` and offset ``d`` of the ``window × window`` neighbourhood,
    ``w_d(p) = softmax_d ⟨keys(p+d), query(p)⟩`` and the output is ``Σ_d w_d(p) keys(p+d)``,
    ``(B, C, H, W)``.  Keys outside the image are zero (logit 0, value 0), exactly as
    ``F.unfold(padding=window//2)`` in the reference.

    Pixels are grouped in ``tile × tile`` blocks; one batched matrix product gives each
    block's dot products with its ``(tile+window-1)²`` key block (a strided view of the
    padded keys, copied once), from which the ``window²`` logits of every pixel are
    gathered; the aggregation is the product with the scattered weights.  Memory is
    O(H·W·C·(tile+window-1)²/tile²) instead of O(H·W·C·window²).
    """
    b, c, h, w = query.shape
    pad = window // 2
    hp, wp = -(-h // tile) * tile, -(-w // tile) * tile
    ny, nx = hp // tile, wp // tile
    side = tile + 2 * pad
    q = query.permute(0, 2, 3, 1)                                            # (B, Hp, Wp, C)
    if hp != h or wp != w:  # (F.pad would copy even when there is nothing to pad)
        q = F.pad(q, (0, 0, 0, wp - w, 0, hp - h))
    q = q.reshape(b, ny, tile, nx, tile, c).transpose(2, 3).reshape(b * ny * nx, tile * tile, c)
    k = F.pad(keys.permute(0, 2, 3, 1), (0, 0, pad, pad + wp - w, pad, pad + hp - h)).contiguous()
    k_rows = KeyBlocks.apply(k, tile, side, ny, nx)                          # (tiles, side², C)
    idx = _window_index(tile, window, query.device).expand(q.shape[0], -1, -1)
    gram = torch.bmm(q, k_rows.transpose(1, 2))                              # (tiles, tile², side²)
    weights = gram.gather(2, idx).softmax(2)                                 # (tiles, tile², window²)
    spread = torch.zeros_like(gram).scatter_(2, idx, weights)
    out = torch.bmm(spread, k_rows)                                          # (tiles, tile², C)
    out = out.reshape(b, ny, nx, tile, tile, c).transpose(2, 3).reshape(b, hp, wp, c)
    return out[:, :h, :w].permute(0, 3, 1, 2)                                # channels_last


class MutualModulation(nn.Module):
    """Source-to-guide (11 × 11) and guide-to-source (5 × 5) modulation, then a 1×1 fusion."""

    def __init__(self, width: int = WIDTH):
        super().__init__()
        self.mlp_guide = conv(width, width, 1)
        self.mlp_source = conv(width, width, 1)
        self.mlp_fuse = conv(2 * width, width, 1)

    def forward(self, f_guide, f_source):
        f_guide = self.mlp_guide(f_guide)
        f_source = self.mlp_source(f_source)
        if f_guide.shape[0] != f_source.shape[0]:  # one guide shared by a batch of sources
            f_guide = f_guide.expand(f_source.shape[0], -1, -1, -1)
        s2g = window_attention(f_guide, f_source, SOURCE_WINDOW)
        g2s = window_attention(f_source, f_guide, GUIDE_WINDOW)
        return self.mlp_fuse(torch.cat([s2g, g2s], dim=1))


class MutualModulationNet(nn.Module):
    """MMSR's network; ``structure`` (optional) maps the guide to extra guide channels.

    ``forward(guide (1, G, H, W), source_up (B, 1, H, W)) → (B, 1, H, W)``: ``B`` source
    maps (bilinearly upsampled, z-scored) share one z-scored guide.  ``halo`` is the
    receptive radius in HR pixels: outputs farther than ``halo`` from a window's edge do
    not depend on what lies outside the window.
    """

    def __init__(self, guide_channels: int = 3, width: int = WIDTH,
                 structure: nn.Module | None = None, structure_channels: int = 0,
                 structure_radius: int = 0):
        super().__init__()
        self.structure = structure
        self.branch_guide = nn.Sequential(
            conv(guide_channels + structure_channels, width, 3), nn.ReLU(),
            conv(width, width, 3), nn.ReLU(), ResBlock(width, 3), ResBlock(width, 3))
        self.branch_source = nn.Sequential(
            conv(1, width, 1), nn.ReLU(), conv(width, width, 1), nn.ReLU(),
            ResBlock(width, 1), ResBlock(width, 1))
        self.modulation = MutualModulation(width)
        self.branch_pred = nn.Sequential(ResBlock(width, 1), ResBlock(width, 1),
                                         ResBlock(width, 1), conv(width, 1, 1))
        guide_radius = structure_radius + 6 + GUIDE_WINDOW // 2   # six 3×3 convs, then g2s
        self.halo = max(guide_radius, SOURCE_WINDOW // 2)

    def guide_parameters(self) -> list:
        """The parameters MMSR regularises (weight decay): the guide branch (and, as
        SSGNet's upsampler does, the structure branch in front of it)."""
        params = list(self.branch_guide.parameters())
        if self.structure is not None:
            params = list(self.structure.parameters()) + params
        return params

    def param_groups(self, weight_decay_guide: float) -> list[dict]:
        guide = {id(p) for p in self.guide_parameters()}
        rest = [p for p in self.parameters() if id(p) not in guide]
        return [{"params": self.guide_parameters(), "weight_decay": weight_decay_guide},
                {"params": rest, "weight_decay": 0.0}]

    def guide_features(self, guide):
        """The guide branch's output ``(1, width, H, W)`` (structure channels included)."""
        if self.structure is not None:
            guide = torch.cat([guide, self.structure(guide)], dim=1)
        return self.branch_guide(guide)

    def forward(self, guide, source_up, guide_features=None):
        """``guide_features`` (from :meth:`guide_features`) skips the guide branch."""
        f_guide = self.guide_features(guide) if guide_features is None else guide_features
        # A one-channel map is NCHW and channels_last at once, so convolutions would keep
        # NCHW (slow for 1×1 on CPU); the first layer's output is put in channels_last.
        f_source = self.branch_source[0](source_up).contiguous(memory_format=torch.channels_last)
        fusion = self.modulation(f_guide, self.branch_source[1:](f_source))
        return self.branch_pred(fusion)


# --------------------------------------------------------------------------------------
# data, tiles, steps


resolve_device = mb.torch_device


def zscore_guide(rgb: np.ndarray) -> np.ndarray:
    """Per-channel z-score of the photograph ``(3, H, W)`` (``main.py``); a flat channel
    keeps unit scale."""
    rgb = np.asarray(rgb, dtype=np.float64)
    mean = rgb.mean(axis=(1, 2), keepdims=True)
    std = rgb.std(axis=(1, 2), keepdims=True)
    return ((rgb - mean) / np.where(std > 0, std, 1.0)).astype(np.float32)


@dataclass
class Problem:
    """One scan on the device, normalised as MMSR does.

    ``guide`` ``(1, G, H, W)``; ``source_up`` ``(E, 1, H, W)`` bilinear upsampling of the
    z-scored LR maps; ``lr`` ``(E, 1, h, w)`` the z-scored LR maps; ``mean``/``std`` ``(E,)``
    the statistics of each LR map (``std`` 0 marks a constant map).
    """

    guide: torch.Tensor
    source_up: torch.Tensor
    lr: torch.Tensor
    mean: np.ndarray
    std: np.ndarray
    operator: mb.Operator

    @property
    def scale(self) -> int:
        return int(self.operator.scale)


def make_problem(maps_lr: np.ndarray, guide: np.ndarray, operator, device) -> Problem:
    """``maps_lr`` ``(E, h, w)`` normalised units, ``guide`` ``(G, H, W)`` already scaled."""
    maps_lr = np.asarray(maps_lr, dtype=np.float64)
    mean = maps_lr.mean(axis=(1, 2))
    std = maps_lr.std(axis=(1, 2))
    z = (maps_lr - mean[:, None, None]) / np.where(std > 0, std, 1.0)[:, None, None]
    lr = torch.from_numpy(z.astype(np.float32))[:, None].to(device)
    h, w = guide.shape[-2:]
    source_up = F.interpolate(lr, size=(h, w), mode="bilinear", align_corners=False)
    g = torch.from_numpy(np.ascontiguousarray(guide, dtype=np.float32))[None].to(device)
    # channels_last: 1×1 convolutions and the window attention run ~2× faster on CPU
    return Problem(g.contiguous(memory_format=torch.channels_last),
                   source_up.contiguous(memory_format=torch.channels_last), lr, mean, std, operator)


def tiles(length: int, tile: int, align: int) -> list[tuple[int, int]]:
    """Cut ``[0, length)`` in cores of at most ``tile`` (a multiple of ``align``)."""
    step = max(align, (tile // align) * align)
    return [(a, min(a + step, length)) for a in range(0, length, step)]


def _window(a: int, b: int, halo: int, length: int) -> tuple[int, int]:
    return max(0, a - halo), min(length, b + halo)


@torch.no_grad()
def predict(net: MutualModulationNet, guide, source_up, tile: int, batch: int = 8):
    """Network output ``(E, 1, H, W)`` computed on tiles with a halo (equal to the whole-
    image forward pass).  ``batch`` source maps per pass (0: all)."""
    n, _, h, w = source_up.shape
    out = torch.empty_like(source_up)
    halo = net.halo
    batch = batch or n
    for y0, y1 in tiles(h, tile, 1):
        wy0, wy1 = _window(y0, y1, halo, h)
        for x0, x1 in tiles(w, tile, 1):
            wx0, wx1 = _window(x0, x1, halo, w)
            g = guide[..., wy0:wy1, wx0:wx1]
            f_guide = net.guide_features(g)  # once per tile for all source maps
            for e in range(0, n, batch):
                res = net(g, source_up[e:e + batch, :, wy0:wy1, wx0:wx1], f_guide)
                out[e:e + batch, :, y0:y1, x0:x1] = res[..., y0 - wy0:y1 - wy0, x0 - wx0:x1 - wx0]
    return out


def consistency(pred_lr, lr, loss: str):
    if loss == "l1":
        return F.l1_loss(pred_lr, lr)
    return F.mse_loss(pred_lr, lr)


def whole_image_step(net, guide, source_up, lr, operator, loss: str, tile: int) -> float:
    """Gradient of the whole-image loss ``L(down(net(guide, source)), lr)`` into ``.grad``.

    One tile: plain autograd.  Several: the prediction is computed tile by tile without
    graph, the gradient of the loss with respect to it is taken on the full image (the
    operator may couple tiles), then each tile is recomputed with its halo and
    back-propagated with its part of that gradient: the same gradient as one whole-image
    pass, with the memory of one tile.
    """
    h, w = source_up.shape[-2:]
    if h <= tile and w <= tile:
        value = consistency(operator.down(net(guide, source_up)), lr, loss)
        value.backward()
        return float(value.detach())
    pred = predict(net, guide, source_up, tile).requires_grad_(True)
    value = consistency(operator.down(pred), lr, loss)
    (grad,) = torch.autograd.grad(value, pred)
    halo = net.halo
    for y0, y1 in tiles(h, tile, 1):
        wy0, wy1 = _window(y0, y1, halo, h)
        for x0, x1 in tiles(w, tile, 1):
            wx0, wx1 = _window(x0, x1, halo, w)
            res = net(guide[..., wy0:wy1, wx0:wx1], source_up[..., wy0:wy1, wx0:wx1])
            core = res[..., y0 - wy0:y1 - wy0, x0 - wx0:x1 - wx0]
            core.backward(grad[..., y0:y1, x0:x1])
    return float(value.detach())


def operator_margin(operator) -> int:
    """LR pixels by which the operator's support reaches beyond its own block (0 for the
    block mean, ⌈3σ / s⌉ for a Gaussian beam of σ HR pixels)."""
    sigma = float(getattr(operator, "sigma", 0.0) or 0.0)
    return int(math.ceil(3 * sigma / int(operator.scale)))


def crop_step(net, guide, source_up, lr, operator, loss: str, crop: int,
              rng: np.random.Generator) -> float:
    """Loss on one random crop of ``crop`` HR pixels (LR-aligned), which the network sees on
    its own with zero padding at its edges, as the authors' 256² crops in SSGNet's depth
    upsampling; the loss covers the crop's LR pixels.  For an operator that reaches beyond
    its block (Gaussian beam) the crop grows by that margin and the loss leaves it out,
    so that no LR pixel sees the periodic wrap of the crop."""
    s = int(operator.scale)
    h, w = source_up.shape[-2:]
    hl, wl = h // s, w // s
    cl = max(1, crop // s)
    chl, cwl = min(cl, hl), min(cl, wl)
    y0l = int(rng.integers(0, hl - chl + 1))
    x0l = int(rng.integers(0, wl - cwl + 1))
    m = operator_margin(operator)
    wy0l, wy1l = max(0, y0l - m), min(hl, y0l + chl + m)
    wx0l, wx1l = max(0, x0l - m), min(wl, x0l + cwl + m)
    res = net(guide[..., wy0l * s:wy1l * s, wx0l * s:wx1l * s],
              source_up[..., wy0l * s:wy1l * s, wx0l * s:wx1l * s])
    pred_lr = operator.down(res)[..., y0l - wy0l:y0l - wy0l + chl, x0l - wx0l:x0l - wx0l + cwl]
    value = consistency(pred_lr, lr[..., y0l:y0l + chl, x0l:x0l + cwl], loss)
    value.backward()
    return float(value.detach())


@dataclass
class Schedule:
    """MMSR's optimisation (``inference.ipynb``, ``main.py``)."""

    epochs: int = 1000               # optimiser steps (whole image, or one crop each)
    lr: float = 2e-3
    lr_decay: float = 0.9998         # applied before every ``lr_decay_every``-th step
    lr_decay_every: int = 5
    weight_decay_guide: float = 5e-4
    loss: str = "l1"
    crop: int = 0                    # 0: whole-image steps (paper)
    tile: int = 256                  # HR pixels per tile side (memory bound)
    elements_per_step: int = 0       # shared network: source maps per step (0: all)


def train(net: MutualModulationNet, prob: Problem, elements: list[int], sched: Schedule,
          rng: np.random.Generator, progress: Callable[[int, str], None] | None = None) -> float:
    """Fit ``net`` to the LR maps ``elements`` of ``prob`` (one network for all of them).

    Returns the last loss.  Each step uses all of ``elements`` or a random subset of
    ``elements_per_step``; a step is a whole-image epoch (``crop = 0``) or one crop.
    """
    net.train()
    opt = torch.optim.Adam(net.param_groups(sched.weight_decay_guide), lr=sched.lr)
    value = float("nan")
    sel = torch.tensor(elements, device=prob.lr.device)
    for epoch in range(sched.epochs):
        if (epoch + 1) % sched.lr_decay_every == 0:
            for group in opt.param_groups:
                group["lr"] *= sched.lr_decay
        if 0 < sched.elements_per_step < len(elements):
            pick = sel[torch.from_numpy(rng.choice(len(elements), sched.elements_per_step,
                                                   replace=False)).to(sel.device)]
        else:
            pick = sel
        src, lr = prob.source_up[pick], prob.lr[pick]
        opt.zero_grad(set_to_none=True)
        if sched.crop > 0:
            value = crop_step(net, prob.guide, src, lr, prob.operator, sched.loss, sched.crop, rng)
        else:
            value = whole_image_step(net, prob.guide, src, lr, prob.operator, sched.loss, sched.tile)
        if not math.isfinite(value):
            raise mb.MaxrfError(f"training diverged (loss {value}) at step {epoch + 1}; "
                                "try a smaller lr")
        opt.step()
        if progress is not None:
            progress(epoch + 1, f"loss {value:.4f}")
    return value


def denormalise(pred: torch.Tensor, prob: Problem, elements: list[int]) -> np.ndarray:
    """``(len(elements), H, W)`` float32 in the units of ``maps_lr``."""
    out = pred[:, 0].detach().cpu().numpy().astype(np.float64)
    std = prob.std[elements][:, None, None]
    mean = prob.mean[elements][:, None, None]
    return (out * std + mean).astype(np.float32)


#: inference: tiles of at most this side and this many maps per pass (≈ 1 GB at 192 + halo)
INFER_TILE = 192
INFER_BATCH = 4


def super_resolve(prob: Problem, make_net: Callable[[], MutualModulationNet], sched: Schedule,
                  *, share_elements: bool, seed: int, progress=None) -> np.ndarray:
    """Train and predict every element of ``prob``: ``(E, H, W)`` float32 (maps_lr units).

    ``share_elements=False``: one network per element, trained on that element alone (the
    authors' method).  ``True``: one network for all elements.  Constant maps are copied.
    """
    n_el = prob.lr.shape[0]
    h, w = prob.source_up.shape[-2:]
    out = np.empty((n_el, h, w), dtype=np.float32)
    live = [e for e in range(n_el) if prob.std[e] > 0]
    for e in range(n_el):
        if e not in live:
            out[e] = prob.mean[e]
    if not live:
        return out
    groups = [live] if share_elements else [[e] for e in live]
    total = len(groups) * sched.epochs
    start = time.time()
    for gi, group in enumerate(groups):
        torch.manual_seed(seed + 7919 * gi)
        rng = np.random.default_rng([seed, gi])
        net = make_net().to(device=prob.guide.device, memory_format=torch.channels_last)

        def tick(done, message, gi=gi, group=group):
            if progress is not None and (done % 10 == 0 or done == sched.epochs):
                what = "all elements" if share_elements else f"element {group[0] + 1}/{n_el}"
                progress(gi * sched.epochs + done, total,
                         f"{what}: {message} ({time.time() - start:.0f} s)")

        train(net, prob, group, sched, rng, tick)
        net.eval()
        pred = predict(net, prob.guide, prob.source_up[group], min(sched.tile, INFER_TILE),
                       batch=INFER_BATCH)
        out[group] = denormalise(pred, prob, group)
        del net, pred
    return out
