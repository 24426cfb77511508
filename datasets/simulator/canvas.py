"""Drawing tools for painted scenes: shapes as signed distances, brush-stroke textures,
craquelure, and a layer builder that lays pigment mixtures down with varying thickness.

All lengths are in HR pixels unless a name says otherwise; textures have a fixed scale in
pixels (strokes ~1–30 px, cracks ~1 px wide) so that detail at 1–4 px exists at every
image size, which is what a 4× super-resolution benchmark needs.
"""
from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np
from scipy import fft as sfft
from scipy.spatial import cKDTree

from . import pigments as pg
from .physics import Layer


# --- Fourier-domain filters -------------------------------------------------------------

def _freqs(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    fy = sfft.fftfreq(h).astype(np.float32)[:, None]
    fx = sfft.rfftfreq(w).astype(np.float32)[None, :]
    return fy, fx


def gaussian_blur(img: np.ndarray, sigma: float, pad: int | None = None) -> np.ndarray:
    """Gaussian blur of the last two axes by FFT (reflect-padded so edges do not wrap)."""
    if sigma <= 0:
        return img
    pad = int(math.ceil(3 * sigma)) + 1 if pad is None else pad
    widths = [(0, 0)] * (img.ndim - 2) + [(pad, pad), (pad, pad)]
    a = np.pad(img, widths, mode="reflect")
    h, w = a.shape[-2:]
    fy, fx = _freqs(h, w)
    kernel = np.exp(-2 * math.pi ** 2 * sigma ** 2 * (fy ** 2 + fx ** 2))
    out = sfft.irfft2(sfft.rfft2(a, workers=2) * kernel, s=(h, w), workers=2)
    return out[..., pad:-pad, pad:-pad].astype(img.dtype, copy=False)


def anisotropic_noise(shape: tuple[int, int], rng: np.random.Generator, along: float,
                      across: float, angle: float) -> np.ndarray:
    """White noise filtered by a Gaussian elongated along ``angle`` (radians from the
    x axis): streaks ``along`` px long and ``across`` px wide; zero mean, unit std."""
    h, w = shape
    noise = rng.standard_normal((h, w)).astype(np.float32)
    fy, fx = _freqs(h, w)
    c, s = math.cos(angle), math.sin(angle)
    f_along = fx * c + fy * s
    f_across = -fx * s + fy * c
    kernel = np.exp(-2 * math.pi ** 2 * (along ** 2 * f_along ** 2 + across ** 2 * f_across ** 2))
    out = sfft.irfft2(sfft.rfft2(noise, workers=2) * kernel, s=(h, w), workers=2)
    out -= out.mean()
    return (out / (out.std() + 1e-8)).astype(np.float32)


def smooth_noise(shape: tuple[int, int], rng: np.random.Generator, sigma: float) -> np.ndarray:
    """Isotropic smooth noise, zero mean, unit std."""
    return anisotropic_noise(shape, rng, sigma, sigma, 0.0)


class StrokeBank:
    """Brush-stroke textures at a few orientations; :meth:`at` blends them by a per-pixel
    direction field, so strokes can follow a form (petals, folds, hair).

    Each texture is the sum of a coarse component (the stroke body, ``length`` × ``width``
    px) and a fine one (bristle marks ~1 px wide), both zero mean, unit std overall.
    """

    def __init__(self, shape, rng, length=18.0, width=3.0, n_angles=8, fine=0.55):
        self.n = n_angles
        self.tex = []
        for i in range(n_angles):
            a = math.pi * i / n_angles
            coarse = anisotropic_noise(shape, rng, length, width, a)
            bristle = anisotropic_noise(shape, rng, length * 0.6, 0.6, a)
            t = (1 - fine) * coarse + fine * bristle
            self.tex.append((t / t.std()).astype(np.float32))
        self.tex = np.stack(self.tex)

    def at(self, angle) -> np.ndarray:
        """Texture for a direction (radians; scalar or (y, x) field), unit std."""
        a = np.mod(np.asarray(angle, dtype=np.float32), math.pi) / math.pi * self.n
        if a.ndim == 0:
            i0 = int(a) % self.n
            f = float(a - int(a))
            return (1 - f) * self.tex[i0] + f * self.tex[(i0 + 1) % self.n]
        out = np.zeros(a.shape, dtype=np.float32)
        for i in range(self.n):
            # triangular weights on the circle of orientations
            d = np.abs(a - i)
            wgt = np.clip(1 - np.minimum(d, self.n - d), 0, 1)
            if wgt.any():
                out += wgt * self.tex[i]
        return out


def craquelure(shape, rng, cell_px=28.0, width_px=0.8, warp_px=4.0, keep=0.8) -> np.ndarray:
    """Crack network ``(y, x)`` in [0, 1]: edges of a warped Voronoi tessellation (the
    polygonal islands of aged oil paint), about ``width_px`` wide, with a fraction
    ``1 − keep`` of cells merged (their shared edges missing) for an irregular look."""
    h, w = shape
    n = max(8, int(h * w / cell_px ** 2))
    pts = rng.uniform(0, 1, (n, 2)) * [h, w]
    tree = cKDTree(pts)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    wy = warp_px * smooth_noise(shape, rng, cell_px / 3)
    wx = warp_px * smooth_noise(shape, rng, cell_px / 3)
    q = np.stack([(yy + wy).ravel(), (xx + wx).ravel()], 1)
    d, idx = tree.query(q, k=2, workers=2)
    gap = (d[:, 1] - d[:, 0]).reshape(h, w)  # ≈ 2 × distance to the cell edge
    # merge some pairs of cells: drop the edge when both cells belong to the same group
    group = rng.integers(0, max(1, int(n * keep)), n)
    same = (group[idx[:, 0]] == group[idx[:, 1]]).reshape(h, w)
    crack = np.clip(1.0 - gap / (2 * width_px), 0, 1)
    crack[same] = 0
    return crack.astype(np.float32)


# --- shapes (signed distances in px, negative inside) -------------------------------------

class Grid:
    """Pixel-centre coordinates of an image ``size × size`` in canvas pixels.

    ``view = (zoom, x0, y0)``: the canvas is ``S = zoom × size`` pixels wide and the image
    shows the part whose top-left corner is at (x0, y0), fractions of the canvas.
    ``u(f)`` converts a fraction of the canvas to pixels.
    """

    def __init__(self, size: int, view=None):
        zoom, x0, y0 = view or (1.0, 0.0, 0.0)
        self.size = size
        self.S = float(size * zoom)
        self.off_x, self.off_y = x0 * self.S, y0 * self.S
        yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
        self.y, self.x = yy + 0.5 + self.off_y, xx + 0.5 + self.off_x

    def u(self, f: float) -> float:
        return f * self.S

    def local(self, cx, cy, angle=0.0):
        """Coordinates relative to (cx, cy) (fractions of size), rotated by ``angle``."""
        dx, dy = self.x - self.u(cx), self.y - self.u(cy)
        c, s = math.cos(angle), math.sin(angle)
        return dx * c + dy * s, -dx * s + dy * c

    def ellipse(self, cx, cy, rx, ry, angle=0.0):
        lx, ly = self.local(cx, cy, angle)
        rx, ry = self.u(rx), self.u(ry)
        r = np.sqrt((lx / rx) ** 2 + (ly / ry) ** 2)
        return (r - 1) * min(rx, ry)

    def box(self, x0, y0, x1, y1, radius=0.0):
        cx, cy = self.u((x0 + x1) / 2), self.u((y0 + y1) / 2)
        hx, hy = self.u(abs(x1 - x0) / 2) - self.u(radius), self.u(abs(y1 - y0) / 2) - self.u(radius)
        qx, qy = np.abs(self.x - cx) - hx, np.abs(self.y - cy) - hy
        outside = np.hypot(np.maximum(qx, 0), np.maximum(qy, 0))
        return outside + np.minimum(np.maximum(qx, qy), 0) - self.u(radius)

    def polar(self, cx, cy, radius_fn, angle=0.0):
        """Star/petal shapes: inside where distance < ``radius_fn(theta)`` (fraction of size)."""
        lx, ly = self.local(cx, cy, angle)
        th = np.arctan2(ly, lx)
        r = np.hypot(lx, ly)
        return r - self.u(1) * radius_fn(th)

    def polyline(self, points: Sequence[tuple[float, float]], width: float):
        """Distance field of a brush line through ``points`` (fractions), ``width`` in px."""
        pts = np.asarray(points, dtype=np.float32) * self.S
        d = np.full(self.x.shape, np.inf, dtype=np.float32)
        pad = width + 3
        ox, oy = self.off_x, self.off_y
        for (x0, y0), (x1, y1) in zip(pts[:-1], pts[1:]):
            y_lo, y_hi = int(min(y0, y1) - oy - pad), int(max(y0, y1) - oy + pad) + 1
            x_lo, x_hi = int(min(x0, x1) - ox - pad), int(max(x0, x1) - ox + pad) + 1
            if y_hi <= 0 or x_hi <= 0 or y_lo >= self.size or x_lo >= self.size:
                continue
            ys = slice(max(0, y_lo), min(self.size, y_hi))
            xs = slice(max(0, x_lo), min(self.size, x_hi))
            px, py = self.x[ys, xs] - x0, self.y[ys, xs] - y0
            vx, vy = x1 - x0, y1 - y0
            t = np.clip((px * vx + py * vy) / max(vx * vx + vy * vy, 1e-6), 0, 1)
            dd = np.hypot(px - t * vx, py - t * vy)
            d[ys, xs] = np.minimum(d[ys, xs], dd)
        return d - width / 2

    def dome(self, cx, cy, rx, ry, light=(-0.5, -0.6, 0.62), angle=0.0):
        """Lambert shading in [-1, 1] of an ellipsoid seen from above, lit from ``light``."""
        lx, ly = self.local(cx, cy, angle)
        nx, ny = lx / self.u(rx), ly / self.u(ry)
        nz = np.sqrt(np.clip(1 - nx ** 2 - ny ** 2, 0, 1))
        L = np.asarray(light, dtype=np.float32)
        L = L / np.linalg.norm(L)
        return np.clip(nx * L[0] + ny * L[1] + nz * L[2], -1, 1) * 2 - 1


def mask(sdf: np.ndarray, soft: float = 0.7) -> np.ndarray:
    """Anti-aliased coverage of a signed-distance shape; ``soft`` px of edge (sfumato: more)."""
    return np.clip(0.5 - sdf / max(soft, 1e-3), 0, 1).astype(np.float32)


def bezier(p0, p1, p2, n=24):
    """Points of a quadratic Bézier curve (fractions), for brush lines and stems."""
    t = np.linspace(0, 1, n)[:, None]
    p0, p1, p2 = (np.asarray(p, dtype=float) for p in (p0, p1, p2))
    return (1 - t) ** 2 * p0 + 2 * (1 - t) * t * p1 + t ** 2 * p2


# --- layers -----------------------------------------------------------------------------

class LayerBuilder:
    """Accumulates one paint layer: volume fractions per component and a thickness (µm).

    :meth:`paint` lays a pigment ``recipe`` (pigment → parts) in a binder at pigment volume
    concentration ``pvc`` over a ``coverage`` mask, replacing what was there (painter's
    order); ``light`` in [-1, 1] mixes in a ``highlight`` recipe (> 0) or a ``shadow``
    recipe (< 0), which is how painters model form — so element maps follow the shading.
    """

    def __init__(self, name: str, size: int, binder: str = "linseed_oil"):
        self.name = name
        self.size = size
        self.binder = binder
        self.v = np.zeros((len(pg.ORDER), size, size), dtype=np.float32)
        self.t = np.zeros((size, size), dtype=np.float32)

    @staticmethod
    def recipe_vector(recipe: Mapping[str, float], pvc: float, binder: str) -> np.ndarray:
        vec = np.zeros(len(pg.ORDER), dtype=np.float32)
        total = float(sum(recipe.values()))
        for name, parts in recipe.items():
            vec[pg.INDEX[name]] += pvc * parts / total
        vec[pg.INDEX[binder]] += 1 - pvc
        return vec

    def paint(self, coverage, recipe, thickness, light=None, highlight=None, shadow=None,
              pvc=0.45, strength=0.75, min_um=5.0):
        cov = np.asarray(coverage, dtype=np.float32)
        rows = np.nonzero(cov.max(1) > 0)[0]
        cols = np.nonzero(cov.max(0) > 0)[0]
        if rows.size == 0:
            return
        sl = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
        m = cov[sl]
        vecs = [self.recipe_vector(r, pvc, self.binder) for r in (recipe, highlight, shadow)
                if r is not None]
        nz = np.nonzero(np.any(np.stack(vecs) != 0, axis=0))[0]   # components used here
        base = self.recipe_vector(recipe, pvc, self.binder)[nz, None, None]
        comp = base
        if light is not None:
            l = np.clip(np.asarray(light, dtype=np.float32)[sl], -1, 1) * strength
            lp, ln = np.maximum(l, 0), np.maximum(-l, 0)
            comp = base * (1 - np.abs(l))
            hi = base if highlight is None else self.recipe_vector(highlight, pvc, self.binder)[nz, None, None]
            sh = base if shadow is None else self.recipe_vector(shadow, pvc, self.binder)[nz, None, None]
            comp = comp + hi * lp + sh * ln
        region = self.v[(slice(None),) + sl]
        region *= 1 - m
        region[nz] += comp * m
        thick = np.broadcast_to(np.asarray(thickness, dtype=np.float32), (self.size, self.size))[sl]
        thick = np.maximum(thick, min(min_um, float(np.max(thick))))  # strokes never go bare
        self.t[sl] = self.t[sl] * (1 - m) + thick * m

    def layer(self) -> Layer:
        # where nothing was painted the layer is absent: pure binder with zero thickness
        # (and partly covered edge pixels are topped up with binder so fractions sum to 1)
        v = self.v.copy()
        v[pg.INDEX[self.binder]] += np.clip(1.0 - v.sum(0), 0, 1)
        return Layer(self.name, v, np.maximum(self.t, 0))
