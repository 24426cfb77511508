"""Per-element gate on the photograph's detail (our extension, ``gate = "lr"``; not the
paper's method; off by default).

An element whose LR map does not follow the photograph (an underdrawing, a pigment only in
an earlier composition, a map that is mostly noise) should take none of the photograph's
edges.  The gate measures, per element, how much of the map's own LR detail the
photograph explains, on the LR grid where both are known::

    r²_e = R² of the least-squares fit of H(Y_e) on [H(U R), H(U G), H(U B)]

with ``U`` the scan's forward operator (the photograph brought to the LR grid as the
maps were), ``H(x) = x − G_σ * x`` a high-pass of σ = :data:`GATE_SIGMA` LR pixels, no
intercept, over the LR image less a border of 2σ.  The gate is ``g_e = min(1, r²_e /
gate_full)``: 1 for an element whose LR detail the photograph explains at least
``gate_full``, falling linearly to 0 for one it does not explain at all.  The output is
``g_e · Proj(Ŷ_e) + (1 − g_e) · Proj(Y↑_e)`` (``Y↑`` the bilinear interpolation): since the
projection is affine, this is ``Proj(Y↑ + g (Ŷ − Y↑))``, still consistent with the LR maps,
with the generator's photograph-driven detail scaled by ``g_e``.

Why a statistic and not a parameter trained by the self-supervised losses: after the
projection every blend is consistent with the LR maps (``L_c1 = 0`` for any ``g``), and
before it the generator's ``Ŷ`` meets ``L_c1`` better than ``Y↑`` does for every element, so
those losses push every gate to 1 whatever the element; the LR-grid fit is the
self-supervised evidence there is about whether a map follows the photograph.
"""
from __future__ import annotations


import numpy as np

import maxrf_bench as mb

#: σ (LR pixels) of the high-pass in which the LR maps are compared with the photograph
GATE_SIGMA = 1.0


def lr_fit(maps_lr: np.ndarray, rgb: np.ndarray, operator) -> np.ndarray:
    """``r²_e`` per element (see the module docstring): ``(B,)`` in [0, 1]."""
    lr = np.asarray(maps_lr, np.float64)
    photo = np.asarray(operator.down(np.asarray(rgb, np.float64)), np.float64)
    if photo.shape[-2:] != lr.shape[-2:]:
        raise mb.ConfigError(f"proposed gate: the photograph brought to the LR grid is "
                             f"{photo.shape[-2]}×{photo.shape[-1]}, the LR maps are "
                             f"{lr.shape[-2]}×{lr.shape[-1]}")

    inner = (slice(None), *mb.interior(lr.shape, GATE_SIGMA))
    p = mb.high_pass(photo, GATE_SIGMA)[inner].reshape(photo.shape[0], -1).T
    y = mb.high_pass(lr, GATE_SIGMA)[inner].reshape(lr.shape[0], -1).T
    return np.nan_to_num(mb.explained_share(y, p), nan=0.0)


def element_gate(maps_lr: np.ndarray, rgb: np.ndarray, operator, full: float) -> np.ndarray:
    """``g_e = min(1, r²_e / full)`` per element, ``(B,)``."""
    return np.minimum(1.0, lr_fit(maps_lr, rgb, operator) / float(full))


def apply_gate(sr: np.ndarray, maps_lr: np.ndarray, rgb: np.ndarray, operator, full: float,
               project: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """The gated output ``g·sr + (1 − g)·Proj(Y↑)`` (``Y↑`` bilinear; unprojected when
    ``project`` is false) and the gate ``(B,)``."""
    g = element_gate(maps_lr, rgb, operator, full)
    base = mb.upsample(np.asarray(maps_lr, np.float32), operator.scale, "bilinear").astype(np.float32)
    if project:
        base = operator.project(base, maps_lr)
    gated = g[:, None, None] * np.asarray(sr, np.float64) + (1 - g[:, None, None]) * base
    return gated.astype(np.float32), g
