"""The scan data model: an :class:`xarray.Dataset` stored as Zarr.

============  ==========================  =================================================
variable      dims                        meaning
============  ==========================  =================================================
``maps``      (element, y, x) float32     HR element maps (ground truth when benchmarking)
``maps_lr``   (element, y_lr, x_lr)       measured LR maps (present when there is no truth)
``rgb``       (band, y, x) float32        HR photograph in [0, 1], band = R, G, B
``maps_clean`` (element, y, x) float32    optional: noise-free expected counts of ``maps``
                                          (simulated scans); a second, clean truth
``hidden_share`` (element,) float32       optional, in [0, 1]: share of each element's
                                          signal from layers the photograph does not show
                                          (the simulator writes it; users may set it)
``maps_dwell`` (element, y, x) float32    optional: a measured HR-step scan of a shorter dwell
                                          whose ``scale × scale`` block means are
                                          ``maps_lr`` (``maxrf-bench import --short-dwell``);
                                          the host variant ``+F`` fuses a method's output
                                          with it; never given to a method
============  ==========================  =================================================

Coordinates: ``element`` (``Pb_L``, ``Ca_K``… with the original label in the
``element_label`` coordinate), ``band``, and ``y``/``x`` (``y_lr``/``x_lr``) at pixel
centres, in millimetres when ``pixel_size_mm`` is known, else in HR pixels.

Attributes: ``schema_version``, ``title``, ``source``, ``licence``, ``pixel_size_mm``,
``scale`` (when ``maps_lr`` is present), ``units``; with ``maps_dwell``, optionally
``maps_dwell_time``: its dwell relative to the dwell its counts are given per (default 1:
raw counts of that scan; a simulated scan expressed per full dwell records its ``t``), which
sets its Poisson variance ``c / maps_dwell_time``.

Stores are written in Zarr format 2 (string coordinates round-trip silently, plain
``xarray.open_zarr`` reads them) and atomically: into a temporary sibling, then renamed.
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Iterable, Mapping

import numpy as np
import xarray as xr

from .errors import MaxrfError, ScanValidationError, StoreError

SCHEMA_VERSION = 1
BANDS = ("R", "G", "B")


def pixel_centres(n: int, pixel_size: float | None) -> np.ndarray:
    """Pixel-centre coordinates: millimetres when ``pixel_size`` is known, else pixels."""
    step = 1.0 if pixel_size is None else float(pixel_size)
    return (np.arange(n) + 0.5) * step


def make_scan(
    *,
    rgb: np.ndarray,
    elements: Iterable[str],
    maps: np.ndarray | None = None,
    maps_lr: np.ndarray | None = None,
    maps_clean: np.ndarray | None = None,
    hidden_share: Iterable[float] | None = None,
    maps_dwell: np.ndarray | None = None,
    element_labels: Iterable[str] | None = None,
    pixel_size_mm: float | None = None,
    title: str = "",
    source: str = "",
    licence: str = "",
    units: str = "counts",
    **attrs,
) -> xr.Dataset:
    """Build a scan in the schema from numpy arrays and validate it.

    ``maps`` is ``(element, y, x)``, ``maps_lr`` is ``(element, y/s, x/s)``, ``rgb`` is
    ``(3, y, x)`` in [0, 1] (``uint8`` or ``uint16`` photographs are scaled to [0, 1]).
    ``maps_clean`` (optional, like ``maps``) holds noise-free expected counts;
    ``hidden_share`` (optional, ``(element,)`` in [0, 1]) the share of each element's signal
    from layers the photograph does not show; ``maps_dwell`` (optional, like ``maps``, needs
    ``maps_lr``) a measured HR-step scan of a shorter dwell whose block means are ``maps_lr``
    (:func:`bin_short_dwell` makes both from one such scan).
    """
    elements = [str(e) for e in elements]
    rgb = _as_unit_float(np.asarray(rgb))
    if rgb.ndim != 3:
        raise ScanValidationError(f"rgb must be (band, y, x), found {rgb.ndim} dimensions")
    h, w = rgb.shape[-2:]
    coords = {
        "element": elements,
        "band": list(BANDS[: rgb.shape[0]]) if rgb.shape[0] <= 3 else list(range(rgb.shape[0])),
        "y": pixel_centres(h, pixel_size_mm),
        "x": pixel_centres(w, pixel_size_mm),
    }
    if element_labels is not None:
        coords["element_label"] = ("element", [str(e) for e in element_labels])
    data_vars = {"rgb": (("band", "y", "x"), rgb)}
    all_attrs = dict(
        schema_version=SCHEMA_VERSION, title=title, source=source, licence=licence, units=units
    )
    if pixel_size_mm is not None:
        all_attrs["pixel_size_mm"] = float(pixel_size_mm)
    if maps is not None:
        maps = np.asarray(maps, dtype=np.float32)
        if maps.ndim != 3 or maps.shape[0] != len(elements):
            raise ScanValidationError(
                f"maps must be (element, y, x) with {len(elements)} elements, found shape {maps.shape}")
        if maps.shape[1:] != (h, w):
            raise ScanValidationError(
                f"'rgb' must be on the maps grid {maps.shape[1]}×{maps.shape[2]}, found {h}×{w}")
        data_vars["maps"] = (("element", "y", "x"), maps)
    if maps_clean is not None:
        maps_clean = np.asarray(maps_clean, dtype=np.float32)
        if maps is None or maps_clean.shape != maps.shape:
            raise ScanValidationError(
                f"maps_clean must have the shape of maps {None if maps is None else maps.shape}, "
                f"found {maps_clean.shape}")
        data_vars["maps_clean"] = (("element", "y", "x"), maps_clean)
    if hidden_share is not None:
        data_vars["hidden_share"] = (("element",), np.asarray(hidden_share, dtype=np.float32))
    if maps_lr is not None:
        maps_lr = np.asarray(maps_lr, dtype=np.float32)
        if maps_lr.ndim != 3 or maps_lr.shape[0] != len(elements):
            raise ScanValidationError(f"maps_lr must be (element, y_lr, x_lr) with {len(elements)} "
                                      f"elements, found shape {maps_lr.shape}")
        if maps_lr.ndim == 3 and maps_lr.shape[1] and h % maps_lr.shape[1] == 0:
            s = h // maps_lr.shape[1]
            lr_px = None if pixel_size_mm is None else pixel_size_mm * s
            coords["y_lr"] = pixel_centres(maps_lr.shape[1], lr_px if lr_px else s)
            coords["x_lr"] = pixel_centres(maps_lr.shape[2], lr_px if lr_px else s)
            all_attrs["scale"] = int(s)
        data_vars["maps_lr"] = (("element", "y_lr", "x_lr"), maps_lr)
    if maps_dwell is not None:
        maps_dwell = np.asarray(maps_dwell, dtype=np.float32)
        if maps_dwell.shape != (len(elements), h, w):
            raise ScanValidationError(f"maps_dwell must be (element, y, x) with {len(elements)} "
                                      f"elements on the photograph's grid {h}×{w}, found shape "
                                      f"{maps_dwell.shape}")
        data_vars["maps_dwell"] = (("element", "y", "x"), maps_dwell)
    all_attrs.update(attrs)
    ds = xr.Dataset(data_vars, coords=coords, attrs=all_attrs)
    validate_scan(ds)
    return ds


def _as_unit_float(a: np.ndarray) -> np.ndarray:
    if a.dtype == np.uint8:
        return a.astype(np.float32) / 255.0
    if a.dtype == np.uint16:
        return a.astype(np.float32) / 65535.0
    return a.astype(np.float32, copy=False)


def validate_scan(ds: xr.Dataset, source: str | None = None) -> xr.Dataset:
    """Check ``ds`` against the schema; raise :class:`ScanValidationError` listing every problem.

    Returns ``ds`` unchanged so it can be chained.
    """
    problems: list[str] = []
    if not isinstance(ds, xr.Dataset):
        raise ScanValidationError(f"expected an xarray.Dataset, found {type(ds).__name__}", source)
    has_maps, has_lr = "maps" in ds, "maps_lr" in ds
    if not has_maps and not has_lr:
        problems.append("expected a variable 'maps' (element, y, x) or 'maps_lr' "
                        f"(element, y_lr, x_lr), found variables {sorted(ds.data_vars)}")
    if "rgb" not in ds:
        problems.append(f"expected a variable 'rgb' (band, y, x), found variables {sorted(ds.data_vars)}")
    expected_dims = {"maps": ("element", "y", "x"), "maps_lr": ("element", "y_lr", "x_lr"),
                     "rgb": ("band", "y", "x"), "maps_clean": ("element", "y", "x"),
                     "hidden_share": ("element",), "maps_dwell": ("element", "y", "x")}
    if "maps_clean" in ds and not has_maps:
        problems.append("'maps_clean' (the noise-free truth) needs 'maps' (the measured truth) "
                        "beside it, found no 'maps'")
    if "maps_dwell" in ds and not has_lr:
        problems.append("'maps_dwell' (an HR-step scan of a shorter dwell) needs 'maps_lr' (its "
                        "block means) beside it, found no 'maps_lr'")
    for var, dims in expected_dims.items():
        if var in ds and tuple(ds[var].dims) != dims:
            problems.append(f"'{var}' must have dims {dims}, found {tuple(ds[var].dims)}")
    from maxrf_infer.validate import attr_problems, value_problems  # shared with maxrf-infer

    problems += attr_problems(ds.attrs)
    if problems:
        raise ScanValidationError(problems, source)

    rgb = ds["rgb"]
    if rgb.sizes["band"] != 3:
        problems.append(f"'rgb' must have 3 bands (R, G, B), found {rgb.sizes['band']}")
    if "element" in ds.coords:
        names = [str(e) for e in ds["element"].values]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            problems.append(f"element names must be unique, found duplicates {dup}")
        if any(not n for n in names):
            problems.append("element names must not be empty")
    else:
        problems.append("expected an 'element' coordinate with the element names")
    if has_maps:
        mh, mw = ds["maps"].sizes["y"], ds["maps"].sizes["x"]
        if ds["maps"].sizes["element"] == 0:
            problems.append("'maps' has no element")
    else:
        mh, mw = rgb.sizes["y"], rgb.sizes["x"]
    if has_lr and ds["maps_lr"].sizes["element"] == 0:
        problems.append("'maps_lr' has no element")
    if mh == 0 or mw == 0:
        problems.append(f"the scan is empty: expected maps and a photograph of at least 1×1 pixels, "
                        f"found {mh}×{mw}")
        raise ScanValidationError(problems, source)
    if has_lr:
        lh, lw = ds["maps_lr"].sizes["y_lr"], ds["maps_lr"].sizes["x_lr"]
        if lh == 0 or lw == 0 or mh % lh or mw % lw or mh // lh != mw // lw:
            problems.append(
                f"the photograph/maps grid ({mh}×{mw}) must be an integer multiple (the same "
                f"in y and x) of 'maps_lr' ({lh}×{lw})"
            )
        elif "scale" in ds.attrs and int(ds.attrs["scale"]) != mh // lh:
            problems.append(f"attribute scale={ds.attrs['scale']} but the grids differ by {mh // lh}")
    if "maps_dwell" in ds:
        problems += _dwell_problems(ds)
    for var in ("maps", "maps_clean", "maps_lr", "maps_dwell", "rgb"):
        if var in ds:
            problems += value_problems(var, ds[var].values,
                                       lambda mask, da=ds[var]: _first_bad(da, mask))
    if "hidden_share" in ds:
        hs = np.asarray(ds["hidden_share"].values)
        if not np.issubdtype(hs.dtype, np.number) or np.iscomplexobj(hs):
            problems.append(f"'hidden_share' must be numbers in [0, 1], found dtype {hs.dtype}")
        elif not (np.isfinite(hs).all() and (hs >= 0).all() and (hs <= 1).all()):
            problems.append("'hidden_share' must be finite shares in [0, 1] (one per element), found "
                            f"values {np.round(hs.astype(float), 4).tolist()}")
    if rgb.sizes["y"] != mh or rgb.sizes["x"] != mw:
        problems.append(
            f"'rgb' must be on the maps grid {mh}×{mw}, found {rgb.sizes['y']}×{rgb.sizes['x']}"
        )
    if problems:
        raise ScanValidationError(problems, source)
    return ds


def _dwell_problems(ds: xr.Dataset) -> list[str]:
    """``maps_dwell`` must lie on the HR grid, and its block means must be ``maps_lr`` (to
    float32 rounding): ``+F`` fuses with the very scan the methods' LR maps were binned from."""
    d, lr = ds["maps_dwell"], ds["maps_lr"]
    shape_hr = (ds["rgb"].sizes["y"], ds["rgb"].sizes["x"])
    if (d.sizes["element"], d.sizes["y"], d.sizes["x"]) != (lr.sizes["element"], *shape_hr):
        return [f"'maps_dwell' must be (element, y, x) = ({lr.sizes['element']}, {shape_hr[0]}, "
                f"{shape_hr[1]}) like 'maps_lr' on the photograph's grid, found {tuple(d.shape)}"]
    t = ds.attrs.get("maps_dwell_time", 1.0)
    if not (isinstance(t, (int, float, np.floating, np.integer)) and np.isfinite(t) and t > 0):
        return [f"attribute maps_dwell_time must be a positive number (the dwell of maps_dwell "
                f"relative to the dwell its counts are given per), found {t!r}"]
    lh = lr.sizes["y_lr"]
    if not lh or shape_hr[0] % lh:
        return []  # the grid problem is reported once, above
    s = shape_hr[0] // lh
    a = np.asarray(d.values)  # as stored (float32): no float64 copy of a large scan
    if not np.isfinite(a).all():
        return []  # reported by value_problems
    means = a.reshape(a.shape[0], lh, s, -1, s).mean(axis=(2, 4), dtype=np.float64)
    want = np.asarray(lr.values, np.float64)
    tol = 1e-4 * np.maximum(np.abs(want).max(axis=(1, 2), keepdims=True), 1.0)
    bad = np.abs(means - want) > tol
    if bad.any():
        e, y, x = (int(i[0]) for i in np.nonzero(bad))
        return [f"'maps_lr' must be the {s}×{s} block means of 'maps_dwell' (the scan +F fuses "
                f"with is the one the LR maps were binned from), found {int(bad.sum())} LR pixels "
                f"that differ (first at element={lr['element'].values[e]}, y_lr={y}, x_lr={x}: "
                f"{want[e, y, x]:.6g} against the block mean {means[e, y, x]:.6g})"]
    return []


