"""The two instruments: an MA-XRF scanner and a camera.

Scanner (per element line, counts)::

    λ = dwell · flux · I_ℓ(x, y) ⊛ beam  + background_ℓ · dwell      (expected counts)
    N ~ Poisson(λ · G),   G = max(0, 1 + k·z), z ~ N(0, 1)             (E[G] = 1, CV k)

so ``Var N = λ + k² λ²``: Poisson counting noise plus a small per-pixel multiplicative
excess (tube-flux and stand-off fluctuations, pile-up corrections of fitted maps).
Row positioning jitter (the stage's encoder: rows land ``jitter_px`` off their nominal
line) is simulated by re-sampling each row of ``λ`` at a shifted position.  ``k`` and the
jitter were calibrated on two repeat scans of the same object
(``vinca_fresco``; see :func:`repeat_statistics` and ``tests/benchmarks/bench_simulator_noise.py``).

Camera: linear reflectance × illumination (a soft fall-off) × a yellowed varnish, a lens
blur, sRGB encoding, then shot + read noise and 8-bit-like clipping to [0, 1].
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

import maxrf_bench as mb

from .canvas import gaussian_blur


@dataclass(frozen=True)
class ScannerModel:
    """MA-XRF acquisition settings.

    ``dwell_ms`` per pixel; ``counts_per_ms``: detected counts per ms for unit relative
    intensity of :func:`physics.fluorescence` (sets the absolute level: thick lead white
    gives a few thousand Pb-L counts at 10 ms); ``beam_sigma_px``: Gaussian beam spot
    (std, HR pixels); ``gain_cv`` (k): per-pixel multiplicative excess; ``jitter_px``: row
    positioning std; ``background_per_ms``: mean continuum/scatter counts under each line.
    """

    dwell_ms: float = 10.0
    counts_per_ms: float = 2.5e4
    beam_sigma_px: float = 0.5
    gain_cv: float = 0.015
    jitter_px: float = 0.15
    background_per_ms: float = 0.2
    noise: bool = True

    def describe(self) -> str:
        return (f"Poisson(lambda*G), G=1+{self.gain_cv}*N(0,1); row jitter "
                f"{self.jitter_px} px; beam Gaussian sigma {self.beam_sigma_px} px; background "
                f"{self.background_per_ms}/ms per line" if self.noise else "none (expected counts)")

    def as_attrs(self) -> dict:
        return {f"scanner_{k}": v for k, v in asdict(self).items()}


def acquire(intensity: np.ndarray, model: ScannerModel, rng: np.random.Generator) -> np.ndarray:
    """Counts ``(line, y, x)`` (float32, non-negative integers when ``model.noise``) from
    relative intensities ``(line, y, x)``."""
    lam = intensity.astype(np.float32) * np.float32(model.counts_per_ms * model.dwell_ms)
    lam = gaussian_blur(lam, model.beam_sigma_px)
    if model.noise:
        lam = mb.row_jitter(lam, rng, model.jitter_px)
    lam = np.maximum(lam, 0) + np.float32(model.background_per_ms * model.dwell_ms)
    if not model.noise:
        return lam.astype(np.float32)
    if model.gain_cv > 0:
        # G ≈ 1 + k·N(0, 1): the Gamma(1/k², k²) gain for small k (k ≈ 0.02), much faster
        gain = rng.standard_normal(lam.shape, dtype=np.float32)
        gain *= np.float32(model.gain_cv)
        gain += 1
        lam = lam * np.maximum(gain, 0)
    return rng.poisson(lam).astype(np.float32)


@dataclass(frozen=True)
class CameraModel:
    """Photograph settings: blur std (px), read noise and shot-noise scale (in [0, 1]
    units), illumination fall-off towards the corners, varnish transmission (R, G, B)."""

    blur_sigma_px: float = 0.6
    read_noise: float = 0.004
    shot_noise: float = 0.008
    falloff: float = 0.08
    varnish: tuple[float, float, float] = (0.97, 0.93, 0.80)

    def as_attrs(self) -> dict:
        return {f"camera_{k}": (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()}


def srgb_encode(linear: np.ndarray) -> np.ndarray:
    """IEC 61966-2-1 transfer function."""
    a = np.clip(linear, 0, 1)
    return np.where(a <= 0.0031308, 12.92 * a, 1.055 * np.power(a, 1 / 2.4) - 0.055)


def photograph(reflectance: np.ndarray, model: CameraModel, rng: np.random.Generator) -> np.ndarray:
    """``(3, y, x)`` sRGB photograph in [0, 1] of a ``(3, y, x)`` linear reflectance."""
    _, h, w = reflectance.shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    r2 = ((yy / h - 0.5) ** 2 + (xx / w - 0.45) ** 2) * 2
    light = 1.0 - model.falloff * r2
    img = reflectance * light[None] * np.asarray(model.varnish, dtype=np.float32)[:, None, None]
    img = gaussian_blur(img.astype(np.float32), model.blur_sigma_px)
    img = srgb_encode(img)
    sigma = np.sqrt(model.read_noise ** 2 + model.shot_noise ** 2 * img)
    img = img + sigma * rng.standard_normal(img.shape).astype(np.float32)
    return np.clip(img, 0, 1).astype(np.float32)


# --- calibration against repeat scans ------------------------------------------------------

def repeat_statistics(a: np.ndarray, b: np.ndarray) -> dict:
    """Noise statistics of two repeat scans ``a``, ``b`` of one element map (counts).

    Returns ``dispersion`` = Σ(a−b)² / Σ(a+b) (1 for pure Poisson noise), the same on the
    30 % flattest pixels (``dispersion_flat``, free of positioning effects), and the
    excess coefficient ``k`` of ``Var = λ + k²λ²`` fitted on the flat pixels.
    """
    from scipy import ndimage as ndi

    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    d, s = a - b, a + b
    m = ndi.uniform_filter(s / 2, 3)
    grad = np.hypot(ndi.sobel(m, 0), ndi.sobel(m, 1)) / 8 / np.sqrt(np.maximum(m, 1))
    flat = grad <= np.quantile(grad, 0.3)
    disp = float((d ** 2).sum() / max(s.sum(), 1))
    disp_flat = float((d[flat] ** 2).sum() / max(s[flat].sum(), 1))
    excess = (d[flat] ** 2 - s[flat]).sum() / max((a[flat] ** 2 + b[flat] ** 2).sum(), 1)
    return {"mean": float(s.mean() / 2), "dispersion": disp, "dispersion_flat": disp_flat,
            "k": float(math.sqrt(max(excess, 0.0)))}
