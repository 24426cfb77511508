"""Run a grid of (dataset × method × seed) cells, resumably, and collect the results.

The grid
--------
A *column* is a method spec (:mod:`maxrf_bench.variants`): a registered method, a
post-processing variant (``+P`` projection, ``+C`` clipping, ``+PC``) and parameters.  A
*run* is one execution of a method with its parameters on one dataset with one seed;
columns that differ only by their variant share a run, and the host post-processes the
run's raw output once per variant, the same way for every method.  Deterministic methods
run once whatever the seeds.

Every dataset is scored under one or more *protocols*:

* ``full``: the scan at its own resolution.  With ground truth (``maps``), the LR input is
  ``U(maps)`` and every truth metric is computed against the measured truth and, where the
  scan has it (the simulator's ``maps_clean``), against the noise-free truth.  Without it
  (a museum scan with ``maps_lr`` only), the no-reference metrics apply (consistency, QNR,
  D_λ, D_s).
* ``reduced``: Wald's reduced-resolution protocol.  The measured LR maps and the photograph
  are degraded once more by ``U``, the methods super-resolve them back to the measured LR
  grid, and the result is scored against the measured LR maps: a real-data PSNR on every
  scan.

Layout of a run directory::

    DIR/results.csv                long form, see :mod:`maxrf_bench.results`
    DIR/manifest.json              command, options, columns with their parameters and
                                   plugin versions, seeds, versions, git commit, host, timings
    DIR/inputs/D.zarr              what the methods saw, and the truths (normalised)
    DIR/cells/D/L/sr.zarr          per column L: maps over the seeds (mean ``maps`` and
                                   ``maps_std``, counts; ``maps_norm``, ``maps_norm_std``)
    DIR/cells/D/R/seed-N/          one run R (the column label without its variant):
        cell.json                  configuration, metrics per variant, time (written last)
        sr.zarr                    the method's raw output
        work/                      the method's private directory (checkpoints, model)
    DIR/cells/D/R/deterministic/   the same, for a method that ignores the seed

``D`` is the dataset name (``D@reduced`` under the reduced protocol).  A run counts as
finished when its ``cell.json`` exists and its key matches: the key covers the inputs, the
method, its parameters, the seed, the operator, the plugin's version and a hash of its
code, so a changed plugin is rerun; ``force=True`` reruns everything.  Every file is
written atomically.
"""
from __future__ import annotations

import csv
import hashlib
import inspect
import io
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
import xarray as xr

from .atomic import atomic_write_text
from .errors import ConfigError, MaxrfError, ScanValidationError, StoreError
from .lock import run_dir_lock
from .operators import Operator, make_operator
from .plugins import get_dataset, get_datasets, get_method, get_metrics, get_registry
from .results import RESULT_COLUMNS, TRUTHLESS, Results, Summary, read_results
from .scan import normalise_maps, open_scan, validate_scan, write_zarr_atomic
from .types import Method, MethodInputs, call_with_params, parse_value
from .variants import MethodSpec, check_variant, label, label_dirname, parse_spec, postprocess

PROTOCOLS = ("full", "reduced")
TRUTHS = ("measured", "clean")

__all__ = ["CellResult", "Column", "PROTOCOLS", "Prepared", "RESULT_COLUMNS", "Results",
           "RunConfig", "Runner", "Summary", "evaluate", "find_cell", "load_inputs", "load_maps",
           "noise_ceiling", "parse_sets", "prepare_scan", "read_results", "reduce_resolution",
           "resolve_dataset", "run_grid"]


# --- preparing a dataset --------------------------------------------------------------

@dataclass
class Prepared:
    """A dataset made ready for methods under one protocol: normalised LR maps, RGB,
    operator, and the truths it is scored against (normalised per element)."""

    name: str
    scan: xr.Dataset
    maps_lr: xr.DataArray
    rgb: xr.DataArray
    operator: Operator
    truth: np.ndarray | None
    offset: np.ndarray
    span: np.ndarray
    source: str = ""
    truth_clean: np.ndarray | None = None
    protocol: str = "full"

    @property
    def key(self) -> str:
        """Directory name of the dataset under this protocol (``D`` or ``D@reduced``)."""
        return self.name if self.protocol == "full" else f"{self.name}@{self.protocol}"

    @property
    def elements(self) -> list[str]:
        return [str(e) for e in self.maps_lr["element"].values]

    @property
    def truths(self) -> dict[str, np.ndarray]:
        """``{"measured": …, "clean": …}`` for the truths this dataset has."""
        out = {}
        if self.truth is not None:
            out["measured"] = self.truth
        if self.truth_clean is not None:
            out["clean"] = self.truth_clean
        return out

    @cached_property
    def fingerprint(self) -> str:
        """Identifies what the methods see (LR maps, photograph, operator)."""
        h = hashlib.sha256(json.dumps(self.operator.to_dict(), sort_keys=True).encode())
        h.update(np.ascontiguousarray(self.maps_lr.values, np.float32).tobytes())
        h.update(np.ascontiguousarray(self.rgb.values, np.float32).tobytes())
        return h.hexdigest()[:20]

    def inputs(self, **kw) -> MethodInputs:
        return MethodInputs(maps_lr=self.maps_lr, rgb=self.rgb, operator=self.operator, **kw)


def resolve_dataset(spec: str) -> tuple[str, Callable[[], xr.Dataset], str]:
    """``spec`` is a registered dataset name or a path to a ``.zarr`` scan."""
    looks_like_path = spec.endswith((".zarr", ".zarr/", ".nc", ".h5")) or os.sep in spec
    if looks_like_path or (Path(spec).exists() and spec not in get_datasets()):
        path = Path(spec)
        name = path.name.split(".")[0] or "scan"
        return name, (lambda: open_scan(path)), str(path)
    ds = get_dataset(spec)
    return ds.name, ds.load, f"dataset plugin {ds.name!r}"


