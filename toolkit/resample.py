"""Separable interpolation on pixel-centre grids (the convention of the block mean).

LR pixel ``i`` covers HR pixels ``[i·s, (i+1)·s)``, its centre sits at HR coordinate
``(i + 0.5)·s - 0.5``.  Edges replicate the border pixel.  ``bilinear`` matches
``torch.nn.functional.interpolate(mode="bilinear", align_corners=False)``; ``bicubic`` is
Keys' cubic convolution with ``a = -0.5`` (as MATLAB ``imresize`` and PIL use).
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np


def _keys(t: np.ndarray, a: float) -> np.ndarray:
    t = np.abs(t)
    return np.where(
        t <= 1,
        (a + 2) * t**3 - (a + 3) * t**2 + 1,
        np.where(t < 2, a * t**3 - 5 * a * t**2 + 8 * a * t - 4 * a, 0.0),
    )


@lru_cache(maxsize=64)
def interpolation_matrix(n_in: int, scale: int, kind: str = "bicubic", a: float = -0.5) -> np.ndarray:
    """``(n_in·scale, n_in)`` matrix ``M`` with ``up = M @ x`` along one axis."""
    n_out = n_in * scale
    pos = (np.arange(n_out) + 0.5) / scale - 0.5  # output centres in input-pixel units
    m = np.zeros((n_out, n_in))
    if kind == "bilinear":
        pos = np.clip(pos, 0, None)  # torch clamps negative source coordinates to 0
        i0 = np.floor(pos).astype(int)
        f = pos - i0
        for off, wgt in ((0, 1 - f), (1, f)):
            idx = np.clip(i0 + off, 0, n_in - 1)
            np.add.at(m, (np.arange(n_out), idx), wgt)
    elif kind == "bicubic":
        i0 = np.floor(pos).astype(int)
        for off in (-1, 0, 1, 2):
            idx = i0 + off
            wgt = _keys(pos - idx, a)
            np.add.at(m, (np.arange(n_out), np.clip(idx, 0, n_in - 1)), wgt)
    elif kind == "nearest":
        m[np.arange(n_out), np.arange(n_out) // scale] = 1.0
    else:
        raise ValueError(f"unknown interpolation {kind!r}; expected bilinear, bicubic or nearest")
    m.setflags(write=False)
    return m


def upsample(x, scale: int, kind: str = "bicubic", a: float = -0.5):
    """Upsample the last two axes of ``x`` (numpy array or torch tensor) by ``scale``."""
    h, w = x.shape[-2:]
    my = interpolation_matrix(h, scale, kind, a)
    mx = interpolation_matrix(w, scale, kind, a)
    if type(x).__module__.startswith("torch"):
        import torch

        my_t = torch.tensor(my, dtype=x.dtype, device=x.device)
        mx_t = torch.tensor(mx, dtype=x.dtype, device=x.device)
        return my_t @ x @ mx_t.T
    dtype = np.result_type(x, np.float32)
    return (my.astype(dtype) @ np.asarray(x, dtype=dtype) @ mx.T.astype(dtype)).astype(dtype)
