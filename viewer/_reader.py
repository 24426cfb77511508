"""The napari reader: a scan store (``.zarr``) or a run directory → layer-data tuples.

A **scan** gives the photograph (an RGB image, underneath), then one image layer per
element line of the high-resolution maps (``maps``: the truth of a simulated or
ground-truth scan) and of the measured low-resolution maps (``maps_lr``, drawn on the same
field of view: scaled by the scan's factor and shifted so the pixel centres line up).

A **run directory** (``manifest.json``, ``inputs/``, ``cells/``) gives, per dataset of the
run, the photograph, the truth maps where there is a truth, and per column of the table
(``bicubic``, ``proposed+P``…) its super-resolved maps (the mean over seeds), their
per-pixel standard deviation over the seeds, and their error (SR − truth) where there is a
truth; one layer per element line each, in counts.

Every layer is in millimetres where the scan's ``pixel_size_mm`` is known (``scale``,
``units``), carries the element's name and a colormap of its own (errors: a diverging one,
symmetric about 0), explicit contrast limits (0.5–99.5 % percentiles from a bounded sample
of the data, so a big map is never read whole for them), and stays a lazy dask array: napari
reads the chunks it shows.  Only the first element line is visible at first (they are
drawn additively; tick the others on).
"""
from __future__ import annotations

import json
import os
from importlib import metadata
from pathlib import Path
from typing import Any, Callable

import numpy as np

LayerData = tuple[Any, dict, str]

#: element symbol → napari colormap (a pigment's usual colour where it has one)
ELEMENT_COLORMAPS = {"Hg": "red", "Cu": "green", "Fe": "bop orange", "Pb": "gray", "Ca": "cyan",
                     "Zn": "blue", "Mn": "magenta", "Co": "bop blue", "Sn": "yellow",
                     "As": "I Forest", "Cr": "I Bordeaux", "K": "I Purple", "Ti": "gray_r"}
CYCLE = ("magenta", "cyan", "yellow", "bop purple", "bop blue", "I Orange", "green", "red")
#: at most this many values are read to set the contrast limits of one layer
SAMPLE_LIMIT = 2_000_000


def colormap_for(element: str, index: int = 0) -> str:
    symbol = element.split("_")[0].split("-")[0]
    return ELEMENT_COLORMAPS.get(symbol, CYCLE[index % len(CYCLE)])


def _units_supported() -> bool:
    """napari ≥ 0.5 takes ``units`` and ``axis_labels``; without napari (the tests) say so too."""
    try:
        major, minor = (int(v) for v in metadata.version("napari").split(".")[:2])
    except (metadata.PackageNotFoundError, ValueError):
        return True
    return (major, minor) >= (0, 5)


