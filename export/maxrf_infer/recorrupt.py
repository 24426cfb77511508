"""Recorrupted inference outside torch: the noise a ``recorrupt > 0`` generator averages over.

A generator trained with ``proposed[recorrupt=α]`` (ours, Recorrupted-to-Recorrupted training;
the ``ctx-quickscan`` preset) is run on ``draws`` recorrupted LR inputs ``Y + α·σ·n_k`` and
its outputs are averaged (then projected onto ``Y`` when the method projects).  For a tiled,
streamed run to give the whole image's maps, every tile must draw the same ``n_k`` at the same
LR pixel, and so must the run that trained the generator.  ``n_k`` is therefore a
*counter-based* standard normal: a pure function of ``(seed, draw, element, LR row, LR
column)``, computed for any region without drawing the rest of the scan:

* the key ``h = mix(mix(mix(seed + c₀) + draw·γ) + element·γ)`` and, per LR pixel, the
  counter ``c = 2·(row·2³² + column) + j``, ``j ∈ {0, 1}``;
* ``u_j = (mix(h + (c + 1)·γ) >> 11)·2⁻⁵³``: the ``c``-th output of a SplitMix64 stream seeded
  with ``h`` (``mix`` is SplitMix64's finaliser, ``γ = 0x9E3779B97F4A7C15``; Steele, Lea &
  Flood, "Fast splittable pseudorandom number generators", OOPSLA 2014), computed directly
  from the counter, in numpy ``uint64`` arithmetic;
* ``n = sqrt(−2 ln(1 − u₀))·cos(2π u₁)`` (Box–Muller, float64), stored float32.

``σ`` (what the noise's std depends on; the model's metadata ``recorrupt.noise``):

* ``{"model": "counts", "dwell": k, "gain_cv": g}``: the LR counts' Poisson variance, known
  when the host synthesised the LR scan (``--protocol acquisition``): per LR pixel
  ``σ² = (c/k + (g·c)²)/span²`` with ``c = max(Y·span + offset, 0)`` the pixel's counts,
  ``k = t·s²`` (the LR dwell in HR dwells) and ``g`` the scanner's gain spread
  (:func:`count_variance`, also what the host's ``+W`` uses: ``maxrf_bench.noise``);
* ``{"model": "blind", "sigma": [...]}``: one wavelet-MAD std per element map
  (``skimage.restoration.estimate_sigma`` of the whole normalised LR map, computed when the
  model was exported from the run's inputs; every other protocol, and real scans).

``elements``: which elements are recorrupted (``recorrupt_share``; the others get ``n = 0``).
The metadata record (``recorrupt``, format ``maxrf-recorrupt/1``)::

    {"format": "maxrf-recorrupt/1", "alpha": 0.5, "draws": 8, "seed": 0,
     "noise": {...}, "elements": [true, ...], "projection": false,
     "generator": "splitmix64-boxmuller/1"}

``projection``: project the average onto the LR maps (block mean, Eq. 10) after averaging;
the graph itself then does not project (the projection of each draw would be onto its own
noisy input).
"""
from __future__ import annotations

import math
from typing import Callable

import numpy as np

RECORD_KEY = "recorrupt"
RECORD_FORMAT = "maxrf-recorrupt/1"
GENERATOR = "splitmix64-boxmuller/1"

_GAMMA = np.uint64(0x9E3779B97F4A7C15)
_M1, _M2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)
_SALT = np.uint64(0x5EC04A112F20001)
_MASK = (1 << 64) - 1


class RecorruptError(ValueError):
    """A malformed ``recorrupt`` record (the caller turns it into its own one-line error)."""


def _mix(z: np.ndarray) -> np.ndarray:
    """SplitMix64's finaliser on ``uint64`` (wrapping arithmetic)."""
    z = (z ^ (z >> np.uint64(30))) * _M1
    z = (z ^ (z >> np.uint64(27))) * _M2
    return z ^ (z >> np.uint64(31))


