"""Noise-aware scores for real scans: Poisson thinning, and a noise ceiling where it cannot run.

A real museum scan has only a measured truth, so a PSNR against it is capped by counting
noise no method can predict.

Poisson thinning (``--protocol thinning``)
-----------------------------------------
For HR maps of raw integer counts ``N`` (Poisson with mean ``μ`` per pixel), each pixel's
counts are split binomially, ``A ~ Binomial(N, 1/2)``, ``B = N − A`` (seeded by
``noise_seed``).  ``A`` and ``B`` are then independent Poisson variables of mean ``μ/2``
(the thinning property).  In the units of the full scan (counts per HR dwell) ``2A`` and
``2B`` are two independent half-time scans of the same object, each of mean ``μ``:

* the methods get the LR input ``U(2A)`` (through the run's operator), normalised with the
  full scan's offset and span;
* the output ``Ŷ`` is scored against ``2B`` (``truth`` = ``measured`` rows: against the
  other half);
* because ``Ŷ`` depends on ``A`` only, ``E_B mean(Ŷ − 2B)² = mean(Ŷ − μ)² + mean Var(2B)``
  and ``Var(2B) = 4·Var(B) = 2μ``, whose unbiased per-pixel estimate is ``4B`` (known from
  the scoring half's own counts).  In normalised units (÷ span² per element)::

      MSE_est = mean[(Ŷ − b)² − 4B / span²],   b = (2B − offset) / span

  an unbiased estimate of ``mean(Ŷ − μ_norm)²``.  ``truth`` = ``estimated`` rows hold
  ``psnr`` = −10 log10 MSE_est (whole cube, as the ``psnr`` metric), ``rmse``, and
  ``psnr_low``/``psnr_high``: a 95 % interval from the standard error of the per-pixel
  terms (independent across pixels given ``A``: the interval is for this cell's output).

**What the estimate targets.**  ``μ`` is the Poisson mean of the measured scan, and ``Ŷ``
is the method's output from a *half-time* scan (``2A``: half the counts, so twice the
variance of the full scan).  The estimate is therefore the clean-truth PSNR of the method
given a half-time LR scan — the same cell's ``truth`` = ``clean`` row where the scan has a
``maps_clean`` — not the PSNR of the method run on the full scan.

**Shared, non-Poisson noise.**  A real scanner's realised mean is ``μ = c + e``: ``c`` the
expected counts, ``e`` what both halves share (a per-pixel gain excess, the stage's row
positioning error).  Exactly, ``mean(Ŷ − c)² = mean(Ŷ − μ)² + 2⟨Ŷ − c, e⟩ − ‖e‖²``, and
thinning estimates only the first term.  ``Ŷ`` sees ``e`` only through the LR scan, so:

* a white gain excess (``Var e = k²μ²``) leaks into ``Ŷ`` with weight ``1/s²`` per pixel
  (exact for an exactly projected output: ``tr(U·∂Ŷ/∂Y↓) = N_LR``), and the estimate is too
  *pessimistic* by ``(1 − 2/s²)·k²·mean μ²`` (:func:`gain_correction`; −0.02 dB measured);
* a row shift ``σz`` applied by linear interpolation between rows (the simulator's stage)
  has ``E e = σ/√(2π)·Δ_y c`` — a mean blur along y — and ``E e² = σ²/2·(D+c² + D−c²)``;
  a smooth output correlates with that blur and the estimate is too *optimistic* by
  ``2σ/√(2π)·⟨Ŷ − c, Δ_y c⟩ − σ²/2·Σ(D±c)²`` (:func:`jitter_correction`; +0.38 dB measured
  at σ = 0.15 px, 128² scenes).

* the jitter also reaches ``Ŷ`` through the LR scan: an output consistent with it carries
  ``P·e`` (``P`` the operator's projection), adding ``2·tr(P Cov e)`` to the bracket, about
  ``2/s`` of the ``‖e‖²`` term (:func:`jitter_leak`; left out before, which kept the
  estimate optimistic by +0.1–0.2 dB at scale 4 and up to +0.4 dB at scale 2 on the
  simulator's scans).
* the scoring half ``b`` that stands in for ``c`` in these sums has mean ``μ = c + e``: a
  mean blur along y and a zero-mean part.  Both bias the quadratic sums by as much as the
  ``‖e‖²`` term; :func:`jitter_correction` evaluates them at ``b`` with the mean blur undone
  and removes the zero-mean part's variance like the counting noise's (taken at ``b`` as it
  was, the estimate stayed optimistic by +0.06–0.07 dB in a Monte-Carlo of the simulator's
  scanner on three 128² tuning scenes).

The estimate adds these corrections, with the scoring half standing in for ``c`` (its noise
removed from the sums, and in the jitter's sums its mean blur undone), for the scan's
recorded ``scanner_jitter_px`` and ``scanner_gain_cv`` (as the simulator writes them; a scan
recording neither is taken as pure counting noise and left uncorrected).  Its interval adds, in quadrature, the spread of
the jitter correction over the scan's own unknown row shifts.  ``σ`` is not estimated from
the scan: a row-shift regression on jitter-free simulated scans reads 0.06–0.11 px of
object structure as jitter (``docs/noise.md``).

A noise ceiling for other scans
-------------------------------
For measured maps that are not integer counts (exported, fitted or smoothed maps),
:func:`estimated_noise_ceiling` estimates the noise std of each normalised map with
``skimage.restoration.estimate_sigma`` (Donoho's wavelet MAD on the finest diagonal
sub-band).  Assumptions: additive, white, signal-independent noise of one std per map;
structure sparse in the finest wavelet sub-band.  Poisson noise breaks the third (the
estimate is near the noise at the median pixel), smoothing by the export breaks the first
two (the ceiling is then too high).  ``−10 log10 mean σ²`` is the PSNR the noise-free truth
itself would score against the measured maps: no method can be expected to beat it.
"""
from __future__ import annotations

