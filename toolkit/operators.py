"""Forward models ``U`` from high to low resolution, with exact projections.

The paper writes the degradation as a right multiplication ``Y_lr = Y U`` with ``Y`` of
shape ``(B, N_h)`` and the projection onto ``{Y : Y U = Y_lr}`` as (Eq. 10)::

    Proj(Y) = Y - (Y U - Y_lr) U^T                       (exact when U^T U = I)

Here an operator maps arrays ``(..., y, x)`` to ``(..., y / s, x / s)``: ``down(Y)`` is
``Y U``, ``adjoint(R)`` is ``R U^T``, and the general exact projection is::

    Proj(Y) = Y - adjoint( gram_solve( down(Y) - Y_lr ) ),   gram = U^T U  (LR × LR)

Three models:

* :class:`BlockMean` — the mean over ``s × s`` blocks (stored low-resolution maps are in the
  same units as the high-resolution ones).  ``s · blockmean`` has orthonormal columns, so in
  the paper's convention ``U = s · blockmean`` and ``Y_lr = s · (stored LR)``; Eq. 10 then
  reads ``Proj(Y) = Y - nearest_up(blockmean(Y) - Y_lr)``, which is what ``project`` does.
* :class:`GaussianBeam` — a Gaussian beam spot (PSF, periodic boundary) followed by the
  ``s × s`` block mean of the pixel the beam dwells on.  Its Gram matrix is circulant on
  the LR grid, so ``gram_solve`` is exact in the Fourier domain.
* :class:`CoarseScan` (``scan``) — a faster scan with a coarser step: the same Gaussian
  beam spot, integrated along the fast axis over the step, point-sampled along the slow
  axis.  It is separable, ``U = A_y ⊗ A_x``, so its Gram matrix is ``(A_y A_yᵀ) ⊗ (A_x A_xᵀ)``
  and ``gram_solve`` is two small dense Cholesky solves, one per axis (exact, no boundary
  wrap).

Eq. 10 as printed, ``Y − (Y U − Y_lr) Uᵀ``, is the orthogonal projection only when ``U``
has orthonormal columns (the block mean scaled by ``s``); none of the other operators
has them, so every operator here projects with its own Gram solve and
``tests/test_operators.py`` checks ``down(Proj(Y)) = Y_lr`` and idempotence for each.

All accept numpy arrays and torch tensors (autograd flows through torch inputs).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .errors import ConfigError, ScanValidationError


#: Largest condition number of ``U Uᵀ`` (on the LR grid) the Gaussian beam's projection
#: accepts: beyond it its float64 Fourier-domain Gram solve loses the 1e-5 exactness
#: ``tests/test_operators.py`` checks (measured, random inputs: idempotent to 8.9e-6 at cond
#: 3.7e8, 2e-5 at 4.7e8).
MAX_GRAM_COND = 1e8
#: The same for the coarse scan, whose per-axis Cholesky solves lose less (measured, random
#: inputs: idempotent to 4e-7 at cond 1.2e10, 3e-6 at 6e11, 2e-5 at 8e12).
MAX_SCAN_GRAM_COND = 1e10
#: Up to this condition number the projection is computed in the inputs' own type: float32
#: rounding (6e-8) times it stays within the 1e-5 exactness (block mean 1; a beam of std
#: ≤ 1.5 HR px at scale 4 ≤ 22); beyond it, in float64.
F32_SAFE_COND = 1e2


def _is_torch(x) -> bool:
    return type(x).__module__.startswith("torch")


def block_mean(x, s: int):
    """Mean over non-overlapping ``s × s`` blocks of the last two axes."""
    *lead, h, w = x.shape
    if h % s or w % s:
        raise ScanValidationError(
            f"block mean of scale {s} needs a size divisible by {s}, found {h}×{w}"
        )
    r = x.reshape(*lead, h // s, s, w // s, s)
    if _is_torch(x):
        return r.mean(dim=(-3, -1))
    return r.mean(axis=(-3, -1), dtype=np.float64).astype(x.dtype, copy=False)


def nearest_up(x, s: int):
    """Repeat every pixel of the last two axes ``s × s`` times."""
    if _is_torch(x):
        return x.repeat_interleave(s, dim=-2).repeat_interleave(s, dim=-1)
    return np.repeat(np.repeat(x, s, axis=-2), s, axis=-1)


class Operator:
    """Base class: the forward model ``U`` (HR → LR) of integer scale ``scale``."""

    name = "operator"
    scale: int

    def down(self, y):
        """``Y U``: ``(..., H, W)`` → ``(..., H/s, W/s)``."""
        raise NotImplementedError

    def adjoint(self, r):
        """``R U^T``: ``(..., h, w)`` → ``(..., h·s, w·s)``."""
        raise NotImplementedError

    def gram_solve(self, r):
        """Solve ``(U^T U) Q = R`` for ``Q`` on the LR grid."""
        raise NotImplementedError

    def __call__(self, *args, **kwargs):
        # "the LR input is U(maps)" invites op(Y): say which method is meant instead
        raise TypeError(f"{type(self).__name__} is not called directly: use .down(Y) for U (HR → LR; "
                        "the plain s×s block mean for blockmean), .project(Y, Y_lr) for the exact "
                        "projection of Eq. 10, .adjoint(R) for Uᵀ (see docs/plugins.md)")

    def gram_cond(self, h: int, w: int) -> float:
        """Condition number of ``U Uᵀ`` on an ``h × w`` LR grid (1 where it is the identity up
        to a factor)."""
        return 1.0

    def project(self, y, y_lr):
        """Exact projection of ``y`` onto ``{Y : down(Y) = y_lr}`` (paper Eq. 10).

        The Gram solve amplifies rounding by the Gram matrix's condition number: where it
        exceeds :data:`F32_SAFE_COND` (a beam about as wide as the step) the projection is
        computed in float64 and returned in the inputs' type, which float32 arithmetic
        could not absorb; otherwise in the inputs' own type (float32 training stays fast)."""
        h, w = y.shape[-2] // self.scale, y.shape[-1] // self.scale
        if self.gram_cond(h, w) <= F32_SAFE_COND:
            return y - self.adjoint(self.gram_solve(self.down(y) - y_lr))
        if _is_torch(y):
            import torch

            lr = torch.as_tensor(y_lr, device=y.device)
            y64, lr64 = y.to(torch.float64), lr.to(torch.float64)
            out = y64 - self.adjoint(self.gram_solve(self.down(y64) - lr64))
            return out.to(torch.promote_types(y.dtype, lr.dtype))
        y64, lr64 = np.asarray(y, np.float64), np.asarray(y_lr, np.float64)
        out = y64 - self.adjoint(self.gram_solve(self.down(y64) - lr64))
        return out.astype(np.result_type(y, y_lr, np.float32), copy=False)

    def check_shape(self, h: int, w: int) -> None:
        s = self.scale
        if h % s or w % s:
            raise ScanValidationError(
                f"scale {s} must divide the map size, found {h}×{w} "
                f"({h} mod {s} = {h % s}, {w} mod {s} = {w % s})"
            )

    def to_dict(self) -> dict:
        return {"name": self.name, "scale": self.scale}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.to_dict().items() if k != "name")
        return f"{type(self).__name__}({args})"


