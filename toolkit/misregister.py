"""Misregistration stress test: warp the photograph the methods see by a known field.

A photograph is never on the scan's grid.  It is taken with another camera, from another
position, and put on the map grid by hand (control points) or by feature matching
(``maxrf-bench import --register``).  What is left after that registration is the sum of

* a **global affine** error: the fitted transform is a little off (a fraction of a degree
  of rotation, a few per mille of scale, a sub-pixel to pixel shift), so the error grows
  linearly towards the edges;
* an **uncorrected lens distortion**: the camera's barrel/pincushion distortion is radial,
  ``∝ r²·(u − c)``, again largest at the edges and corners;
* **local, smooth errors**: parallax of a canvas that is not flat (cupping, a warped
  panel), control points clicked a pixel off, a stitched photograph: a displacement that
  varies smoothly across the painting, correlated over a fraction of its size.

:func:`displacement_field` builds one such field, seeded: each of the three parts is drawn
at random, scaled to unit RMS over the image, and combined with fixed shares of the
variance (:data:`SHARES`: 50 % local, 35 % affine, 15 % radial); the sum is scaled so its
RMS length over the image is exactly the requested amplitude (in pixels of the grid the
methods super-resolve to).  The local part is white noise smoothed by a Gaussian of σ =
:data:`CORRELATION` × the image's shorter side (each displacement component separately).
For one seed, every amplitude uses the same field direction pattern, scaled: a sweep
``0, 1, 2, 4`` moves the photograph further along the same errors.

:func:`warp_photo` resamples the photograph at the displaced positions with cubic splines
(``scipy.ndimage.map_coordinates``, mirrored at the border) and clips to [0, 1].  Under
Wald's reduced protocol the field is drawn on the reduced grid, in its pixels (the grid the
methods output there), so an amplitude means the same stress under both protocols.

The truth and the LR maps are not touched: only what the methods see of the photograph.
"""
from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
from scipy import ndimage

from .errors import ConfigError

#: shares of the displacement variance: local smooth field, global affine, radial (lens)
SHARES = {"local": 0.50, "affine": 0.35, "radial": 0.15}
#: correlation length of the local field, as a fraction of the image's shorter side (σ of
#: the Gaussian that smooths white noise)
CORRELATION = 1 / 8
#: largest amplitude accepted, as a fraction of the image's shorter side: a larger RMS
#: displacement moves most of the photograph off the painting
MAX_FRACTION = 1 / 8
#: default sweep (HR pixels RMS); see docs/trust.md for how it is grounded in the
#: importer's measured residual on the real miniature
DEFAULT_AMPLITUDES = (0.0, 1.0, 2.0, 4.0)


def parse_amplitudes(text: str) -> list[float]:
    """``"0,1,2,4"`` → ``[0.0, 1.0, 2.0, 4.0]``; non-numeric, negative, non-finite or
    repeated values raise :class:`ConfigError` (one line)."""
    items = [t.strip() for t in str(text).split(",")]
    if not any(items):
        raise ConfigError(f"--misregister expects comma-separated RMS amplitudes in HR pixels "
                          f"(e.g. 0,1,2,4), found {text!r}")
    out: list[float] = []
    for t in items:
        try:
            a = float(t)
        except ValueError:
            raise ConfigError(f"--misregister expects non-negative numbers of HR pixels (e.g. "
                              f"0,1,2,4), found {t!r} in {text!r}") from None
        if not math.isfinite(a) or a < 0:
            raise ConfigError(f"--misregister expects non-negative finite amplitudes in HR pixels "
                              f"(e.g. 0,1,2,4), found {t!r}")
        if f"{a:g}" in {f"{b:g}" for b in out}:  # cells are keyed by the amplitude's %g
            raise ConfigError(f"--misregister lists amplitude {a:g} twice (amplitudes are told "
                              f"apart to 6 significant digits): {text!r}")
        out.append(a)
    return out


def check_amplitude(amplitude: float, shape: tuple[int, int], name: str = "",
                    protocol: str = "full") -> None:
    """A field whose RMS exceeds :data:`MAX_FRACTION` of the image's shorter side is refused."""
    limit = MAX_FRACTION * min(shape)
    if amplitude > limit:
        where = f" of scan {name!r}" if name else ""
        grid = "" if protocol == "full" else f" under --protocol {protocol}, on its reduced grid"
        raise ConfigError(f"--misregister {amplitude:g} px is larger than the photograph{where} "
                          f"allows ({shape[0]}×{shape[1]} px{grid}): expected at most {limit:g} px RMS "
                          f"(1/{round(1 / MAX_FRACTION)} of its shorter side)")


