"""The proposed method: cross-modal self-supervised adversarial learning for MA-XRF SR.

H. Verinaz-Jadan, S. Yan, C. Higgitt, P. L. Dragotti (``shared/paper/maxrf-sr-paper.md``).
A LISTA-unfolded generator (``model.py``, Eqs. 7–9) maps each pixel of
``X = [bilinear(Y_lr) ; RGB]`` to ``X̂ = [Ŷ ; Ẑ]``; the output is ``Proj(Ŷ)`` (Eq. 10).  It
is trained on the scan itself (``train.py``, Eq. 11): consistency with the LR maps,
reconstruction of the RGB, and a misclassification-focused LSGAN loss (``losses.py``,
Eqs. 12–13) against pseudo-real patches (``augment.py``, Eq. 14).  ``ablation.py`` has the
variants of Tables II–III and the ``maxrf-bench ablate`` command.

Presets (``DEFAULTS`` == ``fast``):

* ``paper`` — the values of Sec. IV-A, literally: α1 = 0.003, α2 = 0.5e-6, Adam, patches
  and batch 32, learning rates 3e-4 / 3e-6, 1e5 + 5e5 iterations, full-image layout (a GPU
  job), per-pixel generator.  Its adversarial stage is inert: ``‖∇(α2·L_adv)‖`` is ~3e-6 of
  ``‖∇L_c1‖``, below Adam's ε, and the discriminator at 3e-6 never moves a score past ±1
  (figures in ``train.py``; ``tests/benchmarks/bench_adversarial.py`` measures them).
  **Units:** ``L_c1`` here is the MSE of the plain block mean, while the paper's Eq. 10
  assumes ``U = s·blockmean``; so the paper's α1 and α2, used as given, weigh ``L_c2`` and
  ``L_adv`` ``s² = 16×`` (at s = 4) more relative to ``L_c1`` than in the paper's
  convention.
* ``fast`` — the CPU schedule (random mini-batches of blocks, cosine decay; 5000 + 200
  iterations) with the **calibrated adversarial stage** (``adv_calibration = 0.1``: α2 is
  set at the start of the joint stage so that its gradient is a tenth of ``L_c1``'s; a
  60-iteration discriminator warm-up at 2e-4, the DCGAN rate of Radford et al.; 16
  patches per iteration and a 32-channel discriminator to fit the CPU budget).
* ``ctx`` — **our extension, not the paper's method**: ``fast`` with a context-aware
  generator (``kernel = 5``, ``context = "photo"``: each pixel's codes read the 5×5
  neighbourhood of the photograph; ``model.py``).  k was chosen on two scenes no table
  uses, ``simulate("sim-flowers", seed=101, size=256)`` and ``simulate("sim-virgin",
  seed=102, size=256)``, method seeds 0 and 1, ``fast`` otherwise (2026-12-02, 2 threads;
  ``tests/benchmarks/bench_kernel_sweep.py``).  PSNR in dB, measured truth (seed 0 / seed 1) and the
  clean truth of seed 1::

      k   flowers-101 measured   clean   virgin-102 measured   clean   s (256², 2 threads)
      1   26.616 / 26.581        31.29   26.679 / 26.623       28.46   111–119
      3   26.631 / 26.600        31.42   26.650 / 26.620       28.50   158–183
      5   26.680 / 26.662        31.55   26.727 / 26.712       28.62   191–233

  k = 5 is best on both scenes and both seeds (+0.07 dB measured, +0.16 / +0.26 dB clean
  over k = 1); k = 3 is not reliably better than k = 1 (−0.03 to +0.02 dB measured).
  bicubic followed by the projection scores 26.01 (flowers) and 25.36 (virgin) there.
  ``ctx`` also registers the photograph to the LR maps before training (``register = "lr"``,
  ``photo_prep``), only where the estimated field's held-out fit gain is ≥ 1 %: on an aligned
  photograph it is the photograph as given, bit for bit; at 2 px RMS misregistration it cuts
  ``ctx``'s loss from 0.55 / 0.38 dB to 0.17 / 0.09 dB on the same tuning scenes
  (docs/trust.md).
"""
from __future__ import annotations

import maxrf_bench as mb

__all__ = ["DEFAULTS", "PRESETS", "Generator", "load_generator", "run_proposed", "super_resolve"]

# torch is imported only when the method runs (``method.py``), so that listing plugins or
# running other methods does not pay for it; these names are resolved on first access.
_LAZY = {"Generator": "model", "load_generator": "model", "save_generator": "model",
         "super_resolve": "method", "resolve_device": "method", "choose_threads": "method"}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

