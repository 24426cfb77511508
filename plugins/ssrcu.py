"""SSRCU: coupled dictionary learning with common and unique components (S. Yan et al.,
ICASSP 2023) -- **re-implementation, parameters ours**.

The ICASSP paper could not be read (``../shared/baselines/NOTES.md`` §2).  The model is the
second-hand account of Eqs. 1-4 of ``../shared/paper/maxrf-sr-paper.md`` (one code vector
per HR pixel, after Song, Deng, Mota, Dragotti, Rodrigues, TCI 2019)::

    Y = Dcx Ac + Dxu Axu           (B × N: HR XRF = common + XRF-unique part)
    Z = Dcr Ac + Dru Aru           (3 × N: HR RGB = common + RGB-unique part)
    Y_lr = U(Y)                    (host operator; Eq. 2)

solved, as NOTES §2 proposes, by::

    min (s²/2)||U(Dcx Ac + Dxu Axu) - Y_lr||² + (gamma/2)||Z - Dcr Ac - Dru Aru||²
        + lam_c||Ac||_1 + lam_xu||Axu||_1 + lam_ru||Aru||_1
        + tv_c TV(Ac) + tv_xu TV(Axu)
    s.t. 0 ≤ A ≤ 1, 0 ≤ Dcx, Dxu ≤ dmax, 0 ≤ Dcr, Dru ≤ 1

with PALM: FISTA steps on the stacked codes (prox: l1 shift on the non-negative orthant,
then the box-constrained TV prox by FGP), projected gradient on each dictionary block with
the zero blocks of Eq. 4 kept zero (:func:`_dictionary.coupled_palm`).  The XRF-unique codes
are observed only through ``U``: their TV prior is what super-resolves them (without it that
part would collapse to an interpolation).  Output: ``Y = Dcx Ac + Dxu Axu``.

Initialisation (ours): common atoms = k-means colour classes of ``U(Z)`` with their mean LR
spectra, ``Ac`` = one-hot colour class per HR pixel; unique atoms = k-means of the positive LR
residuals; unique codes start at 0 -- so the common part starts as "what the colour
predicts" and the unique part takes only what the colour cannot explain.  Stopping: the
iteration cap or relative objective change < ``tol`` twice in a row (data only).

Hyper-parameters (all *ours*; Song et al.'s patch-OMP values do not transfer to this
per-pixel model): ``common`` Mc = 24, ``unique_xrf`` Mxu = 8, ``unique_rgb`` Mru = 4,
``gamma`` = 1, ``lam_c`` = 1e-3, ``lam_xu`` = 1e-2 (the unique part pays more per unit
than the common part, so shared structure goes to the common codes), ``lam_ru`` = 1e-3,
``tv_c`` = ``tv_xu`` = 3e-2, ``outer`` = 100 in both presets (a
``fast`` of 40 lost 0.36 dB on sim-demo and 0.59 dB on a 256² crop of sim-flowers against
100, ``tests/benchmarks/bench_baseline_presets.py``, 2026-12-02; 100 fits the CPU budget).

Swept on the tuning scenes ``simulate("sim-flowers", seed=101, size=256)`` and
``simulate("sim-virgin", seed=102, size=256)`` (``tests/benchmarks/bench_ssr_choices.py``;
raw PSNR, flowers / virgin): defaults 25.49 / 25.27 dB; ``gamma`` = 0.1 → 25.53 / 25.16,
10 → 24.26 / —; ``tv_xu`` = 0.01 → 25.46, 0.1 → 25.44 (flowers).  No setting gains more
than 0.04 dB on both, so the defaults stay.  The paper's claims do not hold for this
reconstruction there: it is below bicubic on sim-flowers (25.49 against 25.85) and below
SSR on both, and in the pixels of the hidden design it is below bicubic too (24.37
against 24.81, 23.17 against 23.35).  Every choice the papers leave open, with how it
was made, is in ``docs/baselines.md``.
"""
from __future__ import annotations

