"""Super-resolved maps out of maxrf-bench, in the formats other software reads.

``maxrf-bench save-maps SRC -o FOLDER [--format tiff|png|h5]`` where ``SRC`` is a run
directory (``--dataset D --method LABEL`` pick the cell; maps are the mean over seeds) or
the Zarr store written by ``maxrf-bench infer`` / ``maxrf-infer``.  Every file holds
**counts** (the scan's own units, not the normalised [0, 1] values the methods work in).

``tiff`` (default)
    One float32 TIFF per element named by its line (``Pb_L.tif``), ``(y, x)``, counts.
    The pixel size is in the resolution tags the way ImageJ writes them: ``XResolution`` =
    ``YResolution`` = pixels per millimetre, ``ResolutionUnit`` = none, and ``unit=mm`` in the
    ImageJ description (ImageJ, Fiji and ``tifffile`` show the scale in mm; PIL reads
    ``info["resolution"]``).  With several seeds, ``Pb_L_std.tif`` holds the standard
    deviation over seeds.
``png``
    One 16-bit grey PNG per element (``Pb_L.png``), stretched linearly from the map's minimum
    (0) to its maximum (65535) for viewing, with ``Pb_L.json`` beside it:
    ``counts = offset + value * scale`` (quantisation step ``scale``), the pixel size, the
    source.  The pixel size is also in the PNG's ``pHYs`` chunk (as dots per inch).
``h5``
    One HDF5 file ``maps.h5`` in the layout PyXRF writes and reads for fitted maps
    (PyXRF's ``read_hdf_APS`` in ``pyxrf/model/load_data_from_db.py``)::

        /xrfmap/detsum/xrf_fit        (element, y, x) float32, counts
        /xrfmap/detsum/xrf_fit_name   (element,) ASCII bytes: b"Pb_L", b"Ca_K", …
        /xrfmap/positions/name        [b"x_pos", b"y_pos"]
        /xrfmap/positions/pos         (2, y, x) float64: x and y of each pixel centre, mm
                                      (pixels when the pixel size is unknown)
        /xrfmap/scan_metadata         attributes: producer, source, method, dataset, seeds,
                                      scale, units, pixel_size_mm
        /maxrf_bench/maps_std         (element, y, x) std over seeds (only with seeds > 1)

    In h5py: ``f["xrfmap/detsum/xrf_fit"][i]`` is the map of ``f["xrfmap/detsum/xrf_fit_name"][i]``.
    There are no spectra (``xrfmap/detsum/counts``): PyXRF opens the file for its maps.

``FOLDER/save-maps.json`` lists what was written, from what.  Everything is written into a
temporary sibling first and moved into place at the end, so an interrupted or failed call
leaves the folder as it was.  An existing ``FOLDER`` is replaced only when it is empty or
an earlier save-maps output (its ``save-maps.json`` lists every file in it); a folder of
other files, or one that holds ``SRC``, is refused and left untouched.  Maps are read one element at a time, so an ``infer`` output
larger than memory can be saved too.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .errors import ConfigError, StoreError

FORMATS = ("tiff", "png", "h5")
H5_NAME = "maps.h5"
MANIFEST = "save-maps.json"


@dataclass
class MapSource:
    """Maps to save: ``element_map(i)`` gives element ``i`` as a ``(y, x)`` float32 array in counts.

    ``std_map(i)`` gives the standard deviation over seeds (or ``None``).
    """

    elements: list[str]
    shape: tuple[int, int]
    element_map: Callable[[int], np.ndarray]
    std_map: Callable[[int], np.ndarray] | None
    pixel_size_mm: float | None
    x_mm: np.ndarray | None
    y_mm: np.ndarray | None
    meta: dict[str, Any] = field(default_factory=dict)


def _is_zarr_store(path: Path) -> bool:
    return path.is_dir() and any((path / n).exists() for n in (".zgroup", "zarr.json", ".zmetadata"))


def _pixel_from_coords(ds, pixel: float | None):
    """Pixel size (mm) and pixel-centre coordinates (mm), or ``None`` when unknown.

    When the scan has a pixel size, its ``y``/``x`` coordinates are pixel centres in mm,
    and their spacing is the pixel size of *these* maps (the scan's LR pixel under the
    reduced-resolution protocol, where the attribute would still say the HR one).
    """
    if pixel is None:
        return None, None, None
    ys = np.asarray(ds["y"].values, dtype=float) if "y" in ds.coords else None
    xs = np.asarray(ds["x"].values, dtype=float) if "x" in ds.coords else None
    if xs is not None and xs.size > 1:
        step = float(np.median(np.diff(xs)))
        if step > 0:
            pixel = step
    return float(pixel), xs, ys


def open_run_maps(run_dir: Path, dataset: str | None, method: str | None,
                  protocol: str = "full") -> MapSource:
    """The maps of one cell of a run directory (mean over seeds), via :func:`maxrf_bench.load_maps`."""
    import maxrf_bench as mb

    if not method:
        raise ConfigError(f"{str(run_dir)!r} is a run directory: expected --method LABEL naming one of "
                          f"its cells (see `maxrf-bench table {run_dir}`)")
    if dataset is None:
        results = mb.read_results(run_dir)
        if len(results.datasets) != 1:
            raise ConfigError(f"run {str(run_dir)!r} has datasets {results.datasets}; expected "
                              "--dataset naming one of them")
        dataset = results.datasets[0]
    ds = mb.load_maps(run_dir, dataset, method, protocol=protocol)
    maps = ds["maps"]
    std = ds["maps_std"] if "maps_std" in ds else None
    seeds = list(ds.attrs.get("seeds", []) or [])
    has_std = std is not None and len(seeds) > 1
    pixel = ds.attrs.get("pixel_size_mm")
    if pixel in (None, "", 0):
        try:  # the scan's own attribute, kept with the inputs the methods saw
            pixel = mb.load_inputs(run_dir, dataset, protocol).attrs.get("pixel_size_mm")
        except mb.MaxrfError:
            pixel = None
    pixel = float(pixel) if pixel not in (None, "", 0) else None
    pixel, xs, ys = _pixel_from_coords(ds, pixel)
    return MapSource(
        elements=[str(e) for e in maps["element"].values],
        shape=(int(maps.sizes["y"]), int(maps.sizes["x"])),
        element_map=lambda i: np.asarray(maps.isel(element=i).values, dtype=np.float32),
        std_map=(lambda i: np.asarray(std.isel(element=i).values, dtype=np.float32)) if has_std else None,
        pixel_size_mm=pixel, x_mm=xs, y_mm=ys,
        meta={"producer": "maxrf-bench run", "source": str(run_dir), "dataset": dataset,
              "method": str(ds.attrs.get("method", method)), "protocol": protocol, "seeds": seeds,
              "scale": ds.attrs.get("scale")},
    )


def open_infer_maps(store: Path) -> MapSource:
    """The maps of a ``maxrf-bench infer`` output store (``maps`` (element, y, x), counts)."""
    import warnings

    import xarray as xr

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = xr.open_zarr(store, consolidated=None)
    except Exception as exc:  # noqa: BLE001 - a corrupt store: one line
        raise StoreError(f"cannot open {str(store)!r} as a Zarr store: {type(exc).__name__}: {exc}") from None
    if "maps" not in ds or tuple(ds["maps"].dims) != ("element", "y", "x"):
        found = {k: tuple(v.dims) for k, v in ds.data_vars.items()}
        raise StoreError(f"{str(store)!r}: expected a variable 'maps' with dims (element, y, x) "
                         f"(written by maxrf-bench infer), found {found or 'no variables'}")
    maps = ds["maps"]
    pixel = ds.attrs.get("pixel_size_mm")
    source_scan = ds.attrs.get("source_scan")
    if pixel is None and source_scan and Path(source_scan).exists():
        try:  # the runtime copies coordinates, not the pixel size: the scan it read has it
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                pixel = xr.open_zarr(source_scan, consolidated=None).attrs.get("pixel_size_mm")
        except Exception:  # noqa: BLE001 - the scan moved or is unreadable: no pixel size
            pixel = None
    pixel = float(pixel) if pixel not in (None, "", 0) else None
    pixel, xs, ys = _pixel_from_coords(ds, pixel)
    return MapSource(
        elements=[str(e) for e in maps["element"].values],
        shape=(int(maps.sizes["y"]), int(maps.sizes["x"])),
        element_map=lambda i: np.asarray(maps.isel(element=i).values, dtype=np.float32),
        std_map=None, pixel_size_mm=pixel, x_mm=xs, y_mm=ys,
        meta={"producer": str(ds.attrs.get("producer", "maxrf-infer")), "source": str(store),
              "model": ds.attrs.get("model"), "source_scan": source_scan, "scale": ds.attrs.get("scale"),
              "title": ds.attrs.get("title", "")},
    )


def open_maps(source: str | os.PathLike, dataset: str | None = None, method: str | None = None,
              protocol: str = "full") -> MapSource:
    """A run directory's cell, or an ``infer`` output store; one clear error otherwise."""
    src = Path(source)
    if not src.exists():
        raise StoreError(f"{str(src)!r} does not exist: expected a run directory or a Zarr store "
                         "written by maxrf-bench infer")
    from .rundir import RunDir

    if RunDir(src).is_run_dir():
        return open_run_maps(src, dataset, method, protocol)
    if _is_zarr_store(src):
        given = [f"--{n}" for n, v in (("dataset", dataset), ("method", method)) if v]
        if given:
            raise ConfigError(f"{str(src)!r} is a Zarr store with one set of maps (maxrf-bench infer "
                              f"output); {' and '.join(given)} apply to run directories only")
        return open_infer_maps(src)
    raise StoreError(f"{str(src)!r} is neither a run directory (results.csv, cells/) nor a Zarr "
                     "store (written by maxrf-bench infer)")


