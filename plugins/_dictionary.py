"""Numerical building blocks shared by the ``ssr`` and ``ssrcu`` baselines (the guided
filter's box sums are in :mod:`maxrf_bench_plugins._box`).

Private module (no hooks).  Inputs and outputs are numpy arrays; the iterations (the PALM
code and residual steps, TV super-resolution, the FGP TV prox) run in torch on float32
tensors that share the arrays' memory, so that their elementwise passes use torch's CPU
threads (numpy's are single-threaded); the small dictionary problems and the
initialisation stay in numpy.  Everything is vectorised over the leading (map) axis and
memory-bounded: the largest arrays are a few copies of the ``(M, H, W)`` code maps.  torch
is imported when a solver runs, not with the module.

Conventions
-----------
* Maps are ``(..., H, W)``; ``op`` is the host operator ``U`` (``op.down`` = ``Y U``,
  ``op.adjoint`` = ``R U^T``, exact transpose).
* Data terms on the LR grid are weighted by ``s²`` (``s = op.scale``) so that one LR pixel
  weighs as much as the ``s²`` HR pixels it summarises; then ``||s² U^T U|| = 1`` for the
  block mean and ``≤ 1`` for the Gaussian beam, and regularisation weights read "per HR
  pixel", independent of the scale.
"""
from __future__ import annotations

import math
from contextlib import contextmanager

import numpy as np


@contextmanager
def blas_single_thread():
    """Run the enclosed code with one BLAS thread (when ``threadpoolctl`` is installed).

    The products here are thin (``(B or 3) × M`` by ``M × N``) and memory-bound; on a busy
    machine OpenBLAS's spinning worker threads made them ~20× slower than one thread.
    """
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # optional: correct without it, only slower under contention
        yield
        return
    with threadpool_limits(1, "blas"):
        yield


def mm(d: np.ndarray, a: np.ndarray) -> np.ndarray:
    """``d @ a`` for a small ``(p, m)`` matrix and a wide ``(m, n)`` one, without BLAS threads."""
    return np.einsum("pm,mn->pn", d, a)


# --------------------------------------------------------------------------------------
# Operator gain: rho = s² ||U||² (Lipschitz constant of the s²-weighted data term)
# --------------------------------------------------------------------------------------


def operator_gain(op, shape_hw: tuple[int, int], n_iter: int = 20, seed: int = 0) -> float:
    """``s² · ||U||²`` by power iteration on ``U^T U`` (1 for the block mean)."""
    s2 = float(op.scale**2)
    rng = np.random.default_rng(seed)
    v = rng.standard_normal(shape_hw)
    v /= np.linalg.norm(v)
    lam = 0.0
    for _ in range(n_iter):
        w = np.asarray(op.adjoint(op.down(v)), dtype=np.float64)
        lam = float(np.linalg.norm(w))
        if lam == 0:
            return 1.0
        v = w / lam
    return s2 * lam * 1.01  # small margin: power iteration approaches from below


# --------------------------------------------------------------------------------------
# Total variation: isotropic TV and its proximal map (Beck & Teboulle FGP, box constraint)
# --------------------------------------------------------------------------------------


def _grad(x):
    """Forward differences with Neumann boundary: (dy, dx), each shaped like x."""
    dy = np.zeros_like(x)
    dx = np.zeros_like(x)
    dy[..., :-1, :] = x[..., 1:, :] - x[..., :-1, :]
    dx[..., :, :-1] = x[..., :, 1:] - x[..., :, :-1]
    return dy, dx


def tv(x: np.ndarray) -> np.ndarray:
    """Isotropic total variation of each map of ``x`` ``(..., H, W)``, shape ``(...)``."""
    dy, dx = _grad(np.asarray(x))
    return np.sqrt(dy * dy + dx * dx).sum(axis=(-2, -1), dtype=np.float64)


