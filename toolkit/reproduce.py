"""Rerun one cell of a finished run from what its run directory recorded, and compare.

``maxrf-bench rerun DIR --dataset D --method LABEL [--seed N] [--from-source]`` (or
:func:`rerun_cell`) rebuilds a cell from ``DIR/manifest.json`` alone: the column's method,
variant and resolved parameters (``columns``), its seed, the device, the metrics, and the
inputs (``inputs``: the LR maps and photograph the methods saw, saved in the run
directory, with their inputs digest, operator and elements).  It runs the method again in a
fresh private directory (nothing of the first run is reused: no checkpoint, no trained
model), checks, post-processes and scores its output as the runner does
(:mod:`maxrf_bench.scoring`), and compares the metrics with the ones the run recorded.

``--from-source`` prepares the inputs again from the dataset the manifest names (a
registered dataset, or the absolute path of the store) with the recorded scale, operator
and protocol, instead of reading the saved copy, and checks that they are the same inputs
(same inputs digest): this proves that the manifest, not the command line, holds everything.
The method runs on the torch thread count the cell recorded (``threads`` in its
``cell.json``): a trained method sums in another order on another count, and training can
amplify that last bit (``cs2dips``, ``mmsr``).

Exit status of the command: 0 when every metric is reproduced (exactly, or within
``--tolerance`` when given), 1 when some differ, 2 for bad input.  A method that is not
deterministic on this machine (threads racing on a GPU, a plugin that ignores its seed)
shows here first.
"""
from __future__ import annotations

import math
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import ConfigError, StoreError

__all__ = ["Rerun", "rerun_cell"]


@dataclass
class Rerun:
    """What :func:`rerun_cell` found: ``metrics`` (recomputed) and ``stored`` (recorded),
    both ``{truth: {metric: {element: value}}}``; ``differences`` lists
    ``(truth, metric, element, stored, recomputed)`` beyond the tolerance; ``sr`` is the
    post-processed output ``(element, y, x)``, normalised."""

    dataset: str
    label: str
    seed: int
    metrics: dict
    stored: dict
    differences: list = field(default_factory=list)
    sr: np.ndarray | None = None
    code_changed: bool = False
    notes: list = field(default_factory=list)
    #: the torch thread count the method was rerun on: the cell's recorded one (None: not
    #: recorded, this process's own)
    threads: int | None = None

    @property
    def reproduced(self) -> bool:
        return not self.differences


def _prepared_from_source(manifest: dict, info: dict):
    from .plugins import get_dataset
    from .prepare import prepare_scan, reduce_resolution
    from .scan import open_scan

    opts = manifest["options"]
    name, source = info["dataset"], info.get("source", "")
    if info.get("path"):
        scan = open_scan(info["path"])
    elif source.startswith("dataset plugin "):
        scan = get_dataset(source[len("dataset plugin "):].strip("'\"")).load()
    else:
        raise StoreError(f"the manifest does not say where dataset {name!r} came from "
                         f"(source {source!r}); rerun without --from-source")
    op = info["operator"]
    prep = prepare_scan(scan, name=name, scale=int(op["scale"]), operator=op["name"],
                        sigma=float(op.get("sigma", opts.get("sigma", 1.0))), source=source)
    protocol = info.get("protocol", "full")
    if protocol == "reduced":
        prep = reduce_resolution(prep)
    elif protocol.startswith("acquisition-"):  # the same synthetic scan, from the recorded noise seed
        from .acquisition import acquisition_inputs, parse_scan_times

        entry = manifest.get("acquisition", {}).get(name, {})
        times = parse_scan_times(protocol.split("-", 1)[1].replace("_", "/"))   # 1_4 → 1/4
        prep = acquisition_inputs(prep, times, int(entry.get("noise_seed", 0)),
                                  entry.get("acquire", "coarse"))[0]
    elif protocol != "full":
        raise ConfigError(f"--from-source prepares the inputs of protocols full, reduced and "
                          f"acquisition again; dataset {name!r} ran under {protocol!r}: rerun "
                          "without --from-source (from the inputs the run saved)")
    if info.get("misregister") is not None:  # the same warp of the photograph, from its seed
        from .misregister import misregistered

        prep = misregistered(prep, float(info["misregister"]),
                             int(manifest.get("misregister", {}).get("seed", 0)))
    return prep


