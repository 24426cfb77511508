"""Pseudo-real data augmentation (paper Sec. III-A-2, Eq. 14).

The discriminator needs "real" HR MA-XRF patches, which do not exist.  The paper forms
*pseudo-real* patches by mixing a randomly chosen channel of the interpolated LR maps with
the RGB channel most correlated with it::

    β · Y↑_patch + (1 − β) · Z_patch,    β ~ U[0, 0.9] drawn once per iteration   (Eq. 14)

and flips them at random.  The correlation is Pearson's, over the whole HR grid, between
the bilinear-upsampled element map and each RGB band; "highest correlation" is read
literally (the largest signed coefficient).
"""
from __future__ import annotations

import numpy as np
import torch

BETA_MAX = 0.9


def most_correlated_band(y_up: np.ndarray, rgb: np.ndarray) -> np.ndarray:
    """For each element of ``y_up`` ``(B, H, W)``, the index of the RGB band of ``rgb``
    ``(b, H, W)`` with the highest Pearson correlation.  Returns ``(B,)`` int64."""
    a = y_up.reshape(y_up.shape[0], -1).astype(np.float64)
    z = rgb.reshape(rgb.shape[0], -1).astype(np.float64)
    a = a - a.mean(1, keepdims=True)
    z = z - z.mean(1, keepdims=True)
    denom = np.linalg.norm(a, axis=1)[:, None] * np.linalg.norm(z, axis=1)[None, :]
    corr = np.divide(a @ z.T, denom, out=np.zeros((a.shape[0], z.shape[0])), where=denom > 0)
    return corr.argmax(axis=1)


def random_flips(patches: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Flip each ``(N, P, P)`` patch up–down and/or left–right with probability 1/2 each."""
    n = patches.shape[0]
    flip = torch.rand(n, 2, generator=gen) < 0.5
    ud = flip[:, 0].to(patches.device).view(n, 1, 1)
    lr = flip[:, 1].to(patches.device).view(n, 1, 1)
    patches = torch.where(ud, patches.flip(-2), patches)
    return torch.where(lr, patches.flip(-1), patches)


def pseudo_real_patches(y_up: torch.Tensor, rgb: torch.Tensor, best_band: torch.Tensor,
                        n: int, patch: int, gen: torch.Generator,
                        beta: float | None = None) -> tuple[torch.Tensor, float, torch.Tensor]:
    """Eq. 14: ``n`` single-channel pseudo-real patches ``(n, 1, patch, patch)``.

    ``y_up`` ``(B, H, W)`` bilinear-upsampled LR maps, ``rgb`` ``(b, H, W)``, ``best_band``
    ``(B,)`` from :func:`most_correlated_band`.  Each patch takes a random element, a random
    position, and the matching RGB band at the same position; one β ~ U[0, 0.9] is drawn per
    call (per iteration) unless given.  Returns the patches, β and the elements chosen.
    """
    n_el, h, w = y_up.shape
    if beta is None:
        beta = float(torch.rand((), generator=gen)) * BETA_MAX
    el = torch.randint(0, n_el, (n,), generator=gen)
    y0 = torch.randint(0, h - patch + 1, (n,), generator=gen)
    x0 = torch.randint(0, w - patch + 1, (n,), generator=gen)
    d = torch.arange(patch)
    rows = (y0[:, None] + d[None, :])[:, :, None]          # (n, P, 1)
    cols = (x0[:, None] + d[None, :])[:, None, :]          # (n, 1, P)
    dev = y_up.device
    el_d, rows, cols = el.to(dev), rows.to(dev), cols.to(dev)
    y_patch = y_up[el_d[:, None, None], rows, cols]
    z_patch = rgb[best_band.to(dev)[el_d][:, None, None], rows, cols]
    mixed = beta * y_patch + (1.0 - beta) * z_patch
    return random_flips(mixed, gen).unsqueeze(1), beta, el
