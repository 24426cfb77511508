"""Bicubic interpolation: the plain single-image baseline (no photograph).

Keys' cubic convolution (a = -0.5) on the block-mean pixel grid; with ``project=true`` the
result is also projected onto the maps consistent with the measured scan (paper Eq. 10).
"""
from __future__ import annotations

import numpy as np

import maxrf_bench as mb


def run_bicubic(inputs: mb.MethodInputs, project: bool = False, a: float = -0.5):
    lr = inputs.maps_lr.values.astype(np.float32)
    up = mb.upsample(lr, inputs.operator.scale, "bicubic", a=a)
    if project:
        up = inputs.operator.project(up, lr)
    return inputs.as_hr(up)


@mb.hookimpl
def maxrf_bench_register_methods(register):
    register(mb.Method(
        "bicubic", run_bicubic,
        description="bicubic interpolation of the LR maps (no RGB); project=true adds Eq. 10",
        defaults={"project": False, "a": -0.5},
        presets={"paper": {}, "fast": {}},
        reference="R. Keys, IEEE TASSP 29(6), 1981",
        uses_rgb=False,
        deterministic=True,
    ))
