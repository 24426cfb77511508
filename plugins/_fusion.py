"""Shared pieces of the HSI–MSI fusion baselines (CSTF, CMS, LTTR), private to the plugins.

These methods were designed for hyperspectral (HSI) + multispectral (MSI) fusion, where
the MSI is a *linear spectral response* of the high-resolution cube::

    RGB  =  R · X  (+ c)          R : (3, B) non-negative,   X : (B, H, W)

XRF maps and an RGB photograph share no spectral domain, so ``R`` is unknown and is
*estimated* from the low-resolution data, as HSI fusion benchmarks do when the camera
response is unknown: non-negative least squares with a free offset on the block-averaged
photograph, ``down(RGB) ≈ R · maps_lr + c`` (:func:`estimate_response`).  The spatial
degradation is the host's operator ``U`` (``down``/``adjoint``), used in place of the
papers' Gaussian blur + decimation; :class:`NormalSolver` solves the shifted normal
equations ``(a·I + Uᵀ U) z = r`` that every ADMM step of these methods needs, and
:func:`separable_factors` recovers the 1-D factors ``P_y``, ``P_x`` of a separable ``U``
(CSTF works on the two spatial modes separately).

Two adaptations of ours are shared by the three methods, so that they are done the same
way for all of them:

* **Weight of the RGB term** (:func:`rgb_term_weight`).  The papers weight the MSI term
  ``‖Y − R·Z‖²`` by 1 because their ``R`` is the camera's response, which explains the MSI
  up to sensor noise.  Here ``R`` is a 3 × B NNLS fit between two modalities that share no
  spectral domain; on the simulated paintings it leaves about half of the photograph's
  variation unexplained, yet a unit weight asks the solution to reproduce the photograph
  as closely as the LR maps.  The term is weighted by how well the fit explains the
  photograph instead, relative to how well the LR maps are known: the inverse-variance
  weight of :func:`rgb_term_weight`; ``weight_rgb=false`` restores the papers' unit
  weight.  Implemented once: ``w·‖Y − R·Z‖² = ‖√w·Y − √w·R·Z‖²``, so
  :meth:`FusionData.rgb_term` hands every method the scaled photograph and response, and
  the methods' own equations are unchanged.
* **Counts that follow the image size** (:func:`scaled_count`).  The public codes fix
  their atom and cluster counts for the size of their test images (512 × 512 CAVE); the
  counts are re-derived from the image size as each method's docstring says.

Measured (``paper`` presets, seed 0, on the tuning scenes sim-flowers seed 101 and
sim-virgin seed 102 at 256 px and sim-demo seed 7 at 128 px, where ``w`` = 0.110, 0.155,
0.076; raw PSNR, the methods' docstrings give clipped and projected figures too): the
weight gains LTTR 0.2 / 1.0 / 2.6 dB, leaves CMS unchanged (its final back-projection
onto ``{R·Z = Y}`` overrides what the weight changes) and costs CSTF 0.04 / 0.07 dB (demo-7 not run);
the image-size counts move the three methods by −0.18 to +0.03 dB, and make CSTF on
a 128-px scan 5.6× faster.

Shapes: maps are ``(B, H, W)`` (band/element first), LR maps ``(B, h, w)`` with
``h = H / s``; all values in the normalised units of :class:`maxrf_bench.MethodInputs`.
"""
from __future__ import annotations

import contextlib
import functools
from dataclasses import dataclass

import numpy as np
from scipy.optimize import nnls

import maxrf_bench as mb


# --- threads ---------------------------------------------------------------------------

def small_blas():
    """Context in which BLAS/LAPACK run on one thread.

    CMS, LTTR and K-SVD make thousands of small LAPACK/BLAS calls (per-cluster SVDs,
    inverses, atom updates); with a multi-threaded OpenBLAS on a busy machine each call
    can spin-wait for a preempted sibling thread (a 64 × 150 SVD was measured at 0.5 s
    instead of 1 ms).  Uses ``threadpoolctl`` when installed, else does nothing.
    """
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - optional speed-up
        return contextlib.nullcontext()
    return threadpool_limits(1, user_api="blas")