def safe_name(element: str) -> str:
    """A file name for an element line (``Pb_L`` stays ``Pb_L``; see
    :func:`maxrf_bench.atomic.safe_stem`)."""
    from .atomic import safe_stem

    return safe_stem(element)


def _file_names(elements: list[str]) -> list[str]:
    from .atomic import unique_stems

    return unique_stems(elements)


def owned_maps_folder(path: Path) -> bool:
    """A save-maps folder of ours: its ``save-maps.json`` lists every file in it."""
    try:
        manifest = json.loads((Path(path) / MANIFEST).read_text())
        listed = set(manifest["files"]) | {MANIFEST}
        present = {p.name for p in Path(path).iterdir()}
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return present <= listed


def _write_tiff(path: Path, arr: np.ndarray, pixel: float | None, meta: dict) -> None:
    import tifffile

    kw: dict[str, Any] = {}
    imagej_meta: dict[str, Any] = {"min": float(np.nanmin(arr)), "max": float(np.nanmax(arr))}
    if pixel:
        kw["resolution"] = (1.0 / pixel, 1.0 / pixel)  # pixels per mm
        imagej_meta["unit"] = "mm"
    tifffile.imwrite(path, arr.astype(np.float32), imagej=True, metadata=imagej_meta,
                     software=f"maxrf-bench save-maps ({meta.get('method') or meta.get('producer')})",
                     **kw)