@dataclass(repr=False)
class BlockMean(Operator):
    """``s × s`` block mean; in the paper's orthonormal convention ``U = s · blockmean``."""

    scale: int
    name = "blockmean"

    def __post_init__(self):
        if isinstance(self.scale, bool) or int(self.scale) != self.scale or self.scale < 1:
            raise ConfigError(f"scale must be a positive integer, found {self.scale!r}")
        self.scale = int(self.scale)

    def down(self, y):
        return block_mean(y, self.scale)

    def adjoint(self, r):
        return nearest_up(r, self.scale) / float(self.scale**2)

    def gram_solve(self, r):
        return r * float(self.scale**2)

    def project(self, y, y_lr):
        # Same as the base class, without the two scalings that cancel.
        return y - nearest_up(self.down(y) - y_lr, self.scale)


class _Beam(Operator):
    """What the beam-spot operators share: an integer scale, a beam ``sigma`` in HR pixels
    (validated once here), a per-size cache, and their ``to_dict``."""

    def __post_init__(self):
        if isinstance(self.scale, bool) or int(self.scale) != self.scale or self.scale < 1:
            raise ConfigError(f"scale must be a positive integer, found {self.scale!r}")
        ok = isinstance(self.sigma, (int, float, np.integer, np.floating)) and not isinstance(self.sigma, bool)
        if not (ok and self.sigma >= 0 and math.isfinite(self.sigma)):
            raise ConfigError(f"beam sigma must be a finite number ≥ 0, found {self.sigma!r}")
        self.scale = int(self.scale)
        self._cache: dict = {}

    def to_dict(self) -> dict:
        return {"name": self.name, "scale": self.scale, "sigma": float(self.sigma)}


