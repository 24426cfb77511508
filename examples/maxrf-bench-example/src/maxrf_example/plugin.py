"""The hooks of the example plugin: two methods, a metric and a dataset.

Named in ``pyproject.toml`` under ``[project.entry-points.maxrf_bench]``; maxrf-bench imports
this module only when it needs what it registers (``list`` and ``--help`` read a cache).
Heavy imports (torch, onnx, scipy…) belong inside the functions that use them.
"""
from __future__ import annotations

import numpy as np

import maxrf_bench as mb

#: Illustrative values (not tuned on any scene): a 4 × 4 LR window, σ_s = 1 LR pixel,
#: σ_r = 0.1 in RGB units.
JBU_DEFAULTS = {"radius": 2, "sigma_spatial": 1.0, "sigma_range": 0.1}


def run_jbu(inputs: mb.MethodInputs, radius: int = 2, sigma_spatial: float = 1.0,
            sigma_range: float = 0.1) -> np.ndarray:
    """Joint bilateral upsampling of ``inputs.maps_lr`` guided by the photograph ``inputs.rgb``.

    Returns ``(element, y, x)`` float32 on the HR grid, in the normalised units of
    ``inputs.maps_lr``.  No projection, no clipping: ``example-jbu+P`` / ``+C`` ask the host.
    """
    from .jbu import joint_bilateral_upsample

    return joint_bilateral_upsample(inputs.maps_lr.values, inputs.rgb.values, inputs.operator.scale,
                                    radius=radius, sigma_spatial=sigma_spatial,
                                    sigma_range=sigma_range, progress=inputs.progress)


def run_bilinear(inputs: mb.MethodInputs) -> np.ndarray:
    """Bilinear upsampling (the graph that ``export_bilinear`` writes to ONNX)."""
    return mb.upsample(inputs.maps_lr.values, inputs.operator.scale, "bilinear")


def _export_bilinear(workdir, path, metadata):
    from .onnx_export import export_bilinear  # onnx only when exporting

    return export_bilinear(workdir, path, metadata)


def max_abs_error(sr, truth, lr, operator):
    """Largest absolute error per element and overall (normalised units)."""
    err = np.abs(np.asarray(sr, dtype=np.float64) - truth)
    return err.max(axis=(1, 2)), float(err.max())


def load_toy():
    """A 64 × 64 painting-like toy scene (counts), built when a run asks for it."""
    from maxrf_bench.testing import toy_scene

    return mb.make_scan(**toy_scene(64, elements=4, seed=7), title="example toy scene",
                        source="maxrf-bench-example", licence="CC0-1.0")


@mb.hookimpl
def maxrf_bench_register_methods(register):
    register(mb.Method(
        "example-jbu", run_jbu,
        description="joint bilateral upsampling guided by the photograph (Kopf et al. 2007)",
        defaults=JBU_DEFAULTS,
        presets={"paper": {}, "fast": {"radius": 1}},
        reference="J. Kopf, M. F. Cohen, D. Lischinski, M. Uyttendaele, 'Joint Bilateral "
                  "Upsampling', ACM Trans. Graph. 26(3), 2007",
        deterministic=True,
    ))
    register(mb.Method(
        "example-bilinear", run_bilinear,
        description="bilinear upsampling of the LR maps (exportable to ONNX)",
        uses_rgb=False, deterministic=True, export=_export_bilinear,
    ))


@mb.hookimpl
def maxrf_bench_register_metrics(register):
    register(mb.Metric("example-maxabs", max_abs_error, "largest absolute error (normalised units)",
                       higher_is_better=False, needs_truth=True))


@mb.hookimpl
def maxrf_bench_register_datasets(register):
    register(mb.Dataset("example-toy", load_toy, "a 64×64 toy scene with ground truth"))
