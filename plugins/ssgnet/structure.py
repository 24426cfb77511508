"""SSGNet's scene-structure network, its KNN-affinity Laplacian loss and its training.

Written from a reading of ``jsshin98/SSGNet`` (``SSGNet/model.py``, ``SSGNet/utils/losses.py``,
``SSGNet/datasets/nyu.py``, ``SSGNet/train.py``, ``SSGNet/options/train_options.py`` and
``Depth_Upsampling/model/network.py``); no code was copied.

Network (``Depth_Upsampling/model/network.py``, the variant the depth upsampler loads; the
convolutions have no bias, each is followed by a channel LayerNorm, eps 1e-6)::

    conv1  = GELU(LN(3×3 conv 3 → 32))
    conv2  = GELU(LN(3×3 conv 32 → 64))
    d2     = GELU(LN(3×3 conv 64 → 32))(conv2)
    d2     = GELU(LN(3×3 conv 64 → 32))([d2 ; conv1])
    E      = softmax over channels (LN(1×1 conv 32 → 3))(d2)      (3, H, W), Σ_c E_c = 1

Loss (``utils/losses.py``, ``train.py``): with ``L = D − W`` the Laplacian of the KNN
affinity ``W`` of the photograph (below),

    e_loss = mean_c  E_cᵀ L E_c        (the L1 distance of diag(E L Eᵀ) to 0)
    s_loss = mean(E^0.9 + (1 − E)^0.9) − 1
    loss   = e_loss + 40 · s_loss

KNN affinity (``datasets/nyu.py``, ``knn_affinity`` after pymatting): features
``[r, g, b, λ·x, λ·y]`` per pixel, ``x, y`` = ``linspace(0, 1)`` over the columns/rows; the
``k = 20`` nearest neighbours with ``λ = 2`` and the ``k = 10`` nearest with ``λ = 0.1``
(each pixel is its own first neighbour), every pair entered as ``(i, j)`` and ``(j, i)``
with weight 1, duplicates summed; ``D`` its row sums (values below 1e-12 set to 1).  As the
released code does, the colours are the photograph's 8-bit values 0–255
(``(img * 255).astype(uint8)``), so colour dominates the spatial terms (pymatting itself
expects colours in [0, 1]); we keep the released behaviour.

Departures:

* **Sparse.**  The reference converts ``L`` to a dense ``(HW)²`` matrix (``todense()``,
  1 GiB at 128²); here it stays sparse (``scipy.sparse`` to build, a torch COO matrix to
  multiply), ``O(HW·60)`` memory, the same values (tested against a dense construction).
* **Neighbour search**: ``scipy.spatial.cKDTree`` instead of pymatting's kd-tree (exact
  search both; ties may be broken differently).
* **Training data.**  The published weights were trained on NYUv2 (1000 images, 100 epochs,
  batch 1, random 128² crops with horizontal flips, Adam lr 1e-4, no weight decay); those
  weights are not used here.  The network is trained on the photograph of the scan itself,
  unsupervised, with the same loss, crop size, flips and optimiser: one step takes one
  crop of a pool of ``crops`` random 128² crops, each with its own Laplacian computed once
  (the pool, ours, replaces a fresh crop and KNN search per step).  A flip is applied to
  the input and undone on the output, which equals computing ``L`` on the flipped crop.
  The input is normalised with the ImageNet mean and std as in ``nyu.py``.
* ``E`` is clamped to at least 1e-12 inside ``s_loss`` so that a saturated softmax cannot
  give an infinite gradient of ``E^0.9``.
"""
from __future__ import annotations

import math
from typing import Callable

import numpy as np
import scipy.sparse
import torch
import torch.nn as nn
import torch.nn.functional as F
from scipy.spatial import cKDTree

import maxrf_bench as mb

NEIGHBOURS = (20, 10)            # knn_affinity(n_neighbors=[20, 10])
DISTANCE_WEIGHTS = (2.0, 0.1)    # knn_affinity(distance_weights=[2.0, 0.1])
SPARSITY_WEIGHT = 40.0           # loss = e_loss + 40 * s_loss (train.py)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
STRUCTURE_RADIUS = 4             # four 3×3 convolutions


# --------------------------------------------------------------------------------------
# the KNN affinity Laplacian


