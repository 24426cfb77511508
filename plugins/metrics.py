"""Quality metrics of the benchmark: RMSE, PSNR, SSIM, SAM, ERGAS, consistency, and the
no-reference indices QNR, D_λ and D_s, and the photo leak (:func:`photo_leak`).

All compare maps normalised per element to [0, 1].  "Overall" figures follow the paper:
RMSE is one root-mean-square over the whole cube and PSNR = -20·log10(RMSE) with data
range 1 (every cell of the paper's Table I satisfies this).  SSIM overall is the mean over
elements; SAM is the mean spectral angle over pixels (no per-element value); ERGAS is
Wald's relative dimensionless global error.

Without a high-resolution truth (a museum scan) the full-resolution no-reference indices of
Alparone et al. (2008) apply, with the photograph's luminance as the panchromatic band:
``D_λ`` (spectral distortion: how much fusion changed the inter-element similarities),
``D_s`` (spatial distortion: how much it changed each element's similarity to the
luminance) and ``QNR = (1 − D_λ)(1 − D_s)``.  No maintained Python implementation was
adopted: ``sewar``'s no-reference functions use sliding windows and a different
degradation of the pan band from the published definition, and its SAM/ERGAS are known not
to follow the standard definitions; so these follow the paper's formulas (Q index on
non-overlapping blocks of S = 32 HR pixels, S/scale LR pixels, p = q = α = β = 1), checked
against a hand-computed case in ``tests/test_metrics.py``.
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


# --- no-reference indices (Alparone et al. 2008) ------------------------------------------

#: Rec. 601 luma weights: the panchromatic band made from the photograph
LUMA = (0.299, 0.587, 0.114)
BLOCK = 32


def luminance(rgb: np.ndarray) -> np.ndarray:
    """``(y, x)`` luminance of an ``(3, y, x)`` photograph (Rec. 601 weights)."""
    rgb = np.asarray(rgb, np.float64)
    return LUMA[0] * rgb[0] + LUMA[1] * rgb[1] + LUMA[2] * rgb[2]


def q_index(a: np.ndarray, b: np.ndarray) -> float:
    """Wang & Bovik's universal image quality index of two equally shaped arrays::

        Q = 4 σ_ab μ_a μ_b / ((σ_a² + σ_b²)(μ_a² + μ_b²))

    (sample covariances, as the reference MATLAB ``uqi``).  NaN where undefined (a
    constant block of zeros)."""
    a = np.asarray(a, np.float64).ravel()
    b = np.asarray(b, np.float64).ravel()
    ma, mb_ = a.mean(), b.mean()
    n = a.size
    if n < 2:
        return float("nan")
    va = ((a - ma) ** 2).sum() / (n - 1)
    vb = ((b - mb_) ** 2).sum() / (n - 1)
    cab = ((a - ma) * (b - mb_)).sum() / (n - 1)
    den = (va + vb) * (ma ** 2 + mb_ ** 2)
    if den <= 0:
        return float("nan")
    return float(4 * cab * ma * mb_ / den)


def block_q(a: np.ndarray, b: np.ndarray, size: int) -> float:
    """Mean of :func:`q_index` over the non-overlapping ``size × size`` blocks of two 2-D
    arrays (blocks that do not fit at the right/bottom edge are left out; undefined blocks
    are skipped).  Vectorised over blocks."""
    h, w = (a.shape[0] // size) * size, (a.shape[1] // size) * size
    if h == 0 or w == 0:
        return float("nan")

    def blocks(x):
        x = np.asarray(x, np.float64)[:h, :w].reshape(h // size, size, w // size, size)
        return x.transpose(0, 2, 1, 3).reshape(-1, size * size)

    x, y = blocks(a), blocks(b)
    n = x.shape[1]
    mx, my = x.mean(1), y.mean(1)
    dx, dy = x - mx[:, None], y - my[:, None]
    vx, vy = (dx * dx).sum(1) / (n - 1), (dy * dy).sum(1) / (n - 1)
    cxy = (dx * dy).sum(1) / (n - 1)
    den = (vx + vy) * (mx ** 2 + my ** 2)
    ok = den > 0
    if not ok.any():
        return float("nan")
    return float(np.mean(4 * cxy[ok] * mx[ok] * my[ok] / den[ok]))


def _block_sizes(shape_hr, scale: int) -> tuple[int, int]:
    """HR and LR block sizes: S = 32 HR pixels (a multiple of the scale), smaller when the
    scan is; at least 2 LR pixels."""
    s_lr = max(2, min(BLOCK // scale, min(shape_hr) // scale))
    return s_lr * scale, s_lr


def _d_lambda_per(sr, lr, scale):
    b = sr.shape[0]
    if b < 2:
        return np.full(b, np.nan)
    s_hr, s_lr = _block_sizes(sr.shape[-2:], scale)
    per = np.zeros(b)
    for i in range(b):
        diffs = [abs(block_q(sr[i], sr[j], s_hr) - block_q(lr[i], lr[j], s_lr))
                 for j in range(b) if j != i]
        per[i] = np.nanmean(diffs) if np.isfinite(diffs).any() else np.nan
    return per


def _d_s_per(sr, lr, rgb, operator):
    scale = operator.scale
    s_hr, s_lr = _block_sizes(sr.shape[-2:], scale)
    pan = luminance(rgb)
    pan_lr = np.asarray(operator.down(pan), np.float64)
    return np.array([abs(block_q(sr[i], pan, s_hr) - block_q(lr[i], pan_lr, s_lr))
                     for i in range(sr.shape[0])])


def d_lambda(sr, truth, lr, operator, rgb=None):
    """Spectral distortion D_λ: per element, the mean over the other elements of
    ``|Q(SR_i, SR_j) − Q(LR_i, LR_j)|``; overall, the mean over elements (p = 1)."""
    per = _d_lambda_per(np.asarray(sr, np.float64), np.asarray(lr, np.float64), operator.scale)
    return per, float(np.nanmean(per)) if np.isfinite(per).any() else float("nan")


def d_s(sr, truth, lr, operator, rgb=None):
    """Spatial distortion D_s: per element ``|Q(SR_i, P) − Q(LR_i, U(P))|`` with ``P`` the
    photograph's luminance; overall, the mean over elements (q = 1)."""
    if rgb is None:
        raise mb.ConfigError("d_s needs the photograph (rgb)")
    per = _d_s_per(np.asarray(sr, np.float64), np.asarray(lr, np.float64), rgb, operator)
    return per, float(np.nanmean(per)) if np.isfinite(per).any() else float("nan")


