"""The run directory: the only module that knows its layout.

Layout::

    DIR/results.csv                long form, see :mod:`maxrf_bench.results`
    DIR/manifest.json              command, options, columns with their parameters and
                                   plugin versions, seeds, versions, git commit, host, timings
    DIR/inputs/K.zarr              what the methods saw, and the truths (normalised)
    DIR/cells/K/L/sr.zarr          per column L: maps over the seeds (mean ``maps`` and
                                   ``maps_std``, counts; ``maps_norm``, ``maps_norm_std``)
    DIR/cells/K/R/seed-N/          one cell of run R (the column label without its variant):
        cell.json                  the cell record: configuration, metrics per variant,
                                   time (written last)
        sr.zarr                    the method's raw output
        work/                      the method's private directory (checkpoints, model)
        error.log                  the traceback of a failed method
    DIR/cells/K/R/deterministic/   the same, for a method that ignores the seed

``K`` is the dataset key (``D``, or ``D@reduced`` under the reduced protocol,
:func:`maxrf_bench.config.dataset_key`); ``L`` and ``R`` are labels made safe as folder
names (:func:`maxrf_bench.variants.label_dirname`).

A cell counts as finished when its record exists beside its raw output and the record's
cell key matches (:func:`finished_record`, the one reuse test); the cell key covers the
inputs digest, the method, its parameters, the seed, the operator and the method identity.
A column's maps over seeds are current when their *maps key* (a hash of the cell keys they
average and the variant) matches (:func:`maps_are_current`).  Every file is written
atomically.
"""
from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterable

from .atomic import atomic_write_text
from .config import dataset_key
from .errors import ConfigError, MaxrfError, StoreError
from .variants import label_dirname, parse_spec

if TYPE_CHECKING:
    import numpy as np
    import xarray as xr

    from .prepare import Prepared

__all__ = ["CELL_RECORD", "FailedCell", "MANIFEST", "MAPS", "RESULTS", "RunDir", "failed_cells",
           "find_cell", "finished_record", "load_inputs", "load_maps", "load_prepared",
           "noise_ceiling", "read_manifest", "run_label_of", "save_inputs", "sweep_temporaries"]

RESULTS = "results.csv"
MANIFEST = "manifest.json"
INPUTS = "inputs"
CELLS = "cells"
CELL_RECORD = "cell.json"
MAPS = "sr.zarr"
WORK = "work"
ERROR_LOG = "error.log"
KEY_FILE = ".key"
DETERMINISTIC = "deterministic"


class RunDir:
    """The paths of one run directory (nothing is read or written by building one)."""

    #: the name of a cell's record in its folder
    CELL_RECORD = CELL_RECORD

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def __fspath__(self) -> str:
        return str(self.path)

    @property
    def results(self) -> Path:
        return self.path / RESULTS

    @property
    def manifest(self) -> Path:
        return self.path / MANIFEST

    @property
    def inputs_dir(self) -> Path:
        return self.path / INPUTS

    @property
    def cells_dir(self) -> Path:
        return self.path / CELLS

    @staticmethod
    def inputs_name(key: str) -> str:
        """The saved inputs of dataset key ``key``, relative to the run directory."""
        return f"{INPUTS}/{key}.zarr"

    def inputs(self, key: str) -> Path:
        return self.path / self.inputs_name(key)

    def dataset_dir(self, key: str) -> Path:
        return self.cells_dir / key

    def column_maps(self, key: str, label: str) -> Path:
        """A column's maps over the seeds."""
        return self.dataset_dir(key) / label_dirname(label) / MAPS

    def run_folder(self, key: str, run_label: str) -> Path:
        """The folder of a run's cells (one per seed, or ``deterministic``)."""
        return self.dataset_dir(key) / label_dirname(run_label)

    def cell(self, key: str, run_label: str, seed: int, deterministic: bool) -> Path:
        return self.run_folder(key, run_label) / (DETERMINISTIC if deterministic else f"seed-{seed}")

    def is_run_dir(self) -> bool:
        return self.path.is_dir() and (self.results.exists() or self.cells_dir.is_dir())

    def has_finished_cell(self) -> bool:
        return any(self.cells_dir.glob(f"*/*/*/{CELL_RECORD}"))

    def datasets(self) -> list[str]:
        """The datasets with cells under the full protocol, sorted."""
        return sorted(p.name for p in self.cells_dir.iterdir() if p.is_dir() and "@" not in p.name)

    def write_results(self, text: str) -> None:
        atomic_write_text(self.results, text)

    def write_manifest(self, manifest: dict) -> None:
        atomic_write_text(self.manifest, json.dumps(manifest, indent=1, default=str))


# --- cells ----------------------------------------------------------------------------

