"""Pseudo-real data augmentation (paper Sec. III-A-2, Eq. 14).

The discriminator needs "real" HR MA-XRF patches, which do not exist.  The paper forms
*pseudo-real* patches by mixing a randomly chosen channel of the interpolated LR maps with
the RGB channel most correlated with it::

    β · Y↑_patch + (1 − β) · Z_patch,    β ~ U[0, 0.9] drawn once per iteration   (Eq. 14)

and flips them at random.  The correlation is Pearson's, over the whole HR grid, between
the bilinear-upsampled element map and each RGB band.  "Most correlated" is read as the
largest **absolute** coefficient ``|r|``, and when that ``r`` is negative the band enters
inverted, ``1 − Z`` (bands are in [0, 1]), so that the pseudo-real patch has the element's
contrast, not its negative.  (A literal reading — the largest signed ``r`` — mixes an
anticorrelated map with a band whose edges run the other way: on sim-demo 3 of the 8
elements are anticorrelated with every band, and their pseudo-real patches carried
reversed-contrast edges.)
"""
from __future__ import annotations

import numpy as np
import torch

BETA_MAX = 0.9


def most_correlated_band(y_up: np.ndarray, rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each element of ``y_up`` ``(B, H, W)``, the RGB band of ``rgb`` ``(b, H, W)`` with
    the largest ``|r|`` (Pearson) and the sign of that ``r``.

    Returns ``(band, sign)``: ``(B,)`` int64 band indices and ``(B,)`` float32 signs (±1;
    +1 where ``r = 0``).  Eq. 14 uses ``Z[band]`` where ``sign > 0`` and ``1 − Z[band]``
    where ``sign < 0``.
    """
    a = y_up.reshape(y_up.shape[0], -1).astype(np.float64)
    z = rgb.reshape(rgb.shape[0], -1).astype(np.float64)
    a = a - a.mean(1, keepdims=True)
    z = z - z.mean(1, keepdims=True)
    denom = np.linalg.norm(a, axis=1)[:, None] * np.linalg.norm(z, axis=1)[None, :]
    corr = np.divide(a @ z.T, denom, out=np.zeros((a.shape[0], z.shape[0])), where=denom > 0)
    band = np.abs(corr).argmax(axis=1)
    r = corr[np.arange(corr.shape[0]), band]
    return band, np.where(r < 0, -1.0, 1.0).astype(np.float32)


def random_flips(patches: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Flip each ``(N, P, P)`` patch up–down and/or left–right with probability 1/2 each."""
    n = patches.shape[0]
    flip = torch.rand(n, 2, generator=gen) < 0.5
    ud = flip[:, 0].to(patches.device).view(n, 1, 1)
    lr = flip[:, 1].to(patches.device).view(n, 1, 1)
    patches = torch.where(ud, patches.flip(-2), patches)
    return torch.where(lr, patches.flip(-1), patches)


def pseudo_real_patches(y_up: torch.Tensor, rgb: torch.Tensor, best_band: torch.Tensor,
                        n: int, patch: int, gen: torch.Generator, beta: float | None = None,
                        band_sign: torch.Tensor | None = None
                        ) -> tuple[torch.Tensor, float, torch.Tensor]:
    """Eq. 14: ``n`` single-channel pseudo-real patches ``(n, 1, patch, patch)``.

    ``y_up`` ``(B, H, W)`` bilinear-upsampled LR maps, ``rgb`` ``(b, H, W)`` in [0, 1],
    ``best_band`` ``(B,)`` and ``band_sign`` ``(B,)`` from :func:`most_correlated_band`
    (``None``: all +1).  Each patch takes a random element, a random position (any HR
    offset), and the matching band at the same position, inverted (``1 − Z``) where the
    sign is negative; one β ~ U[0, 0.9] is drawn per call (per iteration) unless given.
    Returns the patches, β and the elements chosen.
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
    if band_sign is not None:
        inverted = (band_sign.to(dev)[el_d] < 0)[:, None, None]
        z_patch = torch.where(inverted, 1.0 - z_patch, z_patch)
    mixed = beta * y_patch + (1.0 - beta) * z_patch
    return random_flips(mixed, gen).unsqueeze(1), beta, el