@dataclass(repr=False)
class GaussianBeam(_Beam):
    """Gaussian beam spot of standard deviation ``sigma`` HR pixels, then ``s × s`` block mean.

    The blur is periodic (circular) so the operator is exactly shift-invariant on the LR
    grid and its projection is exact.  ``sigma = 0`` is the block mean.
    """

    scale: int
    sigma: float = 1.0
    name = "gaussian"


    # --- spectra (cached per size) -------------------------------------------------
    def _psf_hat(self, h: int, w: int) -> np.ndarray:
        """Real, symmetric transfer function of the periodic Gaussian on an h × w grid."""
        key = ("psf", h, w)
        if key not in self._cache:
            # The sampled periodic kernel (not the analytic Gaussian spectrum) keeps the
            # transfer function exactly real, symmetric and of unit DC gain.
            ky = _periodic_gauss(h, self.sigma)
            kx = _periodic_gauss(w, self.sigma)
            hat = np.fft.fft(ky)[:, None].real * np.fft.rfft(kx)[None, :].real
            self._cache[key] = hat
        return self._cache[key]

    def _gram_hat(self, h: int, w: int) -> np.ndarray:
        """Transfer function of ``down ∘ adjoint`` on the LR grid (h × w LR pixels)."""
        key = ("gram", h, w)
        if key not in self._cache:
            delta = np.zeros((h, w))
            delta[0, 0] = 1.0
            impulse = self._down_np(self._adjoint_np(delta))
            self._cache[key] = np.fft.rfft2(impulse).real
        return self._cache[key]

    # --- numpy implementations ------------------------------------------------------
    def _blur_np(self, y: np.ndarray) -> np.ndarray:
        if self.sigma == 0:
            return y
        h, w = y.shape[-2:]
        out = np.fft.irfft2(np.fft.rfft2(y) * self._psf_hat(h, w), s=(h, w))
        return out

    def _down_np(self, y):
        return block_mean(self._blur_np(np.asarray(y, dtype=np.float64)), self.scale)

    def _adjoint_np(self, r):
        # blur is symmetric, so its adjoint is itself
        return self._blur_np(nearest_up(np.asarray(r, dtype=np.float64), self.scale) / self.scale**2)

    # --- public ---------------------------------------------------------------------
    def _blur(self, y):
        if not _is_torch(y):
            return self._blur_np(y)
        import torch

        if self.sigma == 0:
            return y
        h, w = y.shape[-2:]
        hat = torch.as_tensor(self._psf_hat(h, w), dtype=y.dtype, device=y.device)
        return torch.fft.irfft2(torch.fft.rfft2(y) * hat, s=(h, w))

    def down(self, y):
        if _is_torch(y):
            return block_mean(self._blur(y), self.scale)
        return self._down_np(y).astype(np.result_type(y, np.float32), copy=False)

    def adjoint(self, r):
        if _is_torch(r):
            return self._blur(nearest_up(r, self.scale) / float(self.scale**2))
        return self._adjoint_np(r).astype(np.result_type(r, np.float32), copy=False)

    def gram_cond(self, h: int, w: int) -> float:
        ghat = self._gram_hat(h, w)
        return float(ghat.max() / ghat.min()) if ghat.min() > 0 else math.inf

    def gram_solve(self, r):
        h, w = r.shape[-2:]
        ghat = self._gram_hat(h, w)
        if not ghat.min() * MAX_GRAM_COND >= ghat.max():
            raise ConfigError(
                f"Gaussian beam sigma={self.sigma} at scale {self.scale} on a {h}×{w} LR grid "
                "destroys frequencies the LR grid can hold (condition number of the Gram matrix "
                + (f"{ghat.max() / ghat.min():.2g}" if ghat.min() > 0 else "infinite")
                + f" > {MAX_GRAM_COND:.0e}); the projection "
                "is not defined to 1e-5 (use a smaller sigma)"
            )
        if _is_torch(r):
            import torch

            g = torch.as_tensor(ghat, dtype=r.dtype, device=r.device)
            return torch.fft.irfft2(torch.fft.rfft2(r) / g, s=(h, w))
        out = np.fft.irfft2(np.fft.rfft2(np.asarray(r, dtype=np.float64)) / ghat, s=(h, w))
        return out.astype(np.result_type(r, np.float32), copy=False)