def _unit_rms(d: np.ndarray) -> np.ndarray:
    rms = float(np.sqrt(np.mean(np.sum(d ** 2, axis=0))))
    return d / rms if rms > 0 else d


def displacement_field(shape: tuple[int, int], amplitude: float, seed: int = 0) -> np.ndarray:
    """``(2, H, W)`` displacement ``(dy, dx)`` in pixels with RMS length ``amplitude``
    (see the module docstring).  Deterministic for ``(shape, seed)``; linear in
    ``amplitude``."""
    h, w = int(shape[0]), int(shape[1])
    if amplitude == 0:
        return np.zeros((2, h, w), np.float64)
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), h, w, 0x3A15]))
    side = min(h, w)
    # local: smoothed white noise
    sigma = max(1.0, CORRELATION * side)
    local = np.stack([ndimage.gaussian_filter(rng.standard_normal((h, w)), sigma, mode="wrap")
                      for _ in range(2)])
    local = _unit_rms(local - local.mean(axis=(1, 2), keepdims=True))
    # affine about the centre: rotation, anisotropic scale, shear, shift
    yy, xx = np.meshgrid(np.arange(h) + 0.5 - h / 2, np.arange(w) + 0.5 - w / 2, indexing="ij")
    u = np.stack([yy, xx]) / (side / 2)            # −1…1 over the shorter side
    theta = rng.normal(0, 1.0)
    sy, sx, shear = rng.normal(0, 0.7, 3)
    m = np.array([[sy, shear - theta], [shear + theta, sx]])
    affine = np.einsum("ab,bij->aij", m, u) + rng.normal(0, 0.7, 2)[:, None, None]
    affine = _unit_rms(affine)
    # radial lens distortion: k r² (u − c), sign at random (barrel or pincushion)
    r2 = (u ** 2).sum(0)
    radial = _unit_rms(np.sign(rng.standard_normal()) * r2[None] * u)
    d = (math.sqrt(SHARES["local"]) * local + math.sqrt(SHARES["affine"]) * affine
         + math.sqrt(SHARES["radial"]) * radial)
    return float(amplitude) * _unit_rms(d)


def warp_photo(rgb: np.ndarray, field: np.ndarray, *, order: int = 3, mode: str = "mirror") -> np.ndarray:
    """The photograph ``(band, H, W)`` seen through ``field`` ``(2, H, W)`` (``(dy, dx)``, HR
    pixels): output pixel ``u`` shows the photograph at ``u + d(u)``, clipped to [0, 1].
    ``order``/``mode``: the spline and border of :func:`scipy.ndimage.map_coordinates`
    (default cubic, mirrored: the misregistration model; ``order=1, mode="nearest"``:
    bilinear with border values)."""
    rgb = np.asarray(rgb, np.float32)
    h, w = rgb.shape[-2:]
    yy, xx = np.meshgrid(np.arange(h, dtype=np.float64), np.arange(w, dtype=np.float64), indexing="ij")
    coords = [yy + field[0], xx + field[1]]
    out = np.stack([ndimage.map_coordinates(band, coords, order=order, mode=mode) for band in rgb])
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def describe(seed: int) -> dict:
    """What the manifest records about the displacement model."""
    return {"seed": int(seed), "units": "pixels of the grid the methods output (RMS length)",
            "model": "smooth random field + global affine + radial (lens) distortion",
            "shares": dict(SHARES), "correlation_length": f"{CORRELATION:g} x shorter side",
            "max_fraction": MAX_FRACTION, "interpolation": "cubic spline, mirrored border"}


def misregistered(prep, amplitude: float, seed: int = 0):
    """A copy of a prepared dataset (:class:`maxrf_bench.runner.Prepared`) whose photograph
    is warped by :func:`displacement_field` of RMS ``amplitude``; truth and LR maps as they
    are.  Amplitude 0 returns the photograph unchanged (its ``misregister`` is 0)."""
    rgb = prep.rgb
    shape = tuple(rgb.shape[-2:])
    check_amplitude(amplitude, shape, prep.name, prep.protocol)
    if amplitude > 0:
        field = displacement_field(shape, amplitude, seed)
        rgb = rgb.copy(data=warp_photo(rgb.values, field))
    return replace(prep, rgb=rgb, misregister=float(amplitude))


def amplitude_text(amplitude: float | None) -> str:
    """The ``misregister`` column of ``results.csv``: empty when not used, else ``%g``."""
    return "" if amplitude is None else f"{float(amplitude):g}"
