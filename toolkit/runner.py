"""Run a grid of (dataset × method) cells, resumably, and collect the results.

Layout of a run directory::

    DIR/results.csv          long form: dataset,method,element,metric,value
    DIR/manifest.json        command, options, seeds, versions, git commit, timings, host
    DIR/cells/D/M/sr.zarr    super-resolved maps of method M on dataset D (de-normalised
                             counts in ``maps``, normalised in ``maps_norm``)
    DIR/cells/D/M/cell.json  the cell's configuration, metrics and time (written last)
    DIR/cells/D/M/work       the method's private directory (a folder) (checkpoints, trained model)

A cell counts as finished when ``cell.json`` exists and its configuration matches; a
rerun of the same command skips finished cells.  Every file is written atomically.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import platform
import socket
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import numpy as np
import xarray as xr

from .atomic import atomic_write_text
from .errors import ConfigError, MaxrfError, ScanValidationError
from .operators import Operator, make_operator
from .plugins import get_dataset, get_datasets, get_method, get_metrics
from .scan import normalise_maps, open_scan, validate_scan, write_zarr_atomic
from .types import MethodInputs, call_with_params, parse_value

RESULT_COLUMNS = ("dataset", "method", "element", "metric", "value")


# --- preparing a dataset --------------------------------------------------------------

@dataclass
class Prepared:
    """A dataset made ready for methods: normalised LR maps, RGB, operator, optional truth."""

    name: str
    scan: xr.Dataset
    maps_lr: xr.DataArray
    rgb: xr.DataArray
    operator: Operator
    truth: np.ndarray | None
    offset: np.ndarray
    span: np.ndarray
    source: str = ""

    @property
    def elements(self) -> list[str]:
        return [str(e) for e in self.maps_lr["element"].values]

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


def default_dataset() -> str:
    defaults = [d.name for d in get_datasets().values() if d.default]
    if not defaults:
        raise ConfigError("no dataset given and no dataset plugin is marked as the default; "
                          "expected --datasets NAME or a path to a .zarr scan")
    return sorted(defaults)[0]


def prepare_scan(scan: xr.Dataset, *, name: str, scale: int | None, operator: str = "blockmean",
                 sigma: float = 1.0, source: str = "") -> Prepared:
    """Normalise and degrade a scan as the evaluation protocol says.

    With ground truth (``maps``): each element is min–max normalised to [0, 1] once, and the
    LR input is ``U(maps)`` unless the scan carries measured ``maps_lr`` (then those are
    normalised with the same offset and span).  Without ground truth: ``maps_lr`` are
    normalised per element by their own range.
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
    truth = None
    if "maps" in scan:
        truth, offset, span = normalise_maps(scan["maps"].values)
        if "maps_lr" in scan:
            lr = (scan["maps_lr"].values - offset[:, None, None]) / span[:, None, None]
        else:
            lr = op.down(truth)
    else:
        lr, offset, span = normalise_maps(scan["maps_lr"].values)
    lr = np.asarray(lr, dtype=np.float32)
    elements = scan["element"]
    ys = scan["y"].values.reshape(-1, scale).mean(1)
    xs = scan["x"].values.reshape(-1, scale).mean(1)
    maps_lr = xr.DataArray(lr, dims=("element", "y_lr", "x_lr"),
                           coords={"element": elements, "y_lr": ys, "x_lr": xs}, name="maps_lr")
    return Prepared(name, scan, maps_lr, scan["rgb"].astype(np.float32), op, truth,
                    offset, span, source)


# --- configuration --------------------------------------------------------------------

def parse_sets(items: Iterable[str]) -> dict[str, dict[str, Any]]:
    """Parse ``method.key=value`` strings into ``{method: {key: value}}``."""
    out: dict[str, dict[str, Any]] = {}
    for item in items:
        key, sep, value = item.partition("=")
        method, dot, param = key.strip().partition(".")
        if not sep or not dot or not method or not param:
            raise ConfigError(f"--set expects METHOD.KEY=VALUE (e.g. bicubic.project=true), found {item!r}")
        out.setdefault(method, {})[param] = parse_value(value)
    return out


@dataclass
class RunConfig:
    methods: list[str]
    datasets: list[str] = field(default_factory=list)
    out: Path = Path("maxrf-results")
    scale: int | None = None
    seed: int = 0
    preset: str | None = None
    sets: dict[str, dict[str, Any]] = field(default_factory=dict)
    operator: str = "blockmean"
    sigma: float = 1.0
    device: str = "auto"
    metrics: list[str] | None = None
    command: list[str] = field(default_factory=lambda: list(sys.argv))