#: Every parameter of the method (= the ``fast`` preset).  α1, α2 are the paper's values
#: (Sec. IV-A) in our units, where L_c1 uses the plain block mean (16× heavier relative to
#: L_c1 than under the paper's s·blockmean at s = 4); α2 is used only without calibration.
DEFAULTS: dict = {
    # architecture (Sec. III, IV-A)
    "atoms": 64,                 # M, channels of A
    "layers": 5,                 # K, unfolded LISTA iterations
    "activation": "sigmoid",     # sigmoid (paper) | leaky_relu (Table III ablation)
    "synthesis": "sigmoid",      # sigmoid: Eq. 8 | linear: D A (Table III ablation)
    "projection": True,          # Eq. 10 on the output (and on the adversarial patches)
    "kernel": 1,                 # k: k×k analysis (1 = the paper's per-pixel network; >1 = ours)
    "context": "photo",          # for kernel > 1: photo (k×k on the RGB only, D 1×1) | all (S, D k×k)
    # learned alignment of the photograph (ours, off by default; train.PhotoAlign): an
    # align×align grid of HR-pixel shifts, its Adam rate and smoothness weight
    "align": 0,
    "align_lr": 0.05,
    "align_smooth": 1e-3,
    # warp augmentation (ours, off by default; train.WarpBank): train on copies of the
    # photograph misregistered by smooth random fields of this RMS (HR pixels; 0 = off)
    "warp_augment": 0.0,
    # per-element gate on the photograph's detail (ours, off by default; gate.py): "lr"
    # scales each element's photograph-driven detail by min(1, r²/gate_full), r² the share
    # of its LR map's detail the photograph explains on the LR grid
    "gate": "none",
    "gate_full": 0.1,
    # noise-aware training (ours, off by default; train.Recorrupter): α of
    # Recorrupted-to-Recorrupted training on the LR maps (0 = off); its noise std:
    # "counts" = per pixel from the LR counts where the host knows them (--protocol
    # acquisition), else blind; "blind" = one wavelet-MAD std per element map
    "recorrupt": 0.0,
    "recorrupt_noise": "counts",
    # per element (ours): recorrupt only the elements whose LR noise share ρ (train.noise_share,
    # from the LR maps and their noise std alone) is at least this; 0 = every element
    "recorrupt_share": 0.0,
    # recorrupt only where the LR grid has at least this many pixels (ours; 0 = always): on
    # smaller grids it was measured to lose, and the run trains and infers without it
    # (training record: recorrupt_applied); the ctx-quickscan preset sets 1536
    "recorrupt_min_lr_pixels": 0,
    # registration of the photograph to the LR maps before training (ours, off by default;
    # photo_prep.estimate_field): "lr" searches local displacements within ± register_radius
    # HR pixels by the LR-grid fit of the maps' detail on the photograph's
    "register": "none",
    "register_radius": 4.0,
    # the most estimate passes: where a pass's field reaches its search radius the next pass
    # estimates again on the photograph it registered, gated alike (photo_prep.estimate_registration)
    "register_passes": 3,
    # scale-space photograph (ours, off by default; photo_prep.scale_space): extra bands, the
    # photograph blurred by Gaussians of these σ (HR pixels), e.g. "1+2"; "" = off
    "photo_scales": "",
    # loss, Eq. 11 (Table II switches)
    "use_lc1": True,
    "use_lc2": True,
    "use_adv": True,
    "adv_loss": "focused",       # focused (Eqs. 12-13) | standard LSGAN (Table III)
    "alpha1": 0.003,
    "alpha2": 0.5e-6,             # used as given only when adv_calibration is None
    "adv_calibration": 0.1,       # f: α2 set so that ‖∇α2·L_adv‖ = f·‖∇L_c1‖ (None: alpha2 literal)
    # optimisation
    "pretrain_iterations": 5000,
    "adversarial_iterations": 200,
    "pretrain_lr": 1e-2,          # not given by the paper (paper preset: 3e-4)
    "lr_generator": 3e-4,
    "lr_discriminator": 2e-4,
    "disc_warmup": 60,            # adversarial-stage iterations that train only the discriminator
    "schedule": "cosine",         # constant (paper) | cosine decay to 1 % within each stage
    "batch_size": 16,             # adversarial patches per iteration (paper: 32)
    "patch_size": 32,             # discriminator patches are patch_size × patch_size
    "disc_width": 32,             # channels of the discriminator's first conv (our choice; paper preset 64)
    "layout": "blocks",           # blocks: random LR-block mini-batches | image: naive full image
    "batch_blocks": 256,          # LR blocks per pre-training step (0 = the whole image)
    "region_blocks": 0,           # LR blocks per side of a training region (0 = 1 if kernel 1, else 4)
    "adv_batch_blocks": 256,     # LR blocks for L_c1/L_c2 per adversarial step (0 = whole image)
    # engineering
    "threads": 0,                 # torch CPU threads (0 = auto: 1 or all, whichever is faster now)
    "checkpoint_seconds": 30.0,   # checkpoint at most this often (0 = never by time)
    "checkpoint_iterations": 0,   # and/or every N iterations (0 = never by count)
    "infer_batch": 4096,          # pixel rows per inference batch (cache-friendly)
}

