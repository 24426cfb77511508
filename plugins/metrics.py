"""Quality metrics of the benchmark: RMSE, PSNR, SSIM, SAM, ERGAS and consistency.

All compare maps normalised per element to [0, 1].  "Overall" figures follow the paper:
RMSE is one root-mean-square over the whole cube and PSNR = -20·log10(RMSE) with data
range 1 (every cell of the paper's Table I satisfies this).  SSIM overall is the mean over
elements; SAM is the mean spectral angle over pixels (no per-element value); ERGAS is
Wald's relative dimensionless global error.
"""
from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter

import maxrf_bench as mb


def _rmse_per(sr, truth):
    d = (np.asarray(sr, np.float64) - np.asarray(truth, np.float64)) ** 2
    return np.sqrt(d.mean(axis=(-2, -1))), float(np.sqrt(d.mean()))


def rmse(sr, truth, lr=None, operator=None):
    return _rmse_per(sr, truth)


def psnr(sr, truth, lr=None, operator=None):
    per, overall = _rmse_per(sr, truth)
    with np.errstate(divide="ignore"):
        return -20 * np.log10(per), float(-20 * np.log10(overall))


def ssim_map(a: np.ndarray, b: np.ndarray, data_range: float = 1.0, sigma: float = 1.5):
    """Wang et al. (2004) SSIM map of two 2-D images with an 11-tap Gaussian window."""
    a = a.astype(np.float64)
    b = b.astype(np.float64)
    k1, k2 = 0.01, 0.03
    c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
    f = dict(sigma=sigma, truncate=3.5, mode="reflect")  # radius 5 → 11 taps
    mu_a, mu_b = gaussian_filter(a, **f), gaussian_filter(b, **f)
    saa = gaussian_filter(a * a, **f) - mu_a**2
    sbb = gaussian_filter(b * b, **f) - mu_b**2
    sab = gaussian_filter(a * b, **f) - mu_a * mu_b
    return ((2 * mu_a * mu_b + c1) * (2 * sab + c2)) / ((mu_a**2 + mu_b**2 + c1) * (saa + sbb + c2))


def ssim(sr, truth, lr=None, operator=None):
    # Like Wang's reference code ('valid' filtering) and scikit-image, the mean leaves out
    # the 5-pixel border where the 11-tap window reaches outside the image.
    per = np.array([_crop(ssim_map(s, t), 5).mean() for s, t in zip(sr, truth)])
    return per, float(per.mean())


def _crop(a: np.ndarray, r: int) -> np.ndarray:
    return a[r:-r, r:-r] if min(a.shape) > 2 * r else a


def sam(sr, truth, lr=None, operator=None):
    """Mean spectral angle in degrees between the element vectors of each pixel."""
    s = np.asarray(sr, np.float64).reshape(sr.shape[0], -1)
    t = np.asarray(truth, np.float64).reshape(truth.shape[0], -1)
    dot = (s * t).sum(0)
    norms = np.linalg.norm(s, axis=0) * np.linalg.norm(t, axis=0)
    valid = norms > 0
    cos = np.clip(dot[valid] / norms[valid], -1, 1)
    angle = np.degrees(np.arccos(cos)).mean() if valid.any() else 0.0
    return np.full(sr.shape[0], np.nan), float(angle)


def ergas(sr, truth, lr=None, operator=None):
    """Wald's ERGAS = 100 · (h/l) · sqrt(mean_k (RMSE_k / mean_k)^2), with h/l = 1/scale."""
    scale = operator.scale if operator is not None else 4
    per_rmse, _ = _rmse_per(sr, truth)
    mu = np.asarray(truth, np.float64).mean(axis=(-2, -1))
    rel = np.where(mu > 0, per_rmse / np.where(mu > 0, mu, 1), np.nan)
    per = 100.0 / scale * rel
    overall = 100.0 / scale * np.sqrt(np.nanmean(rel**2))
    return per, float(overall)


def consistency(sr, truth, lr, operator):
    """RMSE between the downsampled output ``U(SR)`` and the measured LR maps."""
    return _rmse_per(operator.down(np.asarray(sr, np.float64)), lr)


@mb.hookimpl
def maxrf_bench_register_metrics(register):
    register(mb.Metric("rmse", rmse, "root-mean-square error (overall: whole cube)"))
    register(mb.Metric("psnr", psnr, "peak signal-to-noise ratio, data range 1 (dB)",
                       higher_is_better=True, units="dB"))
    register(mb.Metric("ssim", ssim, "structural similarity (Gaussian window σ=1.5)",
                       higher_is_better=True))
    register(mb.Metric("sam", sam, "mean spectral angle across elements (degrees)", units="deg"))
    register(mb.Metric("ergas", ergas, "Wald's relative global error (ERGAS)"))
    register(mb.Metric("consistency", consistency, "RMSE of U(SR) − LR (physical consistency)",
                       needs_truth=False))
