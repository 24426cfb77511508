"""Put a photograph on the grid of the element maps, and register it to them.

A photograph and an MA-XRF scan never line up exactly: the camera and the scanner see the
object from different positions, and the photograph has many more pixels.  Two steps:

1. :func:`resample_photo` puts the photograph on a grid of the maps (the map grid, or the
   ``upsample``× grid for super-resolution), assuming the two cover the same field of
   view, optionally moved by an ``offset`` and transformed by a matrix about the grid centre.
2. :func:`estimate_offset` measures that offset (and optionally a zoom or an affine matrix) with a
   cross-modal criterion: the normalised cross-correlation (NCC) of *gradient magnitudes*.
   An element map and a photograph are not linear functions of each other (vermilion is
   bright red and a strong Hg map, lead white is white and a strong Pb map, a hidden layer
   shows in one only), but both change where the paint changes, so the magnitudes of their
   gradients correlate whatever the signs and gains of the edges.

Geometry convention (all in pixels of the map grid, pixel ``i`` centred at ``i + 0.5``):
a feature at map position ``u = (y, x)`` appears in the photograph at
``c + M·(u − c) + offset`` where ``c`` is the grid centre, ``offset = (dy, dx)`` and ``M``
a 2×2 matrix: the identity for a pure shift, ``zoom·I`` for a shift and a scale, any
matrix for an affine model (anisotropic scale, rotation, shear).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage, optimize, signal


def _as_matrix(matrix) -> np.ndarray:
    m = np.asarray(1.0 if matrix is None else matrix, dtype=float)
    return m * np.eye(2) if m.ndim == 0 else m.reshape(2, 2)


def _photo_coords(out_shape, grid_shape, photo_shape, upsample=1, offset=(0.0, 0.0), matrix=None):
    """Photograph pixel-index coordinates ``(py, px)``, each ``out_shape``, sampled by the
    output pixels."""
    m = _as_matrix(matrix)
    u = [(np.arange(n) + 0.5) / upsample - g / 2.0 for n, g in zip(out_shape, grid_shape)]
    uy, ux = np.meshgrid(u[0], u[1], indexing="ij")  # output centres − c, map-grid units
    coords = []
    for a in range(2):
        p = grid_shape[a] / 2.0 + m[a, 0] * uy + m[a, 1] * ux + offset[a]  # map units
        coords.append(p * (photo_shape[a] / grid_shape[a]) - 0.5)  # → photograph pixel index
    return coords


def resample_photo(photo: np.ndarray, grid_shape: tuple[int, int], *, upsample: int = 1,
                   offset: tuple[float, float] = (0.0, 0.0), matrix=None,
                   order: int = 3) -> np.ndarray:
    """Resample ``photo`` ``(band, Hp, Wp)`` in [0, 1] onto the map grid ``grid_shape``
    ``(H, W)`` refined ``upsample`` times: returns ``(band, H·upsample, W·upsample)``.

    The photograph is assumed to span the field of view of the maps (the scale factors in
    y and x may differ).  When it is reduced, a Gaussian pre-filter of σ = (r − 1)/2
    photograph pixels (r = reduction factor) removes what the output grid cannot hold.
    Points that fall outside the photograph take the value of its nearest edge.
    """
    photo = np.asarray(photo, dtype=np.float32)
    grid_shape = tuple(int(n) for n in grid_shape)
    out_shape = (grid_shape[0] * upsample, grid_shape[1] * upsample)
    m = _as_matrix(matrix)
    ratios = [photo.shape[1 + a] / out_shape[a] * np.hypot(*m[a]) for a in range(2)]
    sigma = [max(0.0, (r - 1.0) / 2.0) for r in ratios]
    yy, xx = _photo_coords(out_shape, grid_shape, photo.shape[1:], upsample, offset, m)
    if out_shape == photo.shape[1:] and np.allclose(yy, np.arange(out_shape[0])[:, None]) \
            and np.allclose(xx, np.arange(out_shape[1])[None, :]):
        return photo.copy()
    out = np.empty((photo.shape[0], *out_shape), dtype=np.float32)
    for b in range(photo.shape[0]):
        band = ndimage.gaussian_filter(photo[b], sigma) if max(sigma) > 0 else photo[b]
        out[b] = ndimage.map_coordinates(band, [yy, xx], order=order, mode="nearest")
    return np.clip(out, 0.0, 1.0)


def gradient_magnitude(images: np.ndarray, sigma: float = 1.5,
                       mask: np.ndarray | None = None) -> np.ndarray:
    """Structure image ``(H, W)``: the mean over channels of each channel's Gaussian
    gradient magnitude (σ in pixels), each scaled by its own 99th percentile so that a
    strong map does not drown a weak one.  ``images`` is ``(channel, H, W)``; pixels
    outside ``mask`` are set to the mean so they carry no structure."""
    images = np.asarray(images, dtype=np.float64)
    acc = np.zeros(images.shape[1:])
    for img in images:
        g = ndimage.gaussian_gradient_magnitude(img, sigma)
        ref = np.percentile(g if mask is None else g[mask], 99)
        if ref > 0:
            acc += g / ref
    acc /= max(len(images), 1)
    if mask is not None:
        acc[~mask] = acc[mask].mean()
    return acc


def ncc(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Normalised cross-correlation (Pearson) of two images over ``mask``."""
    if mask is not None:
        a, b = a[mask], b[mask]
    a = a - a.mean()
    b = b - b.mean()
    den = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / den) if den > 0 else 0.0


