"""Noise-aware scores for real scans: Poisson thinning, and a noise ceiling where it cannot run.

A real museum scan has only a measured truth, so a PSNR against it is capped by counting
noise no method can predict.

Poisson thinning (``--protocol thinning``)
-----------------------------------------
For HR maps of raw integer counts ``N`` (Poisson with mean ``μ`` per pixel), each pixel's
counts are split binomially, ``A ~ Binomial(N, 1/2)``, ``B = N − A`` (seeded by
``noise_seed``).  ``A`` and ``B`` are then independent Poisson variables of mean ``μ/2``
(the thinning property).  In the units of the full scan (counts per HR dwell) ``2A`` and
``2B`` are two independent half-time scans of the same object, each of mean ``μ``:

* the methods get the LR input ``U(2A)`` (through the run's operator), normalised with the
  full scan's offset and span;
* the output ``Ŷ`` is scored against ``2B`` (``truth`` = ``measured`` rows: against the
  other half);
* because ``Ŷ`` depends on ``A`` only, ``E_B mean(Ŷ − 2B)² = mean(Ŷ − μ)² + mean Var(2B)``
  and ``Var(2B) = 4·Var(B) = 2μ``, whose unbiased per-pixel estimate is ``4B`` (known from
  the scoring half's own counts).  In normalised units (÷ span² per element)::

      MSE_est = mean[(Ŷ − b)² − 4B / span²],   b = (2B − offset) / span

  an unbiased estimate of ``mean(Ŷ − μ_norm)²``.  ``truth`` = ``estimated`` rows hold
  ``psnr`` = −10 log10 MSE_est (whole cube, as the ``psnr`` metric), ``rmse``, and
  ``psnr_low``/``psnr_high``: a 95 % interval from the standard error of the per-pixel
  terms (independent across pixels given ``A``: the interval is for this cell's output).

**What the estimate targets.**  ``μ`` is the Poisson mean of the measured scan, and ``Ŷ``
is the method's output from a *half-time* scan (``2A``: half the counts, so twice the
variance of the full scan).  The estimate is therefore the clean-truth PSNR of the method
given a half-time LR scan — the same cell's ``truth`` = ``clean`` row where the scan has a
``maps_clean`` — not the PSNR of the method run on the full scan.  When the scanner's noise
is not purely Poisson (the simulator adds a ~1.5 % per-pixel gain excess and row jitter,
both calibrated on real repeat scans), ``μ`` includes those realised fluctuations, and the
estimate targets the distance to ``μ``, not to the nominal expected counts.

A noise ceiling for other scans
-------------------------------
For measured maps that are not integer counts (exported, fitted or smoothed maps),
:func:`estimated_noise_ceiling` estimates the noise std of each normalised map with
``skimage.restoration.estimate_sigma`` (Donoho's wavelet MAD on the finest diagonal
sub-band).  Assumptions: additive, white, signal-independent noise of one std per map;
structure sparse in the finest wavelet sub-band.  Poisson noise breaks the third (the
estimate is near the noise at the median pixel), smoothing by the export breaks the first
two (the ceiling is then too high).  ``−10 log10 mean σ²`` is the PSNR the noise-free truth
itself would score against the measured maps: no method can be expected to beat it.
"""
from __future__ import annotations

import math
import zlib
from dataclasses import replace

import numpy as np

from .errors import ConfigError

PROTOCOL = "thinning"
Z95 = 1.959963984540054


def require_integer_counts(prep) -> np.ndarray:
    """The HR maps as non-negative integer counts, or one clear refusal."""
    if "maps" not in prep.scan:
        raise ConfigError(f"--protocol thinning needs high-resolution maps of raw integer counts; "
                          f"scan {prep.name!r} has only low-resolution maps ('maps_lr')")
    maps = np.asarray(prep.scan["maps"].values, np.float64)
    bad = ~np.isfinite(maps) | (maps < 0) | (maps != np.round(maps))
    if bad.any():
        idx = np.unravel_index(int(np.argmax(bad)), maps.shape)
        raise ConfigError(
            f"--protocol thinning splits raw photon counts and needs non-negative integer maps; "
            f"scan {prep.name!r} has {int(bad.sum())} non-integer values (e.g. {maps[idx]!r} at "
            f"{tuple(int(i) for i in idx)}): fitted or exported maps cannot be thinned")
    return maps