def tv_prox(v, weight, dual=None, n_iter: int = 5, lo=None, hi=None):
    """``argmin_x ½||x - v||² + weight·TV(x)`` subject to ``lo ≤ x ≤ hi``, per map.

    Fast gradient projection on the dual (Beck & Teboulle, TIP 18(11) 2009, Alg. FGP with
    box constraint).  ``weight`` is a scalar or one value per leading map (shape
    ``(K,)``).  ``dual`` = (py, px) from a previous call warm-starts the iteration (the dual
    lives in the unit ball whatever ``weight`` is, so it stays a good guess while an outer
    loop changes ``v`` slowly); it is consumed (its buffers are reused).  Returns
    ``(x, dual)`` as numpy arrays for a numpy ``v`` and as torch tensors for a torch one
    (the work is done by :func:`_tv_prox_t`, in torch, on torch's threads).
    """
    import torch

    if isinstance(v, torch.Tensor):
        return _tv_prox_t(v, weight, dual, n_iter, lo, hi)
    v = np.asarray(v)
    dual_t = None if dual is None else tuple(torch.from_numpy(np.asarray(d)) for d in dual)
    x, (py, px) = _tv_prox_t(torch.from_numpy(v), weight, dual_t, n_iter, lo, hi)
    return x.numpy(), (py.numpy(), px.numpy())


def _tv_prox_t(v, weight, dual, n_iter: int, lo, hi):
    """:func:`tv_prox` on torch tensors: in-place arithmetic on preallocated buffers,
    about a dozen passes over the data per iteration."""
    import torch

    dt = v.dtype
    w = torch.as_tensor(weight, dtype=dt)
    if w.ndim == 1:
        w = w.reshape(-1, *([1] * (v.ndim - 1)))
    inv = (1.0 / 8.0) / torch.clamp_min(w, 1e-12)
    if dual is None:
        py = torch.zeros_like(v)
        px = torch.zeros_like(v)
    else:
        py, px = dual
    ry, rx = py.clone(), px.clone()
    x = torch.empty_like(v)
    gy = torch.empty_like(v)
    gx = torch.empty_like(v)
    norm = torch.empty_like(v)
    t = 1.0
    for _ in range(n_iter):
        _div_into(ry, rx, x)
        torch.addcmul(v, x, w, out=x)
        _clip_into(x, lo, hi)
        _grad_into(x, gy, gx)
        torch.addcmul(ry, gy, inv, out=gy)
        torch.addcmul(rx, gx, inv, out=gx)  # (gy, gx) = q before the projection on the unit ball
        torch.mul(gy, gy, out=norm).addcmul_(gx, gx).sqrt_().clamp_min_(1.0)
        gy.div_(norm)
        gx.div_(norm)
        t_new = (1 + math.sqrt(1 + 4 * t * t)) / 2
        mom = (t - 1) / t_new
        # r = q + mom (q - p), computed in p's buffer; then p <- q and the old r is spare
        if mom == 0:
            py.copy_(gy)
            px.copy_(gx)
        else:
            py.sub_(gy).mul_(-mom).add_(gy)
            px.sub_(gx).mul_(-mom).add_(gx)
        ry, py, gy = py, gy, ry
        rx, px, gx = px, gx, rx
        t = t_new
    _div_into(py, px, x)
    torch.addcmul(v, x, w, out=x)
    _clip_into(x, lo, hi)
    return x, (py, px)


def _div_into(py, px, out):
    """``out = div(p)``, the discrete divergence (negative adjoint of :func:`_grad`), without
    temporaries."""
    out[..., :-1, :].copy_(py[..., :-1, :])
    out[..., -1, :] = 0
    out[..., 1:, :].sub_(py[..., :-1, :])
    out[..., :, :-1].add_(px[..., :, :-1])
    out[..., :, 1:].sub_(px[..., :, :-1])


def _grad_into(x, gy, gx):
    import torch

    torch.sub(x[..., 1:, :], x[..., :-1, :], out=gy[..., :-1, :])
    gy[..., -1, :] = 0
    torch.sub(x[..., :, 1:], x[..., :, :-1], out=gx[..., :, :-1])
    gx[..., :, -1] = 0


def _clip_into(x, lo, hi):
    if lo is not None or hi is not None:
        x.clamp_(lo, hi)


def _tv_t(x):
    """:func:`tv` of a torch tensor ``(..., H, W)``, float64 sums."""
    import torch

    dy = torch.zeros_like(x)
    dx = torch.zeros_like(x)
    _grad_into(x, dy, dx)
    return torch.sqrt(dy.mul_(dy).addcmul_(dx, dx)).sum(dim=(-2, -1), dtype=torch.float64)


# --------------------------------------------------------------------------------------
# TV super-resolution: argmin_X (s²/2)||U X - Y_lr||² + mu·TV(X)    (FISTA + FGP prox)
# --------------------------------------------------------------------------------------