def knn_affinity(rgb: np.ndarray, neighbours=NEIGHBOURS,
                 distance_weights=DISTANCE_WEIGHTS) -> scipy.sparse.csr_matrix:
    """Sparse KNN affinity ``W`` ``(HW, HW)`` of a photograph ``rgb`` ``(3, H, W)`` in [0, 1].

    Pixels are numbered row-major.  See the module docstring for the construction.
    """
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[0] != 3:
        raise mb.ConfigError(f"the KNN affinity needs a (3, H, W) photograph, found {rgb.shape}")
    _, h, w = rgb.shape
    n = h * w
    colour = (np.clip(rgb, 0, 1) * 255).astype(np.uint8).reshape(3, n).T.astype(np.float32)
    x = np.tile(np.linspace(0, 1, w), h)
    y = np.repeat(np.linspace(0, 1, h), w)
    rows, cols = [], []
    for k, lam in zip(neighbours, distance_weights):
        k = min(int(k), n)
        feats = np.concatenate([colour, (lam * np.stack([x, y], axis=1)).astype(np.float32)], axis=1)
        _, nb = cKDTree(feats).query(feats, k=k)
        nb = np.asarray(nb).reshape(n, k)
        rows.append(np.repeat(np.arange(n), k))
        cols.append(nb.ravel())
    i = np.concatenate(rows + cols)
    j = np.concatenate(cols + rows)
    return scipy.sparse.csr_matrix((np.ones(i.size), (i, j)), shape=(n, n))


def knn_laplacian(rgb: np.ndarray, **kw) -> scipy.sparse.csr_matrix:
    """``L = D − W`` for the KNN affinity of ``rgb`` (``get_diagonal``: row sums < 1e-12 → 1)."""
    wmat = knn_affinity(rgb, **kw)
    d = np.asarray(wmat.sum(axis=1)).ravel()
    d[d < 1e-12] = 1.0
    return (scipy.sparse.diags(d) - wmat).tocsr()


def to_torch(lap: scipy.sparse.spmatrix, device) -> torch.Tensor:
    """A coalesced float32 torch COO copy of a scipy sparse matrix."""
    coo = lap.tocoo()
    idx = torch.from_numpy(np.stack([coo.row, coo.col]).astype(np.int64))
    val = torch.from_numpy(coo.data.astype(np.float32))
    return torch.sparse_coo_tensor(idx, val, size=coo.shape, check_invariants=True).coalesce().to(device)


# --------------------------------------------------------------------------------------
# the network


class ChannelLayerNorm(nn.Module):
    """LayerNorm over the channels of ``(B, C, H, W)`` at every pixel (``channels_first``)."""

    def __init__(self, channels: int, eps: float = 1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x):
        mean = x.mean(1, keepdim=True)
        var = (x - mean).pow(2).mean(1, keepdim=True)
        x = (x - mean) / torch.sqrt(var + self.eps)
        return self.weight[:, None, None] * x + self.bias[:, None, None]


class ConvBlock(nn.Module):
    """Bias-free convolution, channel LayerNorm, then GELU (or softmax over channels)."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int, activation: str = "gelu"):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel, padding=kernel // 2, bias=False)
        self.norm = ChannelLayerNorm(out_channels)
        self.activation = activation

    def forward(self, x):
        x = self.norm(self.conv(x))
        return F.gelu(x) if self.activation == "gelu" else x.softmax(dim=1)


class SceneStructureNet(nn.Module):
    """SSGNet: photograph ``(B, 3, H, W)`` → structure maps ``(B, 3, H, W)``, softmax over
    the three channels."""

    def __init__(self):
        super().__init__()
        self.conv1 = ConvBlock(3, 32, 3)
        self.conv2 = ConvBlock(32, 64, 3)
        self.deconv2_1 = ConvBlock(64, 32, 3)
        self.deconv2_2 = ConvBlock(64, 32, 3)
        self.deconv1 = ConvBlock(32, 3, 1, activation="softmax")

    def forward(self, x):
        c1 = self.conv1(x)
        d2 = self.deconv2_1(self.conv2(c1))
        d2 = self.deconv2_2(torch.cat([d2, c1], dim=1))
        return self.deconv1(d2)


class StructureGuide(nn.Module):
    """The guide-side addition of SSGNet's depth upsampler: ``ReLU(3×3 conv 3 → 1)`` of the
    structure maps, concatenated to the photograph in front of MMSR's guide branch."""

    channels = 1
    radius = STRUCTURE_RADIUS + 1

    def __init__(self, structure: SceneStructureNet):
        super().__init__()
        self.structure = structure
        self.reduce = nn.Conv2d(3, 1, 3, padding=1)

    def forward(self, guide):
        return F.relu(self.reduce(self.structure(guide)))


