"""A noise-aware projection (our addition, variant ``+W``): consistency with a noisy LR scan.

The exact projection ``+P`` makes ``U(Ŷ)`` equal the LR scan *including its counting
noise*: every LR pixel's noise is spread over its footprint.  When the LR scan is short
(few counts), that noise can exceed the method's own error and the projection hurts.

``+W`` projects onto a Wiener-shrunk target instead.  With ``r = U(Ŷ) − Y↓`` the LR
residual, ``σ²`` the variance of the LR scan's noise per LR pixel and ``τ²`` the variance
of the method's own error seen through ``U`` (per element, estimated as
``max(mean r² − mean σ², 0)``), each LR pixel keeps the fraction ``g = τ² / (τ² + σ²)`` of
its correction::

    Y↓' = U(Ŷ) − g ⊙ r,        Ŷ_W = Proj(Ŷ; Y↓')      (exact projection of the operator)

``σ² → 0`` gives the hard projection (``g = 1``); an LR scan much noisier than the method's
error leaves ``Ŷ`` almost unchanged.  For the block mean this is the MAP estimate under a
white Gaussian prior of variance ``s²τ²`` around ``Ŷ`` and Gaussian LR noise ``σ²``.

Where ``σ²`` comes from (:func:`lr_noise_variance`):

* the acquisition protocol: the LR scan's Poisson counts are known, ``Var = λ_LR/k²`` with
  ``k = t·s²``, plugged in as ``max(λ̂, 0)/k`` in HR-dwell units (plus the gain excess
  ``k_G² · λ̂²`` where the scan records ``scanner_gain_cv``), ÷ span², where ``λ̂`` is the
  method's own estimate of the expected LR counts, ``U(Ŷ)`` (version 2 of ``+W``).  Version 1
  plugged in the measured counts ``N_LR``; that estimate is correlated with the noise it
  describes: an LR pixel that happens to count 0 gets ``σ² = 0``, hence ``g = 1``, and is pulled
  all the way to zero counts.  On short scans (t ≤ 1/16, where 5–40 % of the LR pixels of the
  low-count maps count 0) that made ``+W`` worse than the raw output (tuning scene
  sim-flowers seed 101 at 256², ``guided``, t = 1/64: raw 23.53, ``+W`` v1 22.64, v2 23.54 dB;
  docs/noise.md);
* otherwise a blind estimate per element map, ``skimage.restoration.estimate_sigma`` of the
  normalised LR map (white-noise assumption; see :mod:`maxrf_bench.thinning`).
"""
from __future__ import annotations

import numpy as np
from maxrf_infer.fuse import FUSE_WINDOW  # +F's window (HR px std), shared with maxrf-infer
from maxrf_infer.validate import scanner_noise  # the scan's recorded noise beyond Poisson, shared too


def count_time(prep) -> float | None:
    """The relative dwell ``t`` per HR pixel in which ``prep``'s counts were collected, where it
    is known (an LR pixel then counts ``t·s²`` HR dwells): the acquisition protocol's scan time
    (``acquisition-1_4`` → 0.25), or for a scan whose ``maps_lr`` were binned from a measured
    short-dwell ``maps_dwell`` its attribute ``maps_dwell_time`` (default 1: raw counts of that
    scan; half of it under ``--protocol thinning``, which keeps one binomial half); else
    ``None`` (the noise is then estimated blind)."""
    base, _, tag = prep.protocol.partition("-")
    if base == "acquisition" and tag:
        num, _, den = tag.partition("_")
        return int(num) / int(den or 1)
    if prep.maps_dwell is not None:  # thinning keeps one binomial half of it: half the dwell
        return float(prep.scan.attrs.get("maps_dwell_time", 1.0)) * (0.5 if base == "thinning" else 1.0)
    return None


def gain_cv(prep) -> float:
    """The scan's recorded multiplicative noise excess ``scanner_gain_cv`` (0 where none)."""
    return scanner_noise(prep.scan.attrs)[0]


def noise_model(prep, blind: bool = False) -> dict:
    """The LR noise model of ``prep`` as a record that applies to any region of its LR maps
    (:func:`maxrf_infer.recorrupt.noise_variance`; an exported model's runtime uses it):
    ``{"model": "counts", "dwell": k, "gain_cv": g}`` where the counting time is known
    (:func:`count_time`: the acquisition protocol, or LR maps binned from a measured
    short-dwell scan; the module docstring), else (or with ``blind``) ``{"model": "blind", "sigma": [...]}``, one
    ``estimate_sigma`` per normalised LR element map."""
    t = count_time(prep)
    if t is not None and not blind:
        k = t * prep.operator.scale ** 2
        return {"model": "counts", "dwell": float(k), "gain_cv": gain_cv(prep)}
    from skimage.restoration import estimate_sigma

    lr = np.asarray(prep.maps_lr.values, np.float64)
    return {"model": "blind", "sigma": [float(estimate_sigma(m)) for m in lr]}