def _key(seed: int, draw: int, element: int) -> np.ndarray:
    with np.errstate(over="ignore"):
        h = _mix(np.array([int(seed) & _MASK], np.uint64) + _SALT)
        h = _mix(h + np.uint64(int(draw) & _MASK) * _GAMMA)
        return _mix(h + np.uint64(int(element) & _MASK) * _GAMMA)


def standard_normal(seed: int, draw: int, n_elements: int, ys: slice, xs: slice) -> np.ndarray:
    """``(n_elements, len(ys), len(xs))`` float32 standard normals at the LR pixels ``ys × xs``
    (absolute LR rows and columns, ``≥ 0``) of draw ``draw``: the same values for a pixel
    whatever region it is drawn in (the module docstring)."""
    rows = np.arange(ys.start, ys.stop, dtype=np.uint64)[:, None]
    cols = np.arange(xs.start, xs.stop, dtype=np.uint64)[None, :]
    counter = ((rows << np.uint64(32)) | cols) << np.uint64(1)
    out = np.empty((int(n_elements), rows.size, cols.size), np.float32)
    with np.errstate(over="ignore"):
        for e in range(int(n_elements)):
            h = _key(seed, draw, e)
            u0 = (_mix(h + (counter + np.uint64(1)) * _GAMMA) >> np.uint64(11)) * (2.0 ** -53)
            u1 = (_mix(h + (counter + np.uint64(2)) * _GAMMA) >> np.uint64(11)) * (2.0 ** -53)
            out[e] = np.sqrt(-2.0 * np.log1p(-u0)) * np.cos(2.0 * math.pi * u1)
    return out


def count_variance(maps_lr: np.ndarray, offset, span, dwell: float, gain_cv: float = 0.0) -> np.ndarray:
    """``(element, h, w)`` float64 variance of normalised LR maps ``maps_lr`` from their counts:
    ``(c/k + (g·c)²)/span²``, ``c = max(Y·span + offset, 0)`` (the module docstring)."""
    lr = np.asarray(maps_lr, np.float64)
    span = np.asarray(span, np.float64).reshape(-1, 1, 1)
    counts = np.maximum(lr * span + np.asarray(offset, np.float64).reshape(-1, 1, 1), 0.0)
    return (counts / float(dwell) + (float(gain_cv) * counts) ** 2) / span ** 2


def noise_variance(noise: dict, maps_lr: np.ndarray, offset, span) -> np.ndarray:
    """The LR noise variance (float64, ``(element, h, w)`` or ``(element, 1, 1)``) that the
    record ``noise`` describes, on the normalised LR maps ``maps_lr`` (any region)."""
    if noise["model"] == "counts":
        return count_variance(maps_lr, offset, span, noise["dwell"], noise.get("gain_cv", 0.0))
    return np.square(np.asarray(noise["sigma"], np.float64))[:, None, None]


def noise_std(record: dict, maps_lr: np.ndarray, offset, span) -> np.ndarray:
    """The float32 std the recorruption is drawn with (0 for the elements it leaves out)."""
    noise = record["noise"]
    if noise["model"] == "counts":
        var = noise_variance(noise, maps_lr, offset, span).astype(np.float32)
        sigma = np.sqrt(np.maximum(var, 0.0)).astype(np.float32)
    else:
        sigma = np.asarray(noise["sigma"], np.float32)[:, None, None]
    keep = np.asarray(record.get("elements") or [True] * sigma.shape[0], bool)
    return np.where(keep[:, None, None], sigma, np.float32(0.0)).astype(np.float32)


def recorrupted_input(maps_lr: np.ndarray, sigma: np.ndarray, alpha: float, seed: int, draw: int,
                      origin: tuple[int, int] = (0, 0)) -> np.ndarray:
    """``Y + α·σ·n_draw`` on a region of the LR maps whose first pixel is the LR pixel
    ``origin`` (row, column) of the scan; float32."""
    b, h, w = np.shape(maps_lr)
    n = standard_normal(seed, draw, b, slice(origin[0], origin[0] + h), slice(origin[1], origin[1] + w))
    z = n * np.asarray(sigma, np.float32)
    return np.asarray(maps_lr, np.float32) + float(alpha) * z


