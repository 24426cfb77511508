"""maxrf-bench: super-resolution of MA-XRF element maps guided by an RGB photograph.

The public API, for notebooks and plugins alike::

    import maxrf_bench as mb
    scan = mb.open_scan("painting.zarr")
    results = mb.run_grid(["bicubic", "proposed"], ["painting.zarr"], out="results")

Plugins implement the hooks of :mod:`maxrf_bench.hookspecs` with :data:`hookimpl` and
register :class:`Method`, :class:`Dataset` and :class:`Metric` items.

The words of the API (column, variant, run, cell, dataset key, inputs digest, method
identity, cell key) are defined once, in :mod:`maxrf_bench.runner`.
"""
from __future__ import annotations

from importlib import metadata as _metadata

from .errors import (ConfigError, MaxrfError, OutputError, PluginError,  # noqa: F401
                     ScanValidationError, StoreError, UnknownNameError)
from .hookspecs import hookimpl  # noqa: F401

# The public names, by the module that defines them: the one list.  ``__all__`` and the
# lazy imports are derived from it; tests/test_api.py checks that every name is importable
# and exported.  The modules below are imported on first use of one of their names (PEP 562
# module __getattr__): `maxrf-bench --help`, `list methods` and a plugin module that only
# needs `mb.hookimpl` do not pay for numpy, xarray and zarr (about a second).
PUBLIC = {
    "errors": ["ConfigError", "MaxrfError", "OutputError", "PluginError", "ScanValidationError",
               "StoreError", "UnknownNameError"],
    "hookspecs": ["hookimpl"],
    "atomic": ["atomic_path", "atomic_torch_save", "atomic_write_text", "check_output", "output_dir",
               "owned_scan", "safe_stem", "write_dir"],
    "bounds": ["check_alloc", "check_file_holds", "import_cap"],
    "operators": ["BlockMean", "CoarseScan", "GaussianBeam", "Operator", "block_mean", "make_operator", "nearest_up"],
    "plugins": ["get_dataset", "get_datasets", "get_method", "get_methods", "get_metric", "get_metrics",
                "get_registry"],
    "progress": ["progress_bar", "progress_printer"],
    "resample": ["upsample"],
    "results": ["Results", "Summary", "read_results"],
    "config": ["RunConfig", "parse_sets"],
    "prepare": ["Prepared", "prepare_scan", "reduce_resolution", "resolve_dataset"],
    "scoring": ["evaluate"],
    "highpass": ["explained_share", "high_pass", "interior"],
    "rundir": ["RunDir", "owned_run_dir", "find_cell", "load_inputs", "load_maps", "load_prepared",
               "noise_ceiling"],
    "noise": ["noise_model"],
    "acquisition": ["row_jitter"],
    "runner": ["Runner", "run_grid"],
    "variants": ["MethodSpec", "parse_spec", "postprocess"],
    "scan": ["SCHEMA_VERSION", "bin_short_dwell", "make_scan", "normalise_maps", "open_scan",
             "save_scan", "validate_scan", "write_zarr_atomic"],
    "types": ["Dataset", "Method", "MethodInputs", "Metric", "Progress"],
    "report": ["write_report"],
    "misregister": ["displacement_field", "warp_photo"],
    "savemaps": ["save_maps"],
    "torchutil": ["torch_device", "torch_threads"],
}
_EAGER = ("errors", "hookspecs")  # imported above: light, and needed by every plugin
_WHERE = {name: module for module, names in PUBLIC.items() if module not in _EAGER
          for name in names}

try:
    __version__ = _metadata.version("maxrf-bench")
except _metadata.PackageNotFoundError:  # running from a source tree
    __version__ = "0.0.0"

__all__ = sorted({name for names in PUBLIC.values() for name in names} | {"__version__"})


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