import numpy as np

import maxrf_bench as mb

from ._dictionary import blas_single_thread, coupled_palm, mm
from .ssr import check_common

DEFAULTS = {"common": 24, "unique_xrf": 8, "unique_rgb": 4, "gamma": 1.0, "lam_c": 1e-3,
            "lam_xu": 1e-2, "lam_ru": 1e-3, "tv_c": 3e-2, "tv_xu": 3e-2, "outer": 100,
            "code_steps": 3, "dict_steps": 10, "tol": 1e-5}


def solve_ssrcu(inputs: mb.MethodInputs, common: int = 24, unique_xrf: int = 8,
                unique_rgb: int = 4, gamma: float = 1.0, lam_c: float = 1e-3,
                lam_xu: float = 1e-2, lam_ru: float = 1e-3, tv_c: float = 3e-2,
                tv_xu: float = 3e-2, outer: int = 100, code_steps: int = 3, dict_steps: int = 10,
                tol: float = 1e-5) -> dict:
    """Fit the model; returns the :func:`coupled_palm` dict plus ``Y_c``, ``Y_u``
    ``(B, H, W)``: the common and XRF-unique parts of the HR XRF cube."""
    lr, rgb = check_common(inputs, "ssrcu", gamma=gamma, lam_c=lam_c, lam_xu=lam_xu,
                           lam_ru=lam_ru, tv_c=tv_c, tv_xu=tv_xu, tol=tol,
                           unique_xrf=unique_xrf, unique_rgb=unique_rgb)
    for key, value in {"common": common, "outer": outer, "code_steps": code_steps}.items():
        if int(value) < 1:
            raise mb.ConfigError(f"ssrcu.{key} must be a positive integer, found {value!r}")
    b = lr.shape[0]
    with blas_single_thread(), mb.torch_threads(0):  # restores what coupled_palm chose
        fit = coupled_palm(lr, rgb, inputs.operator, m_c=common, m_xu=unique_xrf, m_ru=unique_rgb,
                           gamma=gamma, lam=(lam_c, lam_xu, lam_ru), tv_w=(tv_c, tv_xu, 0.0),
                           n_outer=outer, n_code=code_steps, n_dict=dict_steps, tol=tol,
                           seed=inputs.seed, progress=inputs.progress)
        hw = rgb.shape[1:]
        ac = fit["A"]["c"]
        fit["Y_c"] = mm(fit["Dx_parts"]["c"], ac.reshape(ac.shape[0], -1)).reshape(b, *hw)
        if "xu" in fit["A"]:
            au = fit["A"]["xu"]
            fit["Y_u"] = mm(fit["Dx_parts"]["xu"], au.reshape(au.shape[0], -1)).reshape(b, *hw)
        else:
            fit["Y_u"] = np.zeros_like(fit["Y_c"])
    return fit


def run_ssrcu(inputs: mb.MethodInputs, **params):
    fit = solve_ssrcu(inputs, **params)
    return inputs.as_hr(fit["Y_c"] + fit["Y_u"])


@mb.hookimpl
def maxrf_bench_register_methods(register):
    register(mb.Method(
        "ssrcu", run_ssrcu,
        description="Yan et al. 2023 SSRCU (re-implementation, parameters ours): coupled "
                    "dictionaries with common and unique XRF/RGB codes, TV on the codes",
        defaults=dict(DEFAULTS),
        presets={"paper": {}, "fast": {}},
        reference="S. Yan et al., Super-resolution for macro X-ray fluorescence data collected "
                  "from Old Master paintings, ICASSP 2023 (re-implementation, parameters ours); "
                  "reconstruction: no public code (the paper could not be read; model from "
                 "the proposed paper's Eqs. 1-4); choices and sweep in docs/baselines.md",
        cost=91,  # s per 512²×21 cell, --preset fast, 2 threads (bench_makespan.py, 2026-12-06): longest first
    ))