def rerun_cell(run_dir: str | os.PathLike, dataset: str, label: str, seed: int | None = None,
               protocol: str = "full", *, from_source: bool = False, tolerance: float = 0.0,
               workdir: str | os.PathLike | None = None) -> Rerun:
    """Rerun column ``label`` on ``dataset`` (seed ``seed``, default the first of the run)
    from ``run_dir``'s manifest; see the module docstring.  ``tolerance``: largest absolute
    difference of a metric still counted as reproduced (0: exactly the same float)."""
    from . import rundir
    from .config import dataset_key
    from .scoring import run_method, score_variants
    from .plugins import get_method
    from .provenance import method_identity
    from .scheduler import restoring_settings, set_cell_threads
    from .variants import postprocess_prepared

    run_dir = Path(run_dir)
    manifest = rundir.read_manifest(run_dir, required=True, needs=("columns", "options", "inputs"))
    columns = manifest["columns"]
    if label not in columns:  # written with a method preset, as on the run's command line
        label = rundir.column_label(run_dir, label)
    if label not in columns:
        raise ConfigError(f"run {str(run_dir)!r} has no column {label!r}; expected one of: "
                          f"{', '.join(columns)}")
    col = columns[label]
    key = dataset_key(dataset, protocol)
    if key not in manifest["inputs"]:
        raise ConfigError(f"run {str(run_dir)!r} has no dataset {dataset!r} under protocol "
                          f"{protocol!r}; expected one of: {', '.join(manifest['inputs'])}")
    info = manifest["inputs"][key]
    seeds = manifest["options"].get("seeds") or [0]
    if col.get("deterministic"):
        seed = int(seeds[0])
    elif seed is None:
        seed = int(seeds[0])
    cell = rundir.find_cell(run_dir, dataset, label, seed=None if col.get("deterministic") else seed,
                     protocol=protocol)
    meta = rundir.read_record(cell)
    variant = col.get("variant", "")
    stored = meta.get("metrics", {}).get(variant)
    if stored is None:
        raise StoreError(f"cell {str(cell)!r} records no metrics of variant {variant!r}")

    method = get_method(col["method"])
    notes = []
    now = method_identity(col["method"], method)
    changed = any(col.get(k) not in (None, now[k]) for k in ("plugin_version", "code_hash"))
    if changed:
        notes.append(f"plugin code changed since the run: recorded version "
                     f"{col.get('plugin_version')!r} hash {col.get('code_hash')!r}, now "
                     f"{now['plugin_version']!r} hash {now['code_hash']!r}")
    prep = _prepared_from_source(manifest, info) if from_source else rundir.load_prepared(run_dir, key)
    if prep.inputs_digest != info["fingerprint"]:
        raise StoreError(f"the inputs of dataset {dataset!r} are not those of the run: inputs "
                         f"digest {prep.inputs_digest} found, {info['fingerprint']} recorded in "
                         "the manifest")
    device = manifest["options"].get("device", "auto")
    threads = int(meta["threads"]) if meta.get("threads") else None
    with tempfile.TemporaryDirectory(prefix="maxrf-rerun-") as tmp, restoring_settings():
        if threads:  # a trained method's sums, and so its output, may depend on the count
            set_cell_threads(threads)
        work = Path(workdir) if workdir is not None else Path(tmp) / "work"
        work.mkdir(parents=True, exist_ok=True)
        raw = run_method(method, prep.inputs(seed=seed, workdir=work, device=device),
                         col["params"], prep)
    names = meta.get("metric_names") or manifest["options"].get("metrics")
    metrics = score_variants(raw, prep, [variant], names)[variant]
    sr = postprocess_prepared(raw, variant, prep)
    diffs = []
    for truth, table in stored.items():
        for metric, row in table.items():
            for element, value in row.items():
                new = metrics.get(truth, {}).get(metric, {}).get(element)
                if new is None:
                    diffs.append((truth, metric, element, value, None))
                elif not (new == value or (math.isnan(new) and math.isnan(value))
                          or abs(new - value) <= tolerance):
                    diffs.append((truth, metric, element, value, new))
    return Rerun(dataset, label, seed, metrics, stored, diffs, sr, changed, notes, threads)