def bin_short_dwell(ds: xr.Dataset, scale: int) -> xr.Dataset:
    """The scan a ``+F`` run reads, from a scan whose ``maps`` are a measured HR-step scan of
    a shorter dwell: those maps, cut to a multiple of ``scale`` from the top-left corner, become
    ``maps_dwell`` and their ``scale × scale`` block means ``maps_lr`` (statistically the counts
    of a coarse scan with that step and the full dwell per pixel, :mod:`maxrf_bench.acquisition`);
    the photograph stays on the HR grid.  The result has no ground truth."""
    scale = int(scale)
    if scale < 2:
        raise ScanValidationError(f"binning a short-dwell scan expects a scale of at least 2, found {scale}")
    if "maps" not in ds:
        raise ScanValidationError("binning a short-dwell scan expects its HR-step maps as 'maps', "
                                  f"found variables {sorted(ds.data_vars)}")
    maps = np.asarray(ds["maps"].values, np.float32)
    e, h, w = maps.shape
    h2, w2 = h - h % scale, w - w % scale
    if h2 == 0 or w2 == 0:
        raise ScanValidationError(f"scale {scale} leaves no LR pixel of the scan's {h}×{w} grid: "
                                  f"expected a scale of at most {min(h, w)}")
    maps = maps[:, :h2, :w2]
    lr = maps.reshape(e, h2 // scale, scale, w2 // scale, scale).mean(axis=(2, 4), dtype=np.float64)
    attrs = {k: v for k, v in ds.attrs.items() if k not in ("schema_version", "scale")}
    if (h2, w2) != (h, w):
        attrs["short_dwell_crop"] = [int(h), int(w), int(h2), int(w2)]
    px = ds.attrs.get("pixel_size_mm")
    labels = ds["element_label"].values if "element_label" in ds.coords else None
    attrs.pop("pixel_size_mm", None)
    hidden = ds["hidden_share"].values if "hidden_share" in ds else None
    return make_scan(rgb=np.asarray(ds["rgb"].values[:, :h2, :w2]), elements=ds["element"].values,
                     maps_lr=lr, maps_dwell=maps, hidden_share=hidden, element_labels=labels,
                     pixel_size_mm=px, **attrs)


def _first_bad(da: xr.DataArray, mask: np.ndarray) -> str:
    idx = tuple(int(i[0]) for i in np.nonzero(mask))
    parts = []
    for dim, i in zip(da.dims, idx):
        label = da[dim].values[i] if dim in da.coords and dim in ("element", "band") else i
        parts.append(f"{dim}={label}")
    return ", ".join(parts)


# --- Zarr I/O --------------------------------------------------------------------------

def save_scan(ds: xr.Dataset, path: str | os.PathLike, *, validate: bool = True,
              chunk: int = 512, inputs: Iterable[str | os.PathLike] = ()) -> Path:
    """Write a scan to a Zarr store atomically (temporary sibling, then rename).

    Chunks are ``chunk × chunk`` on (y, x) with the whole element axis in each chunk.  An
    existing ``path`` is replaced only when it is a scan store (see
    :func:`maxrf_bench.atomic.check_output`); ``inputs``: paths the store must not replace.
    """
    path = Path(path)
    if validate:
        validate_scan(ds, str(path))
    encoding = {}
    for var in ds.data_vars:
        dims = ds[var].dims
        chunks = tuple(
            min(chunk, ds.sizes[d]) if d in ("y", "x", "y_lr", "x_lr") else ds.sizes[d] for d in dims
        )
        encoding[var] = {"chunks": chunks}
    from .atomic import owned_scan

    write_zarr_atomic(ds.drop_encoding() if hasattr(ds, "drop_encoding") else ds, path, encoding,
                      owned=owned_scan, kind="scan store", inputs=inputs)
    return path


def write_zarr_atomic(ds: xr.Dataset, path: Path, encoding: Mapping | None = None, *,
                      owned=None, kind: str = "Zarr store of maxrf-bench",
                      inputs: Iterable[str | os.PathLike] = ()) -> None:
    """Write ``ds`` as a Zarr v2 store at ``path`` so that readers never see half a store.

    The one directory-level atomic write (:func:`maxrf_bench.atomic.output_dir`): an existing
    ``path`` is replaced only when ``owned(path)`` (default: a store this tool wrote); a
    file, a folder of other files or an input is never replaced."""
    from .atomic import output_dir, owned_cell_store

    with output_dir(path, kind=kind, owned=owned or owned_cell_store, inputs=inputs) as tmp:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds.to_zarr(tmp, mode="w", zarr_format=2, consolidated=True, encoding=encoding or {})


def open_scan(path: str | os.PathLike, *, validate: bool = True, load: bool = True) -> xr.Dataset:
    """Open a scan stored as Zarr (or NetCDF/HDF5 via xarray) and validate it.

    Raises :class:`StoreError` for a missing or corrupt store and
    :class:`ScanValidationError` for one that does not follow the schema.
    """
    path = Path(path)
    if not path.exists():
        raise StoreError(f"scan store {str(path)!r} does not exist (expected a .zarr directory)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if path.is_dir():
                from maxrf_infer.chunks import check_blosc_chunks

                check_blosc_chunks(path)  # a truncated chunk can otherwise decode silently
                ds = xr.open_zarr(path, consolidated=None)
            else:
                ds = xr.open_dataset(path)
            if load:  # bounded: the declared shapes against the cap, before reading them
                from .bounds import check_alloc

                check_alloc(sum(int(v.nbytes) for v in ds.variables.values()),
                            f"scan store {str(path)!r} ({', '.join(f'{k} {tuple(v.shape)}' for k, v in ds.data_vars.items())})")
                ds = ds.load()
    except MaxrfError:
        raise
    except Exception as exc:  # zarr/xarray raise many types for a broken store
        problem = _grid_mismatch(path) if "conflicting sizes" in str(exc) else None
        if problem:
            raise ScanValidationError(problem, str(path)) from None
        raise StoreError(
            f"cannot read scan store {str(path)!r}: expected a Zarr store in the maxrf-bench "
            f"schema, found {type(exc).__name__}: {exc}"
        ) from None
    if validate:
        validate_scan(ds, str(path))
    return ds


def _grid_mismatch(path: Path) -> str | None:
    """Describe a store whose variables disagree on the (y, x) grid, which xarray cannot open."""
    try:
        import zarr

        group = zarr.open_group(str(path), mode="r")
        shapes = {}
        for name in ("maps", "rgb"):
            if name in group:
                arr = group[name]
                dims = arr.attrs.get("_ARRAY_DIMENSIONS") or []
                shapes[name] = dict(zip(dims, arr.shape))
    except Exception:  # noqa: BLE001
        return None
    if "maps" in shapes and "rgb" in shapes:
        m, r = shapes["maps"], shapes["rgb"]
        return (f"'rgb' must be on the maps grid {m.get('y')}×{m.get('x')}, "
                f"found {r.get('y')}×{r.get('x')}")
    return None


def normalise_maps(maps: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-element min–max to [0, 1]: returns ``(normalised, offset, scale)`` with
    ``normalised = (maps - offset) / scale``.  A constant map gets scale 1."""
    maps = np.asarray(maps, dtype=np.float64)
    lo = maps.min(axis=(-2, -1))
    hi = maps.max(axis=(-2, -1))
    span = np.where(hi > lo, hi - lo, 1.0)
    norm = (maps - lo[:, None, None]) / span[:, None, None]
    return norm.astype(np.float32), lo.astype(np.float32), span.astype(np.float32)
