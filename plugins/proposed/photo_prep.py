"""The photograph before the generator sees it (our extensions; not the paper's method; both
off by default): a registration of the photograph to the LR maps estimated before training
(``register = "lr"``) and a scale-space input (``photo_scales``).

**Registration on the LR grid** (:func:`estimate_field`).  The LR maps are on the truth's
grid; a misregistered photograph is not.  For a candidate displacement ``t`` (HR pixels)
the photograph sampled at ``u + t`` is brought to the LR grid by the scan's operator and
high-passed (σ = 1 LR pixel, as the gate's fit, ``gate.py``); each element's LR high-pass
is predicted from its three bands by the least-squares coefficients ``β_e`` of the global
fit, and the cost at an LR pixel is the residual, summed over elements with weights
``r²_e / E_e`` (the share of the element's LR detail the photograph explains, over that
detail's mean energy: elements that do not follow the photograph do not vote)::

    C_t(p) = Σ_e (r²_e / E_e) · (H(Y_e)(p) − β_e · H(U·Z(· + t))(p))²

Coarse to fine: (1) one global shift, the ``t`` on a grid of step ``REGISTER_STEP`` within
``± register_radius`` minimising ``Σ_p C_t(p)`` (with ``β`` refitted at each ``t``); (2) the
coefficients fixed at that shift, ``C_t`` is averaged over a Gaussian window of
σ = ``REGISTER_WINDOW`` LR pixels around each LR pixel and the minimising ``t`` is taken per
pixel (within ``± register_radius`` of the global shift; sub-step by a parabola through the
minimum and its neighbours along each axis); (3) the field is smoothed by the same window
and brought to the HR grid bilinearly.  The photograph is then resampled at ``u + e(u)``
(bilinear, as :class:`train.PhotoAlign`) for training and inference.  Nothing here is
trained; the field is a statistic of the scan, recorded in ``generator.json``.

**Significance** (:func:`held_out_gain`).  On an aligned photograph the estimate is not 0
(0.26–0.27 px RMS on the tuning scenes): it fits the noise of the windows it saw, and
resampling the photograph by it cost ``ctx`` up to 0.05 dB.  So the field is applied only when
it also improves the fit of LR pixels it was not estimated from: the pixels are split into a
checkerboard of 4-pixel blocks, the field of each half is estimated from that half alone and
scored on the other, and the share of the identity's residual it removes there (the held-out
gain) must reach ``REGISTER_MIN_GAIN`` (1 %).  Measured at 256² (displacement seed 0): 0.4 %
and −0.1 % at 0 px, 1.7–2.3 % at 0.5 px, 6–8 % at 1 px, 16–19 % at 2 px (docs/trust.md).
Below it the photograph is used as given, bit for bit.

**Further passes** (:func:`estimate_registration`, ``register_passes``, default 3).  The local
search reaches ``register_radius`` around the global shift; a larger misregistration leaves
the estimate at that edge.  Where an applied estimate is at its edge (the 95th percentile of
its local deviation from the global shift ≥ ``REGISTER_SATURATION`` · radius), the estimate is
made again on the photograph it registered, gated alike, and the fields add.  On the tuning
scenes no further pass was applied at 0–2 px; at 256² they leave 0.76 / 0.97 / 2.07 px of a
3 / 4 / 6 px warp against 0.96 / 1.32 / 3.83 with one pass
(``tests/benchmarks/bench_register_gate.py``, docs/trust.md (g)).

**Scale-space input** (:func:`scale_space`).  The photograph's bands followed by copies
blurred by Gaussians of σ = ``photo_scales`` HR pixels, so that where the photograph's fine
detail is misplaced the generator can take its coarser detail instead.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage

import maxrf_bench as mb

#: σ (LR pixels) of the high-pass in which the maps and the photograph are compared
REGISTER_SIGMA = 1.0
#: step (HR pixels) of the grid of candidate displacements
REGISTER_STEP = 0.5
#: σ (LR pixels) of the window over which a local displacement's cost is aggregated
REGISTER_WINDOW = 4.0
#: edge (LR pixels) of the checkerboard blocks of the held-out test (the σ = 1 high-pass
#: correlates neighbouring LR pixels: blocks of 4 keep the two halves' noise apart)
REGISTER_HOLDOUT_BLOCK = 4
#: the held-out fit gain below which the field is not significant and the photograph is
#: used as given (measured on the tuning scenes: docs/trust.md)
REGISTER_MIN_GAIN = 0.01
#: a pass's estimate is at its search radius when the 95th percentile over LR pixels of its
#: largest local deviation from the global shift reaches this share of ``register_radius``;
#: then :func:`estimate_registration` estimates once more on the photograph it registered
REGISTER_SATURATION = 0.75


def parse_scales(value) -> tuple[float, ...]:
    """``photo_scales`` as a tuple of σ (HR pixels): ``""``/``0``/``None`` → ``()``; a number;
    or a string of numbers separated by ``+``, ``,``, ``;`` or spaces; or a list."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return ()
    if isinstance(value, bool):
        raise mb.ConfigError(f"proposed.photo_scales must be blur σ values in HR pixels "
                             f"(e.g. 1+2), found {value!r}")
    if isinstance(value, (int, float)):
        items = [value] if value != 0 else []
    elif isinstance(value, str):
        items = value.replace(",", " ").replace(";", " ").replace("+", " ").split()
    elif isinstance(value, (list, tuple)):
        items = list(value)
    else:
        items = [value]
    out = []
    for item in items:
        try:
            s = float(item)
        except (TypeError, ValueError):
            s = float("nan")
        if not (np.isfinite(s) and 0 < s <= 16):
            raise mb.ConfigError(f"proposed.photo_scales must be blur σ values in HR pixels, each in "
                                 f"(0, 16] (e.g. 1+2), found {value!r}")
        out.append(s)
    return tuple(out)