MODELS = ("shift", "similarity", "affine")


@dataclass
class Registration:
    """Result of :func:`estimate_offset`: ``offset`` ``(dy, dx)`` in map pixels, the 2×2
    ``matrix`` M of the model, the gradient-magnitude NCC before (identity) and after."""

    offset: tuple[float, float]
    matrix: np.ndarray
    ncc_before: float
    ncc_after: float
    model: str = "shift"
    method: str = "ncc-gradient-magnitude"

    @property
    def zoom(self) -> float:
        """Mean scale of M (√det M): 1 for a pure shift."""
        return float(np.sqrt(abs(np.linalg.det(self.matrix))))

    @property
    def rotation_deg(self) -> float:
        m = self.matrix
        return float(np.degrees(np.arctan2(m[1, 0] - m[0, 1], m[0, 0] + m[1, 1])))

    def attrs(self) -> dict:
        """Scan attributes recording this registration."""
        return {"registration_method": f"{self.method} ({self.model})",
                "registration_shift_px": [round(v, 4) for v in self.offset],
                "registration_matrix": [round(float(v), 6) for v in self.matrix.ravel()],
                "registration_zoom": round(self.zoom, 6),
                "registration_ncc_before": round(self.ncc_before, 4),
                "registration_ncc_after": round(self.ncc_after, 4)}

    def describe(self) -> str:
        extra = ""
        if self.model != "shift":
            m = self.matrix
            extra = (f", zoom {self.zoom:.4f} (y {np.hypot(*m[0]):.4f}, x {np.hypot(*m[1]):.4f})"
                     f", rotation {self.rotation_deg:+.2f}°")
        return (f"registration ({self.method}, {self.model}): photograph offset "
                f"dy={self.offset[0]:+.2f}, dx={self.offset[1]:+.2f} map px{extra}; "
                f"gradient correlation {self.ncc_before:.3f} → {self.ncc_after:.3f}")


def _integer_search(fixed: np.ndarray, moving: np.ndarray, margin: int):
    """NCC of ``fixed`` (cropped by ``margin``) against ``moving`` at every integer shift
    in ±margin: returns the ``(2m+1, 2m+1)`` surface and the best shift ``(dy, dx)``."""
    t = fixed[margin:-margin, margin:-margin]
    t = t - t.mean()
    n = t.size
    num = signal.fftconvolve(moving, t[::-1, ::-1], mode="valid")
    ones = np.ones_like(t)
    s1 = signal.fftconvolve(moving, ones, mode="valid")
    s2 = signal.fftconvolve(moving ** 2, ones, mode="valid")
    var = np.maximum(s2 - s1 ** 2 / n, 1e-12)
    surface = num / np.sqrt(var * max((t ** 2).sum(), 1e-12))
    iy, ix = np.unravel_index(np.argmax(surface), surface.shape)
    return surface, (int(iy) - margin, int(ix) - margin)


def _parabola_peak(v_minus: float, v0: float, v_plus: float) -> float:
    den = v_minus - 2 * v0 + v_plus
    return 0.0 if den >= 0 else float(np.clip(0.5 * (v_minus - v_plus) / den, -0.5, 0.5))


def _subpixel_shift(fixed, moving, margin):
    """Integer NCC peak refined by a parabola through its neighbours: ``(dy, dx), peak``."""
    surface, (dy, dx) = _integer_search(fixed, moving, margin)
    cy, cx = dy + margin, dx + margin
    fy = _parabola_peak(*surface[cy - 1:cy + 2, cx]) if 0 < cy < surface.shape[0] - 1 else 0.0
    fx = _parabola_peak(*surface[cy, cx - 1:cx + 2]) if 0 < cx < surface.shape[1] - 1 else 0.0
    return np.array([dy + fy, dx + fx]), float(surface[cy, cx])


