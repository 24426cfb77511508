"""Guided image filter (He, Sun, Tang, TPAMI 35(6) 2013) as RGB-guided upsampling.

The classic non-learned guided baseline: upsample every LR element map by bicubic
interpolation (``mb.upsample``), then filter it with the colour guided filter using the HR
photograph ``I`` (3 channels) as the guide.  For each window ``ω_k`` of radius ``r``
(paper Eqs. 19-21, colour-guide version)::

    a_k = (Σ_k + ε U3)^(-1) ( (1/|ω|) Σ_{i∈ω_k} I_i p_i - μ_k p̄_k )     (3-vector)
    b_k = p̄_k - a_kᵀ μ_k
    q_i = ā_iᵀ I_i + b̄_i                      (ā, b̄: means over the windows covering i)

``Σ_k`` is the 3 × 3 covariance of the guide in ``ω_k``, ``μ_k`` its mean, ``p̄_k`` the mean
of the (upsampled) map; all window means are box filters by cumulative sums (O(N) per map,
independent of ``r``), with windows clipped at the border (as ``boxfilter.m`` in the
authors' release).  The 3 × 3 systems are solved in closed form (adjugate / determinant),
vectorised over pixels; the inverse is shared by all element maps.

``project`` (ours, default ``false``): the classic filter does not know the forward model;
``project=true`` adds the exact projection onto ``{Y : U(Y) = Y_lr}`` (maxrf paper Eq. 10),
as ``bicubic.project`` does, so both variants can be compared.  The default keeps the
published filter.

Parameters and sources: ``radius = 8`` and ``eps = 0.02² = 4e-4`` are the values of the
paper's flash/no-flash joint-filtering example (a guide from another modality, as here);
``radius`` is in HR pixels (8 = 2 × the scale 4 of the benchmark).  ``fast`` = ``paper``
(the filter costs seconds).
"""
from __future__ import annotations

import numpy as np

import maxrf_bench as mb

from ._box import box_count, box_mean


def guided_filter_colour(p: np.ndarray, guide: np.ndarray, radius: int, eps: float) -> np.ndarray:
    """He et al.'s colour guided filter of every map of ``p`` ``(K, H, W)`` by ``guide`` ``(3, H, W)``.

    Returns ``(K, H, W)`` float32.  Computed in float64 (the covariance is a difference of
    means and loses precision in float32).
    """
    guide = np.asarray(guide, dtype=np.float64)
    p = np.asarray(p, dtype=np.float64)
    if guide.ndim != 3 or guide.shape[0] != 3:
        raise mb.ConfigError(f"the colour guided filter needs a (3, H, W) guide, found {guide.shape}")
    h, w = guide.shape[-2:]
    cnt = box_count((h, w), radius)
    mu = box_mean(guide, radius, cnt)  # (3, H, W)
    # Σ_k + ε U: the six distinct entries of the symmetric 3 × 3 covariance per pixel
    pairs = [(0, 0), (0, 1), (0, 2), (1, 1), (1, 2), (2, 2)]
    prod = np.stack([guide[i] * guide[j] for i, j in pairs])
    cov = box_mean(prod, radius, cnt) - np.stack([mu[i] * mu[j] for i, j in pairs])
    srr, srg, srb, sgg, sgb, sbb = cov
    srr = srr + eps
    sgg = sgg + eps
    sbb = sbb + eps
    # inverse by the adjugate (symmetric), vectorised over pixels
    i_rr = sgg * sbb - sgb * sgb
    i_rg = sgb * srb - srg * sbb
    i_rb = srg * sgb - sgg * srb
    i_gg = srr * sbb - srb * srb
    i_gb = srb * srg - srr * sgb
    i_bb = srr * sgg - srg * srg
    det = srr * i_rr + srg * i_rg + srb * i_rb
    inv = np.stack([i_rr, i_rg, i_rb, i_rg, i_gg, i_gb, i_rb, i_gb, i_bb]).reshape(3, 3, h, w) / det
    del cov, prod
    out = np.empty(p.shape, dtype=np.float32)
    for k in range(p.shape[0]):  # per map: 5 + 4 box filters, O(N) memory
        pk = p[k]
        mean_p = box_mean(pk, radius, cnt)
        cov_ip = box_mean(guide * pk, radius, cnt) - mu * mean_p  # (3, H, W)
        a = np.einsum("ijyx,jyx->iyx", inv, cov_ip)
        b = mean_p - (a * mu).sum(0)
        mean_a = box_mean(a, radius, cnt)
        mean_b = box_mean(b, radius, cnt)
        out[k] = (mean_a * guide).sum(0) + mean_b
    return out


def run_guided(inputs: mb.MethodInputs, radius: int = 8, eps: float = 4e-4,
               project: bool = False):
    if radius < 1:
        raise mb.ConfigError(f"guided.radius must be a positive integer (pixels), found {radius}")
    if not eps > 0:
        raise mb.ConfigError(f"guided.eps must be > 0, found {eps}")
    lr = inputs.maps_lr.values.astype(np.float32)
    rgb = inputs.rgb.values.astype(np.float32)
    if rgb.shape[0] != 3:
        raise mb.ScanValidationError(f"guided needs a 3-band RGB photograph, found {rgb.shape[0]} bands")
    up = mb.upsample(lr, inputs.operator.scale, "bicubic")
    out = np.empty_like(up)
    n = up.shape[0]
    chunk = 4  # bounds memory to a few maps at a time
    for i in range(0, n, chunk):
        out[i:i + chunk] = guided_filter_colour(up[i:i + chunk], rgb, radius, eps)
        inputs.progress(min(i + chunk, n), n, "guided filter")
    if project:
        out = inputs.operator.project(out, lr)
    return inputs.as_hr(out)


@mb.hookimpl
def maxrf_bench_register_methods(register):
    register(mb.Method(
        "guided", run_guided,
        description="bicubic upsampling then He et al.'s colour guided filter with the RGB as guide",
        defaults={"radius": 8, "eps": 4e-4, "project": False},
        presets={"paper": {}, "fast": {}},
        reference="K. He, J. Sun, X. Tang, Guided image filtering, IEEE TPAMI 35(6):1397-1409, 2013",
        deterministic=True,
    ))