@dataclass(repr=False)
class CoarseScan(_Beam):
    """A coarse, faster MA-XRF scan: step ``s`` HR pixels, continuous stage motion.

    Commercial MA-XRF scanners (the Bruker M6 Jetstream and the instruments built on the
    same principle) acquire "on the fly": the stage moves continuously along the fast axis
    (``x``, a row) while the detector integrates, and the dwell time of a pixel is the time
    the beam takes to cross one step; the slow axis (``y``) moves by one step between rows
    (Alfeld et al., J. Anal. At. Spectrom. 28 (2013) 760–767, "A mobile instrument for in
    situ scanning macro-XRF investigation of historical paintings", Sec. 2; Alfeld & Broekaert,
    Spectrochim. Acta B 88 (2013) 211–217).  So, with the HR maps taken as samples of the
    object on the HR grid and the beam a Gaussian of std ``sigma`` HR pixels:

    * fast axis: the LR value is the mean of the beam-blurred object over the step, i.e.
      the weights of HR pixel ``j`` in LR pixel ``i`` are ``Φ((j−c+s/2)/σ) − Φ((j−c−s/2)/σ)``
      with ``c = i·s + (s−1)/2`` the step's centre (a box of width ``s`` convolved with the
      beam);
    * slow axis: the beam sits on the row's centre ``c``: weights ``exp(−(j−c)²/2σ²)``
      (``sigma = 0``: linear interpolation at ``c``, the two middle rows for even ``s``).

    Each row of weights is normalised to sum 1 (so a flat map stays flat and the units are
    those of the HR maps; near the border the beam's truncated part is renormalised).  The
    operator is separable, ``down(Y) = A_y Y A_xᵀ``; the exact projection solves the two
    per-axis Gram systems ``A Aᵀ`` by Cholesky.  An operator whose Gram matrix is
    numerically singular (a beam far wider than the step) is refused.
    """

    scale: int
    sigma: float = 1.0
    name = "scan"


    def axis_matrix(self, n: int, kind: str) -> np.ndarray:
        """``(n / s, n)`` weights of one axis: ``kind`` ``fast`` (integrated) or ``slow`` (sampled)."""
        key = ("A", n, kind)
        if key not in self._cache:
            s, sig = self.scale, float(self.sigma)
            if n % s:
                raise ScanValidationError(f"coarse scan of step {s} needs a size divisible by {s}, "
                                          f"found {n}")
            c = np.arange(n // s)[:, None] * s + (s - 1) / 2.0
            d = np.arange(n)[None, :] - c
            if kind == "fast":
                if sig == 0:
                    a = (np.abs(d) < s / 2.0).astype(float)
                else:
                    from scipy.special import ndtr

                    a = ndtr((d + s / 2.0) / sig) - ndtr((d - s / 2.0) / sig)
            elif sig == 0:
                a = np.maximum(0.0, 1.0 - np.abs(d))
            else:
                a = np.exp(-0.5 * (d / sig) ** 2)
            self._cache[key] = a / a.sum(axis=1, keepdims=True)
        return self._cache[key]

    def _gram(self, n_lr: int, kind: str):
        """Cholesky factor (lower) of ``A Aᵀ`` for an axis of ``n_lr`` LR pixels."""
        key = ("G", n_lr, kind)
        if key not in self._cache:
            a = self.axis_matrix(n_lr * self.scale, kind)
            g = a @ a.T
            ev = np.linalg.eigvalsh(g)
            cond = ev.max() / ev.min() if ev.min() > 0 else math.inf
            self._cache[key] = (np.linalg.cholesky(g) if math.isfinite(cond) else None, cond)
        return self._cache[key]

    def gram_cond(self, h: int, w: int) -> float:
        return self._gram(h, "slow")[1] * self._gram(w, "fast")[1]

    def _grams(self, h: int, w: int):
        """Cholesky factors of both axes; the 2-D Gram matrix ``G_y ⊗ G_x`` has the product
        of the two axes' condition numbers, which must stay within :data:`MAX_SCAN_GRAM_COND`."""
        (ly, cy), (lx, cx) = self._gram(h, "slow"), self._gram(w, "fast")
        if not cy * cx <= MAX_SCAN_GRAM_COND:
            raise ConfigError(
                f"coarse scan with beam sigma={self.sigma} at step {self.scale} on a {h}×{w} LR "
                f"grid: the beam is so wide that the scan can hardly tell neighbouring steps apart "
                f"(singular Gram matrix, condition number {cy * cx:.2g} > {MAX_SCAN_GRAM_COND:.0e}); "
                "the projection is not defined to 1e-5 (use a smaller sigma)")
        return ly, lx

    def _mats(self, x, h: int, w: int):
        ay, ax = self.axis_matrix(h, "slow"), self.axis_matrix(w, "fast")
        if _is_torch(x):
            import torch

            ay = torch.as_tensor(ay, dtype=x.dtype, device=x.device)
            ax = torch.as_tensor(ax, dtype=x.dtype, device=x.device)
        return ay, ax

    def down(self, y):
        H, W = y.shape[-2:]
        ay, ax = self._mats(y, H, W)
        if _is_torch(y):
            return ay @ y @ ax.T
        y64 = np.asarray(y, dtype=np.float64)
        return (ay @ y64 @ ax.T).astype(np.result_type(y, np.float32), copy=False)

    def adjoint(self, r):
        h, w = r.shape[-2:]
        ay, ax = self._mats(r, h * self.scale, w * self.scale)
        if _is_torch(r):
            return ay.T @ r @ ax
        r64 = np.asarray(r, dtype=np.float64)
        return (ay.T @ r64 @ ax).astype(np.result_type(r, np.float32), copy=False)

    def gram_solve(self, r):
        h, w = r.shape[-2:]
        ly, lx = self._grams(h, w)
        if _is_torch(r):
            import torch

            ly = torch.as_tensor(ly, dtype=r.dtype, device=r.device)
            lx = torch.as_tensor(lx, dtype=r.dtype, device=r.device)
            q = torch.cholesky_solve(r, ly)                                  # G_y⁻¹ R
            return torch.cholesky_solve(q.transpose(-1, -2), lx).transpose(-1, -2)  # · G_x⁻¹
        from scipy.linalg import cho_solve

        r64 = np.asarray(r, dtype=np.float64)
        lead = r64.shape[:-2]
        q = np.moveaxis(r64.reshape(-1, h, w), 1, 0).reshape(h, -1)          # (h, n·w)
        q = cho_solve((ly, True), q).reshape(h, -1, w)
        q = np.moveaxis(q, 2, 0).reshape(w, -1)                              # (w, h·n)
        q = cho_solve((lx, True), q).reshape(w, h, -1)
        out = np.moveaxis(q, (0, 1, 2), (2, 1, 0)).reshape(*lead, h, w)
        return out.astype(np.result_type(r, np.float32), copy=False)


def _periodic_gauss(n: int, sigma: float) -> np.ndarray:
    """Sampled Gaussian of std ``sigma`` wrapped on a circle of ``n`` samples, sum 1."""
    if sigma == 0:
        k = np.zeros(n)
        k[0] = 1.0
        return k
    i = np.arange(n)
    d = np.minimum(i, n - i).astype(float)
    k = np.exp(-0.5 * (d / sigma) ** 2)
    return k / k.sum()


OPERATORS = {"blockmean": BlockMean, "gaussian": GaussianBeam, "scan": CoarseScan}


def make_operator(name: str = "blockmean", scale: int = 4, **kwargs) -> Operator:
    """Build an operator by name: ``blockmean``, ``gaussian`` or ``scan`` (``sigma=`` in HR
    pixels for the last two)."""
    if name not in OPERATORS:
        raise ConfigError(f"unknown operator {name!r}; expected one of: {', '.join(OPERATORS)}")
    extra = set(kwargs) - ({"sigma"} if name in ("gaussian", "scan") else set())
    if extra:
        raise ConfigError(f"operator {name!r} takes no parameter {', '.join(sorted(extra))} "
                          f"(sigma is for gaussian and scan)")
    return OPERATORS[name](scale, **kwargs)


def operator_from_dict(d: dict) -> Operator:
    d = dict(d)
    return make_operator(d.pop("name"), **d)