def recorrupted_average(forward: Callable[[np.ndarray], np.ndarray], maps_lr: np.ndarray,
                        record: dict, offset, span, origin: tuple[int, int] = (0, 0)) -> np.ndarray:
    """The mean over the record's draws of ``forward(Y + α·σ·n_k)`` (float32; accumulated in
    float64 as the run does), ``maps_lr`` a region starting at LR pixel ``origin``."""
    sigma = noise_std(record, maps_lr, offset, span)
    acc = None
    for k in range(int(record["draws"])):
        out = forward(recorrupted_input(maps_lr, sigma, record["alpha"], record["seed"], k, origin))
        acc = np.asarray(out, np.float64) if acc is None else acc + out
    return (acc / int(record["draws"])).astype(np.float32)


def read_record(record, n_elements: int) -> dict:
    """The checked ``recorrupt`` record (:class:`RecorruptError` naming what is wrong)."""
    if not isinstance(record, dict) or record.get("format") != RECORD_FORMAT:
        found = record.get("format") if isinstance(record, dict) else type(record).__name__
        raise RecorruptError(f"'recorrupt' must be an object of format {RECORD_FORMAT!r}, found {found!r:.60}")
    if record.get("generator") != GENERATOR:
        raise RecorruptError(f"'recorrupt' noise generator {record.get('generator')!r:.40} is not "
                             f"{GENERATOR!r}, the one this runtime draws")
    alpha, draws, seed = record.get("alpha"), record.get("draws"), record.get("seed")
    if not isinstance(alpha, (int, float)) or isinstance(alpha, bool) or not alpha > 0:
        raise RecorruptError(f"'recorrupt' alpha must be > 0, found {alpha!r:.40}")
    for name, v in (("draws", draws), ("seed", seed)):
        if not isinstance(v, int) or isinstance(v, bool) or v < (1 if name == "draws" else 0):
            raise RecorruptError(f"'recorrupt' {name} must be an integer ≥ {1 if name == 'draws' else 0}, "
                                 f"found {v!r:.40}")
    check_noise(record.get("noise"), n_elements, "'recorrupt' noise")
    keep = record.get("elements")
    if keep is not None and (not isinstance(keep, list) or len(keep) != n_elements
                             or not all(isinstance(v, bool) for v in keep)):
        raise RecorruptError(f"'recorrupt' elements must be one true/false per element ({n_elements}), "
                             f"found {keep!r:.60}")
    return dict(record)


def check_noise(noise, n_elements: int, what: str = "'lr_noise'") -> dict:
    """A checked LR noise model (``{"model": "counts", "dwell", "gain_cv"}`` or ``{"model":
    "blind", "sigma": [one per element]}``; :class:`RecorruptError` naming ``what`` if bad)."""
    if not isinstance(noise, dict) or noise.get("model") not in ("counts", "blind"):
        raise RecorruptError(f"{what} must be {{\"model\": \"counts\"|\"blind\", ...}}, found {noise!r:.60}")
    if noise["model"] == "counts":
        k, g = noise.get("dwell"), noise.get("gain_cv", 0.0)
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
                   for v in (k, g)) or not k > 0 or g < 0:
            raise RecorruptError(f"{what}: counts noise needs dwell > 0 and gain_cv ≥ 0, found {noise!r:.80}")
    else:
        sigma = noise.get("sigma")
        if (not isinstance(sigma, list) or len(sigma) != n_elements
                or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
                           and v >= 0 for v in sigma)):
            raise RecorruptError(f"{what}: blind noise needs sigma, one std ≥ 0 per element "
                                 f"({n_elements}), found {sigma!r:.80}")
    return dict(noise)
