"""Box (moving-window) sums and means over the last two axes, windows clipped at the border.

Private module (no hooks), used by the guided filter (:mod:`maxrf_bench_plugins.guided`).
The window of radius ``r`` is ``(2r+1) × (2r+1)`` pixels centred on each pixel; at the
border it is clipped to the image, as ``boxfilter.m`` of He et al.'s release does (their
O(N) cumulative-sum box filter, TPAMI 2013 Sec. 3.5).

Computed with :func:`scipy.ndimage.uniform_filter` (a maintained O(N) running-sum filter,
3-4× faster than a numpy cumulative sum here) with zero padding: the zero-padded window
mean times ``(2r+1)²`` is exactly the clipped-window sum, and dividing by the number of
pixels inside the clipped window gives its mean.  Float64 throughout: the guided filter
takes differences of window means (covariances), which lose precision in float32.
"""
from __future__ import annotations

import numpy as np
from scipy.ndimage import uniform_filter


def box_sum(x: np.ndarray, r: int) -> np.ndarray:
    """Sum of ``x`` ``(..., H, W)`` over the ``(2r+1) × (2r+1)`` window clipped at the border."""
    x = np.asarray(x, dtype=np.float64)
    size = 2 * int(r) + 1
    return uniform_filter(x, size=size, mode="constant", cval=0.0, axes=(-2, -1)) * float(size * size)


def box_count(shape_hw: tuple[int, int], r: int) -> np.ndarray:
    """Number of pixels in each clipped window, ``(H, W)``."""
    return box_sum(np.ones(shape_hw), r)


def box_mean(x: np.ndarray, r: int, count: np.ndarray | None = None) -> np.ndarray:
    """Mean of ``x`` ``(..., H, W)`` over the clipped window; ``count`` from :func:`box_count`
    may be passed to share it between calls."""
    if count is None:
        count = box_count(np.shape(x)[-2:], r)
    return box_sum(x, r) / count
