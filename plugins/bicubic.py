"""Bicubic interpolation: the plain single-image baseline (no photograph).

Keys' cubic convolution (a = -0.5) on the block-mean pixel grid.  The host's ``bicubic+P``
variant adds the projection onto the maps consistent with the measured scan (paper Eq. 10).
"""
from __future__ import annotations

import numpy as np

import maxrf_bench as mb


def run_bicubic(inputs: mb.MethodInputs, a: float = -0.5):
    lr = inputs.maps_lr.values.astype(np.float32)
    return inputs.as_hr(mb.upsample(lr, inputs.operator.scale, "bicubic", a=a))


@mb.hookimpl
def maxrf_bench_register_methods(register):
    register(mb.Method(
        "bicubic", run_bicubic,
        description="bicubic interpolation of the LR maps (no RGB)",
        defaults={"a": -0.5},
        presets={"paper": {}, "fast": {}},
        reference="R. Keys, IEEE TASSP 29(6), 1981",
        uses_rgb=False,
        deterministic=True,
    ))