def scale_space(rgb: np.ndarray, scales) -> np.ndarray:
    """``(b·(1+n), H, W)``: the photograph's ``b`` bands, then each band blurred by a Gaussian
    of σ = each of ``scales`` (HR pixels, mirrored border)."""
    rgb = np.asarray(rgb, np.float32)
    bands = [rgb] + [ndimage.gaussian_filter(rgb, (0, s, s), mode="reflect") for s in scales]
    return np.concatenate(bands, 0).astype(np.float32)


def _shifted(rgb: np.ndarray, t: tuple[float, float]) -> np.ndarray:
    return np.stack([ndimage.shift(b, (-t[0], -t[1]), order=1, mode="nearest") for b in rgb])


def _photo_lr(rgb, t, operator):
    return mb.high_pass(np.asarray(operator.down(_shifted(rgb, t)), np.float64), REGISTER_SIGMA)


def _refine(c_m, c_0, c_p):
    """Sub-step offset (in steps, within ±0.5) of a parabola's minimum through three costs."""
    den = c_m - 2 * c_0 + c_p
    with np.errstate(invalid="ignore", divide="ignore"):
        off = np.where(den > 0, 0.5 * (c_m - c_p) / den, 0.0)
    return np.clip(np.nan_to_num(off), -0.5, 0.5)


#: the largest ``register_radius`` as a share of the photograph's shorter side (the bound
#: ``run --misregister`` puts on a displacement field's RMS)
MAX_RADIUS_FRACTION = 1 / 8


def check_radius(radius: float, shape: tuple[int, int]) -> None:
    """A search radius larger than the photograph allows is refused (one line, exit 2)."""
    limit = MAX_RADIUS_FRACTION * min(shape)
    if float(radius) > limit:
        raise mb.ConfigError(f"proposed.register_radius {float(radius):g} px is larger than the photograph "
                             f"allows ({shape[0]}×{shape[1]} px): expected at most {limit:g} px "
                             f"(1/{round(1 / MAX_RADIUS_FRACTION)} of its shorter side; set register_radius "
                             f"lower, or register=none)")