def _sample(arr) -> np.ndarray:
    """A bounded sample of ``arr`` (numpy or dask): the whole when small, else evenly spread
    chunks (dask) or a strided view (numpy)."""
    size = int(np.prod(arr.shape))
    if size <= SAMPLE_LIMIT:
        return np.asarray(arr)
    if hasattr(arr, "blocks"):
        n = arr.npartitions
        per = max(1, int(np.prod(arr.chunksize)))
        take = max(1, min(n, SAMPLE_LIMIT // per))
        idx = np.unique(np.linspace(0, n - 1, take).astype(int))
        flat = arr.blocks.ravel()
        return np.concatenate([np.asarray(flat[int(i)]).ravel() for i in idx])
    step = int(np.ceil(np.sqrt(size / SAMPLE_LIMIT)))
    return np.asarray(arr[..., ::step, ::step])


def contrast_limits(arr, symmetric: bool = False) -> list[float]:
    values = _sample(arr).astype(np.float64).ravel()
    values = values[np.isfinite(values)]
    if values.size == 0:
        return [0.0, 1.0]
    if symmetric:
        hi = float(np.percentile(np.abs(values), 99.5))
        hi = hi if hi > 0 else 1.0
        return [-hi, hi]
    lo, hi = (float(v) for v in np.percentile(values, [0.5, 99.5]))
    if hi <= lo:
        hi = lo + (abs(lo) or 1.0) * 1e-3
    return [lo, hi]


class _Geometry:
    """Scale and translation of a grid in millimetres (or pixels when the size is unknown)."""

    def __init__(self, pixel_size_mm):
        try:
            self.mm = float(pixel_size_mm) if pixel_size_mm not in (None, "") else None
        except (TypeError, ValueError):
            self.mm = None
        if self.mm is not None and not (np.isfinite(self.mm) and self.mm > 0):
            self.mm = None

    def kwargs(self, factor: int = 1) -> dict:
        step = (self.mm or 1.0) * factor
        out = {"scale": (step, step), "translate": ((factor - 1) / 2 * (self.mm or 1.0),) * 2}
        if _units_supported():
            out["axis_labels"] = ("y", "x")
            if self.mm is not None:
                out["units"] = ("mm", "mm")
        return out


def _lazy(var):
    """The dask array behind an xarray variable (numpy when it was loaded)."""
    data = var.data
    return data


def _image(data, name: str, geometry: _Geometry, *, factor: int = 1, colormap: str = "gray",
           visible: bool = True, symmetric: bool = False, metadata: dict | None = None) -> LayerData:
    kw = {"name": name, "colormap": colormap, "blending": "additive", "visible": visible,
          "contrast_limits": contrast_limits(data, symmetric), "metadata": metadata or {},
          **geometry.kwargs(factor)}
    return data, kw, "image"


def _photo(rgb, name: str, geometry: _Geometry) -> LayerData:
    data = rgb.transpose(1, 2, 0) if hasattr(rgb, "transpose") else np.moveaxis(rgb, 0, -1)
    kw = {"name": name, "rgb": True, "contrast_limits": [0.0, 1.0], "blending": "translucent",
          **geometry.kwargs()}
    return data, kw, "image"


def _open(path: Path):
    from maxrf_bench.scan import open_scan

    return open_scan(path, validate=False, load=False)


def _elements(ds) -> list[str]:
    return [str(e) for e in ds["element"].values]


# --- scans ---------------------------------------------------------------------------------

def is_scan(path: Path) -> bool:
    return path.is_dir() and (path / ".zgroup").exists() and any(
        (path / v).is_dir() for v in ("maps", "maps_lr", "rgb"))


def read_scan(path: str | os.PathLike) -> list[LayerData]:
    path = Path(path)
    ds = _open(path)
    geometry = _Geometry(ds.attrs.get("pixel_size_mm"))
    title = ds.attrs.get("title") or path.stem
    layers: list[LayerData] = []
    if "rgb" in ds:
        layers.append(_photo(_lazy(ds["rgb"]), f"{title}: photograph", geometry))
    elements = _elements(ds)
    for var, suffix in (("maps", ""), ("maps_dwell", " (short dwell)"), ("maps_lr", " (LR)")):
        if var not in ds:
            continue
        factor = 1
        if var == "maps_lr" and "rgb" in ds:
            factor = max(1, int(round(ds.sizes["y"] / ds.sizes["y_lr"])))
        data = _lazy(ds[var])
        for i, el in enumerate(elements):
            layers.append(_image(data[i], f"{el}{suffix}", geometry, factor=factor,
                                 colormap=colormap_for(el, i), visible=(i == 0 and var == next(
                                     v for v in ("maps", "maps_dwell", "maps_lr") if v in ds)),
                                 metadata={"element": el, "variable": var, "source": str(path)}))
    return layers


# --- run directories -------------------------------------------------------------------------

def is_run_dir(path: Path) -> bool:
    from maxrf_bench.rundir import RunDir

    run = RunDir(path)
    return path.is_dir() and run.manifest.is_file() and run.inputs_dir.is_dir()


def read_run(path: str | os.PathLike) -> list[LayerData]:
    from maxrf_bench.rundir import RunDir

    path = Path(path)
    run = RunDir(path)
    manifest = json.loads(run.manifest.read_text())
    columns = list(manifest.get("columns", {}))
    inputs = manifest.get("inputs", {})
    keys = list(inputs) or sorted(p.stem for p in run.inputs_dir.glob("*.zarr"))
    layers: list[LayerData] = []
    for key in keys:
        store = run.inputs(key)
        if not store.exists():
            continue
        ds = _open(store)
        prefix = f"{key}: " if len(keys) > 1 else ""
        geometry = _Geometry(ds.attrs.get("pixel_size_mm"))
        if ds.attrs.get("protocol") == "reduced" and geometry.mm is not None:
            geometry = _Geometry(geometry.mm * int(ds.attrs.get("scale", 1)))
        span = np.asarray(ds.attrs.get("span", [1.0] * ds.sizes["element"]), float)[:, None, None]
        offset = np.asarray(ds.attrs.get("offset", [0.0] * ds.sizes["element"]), float)[:, None, None]
        elements = _elements(ds)
        layers.append(_photo(_lazy(ds["rgb"]), f"{prefix}photograph", geometry))
        truth = None
        if "maps" in ds:  # normalised in inputs/: back to counts, as the SR maps are
            truth = _lazy(ds["maps"]) * span.astype(np.float32) + offset.astype(np.float32)
            for i, el in enumerate(elements):
                layers.append(_image(truth[i], f"{prefix}{el} truth", geometry,
                                     colormap=colormap_for(el, i), visible=False,
                                     metadata={"element": el, "column": "truth"}))
        first = True
        for label in columns:
            sr_path = run.column_maps(key, label)
            if not sr_path.exists():
                continue  # a failed column
            sr = _open(sr_path)
            maps = _lazy(sr["maps"])
            std = _lazy(sr["maps_std"]) if "maps_std" in sr else None
            for i, el in enumerate(elements):
                meta = {"element": el, "column": label, "dataset": key}
                layers.append(_image(maps[i], f"{prefix}{el} {label}", geometry,
                                     colormap=colormap_for(el, i), visible=first and i == 0,
                                     metadata=meta))
                if std is not None:
                    layers.append(_image(std[i], f"{prefix}{el} {label} std", geometry,
                                         colormap="magma", visible=False,
                                         metadata={**meta, "what": "std over seeds"}))
                if truth is not None:
                    layers.append(_image(maps[i] - truth[i], f"{prefix}{el} {label} error",
                                         geometry, colormap="PiYG", visible=False, symmetric=True,
                                         metadata={**meta, "what": "SR − truth"}))
            first = False
    return layers


# --- the npe2 entry ----------------------------------------------------------------------------

def read(path: str | os.PathLike) -> list[LayerData]:
    """Layer-data tuples of a scan store or a run directory (what napari's reader calls)."""
    path = Path(path)
    if is_run_dir(path):
        return read_run(path)
    if is_scan(path):
        return read_scan(path)
    from maxrf_bench.errors import StoreError

    raise StoreError(f"{str(path)!r}: expected a maxrf-bench scan store (.zarr) or a run directory "
                     "(manifest.json, inputs/, cells/)")


def napari_get_reader(path) -> Callable[[Any], list[LayerData]] | None:
    """npe2 reader contribution: a reader for a scan or run directory, else ``None`` (so
    napari asks its other readers)."""
    if isinstance(path, (list, tuple)):
        if len(path) != 1:
            return None
        path = path[0]
    p = Path(str(path))
    if not (is_run_dir(p) or is_scan(p)):
        return None

    def reader(paths) -> list[LayerData]:
        paths = paths if isinstance(paths, (list, tuple)) else [paths]
        return [layer for one in paths for layer in read(one)]

    return reader