def lr_noise_variance(prep, at: np.ndarray | None = None) -> np.ndarray:
    """``(element, h, w)`` (or ``(element, 1, 1)``) noise variance of ``prep``'s LR maps,
    in their normalised units: :func:`noise_model` evaluated at the normalised LR maps ``at``
    (an estimate of their expected values, as ``+W`` passes ``U(Ŷ)``), by default at the
    measured LR maps themselves (what a method is given, ``MethodInputs.noise_var``)."""
    from maxrf_infer.recorrupt import noise_variance

    lr = prep.maps_lr.values if at is None else at
    return noise_variance(noise_model(prep), lr, prep.offset, prep.span)


def weighted_projection(sr: np.ndarray, operator, maps_lr: np.ndarray, noise_var) -> np.ndarray:
    """``Ŷ_W`` of the module docstring (float64 in, float64 out); ``τ²`` and ``g`` are those
    of the exported model's runtime (:mod:`maxrf_infer.weighted`, which applies them tile by
    tile with the block mean), so the two give the same maps.  ``noise_var``: the LR noise
    variance, an array (broadcast to the LR maps) or a callable that gives it at the
    normalised LR maps it is passed (``U(Ŷ)`` here; :func:`lr_noise_variance`)."""
    from maxrf_infer.weighted import shrink_sums, tau2, wiener_gain

    sr = np.asarray(sr, np.float64)
    lr = np.asarray(maps_lr, np.float64)
    down = np.asarray(operator.down(sr), np.float64)
    r = down - lr
    var = noise_var(down) if callable(noise_var) else noise_var
    var = np.broadcast_to(np.asarray(var, np.float64), r.shape)
    g = wiener_gain(tau2(shrink_sums(r, var)), var)
    return np.asarray(operator.project(sr, down - g * r), np.float64)


# --- +F: fusion with a short-dwell HR-step scan (ours) -----------------------------------

def fuse_prepared(prep, sr: np.ndarray) -> np.ndarray:
    """``+F`` of a prepared dataset: the method's normalised output fused with
    ``prep.maps_dwell`` in counts (:func:`maxrf_infer.fuse.fuse_counts`, version 2: the Anscombe
    domain of the scan's own counts, ``t`` = :func:`count_time`, ``g`` = the scan's recorded
    ``scanner_gain_cv``), back in normalised units (float64)."""
    from maxrf_infer.fuse import fuse_counts

    off, span = prep.offset[:, None, None].astype(np.float64), prep.span[:, None, None].astype(np.float64)
    fused = fuse_counts(np.asarray(sr, np.float64) * span + off,
                        np.asarray(prep.maps_dwell, np.float64) * span + off, count_time(prep), gain_cv(prep))
    return (fused - off) / span


def dwell_noise_variance(prep, at: np.ndarray) -> np.ndarray:
    """``(element, y, x)`` counting variance of ``prep.maps_dwell`` (``--acquire dwell`` or measured) in
    normalised units, evaluated at the normalised HR maps ``at``: ``c/t + (g·c)²`` ÷ span², ``c``
    the counts per HR dwell, ``t`` the scan's relative dwell, ``g`` its recorded gain excess
    (``+F`` version 1's ``σ²``; ``tests/benchmarks/bench_fuse_settings.py`` sweeps with it)."""
    from maxrf_infer.recorrupt import count_variance

    return count_variance(at, prep.offset, prep.span, count_time(prep), gain_cv(prep))


def fuse_dwell(sr: np.ndarray, maps_dwell: np.ndarray, noise_var, window: float = FUSE_WINDOW,
               margin: float = 0.0) -> np.ndarray:
    """The fusion of ``+F`` (ours) in any units (``+F`` itself applies it in the Anscombe domain
    of the counts, :func:`fuse_prepared`): a method's output ``S`` fused with the HR-step scan
    ``Y`` it was made from the block means of, per pixel by the scan's noise::

        F = S + w ⊙ (Y − S),    w = d² / (d² + σ²),    d² = max(G_window * ((Y − S)² − σ²), 0)

    ``σ²``: the scan's counting variance (an array, or a callable giving it at ``S``,
    :func:`dwell_noise_variance`); ``d²``: the variance of the detail ``S`` misses, estimated
    in a Gaussian window of std ``window`` px.  Where the scan is noisier than what ``S`` misses
    the output keeps ``S``; where ``S`` misses more than the noise, it keeps the scan's pixels
    (``σ² = 0``: the scan).  ``margin`` κ estimates ``d²`` from ``(Y − S)² − (1 + κ)σ²``
    (``+F`` uses 0; ``tests/benchmarks/bench_fuse_settings.py`` sweeps it).  Float64 in,
    float64 out."""
    from maxrf_infer.fuse import fuse  # the one implementation, shared with maxrf-infer --fuse

    return fuse(sr, maps_dwell, noise_var, window, margin)