def qnr(sr, truth, lr, operator, rgb=None):
    """QNR = (1 − D_λ)(1 − D_s) (α = β = 1); with one element D_λ is undefined and taken
    as 0.  No per-element value."""
    _, dl = d_lambda(sr, truth, lr, operator)
    _, ds = d_s(sr, truth, lr, operator, rgb)
    dl = 0.0 if not np.isfinite(dl) else dl
    return np.full(np.asarray(sr).shape[0], np.nan), float((1 - dl) * (1 - ds))


# --- photo leak: photograph detail copied into the error ------------------------------------

def photo_leak(sr, truth, lr, operator, rgb=None):
    """Photo leak per element: how much of the SR error's fine detail is the photograph's.

    With ``e = SR − truth`` of one element, ``H(x) = x − G_σ * x`` the high-pass (Gaussian
    low-pass of σ = the scale factor s in HR pixels: what the LR grid cannot hold), and the
    photograph's three channels high-passed the same way, ``P = [H(R), H(G), H(B)]``
    (pixels × 3), the leak is the R² of the least-squares fit of ``H(e)`` on ``P`` (no
    intercept; both have zero mean by construction)::

        photo_leak = ‖P β̂‖² / ‖H(e)‖²,   β̂ = argmin_β ‖H(e) − P β‖²

    computed over the image less a border of 2σ pixels.  0: nothing of the photograph's
    fine structure is in the error; 1: the error's fine structure is a linear mix of the
    photograph's (its edges were copied into the map, or, on an element that follows the
    photograph, its edges were missed).  With 3 regressors on N pixels, an error
    independent of the photograph scores about 3/N.  Read it on elements whose signal the
    photograph does not show (``hidden_share``): there a high leak means invented
    structure.  Overall: the mean over elements.
    """
    if rgb is None:
        raise mb.ConfigError("photo_leak needs the photograph (rgb)")
    sigma = float(operator.scale if operator is not None else 4)
    err = np.asarray(sr, np.float64) - np.asarray(truth, np.float64)
    inner = mb.interior(err.shape, sigma)
    e_hp = mb.high_pass(err, sigma)[(slice(None), *inner)]
    p_hp = mb.high_pass(np.asarray(rgb, np.float64), sigma)[(slice(None), *inner)]
    regressors = p_hp.reshape(p_hp.shape[0], -1).T
    per = mb.explained_share(e_hp.reshape(e_hp.shape[0], -1).T, regressors)
    return per, float(np.nanmean(per)) if np.isfinite(per).any() else float("nan")


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
    register(mb.Metric("qnr", qnr, "quality with no reference, (1 − D_λ)(1 − D_s) (Alparone 2008)",
                       higher_is_better=True, needs_truth=False))
    register(mb.Metric("d_lambda", d_lambda, "spectral distortion D_λ, no reference (Alparone 2008)",
                       needs_truth=False))
    register(mb.Metric("d_s", d_s, "spatial distortion D_s against the photo's luminance, no "
                       "reference (Alparone 2008)", needs_truth=False))
    register(mb.Metric("photo_leak", photo_leak, "share of the error's high-pass explained by the "
                       "photograph's high-pass (R², 0 = nothing copied)"))