import math
import zlib
from dataclasses import replace

import numpy as np

from .errors import ConfigError
from .noise import scanner_noise

PROTOCOL = "thinning"
Z95 = 1.959963984540054


def thinned_variable(prep) -> str | None:
    """Which HR maps thinning splits: a scan's short-dwell ``maps_dwell`` where it has one (what
    the methods' LR maps and ``+F`` come from), else its ``maps``; ``None``: neither."""
    return next((v for v in ("maps_dwell", "maps") if v in prep.scan), None)


def require_integer_counts(prep) -> np.ndarray:
    """The HR maps thinning splits (:func:`thinned_variable`) as non-negative integer counts,
    or one clear refusal."""
    var = thinned_variable(prep)
    if var is None:
        raise ConfigError(f"--protocol thinning needs high-resolution maps of raw integer counts; "
                          f"scan {prep.name!r} has only low-resolution maps ('maps_lr')")
    if var == "maps_dwell" and float(prep.scan.attrs.get("maps_dwell_time", 1.0)) != 1.0:
        raise ConfigError(f"--protocol thinning splits raw counts: scan {prep.name!r}'s maps_dwell are "
                          f"given per another dwell (maps_dwell_time "
                          f"{prep.scan.attrs['maps_dwell_time']}), expected raw counts (1)")
    maps = np.asarray(prep.scan[var].values, np.float64)
    bad = ~np.isfinite(maps) | (maps < 0) | (maps != np.round(maps))
    if bad.any():
        idx = np.unravel_index(int(np.argmax(bad)), maps.shape)
        raise ConfigError(
            f"--protocol thinning splits raw photon counts and needs non-negative integer maps; "
            f"scan {prep.name!r} has {int(bad.sum())} non-integer values (e.g. {float(maps[idx]):g} at "
            f"element={prep.scan[var].element.values[idx[0]]}, y={int(idx[1])}, x={int(idx[2])}): "
            "fitted or exported maps cannot be thinned")
    return maps


