"""Preparing a dataset for the methods under one protocol: :class:`Prepared`.

A dataset spec (a registered name or a path to a store) is resolved
(:func:`resolve_dataset`), normalised and degraded as the evaluation protocol says
(:func:`prepare_scan`, protocol ``full``), and degraded once more for Wald's
reduced-resolution protocol (:func:`reduce_resolution`).  What the methods see of a
prepared dataset is identified by its *inputs digest* (:attr:`Prepared.inputs_digest`).
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path
from typing import Callable

import numpy as np
import xarray as xr

from .config import dataset_key
from .errors import ConfigError, ScanValidationError
from .operators import Operator, make_operator
from .plugins import get_dataset, get_datasets
from .scan import normalise_maps, open_scan, validate_scan
from .types import MethodInputs

__all__ = ["MIN_REDUCED_LR", "Prepared", "check_dataset_name", "default_dataset",
           "prepare_datasets", "prepare_scan", "reduce_resolution", "resolve_dataset"]


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
    #: where the scan was cut to a multiple of the scale (``crop_to_scale``): from, to, grid
    crop: dict | None = None
    #: RMS misregistration (HR pixels) applied to the photograph (:mod:`.misregister`);
    #: ``None``: not part of a misregistration sweep
    misregister: float | None = None
    #: the HR-step scan of a shorter dwell (normalised, ``(element, y, x)``) whose block means
    #: are ``maps_lr``: made by ``--acquire dwell``, or measured (a scan's ``maps_dwell``); the
    #: host fuses a method's output with it (``+F``, :func:`maxrf_bench.noise.fuse_dwell`);
    #: never given to a method
    maps_dwell: np.ndarray | None = None

    @property
    def key(self) -> str:
        """The dataset key (``D``, ``D@reduced``, ``D~misA``…), :func:`dataset_key`."""
        return dataset_key(self.name, self.protocol, self.misregister)

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
    def inputs_digest(self) -> str:
        """The *inputs digest*: identifies what the methods see (LR maps, photograph,
        operator).  Recorded as ``fingerprint`` in the manifest and the saved inputs."""
        h = hashlib.sha256(json.dumps(self.operator.to_dict(), sort_keys=True).encode())
        h.update(np.ascontiguousarray(self.maps_lr.values, np.float32).tobytes())
        h.update(np.ascontiguousarray(self.rgb.values, np.float32).tobytes())
        if self.maps_dwell is not None:  # what +F fuses with (absent: the digest as before)
            h.update(np.ascontiguousarray(self.maps_dwell, np.float32).tobytes())
        return h.hexdigest()[:20]

    def inputs(self, **kw) -> MethodInputs:
        if "noise_var" not in kw:
            from .noise import count_time, lr_noise_variance

            if count_time(self) is not None:  # the LR scan's Poisson variance, from its counts
                kw["noise_var"] = lr_noise_variance(self).astype(np.float32)
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
           or "\\" in name or "@" in name or "\0" in name
           or len(name.encode("utf-8", "surrogatepass")) > 200)
    if bad:
        where = f" (from {spec!r})" if spec and spec != name else ""
        raise ConfigError(f"dataset name {name!r}{where} cannot name a directory of the run: "
                          "expected a name without '/', '\\', '@', a leading '.' or '..', of at "
                          "most 200 bytes (UTF-8)")


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
    element by their own range.  ``maps_dwell`` (a measured short-dwell scan that ``maps_lr``
    were binned from) is normalised like ``maps_lr`` and kept as ``Prepared.maps_dwell``.
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
    kw = {"sigma": sigma} if operator in ("gaussian", "scan") else {}
    op = make_operator(operator, scale, **kw)
    scan, crop = crop_to_scale(scan, scale)
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
    dwell = None
    if "maps_dwell" in scan:  # a measured short-dwell scan binned into maps_lr (+F fuses with it)
        if op.name != "blockmean":
            raise ConfigError(f"scan {name!r} carries maps_dwell, an HR-step scan whose block means "
                              f"are its maps_lr: expected --operator blockmean, found --operator {operator}")
        dwell = ((scan["maps_dwell"].values - offset[:, None, None])
                 / span[:, None, None]).astype(np.float32)
    return Prepared(name, scan, maps_lr, scan["rgb"].astype(np.float32), op, truth,
                    offset, span, source, truth_clean=clean, crop=crop, maps_dwell=dwell)


def crop_to_scale(scan: xr.Dataset, scale: int) -> tuple[xr.Dataset, dict | None]:
    """Cut the scan's HR grid (and its LR grid, where it has one) to the largest multiple of
    ``scale`` from the top-left corner, as the pansharpening toolboxes do; the crop is
    recorded (manifest ``crops``, the table's caption).  ``None``: nothing to cut."""
    h, w = scan["rgb"].sizes["y"], scan["rgb"].sizes["x"]
    h2, w2 = h - h % scale, w - w % scale
    if (h2, w2) == (h, w):
        return scan, None
    if h2 == 0 or w2 == 0:
        raise ScanValidationError(f"scale {scale} leaves no LR pixel of the scan's {h}×{w} grid: "
                                  f"expected a scale of at most {min(h, w)}")
    sel = {"y": slice(0, h2), "x": slice(0, w2)}
    if "y_lr" in scan.dims:
        sel.update(y_lr=slice(0, h2 // scale), x_lr=slice(0, w2 // scale))
    return scan.isel(sel), {"from": [h, w], "to": [h2, w2], "grid": "HR", "scale": scale}


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
    if h // s < MIN_REDUCED_LR or w // s < MIN_REDUCED_LR:
        raise ConfigError(
            f"--protocol reduced degrades scan {prep.name!r} once more by its scale {s}: its LR "
            f"grid must give at least {MIN_REDUCED_LR}×{MIN_REDUCED_LR} pixels, found an LR grid "
            f"of {h}×{w}, which gives {h // s}×{w // s} (use a smaller --scale or a larger scan)")
    crop = prep.crop
    if h % s or w % s:  # cut the LR grid (and the photograph with it) to a multiple of s
        h2, w2 = h - h % s, w - w % s
        crop = {"from": [h, w], "to": [h2, w2], "grid": "LR", "scale": s}
        hr = (..., slice(0, h2 * s), slice(0, w2 * s))
        prep = replace(prep, maps_lr=prep.maps_lr.isel(y_lr=slice(0, h2), x_lr=slice(0, w2)),
                       rgb=prep.rgb.isel(y=slice(0, h2 * s), x=slice(0, w2 * s)),
                       truth_clean=None if prep.truth_clean is None else prep.truth_clean[hr])
        h, w = h2, w2
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
                    prep.offset, prep.span, prep.source, truth_clean=clean, protocol="reduced",
                    crop=crop)


def prepare_datasets(specs: list[str], protocols: list[str], *, scale: int | None,
                     operator: str, sigma: float, scan_times=None, noise_seed: int = 0,
                     acquire: str = "coarse") -> list[Prepared]:
    """Every dataset spec prepared under every protocol, in that order (dataset-major);
    refuses a dataset name that cannot name a directory and two datasets of one name."""
    prepared: list[Prepared] = []
    names: set[str] = set()
    for spec in specs:
        name, load, source = resolve_dataset(spec)
        check_dataset_name(name, spec)
        if name in names:
            raise ConfigError(f"two datasets are both named {name!r}; rename one of the stores")
        names.add(name)
        full = prepare_scan(load(), name=name, scale=scale, operator=operator, sigma=sigma,
                            source=source)
        for protocol in protocols:
            if protocol == "full":
                prepared.append(full)
            elif protocol == "reduced":
                prepared.append(reduce_resolution(full))
            elif protocol == "acquisition":  # one input per scan time (maxrf_bench.acquisition)
                from .acquisition import acquisition_inputs, parse_scan_times

                prepared += acquisition_inputs(full, parse_scan_times(scan_times), noise_seed, acquire)
            else:  # Poisson thinning of raw counts (maxrf_bench.thinning)
                from .thinning import thinning_inputs

                prepared.append(thinning_inputs(full, noise_seed))
    return prepared
