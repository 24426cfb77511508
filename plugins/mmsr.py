"""MMSR: mutual modulation for self-supervised cross-modal SR (Dong et al., ECCV 2022).

X. Dong, N. Yokoya, L. Wang, T. Uezato, "Learning Mutual Modulation for Self-Supervised
Cross-Modal Super-Resolution", ECCV 2022.  Trained on the scan itself: no external data,
no ground truth.  The network, its training and every departure are described in
:mod:`maxrf_bench_plugins._guided_upsampler` (written from a reading of ``palmdong/MMSR``:
``model/network.py``, ``model/main.py``, ``inference.ipynb``; no code copied).

Each element map is one "source" image; the photograph is the guide.  Input and output are
in the units of ``inputs.maps_lr`` (per element in [0, 1]); MMSR z-scores each LR map and
de-normalises its prediction with the same statistics.  The output is neither projected
nor clipped (the host's ``+P``/``+C`` variants do that for every method alike).

Parameters (``paper`` = the defaults, the authors' values):

* ``epochs = 1000``, ``lr = 2e-3``, ``loss = "l1"``, ``weight_decay_guide = 5e-4``, batch of
  one whole image: ``inference.ipynb`` (``params``); ``lr_decay = 0.9998`` every
  ``lr_decay_every = 5`` epochs: ``model/main.py``.
* ``share_elements = false``: one network per element map, as MMSR trains one network per
  source image.  ``crop = 0``: whole-image steps.
* ``tile = 256`` (ours): HR tile side for the exact tiled forward/backward pass; bounds
  memory (≈ 1.5 GB at 512² for one element map), not the result.

``fast`` (ours, a CPU budget): one network shared by all elements
(``share_elements = true``), trained on random crops (``crop`` HR pixels plus the network's
halo) with ``elements_per_step`` random element maps per step, ``epochs`` steps; the same
lr, decay and weight decay.  Chosen on ``simulate("sim-flowers", seed=101, size=256)``
(no benchmark scene); the figures are in ``tests/benchmarks/bench_learned_baselines.py``.

``threads`` (0 = torch's default) sets torch's CPU threads; ``inputs.device`` picks CUDA
when it is ``auto`` and a GPU is visible.
"""
from __future__ import annotations

import maxrf_bench as mb

#: The upsampler's training parameters after ``epochs`` (shared with ``ssgnet``, whose
#: upsampler is this one with one more guide channel).
UPSAMPLER_DEFAULTS: dict = {
    "lr": 2e-3,
    "lr_decay": 0.9998,
    "lr_decay_every": 5,
    "weight_decay_guide": 5e-4,
    "loss": "l1",
    "share_elements": False,
    "crop": 0,
    "elements_per_step": 0,
    "tile": 256,
    "threads": 0,
}
#: The upsampler's ``fast`` preset (shared with ``ssgnet``).
UPSAMPLER_FAST: dict = {"share_elements": True, "crop": 64, "elements_per_step": 4, "epochs": 600}

DEFAULTS: dict = {"epochs": 1000, **UPSAMPLER_DEFAULTS}

PRESETS: dict = {"paper": {}, "fast": dict(UPSAMPLER_FAST)}


def check_schedule(name: str, p: dict) -> None:
    """One clear error for each impossible value of the parameters MMSR and SSGNet share."""
    if int(p["epochs"]) < 0:
        raise mb.ConfigError(f"{name}.epochs must be ≥ 0, found {p['epochs']}")
    if not float(p["lr"]) > 0:
        raise mb.ConfigError(f"{name}.lr must be > 0, found {p['lr']}")
    if not 0 < float(p["lr_decay"]) <= 1:
        raise mb.ConfigError(f"{name}.lr_decay must be in (0, 1], found {p['lr_decay']}")
    if int(p["lr_decay_every"]) < 1:
        raise mb.ConfigError(f"{name}.lr_decay_every must be ≥ 1, found {p['lr_decay_every']}")
    if float(p["weight_decay_guide"]) < 0:
        raise mb.ConfigError(f"{name}.weight_decay_guide must be ≥ 0, found {p['weight_decay_guide']}")
    if p["loss"] not in ("l1", "mse"):
        raise mb.ConfigError(f"{name}.loss must be l1 or mse, found {p['loss']!r}")
    if int(p["crop"]) < 0:
        raise mb.ConfigError(f"{name}.crop must be ≥ 0 HR pixels (0 = whole image), found {p['crop']}")
    if int(p["elements_per_step"]) < 0:
        raise mb.ConfigError(f"{name}.elements_per_step must be ≥ 0 (0 = all), found "
                             f"{p['elements_per_step']}")
    if int(p["tile"]) < 16:
        raise mb.ConfigError(f"{name}.tile must be ≥ 16 HR pixels, found {p['tile']}")
    if int(p["threads"]) < 0:
        raise mb.ConfigError(f"{name}.threads must be ≥ 0 (0 = torch's default), found {p['threads']}")


def schedule(p: dict):
    from ._guided_upsampler import Schedule

    return Schedule(epochs=int(p["epochs"]), lr=float(p["lr"]), lr_decay=float(p["lr_decay"]),
                    lr_decay_every=int(p["lr_decay_every"]),
                    weight_decay_guide=float(p["weight_decay_guide"]), loss=p["loss"],
                    crop=int(p["crop"]), tile=int(p["tile"]),
                    elements_per_step=int(p["elements_per_step"]))


def run_mmsr(inputs: mb.MethodInputs, **p):
    check_schedule("mmsr", p)
    import numpy as np

    from . import _guided_upsampler as gu

    rgb = np.asarray(inputs.rgb.values, np.float32)
    if rgb.shape[0] != 3:
        raise mb.ScanValidationError(f"mmsr needs an RGB photograph (3 bands), found {rgb.shape[0]}")
    device = gu.resolve_device(inputs.device)
    with mb.torch_threads(int(p["threads"])):
        prob = gu.make_problem(inputs.maps_lr.values, gu.zscore_guide(rgb), inputs.operator, device)
        out = gu.super_resolve(prob, lambda: gu.MutualModulationNet(3), schedule(p),
                               share_elements=bool(p["share_elements"]), seed=int(inputs.seed),
                               progress=inputs.progress)
    return inputs.as_hr(out)


@mb.hookimpl
def maxrf_bench_register_methods(register):
    register(mb.Method(
        "mmsr", run_mmsr,
        description="mutual-modulation network trained on the scan itself (L1 between "
                    "U(prediction) and each LR map), RGB as guide",
        defaults=DEFAULTS, presets=PRESETS,
        reference="X. Dong, N. Yokoya, L. Wang, T. Uezato, Learning Mutual Modulation for "
                  "Self-Supervised Cross-Modal Super-Resolution, ECCV 2022 (palmdong/MMSR); "
                  "checked against reference code palmdong/MMSR@d37aa38: same seed (same initial "
                 "weights), same LR maps, photograph, operator and schedule: Δ = 0.00 dB on sim-demo "
                 "(1 element, 10 epochs: 20.12 dB both; ours vs reference 105.2 dB) "
                 "(tests/benchmarks/bench_reference.py, docs/baselines.md)",
        cost=146,  # s per 512²×21 cell, --preset fast, 2 threads (bench_makespan.py, 2026-12-06): longest first
    ))