def tv_superresolve(y_lr: np.ndarray, op, mu: float, n_iter: int = 100, tol: float = 1e-4,
                    x0: np.ndarray | None = None, inner: int = 3, progress=None,
                    rho: float | None = None) -> tuple[np.ndarray, int]:
    """TV-regularised super-resolution of every map of ``y_lr`` ``(K, h, w)``::

        argmin_X  (s²/2)||U(X) - Y_lr||² + mu·TV(X)          (independently per map)

    Monotone FISTA (MFISTA, Beck & Teboulle, TIP 18(11) 2009, the TV-deblurring paper: plain
    FISTA can diverge with an inexact TV prox) with step ``1/rho``; the prox by warm-started
    FGP (``inner`` iterations).  Starts from bicubic unless ``x0`` is given.  Stops after
    ``n_iter`` iterations or when the relative change of the iterate falls below ``tol``
    (data only).  Returns ``(X, iterations)``.
    """
    import torch

    import maxrf_bench as mb

    y_lr = np.asarray(y_lr, dtype=np.float32)
    x = (mb.upsample(y_lr, op.scale, "bicubic") if x0 is None else x0).astype(np.float32)
    if mu <= 0:
        return np.asarray(op.project(x, y_lr), dtype=np.float32), 0
    if rho is None:
        rho = operator_gain(op, x.shape[-2:])
    s2 = float(np.float32(op.scale**2))
    step = float(np.float32(1.0 / rho))
    weight = float(np.float32(step) * np.float32(mu))
    yl = torch.from_numpy(y_lr)
    x = torch.from_numpy(np.ascontiguousarray(x))

    def objective(v):  # per map, float64
        r = _down(op, v) - yl
        return 0.5 * s2 * (r * r).sum(dim=(-2, -1), dtype=torch.float64) + mu * _tv_t(v)

    f_x = objective(x)
    yk = x.clone()
    t = 1.0
    dual = None
    it = 0
    for it in range(1, n_iter + 1):
        grad = _adjoint_s2(op, _down(op, yk) - yl)
        u, dual = _tv_prox_t(yk.sub_(grad.mul_(step)), weight, dual, inner, None, None)
        f_u = objective(u)
        better = f_u <= f_x  # MFISTA: keep the better of u and x, per map
        x_new = torch.where(better[:, None, None], u, x)
        f_x = torch.where(better, f_u, f_x)
        t_new = (1 + math.sqrt(1 + 4 * t * t)) / 2
        yk = (torch.sub(u, x_new).mul_(t / t_new).add_(x_new)
              .add_(torch.sub(x_new, x).mul_((t - 1) / t_new)))
        # change of the proximal candidate (x itself may stay put in a monotone step)
        change = float(torch.linalg.vector_norm(u - x) / max(float(torch.linalg.vector_norm(u)), 1e-12))
        x, t = x_new, t_new
        if progress is not None:
            progress(it, n_iter, f"TV-SR change {change:.2e}")
        if change < tol:
            break
    return x.numpy(), it


# --------------------------------------------------------------------------------------
# k-means (Lloyd, k-means++ seeding) for dictionary initialisation
# --------------------------------------------------------------------------------------


def kmeans(x: np.ndarray, k: int, rng: np.random.Generator, n_iter: int = 30,
           max_samples: int = 20000) -> tuple[np.ndarray, np.ndarray]:
    """Cluster the rows of ``x`` ``(n, d)``; returns ``(centres (k, d), labels (n,))``.

    At most ``max_samples`` rows are used to fit (memory and time bounded); all rows are
    labelled at the end.
    """
    x = np.asarray(x, dtype=np.float64)
    n = x.shape[0]
    k = max(1, min(k, n))
    fit = x if n <= max_samples else x[rng.choice(n, max_samples, replace=False)]
    # k-means++ seeding
    centres = [fit[rng.integers(len(fit))]]
    d2 = ((fit - centres[0]) ** 2).sum(1)
    for _ in range(1, k):
        total = d2.sum()
        if total <= 0:
            centres.append(fit[rng.integers(len(fit))])
        else:
            centres.append(fit[rng.choice(len(fit), p=d2 / total)])
        d2 = np.minimum(d2, ((fit - centres[-1]) ** 2).sum(1))
    c = np.array(centres)
    for _ in range(n_iter):
        lab = _nearest(fit, c)
        new = c.copy()
        for j in range(k):
            sel = lab == j
            if sel.any():
                new[j] = fit[sel].mean(0)
        if np.allclose(new, c):
            break
        c = new
    return c, _nearest(x, c)


