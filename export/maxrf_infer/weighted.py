"""Block-mean projections after the model: Eq. 10 (:func:`blockmean_project`, after a recorrupted
average) and ``--noise-aware``, the host's ``+W`` noise-aware projection (ours), tile by tile.

``+W`` (``maxrf_bench.noise``, docs/noise.md) projects the model's maps ``Ŷ`` onto a
Wiener-shrunk LR target instead of the noisy LR scan.  With the block mean ``U``, per element
``e`` and LR pixel ``p``::

    r = U(Ŷ) − Y↓,   τ²_e = max(mean_p r² − mean_p σ², 0),   g = τ²/(τ² + σ²)  (1 where both are 0)
    Ŷ_W = Ŷ − nearest_up(g ⊙ r)            (= Proj(Ŷ; U(Ŷ) − g ⊙ r), the exact projection)

``σ²`` is the LR noise variance the run's ``+W`` used, from the model's metadata ``lr_noise``
(:func:`maxrf_infer.recorrupt.noise_variance`: the counts' Poisson variance under
``--protocol acquisition``, evaluated at the model's own LR estimate ``U(Ŷ)`` rather than at
the measured counts, whose zero-count pixels would get ``σ² = 0``; else one blind std per
element of the run's LR maps).  ``τ²`` is a
mean over the whole scan, so the runtime makes two passes: the tiles write ``Ŷ`` as usual,
then :func:`residual_sums` of every tile gives ``τ²`` and :func:`apply` corrects each tile's
own output chunk in place (every step block-local given ``τ²``; the extra passes read only
the output and the LR maps).
"""
from __future__ import annotations

import numpy as np

from .recorrupt import noise_variance


def _down(maps: np.ndarray, scale: int) -> np.ndarray:
    """``U(Ŷ)`` in float64 (block mean)."""
    y = np.asarray(maps, np.float64)
    b, hh, ww = y.shape
    s = int(scale)
    return y.reshape(b, hh // s, s, ww // s, s).mean(axis=(2, 4))


def _residual(maps: np.ndarray, maps_lr: np.ndarray, scale: int) -> np.ndarray:
    """``U(Ŷ) − Y↓`` in float64 (block mean)."""
    return _down(maps, scale) - np.asarray(maps_lr, np.float64)


def _up(r: np.ndarray, scale: int) -> np.ndarray:
    """Nearest upsampling of an LR array by ``scale``."""
    return np.repeat(np.repeat(r, int(scale), axis=1), int(scale), axis=2)


def blockmean_project(maps: np.ndarray, maps_lr: np.ndarray, scale: int) -> np.ndarray:
    """Eq. 10 with the block mean, ``Ŷ − nearest_up(blockmean(Ŷ) − Y)`` (float64 inside,
    float32 out): the projection after a recorrupted average (:mod:`maxrf_infer.recorrupt`)."""
    return (np.asarray(maps, np.float64) - _up(_residual(maps, maps_lr, scale), scale)).astype(np.float32)


def shrink_sums(r: np.ndarray, var: np.ndarray) -> np.ndarray:
    """``(3, B)``: the sums of ``r²`` and of ``σ²`` over the LR pixels of a residual ``r``
    ``(B, h, w)`` and its noise variance (broadcast to it), and their count; summed over
    regions they give the whole scan's :func:`tau2`."""
    r = np.asarray(r, np.float64)
    var = np.broadcast_to(np.asarray(var, np.float64), r.shape)
    n = np.full(r.shape[0], r.shape[1] * r.shape[2], np.float64)
    return np.stack([(r ** 2).sum(axis=(1, 2)), var.sum(axis=(1, 2)), n])


def residual_sums(maps: np.ndarray, maps_lr: np.ndarray, noise: dict, offset, span,
                  scale: int) -> np.ndarray:
    """:func:`shrink_sums` of a region (``maps`` its normalised output, ``maps_lr`` its
    normalised LR maps, block mean)."""
    down = _down(maps, scale)
    return shrink_sums(down - np.asarray(maps_lr, np.float64), noise_variance(noise, down, offset, span))


def tau2(sums: np.ndarray) -> np.ndarray:
    """``(B,)`` ``τ²`` from the scan's summed :func:`shrink_sums`."""
    sums = np.asarray(sums, np.float64)
    return np.maximum(sums[0] / sums[2] - sums[1] / sums[2], 0.0)


def wiener_gain(tau2_e: np.ndarray, var: np.ndarray) -> np.ndarray:
    """``g = τ²/(τ² + σ²)`` per LR pixel (1 where both are 0): the share of the residual
    ``+W`` removes (``var`` broadcast against ``(B, 1, 1)``)."""
    t = np.asarray(tau2_e, np.float64)[:, None, None]
    var = np.asarray(var, np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(t + var > 0, t / (t + var), 1.0)


def apply(maps: np.ndarray, maps_lr: np.ndarray, tau2_e: np.ndarray, noise: dict, offset, span,
          scale: int) -> np.ndarray:
    """``Ŷ_W`` on a region (float64 in, float64 out; the module docstring)."""
    down = _down(maps, scale)
    r = down - np.asarray(maps_lr, np.float64)
    g = wiener_gain(tau2_e, noise_variance(noise, down, offset, span))
    return np.asarray(maps, np.float64) - _up(g * r, scale)


def weighted_projection(maps: np.ndarray, maps_lr: np.ndarray, noise: dict, offset, span,
                        scale: int) -> np.ndarray:
    """``+W`` on a whole image in memory (normalised units, float32 out)."""
    t = tau2(residual_sums(maps, maps_lr, noise, offset, span, scale))
    return apply(maps, maps_lr, t, noise, offset, span, scale).astype(np.float32)