# --------------------------------------------------------------------------------------
# loss and training


def structure_loss(e: torch.Tensor, lap: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(e_loss, s_loss)`` of ``e`` ``(1, 3, h, w)`` for the sparse Laplacian ``lap``
    ``(hw, hw)`` of the same crop."""
    n, c, h, w = e.shape
    flat = e.reshape(n * c, h * w).t()                       # (hw, 3)
    quad = (flat * torch.sparse.mm(lap, flat)).sum(0)        # diag(E L Eᵀ), (3,)
    e_loss = quad.abs().mean()
    ec = e.clamp_min(1e-12)
    s_loss = (ec.pow(0.9).sum() + (1 - e).clamp_min(1e-12).pow(0.9).sum()) / e.numel() - 1
    return e_loss, s_loss


def imagenet_normalise(rgb: np.ndarray) -> np.ndarray:
    mean = np.asarray(IMAGENET_MEAN, np.float32)[:, None, None]
    std = np.asarray(IMAGENET_STD, np.float32)[:, None, None]
    return ((np.asarray(rgb, np.float32) - mean) / std).astype(np.float32)


def crop_pool(h: int, w: int, crop: int, count: int, rng: np.random.Generator) -> list[tuple]:
    """Up to ``count`` distinct random ``crop × crop`` windows ``(y, x, size_y, size_x)``."""
    cy, cx = min(crop, h), min(crop, w)
    positions = (h - cy + 1) * (w - cx + 1)
    count = min(count, positions)
    flat = rng.choice(positions, size=count, replace=False)
    return [(int(f // (w - cx + 1)), int(f % (w - cx + 1)), cy, cx) for f in sorted(flat)]


def train_structure(rgb: np.ndarray, *, iterations: int, lr: float, crop: int, crops: int,
                    seed: int, device, progress: Callable[[int, int, str], None] | None = None
                    ) -> tuple[SceneStructureNet, dict]:
    """Train SSGNet on random crops of the photograph ``rgb`` ``(3, H, W)`` in [0, 1].

    Returns the network and a summary (final losses, number of crops).
    """
    torch.manual_seed(seed)
    rng = np.random.default_rng([seed, 17])
    _, h, w = rgb.shape
    pool = crop_pool(h, w, crop, crops, rng)
    normed = imagenet_normalise(rgb)
    data = []
    for i, (y, x, sy, sx) in enumerate(pool):
        lap = to_torch(knn_laplacian(rgb[:, y:y + sy, x:x + sx]), device)
        img = torch.from_numpy(np.ascontiguousarray(normed[:, y:y + sy, x:x + sx]))[None].to(device)
        data.append((img, lap))
        if progress is not None:
            progress(i + 1, len(pool), "KNN Laplacians of the photograph's crops")
    net = SceneStructureNet().to(device).train()
    opt = torch.optim.Adam(net.parameters(), lr=lr, weight_decay=0.0)
    e_val = s_val = float("nan")
    for it in range(iterations):
        img, lap = data[int(rng.integers(len(data)))]
        flip = bool(rng.random() < 0.5)
        e = net(img.flip(-1) if flip else img)
        if flip:
            e = e.flip(-1)
        e_loss, s_loss = structure_loss(e, lap)
        loss = e_loss + SPARSITY_WEIGHT * s_loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        e_val, s_val = float(e_loss.detach()), float(s_loss.detach())
        if not (math.isfinite(e_val) and math.isfinite(s_val)):
            raise mb.MaxrfError(f"SSGNet training diverged at step {it + 1}; try a smaller structure_lr")
        if progress is not None and ((it + 1) % 20 == 0 or it + 1 == iterations):
            progress(it + 1, iterations, f"SSGNet on the photograph: e_loss {e_val:.4g}, "
                                         f"s_loss {s_val:.4g}")
    net.eval()
    return net, {"e_loss": e_val, "s_loss": s_val, "crops": len(pool), "iterations": iterations}
