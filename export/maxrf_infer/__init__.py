"""maxrf_infer: run an exported MA-XRF super-resolution model without PyTorch.

For scanner workstations: needs numpy, onnxruntime(-gpu), zarr, xarray and dask (and
``distributed`` for a cluster), never torch nor maxrf_bench.  Command line::

    maxrf-infer MODEL.onnx SCAN.zarr -o OUT.zarr [--tile N] [--provider auto|cuda|cpu]
                [--scheduler threads|processes|ADDRESS]

Python::

    import maxrf_infer
    result = maxrf_infer.infer("model.onnx", "scan.zarr", "out.zarr", tile=256)
"""
from __future__ import annotations

from importlib import metadata as _metadata

from .model import (InferError, ModelInfo, cached_session, create_session, model_margin,
                    read_model_info, run_graph, run_model)
from .photo import registered_photo
from .stream import DEFAULT_TILE, InferResult, check_compatible, infer, read_scan_info
from .tiles import Tile, infer_tiled, plan_tiles

try:
    __version__ = _metadata.version("maxrf-infer")
except _metadata.PackageNotFoundError:  # shipped inside maxrf-bench, or a source tree
    try:
        __version__ = _metadata.version("maxrf-bench")
    except _metadata.PackageNotFoundError:
        __version__ = "0.0.0"

__all__ = ["DEFAULT_TILE", "InferError", "InferResult", "ModelInfo", "Tile", "cached_session",
           "check_compatible", "create_session", "infer", "infer_tiled", "model_margin", "plan_tiles",
           "read_model_info", "read_scan_info", "registered_photo", "run_graph", "run_model", "__version__"]