def split_counts(counts: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Binomial thinning: ``A ~ Binomial(N, 1/2)``, ``B = N − A``."""
    n = np.asarray(counts).astype(np.int64)
    a = rng.binomial(n, 0.5)
    return a.astype(np.float64), (n - a).astype(np.float64)


def thinning_inputs(full, noise_seed: int = 0):
    """The thinning protocol's :class:`Prepared`: LR input ``U(2A)``, measured truth ``2B``,
    the clean truth unchanged (all normalised like the full scan)."""
    counts = require_integer_counts(full)
    rng = np.random.default_rng([int(noise_seed), zlib.crc32(full.name.encode()), 0x7A1F])
    a, b = split_counts(counts, rng)
    off, span = full.offset[:, None, None], full.span[:, None, None]
    lr = (np.asarray(full.operator.down(2 * a), np.float64) - off) / span
    truth = ((2 * b - off) / span).astype(np.float32)
    return replace(full, maps_lr=full.maps_lr.copy(data=lr.astype(np.float32)), truth=truth,
                   protocol=PROTOCOL)


def estimate_clean_mse(sr: np.ndarray, truth_half: np.ndarray, span: np.ndarray,
                       offset: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-pixel unbiased terms of the clean MSE (normalised units) and the half's counts.

    ``truth_half`` is ``(2B − offset)/span``; returns ``d = (Ŷ − b)² − 4B/span²`` per pixel."""
    sp, off = span[:, None, None], offset[:, None, None]
    b_counts = (np.asarray(truth_half, np.float64) * sp + off) / 2.0
    err2 = (np.asarray(sr, np.float64) - np.asarray(truth_half, np.float64)) ** 2
    return err2 - 4.0 * b_counts / sp ** 2, b_counts


def _psnr(mse: float) -> float:
    return math.inf if mse <= 0 else -10.0 * math.log10(mse)


def estimated_metrics(sr: np.ndarray, prep) -> dict:
    """``{"estimated": {"psnr": …, "rmse": …, "psnr_low": …, "psnr_high": …}}`` of one output."""
    d, _ = estimate_clean_mse(sr, prep.truth, prep.span, prep.offset)
    elements = prep.elements
    per = d.reshape(d.shape[0], -1).mean(axis=1)
    mse = float(d.mean())
    se = float(d.std(ddof=1) / math.sqrt(d.size))
    psnr = {e: _psnr(float(m)) for e, m in zip(elements, per)}
    psnr["all"] = _psnr(mse)
    rmse = {e: math.sqrt(max(float(m), 0.0)) for e, m in zip(elements, per)}
    rmse["all"] = math.sqrt(max(mse, 0.0))
    return {"estimated": {"psnr": psnr, "rmse": rmse,
                          "psnr_low": {"all": _psnr(mse + Z95 * se)},
                          "psnr_high": {"all": _psnr(mse - Z95 * se)}}}


# --- a noise ceiling where thinning cannot run ----------------------------------------

ESTIMATOR_NOTE = ("skimage.restoration.estimate_sigma (wavelet MAD, Donoho & Johnstone 1994): "
                  "assumes additive white noise of one std per map; smoothed or exported maps "
                  "make it optimistic, Poisson noise makes it the noise at the median pixel")


def estimated_noise_ceiling(truth_norm: np.ndarray) -> dict:
    """Estimated noise std per normalised map and the PSNR ceiling ``−10 log10 mean σ²``."""
    from skimage.restoration import estimate_sigma

    sig = [float(estimate_sigma(np.asarray(m, np.float64))) for m in truth_norm]
    mse = float(np.mean(np.square(sig)))
    return {"sigma": sig, "psnr": _psnr(mse), "estimator": ESTIMATOR_NOTE}