def estimate_field(maps_lr: np.ndarray, rgb: np.ndarray, operator, radius: float = 4.0) -> dict:
    """The displacement ``e`` ``(2, H, W)`` (HR pixels) at which to sample the photograph so
    that it lines up with the LR maps (module docstring), with the global shift, the field
    on the LR grid and its held-out fit gain: ``{"field", "global", "field_lr", "gain",
    "significant"}`` (``significant``: ``gain ≥ REGISTER_MIN_GAIN``, :func:`held_out_gain`)."""
    check_radius(radius, tuple(np.shape(rgb)[-2:]))
    lr = mb.high_pass(np.asarray(maps_lr, np.float64), REGISTER_SIGMA)
    rgb = np.asarray(rgb, np.float32)
    s = operator.scale
    h, w = lr.shape[-2:]
    inner = mb.interior(lr.shape, REGISTER_SIGMA)
    y = lr[(slice(None), *inner)].reshape(lr.shape[0], -1).T            # (N, B)
    energy = np.maximum((y ** 2).mean(0), 1e-30)
    r2 = np.nan_to_num(mb.explained_share(y, _photo_lr(rgb, (0.0, 0.0), operator)[(slice(None), *inner)]
                                          .reshape(rgb.shape[0], -1).T))
    weight = r2 / energy
    n = int(np.floor(radius / REGISTER_STEP))
    offsets = np.arange(-n, n + 1) * REGISTER_STEP

    def global_cost(t):
        p = _photo_lr(rgb, t, operator)[(slice(None), *inner)].reshape(rgb.shape[0], -1).T
        coef, *_ = np.linalg.lstsq(p, y, rcond=None)
        return float((((y - p @ coef) ** 2) * weight).sum()), coef

    costs = np.array([[global_cost((dy, dx))[0] for dx in offsets] for dy in offsets])
    iy, ix = np.unravel_index(np.argmin(costs), costs.shape)
    g = [offsets[iy], offsets[ix]]
    if 0 < iy < 2 * n:
        g[0] += REGISTER_STEP * float(_refine(costs[iy - 1, ix], costs[iy, ix], costs[iy + 1, ix]))
    if 0 < ix < 2 * n:
        g[1] += REGISTER_STEP * float(_refine(costs[iy, ix - 1], costs[iy, ix], costs[iy, ix + 1]))
    _, coef = global_cost(tuple(g))                                      # (3, B)

    def residual(photo_lr):                                              # per LR pixel, weighted
        pred = np.einsum("kb,khw->bhw", coef, photo_lr)
        return (((lr - pred) ** 2) * weight[:, None, None]).sum(0)

    # local: per-LR-pixel cost maps around the global shift (kept for the held-out test)
    res = np.empty((2 * n + 1, 2 * n + 1, h, w), np.float32)
    local = np.empty((2 * n + 1, 2 * n + 1, h, w))
    for a, dy in enumerate(offsets):
        for b, dx in enumerate(offsets):
            r = residual(_photo_lr(rgb, (g[0] + dy, g[1] + dx), operator))
            res[a, b] = r
            local[a, b] = ndimage.gaussian_filter(r, REGISTER_WINDOW, mode="reflect")
    field_lr = _local_field(local, offsets, g)
    del local
    # each candidate field samples the photograph as the run and the runtime apply the chosen one
    from maxrf_infer.photo import registered_photo

    gain = held_out_gain(res, offsets, g, inner, lambda f: residual(_photo_lr(registered_photo(rgb, f, s),
                                                                              (0.0, 0.0), operator)))
    return {"field": lr_to_hr(field_lr, s), "global": [float(g[0]), float(g[1])], "field_lr": field_lr,
            "gain": gain, "significant": bool(gain >= REGISTER_MIN_GAIN)}


def saturation(est: dict) -> float:
    """The 95th percentile over LR pixels of the estimate's largest local deviation from its
    global shift (HR pixels): near ``register_radius`` the search bounded the field."""
    dev = np.abs(np.asarray(est["field_lr"]) - np.asarray(est["global"], np.float64)[:, None, None]).max(0)
    return float(np.percentile(dev, 95))


def estimate_registration(maps_lr: np.ndarray, rgb: np.ndarray, operator, radius: float = 4.0,
                          max_passes: int = 3) -> dict:
    """:func:`estimate_field`, and where its applied estimate is at the search radius
    (:func:`saturation` ≥ ``REGISTER_SATURATION`` · radius: a misregistration larger than the
    search reaches), again on the photograph it registered, up to ``max_passes`` passes
    (``register_passes``).  Each further pass must pass the same held-out gate on its own; the fields add
    on the LR grid (the photograph is resampled once, by the sum).  Returns the first pass's
    dictionary with ``field_lr``/``field`` the total and ``passes`` (per pass: ``gain``,
    ``applied``, ``saturation``).  Below saturation this is :func:`estimate_field` exactly.

    Measured on tuning scenes (``tests/benchmarks/bench_register_gate.py``, docs/trust.md
    (g)): no further pass was applied at 1–2 px; at 3–6 px they remove 0.2–1.8 px more at 256²."""
    from maxrf_infer.photo import registered_photo

    est = first = estimate_field(maps_lr, rgb, operator, radius)
    passes = [{"gain": float(est["gain"]), "applied": bool(est["significant"]), "saturation": saturation(est)}]
    total = np.asarray(first["field_lr"], np.float64)
    while (est["significant"] and len(passes) < int(max_passes)
           and passes[-1]["saturation"] >= REGISTER_SATURATION * float(radius)):
        est = estimate_field(maps_lr, registered_photo(rgb, total, operator.scale), operator, radius)
        passes.append({"gain": float(est["gain"]), "applied": bool(est["significant"]),
                       "saturation": saturation(est)})
        if est["significant"]:
            total = total + est["field_lr"]
    return {**first, "field_lr": total, "field": lr_to_hr(total, operator.scale), "passes": passes}