def _write_png(path: Path, arr: np.ndarray, pixel: float | None) -> dict:
    from PIL import Image

    lo, hi = float(np.nanmin(arr)), float(np.nanmax(arr))
    scale = (hi - lo) / 65535.0 if hi > lo else 1.0
    q = np.clip(np.rint((arr - lo) / scale), 0, 65535).astype(np.uint16)
    kw = {"dpi": (25.4 / pixel, 25.4 / pixel)} if pixel else {}
    Image.fromarray(q).save(path, format="PNG", **kw)
    return {"offset": lo, "scale": scale, "min_counts": lo, "max_counts": hi}


def _write_h5(path: Path, src: MapSource) -> None:
    import h5py

    h, w = src.shape
    n = len(src.elements)
    if src.pixel_size_mm and src.x_mm is not None and src.y_mm is not None:
        xs, ys, pos_units = src.x_mm, src.y_mm, "mm"
    else:
        xs, ys, pos_units = np.arange(w) + 0.5, np.arange(h) + 0.5, "pixels"
    with h5py.File(path, "w") as f:
        det = f.create_group("xrfmap/detsum")
        chunks = (1, min(h, 512), min(w, 512))
        fit = det.create_dataset("xrf_fit", shape=(n, h, w), dtype="float32", chunks=chunks,
                                 compression="gzip", compression_opts=4)
        fit.attrs["units"] = "counts"
        det.create_dataset("xrf_fit_name", data=np.array([e.encode("ascii", "replace")
                                                          for e in src.elements]))
        pos = f.create_group("xrfmap/positions")
        pos.create_dataset("name", data=np.array([b"x_pos", b"y_pos"]))
        grid = np.stack(np.meshgrid(xs, ys, indexing="xy")).astype(np.float64)  # (2, y, x)
        pos.create_dataset("pos", data=grid).attrs["units"] = pos_units
        md = f.create_group("xrfmap/scan_metadata")
        for key, value in {**src.meta, "units": "counts",
                           "pixel_size_mm": src.pixel_size_mm if src.pixel_size_mm else math.nan,
                           "file_format": "PyXRF-compatible fitted maps (maxrf-bench save-maps)"}.items():
            if value is None:
                continue
            md.attrs[key] = json.dumps(value) if isinstance(value, (list, dict)) else value
        std = None
        if src.std_map is not None:
            std = f.create_dataset("maxrf_bench/maps_std", shape=(n, h, w), dtype="float32",
                                   chunks=chunks, compression="gzip", compression_opts=4)
            std.attrs["units"] = "counts"
            std.attrs["meaning"] = "standard deviation over seeds of xrfmap/detsum/xrf_fit"
        for i in range(n):
            fit[i] = src.element_map(i)
            if std is not None:
                std[i] = src.std_map(i)