def owned_run_dir(path: Path) -> bool:
    """A run directory of ours: its ``manifest.json`` names a command and options, or a run
    started in it and holds (or held) its lock file."""
    from .lock import LOCK_NAME  # the lock file marks a run started here

    if not Path(path).is_dir():
        return False
    if (Path(path) / LOCK_NAME).exists():
        return True
    try:
        manifest = json.loads((Path(path) / MANIFEST).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(manifest, dict) and "command" in manifest and "options" in manifest


def read_record(cell: Path) -> dict:
    """A cell's record (``cell.json``), validated (:mod:`maxrf_bench.runfiles`); a
    :class:`StoreError` (an ``OSError``) naming the file and the field when it is unreadable,
    cut short or lacks a field."""
    from .runfiles import check_cell, read_json

    path = cell / CELL_RECORD
    return check_cell(read_json(path, "record of a finished cell"), path)


def write_record(cell: Path, meta: dict) -> None:
    atomic_write_text(cell / CELL_RECORD, json.dumps(meta, indent=1, default=float))


def finished_record(cell: Path, key: str) -> dict | None:
    """The reuse test: the record of a finished cell whose cell key is ``key``, else
    ``None`` (no record, no raw output, another key, or an unreadable record: recomputed,
    not trusted)."""
    if not (cell / CELL_RECORD).exists() or not (cell / MAPS).exists():
        return None
    try:
        meta = read_record(cell)
    except (ValueError, OSError):
        return None
    return meta if isinstance(meta, dict) and meta.get("key") == key else None


def reset_cell(cell: Path, key: str, force: bool) -> Path:
    """Make ``cell`` ready to be recomputed under cell key ``key``; return its private
    ``work/`` directory.  The old record goes first, so that a run killed half-way through
    the recomputation is never taken for finished; stale temporaries go too, and so does
    ``work/`` when it belongs to another key (no stale checkpoints of another
    configuration) or ``force``."""
    (cell / CELL_RECORD).unlink(missing_ok=True)
    workdir = cell / WORK
    sweep_temporaries(cell, workdir)
    key_file = workdir / KEY_FILE
    if force or (key_file.exists() and key_file.read_text() != key):
        shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(key_file, key)
    return workdir


def error_log(cell: Path) -> Path:
    return cell / ERROR_LOG


def read_raw(cell: Path) -> np.ndarray:
    """A cell's raw output, normalised, float32 ``(element, y, x)``.  Read without dask
    (``chunks=None``): the run's client calls this while a dask client is current, and a dask
    read would queue behind the cells that occupy every worker, stalling the recording of
    finished cells until one of those ended."""
    import numpy as np
    import xarray as xr

    with xr.open_zarr(cell / MAPS, chunks=None) as ds:
        return np.asarray(ds["maps_norm"].values, np.float32)


def write_maps(path: Path, prep: Prepared, sr: np.ndarray, attrs: dict,
               sr_std: np.ndarray | None = None) -> None:
    """Write maps ``sr`` (normalised) of ``prep`` as a Zarr store: ``maps`` in counts and
    ``maps_norm``, with ``maps_std``/``maps_norm_std`` when ``sr_std`` is given."""
    import numpy as np
    import xarray as xr

    from .scan import write_zarr_atomic

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


def write_cell_maps(cell: Path, prep: Prepared, sr: np.ndarray, attrs: dict) -> None:
    write_maps(cell / MAPS, prep, sr, attrs)


def maps_are_current(path: Path, maps_key: str) -> bool:
    """Whether the column maps at ``path`` were written for ``maps_key``."""
    if not path.exists():
        return False
    try:
        import zarr

        return zarr.open_group(str(path), mode="r").attrs.get("fingerprint") == maps_key
    except Exception:  # noqa: BLE001 - unreadable: rewrite it
        return False


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


# --- inputs ---------------------------------------------------------------------------

def inputs_dataset(prep: Prepared) -> xr.Dataset:
    """What the methods of a dataset saw (and the normalised truths, when known)."""
    import xarray as xr

    from .scoring import psnr_db

    data = {"maps_lr": prep.maps_lr, "rgb": prep.rgb}
    coords = {"element": prep.maps_lr["element"], "y": prep.rgb["y"], "x": prep.rgb["x"]}
    for var, arr in (("maps", prep.truth), ("maps_clean", prep.truth_clean),
                     ("maps_dwell", prep.maps_dwell)):
        if arr is not None:
            data[var] = xr.DataArray(arr, dims=("element", "y", "x"), coords=coords)
    attrs = {k: v for k, v in prep.scan.attrs.items() if isinstance(v, (str, int, float, bool))}
    if prep.misregister is not None:
        attrs["misregister"] = prep.misregister
    attrs.update(dataset=prep.name, protocol=prep.protocol, source=prep.source,
                 scale=prep.operator.scale, operator=json.dumps(prep.operator.to_dict()),
                 offset=prep.offset.tolist(), span=prep.span.tolist(),
                 normalisation="maps, maps_clean, maps_lr (and maps_dwell) are normalised: "
                               "counts = value * span + offset")
    if prep.truth is not None and prep.truth_clean is not None:
        attrs["noise_ceiling_db"] = psnr_db(prep.truth, prep.truth_clean)
    return xr.Dataset(data, attrs=attrs)


def save_inputs(prep: Prepared, run_dir: str | Path) -> None:
    """Keep the normalised inputs (and truths) of a dataset beside the results, once."""
    from .scan import write_zarr_atomic

    path = RunDir(run_dir).inputs(prep.key)
    if path.exists():
        try:
            import zarr
            if zarr.open_group(str(path), mode="r").attrs.get("fingerprint") == prep.inputs_digest:
                return
        except Exception:  # noqa: BLE001 - unreadable: rewrite it
            pass
    ds = inputs_dataset(prep)
    ds.attrs["fingerprint"] = prep.inputs_digest
    write_zarr_atomic(ds, path)


def load_prepared(run_dir: str | Path, key: str, inputs_digest: str | None = None) -> Prepared:
    """The prepared dataset of dataset key ``key`` rebuilt from the inputs saved in the run
    directory (normalised ``maps_lr``, ``rgb``, truths, offset, span, operator, the scan's
    attributes).  With ``inputs_digest``, an error unless the rebuilt inputs
    have it (a :class:`ConfigError`: the inputs changed under the run)."""
    import numpy as np
    import xarray as xr

    from .operators import operator_from_dict
    from .prepare import Prepared
    from .scan import open_scan

    path = RunDir(run_dir).inputs(key)
    ds = open_scan(path, validate=False)
    a = ds.attrs
    missing = [v for v in ("maps_lr", "rgb") if v not in ds] + \
        [k for k in ("operator", "dataset", "offset", "span") if k not in a]
    if missing:
        raise StoreError(f"{str(path)!r}: field {missing[0]!r} is missing; expected the inputs "
                         "a run saved (maps_lr, rgb and the attributes operator, dataset, offset, span)")
    op = operator_from_dict(json.loads(a["operator"]) if isinstance(a["operator"], str)
                            else a["operator"])
    truth = {v: np.asarray(ds[v].values, np.float32) if v in ds else None
             for v in ("maps", "maps_clean", "maps_dwell")}
    prep = Prepared(str(a["dataset"]), xr.Dataset(attrs=dict(a)), ds["maps_lr"].astype(np.float32),
                    ds["rgb"].astype(np.float32), op, truth["maps"],
                    np.asarray(a["offset"], np.float32), np.asarray(a["span"], np.float32),
                    str(a.get("source", "")), truth_clean=truth["maps_clean"],
                    protocol=str(a.get("protocol", "full")),
                    misregister=None if a.get("misregister") is None else float(a["misregister"]),
                    maps_dwell=truth["maps_dwell"])
    if inputs_digest is not None and prep.inputs_digest != inputs_digest:
        raise ConfigError(f"{path}: these inputs are not the ones the run started with "
                         f"(inputs digest {prep.inputs_digest}, expected {inputs_digest}); was "
                         "the run directory changed by another run?")
    return prep


def load_inputs(run_dir: str | Path, dataset: str, protocol: str = "full") -> xr.Dataset:
    """The normalised inputs (``maps_lr``, ``rgb``) and truths (``maps``, ``maps_clean``)
    the methods of ``dataset`` saw in a run."""
    from .scan import open_scan

    path = RunDir(run_dir).inputs(dataset_key(dataset, protocol))
    if not path.exists():
        raise StoreError(f"no inputs for dataset {dataset!r} (protocol {protocol}) in "
                         f"{str(run_dir)!r}: expected {path}")
    return open_scan(path, validate=False)


def noise_ceiling(run_dir: str | Path, dataset: str, protocol: str = "full") -> float | None:
    """PSNR (dB) of the measured truth against the clean one: what no method can exceed
    on the measured truth, on average.  ``None`` without a clean truth."""
    from .scoring import psnr_db

    ds = load_inputs(run_dir, dataset, protocol)
    if "maps" not in ds or "maps_clean" not in ds:
        return None
    return psnr_db(ds["maps"].values, ds["maps_clean"].values)


# --- maps and cells of a finished run -------------------------------------------------

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


def column_label(run_dir: str | Path, label_: str) -> str:
    """The label ``run`` gave the column written ``label_`` on its command line: a method
    preset or parameters in brackets resolve against the run's ``--preset`` as the table's
    labels do (``proposed+F[preset=ctx-quickscan]`` → ``proposed+F[kernel=5,…]``).  ``label_``
    as it is when it names no parameters, does not parse, or its method is not installed."""
    from .plugins import get_method
    from .variants import label

    try:
        spec = parse_spec(label_)
        if not spec.overrides:
            return label_
        preset = (read_manifest(run_dir).get("options") or {}).get("preset")
        method = get_method(spec.name)
        return label(spec, method.params(preset, dict(spec.overrides)), method.params(preset))
    except MaxrfError:
        return label_


def load_maps(run_dir: str | Path, dataset: str, label_: str, protocol: str = "full") -> xr.Dataset:
    """The super-resolved maps of column ``label_`` on ``dataset``: ``maps`` (mean over seeds,
    counts), ``maps_std``, ``maps_norm``, ``maps_norm_std`` ``(element, y, x)``."""
    from .scan import open_scan

    rd, key = RunDir(run_dir), dataset_key(dataset, protocol)
    path = rd.column_maps(key, label_)
    if not path.exists():
        path = rd.column_maps(key, column_label(run_dir, label_))
    if not path.exists():
        raise StoreError(f"no maps of {label_!r} on dataset {dataset!r} in {str(run_dir)!r}: "
                         f"expected {path} (written by maxrf-bench run)"
                         + _columns_there(rd.dataset_dir(key)))
    return open_scan(path, validate=False)


def find_cell(run_dir: str | Path, dataset: str, label_: str, seed: int | None = None,
              protocol: str = "full") -> Path:
    """The directory of a finished cell (``cell.json``, ``sr.zarr``, ``work/``) behind column
    ``label_``: the given seed's, or the first finished one."""
    base = RunDir(run_dir).run_folder(dataset_key(dataset, protocol), run_label_of(label_))
    if not base.is_dir():
        base = RunDir(run_dir).run_folder(dataset_key(dataset, protocol),
                                          run_label_of(column_label(run_dir, label_)))
    if not base.is_dir():
        raise StoreError(f"no cell {label_!r} on dataset {dataset!r} in {str(run_dir)!r}: expected {base}"
                         + _columns_there(base.parent))
    candidates = [base / DETERMINISTIC] if seed is None else []
    candidates += [base / f"seed-{seed}"] if seed is not None else sorted(
        base.glob("seed-*"), key=lambda p: int(p.name.split("-", 1)[1]) if p.name[5:].isdigit() else 0)
    for c in candidates:
        if (c / CELL_RECORD).exists():
            return c
    raise StoreError(f"no finished run of {label_!r} on dataset {dataset!r}"
                     + (f" with seed {seed}" if seed is not None else "") + f" in {base}")


# --- the manifest ---------------------------------------------------------------------

def read_manifest(run_dir: str | Path, *, required: bool = False,
                  needs: Iterable[str] = ()) -> dict:
    """The run's manifest (``{}`` when there is none and not ``required``); a
    :class:`StoreError` when it is missing and ``required``, unreadable, or lacks one of the
    keys ``needs``."""
    path = RunDir(run_dir).manifest
    if not path.is_file():
        if required:
            raise StoreError(f"{str(run_dir)!r} is not a run directory: expected {str(path)!r} "
                             "(written by `maxrf-bench run --out DIR`)")
        return {}
    try:
        manifest = json.loads(path.read_text())
        if not isinstance(manifest, dict):
            raise ValueError(f"a JSON {type(manifest).__name__}, not an object")
    except (OSError, ValueError) as exc:
        raise StoreError(f"cannot read {str(path)!r}: expected the JSON manifest written by "
                         f"maxrf-bench run, found {type(exc).__name__}: {exc}") from None
    for key in needs:
        if key not in manifest:
            raise StoreError(f"{str(path)!r} has no {key!r}: written by an older maxrf-bench, "
                             "whose manifests do not record enough to rerun a cell")
    from .runfiles import check_manifest  # the fields commands read: file and field named

    return check_manifest(manifest, path, complete=False)


@dataclass(frozen=True)
class FailedCell:
    """A cell the manifest records as failed: its dataset, protocol, the columns that read
    its run, its seed and the error."""

    dataset: str
    protocol: str
    columns: tuple[str, ...]
    seed: int | None
    error: str


def failed_cells(manifest: dict) -> list[FailedCell]:
    """The failed cells of a run, in the manifest's order (``timings`` with an error)."""
    out = []
    try:
        for t in manifest.get("timings") or []:
            if t.get("error"):
                out.append(FailedCell(t.get("dataset"), t.get("protocol", "full"),
                                      tuple(t.get("columns") or [t.get("method")]), t.get("seed"),
                                      t["error"]))
    except (AttributeError, TypeError) as exc:
        raise StoreError(f"cannot read the timings of the manifest: expected the JSON manifest "
                         f"written by maxrf-bench run, found {type(exc).__name__}: {exc}") from None
    return out