def _local_field(local: np.ndarray, offsets: np.ndarray, g) -> np.ndarray:
    """The field on the LR grid ``(2, h, w)`` from windowed cost maps ``local`` ``(k, k, h, w)``
    of the candidates ``g + offsets``: the minimising candidate per pixel, a parabola's
    sub-step along each axis, smoothed by the window."""
    h, w = local.shape[-2:]
    last = len(offsets) - 1
    k = np.argmin(local.reshape(-1, h, w), axis=0)
    ky, kx = np.divmod(k, last + 1)
    jj, ii = np.meshgrid(np.arange(w), np.arange(h))

    def at(a, b):
        return local[np.clip(a, 0, last), np.clip(b, 0, last), ii, jj]

    fy = offsets[ky] + REGISTER_STEP * np.where((ky > 0) & (ky < last),
                                                _refine(at(ky - 1, kx), at(ky, kx), at(ky + 1, kx)), 0.0)
    fx = offsets[kx] + REGISTER_STEP * np.where((kx > 0) & (kx < last),
                                                _refine(at(ky, kx - 1), at(ky, kx), at(ky, kx + 1)), 0.0)
    field_lr = np.stack([fy + g[0], fx + g[1]])
    return ndimage.gaussian_filter(field_lr, (0, REGISTER_WINDOW, REGISTER_WINDOW), mode="reflect")


def held_out_gain(res: np.ndarray, offsets: np.ndarray, g, inner, residual_of) -> float:
    """The share of the identity's residual that a field removes on LR pixels it was not
    estimated from (two-fold, a checkerboard of ``REGISTER_HOLDOUT_BLOCK``-pixel blocks).

    ``res`` ``(k, k, h, w)``: the per-pixel residual of each candidate shift;
    ``residual_of(field_lr)``: the per-pixel residual of the photograph sampled by a field.
    The field of each half is estimated as :func:`estimate_field` does, from that half's
    pixels only (the window's average over them), and scored on the other half, against the
    photograph as given (the identity).  On an aligned photograph the estimate fits only the
    noise of the pixels it saw, which the other half does not share: its held-out gain is
    about 0, while a real misregistration shows on both halves."""
    h, w = res.shape[-2:]
    yy, xx = np.mgrid[0:h, 0:w]
    half = ((yy // REGISTER_HOLDOUT_BLOCK + xx // REGISTER_HOLDOUT_BLOCK) % 2) == 0
    counted = np.zeros((h, w), bool)
    counted[inner] = True
    identity = residual_of(np.zeros((2, h, w)))
    removed = total = 0.0
    for fit in (half, ~half):
        share = ndimage.gaussian_filter(fit.astype(np.float64), REGISTER_WINDOW, mode="reflect")
        local = ndimage.gaussian_filter(res * fit, (0, 0, REGISTER_WINDOW, REGISTER_WINDOW),
                                        mode="reflect") / np.maximum(share, 1e-12)
        scored = ~fit & counted
        base = float(identity[scored].sum())
        removed += base - float(residual_of(_local_field(local, offsets, g))[scored].sum())
        total += base
    return removed / total if total > 0 else 0.0


def lr_to_hr(field_lr: np.ndarray, scale: int) -> np.ndarray:
    """A field on the LR grid (values at LR pixel centres) → the HR grid, bilinearly (clamped
    at the edges; the same function the ONNX runtime applies, ``maxrf_infer.photo.hr_field``)."""
    from maxrf_infer.photo import hr_field

    h, w = field_lr.shape[-2:]
    return hr_field(np.asarray(field_lr), int(scale), slice(0, h * scale), slice(0, w * scale))