def save_maps(source: str | os.PathLike, out: str | os.PathLike, *, dataset: str | None = None,
              method: str | None = None, fmt: str = "tiff", protocol: str = "full",
              progress=None) -> list[Path]:
    """Write the maps of ``source`` (run directory cell or ``infer`` store) into folder ``out``.

    Returns the paths written.  ``fmt`` is ``tiff``, ``png`` or ``h5`` (see the module
    docstring for each layout).  ``progress(done, total, message)`` is called per element.
    """
    fmt = (fmt or "tiff").lower()
    if fmt == "tif":
        fmt = "tiff"
    if fmt in ("hdf5", "hdf"):
        fmt = "h5"
    if fmt not in FORMATS:
        raise ConfigError(f"--format expects one of {', '.join(FORMATS)}, found {fmt!r}")
    out = Path(out)
    from .atomic import check_output, output_dir

    check_output(out, kind="save-maps folder", owned=owned_maps_folder, inputs=[source])
    src = open_maps(source, dataset, method, protocol)
    if progress is None:
        from .progress import progress_bar

        progress = progress_bar(f"save-maps {fmt}", unit="map")
    names = _file_names(src.elements)
    written: list[str] = []
    sidecars: dict[str, dict] = {}
    try:
        with output_dir(out, kind="save-maps folder", owned=owned_maps_folder,
                        inputs=[source]) as tmp:
            n = len(src.elements)
            if fmt == "h5":
                _write_h5(tmp / H5_NAME, src)
                written.append(H5_NAME)
                progress(n, n, H5_NAME)
            for i, (el, name) in enumerate(zip(src.elements, names)):
                if fmt == "h5":
                    break
                arr = src.element_map(i)
                if fmt == "tiff":
                    _write_tiff(tmp / f"{name}.tif", arr, src.pixel_size_mm, src.meta)
                    written.append(f"{name}.tif")
                    if src.std_map is not None:
                        _write_tiff(tmp / f"{name}_std.tif", src.std_map(i), src.pixel_size_mm, src.meta)
                        written.append(f"{name}_std.tif")
                else:
                    scale = _write_png(tmp / f"{name}.png", arr, src.pixel_size_mm)
                    side = {"element": el, "file": f"{name}.png", "units": "counts",
                            "counts": "offset + value * scale", **scale,
                            "pixel_size_mm": src.pixel_size_mm, "source": src.meta}
                    (tmp / f"{name}.json").write_text(json.dumps(side, indent=1, default=str))
                    written += [f"{name}.png", f"{name}.json"]
                    sidecars[el] = scale
                progress(i + 1, n, el)
            manifest = {"format": fmt, "files": written, "elements": src.elements,
                        "files_by_element": dict(zip(src.elements, names)), "units": "counts",
                        "shape_yx": list(src.shape), "pixel_size_mm": src.pixel_size_mm, **src.meta}
            (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1, default=str))
            written.append(MANIFEST)
    finally:
        if hasattr(progress, "close"):
            progress.close()
    return [out / name for name in written]
