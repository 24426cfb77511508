"""Joint bilateral upsampling of element maps, guided by the photograph.

Kopf, Cohen, Lischinski, Uyttendaele, "Joint Bilateral Upsampling", ACM Trans. Graph. 26(3)
(SIGGRAPH 2007), Eq. 2: the HR value at pixel p is

    S(p) = 1/k_p · Σ_q  L(q) · f(‖p↓ − q‖) · g(‖I(p) − I(q)‖)

over the LR pixels q in a window around p's position p↓ on the LR grid; f is a Gaussian of
the distance on the LR grid (σ_s, LR pixels), g a Gaussian of the colour difference in the
guide (σ_r, RGB in [0, 1]), k_p the sum of the weights.  The guide's colour of an LR pixel
q is the mean of the photograph over the s × s HR pixels it covers (the block mean, the
same footprint as the scan's operator).  Numpy only, one pass per window offset.
"""
from __future__ import annotations

import numpy as np


def joint_bilateral_upsample(maps_lr: np.ndarray, rgb: np.ndarray, scale: int, *, radius: int = 2,
                             sigma_spatial: float = 1.0, sigma_range: float = 0.1,
                             progress=None) -> np.ndarray:
    """``maps_lr`` ``(element, h, w)`` and ``rgb`` ``(3, h·s, w·s)`` → ``(element, h·s, w·s)``.

    Units are kept: the output is a weighted mean of the input's values.  ``radius``: the
    window reaches ``radius`` LR pixels on each side of p↓.
    """
    maps_lr = np.asarray(maps_lr, dtype=np.float32)
    rgb = np.asarray(rgb, dtype=np.float32)
    b, h, w = maps_lr.shape
    H, W = h * scale, w * scale
    if rgb.shape[-2:] != (H, W):
        raise ValueError(f"rgb is {rgb.shape[-2:]}, expected {(H, W)} for scale {scale}")
    guide_lr = rgb.reshape(3, h, scale, w, scale).mean(axis=(2, 4))  # the colour of each LR pixel
    # position of every HR pixel centre on the LR grid (pixel-centre convention of the block mean)
    py = (np.arange(H) + 0.5) / scale - 0.5
    px = (np.arange(W) + 0.5) / scale - 0.5
    base_y, base_x = np.floor(py).astype(int), np.floor(px).astype(int)
    num = np.zeros((b, H, W), dtype=np.float64)
    den = np.zeros((H, W), dtype=np.float64)
    offsets = [(dy, dx) for dy in range(-radius + 1, radius + 1) for dx in range(-radius + 1, radius + 1)]
    for k, (dy, dx) in enumerate(offsets):
        qy, qx = base_y + dy, base_x + dx
        spatial = np.exp(-((py - qy)[:, None] ** 2 + (px - qx)[None, :] ** 2) / (2 * sigma_spatial**2))
        iy, ix = np.clip(qy, 0, h - 1), np.clip(qx, 0, w - 1)
        colour = guide_lr[:, iy][:, :, ix]  # (3, H, W): the colour of neighbour q
        distance2 = ((rgb - colour) ** 2).sum(axis=0)
        weight = spatial * np.exp(-distance2 / (2 * sigma_range**2))
        num += weight[None] * maps_lr[:, iy][:, :, ix]
        den += weight
        if progress is not None:
            progress(k + 1, len(offsets), f"window offset {dy:+d},{dx:+d}")
    return (num / np.maximum(den, 1e-12)[None]).astype(np.float32)