@dataclass
class CellResult:
    dataset: str
    method: str
    metrics: dict[str, dict[str, float]]  # metric → element → value ('all' included)
    seconds: float
    reused: bool = False
    error: str | None = None


def cell_key(config: RunConfig, dataset_source: str, method: str, params: Mapping) -> str:
    blob = json.dumps(
        {"dataset": dataset_source, "method": method, "params": params, "scale": config.scale,
         "seed": config.seed, "operator": config.operator,
         "sigma": config.sigma if config.operator == "gaussian" else None},
        sort_keys=True, default=str,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def inputs_dataset(prep: Prepared) -> xr.Dataset:
    """What the methods of a cell saw (and the normalised truth, when known), as a Dataset."""
    data = {"maps_lr": prep.maps_lr, "rgb": prep.rgb}
    if prep.truth is not None:
        data["maps"] = xr.DataArray(prep.truth, dims=("element", "y", "x"),
                                    coords={"element": prep.maps_lr["element"], "y": prep.rgb["y"],
                                            "x": prep.rgb["x"]})
    attrs = {k: v for k, v in prep.scan.attrs.items() if isinstance(v, (str, int, float, bool))}
    attrs.update(dataset=prep.name, source=prep.source, scale=prep.operator.scale,
                 operator=json.dumps(prep.operator.to_dict()), offset=prep.offset.tolist(),
                 span=prep.span.tolist(),
                 normalisation="maps, maps_lr are normalised: counts = value * span + offset")
    return xr.Dataset(data, attrs=attrs)


def save_inputs(prep: Prepared, path: Path) -> None:
    """Keep the normalised inputs (and truth) of a dataset beside the results, once."""
    fingerprint = hashlib.sha256(np.ascontiguousarray(prep.maps_lr.values).tobytes()).hexdigest()[:16]
    if path.exists():
        try:
            import zarr
            if zarr.open_group(str(path), mode="r").attrs.get("fingerprint") == fingerprint:
                return
        except Exception:  # noqa: BLE001 - unreadable: rewrite it
            pass
    ds = inputs_dataset(prep)
    ds.attrs["fingerprint"] = fingerprint
    write_zarr_atomic(ds, path)


def load_inputs(run_dir: str | Path, dataset: str) -> xr.Dataset:
    path = Path(run_dir) / "inputs" / f"{dataset}.zarr"
    if not path.exists():
        from .errors import StoreError
        raise StoreError(f"no inputs for dataset {dataset!r} in {str(run_dir)!r}: expected {path}")
    return open_scan(path, validate=False)


# --- atomic writes --------------------------------------------------------------------

# --- running --------------------------------------------------------------------------

def evaluate(sr: np.ndarray, prepared: Prepared, metric_names: list[str] | None = None
             ) -> dict[str, dict[str, float]]:
    """Every registered metric (or ``metric_names``) per element and overall ('all')."""
    metrics = get_metrics()
    names = metric_names or sorted(metrics)
    out: dict[str, dict[str, float]] = {}
    lr = prepared.maps_lr.values
    for name in names:
        metric = metrics[name]
        if metric.needs_truth and prepared.truth is None:
            continue
        per, overall = metric.compute(sr, prepared.truth, lr, prepared.operator)
        row = {el: float(v) for el, v in zip(prepared.elements, np.asarray(per, dtype=float))}
        row["all"] = float(overall)
        out[name] = row
    return out


class Runner:
    """Runs a :class:`RunConfig`; ``echo`` and ``progress_factory`` decide what the user sees."""

    def __init__(self, config: RunConfig, echo: Callable[[str], None] = lambda s: None,
                 progress_factory: Callable[[str], Callable] | None = None):
        self.config = config
        self.echo = echo
        self.progress_factory = progress_factory

    def check(self) -> tuple[list[tuple[str, Prepared]], dict[str, dict]]:
        """Resolve every name, option and dataset before anything is written."""
        cfg = self.config
        if not cfg.methods:
            raise ConfigError("expected at least one method (--methods A,B)")
        methods = {m: get_method(m) for m in cfg.methods}
        for m in cfg.sets:
            if m not in methods:
                raise ConfigError(f"--set names method {m!r}, which is not in --methods "
                                  f"({', '.join(cfg.methods)})")
        params = {m: methods[m].params(cfg.preset, cfg.sets.get(m)) for m in cfg.methods}
        if cfg.preset is not None and not any(cfg.preset in methods[m].presets for m in methods):
            known = sorted({p for m in methods.values() for p in m.presets})
            raise ConfigError(f"no method in --methods has preset {cfg.preset!r}; "
                              f"expected one of: {', '.join(known) or '(none)'}")
        if cfg.metrics:
            known = get_metrics()
            for name in cfg.metrics:
                if name not in known:
                    from .errors import UnknownNameError
                    raise UnknownNameError("metric", name, list(known))
        if cfg.device not in ("auto", "cpu", "cuda"):
            raise ConfigError(f"--device expects auto, cpu or cuda, found {cfg.device!r}")
        specs = cfg.datasets or [default_dataset()]
        prepared: list[tuple[str, Prepared]] = []
        names = set()
        for spec in specs:
            name, load, source = resolve_dataset(spec)
            if name in names:
                raise ConfigError(f"two datasets are both named {name!r}; rename one of the stores")
            names.add(name)
            scan = load()
            prepared.append((source, prepare_scan(scan, name=name, scale=cfg.scale,
                                                  operator=cfg.operator, sigma=cfg.sigma,
                                                  source=source)))
        return prepared, params

    def run(self) -> list[CellResult]:
        cfg = self.config
        prepared, params = self.check()
        out = Path(cfg.out)
        out.mkdir(parents=True, exist_ok=True)
        started = time.time()
        results: list[CellResult] = []
        for source, prep in prepared:
            save_inputs(prep, out / "inputs" / f"{prep.name}.zarr")
            for m in cfg.methods:
                results.append(self._run_cell(out, source, prep, m, params[m]))
                self._write_outputs(out, results, prepared, params, started, finished=False)
        self._write_outputs(out, results, prepared, params, started, finished=True)
        return results

    def _run_cell(self, out: Path, source: str, prep: Prepared, method_name: str,
                  params: dict) -> CellResult:
        cfg = self.config
        method = get_method(method_name)
        cell = out / "cells" / prep.name / method_name
        key = cell_key(cfg, source, method_name, params)
        meta_path = cell / "cell.json"
        if meta_path.exists() and (cell / "sr.zarr").exists():
            try:
                meta = json.loads(meta_path.read_text())
                if meta.get("key") == key:
                    self.echo(f"{prep.name} / {method_name}: finished earlier, reusing")
                    return CellResult(prep.name, method_name, meta["metrics"], meta["seconds"],
                                      reused=True)
            except (ValueError, KeyError):
                pass
        workdir = cell / "work"
        workdir.mkdir(parents=True, exist_ok=True)
        # a previous cell with another configuration must not leave stale checkpoints behind
        key_file = workdir / ".key"
        if key_file.exists() and key_file.read_text() != key:
            import shutil
            shutil.rmtree(workdir)
            workdir.mkdir(parents=True)
        atomic_write_text(key_file, key)
        progress = self.progress_factory(f"{prep.name} / {method_name}") if self.progress_factory else None
        inputs = prep.inputs(seed=cfg.seed, workdir=workdir, device=cfg.device,
                             **({"progress": progress} if progress else {}))
        self.echo(f"{prep.name} / {method_name}: running")
        t0 = time.perf_counter()
        try:
            sr = call_with_params(method.run, inputs, params)
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
            self.echo(f"{prep.name} / {method_name}: FAILED: {type(exc).__name__}: {exc} "
                      f"(traceback in {cell / 'error.log'})")
            return CellResult(prep.name, method_name, {}, time.perf_counter() - t0,
                              error=f"{type(exc).__name__}: {exc}")
        seconds = time.perf_counter() - t0
        metrics = evaluate(sr, prep, cfg.metrics)
        self._write_cell(cell, prep, method_name, sr, params)
        meta = {"key": key, "dataset": prep.name, "dataset_source": source, "method": method_name,
                "params": params, "preset": cfg.preset, "seed": cfg.seed, "scale": prep.operator.scale,
                "operator": prep.operator.to_dict(), "elements": prep.elements,
                "normalisation": {"offset": prep.offset.tolist(), "span": prep.span.tolist()},
                "seconds": seconds, "metrics": metrics}
        atomic_write_text(meta_path, json.dumps(meta, indent=1, default=float))
        (cell / "error.log").unlink(missing_ok=True)
        overall = metrics.get("psnr", {}).get("all")
        tail = f", PSNR {overall:.2f} dB" if overall is not None else ""
        self.echo(f"{prep.name} / {method_name}: done in {seconds:.1f} s{tail}")
        return CellResult(prep.name, method_name, metrics, seconds)

    def _write_cell(self, cell: Path, prep: Prepared, method: str, sr: np.ndarray, params) -> None:
        counts = sr * prep.span[:, None, None] + prep.offset[:, None, None]
        coords = {"element": prep.maps_lr["element"], "y": prep.rgb["y"], "x": prep.rgb["x"]}
        ds = xr.Dataset(
            {"maps": (("element", "y", "x"), counts.astype(np.float32)),
             "maps_norm": (("element", "y", "x"), sr.astype(np.float32))},
            coords=coords,
            attrs={"method": method, "dataset": prep.name, "scale": prep.operator.scale,
                   "params": json.dumps(params, default=str),
                   "normalisation": "maps = maps_norm * span + offset (per element)",
                   "offset": prep.offset.tolist(), "span": prep.span.tolist()},
        )
        write_zarr_atomic(ds, cell / "sr.zarr")

    def _write_outputs(self, out: Path, results: list[CellResult], prepared, params, started,
                       finished: bool) -> None:
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(RESULT_COLUMNS)
        for r in results:
            if r.error:
                continue
            for metric, row in r.metrics.items():
                for element, value in row.items():
                    w.writerow((r.dataset, r.method, element, metric, repr(float(value))))
            w.writerow((r.dataset, r.method, "all", "seconds", repr(float(r.seconds))))
        atomic_write_text(out / "results.csv", buf.getvalue())
        cfg = self.config
        manifest = {
            "command": cfg.command,
            "options": {"methods": cfg.methods, "datasets": [p.name for _, p in prepared],
                        "dataset_sources": {p.name: s for s, p in prepared},
                        "scale": {p.name: p.operator.scale for _, p in prepared},
                        "seed": cfg.seed, "preset": cfg.preset, "sets": cfg.sets,
                        "operator": cfg.operator, "sigma": cfg.sigma, "device": cfg.device,
                        "metrics": cfg.metrics},
            "params": params,
            "seeds": {"methods": cfg.seed},
            "versions": package_versions(),
            "git_commit": git_commit(),
            "host": host_info(),
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
            "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z") if finished else None,
            "timings": [{"dataset": r.dataset, "method": r.method, "seconds": r.seconds,
                         "reused": r.reused, "error": r.error} for r in results],
        }
        atomic_write_text(out / "manifest.json", json.dumps(manifest, indent=1, default=str))