def _nearest(x: np.ndarray, c: np.ndarray, chunk: int = 65536) -> np.ndarray:
    out = np.empty(len(x), dtype=np.int64)
    cc = (c**2).sum(1)
    for i in range(0, len(x), chunk):
        xi = x[i:i + chunk]
        out[i:i + chunk] = np.argmin(cc[None, :] - 2 * xi @ c.T, axis=1)
    return out


# --------------------------------------------------------------------------------------
# Coupled XRF/RGB spectral representation, solved by PALM (shared by SSR and SSRCU)
# --------------------------------------------------------------------------------------


def coupled_palm(y_lr: np.ndarray, z: np.ndarray, op, *, m_c: int, m_xu: int = 0, m_ru: int = 0,
                 gamma: float = 1.0, lam=(1e-3, 1e-3, 1e-3), tv_w=(1e-3, 1e-3, 0.0),
                 n_outer: int = 100, n_code: int = 3, n_dict: int = 10, tol: float = 1e-4,
                 tv_inner: int = 1, seed: int = 0, progress=None, mu_residual: float = 0.0) -> dict:
    """Coupled non-negative sparse representation of the LR XRF cube and the HR RGB.

    Model (SSRCU, paper Eqs. 1-2; SSR is the case ``m_xu = m_ru = 0``)::

        Y = Dcx Ac + Dxu Axu         (B × N, HR XRF; observed only as Y_lr = U(Y))
        Z = Dcr Ac + Dru Aru         (3 × N, HR RGB)

    Objective, minimised over codes and dictionaries::

        (s²/2)||U(Dx A) - Y_lr||² + (gamma/2)||Dr A - Z||²
          + Σ_b lam_b ||A_b||_1 + Σ_b tv_b TV(A_b),      b ∈ {c, xu, ru}
        s.t. 0 ≤ A ≤ 1,  0 ≤ Dx ≤ dmax,  0 ≤ Dr ≤ 1

    with ``Dx = [Dcx Dxu 0]``, ``Dr = [Dcr 0 Dru]`` (the zero blocks are kept zero: Eq. 4)
    and ``A = [Ac; Axu; Aru]``.  PALM (Bolte et al. 2014; template: Lanaras et al. 2015)
    alternates ``n_code`` FISTA steps on ``A`` (step ``1/L_A``,
    ``L_A = rho||Dx||² + gamma||Dr||²``; prox = FGP TV with the box, after the l1 shift,
    which is exact for the l1 on the non-negative orthant) with ``n_dict`` projected
    gradient steps on each dictionary (on its Gram matrix, so they cost ``O(M²)``).

    Initialisation (ours): the common atoms are colour classes -- k-means of the LR
    photograph ``U(Z)`` -- with ``Dcx`` their mean XRF spectra; ``Ac`` is the one-hot
    colour class of every HR pixel; unique atoms come from k-means of the positive part of
    the LR residuals (XRF and RGB), unique codes start at zero.  So the common part starts
    as "what the colour predicts" and the unique part must earn its energy.

    ``mu_residual > 0`` (SSR) adds a free HR component ``X_n`` (B × H × W) seen only
    through ``U`` with the prior ``mu_residual·TV(X_n)``: the XRF term becomes
    ``(s²/2)||U(Dx A + X_n) - Y_lr||²`` and ``X_n`` is a third PALM block (``n_code``
    FISTA/TV-prox steps per outer iteration).  It competes with the representation for
    what the colour cannot explain, so the dictionary does not absorb a hidden layer.

    Stopping: ``n_outer`` iterations or relative objective change ``< tol`` on two
    consecutive iterations (data only).  Returns a dict with ``A`` (list of three code
    blocks), ``Dx``, ``Dr``, ``history`` (objective) and ``iterations``.
    """
    rng = np.random.default_rng(seed)
    y_lr = np.asarray(y_lr, dtype=np.float32)
    z = np.asarray(z, dtype=np.float32)
    b, h, w = y_lr.shape
    c3, hh, ww = z.shape
    s = op.scale
    s2 = np.float32(s * s)
    rho = operator_gain(op, (hh, ww))
    dmax = float(max(1.0, np.percentile(y_lr, 99.9) * 1.5))
    z_lr = np.asarray(op.down(z), dtype=np.float32)

    # --- initialisation: common = colour classes --------------------------------------
    yl = y_lr.reshape(b, -1)
    xn = np.zeros((b, hh, ww), np.float32) if mu_residual > 0 else None
    yt = yl  # target of the representation: Y_lr - U(X_n)
    dual_n = None
    zl = z_lr.reshape(c3, -1)
    centres, lab_lr = kmeans(zl.T, m_c, rng)
    m_c = len(centres)
    dcr = np.clip(centres.T, 0, 1).astype(np.float32)  # 3 × Mc
    dcx = np.zeros((b, m_c), np.float32)
    for j in range(m_c):
        sel = lab_lr == j
        dcx[:, j] = yl[:, sel].mean(1) if sel.any() else yl.mean(1)
    dcx = np.clip(dcx, 0, dmax)
    lab_hr = _nearest(z.reshape(c3, -1).T.astype(np.float64), centres.astype(np.float64))
    ac = np.zeros((m_c, hh * ww), np.float32)
    ac[lab_hr, np.arange(hh * ww)] = 1.0
    ac = ac.reshape(m_c, hh, ww)
    blocks = [ac]
    dx_parts = [dcx]
    dr_parts = [dcr]
    if m_xu > 0:
        res = np.maximum(yl - mm(dcx, np.asarray(op.down(ac)).reshape(m_c, -1)), 0)
        cx, _ = kmeans(res.T, m_xu, rng)
        dxu = np.clip(cx.T, 0, dmax).astype(np.float32)
        # unit peak: the codes carry the amplitude (bounded by 1), atoms the spectrum
        dxu /= np.maximum(dxu.max(0, keepdims=True), 1e-6) / dmax
        dxu = np.clip(dxu, 0, dmax)
        m_xu = dxu.shape[1]
        blocks.append(np.zeros((m_xu, hh, ww), np.float32))
        dx_parts.append(dxu)
        dr_parts.append(np.zeros((c3, m_xu), np.float32))
    if m_ru > 0:
        res = np.maximum(z.reshape(c3, -1) - mm(dcr, ac.reshape(m_c, -1)), 0)
        cr, _ = kmeans(res.T, m_ru, rng)
        dru = np.clip(cr.T, 0, 1).astype(np.float32)
        dru /= np.maximum(dru.max(0, keepdims=True), 1e-6)
        m_ru = dru.shape[1]
        blocks.append(np.zeros((m_ru, hh, ww), np.float32))
        dx_parts.append(np.zeros((b, m_ru), np.float32))
        dr_parts.append(dru)
    sizes = [blk.shape[0] for blk in blocks]
    names = ["c", "xu", "ru"][: len(blocks)] if m_xu > 0 or m_ru == 0 else ["c", "ru"]
    lam_of = {"c": lam[0], "xu": lam[1], "ru": lam[2]}
    tv_of = {"c": tv_w[0], "xu": tv_w[1], "ru": tv_w[2]}
    lam_vec = np.concatenate([np.full(n, lam_of[k], np.float32) for n, k in zip(sizes, names)])
    tv_vec = np.concatenate([np.full(n, tv_of[k], np.float32) for n, k in zip(sizes, names)])
    a = np.concatenate(blocks, axis=0)  # M × H × W
    m = a.shape[0]
    dx = np.concatenate(dx_parts, axis=1)
    dr = np.concatenate(dr_parts, axis=1)
    # Eq. 4: which dictionary entries are free (the others are structurally zero)
    mask_x = np.concatenate([np.ones((b, n), bool) if k != "ru" else np.zeros((b, n), bool)
                             for n, k in zip(sizes, names)], axis=1)
    mask_r = np.concatenate([np.ones((c3, n), bool) if k != "xu" else np.zeros((c3, n), bool)
                             for n, k in zip(sizes, names)], axis=1)
    use_tv = tv_vec > 0
    gamma = float(np.float32(gamma))
    s2 = float(s2)
    dual = None
    # the iterations run in torch (float32, torch's threads); the small dictionary
    # problems stay in numpy float64
    import torch

    tv_rows = _rows(use_tv)
    a = torch.from_numpy(np.ascontiguousarray(a))
    z2 = torch.from_numpy(np.ascontiguousarray(z.reshape(c3, -1)))
    z2_64 = z2.double()
    y_lr_t = torch.from_numpy(y_lr)
    yl_t = y_lr_t.reshape(b, -1)
    yt = yl_t  # target of the representation: Y_lr - U(X_n)
    if xn is not None:
        xn = torch.from_numpy(xn)
    lam_t = torch.from_numpy(lam_vec)
    tv_t = torch.from_numpy(tv_vec[use_tv])

    def objective(a_, a_lr, dx_t, dr_t):
        ex = dx_t @ a_lr.reshape(m, -1) - yt
        ez = dr_t @ a_.reshape(m, -1) - z2
        f = (0.5 * s2 * float((ex * ex).sum(dtype=torch.float64))
             + 0.5 * gamma * float((ez * ez).sum(dtype=torch.float64)))
        f += float((lam_t[:, None] * a_.reshape(m, -1)).sum(dtype=torch.float64))
        return f

    from ._threads import ThreadChooser

    chooser = ThreadChooser()  # the caller restores torch's thread count
    history: list[float] = []
    small = 0
    it = 0
    for it in range(1, n_outer + 1):
        chooser.before(it - 1)
        # --- codes: n_code FISTA steps (PALM block 1) -----------------------------------
        l_a = rho * _spec2(dx) + gamma * _spec2(dr)
        step = float(np.float32(1.0 / max(l_a, 1e-12)))
        dx_t, dr_t = torch.from_numpy(dx), torch.from_numpy(dr)
        step_lam = (lam_t * step)[:, None, None]
        x_prev = a
        zc = a
        t = 1.0
        for _ in range(n_code):
            ex = dx_t @ _down(op, zc).reshape(m, -1) - yt
            g = _adjoint_s2(op, (dx_t.T @ ex).reshape(m, h, w))
            ez = dr_t @ zc.reshape(m, -1) - z2
            g.view(m, -1).addmm_(dr_t.T, ez, alpha=gamma)
            v = torch.sub(zc, g.mul_(step)).sub_(step_lam)
            if tv_rows is None:
                a_new = v.clamp(0.0, 1.0)
            elif tv_rows == slice(None):
                a_new, dual = _tv_prox_t(v, tv_t * step, dual, tv_inner, 0.0, 1.0)
            else:
                a_new = v.clamp(0.0, 1.0)
                a_new[tv_rows], dual = _tv_prox_t(v[tv_rows], tv_t * step, dual, tv_inner, 0.0, 1.0)
            t_new = (1 + math.sqrt(1 + 4 * t * t)) / 2
            zc = torch.sub(a_new, x_prev).mul_((t - 1) / t_new).add_(a_new)
            x_prev, t = a_new, t_new
        a = x_prev
        a_lr = _down(op, a)
        # --- dictionaries: projected gradient on the Gram matrices (PALM block 2) --------
        al = a_lr.reshape(m, -1).double()
        gx_gram = (s2 * (al @ al.T)).numpy()
        cx = (s2 * (yt.double() @ al.T)).numpy()
        dx = _pg_dict(dx, gx_gram, cx, mask_x, 0.0, dmax, n_dict)
        ah = a.reshape(m, -1).double()
        gr_gram = (gamma * (ah @ ah.T)).numpy()
        cr = (gamma * (z2_64 @ ah.T)).numpy()
        del ah
        dr = _pg_dict(dr, gr_gram, cr, mask_r, 0.0, 1.0, n_dict)
        dx_t, dr_t = torch.from_numpy(dx), torch.from_numpy(dr)
        if xn is not None:  # --- residual component X_n (PALM block 3) ----------------
            target = y_lr_t - (dx_t @ a_lr.reshape(m, -1)).reshape(b, h, w)
            xn, dual_n = _tv_sr_steps(xn, target, op, mu_residual, rho, n_code, dual_n)
            yt = yl_t - _down(op, xn).reshape(b, -1)
        chooser.after(it - 1)
        f = objective(a, a_lr, dx_t, dr_t)
        if xn is not None:
            f += float(mu_residual * _tv_t(xn).sum())
        if tv_rows is not None:
            f += float((tv_t.double() * _tv_t(a[tv_rows])).sum())
        history.append(f)
        rel = abs(history[-2] - f) / max(abs(f), 1e-12) if len(history) > 1 else np.inf
        small = small + 1 if rel < tol else 0
        if progress is not None:
            progress(it, n_outer, f"objective {f:.4g}")
        if small >= 2:
            break
    a = a.numpy()
    xn = None if xn is None else xn.numpy()
    split = np.cumsum(sizes)[:-1]
    parts = np.split(a, split, axis=0)
    out = {"A": dict(zip(names, parts)), "Dx": dx, "Dr": dr, "history": history,
           "iterations": it, "names": names, "sizes": sizes,
           "Dx_parts": dict(zip(names, np.split(dx, split, axis=1))),
           "Dr_parts": dict(zip(names, np.split(dr, split, axis=1))), "X_n": xn}
    return out