def one_blas_thread(run):
    """Decorator: run a whole method under :func:`small_blas`.

    Measured on the 2 shared cores of the development machine: CSTF ``fast`` on a
    32 × 32 scan took 59 s with OpenBLAS's 2 threads and 8 s with one.  On an idle
    machine the large products would gain at most 2× from the second thread.
    """
    @functools.wraps(run)
    def wrapper(*args, **kwargs):
        with small_blas():
            return run(*args, **kwargs)
    return wrapper


# --- spectral response ---------------------------------------------------------------

def estimate_response(maps_lr: np.ndarray, rgb_lr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Non-negative spectral response with offset: ``rgb_lr ≈ R · maps_lr + c``.

    ``maps_lr`` is ``(B, h, w)``, ``rgb_lr`` ``(b, h, w)`` (the photograph brought to the LR
    grid with the same operator ``U``).  Returns ``R`` ``(b, B)`` with ``R ≥ 0`` and the
    free offset ``c`` ``(b,)``.  The offset is eliminated exactly by centring (the least
    squares optimum over ``c`` is ``mean(rgb) - R·mean(maps)``), then each row of ``R``
    is a scipy NNLS problem.
    """
    x = np.asarray(maps_lr, dtype=np.float64).reshape(maps_lr.shape[0], -1)
    y = np.asarray(rgb_lr, dtype=np.float64).reshape(rgb_lr.shape[0], -1)
    if x.shape[1] != y.shape[1]:
        raise mb.ScanValidationError(
            f"spectral response: LR maps have {x.shape[1]} pixels, LR photograph {y.shape[1]}")
    xm, ym = x.mean(1), y.mean(1)
    xc = (x - xm[:, None]).T  # (n, B)
    r = np.zeros((y.shape[0], x.shape[0]))
    for band in range(y.shape[0]):
        r[band], _ = nnls(xc, y[band] - ym[band], maxiter=50 * x.shape[0] + 100)
    c = ym - r @ xm
    return r, c


def explained_variance(maps_lr: np.ndarray, rgb_lr: np.ndarray, response: np.ndarray,
                       offset: np.ndarray) -> float:
    """How well ``R·maps_lr + c`` explains the photograph on the LR grid: the coefficient
    of determination ``R² = 1 − ‖rgb_lr − R·maps_lr − c‖² / ‖rgb_lr − mean‖²`` over all
    bands and pixels, clipped to ``[0, 1]`` (1: the photograph is a linear response of
    the maps, as the papers assume; 0: the fit explains nothing)."""
    x = np.asarray(maps_lr, dtype=np.float64)
    y = np.asarray(rgb_lr, dtype=np.float64)
    fit = np.einsum("cb,byx->cyx", response, x) + np.asarray(offset)[:, None, None]
    total = float(((y - y.mean(axis=(-2, -1), keepdims=True)) ** 2).sum())
    if total <= 0:  # a flat photograph: nothing to explain, nothing to trust
        return 0.0
    return float(np.clip(1.0 - ((y - fit) ** 2).sum() / total, 0.0, 1.0))


def noise_std(maps: np.ndarray) -> float:
    """Noise standard deviation of ``(B, h, w)`` maps, by Donoho's robust estimator on the
    finest diagonal Haar details (``median|HH| / 0.6745`` per map; RMS over the maps, as
    the data term sums them alike).  Texture leaks into ``HH``, so this errs high."""
    x = np.asarray(maps, dtype=np.float64)
    h, w = (x.shape[-2] // 2) * 2, (x.shape[-1] // 2) * 2
    if h == 0 or w == 0:
        return 0.0
    x = x[..., :h, :w]
    hh = (x[..., 0::2, 0::2] - x[..., 0::2, 1::2] - x[..., 1::2, 0::2] + x[..., 1::2, 1::2]) / 2
    per_map = np.median(np.abs(hh).reshape(x.shape[0], -1), axis=1) / 0.6745
    return float(np.sqrt(np.mean(per_map ** 2)))


def rgb_term_weight(maps_lr: np.ndarray, rgb_lr: np.ndarray, response: np.ndarray,
                    offset: np.ndarray) -> float:
    """Weight ``w`` of the RGB data term: ``min(1, σ²_maps / σ²_fit)``.

    Read the objective ``‖X − ZH‖² + w‖Y − RZ‖²`` as a Gaussian likelihood: each term is
    weighted by the inverse variance of what it leaves unexplained.  For the LR maps that
    is their noise, ``σ_maps`` (:func:`noise_std`); for the photograph it is the misfit of
    the estimated response, ``σ²_fit`` = mean of ``(rgb_lr − R·maps_lr − c)²`` over the LR
    grid.  The papers' unit weight is the case they simulate, where the MSI is ``R·Z`` plus
    sensor noise as small as the HSI's (``σ_fit ≈ σ_maps``); a photograph that the response
    explains exactly keeps ``w = 1`` (the cap), one the response does not explain (noise)
    gets ``w ≈ σ²_maps / var(photograph)``.  Both variances come from the data only, per
    entry in the normalised units (maps in [0, 1], photograph in [0, 1]).  The misfit is
    measured where it can be, on the LR grid; block averaging has already removed part of
    a fine-grained misfit there (white misfit shrinks by ``s²``), and ``noise_std`` errs
    high, so ``w`` errs towards the papers' 1.  Not tuned: on the tuning scenes a smaller
    constant weight would have scored higher (near 0.01 for LTTR, 0 for CSTF; the
    docstrings of the methods give the sweeps).
    """
    x = np.asarray(maps_lr, dtype=np.float64)
    y = np.asarray(rgb_lr, dtype=np.float64)
    fit = np.einsum("cb,byx->cyx", response, x) + np.asarray(offset)[:, None, None]
    misfit = float(((y - fit) ** 2).mean())
    noise = noise_std(x) ** 2
    tiny = 1e-12  # exact synthetic data: both ~0, the papers' case
    return float(min(1.0, (noise + tiny) / (misfit + tiny)))


@dataclass
class FusionData:
    """The fusion problem in the papers' notation, built from :class:`MethodInputs`.

    ``x_lr``: ``(B, h, w)`` LR maps (the "LR-HSI"); ``msi``: ``(b, H, W)`` photograph minus
    the estimated offset, clipped at 0 (the "HR-MSI" ``= R·X``); ``response``: ``R``
    ``(b, B)``; ``offset``: ``c`` ``(b,)``; ``operator``: the host's ``U``;
    ``explained``: :func:`explained_variance` of the fit; ``rgb_weight``: the weight ``w``
    of the RGB term (1 when the papers' unit weight is asked for).
    """

    x_lr: np.ndarray
    msi: np.ndarray
    response: np.ndarray
    offset: np.ndarray
    operator: mb.Operator
    explained: float = 1.0
    rgb_weight: float = 1.0

    @property
    def scale(self) -> int:
        return int(self.operator.scale)

    @property
    def hr_shape(self) -> tuple[int, int]:
        return self.msi.shape[-2:]

    def rgb_term(self) -> tuple[np.ndarray, np.ndarray]:
        """``(√w·Y, √w·R)``: with these in place of the photograph and the response, every
        least-squares RGB term ``‖Y − R·Z‖²`` of a method becomes ``w·‖Y − R·Z‖²``.  Use the
        unscaled :attr:`msi` wherever the photograph is used for anything else (clustering,
        self-representation, dictionary initialisation)."""
        g = float(np.sqrt(self.rgb_weight))
        return g * self.msi, g * self.response

    def bicubic(self) -> np.ndarray:
        """Bicubic upsampling of the LR maps (the initialisation the public codes use)."""
        return mb.upsample(self.x_lr, self.scale, "bicubic")


def fusion_data(inputs: mb.MethodInputs, weight_rgb: bool = True) -> FusionData:
    """Estimate ``R`` and the offset from the LR data and build the fusion problem.

    The offset-corrected photograph is clipped at 0, as the wrappers of the public
    HSI-fusion benchmark (hif-benchmarking) do after their own response estimate.  With
    ``weight_rgb`` the RGB term gets the weight :func:`rgb_term_weight`; without, the
    papers' weight 1.
    """
    x_lr = np.asarray(inputs.maps_lr.values, dtype=np.float64)
    rgb = np.asarray(inputs.rgb.values, dtype=np.float64)
    if not (np.isfinite(x_lr).all() and np.isfinite(rgb).all()):
        raise mb.ScanValidationError("fusion baselines need finite LR maps and photograph; found NaN/Inf")
    op = inputs.operator
    rgb_lr = np.asarray(op.down(rgb), dtype=np.float64)
    if rgb_lr.shape[-2:] != x_lr.shape[-2:]:
        raise mb.ScanValidationError(
            f"LR maps are {x_lr.shape[-2]}×{x_lr.shape[-1]} but the photograph brought to the LR "
            f"grid is {rgb_lr.shape[-2]}×{rgb_lr.shape[-1]}")
    r, c = estimate_response(x_lr, rgb_lr)
    msi = np.clip(rgb - c[:, None, None], 0, None)
    explained = explained_variance(x_lr, rgb_lr, r, c)
    weight = rgb_term_weight(x_lr, rgb_lr, r, c) if weight_rgb else 1.0
    return FusionData(x_lr, msi, r, c, op, explained, weight)


def scaled_count(n_items: int, per_unit: float, lo: int = 1) -> int:
    """``round(n_items / per_unit)`` clamped to ``[lo, n_items]``: a count (clusters) that
    keeps ``per_unit`` items (patches) per group whatever the image size."""
    if not per_unit > 0:
        raise mb.ConfigError(f"expected a positive number of items per group, found {per_unit}")
    return int(min(max(lo, round(n_items / per_unit)), n_items))


def n_patches(shape: tuple[int, int], patch: int, step: int) -> int:
    """Number of patches :func:`extract_patches` takes from an ``(H, W)`` image."""
    return len(patch_starts(shape[0], patch, step)) * len(patch_starts(shape[1], patch, step))


# --- spatial operator ----------------------------------------------------------------

class NormalSolver:
    """Solves ``(a_b·I + Uᵀ U) z_b = r_b`` for every band ``b`` (``a`` scalar or ``(B,)``).

    With the Woodbury identity ``(aI + UᵀU)⁻¹ = (I - Uᵀ (aI + UUᵀ)⁻¹ U) / a`` only the
    LR Gram ``UUᵀ`` must be inverted.  For the host's operators (block mean, periodic
    Gaussian beam) it is circulant on the LR grid; its transfer function is measured
    from an impulse and the circulant model is *checked* on a random array — if the
    check fails the solver falls back to conjugate gradients on the HR grid.
    """

    def __init__(self, operator: mb.Operator, hr_shape: tuple[int, int], seed: int = 0):
        self.op = operator
        H, W = hr_shape
        s = int(operator.scale)
        h, w = H // s, W // s
        delta = np.zeros((h, w))
        delta[0, 0] = 1.0
        impulse = np.asarray(operator.down(operator.adjoint(delta)), dtype=np.float64)
        self.gram_hat = np.fft.rfft2(impulse).real
        probe = np.random.default_rng(seed).standard_normal((h, w))
        direct = np.asarray(operator.down(operator.adjoint(probe)), dtype=np.float64)
        model = np.fft.irfft2(np.fft.rfft2(probe) * self.gram_hat, s=(h, w))
        self.circulant = bool(np.abs(direct - model).max() <= 1e-8 * (np.abs(direct).max() + 1e-30))
        self.lr_shape = (h, w)

    def utu(self, z: np.ndarray) -> np.ndarray:
        return np.asarray(self.op.adjoint(self.op.down(z)), dtype=np.float64)

    def solve(self, r: np.ndarray, a, z0: np.ndarray | None = None, cg_iters: int = 200,
              cg_tol: float = 1e-8) -> np.ndarray:
        a = np.asarray(a, dtype=np.float64)
        a_b = a.reshape(-1, 1, 1) if a.ndim else a
        if self.circulant:
            ur = np.asarray(self.op.down(r), dtype=np.float64)
            h, w = self.lr_shape
            inner = np.fft.irfft2(np.fft.rfft2(ur) / (a_b + self.gram_hat), s=(h, w))
            return (r - np.asarray(self.op.adjoint(inner), dtype=np.float64)) / a_b
        return self._cg(r, a_b, z0, cg_iters, cg_tol)

    def _cg(self, r, a_b, z0, iters, tol):
        """Per-band conjugate gradients (bands are independent systems)."""
        z = np.zeros_like(r) if z0 is None else z0.copy()
        res = r - (a_b * z + self.utu(z))
        p = res.copy()
        rr = (res * res).sum(axis=(-2, -1), keepdims=True)
        stop = tol**2 * (r * r).sum(axis=(-2, -1), keepdims=True)
        for _ in range(iters):
            if np.all(rr <= stop):
                break
            ap = a_b * p + self.utu(p)
            alpha = rr / np.maximum((p * ap).sum(axis=(-2, -1), keepdims=True), 1e-300)
            z += alpha * p
            res -= alpha * ap
            rr_new = (res * res).sum(axis=(-2, -1), keepdims=True)
            p = res + (rr_new / np.maximum(rr, 1e-300)) * p
            rr = rr_new
        return z


def separable_factors(operator: mb.Operator, hr_shape: tuple[int, int]
                      ) -> tuple[np.ndarray, np.ndarray]:
    """1-D factors of a separable ``U``: ``down(X) = P_y @ X @ P_xᵀ`` for every ``(H, W)`` X.

    Measured by applying ``down`` to row- and column-indicator images (in chunks, so the
    probe stays under ~64 MB) and checked on a random image.  Raises
    :class:`maxrf_bench.ConfigError` when ``U`` is not separable (CSTF needs separability:
    its spatial dictionaries live on the y and x modes).
    """
    H, W = hr_shape
    down = operator.down
    m = np.asarray(down(np.ones((H, W))), dtype=np.float64)  # = a bᵀ with a = P_y 1, b = P_x 1
    a_t, b_t = m.mean(1), m.mean(0)  # ∝ a and ∝ b
    chunk = max(1, int(8e6 // (H * W)))

    def probe(n, make):
        cols = []
        for i0 in range(0, n, chunk):
            idx = np.arange(i0, min(n, i0 + chunk))
            cols.append(np.asarray(down(make(idx)), dtype=np.float64))
        return np.concatenate(cols)  # (n, h, w)

    def rows(idx):
        x = np.zeros((len(idx), H, W))
        x[np.arange(len(idx)), idx, :] = 1.0
        return x

    def columns(idx):
        x = np.zeros((len(idx), H, W))
        x[np.arange(len(idx)), :, idx] = 1.0
        return x

    q = probe(H, rows)      # q[i] = P_y[:, i] bᵀ
    r = probe(W, columns)   # r[j] = a P_x[:, j]ᵀ
    py = np.einsum("ihw,w->hi", q, b_t) / (b_t @ b_t)  # = P_y / mean(a)
    px = np.einsum("jhw,h->wj", r, a_t) / (a_t @ a_t)  # = P_x / mean(b)
    gain = np.sqrt(max(m.mean(), 1e-300))
    py, px = py * gain, px * gain
    test = np.random.default_rng(0).standard_normal((H, W))
    want = np.asarray(down(test), dtype=np.float64)
    got = py @ test @ px.T
    if np.abs(want - got).max() > 1e-6 * (np.abs(want).max() + 1e-30):
        raise mb.ConfigError(
            f"CSTF needs a separable spatial operator (blur along y then x); operator "
            f"{operator!r} is not separable (error {np.abs(want - got).max():.2e})")
    return py, px


# --- clustering and patches ----------------------------------------------------------

def kmeans(x: np.ndarray, k: int, rng: np.random.Generator, max_iter: int = 60) -> np.ndarray:
    """Lloyd's k-means with k-means++ seeding (as ``kmeansPlus.m`` of the CMS code).

    ``x`` is ``(n, d)``; returns labels ``(n,)`` in ``[0, k')`` with no empty cluster
    (``k' ≤ k``).  Stops when the labels stop changing (as the public codes) or after
    ``max_iter`` passes (a cap of ours that bounds the run time on large scans).
    Distances are computed in float32 chunks on one BLAS thread (see :func:`small_blas`).
    """
    import scipy.sparse as sp

    x = np.asarray(x, dtype=np.float64)
    n = x.shape[0]
    k = int(min(k, n))
    x32 = x.astype(np.float32)
    xx = (x * x).sum(1)
    centres = np.empty((k, x.shape[1]))
    centres[0] = x[rng.integers(n)]
    with small_blas():
        d2 = np.maximum(xx - 2 * x @ centres[0] + centres[0] @ centres[0], 0)
        for i in range(1, k):
            total = d2.sum()
            j = rng.integers(n) if total <= 0 else int(np.searchsorted(np.cumsum(d2), rng.random() * total))
            centres[i] = x[min(j, n - 1)]
            d2 = np.minimum(d2, np.maximum(xx - 2 * x @ centres[i] + centres[i] @ centres[i], 0))
        labels = np.full(n, -1)
        chunk = 16384
        for _ in range(max_iter):
            c32 = centres.astype(np.float32)
            cc = (c32 * c32).sum(1)
            new = np.concatenate([(cc[None, :] - 2 * x32[i:i + chunk] @ c32.T).argmin(1)
                                  for i in range(0, n, chunk)])
            if np.array_equal(new, labels):
                break
            labels = new
            onehot = sp.csr_matrix((np.ones(n), (labels, np.arange(n))), shape=(k, n))
            counts = np.bincount(labels, minlength=k)
            keep = counts > 0
            centres[keep] = (onehot @ x)[keep] / counts[keep, None]
    _, labels = np.unique(labels, return_inverse=True)
    return labels


def capped_groups(labels: np.ndarray, features: np.ndarray, max_size: int) -> list[np.ndarray]:
    """Index arrays of the clusters, splitting any cluster larger than ``max_size``.

    This is the memory cap of CMS and LTTR (their per-cluster matrices grow as the
    square of a cluster's size).  A too-large cluster is ordered along its first
    principal direction and cut into near-equal contiguous chunks, so each chunk still
    holds mutually similar patches.
    """
    groups = []
    order = np.argsort(labels, kind="stable")
    bounds = np.flatnonzero(np.diff(labels[order])) + 1
    for idx in np.split(order, bounds):
        if len(idx) <= max_size:
            groups.append(idx)
            continue
        f = features[idx] - features[idx].mean(0)
        # first principal direction by a few power iterations (cheap, deterministic)
        v = np.ones(f.shape[1]) / np.sqrt(f.shape[1])
        for _ in range(20):
            v = f.T @ (f @ v)
            nv = np.linalg.norm(v)
            if nv == 0:
                break
            v /= nv
        idx = idx[np.argsort(f @ v, kind="stable")]
        parts = -(-len(idx) // max_size)
        groups.extend(np.array_split(idx, parts))
    return groups


def patch_starts(size: int, patch: int, step: int) -> np.ndarray:
    """Top-left offsets of patches of ``patch`` pixels every ``step``, covering the border."""
    if size < patch:
        raise mb.ScanValidationError(f"image of {size} pixels is smaller than the {patch}-pixel patch")
    starts = np.arange(0, size - patch + 1, step)
    if starts[-1] != size - patch:
        starts = np.append(starts, size - patch)
    return starts


def extract_patches(img: np.ndarray, patch: int, step: int, dtype=None) -> np.ndarray:
    """``(C, H, W)`` → ``(n, C, patch, patch)`` patches on the :func:`patch_starts` grid."""
    ys = patch_starts(img.shape[-2], patch, step)
    xs = patch_starts(img.shape[-1], patch, step)
    view = np.lib.stride_tricks.sliding_window_view(img, (patch, patch), axis=(-2, -1))
    out = view[:, ys[:, None], xs[None, :]]  # (C, ny, nx, p, p), no larger temporary
    out = np.moveaxis(out, 0, 2).reshape(len(ys) * len(xs), img.shape[0], patch, patch)
    return np.ascontiguousarray(out, dtype=dtype or img.dtype)


def aggregate_patches(patches: np.ndarray, shape: tuple[int, int], patch: int, step: int
                      ) -> np.ndarray:
    """Average overlapping ``(n, C, p, p)`` patches back into a ``(C, H, W)`` image."""
    H, W = shape
    ys = patch_starts(H, patch, step)
    xs = patch_starts(W, patch, step)
    c = patches.shape[1]
    grid = patches.reshape(len(ys), len(xs), c, patch, patch)
    out = np.zeros((c, H, W))
    cnt = np.zeros((H, W))
    for i in range(patch):
        for j in range(patch):
            out[:, (ys + i)[:, None], (xs + j)[None, :]] += np.moveaxis(grid[:, :, :, i, j], 2, 0)
            cnt[(ys + i)[:, None], (xs + j)[None, :]] += 1
    return out / cnt


def relative_change(new: np.ndarray, old: np.ndarray) -> float:
    """``‖new − old‖ / ‖old‖``: the data-only stopping criterion used in place of the
    public codes' ground-truth PSNR checks."""
    return float(np.linalg.norm(new - old) / max(np.linalg.norm(old), 1e-12))