def check_dataset_name(name: str, spec: str = "") -> None:
    """Refuse a dataset name that could not be one directory of a run directory: empty,
    ``.``/``..``, hidden, or with a path separator or the protocol marker ``@`` (a dataset
    plugin could register ``../../x`` or ``/tmp/x``; outputs must stay inside ``--out``)."""
    bad = (not name or name in (".", "..") or name.startswith(".") or "/" in name
           or "\\" in name or "@" in name or "\0" in name or len(name) > 200)
    if bad:
        where = f" (from {spec!r})" if spec and spec != name else ""
        raise ConfigError(f"dataset name {name!r}{where} cannot name a directory of the run: "
                          "expected a name without '/', '\\', '@', a leading '.' or '..', of at "
                          "most 200 characters")


def default_dataset() -> str:
    defaults = [d.name for d in get_datasets().values() if d.default]
    if not defaults:
        raise ConfigError("no dataset given and no dataset plugin is marked as the default; "
                          "expected --datasets NAME or a path to a .zarr scan")
    return sorted(defaults)[0]


def prepare_scan(scan: xr.Dataset, *, name: str, scale: int | None, operator: str = "blockmean",
                 sigma: float = 1.0, source: str = "") -> Prepared:
    """Normalise and degrade a scan as the evaluation protocol says (protocol ``full``).

    With ground truth (``maps``): each element is min–max normalised to [0, 1] once, and the
    LR input is ``U(maps)`` unless the scan carries measured ``maps_lr`` (then those are
    normalised with the same offset and span).  ``maps_clean`` is normalised with the
    offset and span of ``maps``.  Without ground truth: ``maps_lr`` are normalised per
    element by their own range.
    """
    validate_scan(scan, source or name)
    if "maps_lr" in scan:
        s_scan = int(scan["rgb"].sizes["y"] // scan["maps_lr"].sizes["y_lr"])
        if scale is not None and scale != s_scan:
            raise ConfigError(f"--scale {scale} does not match scan {name!r}, whose maps_lr are "
                              f"{s_scan}× smaller than its photograph")
        scale = s_scan
    scale = 4 if scale is None else int(scale)
    if scale < 1:
        raise ConfigError(f"scale must be a positive integer, found {scale}")
    kw = {"sigma": sigma} if operator == "gaussian" else {}
    op = make_operator(operator, scale, **kw)
    h, w = scan["rgb"].sizes["y"], scan["rgb"].sizes["x"]
    try:
        op.check_shape(h, w)
    except ScanValidationError as exc:
        raise ScanValidationError(f"scan {name!r}: {exc}") from None
    truth = clean = None
    if "maps" in scan:
        truth, offset, span = normalise_maps(scan["maps"].values)
        if "maps_lr" in scan:
            lr = (scan["maps_lr"].values - offset[:, None, None]) / span[:, None, None]
        else:
            lr = op.down(truth)
        if "maps_clean" in scan:
            clean = ((scan["maps_clean"].values - offset[:, None, None])
                     / span[:, None, None]).astype(np.float32)
    else:
        lr, offset, span = normalise_maps(scan["maps_lr"].values)
    lr = np.asarray(lr, dtype=np.float32)
    elements = scan["element"]
    ys = scan["y"].values.reshape(-1, scale).mean(1)
    xs = scan["x"].values.reshape(-1, scale).mean(1)
    maps_lr = xr.DataArray(lr, dims=("element", "y_lr", "x_lr"),
                           coords={"element": elements, "y_lr": ys, "x_lr": xs}, name="maps_lr")
    return Prepared(name, scan, maps_lr, scan["rgb"].astype(np.float32), op, truth,
                    offset, span, source, truth_clean=clean)


#: the reduced-resolution protocol needs at least this many LR pixels per side after the
#: second degradation (a smaller grid leaves nothing to super-resolve)
MIN_REDUCED_LR = 4


def reduce_resolution(prep: Prepared) -> Prepared:
    """Wald's reduced-resolution protocol: ``U`` applied once more to the measured LR maps
    and to the photograph; the measured LR maps become the truth (and ``U(maps_clean)`` the
    clean truth, where there is one)."""
    op = prep.operator
    s = op.scale
    _, h, w = prep.maps_lr.shape
    if h % s or w % s or h // s < MIN_REDUCED_LR or w // s < MIN_REDUCED_LR:
        raise ConfigError(
            f"--protocol reduced degrades scan {prep.name!r} once more by its scale {s}: its LR "
            f"grid must be divisible by {s} and give at least {MIN_REDUCED_LR}×{MIN_REDUCED_LR} "
            f"pixels, found an LR grid of {h}×{w}")
    lr = prep.maps_lr.values
    lr2 = np.asarray(op.down(lr), np.float32)
    rgb2 = np.clip(np.asarray(op.down(prep.rgb.values), np.float32), 0, 1)
    ys, xs = prep.maps_lr["y_lr"].values, prep.maps_lr["x_lr"].values
    rgb = xr.DataArray(rgb2, dims=("band", "y", "x"),
                       coords={"band": prep.rgb["band"], "y": ys, "x": xs}, name="rgb")
    maps_lr = xr.DataArray(lr2, dims=("element", "y_lr", "x_lr"),
                           coords={"element": prep.maps_lr["element"],
                                   "y_lr": ys.reshape(-1, s).mean(1), "x_lr": xs.reshape(-1, s).mean(1)},
                           name="maps_lr")
    clean = None if prep.truth_clean is None else np.asarray(op.down(prep.truth_clean), np.float32)
    return Prepared(prep.name, prep.scan, maps_lr, rgb, op, np.asarray(lr, np.float32),
                    prep.offset, prep.span, prep.source, truth_clean=clean, protocol="reduced")


# --- configuration --------------------------------------------------------------------

def parse_sets(items: Iterable[str]) -> dict[str, dict[str, Any]]:
    """Parse ``method.key=value`` strings into ``{method: {key: value}}``."""
    out: dict[str, dict[str, Any]] = {}
    for item in items:
        key, sep, value = item.partition("=")
        method, dot, param = key.strip().partition(".")
        if not sep or not dot or not method or not param:
            raise ConfigError(f"--set expects METHOD.KEY=VALUE (e.g. guided.radius=2), found {item!r}")
        out.setdefault(method, {})[param] = parse_value(value)
    return out


@dataclass
class RunConfig:
    """Everything a run needs.  ``methods`` are method specs (``guided+P[radius=2]``);
    ``seeds`` (or the single ``seed``) are the method seeds; ``protocols`` ⊂ {full, reduced};
    ``fair`` adds the ``+P`` column of every method that does not project; ``force`` reruns
    finished cells; ``truth`` is the truth the printed table shows (checked before anything
    runs); ``scheduler`` runs the cells as dask tasks (``threads``, ``processes`` or a
    ``dask.distributed`` address, see :mod:`maxrf_bench.scheduler`; ``None``: one after
    another in this process)."""

    methods: list[str]
    datasets: list[str] = field(default_factory=list)
    out: Path = Path("maxrf-results")
    scale: int | None = None
    seed: int = 0
    seeds: list[int] | None = None
    preset: str | None = None
    sets: dict[str, dict[str, Any]] = field(default_factory=dict)
    operator: str = "blockmean"
    sigma: float = 1.0
    device: str = "auto"
    metrics: list[str] | None = None
    protocols: list[str] = field(default_factory=lambda: ["full"])
    fair: bool = False
    force: bool = False
    truth: str = "measured"
    command: list[str] = field(default_factory=lambda: list(sys.argv))
    scheduler: str | None = None

    @property
    def seed_list(self) -> list[int]:
        return list(self.seeds) if self.seeds is not None else [int(self.seed)]


@dataclass
class Column:
    """One column of the comparison: ``label`` (unique), its spec and resolved parameters."""

    label: str
    spec: MethodSpec
    method: Method
    params: dict
    run_label: str          # the label without the variant: the run it post-processes

    @property
    def variant(self) -> str:
        return self.spec.variant


@dataclass
class CellResult:
    """One finished (or failed) run of a method on a dataset with a seed."""

    dataset: str
    method: str                # the run label
    metrics: dict              # variant → truth → metric → element → value
    seconds: float
    reused: bool = False
    error: str | None = None
    seed: int = 0
    protocol: str = "full"
    deterministic: bool = False
    worker: str | None = None
    #: failures of metric plugins on this cell's maps: the cell itself is fine (its maps and
    #: the other metrics are kept); the run reports each metric's failure once
    metric_errors: list = field(default_factory=list)


def _code_files(src: Path) -> list[Path]:
    """``src`` and the modules of its own directory tree that it imports, transitively
    (relative imports, ``from . import x`` and ``from .x import y``, parsed, not run); for a
    package's ``__init__``, the whole package."""
    import ast

    if src.name == "__init__.py":
        return sorted(src.parent.rglob("*.py"))
    seen: list[Path] = []
    todo = [src]
    while todo:
        f = todo.pop()
        if f in seen or not f.is_file():
            continue
        seen.append(f)
        try:
            tree = ast.parse(f.read_text(encoding="utf-8"))
        except (OSError, SyntaxError, UnicodeDecodeError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level == 1:
                names = [node.module] if node.module else [a.name for a in node.names]
                for n in names:
                    base = f.parent.joinpath(*n.split("."))
                    todo += [base.with_suffix(".py")] if base.with_suffix(".py").is_file() \
                        else sorted(base.rglob("*.py")) if base.is_dir() else []
    return sorted(seen)


def method_fingerprint(name: str, method: Method) -> dict:
    """The plugin that registered ``method``, its version, and a hash of its code.

    The code is the module that defines ``run`` with the sibling modules it imports
    relatively (transitively), or the whole package when ``run`` is defined in a package's
    ``__init__``; for a wrapped ``run`` (``__wrapped__``), that of every function it wraps.
    A change the hash cannot see (an absolute import of another module of the plugin)
    needs a new plugin version or ``--force``.
    """
    reg = get_registry()
    try:
        owner = reg.owner_of("methods", name)
    except KeyError:
        owner = ""
    info = reg.plugins.get(owner)
    # a wrapped ``run`` (functools.wraps, e.g. a shared driver around each method's own
    # function) counts the code of every function along its ``__wrapped__`` chain
    files: list[Path] = []
    fn, seen = method.run, set()
    while fn is not None and id(fn) not in seen:
        seen.add(id(fn))
        try:
            src = Path(inspect.getsourcefile(fn) or "")
        except TypeError:
            src = Path("")
        if src.is_file():
            files += [f for f in _code_files(src) if f not in files]
        fn = getattr(fn, "__wrapped__", None)
    files.sort()
    h = hashlib.sha256()
    for f in files:
        try:
            h.update(f.name.encode())
            h.update(f.read_bytes())
        except OSError:
            pass
    return {"plugin": owner, "plugin_version": info.version if info else "",
            "code_hash": h.hexdigest()[:16] if files else ""}


# --- metrics --------------------------------------------------------------------------

def evaluate(sr: np.ndarray, prepared: Prepared, metric_names: list[str] | None = None,
             errors: list[str] | None = None) -> dict[str, dict[str, dict[str, float]]]:
    """Every registered metric (or ``metric_names``) per element and overall (``all``),
    per truth: ``{truth: {metric: {element: value}}}`` with truth ``measured``, ``clean``
    (where the dataset has them) and ``none`` for the metrics that need no truth.

    ``errors``: when a list, a metric that raises is left out and its failure (metric and
    plugin name, exception) appended there instead of raised, so one broken metric plugin
    does not lose the other metrics of a run."""
    metrics = get_metrics()
    names = metric_names or sorted(metrics)
    out: dict[str, dict[str, dict[str, float]]] = {}
    lr = prepared.maps_lr.values
    rgb = prepared.rgb.values
    for name in names:
        metric = metrics[name]
        refs = prepared.truths.items() if metric.needs_truth else [(TRUTHLESS, None)]
        for truth_name, truth in refs:
            kw = {"rgb": rgb} if _accepts(metric.compute, "rgb") else {}
            try:
                per, overall = metric.compute(sr, truth, lr, prepared.operator, **kw)
                per = np.asarray(per, dtype=float).reshape(-1)
                if per.shape != (len(prepared.elements),):
                    raise ValueError(f"metric returned {per.size} per-element values, expected "
                                     f"{len(prepared.elements)} (one per element line)")
                row = {el: float(v) for el, v in zip(prepared.elements, per)}
                row["all"] = float(overall)
            except Exception as exc:  # noqa: BLE001 - reported, see ``errors``
                if errors is None:
                    raise
                try:
                    owner = get_registry().owner_of("metrics", name)
                except KeyError:
                    owner = "?"
                text = f"metric {name!r} (plugin {owner!r}) failed: {type(exc).__name__}: {exc}"
                if text not in errors:
                    errors.append(text)
                continue
            out.setdefault(truth_name, {})[name] = row
    return out


def _accepts(func: Callable, name: str) -> bool:
    try:
        params = inspect.signature(func).parameters
    except (TypeError, ValueError):
        return False
    return name in params or any(p.kind is p.VAR_KEYWORD for p in params.values())


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    rmse = float(np.sqrt(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2)))
    return float("inf") if rmse == 0 else -20.0 * np.log10(rmse)


# --- inputs, maps and cells on disk ---------------------------------------------------

def inputs_dataset(prep: Prepared) -> xr.Dataset:
    """What the methods of a dataset saw (and the normalised truths, when known)."""
    data = {"maps_lr": prep.maps_lr, "rgb": prep.rgb}
    coords = {"element": prep.maps_lr["element"], "y": prep.rgb["y"], "x": prep.rgb["x"]}
    for var, arr in (("maps", prep.truth), ("maps_clean", prep.truth_clean)):
        if arr is not None:
            data[var] = xr.DataArray(arr, dims=("element", "y", "x"), coords=coords)
    attrs = {k: v for k, v in prep.scan.attrs.items() if isinstance(v, (str, int, float, bool))}
    attrs.update(dataset=prep.name, protocol=prep.protocol, source=prep.source,
                 scale=prep.operator.scale, operator=json.dumps(prep.operator.to_dict()),
                 offset=prep.offset.tolist(), span=prep.span.tolist(),
                 normalisation="maps, maps_clean, maps_lr are normalised: counts = value * span + offset")
    if prep.truth is not None and prep.truth_clean is not None:
        attrs["noise_ceiling_db"] = _psnr(prep.truth, prep.truth_clean)
    return xr.Dataset(data, attrs=attrs)


def save_inputs(prep: Prepared, path: Path) -> None:
    """Keep the normalised inputs (and truths) of a dataset beside the results, once."""
    if path.exists():
        try:
            import zarr
            if zarr.open_group(str(path), mode="r").attrs.get("fingerprint") == prep.fingerprint:
                return
        except Exception:  # noqa: BLE001 - unreadable: rewrite it
            pass
    ds = inputs_dataset(prep)
    ds.attrs["fingerprint"] = prep.fingerprint
    write_zarr_atomic(ds, path)


def _dataset_key(dataset: str, protocol: str) -> str:
    return dataset if protocol == "full" else f"{dataset}@{protocol}"


def load_inputs(run_dir: str | Path, dataset: str, protocol: str = "full") -> xr.Dataset:
    """The normalised inputs (``maps_lr``, ``rgb``) and truths (``maps``, ``maps_clean``)
    the methods of ``dataset`` saw in a run."""
    path = Path(run_dir) / "inputs" / f"{_dataset_key(dataset, protocol)}.zarr"
    if not path.exists():
        raise StoreError(f"no inputs for dataset {dataset!r} (protocol {protocol}) in "
                         f"{str(run_dir)!r}: expected {path}")
    return open_scan(path, validate=False)


def noise_ceiling(run_dir: str | Path, dataset: str, protocol: str = "full") -> float | None:
    """PSNR (dB) of the measured truth against the clean one: what no method can exceed
    on the measured truth, on average.  ``None`` without a clean truth."""
    ds = load_inputs(run_dir, dataset, protocol)
    if "maps" not in ds or "maps_clean" not in ds:
        return None
    return _psnr(ds["maps"].values, ds["maps_clean"].values)


def _columns_there(folder: Path) -> str:
    """``; columns there: a, b`` for an error message (the cell folders of one dataset)."""
    try:
        names = sorted(p.name for p in folder.iterdir() if p.is_dir())
    except OSError:
        return ""
    return f"; expected one of the columns there: {', '.join(names)}" if names else ""


def run_label_of(text: str) -> str:
    """The run a column label post-processes: the label without its variant."""
    spec = parse_spec(text.split("[", 1)[0])
    return spec.name + text[len(text.split("[", 1)[0]):]


def load_maps(run_dir: str | Path, dataset: str, label_: str, protocol: str = "full") -> xr.Dataset:
    """The super-resolved maps of column ``label_`` on ``dataset``: ``maps`` (mean over seeds,
    counts), ``maps_std``, ``maps_norm``, ``maps_norm_std`` ``(element, y, x)``."""
    path = Path(run_dir) / "cells" / _dataset_key(dataset, protocol) / label_dirname(label_) / "sr.zarr"
    if not path.exists():
        raise StoreError(f"no maps of {label_!r} on dataset {dataset!r} in {str(run_dir)!r}: "
                         f"expected {path} (written by maxrf-bench run)"
                         + _columns_there(Path(run_dir) / "cells" / _dataset_key(dataset, protocol)))
    return open_scan(path, validate=False)


def find_cell(run_dir: str | Path, dataset: str, label_: str, seed: int | None = None,
              protocol: str = "full") -> Path:
    """The directory of a finished run (``cell.json``, ``sr.zarr``, ``work/``) behind column
    ``label_``: the given seed's, or the first finished one."""
    base = Path(run_dir) / "cells" / _dataset_key(dataset, protocol) / label_dirname(run_label_of(label_))
    if not base.is_dir():
        raise StoreError(f"no cell {label_!r} on dataset {dataset!r} in {str(run_dir)!r}: expected {base}"
                         + _columns_there(base.parent))
    candidates = [base / "deterministic"] if seed is None else []
    candidates += [base / f"seed-{seed}"] if seed is not None else sorted(
        base.glob("seed-*"), key=lambda p: int(p.name.split("-", 1)[1]) if p.name[5:].isdigit() else 0)
    for c in candidates:
        if (c / "cell.json").exists():
            return c
    raise StoreError(f"no finished run of {label_!r} on dataset {dataset!r}"
                     + (f" with seed {seed}" if seed is not None else "") + f" in {base}")


def _write_sr(path: Path, prep: Prepared, sr: np.ndarray, attrs: dict,
              sr_std: np.ndarray | None = None) -> None:
    span, offset = prep.span[:, None, None], prep.offset[:, None, None]
    coords = {"element": prep.maps_lr["element"], "y": prep.rgb["y"], "x": prep.rgb["x"]}
    dims = ("element", "y", "x")
    data = {"maps": (dims, (sr * span + offset).astype(np.float32)),
            "maps_norm": (dims, sr.astype(np.float32))}
    if sr_std is not None:
        data["maps_std"] = (dims, (sr_std * span).astype(np.float32))
        data["maps_norm_std"] = (dims, sr_std.astype(np.float32))
    pixel = prep.scan.attrs.get("pixel_size_mm")
    if pixel is not None and prep.protocol == "reduced":
        pixel = float(pixel) * prep.operator.scale
    base = {"dataset": prep.name, "protocol": prep.protocol, "scale": prep.operator.scale,
            "normalisation": "maps = maps_norm * span + offset (per element)",
            "offset": prep.offset.tolist(), "span": prep.span.tolist()}
    if pixel is not None:
        base["pixel_size_mm"] = float(pixel)
    write_zarr_atomic(xr.Dataset(data, coords=coords, attrs={**base, **attrs}), path)


def sweep_temporaries(*folders: Path) -> None:
    """Remove what a killed writer left in ``folders``: the temporary siblings of the atomic
    writes (``.NAME.tmp-XXXXXXXX``) and the replaced stores waiting for deletion
    (``.NAME.old-XXXXXXXX``).  Only called while the run directory's lock is held, so no
    other writer owns them."""
    for folder in folders:
        try:
            entries = list(Path(folder).iterdir())
        except OSError:
            continue
        for p in entries:
            if p.name.startswith(".") and (".tmp-" in p.name or ".old-" in p.name):
                if p.is_dir() and not p.is_symlink():
                    shutil.rmtree(p, ignore_errors=True)
                else:
                    p.unlink(missing_ok=True)


def _read_raw(cell: Path) -> np.ndarray:
    with xr.open_zarr(cell / "sr.zarr") as ds:
        return np.asarray(ds["maps_norm"].values, np.float32)


# --- running --------------------------------------------------------------------------

@dataclass
class RunUnit:
    """One method run (before post-processing) and the columns that read it."""

    run_label: str
    method_name: str
    method: Method
    params: dict
    columns: list[Column]
    fingerprint: dict

    @property
    def deterministic(self) -> bool:
        return bool(self.method.deterministic)

    def seeds(self, seeds: list[int]) -> list[int]:
        return seeds[:1] if self.deterministic else list(seeds)

    def cell_dir(self, out: Path, prep: Prepared, seed: int) -> Path:
        sub = "deterministic" if self.deterministic else f"seed-{seed}"
        return out / "cells" / prep.key / label_dirname(self.run_label) / sub

    def key(self, cfg: RunConfig, prep: Prepared, seed: int) -> str:
        blob = json.dumps(
            {"inputs": prep.fingerprint, "protocol": prep.protocol, "method": self.method_name,
             "params": self.params, "seed": None if self.deterministic else seed,
             "operator": prep.operator.to_dict(), **self.fingerprint},
            sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


class Runner:
    """Runs a :class:`RunConfig`; ``echo`` and ``progress_factory`` decide what the user sees."""

    def __init__(self, config: RunConfig, echo: Callable[[str], None] = lambda s: None,
                 progress_factory: Callable[[str], Callable] | None = None):
        self.config = config
        self.echo = echo
        self.progress_factory = progress_factory
        self.cluster_info: dict | None = None  # scheduler and workers, when run on dask

    # -- resolving names and options, before anything is written --
    def columns(self) -> list[Column]:
        cfg = self.config
        if not cfg.methods:
            raise ConfigError("expected at least one method (--methods A,B)")
        specs = [s if isinstance(s, MethodSpec) else parse_spec(s) for s in cfg.methods]
        names = {s.name for s in specs}
        for m in cfg.sets:
            if m not in names:
                raise ConfigError(f"--set names method {m!r}, which is not in --methods "
                                  f"({', '.join(sorted(names))})")
        methods = {n: get_method(n) for n in names}
        if cfg.preset is not None and not any(cfg.preset in m.presets for m in methods.values()):
            known = sorted({p for m in methods.values() for p in m.presets})
            raise ConfigError(f"no method in --methods has preset {cfg.preset!r}; "
                              f"expected one of: {', '.join(known) or '(none)'}")

        def resolved(spec: MethodSpec) -> dict:
            return methods[spec.name].params(cfg.preset, {**cfg.sets.get(spec.name, {}), **spec.overrides})

        if cfg.fair:  # each method as published, then the host's projection of it
            with_fair: list[tuple[MethodSpec, bool]] = []
            for spec in specs:
                with_fair.append((spec, False))
                if not spec.project and not methods[spec.name].projects_with(resolved(spec)):
                    with_fair.append((MethodSpec(spec.name, "P" + ("C" if spec.clip else ""),
                                                 spec.overrides), True))
        else:
            with_fair = [(spec, False) for spec in specs]
        columns: list[Column] = []
        seen: dict[str, bool] = {}  # label → added by --fair
        for spec, added in with_fair:
            method = methods[spec.name]
            params = resolved(spec)
            check_variant(spec, method, params)
            baseline = method.params(cfg.preset)
            text = label(spec, params, baseline)
            if text in seen:
                if added or seen[text]:
                    continue  # --fair adds a column the user asked for as well
                raise ConfigError(f"--methods gives column {text!r} twice; each column needs its "
                                  f"own variant or parameters")
            seen[text] = added
            columns.append(Column(text, spec, method, params, label(spec, params, baseline, variant=False)))
        return columns

    def check(self) -> tuple[list[Prepared], list[RunUnit]]:
        """Resolve every name, option and dataset before anything is written."""
        cfg = self.config
        columns = self.columns()
        seeds = cfg.seed_list
        if not seeds:
            raise ConfigError("--seeds expects at least one integer seed, found none")
        if len(set(seeds)) != len(seeds):
            raise ConfigError(f"--seeds lists a seed twice: {seeds}")
        if cfg.metrics:
            known = get_metrics()
            for name in cfg.metrics:
                if name not in known:
                    from .errors import UnknownNameError
                    raise UnknownNameError("metric", name, list(known))
        if cfg.device not in ("auto", "cpu", "cuda"):
            raise ConfigError(f"--device expects auto, cpu or cuda, found {cfg.device!r}")
        if cfg.scheduler is not None:  # malformed: fails here, before anything is written
            from .scheduler import parse_scheduler

            parse_scheduler(cfg.scheduler)
        bad = [p for p in cfg.protocols if p not in PROTOCOLS]
        if bad or not cfg.protocols:
            raise ConfigError(f"--protocol expects {' or '.join(PROTOCOLS)} (comma-separated), "
                              f"found {','.join(cfg.protocols) or '(none)'}")
        if cfg.truth not in (*TRUTHS, "all"):
            raise ConfigError(f"--truth expects measured, clean or all, found {cfg.truth!r}")
        specs = cfg.datasets or [default_dataset()]
        prepared: list[Prepared] = []
        names = set()
        for spec in specs:
            name, load, source = resolve_dataset(spec)
            check_dataset_name(name, spec)
            if name in names:
                raise ConfigError(f"two datasets are both named {name!r}; rename one of the stores")
            names.add(name)
            full = prepare_scan(load(), name=name, scale=cfg.scale, operator=cfg.operator,
                                sigma=cfg.sigma, source=source)
            for protocol in cfg.protocols:
                prepared.append(full if protocol == "full" else reduce_resolution(full))
        if cfg.truth == "clean" and not any(p.truth_clean is not None for p in prepared):
            raise ConfigError("--truth clean needs a scan with a noise-free truth ('maps_clean', as "
                              "the simulator writes), found none among: "
                              + ", ".join(sorted(names)))
        units: dict[str, RunUnit] = {}
        for col in columns:
            unit = units.get(col.run_label)
            if unit is None:
                unit = units[col.run_label] = RunUnit(
                    col.run_label, col.spec.name, col.method, col.params, [],
                    method_fingerprint(col.spec.name, col.method))
            unit.columns.append(col)
        for unit in units.values():  # pre-flight checks of the methods, once per scale
            if unit.method.check is not None:
                for scale in sorted({p.operator.scale for p in prepared}):
                    unit.method.check(unit.params, scale)
        return prepared, list(units.values())

    # -- the grid --
    def run(self) -> list[CellResult]:
        cfg = self.config
        prepared, units = self.check()
        out = Path(cfg.out)
        created = not out.exists()
        try:
            return self._run_in(out, prepared, units)
        except MaxrfError:
            # bad input that a method itself found (e.g. missing weights): a run directory
            # this run created, and in which no cell finished, is removed again
            if created and out.is_dir() and not any(out.glob("cells/*/*/*/cell.json")):
                shutil.rmtree(out, ignore_errors=True)
            raise

    def _run_in(self, out: Path, prepared: list[Prepared], units: list[RunUnit]) -> list[CellResult]:
        cfg = self.config
        # one run per directory; a second one stops here, before writing (maxrf_bench.lock)
        with run_dir_lock(out, cfg.command):
            if cfg.scheduler is not None:  # the same grid, its cells as dask tasks
                from .scheduler import run_on_dask

                return run_on_dask(self, out, prepared, units)
            return self._run_locked(out, prepared, units)

    def _run_locked(self, out: Path, prepared: list[Prepared], units: list[RunUnit]
                    ) -> list[CellResult]:
        cfg = self.config
        started = time.time()
        results: list[CellResult] = []
        sweep_temporaries(out, out / "inputs")
        for prep in prepared:
            save_inputs(prep, out / "inputs" / f"{prep.key}.zarr")
            for unit in units:
                for seed in unit.seeds(cfg.seed_list):
                    results.append(self.run_cell(out, prep, unit, seed))
                    self._write_outputs(out, results, prepared, units, started, finished=False)
                self._write_aggregates(out, prep, unit, results)
        self._write_outputs(out, results, prepared, units, started, finished=True)
        return results

    def run_cell(self, out: Path, prep: Prepared, unit: RunUnit, seed: int,
                 worker: str | None = None) -> CellResult:
        """Run (or reuse) one method run and score every variant its columns ask for."""
        cfg = self.config
        cell = unit.cell_dir(out, prep, seed)
        key = unit.key(cfg, prep, seed)
        variants = sorted({c.variant for c in unit.columns})
        name = f"{prep.key} / {unit.run_label}" + ("" if unit.deterministic else f" / seed {seed}")
        meta_path = cell / "cell.json"
        if not cfg.force and meta_path.exists() and (cell / "sr.zarr").exists():
            try:
                meta = json.loads(meta_path.read_text())
                if meta.get("key") == key:
                    metric_errors: list[str] = []
                    metrics = self._ensure_metrics(cell, meta, prep, variants, metric_errors)
                    self.echo(f"{name}: finished earlier, reusing")
                    self._echo_metric_errors(metric_errors)
                    return CellResult(prep.name, unit.run_label, metrics, meta["seconds"], True,
                                      seed=seed, protocol=prep.protocol,
                                      deterministic=unit.deterministic, worker=meta.get("worker"),
                                      metric_errors=metric_errors)
            except (ValueError, KeyError, OSError):
                pass  # an unreadable record is recomputed, not trusted
        # Not finished: recompute.  The old record goes first, so that a run killed half-way
        # through the recomputation is never taken for finished; stale temporaries go too.
        meta_path.unlink(missing_ok=True)
        sweep_temporaries(cell, cell / "work")
        workdir = cell / "work"
        key_file = workdir / ".key"
        if cfg.force or (key_file.exists() and key_file.read_text() != key):
            shutil.rmtree(workdir, ignore_errors=True)  # no stale checkpoints of another config
        workdir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(key_file, key)
        progress = self.progress_factory(name) if self.progress_factory else None
        inputs = prep.inputs(seed=seed, workdir=workdir, device=cfg.device,
                             **({"progress": progress} if progress else {}))
        self.echo(f"{name}: running")
        t0 = time.perf_counter()
        try:
            sr = call_with_params(unit.method.run, inputs, unit.params)
            sr = np.asarray(sr.values if isinstance(sr, xr.DataArray) else sr, dtype=np.float32)
            expected = (len(prep.elements), *prep.rgb.shape[-2:])
            if sr.shape != expected:
                raise ValueError(f"method returned shape {sr.shape}, expected {expected}")
            if not np.isfinite(sr).all():
                raise ValueError(f"method returned {int((~np.isfinite(sr)).sum())} non-finite values")
        except MaxrfError:
            raise
        except Exception as exc:  # noqa: BLE001 - one failing cell must not lose the others
            (cell / "error.log").write_text(traceback.format_exc())
            self.echo(f"{name}: FAILED: {type(exc).__name__}: {exc} "
                      f"(traceback in {cell / 'error.log'})")
            return CellResult(prep.name, unit.run_label, {}, time.perf_counter() - t0,
                              error=f"{type(exc).__name__}: {exc}", seed=seed,
                              protocol=prep.protocol, deterministic=unit.deterministic, worker=worker)
        seconds = time.perf_counter() - t0
        _write_sr(cell / "sr.zarr", prep, sr, {"method": unit.run_label, "seed": seed,
                                               "params": json.dumps(unit.params, default=str)})
        metric_errors: list[str] = []
        metrics = {v: evaluate(postprocess(sr, v, prep.operator, prep.maps_lr.values), prep,
                               cfg.metrics, metric_errors) for v in variants}
        self._echo_metric_errors(metric_errors)
        meta = {"key": key, "dataset": prep.name, "protocol": prep.protocol,
                "dataset_source": prep.source, "method": unit.method_name, "run_label": unit.run_label,
                "params": unit.params, "preset": cfg.preset, "seed": seed,
                "deterministic": unit.deterministic, "scale": prep.operator.scale,
                "operator": prep.operator.to_dict(), "elements": prep.elements,
                "normalisation": {"offset": prep.offset.tolist(), "span": prep.span.tolist()},
                **unit.fingerprint, "seconds": seconds, "worker": worker,
                "metric_names": cfg.metrics, "metrics": metrics, "metric_errors": metric_errors}
        atomic_write_text(meta_path, json.dumps(meta, indent=1, default=float))
        (cell / "error.log").unlink(missing_ok=True)
        psnr = metrics.get(variants[0], {}).get("measured", {}).get("psnr", {}).get("all")
        tail = f", PSNR {psnr:.2f} dB" if psnr is not None else ""
        self.echo(f"{name}: done in {seconds:.1f} s{tail}")
        return CellResult(prep.name, unit.run_label, metrics, seconds, seed=seed,
                          protocol=prep.protocol, deterministic=unit.deterministic, worker=worker,
                          metric_errors=metric_errors)

    def _echo_metric_errors(self, errors: list[str]) -> None:
        """Say each metric plugin's failure once per run, not once per cell."""
        seen = self.__dict__.setdefault("_metric_errors_seen", set())
        for text in errors:
            if text not in seen:
                seen.add(text)
                self.echo(f"{text.split(' failed:')[0]} failed: its values are left out, the cells "
                          "are kept (the reason is in manifest.json and at the end of the run)")

    def _ensure_metrics(self, cell: Path, meta: dict, prep: Prepared, variants: list[str],
                        errors: list[str] | None = None) -> dict:
        """Metrics of every requested variant of a finished run; computes (from the stored
        raw output) and records the ones an earlier run did not ask for (or that failed
        then: they are tried again; failures go to ``errors``)."""
        metrics = meta.get("metrics", {})
        wanted = set(self.config.metrics or get_metrics())
        missing = [v for v in variants
                   if v not in metrics or not wanted <= {m for t in metrics[v].values() for m in t}]
        if missing:
            sr = _read_raw(cell)
            for v in missing:
                metrics[v] = evaluate(postprocess(sr, v, prep.operator, prep.maps_lr.values), prep,
                                      self.config.metrics, errors)
            meta["metrics"] = metrics
            meta["metric_errors"] = list(errors or [])
            atomic_write_text(cell / "cell.json", json.dumps(meta, indent=1, default=float))
        return metrics

    def _write_aggregates(self, out: Path, prep: Prepared, unit: RunUnit,
                          results: list[CellResult]) -> None:
        """Per column: the mean and standard deviation over seeds of the post-processed maps."""
        cfg = self.config
        done = [r.seed for r in results if r.dataset == prep.name and r.protocol == prep.protocol
                and r.method == unit.run_label and (r.error is None or r.metrics)]
        if not done:
            return
        keys = [unit.key(cfg, prep, s) for s in done]
        raws = None
        for col in unit.columns:
            path = out / "cells" / prep.key / label_dirname(col.label) / "sr.zarr"
            fingerprint = hashlib.sha256(json.dumps([keys, col.variant]).encode()).hexdigest()[:16]
            if path.exists():
                try:
                    import zarr
                    if zarr.open_group(str(path), mode="r").attrs.get("fingerprint") == fingerprint:
                        continue
                except Exception:  # noqa: BLE001 - unreadable: rewrite it
                    pass
            if raws is None:
                raws = [_read_raw(unit.cell_dir(out, prep, s)) for s in done]
            maps = np.stack([postprocess(r, col.variant, prep.operator, prep.maps_lr.values)
                             for r in raws])
            std = maps.std(0, ddof=1) if len(maps) > 1 else np.zeros_like(maps[0])
            _write_sr(path, prep, maps.mean(0), {
                "method": col.label, "run_label": unit.run_label, "variant": col.variant,
                "seeds": done, "deterministic": unit.deterministic, "fingerprint": fingerprint,
                "params": json.dumps(col.params, default=str),
                "maps_std": "standard deviation over the seeds (ddof=1; 0 for one run)"}, std)

    def _write_outputs(self, out: Path, results: list[CellResult], prepared: list[Prepared],
                       units: list[RunUnit], started: float, finished: bool) -> None:
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(RESULT_COLUMNS)
        by_run = {u.run_label: u for u in units}
        for r in results:
            if r.error and not r.metrics:  # the method failed: nothing to score
                continue
            for col in by_run[r.method].columns:
                for truth, table in r.metrics.get(col.variant, {}).items():
                    for metric, row in table.items():
                        for element, value in row.items():
                            w.writerow((r.dataset, r.protocol, col.label, r.seed, truth, element,
                                        metric, repr(float(value))))
                w.writerow((r.dataset, r.protocol, col.label, r.seed, TRUTHLESS, "all", "seconds",
                            repr(float(r.seconds))))
        atomic_write_text(out / "results.csv", buf.getvalue())
        cfg = self.config
        datasets = list(dict.fromkeys(p.name for p in prepared))
        manifest = {
            "command": cfg.command,
            "options": {"methods": [str(m) for m in cfg.methods], "datasets": datasets,
                        "dataset_sources": {p.name: p.source for p in prepared},
                        "scale": {p.name: p.operator.scale for p in prepared},
                        "seeds": cfg.seed_list, "preset": cfg.preset, "sets": cfg.sets,
                        "operator": cfg.operator, "sigma": cfg.sigma, "device": cfg.device,
                        "metrics": cfg.metrics, "protocols": cfg.protocols, "fair": cfg.fair,
                        "force": cfg.force, "scheduler": cfg.scheduler},
            **({"cluster": self.cluster_info} if self.cluster_info is not None else {}),
            "columns": {c.label: {"method": c.spec.name, "variant": c.variant, "run": u.run_label,
                                  "params": c.params, "projects": c.method.projects_with(c.params),
                                  "deterministic": u.deterministic, **u.fingerprint}
                        for u in units for c in u.columns},
            "params": {c.label: c.params for u in units for c in u.columns},
            "seeds": {"methods": cfg.seed_list},
            "noise_ceiling_db": {p.key: _psnr(p.truth, p.truth_clean) for p in prepared
                                 if p.truth is not None and p.truth_clean is not None},
            # what reproduces a cell without the command line (maxrf_bench.reproduce)
            "inputs": {p.key: {"dataset": p.name, "protocol": p.protocol, "source": p.source,
                               "path": _source_path(p.source), "fingerprint": p.fingerprint,
                               "operator": p.operator.to_dict(), "elements": p.elements,
                               "saved": f"inputs/{p.key}.zarr"} for p in prepared},
            "environment": {k: os.environ[k] for k in REPRO_ENV if k in os.environ},
            "versions": package_versions(),
            "plugins": {n: i.version for n, i in get_registry().plugins.items()},
            "plugin_failures": [vars(f) for f in get_registry().failures],
            "metric_failures": list(dict.fromkeys(t for r in results for t in r.metric_errors)),
            "git_commit": git_commit(),
            "host": host_info(),
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
            "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z") if finished else None,
            "timings": [{"dataset": r.dataset, "protocol": r.protocol, "method": r.method,
                         "columns": [c.label for c in by_run[r.method].columns], "seed": r.seed,
                         "seconds": r.seconds, "reused": r.reused, "error": r.error,
                         "worker": r.worker} for r in results],
        }
        atomic_write_text(out / "manifest.json", json.dumps(manifest, indent=1, default=str))


def run_grid(methods: list[str], datasets: list[str] | None = None, out: str | Path = "maxrf-results",
             **kwargs) -> Results:
    """Run every method spec on every dataset (Python API of ``maxrf-bench run``)."""
    cfg = RunConfig(methods=list(methods), datasets=list(datasets or []), out=Path(out), **kwargs)
    Runner(cfg).run()
    return read_results(out)


# --- provenance -----------------------------------------------------------------------

#: environment variables that can change a cell's numbers (threads, hashing, GPU maths)
REPRO_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "PYTHONHASHSEED",
             "CUBLAS_WORKSPACE_CONFIG", "CUDA_VISIBLE_DEVICES", "MAXRF_BENCH_STRICT_PLUGINS")