def run_grid(methods: list[str], datasets: list[str] | None = None, out: str | Path = "maxrf-results",
             **kwargs) -> "Results":
    """Run every method on every dataset (Python API of ``maxrf-bench run``)."""
    cfg = RunConfig(methods=list(methods), datasets=list(datasets or []), out=Path(out), **kwargs)
    Runner(cfg).run()
    return read_results(out)


# --- reading results ------------------------------------------------------------------

@dataclass
class Results:
    """The rows of ``results.csv`` with helpers to pivot them."""

    rows: list[dict]

    def value(self, dataset: str, method: str, metric: str, element: str = "all") -> float:
        for r in self.rows:
            if (r["dataset"], r["method"], r["metric"], r["element"]) == (dataset, method, metric, element):
                return r["value"]
        raise KeyError((dataset, method, metric, element))

    def get(self, dataset: str, method: str, metric: str, element: str = "all",
            default: float = float("nan")) -> float:
        """Like :meth:`value`, with ``default`` (NaN) for a missing cell."""
        try:
            return self.value(dataset, method, metric, element)
        except KeyError:
            return default

    @property
    def datasets(self) -> list[str]:
        return list(dict.fromkeys(r["dataset"] for r in self.rows))

    @property
    def methods(self) -> list[str]:
        return list(dict.fromkeys(r["method"] for r in self.rows))

    def to_dataframe(self):
        import pandas as pd

        return pd.DataFrame(self.rows)


def read_results(out: str | Path) -> Results:
    path = Path(out) / "results.csv"
    if not path.exists():
        from .errors import StoreError
        raise StoreError(f"no results in {str(out)!r}: expected {path} (written by maxrf-bench run)")
    rows = []
    with open(path, newline="") as f:
        for r in csv.DictReader(f):
            r["value"] = float(r["value"])
            rows.append(r)
    return Results(rows)


# --- provenance -----------------------------------------------------------------------

def package_versions() -> dict[str, str]:
    from importlib import metadata

    names = ["maxrf-bench", "numpy", "scipy", "xarray", "zarr", "pluggy", "click", "torch",
             "onnx", "onnxruntime", "onnxruntime-gpu", "dask"]
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