PRESETS: dict = {
    # Sec. IV-A literally (a GPU job); its adversarial stage is inert (train.py docstring)
    "paper": {"pretrain_iterations": 100_000, "adversarial_iterations": 500_000,
              "pretrain_lr": 3e-4, "schedule": "constant", "layout": "image",
              "batch_blocks": 0, "adv_batch_blocks": 0, "kernel": 1,
              "alpha2": 0.5e-6, "adv_calibration": None, "lr_discriminator": 3e-6,
              "disc_warmup": 0, "disc_width": 64, "batch_size": 32},
    # the CPU schedule with the calibrated adversarial stage (= the defaults, spelled out)
    "fast": {"pretrain_iterations": 5000, "adversarial_iterations": 200, "pretrain_lr": 1e-2,
             "schedule": "cosine", "layout": "blocks", "batch_blocks": 256, "adv_batch_blocks": 256,
             "kernel": 1, "context": "photo", "adv_calibration": 0.1, "lr_discriminator": 2e-4,
             "disc_warmup": 60, "disc_width": 32, "batch_size": 16},
    # our extension (not the paper's method): fast with a 5×5 view of the photograph, and the
    # photograph registered to the LR maps when the misregistration is significant (issue 22)
    "ctx": {"pretrain_iterations": 5000, "adversarial_iterations": 200, "pretrain_lr": 1e-2,
            "schedule": "cosine", "layout": "blocks", "batch_blocks": 256, "adv_batch_blocks": 256,
            "kernel": 5, "context": "photo", "adv_calibration": 0.1, "lr_discriminator": 2e-4,
            "disc_warmup": 60, "disc_width": 32, "batch_size": 16, "register": "lr"},
}
# ours, for short (count-noise-limited) scans: ctx with Recorrupted-to-Recorrupted training at
# α = 0.5 (issue 21; chosen on the tuning scenes sim-isabel seed 101 and sim-virgin seed 102 at
# 256², acquisition protocol, seeds 0-2: +W +1.67 and +2.07 dB at t = 1/16, +0.09 and +0.10 at
# t = 1, docs/noise.md (g)), and without the exact projection of Eq. 10, which puts the LR
# counting noise back: read its +W column, proposed+W[preset=ctx-quickscan].  Its noise std is
# the LR counts' Poisson variance where the host knows it (--protocol acquisition), else
# blind; maxrf-bench export carries its inference noise (maxrf_infer.recorrupt).
# It loses on small scans (ctx at t = 1/16, seed 0, +W: LR grids of 24², 32×20 and 32² lose
# 3.05, 2.75 and 1.17 dB, 48² and 64² gain 1.25 and 1.88 dB; scenes sim-virgin 302, sim-isabel
# 303, 317 at 128² and 192², 316 at 256², none a table scene), so below 1536 LR pixels (the
# geometric middle of 32² and 48²) it trains and infers as plain ctx (recorrupt_min_lr_pixels).
PRESETS["ctx-quickscan"] = {**PRESETS["ctx"], "recorrupt": 0.5, "projection": False,
                            "recorrupt_min_lr_pixels": 1536}

_CHOICES = {"activation": ("sigmoid", "leaky_relu"), "synthesis": ("sigmoid", "linear"),
            "adv_loss": ("focused", "standard"), "schedule": ("constant", "cosine"),
            "layout": ("blocks", "image"), "context": ("photo", "all"), "gate": ("none", "lr"),
            "register": ("none", "lr")}