def _source_path(source: str) -> str | None:
    """The absolute path of a dataset given as a store path (``None`` for a plugin's dataset)."""
    if not source or source.startswith("dataset plugin "):
        return None
    return str(Path(source).resolve())


def package_versions() -> dict[str, str]:
    from importlib import metadata

    names = ["maxrf-bench", "numpy", "scipy", "xarray", "zarr", "pluggy", "click", "torch",
             "onnx", "onnxruntime", "onnxruntime-gpu", "dask", "spandrel"]
    out = {"python": platform.python_version()}
    for n in names:
        try:
            out[n] = metadata.version(n)
        except metadata.PackageNotFoundError:
            pass
    return out


def git_commit() -> str | None:
    here = Path(__file__).resolve().parent
    try:
        res = subprocess.run(["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True,
                             text=True, timeout=5)
        if res.returncode == 0:
            dirty = subprocess.run(["git", "-C", str(here), "status", "--porcelain", "--untracked-files=no"],
                                   capture_output=True, text=True, timeout=5).stdout.strip()
            return res.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        pass
    return None


def host_info() -> dict:
    return {"hostname": socket.gethostname(), "platform": platform.platform(),
            "machine": platform.machine(), "cpus": os.cpu_count(),
            "python": sys.version.split()[0]}
