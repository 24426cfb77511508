"""How much of a map's fine detail a photograph explains: the Gaussian high-pass and the
least-squares share both the ``photo_leak`` metric and our ``proposed[gate=lr]`` use."""
from __future__ import annotations

import math

import numpy as np
from scipy.ndimage import gaussian_filter

__all__ = ["explained_share", "high_pass", "interior"]


def high_pass(img: np.ndarray, sigma: float) -> np.ndarray:
    """``img − G_σ * img`` over the last two axes (Gaussian low-pass, mirrored border)."""
    img = np.asarray(img, np.float64)
    sig = (0,) * (img.ndim - 2) + (sigma, sigma)
    return img - gaussian_filter(img, sig, mode="reflect")


def interior(shape: tuple[int, ...], sigma: float) -> tuple[slice, slice]:
    """The ``(y, x)`` slices of an image of ``shape`` (last two axes) less a border of 2σ,
    where the high-pass has no boundary effect; the whole image when it is under 8σ."""
    b = int(math.ceil(2 * sigma))
    h, w = shape[-2:]
    return (slice(b, h - b), slice(b, w - b)) if min(h, w) > 4 * b else (slice(None), slice(None))


def explained_share(y: np.ndarray, regressors: np.ndarray) -> np.ndarray:
    """R² of the least-squares fit (no intercept) of each column of ``y`` ``(N, k)`` on the
    columns of ``regressors`` ``(N, m)``: ``‖fit‖² / ‖y‖²`` in [0, 1], ``(k,)``; NaN for a
    column with no energy."""
    y = np.asarray(y, np.float64).reshape(len(regressors), -1)
    energy = np.einsum("nk,nk->k", y, y)
    coef, *_ = np.linalg.lstsq(regressors, y, rcond=None)
    fit = regressors @ coef
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.where(energy > 0, np.einsum("nk,nk->k", fit, fit) / energy, np.nan)
    return np.clip(share, 0.0, 1.0)