def split_counts(counts: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Binomial thinning: ``A ~ Binomial(N, 1/2)``, ``B = N − A``."""
    n = np.asarray(counts).astype(np.int64)
    a = rng.binomial(n, 0.5)
    return a.astype(np.float64), (n - a).astype(np.float64)


def thinning_inputs(full, noise_seed: int = 0):
    """The thinning protocol's :class:`Prepared`: LR input ``U(2A)``, measured truth ``2B``,
    the clean truth unchanged (all normalised like the full scan).  A scan with a short-dwell
    ``maps_dwell`` is thinned there: ``2A`` is then also the short-dwell scan that ``+F`` fuses
    with (half its dwell: :func:`maxrf_bench.noise.count_time` halves it)."""
    counts = require_integer_counts(full)
    rng = np.random.default_rng([int(noise_seed), zlib.crc32(full.name.encode()), 0x7A1F])
    a, b = split_counts(counts, rng)
    off, span = full.offset[:, None, None], full.span[:, None, None]
    lr = (np.asarray(full.operator.down(2 * a), np.float64) - off) / span
    truth = ((2 * b - off) / span).astype(np.float32)
    dwell = ((2 * a - off) / span).astype(np.float32) if thinned_variable(full) == "maps_dwell" else None
    return replace(full, maps_lr=full.maps_lr.copy(data=lr.astype(np.float32)), truth=truth,
                   protocol=PROTOCOL, maps_dwell=dwell)


def estimate_clean_mse(sr: np.ndarray, truth_half: np.ndarray, span: np.ndarray,
                       offset: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-pixel unbiased terms of the clean MSE (normalised units) and the half's counts.

    ``truth_half`` is ``(2B − offset)/span``; returns ``d = (Ŷ − b)² − 4B/span²`` per pixel."""
    sp, off = span[:, None, None], offset[:, None, None]
    b_counts = (np.asarray(truth_half, np.float64) * sp + off) / 2.0
    err2 = (np.asarray(sr, np.float64) - np.asarray(truth_half, np.float64)) ** 2
    return err2 - 4.0 * b_counts / sp ** 2, b_counts


# --- the shared positioning error: row jitter (see "Row jitter" in the module docstring) ---

def _lap_rows(x: np.ndarray) -> np.ndarray:
    """``Δx`` along y (``x_{i+1} + x_{i−1} − 2x_i``) on rows 1 … h−2; zero on the edge rows."""
    out = np.zeros_like(x)
    out[..., 1:-1, :] = x[..., 2:, :] + x[..., :-2, :] - 2 * x[..., 1:-1, :]
    return out


def _jitter_terms(y: np.ndarray, x: np.ndarray, sigma: float) -> np.ndarray:
    """``[2σ/√(2π)·⟨y − x, Δx⟩ − σ²/2·Σ(D+x² + D−x²)] / (h·w)`` per leading index, rows
    1 … h−2: the row jitter's ``E[2⟨y − x, e⟩ − ‖e‖²]`` for maps ``x`` (no noise removed)."""
    h, w = x.shape[-2:]
    res = y[..., 1:-1, :] - x[..., 1:-1, :]
    dp, dm = x[..., 2:, :] - x[..., 1:-1, :], x[..., :-2, :] - x[..., 1:-1, :]
    first = (res * (dp + dm)).sum(axis=(-2, -1))
    second = (dp ** 2).sum(axis=(-2, -1)) + (dm ** 2).sum(axis=(-2, -1))
    return (2 * sigma / math.sqrt(2 * math.pi) * first - 0.5 * sigma ** 2 * second) / (h * w)


def _jitter_diagonal(h: int, sigma: float, shift: float) -> np.ndarray:
    """``κ_i`` (length ``h``): the diagonal of the quadratic part of :func:`_jitter_terms` at
    ``x = (I + shift·Δ)u``, so that noise of variance ``v`` in ``u`` (independent between
    rows) lowers ``h·w·E _jitter_terms`` by ``Σ κ_i v_i``.  Read off impulses; rows more than
    six from an edge share one value."""
    rows = sorted({*range(min(h, 6)), *range(max(h - 6, 0), h), h // 2})
    imp = np.zeros((len(rows), h, 1))
    imp[np.arange(len(rows)), rows, 0] = 1.0
    vals = -_jitter_terms(np.zeros_like(imp), imp + shift * _lap_rows(imp), sigma) * h
    kappa = np.full(h, vals[rows.index(h // 2)])
    kappa[rows] = vals
    return kappa


def jitter_correction(sr: np.ndarray, truth_half: np.ndarray, var_half: np.ndarray,
                      sigma: float) -> tuple[np.ndarray, float]:
    """Per element, the expected ``mean(Ŷ − c)² − mean(Ŷ − μ)²`` (normalised units) for row
    jitter of std ``sigma`` acting as linear interpolation between neighbouring rows, with
    the scoring half ``b`` (per-pixel noise variance ``var_half``) standing in for ``c``;
    and the standard error of its all-element mean over the scan's own (unknown) row shifts.

    A row shifted by ``δ = σz`` is ``c_i + |δ|·D±c_i`` (``D±c_i = c_{i±1} − c_i``, the side
    that of the sign of ``z``), so ``E e_i = σ/√(2π)·Δc_i`` and ``E e_i² = σ²/2·(D+² + D−²)``;
    with ``Ŷ`` independent of the shifts (it sees them only through the LR scan),
    ``mean(Ŷ − c)² = mean(Ŷ − μ)² + 2⟨Ŷ − c, e⟩ − ‖e‖²`` gives, in expectation,
    ``T(c) = [2σ/√(2π)·⟨Ŷ − c, Δc⟩ − σ²/2·Σ(D+c² + D−c²)] / (h·w)`` (:func:`_jitter_terms`).

    ``c`` is unknown.  The scoring half ``b`` has mean ``μ = c + e``, not ``c``: ``e`` is a
    mean blur along y, ``E e = σ/√(2π)·Δc``, plus a zero-mean part of per-pixel variance
    ``V_e = σ²/2·(D+c² + D−c²) − σ²/2π·(Δc)²`` (rows independent).  ``T`` is quadratic, so
    ``T(b)`` is biased by both, by as much as the ``‖e‖²`` term itself.  The estimate is
    therefore taken at ``ĉ = b − σ/√(2π)·Δb`` (the mean blur undone: ``E ĉ = c`` to
    O(σ²)), and ``E T(ĉ) = T(E ĉ) − Σ κ·(v + V_e)`` (``κ`` the per-row diagonal of ``T``'s
    quadratic part at ``ĉ``, :func:`_jitter_diagonal`) is corrected by adding ``Σ κ·(v +
    V_e)`` back, with ``V_e`` from ``b`` (its noise removed).  Averaged over 200 row-jittered
    constructed maps (edges blurred 0.8 / 2 px, σ = 0.15 / 0.3 px), the plug-in ``T(b)``
    missed ``T(c)`` by −6.6 % / +25.7 % (σ = 0.15) and +9.8 % / −120 % (σ = 0.3); this
    estimate by −1.7 % / −0.3 % and −7.4 % / +13.8 % (``tests/test_acquisition.py``)."""
    n_el = np.asarray(sr).shape[0]
    if sigma <= 0:
        return np.zeros(n_el), 0.0
    y, b, v = (np.asarray(x, np.float64) for x in (sr, truth_half, var_half))
    h, w = b.shape[-2:]
    res = y[:, 1:-1] - b[:, 1:-1]
    dp, dm = b[:, 2:] - b[:, 1:-1], b[:, :-2] - b[:, 1:-1]
    vc, vp, vm = v[:, 1:-1], v[:, 2:], v[:, :-2]
    # per element and row: ⟨Ŷ − c, D±c⟩ and ‖D±c‖² (noise-corrected)
    a_p = (res * dp).sum(axis=2) - vc.sum(axis=2)
    a_m = (res * dm).sum(axis=2) - vc.sum(axis=2)
    q_p = (dp ** 2).sum(axis=2) - (vc + vp).sum(axis=2)
    q_m = (dm ** 2).sum(axis=2) - (vc + vm).sum(axis=2)
    e_abs, e_abs3 = math.sqrt(2 / math.pi), 2 * math.sqrt(2 / math.pi)   # E|z|, E|z|³
    a = sigma / math.sqrt(2 * math.pi)
    lap = dp + dm                                                      # Δb, rows 1 … h−2
    c_hat = b.copy()
    c_hat[:, 1:-1] -= a * lap
    var_e = np.zeros_like(b)
    var_e[:, 1:-1] = (0.5 * sigma ** 2 * (dp ** 2 - 2 * vc - vp + dm ** 2 - vm)
                      - a ** 2 * (lap ** 2 - vp - vm - 4 * vc))
    kappa = _jitter_diagonal(h, sigma, -a)
    corr = _jitter_terms(y, c_hat, sigma) + np.einsum("i,eiw->e", kappa, v + var_e) / (h * w)
    # the realised shifts: one z per row, shared by every element (rows independent)
    A_p, A_m, Q_p, Q_m = (x.sum(axis=0) for x in (a_p, a_m, q_p, q_m))
    m1 = 0.5 * sum(2 * sigma * e_abs * A - sigma ** 2 * Q for A, Q in ((A_p, Q_p), (A_m, Q_m)))
    m2 = 0.5 * sum(4 * sigma ** 2 * A ** 2 - 4 * sigma ** 3 * e_abs3 * A * Q + 3 * sigma ** 4 * Q ** 2
                   for A, Q in ((A_p, Q_p), (A_m, Q_m)))
    se = math.sqrt(max(float(np.sum(m2 - m1 ** 2)), 0.0)) / (n_el * h * w)
    return corr, se


def axis_matrices(operator, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """The run's operator is separable, ``U = A_y ⊗ A_x`` (block mean, Gaussian beam and
    coarse scan alike; each axis's rows sum to 1), so the projection onto its row space is
    ``P = P_y ⊗ P_x`` with ``P_a = A_aᵀ(A_a A_aᵀ)⁻¹A_a``.  Returns ``A_y`` ``(h/s, h)`` and
    ``A_x`` ``(w/s, w)``, read off the operator by images constant along the other axis."""
    s = operator.scale

    def axis(n: int, along_x: bool) -> np.ndarray:
        cols = []
        for j in range(n):
            img = np.zeros((s, n)) if along_x else np.zeros((n, s))
            if along_x:
                img[:, j] = 1.0
            else:
                img[j, :] = 1.0
            lr = np.asarray(operator.down(img), np.float64)
            cols.append(lr[0] if along_x else lr[:, 0])
        return np.stack(cols, axis=1)

    return axis(h, False), axis(w, True)


def jitter_leak(truth_half: np.ndarray, var_half: np.ndarray, sigma: float, operator
                ) -> np.ndarray:
    """Per element, ``2·tr(P·Cov e)/(h·w)``: what of the row jitter ``e`` reaches ``Ŷ``
    through the LR scan (``Ŷ ≈ Ŷ(c) + P e`` for an output consistent with the LR scan, ``P``
    the operator's projection, :func:`axis_matrices`), which :func:`jitter_correction`
    leaves out.  Rows shift independently, so ``Cov e`` pairs pixels of one row only:
    ``σ²/2·(D+c D+cᵀ + D−c D−cᵀ) − σ²/2π·Δc Δcᵀ``, and ``tr(P Cov e) = Σ_y P_y[y,y]·
    (…)ᵀP_x(…)``.  About ``2/s`` of the ``‖e‖²`` term for maps smooth along x: at scale 2
    it nearly cancels it.  The noise of ``b`` in the quadratic forms is removed as in
    :func:`jitter_correction`."""
    b, v = (np.asarray(x, np.float64) for x in (truth_half, var_half))
    n_el, h, w = b.shape
    ay, ax = axis_matrices(operator, h, w)
    py = np.einsum("ki,ki->i", ay, np.linalg.solve(ay @ ay.T, ay))        # diag(P_y)
    gx = np.linalg.inv(ax @ ax.T)
    dpx = np.einsum("ki,ki->i", ax, gx @ ax)                               # diag(P_x)
    dp, dm = b[:, 2:] - b[:, 1:-1], b[:, :-2] - b[:, 1:-1]
    lap = dp + dm
    vc, vp, vm = v[:, 1:-1], v[:, 2:], v[:, :-2]

    def quad(x, var):            # per element and row: xᵀ P_x x (via A_x), its noise removed
        z = x @ ax.T
        return np.einsum("eyk,kl,eyl->ey", z, gx, z) - (var * dpx).sum(axis=2)

    rows = (0.5 * sigma ** 2 * (quad(dp, vc + vp) + quad(dm, vc + vm))
            - sigma ** 2 / (2 * math.pi) * quad(lap, vp + vm + 4 * vc))
    return 2.0 * (rows * py[None, 1:-1]).sum(axis=1) / (h * w)


def gain_correction(b_counts: np.ndarray, span: np.ndarray, gain_cv: float, scale: int) -> np.ndarray:
    """Per element, the expected ``mean(Ŷ − c)² − mean(Ŷ − μ)²`` (normalised units) of a
    per-pixel multiplicative excess of CV ``gain_cv`` shared by both halves:
    ``−(1 − 2/s²)·k²·mean μ²/span²``, with ``μ²`` estimated without bias by ``(2B)² − 4B``."""
    if gain_cv <= 0:
        return np.zeros(b_counts.shape[0])
    mu2 = (2 * b_counts) ** 2 - 4 * b_counts
    sp2 = np.asarray(span, np.float64) ** 2
    return -(1 - 2 / scale ** 2) * gain_cv ** 2 * mu2.reshape(mu2.shape[0], -1).mean(axis=1) / sp2


def shared_noise_correction(sr: np.ndarray, prep, b_counts: np.ndarray) -> tuple[np.ndarray, float]:
    """Per element, the MSE correction for the scan's recorded row jitter
    (``scanner_jitter_px``) and gain excess (``scanner_gain_cv``), and the standard error of
    its mean from the realised row shifts; zero where the scan records neither (pure
    counting noise assumed)."""
    attrs = prep.scan.attrs
    gain, jitter = scanner_noise(attrs)
    if attrs.get("scanner_noise") is False:
        jitter = gain = 0.0
    var_half = 4.0 * b_counts / np.asarray(prep.span, np.float64)[:, None, None] ** 2
    corr, se = jitter_correction(sr, prep.truth, var_half, jitter)
    if jitter > 0:
        corr = corr + jitter_leak(prep.truth, var_half, jitter, prep.operator)
    return corr + gain_correction(b_counts, prep.span, gain, prep.operator.scale), se


def _psnr(mse: float) -> float:
    return math.inf if mse <= 0 else -10.0 * math.log10(mse)


def estimated_metrics(sr: np.ndarray, prep) -> dict:
    """``{"estimated": {"psnr": …, "rmse": …, "psnr_low": …, "psnr_high": …}}`` of one output."""
    d, b_counts = estimate_clean_mse(sr, prep.truth, prep.span, prep.offset)
    elements = prep.elements
    per = d.reshape(d.shape[0], -1).mean(axis=1)
    se = float(d.std(ddof=1) / math.sqrt(d.size))
    # the scanner's shared, non-Poisson noise (module docstring): recorded positioning std
    # and gain excess, corrected for
    corr, corr_se = shared_noise_correction(sr, prep, b_counts)
    per = per + corr
    mse = float(per.mean())
    se = math.hypot(se, corr_se)
    psnr = {e: _psnr(float(m)) for e, m in zip(elements, per)}
    psnr["all"] = _psnr(mse)
    rmse = {e: math.sqrt(max(float(m), 0.0)) for e, m in zip(elements, per)}
    rmse["all"] = math.sqrt(max(mse, 0.0))
    return {"estimated": {"psnr": psnr, "rmse": rmse,
                          "psnr_low": {"all": _psnr(mse + Z95 * se)},
                          "psnr_high": {"all": _psnr(mse - Z95 * se)}}}


# --- a noise ceiling where thinning cannot run ----------------------------------------

ESTIMATOR_NOTE = ("skimage.restoration.estimate_sigma (wavelet MAD, Donoho & Johnstone 1994): "
                  "assumes additive white noise of one std per map; smoothed or exported maps "
                  "make it optimistic, Poisson noise makes it the noise at the median pixel")


def estimated_noise_ceiling(truth_norm: np.ndarray) -> dict:
    """Estimated noise std per normalised map and the PSNR ceiling ``−10 log10 mean σ²``."""
    from skimage.restoration import estimate_sigma

    sig = [float(estimate_sigma(np.asarray(m, np.float64))) for m in truth_norm]
    mse = float(np.mean(np.square(sig)))
    return {"sigma": sig, "psnr": _psnr(mse), "estimator": ESTIMATOR_NOTE}