def check_params(params: dict) -> None:
    """One clear :class:`maxrf_bench.ConfigError` per bad parameter."""
    for key, allowed in _CHOICES.items():
        if params[key] not in allowed:
            raise mb.ConfigError(f"proposed.{key} must be one of {', '.join(allowed)}, "
                                 f"found {params[key]!r}")
    k = params["kernel"]
    if isinstance(k, bool) or not isinstance(k, int) or k < 1 or k % 2 == 0:
        raise mb.ConfigError(f"proposed.kernel must be an odd integer ≥ 1 (1 = the paper's per-pixel "
                             f"network, 3 or 5 = k×k analysis/synthesis), found {k!r}")
    cal = params["adv_calibration"]
    if cal is not None and (isinstance(cal, bool) or not isinstance(cal, (int, float))
                            or not 0.0 < float(cal) < 1.0):
        raise mb.ConfigError(f"proposed.adv_calibration must be a fraction in (0, 1) of L_c1's "
                             f"gradient norm (or none: use alpha2 as given), found {cal!r}")
    positive = ("atoms", "layers", "batch_size", "patch_size", "disc_width", "infer_batch")
    for key in positive:
        if int(params[key]) < 1:
            raise mb.ConfigError(f"proposed.{key} must be a positive integer, found {params[key]!r}")
    for key in ("pretrain_iterations", "adversarial_iterations", "batch_blocks", "adv_batch_blocks",
                "threads", "checkpoint_iterations", "disc_warmup", "region_blocks", "align"):
        if int(params[key]) < 0:
            raise mb.ConfigError(f"proposed.{key} must be ≥ 0, found {params[key]!r}")
    wa = params["warp_augment"]
    if isinstance(wa, bool) or not isinstance(wa, (int, float)) or not 0 <= float(wa) <= 16:
        raise mb.ConfigError(f"proposed.warp_augment must be an RMS displacement in HR pixels, "
                             f"0 (off) to 16, found {wa!r}")
    if float(wa) > 0 and int(params["align"]) > 0:
        raise mb.ConfigError("proposed: warp_augment and align cannot be combined (both move the "
                             "photograph during training); set one of them to 0")
    gf = params["gate_full"]
    if isinstance(gf, bool) or not isinstance(gf, (int, float)) or not 0 < float(gf) <= 1:
        raise mb.ConfigError(f"proposed.gate_full must be a share of explained LR detail in (0, 1], "
                             f"found {gf!r}")
    if not float(params.get("recorrupt", 0.0)) >= 0:
        raise mb.ConfigError(f"proposed.recorrupt must be ≥ 0 (0 = off), found {params['recorrupt']!r}")
    if float(params.get("recorrupt", 0.0)) > 0 and (int(params["align"]) > 0
                                                      or float(params["warp_augment"]) > 0):
        raise mb.ConfigError("proposed.recorrupt cannot be combined with align or warp_augment (each "
                             "rebuilds the network input during training); set one of them to 0")
    if params.get("recorrupt_noise", "counts") not in ("counts", "blind"):
        raise mb.ConfigError(f"proposed.recorrupt_noise must be 'counts' or 'blind', found "
                             f"{params['recorrupt_noise']!r}")
    rm = params.get("recorrupt_min_lr_pixels", 0)
    if isinstance(rm, bool) or not isinstance(rm, int) or rm < 0:
        raise mb.ConfigError(f"proposed.recorrupt_min_lr_pixels must be a whole number of LR pixels "
                             f"≥ 0 (0 = recorrupt at every size), found {rm!r}")
    rs = params.get("recorrupt_share", 0.0)
    if isinstance(rs, bool) or not isinstance(rs, (int, float)) or not 0 <= float(rs) <= 1:
        raise mb.ConfigError(f"proposed.recorrupt_share must be a noise share in [0, 1] (0 = every "
                             f"element), found {rs!r}")
    rr = params["register_radius"]
    if isinstance(rr, bool) or not isinstance(rr, (int, float)) or not 0.5 <= float(rr) <= 16:
        raise mb.ConfigError(f"proposed.register_radius must be a displacement in HR pixels, "
                             f"0.5 to 16, found {rr!r}")
    rp = params["register_passes"]
    if isinstance(rp, bool) or not isinstance(rp, int) or not 1 <= rp <= 5:
        raise mb.ConfigError(f"proposed.register_passes must be a whole number of estimate passes, "
                             f"1 to 5 (1 = one estimate), found {rp!r}")
    from .photo_prep import parse_scales

    parse_scales(params["photo_scales"])
    if not float(params["align_smooth"]) >= 0:
        raise mb.ConfigError(f"proposed.align_smooth must be ≥ 0, found {params['align_smooth']!r}")
    for key in ("pretrain_lr", "lr_generator", "lr_discriminator", "align_lr"):
        if not float(params[key]) > 0:
            raise mb.ConfigError(f"proposed.{key} must be > 0, found {params[key]!r}")
    if int(params["patch_size"]) < 8:
        raise mb.ConfigError(f"proposed.patch_size must be ≥ 8, found {params['patch_size']!r}")
    check_adversarial_schedule(params)


