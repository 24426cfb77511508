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
from typing import TYPE_CHECKING

from .errors import (ConfigError, MaxrfError, PluginError, ScanValidationError, StoreError,
                     UnknownNameError)
from .hookspecs import hookimpl

# Everything else is imported on first use (PEP 562 module __getattr__): `maxrf-bench --help`,
# `list methods` and a plugin module that only needs `mb.hookimpl` when it is imported do not
# pay for numpy, xarray and zarr (about a second).  To add a public name, add it here.
_LAZY = {
    "atomic": ["atomic_path", "atomic_torch_save", "atomic_write_text"],
    "operators": ["BlockMean", "GaussianBeam", "Operator", "block_mean", "make_operator", "nearest_up"],
    "plugins": ["get_dataset", "get_datasets", "get_method", "get_methods", "get_metric", "get_metrics",
                "get_registry"],
    "progress": ["progress_bar", "progress_printer"],
    "resample": ["upsample"],
    "results": ["Results", "Summary", "read_results"],
    "runner": ["Prepared", "RunConfig", "Runner", "evaluate", "find_cell", "load_inputs", "load_maps",
               "noise_ceiling", "parse_sets", "prepare_scan", "reduce_resolution", "resolve_dataset",
               "run_grid"],
    "variants": ["MethodSpec", "parse_spec", "postprocess"],
    "scan": ["SCHEMA_VERSION", "make_scan", "normalise_maps", "open_scan", "save_scan", "validate_scan",
             "write_zarr_atomic"],
    "types": ["Dataset", "Method", "MethodInputs", "Metric", "Progress"],
    "report": ["write_report"],
    "savemaps": ["save_maps"],
    "torchutil": ["torch_device", "torch_threads"],
}
_WHERE = {name: module for module, names in _LAZY.items() for name in names}


def __getattr__(name: str):
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'maxrf_bench' has no attribute {name!r}")
    from importlib import import_module

    value = getattr(import_module(f".{module}", __name__), name)
    globals()[name] = value  # the next access is a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_WHERE))


if TYPE_CHECKING:  # for type checkers and editors: the same names, eagerly
    from .atomic import atomic_path, atomic_torch_save, atomic_write_text  # noqa: F401
    from .operators import (BlockMean, GaussianBeam, Operator, block_mean,  # noqa: F401
                            make_operator, nearest_up)
    from .plugins import (get_dataset, get_datasets, get_method, get_methods,  # noqa: F401
                          get_metric, get_metrics, get_registry)
    from .progress import progress_bar, progress_printer  # noqa: F401
    from .report import write_report  # noqa: F401
    from .resample import upsample  # noqa: F401
    from .results import Results, Summary, read_results  # noqa: F401
    from .runner import (Prepared, RunConfig, Runner, evaluate, find_cell,  # noqa: F401
                         load_inputs, load_maps, noise_ceiling, parse_sets, prepare_scan,
                         reduce_resolution, resolve_dataset, run_grid)
    from .savemaps import save_maps  # noqa: F401
    from .torchutil import torch_device, torch_threads  # noqa: F401
    from .scan import (SCHEMA_VERSION, make_scan, normalise_maps, open_scan,  # noqa: F401
                       save_scan, validate_scan, write_zarr_atomic)
    from .types import Dataset, Method, MethodInputs, Metric, Progress  # noqa: F401
    from .variants import MethodSpec, parse_spec, postprocess  # noqa: F401

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
    "progress_bar", "save_maps", "write_report", "__version__",
]
