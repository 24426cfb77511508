"""Pretrained single-image SR baselines of Table I: ``car``, ``hat``, ``swin2sr``.

===========  =====================================================  =========================
method       network (built by)                                     released weights
===========  =====================================================  =========================
``car``      CAR's EDSR upscaler, 32 blocks × 256 features,         ``usn.pth`` (×2, ×4)
             residual scale 0.1 (``edsr.py``, ours)
``hat``      HAT, hybrid attention transformer (spandrel)           ``HAT_SRx4_ImageNet-pretrain.pth`` …
``swin2sr``  Swin2SR, SwinV2 transformer (spandrel)                 ``Swin2SR_ClassicalSR_X4_64.pth`` …
===========  =====================================================  =========================

References: W. Sun, Z. Chen, "Learned image downscaling for upscaling using content
adaptive resampler", IEEE TIP 29:4027–4040, 2020; X. Chen, X. Wang, J. Zhou, Y. Qiao,
C. Dong, "Activating more pixels in image super-resolution transformer", CVPR 2023;
M. V. Conde, U.-J. Choi, M. Burchi, R. Timofte, "Swin2SR: SwinV2 transformer for
compressed image super-resolution and restoration", ECCV 2022 Workshops.

Weights
-------
None can be downloaded here or at run time.  ``--set hat.weights=PATH`` (likewise
``car.weights``, ``swin2sr.weights``) names a file the user has; without it the method
stops with one line that names the file for the run's scale and where the authors
publish it (:mod:`.weights`).  The file determines the architecture (blocks, features,
window, depths…: spandrel reads them from the state dict, :func:`.edsr.edsr_config` for
EDSR), so any released variant loads (HAT-S, HAT-L, the Swin2SR lightweight model…).
Files are read with ``weights_only=True`` or as safetensors.  A checkpoint whose scale is
not the run's scale is refused with a message naming the right file (no ×4 model is
silently resampled to ×2).  The file must also be of the method's own architecture
(a Swin2SR file given to ``hat`` is refused, naming what it is).

The shared pipeline (the same for the three; :func:`.method.super_resolve`)
---------------------------------------------------------------------------
These models take an RGB image in [0, 1].  For each element map ``m`` (LR, ``(y_lr,
x_lr)``, in the normalised units of ``inputs.maps_lr``):

1. ``lo, hi = min(m), max(m)``; the network sees ``(m − lo) / (hi − lo)``, the map's own
   range mapped onto the image range the models were trained on;
2. replicated to the network's input channels (3 for every released model: a grey image);
3. super-resolved (whole map, or tiles for large maps, below);
4. the output channels are averaged (they differ slightly: the networks are not exactly
   colour-symmetric) and mapped back, ``lo + (hi − lo) · mean``.

So the output is in the units of the input: an affine change of a map's units changes
its output by the same affine map, and a constant map (no [0, 1] image exists) is
returned constant.  (Min–max is what the models' [0, 1] input range asks for; on a real
scan a single hot pixel sets ``hi`` and compresses the rest of the map into a dark image,
so such maps are best cleaned before import.)  The LR maps are not quantised to 8 bits (CAR's ``run.py`` rounds its
own downscaled image to 8 bits because it is an image file; our maps are not).  The
output is **not clamped**: spandrel's model descriptor and the authors' image writers
clamp to [0, 1] because they write 8-bit images, but here [0, 1] is the LR map's range and
the HR map legitimately exceeds it where block means flatten peaks; the host's ``+C``
variant clips every method alike.  Elements are super-resolved one at a time (memory of
one map).  The photograph is not used (``uses_rgb=False``).

Padding and tiling: HAT and Swin2SR pad to a multiple of their window inside spandrel's
``forward`` (reflection; HAT's own test code reflects too, Swin2SR's test script mirrors
with one extra window; only padded pixels differ, and they are cropped).  Maps smaller
than spandrel's minimum size (16 LR pixels) are padded the same way first.  ``tile``
(LR pixels, default 256) and ``tile_overlap`` (32) are the values of HAT's tile mode
example (``options/test/HAT_tile_example.yml``: ``tile_size 256``, ``tile_pad 32``;
Swin2SR's ``main_test_swin2sr.py`` has ``--tile_overlap 32``): a map no larger than one
tile runs whole, which is the authors' default whole-image inference (every benchmark
scan: 512² HR at ×4 is 128² LR), and larger maps run tile by tile with 32 LR pixels of
context so memory stays bounded.  ``tile=0`` forces whole-map inference.

Forward model: HAT and Swin2SR (classical) were trained on bicubic LR images, CAR's EDSR
on CAR's learned downscaling; here the LR maps come from the host's ``U`` (block mean or
beam spot).  Block means and MATLAB's bicubic both centre each LR pixel on its HR block,
so no shift is applied; the remaining mismatch is part of what Table I measures.

Presets: ``paper`` = the authors' released models at their own configuration (the file
decides), whole-image inference where it fits; ``fast`` = the same (inference only, no
training; the cost is one forward pass per element).  CUDA is used when ``--device``
allows (``auto`` with a GPU, or ``cuda``).  The output does not depend on the seed
(``deterministic=True``).

spandrel and torchvision: spandrel is an optional dependency (``pip install -e
'.[sisr]'``; also in ``[test]``); :mod:`._spandrel` explains how it is imported where
torchvision is installed but broken (the CPU torch 2.13 of these machines).

Read for this package (public reference code, none copied): sunwj/CAR (``run.py``,
``EDSR/edsr.py``, ``EDSR/common.py``, README); XPixelGroup/HAT (README,
``options/test/HAT_SRx4_ImageNet-pretrain.yml``, ``HAT_tile_example.yml``,
``hat/models/hat_model.py``); mv-lab/swin2sr (README, ``main_test_swin2sr.py``);
chaiNNer-org/spandrel (``__helpers/loader.py``, ``canonicalize.py``, ``registry.py``,
``model_descriptor.py``, ``architectures/HAT/__init__.py``,
``architectures/Swin2SR/__init__.py``, and its tests of both).

Cost at 512² × 21 elements, ×4 (128² LR maps, one tile each), real-size architectures with
random weights in the release layout, loading included, one torch thread on the shared
2-core machine, under the CPU lock (``tests/benchmarks/bench_sisr.py``, 2026-12-01; other
agents were editing and testing meanwhile, load average 1.4–3.5):

=========  ===================================  ========  ===========  =========
method     network                              seconds   s / element  peak RSS
=========  ===================================  ========  ===========  =========
``car``    EDSR 32 × 256, ×4                     635       30.2         1281 MB
``hat``    HAT (SRx4_ImageNet-pretrain config)   1192      56.8         1348 MB
``swin2sr``  Swin2SR classical ×4 (64)           450       21.4          841 MB
=========  ===================================  ========  ===========  =========

(390 MB of each peak is the interpreter with torch and the host imported.)  Elements run
one after another, so the peak does not grow with the number of elements.
"""
from __future__ import annotations

