"""maxrf-bench: super-resolution of MA-XRF element maps guided by an RGB photograph.

The public API, for notebooks and plugins alike::

    import maxrf_bench as mb
    scan = mb.open_scan("painting.zarr")
    results = mb.run_grid(["bicubic", "proposed"], ["painting.zarr"], out="results")

Plugins implement the hooks of :mod:`maxrf_bench.hookspecs` with :data:`hookimpl` and
register :class:`Method`, :class:`Dataset` and :class:`Metric` items.
"""
from __future__ import annotations

from importlib import metadata as _metadata

from .atomic import atomic_path, atomic_torch_save, atomic_write_text
from .errors import (ConfigError, MaxrfError, PluginError, ScanValidationError, StoreError,
                     UnknownNameError)
from .hookspecs import hookimpl
from .operators import BlockMean, GaussianBeam, Operator, block_mean, make_operator, nearest_up
from .plugins import (get_dataset, get_datasets, get_method, get_methods, get_metric, get_metrics,
                      get_registry)
from .progress import progress_printer
from .resample import upsample
from .results import Results, Summary, read_results
from .runner import (Prepared, RunConfig, Runner, evaluate, find_cell, load_inputs, load_maps,
                     noise_ceiling, parse_sets, prepare_scan, reduce_resolution, resolve_dataset,
                     run_grid)
from .variants import MethodSpec, parse_spec, postprocess
from .scan import (SCHEMA_VERSION, make_scan, normalise_maps, open_scan, save_scan, validate_scan,
                   write_zarr_atomic)
from .types import Dataset, Method, MethodInputs, Metric, Progress

try:
    __version__ = _metadata.version("maxrf-bench")
except _metadata.PackageNotFoundError:  # running from a source tree
    __version__ = "0.0.0"

__all__ = [
    "atomic_path", "atomic_torch_save", "atomic_write_text",
    "BlockMean", "ConfigError", "Dataset", "GaussianBeam", "MaxrfError", "Method", "MethodInputs",
    "Metric", "Operator", "PluginError", "Prepared", "Progress", "Results", "RunConfig", "Runner",
    "SCHEMA_VERSION", "ScanValidationError", "StoreError", "UnknownNameError", "block_mean",
    "evaluate", "find_cell", "load_inputs", "load_maps", "MethodSpec", "noise_ceiling",
    "parse_spec", "postprocess", "reduce_resolution", "Summary", "get_dataset", "get_datasets", "get_method", "get_methods", "get_metric",
    "get_metrics", "get_registry", "hookimpl", "make_operator", "make_scan", "nearest_up",
    "normalise_maps", "open_scan", "parse_sets", "prepare_scan", "progress_printer", "read_results",
    "resolve_dataset", "run_grid", "save_scan", "upsample", "validate_scan", "write_zarr_atomic",
    "__version__",
]