def _tile_affine(g_maps, g_photo, valid, margin, tiles=4):
    """Affine model from local shifts: the sub-pixel NCC shift of each of ``tiles``×``tiles``
    tiles, then a least-squares fit of ``shift(u) = (M − I)(u − c) + offset`` weighted by
    each tile's NCC peak (tiles with little structure or mostly masked are dropped)."""
    h, w = g_maps.shape
    ys = np.linspace(0, h, tiles + 1).astype(int)
    xs = np.linspace(0, w, tiles + 1).astype(int)
    rows, rhs, wts = [], [], []
    for i in range(tiles):
        for j in range(tiles):
            sl = (slice(ys[i], ys[i + 1]), slice(xs[j], xs[j + 1]))
            if valid[sl].mean() < 0.8 or min(ys[i + 1] - ys[i], xs[j + 1] - xs[j]) < 4 * margin:
                continue
            shift, peak = _subpixel_shift(g_maps[sl], g_photo[sl], margin)
            if peak < 0.1:
                continue
            cy = (ys[i] + ys[i + 1]) / 2 - h / 2
            cx = (xs[j] + xs[j + 1]) / 2 - w / 2
            rows.append([cy, cx, 1.0])
            rhs.append(shift)
            wts.append(peak)
    if len(rows) < 4:
        return None
    a = np.array(rows) * np.array(wts)[:, None]
    b = np.array(rhs) * np.array(wts)[:, None]
    coef, *_ = np.linalg.lstsq(a, b, rcond=None)  # (3, 2): rows cy, cx, 1
    matrix = np.eye(2) + coef[:2].T  # M[a, k] = δ + d shift_a / d u_k
    return coef[2], matrix


def estimate_offset(maps: np.ndarray, photo_on_grid: np.ndarray, *, mask: np.ndarray | None = None,
                    max_shift: int | None = None, model: str = "shift",
                    sigma: float = 1.5) -> Registration:
    """Estimate where the photograph lies relative to the maps, both on the map grid.

    ``maps`` is ``(element, H, W)`` (any units), ``photo_on_grid`` ``(band, H, W)``
    (resampled with :func:`resample_photo`, no offset), ``mask`` ``(H, W)`` marks valid
    map pixels.  ``model``: ``shift``, ``similarity`` (shift + zoom) or ``affine``.

    Steps: gradient-magnitude structure images of both; the best integer shift within
    ±``max_shift`` (default 5 % of the grid, at least 4 px) by FFT NCC and a parabolic
    sub-pixel estimate; for ``affine``, local shifts of 4×4 tiles fitted by least squares;
    then (shift, similarity) a Nelder–Mead refinement of the NCC that warps the
    photograph's structure image with cubic splines.
    """
    if model not in MODELS:
        raise ValueError(f"registration model must be one of {MODELS}, found {model!r}")
    h, w = maps.shape[-2:]
    if max_shift is None:
        max_shift = max(4, int(round(0.05 * min(h, w))))
    max_shift = int(max(1, min(max_shift, (min(h, w) - 4) // 3)))
    g_maps = gradient_magnitude(maps, sigma, mask)
    g_photo = gradient_magnitude(photo_on_grid, sigma)
    valid = np.ones((h, w), bool) if mask is None else mask.astype(bool)
    m = max_shift + 2
    inner = np.zeros((h, w), bool)
    inner[m:h - m, m:w - m] = True
    eval_mask = valid & inner

    spline = ndimage.spline_filter(g_photo, order=3)
    # the structure images are smooth (σ ≥ 1 px): scoring every 2nd pixel of a large grid
    # changes the NCC little and halves the cost of each Nelder–Mead step
    step = 2 if min(h, w) >= 256 else 1
    g_fixed, sub_mask = g_maps[::step, ::step], eval_mask[::step, ::step]

    def score(offset, matrix):
        py, px = _photo_coords((h, w), (h, w), (h, w), 1, offset, matrix)
        moved = ndimage.map_coordinates(spline, [py[::step, ::step], px[::step, ::step]],
                                        order=3, mode="nearest", prefilter=False)
        return ncc(g_fixed, moved, sub_mask)

    start, _ = _subpixel_shift(g_maps, g_photo, max_shift)
    before = score((0.0, 0.0), None)
    if model == "affine":
        fit = _tile_affine(g_maps, g_photo, valid, max(2, max_shift // 2))
        candidates = [(start, np.eye(2))] + ([fit] if fit is not None else [])
        scored = [(score(o, mt), o, mt) for o, mt in candidates]
        best, offset, matrix = max(scored, key=lambda t: t[0])
        return Registration(tuple(float(v) for v in offset), np.asarray(matrix), before, best,
                            "affine" if matrix is not candidates[0][1] else "shift")

    def params_to(p):
        return p[:2], (np.exp(p[2]) if model == "similarity" else 1.0)

    def cost(p):
        return -score(*params_to(p))

    x0 = np.r_[start, 0.0] if model == "similarity" else start
    simplex = [x0] + [x0 + step for step in np.diag([0.4, 0.4, 0.01][: len(x0)])]
    res = optimize.minimize(cost, x0, method="Nelder-Mead",
                            options={"initial_simplex": simplex, "xatol": 0.01, "fatol": 1e-6,
                                     "maxiter": 150})
    p = res.x if res.fun <= cost(x0) else x0
    offset, zoom = params_to(p)
    return Registration((float(offset[0]), float(offset[1])), zoom * np.eye(2), before, -cost(p),
                        model)