import maxrf_bench as mb

#: Parameters of the three methods (LR pixels for the tile sizes).
DEFAULTS = {"weights": "", "tile": 256, "tile_overlap": 32}
PRESETS = {"paper": {}, "fast": {}}


def run_car(inputs: mb.MethodInputs, weights: str = "", tile: int = 256, tile_overlap: int = 32):
    from .method import run_pretrained

    return run_pretrained("car", inputs, weights=weights, tile=tile, tile_overlap=tile_overlap)


def run_hat(inputs: mb.MethodInputs, weights: str = "", tile: int = 256, tile_overlap: int = 32):
    from .method import run_pretrained

    return run_pretrained("hat", inputs, weights=weights, tile=tile, tile_overlap=tile_overlap)


def run_swin2sr(inputs: mb.MethodInputs, weights: str = "", tile: int = 256,
                tile_overlap: int = 32):
    from .method import run_pretrained

    return run_pretrained("swin2sr", inputs, weights=weights, tile=tile,
                          tile_overlap=tile_overlap)


_METHODS = [
    ("car", run_car,
     "CAR's pretrained EDSR upscaler (32x256) on each element map; weights: usn.pth (--set car.weights=PATH)",
     "W. Sun, Z. Chen, Learned image downscaling for upscaling using content adaptive "
     "resampler, IEEE TIP 29:4027-4040, 2020 (github.com/sunwj/CAR)"),
    ("hat", run_hat,
     "pretrained HAT (hybrid attention transformer) on each element map; weights: "
     "HAT_SRx4_ImageNet-pretrain.pth (--set hat.weights=PATH)",
     "X. Chen, X. Wang, J. Zhou, Y. Qiao, C. Dong, Activating more pixels in image "
     "super-resolution transformer, CVPR 2023 (github.com/XPixelGroup/HAT)"),
    ("swin2sr", run_swin2sr,
     "pretrained Swin2SR on each element map; weights: Swin2SR_ClassicalSR_X4_64.pth "
     "(--set swin2sr.weights=PATH)",
     "M. V. Conde, U.-J. Choi, M. Burchi, R. Timofte, Swin2SR: SwinV2 transformer for "
     "compressed image super-resolution and restoration, ECCV 2022 Workshops "
     "(github.com/mv-lab/swin2sr)"),
]


@mb.hookimpl
def maxrf_bench_register_methods(register):
    for name, run, description, reference in _METHODS:
        register(mb.Method(name, run, description=description, defaults=dict(DEFAULTS),
                           presets={k: dict(v) for k, v in PRESETS.items()},
                           reference=reference, uses_rgb=False, deterministic=True,
                           check=_weights_check(name),
                           needs=f"a weights file (--set {name}.weights=PATH)"
                                 + ("" if name == "car" else "; the extra .[sisr] (spandrel)")))


def _weights_check(name: str):
    """The host's pre-flight check: the weights file exists (before any cell runs)."""
    def check(params, scale):
        from .weights import require_weights

        require_weights(name, params.get("weights"), scale)
    return check