def _down(op, x):
    """``op.down(x)`` for a torch tensor ``(..., H, W)``; the block mean as one
    ``avg_pool2d`` pass (the generic reshape-and-mean reduces over two strided axes)."""
    import maxrf_bench as mb

    s = getattr(op, "scale", 1)
    h, w = x.shape[-2:]
    if type(op) is not mb.BlockMean or h % s or w % s:
        return op.down(x)
    import torch.nn.functional as F

    out = F.avg_pool2d(x.reshape(-1, 1, h, w), s)
    return out.reshape(*x.shape[:-2], h // s, w // s)


def _adjoint_s2(op, r):
    """``s² · op.adjoint(r)`` for a torch tensor, a new tensor; for the block mean, the
    nearest-neighbour upsampling written once (no separate scaling passes)."""
    import maxrf_bench as mb

    s = op.scale
    if type(op) is not mb.BlockMean:
        return op.adjoint(r).mul_(float(s * s))
    *lead, h, w = r.shape
    return r[..., :, None, :, None].expand(*lead, h, s, w, s).reshape(*lead, h * s, w * s)


def _tv_sr_steps(x, target, op, mu, rho, n_steps, dual):
    """``n_steps`` FISTA steps of ``(s²/2)||U(x) - target||² + mu TV(x)`` from ``x``
    (torch tensors)."""
    s2 = float(np.float32(op.scale**2))
    step = float(np.float32(1.0 / rho))
    weight = float(np.float32(step) * np.float32(mu))
    yk = x
    t = 1.0
    for _ in range(n_steps):
        grad = _adjoint_s2(op, _down(op, yk) - target)
        x_new, dual = _tv_prox_t(yk - grad.mul_(step), weight, dual, 1, None, None)
        t_new = (1 + math.sqrt(1 + 4 * t * t)) / 2
        yk = (x_new - x).mul_((t - 1) / t_new).add_(x_new)
        x, t = x_new, t_new
    return x, dual


def _rows(mask: np.ndarray):
    """The maps selected by a boolean ``mask``: ``None`` (none), ``slice(None)`` (all), a
    slice (a contiguous run: a view, no copy) or an index array."""
    idx = np.flatnonzero(mask)
    if idx.size == 0:
        return None
    if idx.size == mask.size:
        return slice(None)
    if idx[-1] - idx[0] + 1 == idx.size:
        return slice(int(idx[0]), int(idx[-1]) + 1)
    return idx


def _spec2(d: np.ndarray) -> float:
    """Squared spectral norm of a small matrix."""
    if d.size == 0:
        return 0.0
    return float(np.linalg.norm(d.astype(np.float64), 2) ** 2)


def _pg_dict(d, gram, cross, mask, lo, hi, n_iter):
    """``n_iter`` accelerated projected-gradient steps on ``½ tr(D G Dᵀ) - tr(C Dᵀ)``."""
    d = d.astype(np.float64)
    lip = float(np.linalg.norm(gram, 2))
    if lip <= 0:
        return d.astype(np.float32)
    y = d
    t = 1.0
    for _ in range(n_iter):
        g = y @ gram - cross
        d_new = np.clip(y - g / lip, lo, hi) * mask
        t_new = (1 + math.sqrt(1 + 4 * t * t)) / 2
        y = d_new + ((t - 1) / t_new) * (d_new - d)
        d, t = d_new, t_new
    return d.astype(np.float32)