def check_adversarial_schedule(params: dict) -> None:
    """One clear :class:`maxrf_bench.ConfigError` when the adversarial term can never act:
    ``use_adv`` with ``disc_warmup ≥ adversarial_iterations`` (no joint iteration)."""
    if not params["use_adv"]:
        return
    n_adv, warmup = int(params["adversarial_iterations"]), int(params.get("disc_warmup", 0))
    if warmup >= n_adv:
        raise mb.ConfigError(
            f"proposed: the adversarial term is never applied: disc_warmup={warmup} discriminator-only "
            f"iterations leave none of adversarial_iterations={n_adv}; expected disc_warmup < "
            "adversarial_iterations (or use_adv=false)")


def run_proposed(inputs: mb.MethodInputs, **params):
    """Train the generator on this scan (or reuse the one trained in ``inputs.workdir``) and
    return ``Proj(Ŷ)`` on the HR grid."""
    unknown = set(params) - set(DEFAULTS)
    if unknown:
        raise mb.ConfigError(f"proposed has no parameter(s) {sorted(unknown)}; "
                             f"expected some of: {', '.join(sorted(DEFAULTS))}")
    p = {**DEFAULTS, **params}
    check_params(p)
    from .method import train_and_super_resolve

    return train_and_super_resolve(inputs, p)



def _export(workdir, path, metadata):
    from .onnx_export import export_onnx  # written by the ONNX helper; imported lazily

    _check_exportable(workdir)
    return export_onnx(workdir, path, metadata)


def _check_exportable(workdir) -> None:
    """One clear :class:`maxrf_bench.ConfigError` for a generator whose inference the ONNX
    model cannot reproduce (ours: the scale-space bands, the learned alignment, the gate
    after inference).  The registration (``register = "lr"``) is carried: its field travels
    with the model (``onnx_export.registration_field``); so is recorrupted inference
    (``recorrupt > 0``: its noise, ``onnx_export.recorrupt_record``, which the runtime draws
    again, ``maxrf_infer.recorrupt``)."""
    import json
    from pathlib import Path

    cfg = Path(workdir) / "generator.json"
    params = (json.loads(cfg.read_text()).get("params") or {}) if cfg.exists() else {}
    used = [f"{k}={params[k]!r}" for k in ("photo_scales", "align", "gate")
            if k in params and params[k] not in ("none", "", 0, 0.0, None)]
    if used:
        raise mb.ConfigError(f"the ONNX model cannot reproduce this generator's maps: it was trained "
                             f"with {', '.join(used)}, which the export does not carry; retrain without "
                             "(photo_scales='', align=0, gate=none) to export")


@mb.hookimpl
def maxrf_bench_register_methods(register):
    register(mb.Method(
        "proposed", run_proposed,
        description="self-supervised adversarial LISTA-unfolded network guided by RGB "
                    "(Verinaz-Jadan et al.); trains on the scan itself",
        defaults=DEFAULTS, presets=PRESETS,
        reference="H. Verinaz-Jadan, S. Yan, C. Higgitt, P. L. Dragotti, 'Cross-Modal "
                  "Self-Supervised Adversarial Learning for MA-XRF Super-Resolution'",
        export=_export,
        # bad parameters stop the run with one line before anything is written
        check=lambda params, scale: check_params({**DEFAULTS, **params}),
        projects=lambda params: bool(params["projection"]),
        overrides={"adv_calibration": ["alpha2"]},  # the calibrated stage sets α2 itself
        # the longest cells first on a cluster (issue 26): s per 512²×21 cell, fast, 2 threads
        # (bench_makespan.py, 2026-12-06); k = 5: × 1.51, the ctx / fast ratio of one 256² cell
        # (docs/benchmarks.md, session 7)
        cost=lambda params: 67.0 if params["kernel"] > 1 else 44.0,
    ))


@mb.hookimpl
def maxrf_bench_register_commands(cli):
    from .ablation import ablate_command

    cli.add_command(ablate_command)
