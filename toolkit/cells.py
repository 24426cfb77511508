"""Cells: the plan of a run, running (or reusing) one cell, and recording the results.

The words (column, variant, run, cell, cell key…) are those of :mod:`maxrf_bench.runner`.
Both executors, the sequential one (:func:`maxrf_bench.runner.run_sequential`) and the dask
one (:func:`maxrf_bench.scheduler.run_on_dask`), run a :class:`Plan` with a
:class:`CellRunner` and hand every result to one :class:`RunRecord`.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from .misregister import amplitude_text, describe as describe_misregister
from . import rundir
from .config import RunConfig
from .errors import MaxrfError
from .acquisition import split_protocol
from .scoring import protocol_manifest, psnr_db, run_method, score_variants
from .plugins import get_metrics, get_registry
from .prepare import Prepared
from .provenance import git_commit, host_info, package_versions, repro_environment, source_path
from .results import RESULT_COLUMNS, TRUTHLESS
from .rundir import RunDir
from .torchutil import torch_thread_count
from .types import Method
from .variants import MethodSpec, postprocess_prepared, variant_version

__all__ = ["CellResult", "CellRunner", "Column", "Plan", "RunRecord", "RunUnit", "status_lines"]


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
    """One finished (or failed) cell: a run of a method on a dataset with a seed.

    ``metrics``: variant → truth → metric → element → value; ``error``: the method's
    failure; ``metric_errors``: failures of metric plugins on this cell's maps (the cell
    itself is fine: its maps and the other metrics are kept; the run reports each metric's
    failure once); ``traceback``: the file holding the method's traceback, when it failed."""

    dataset: str
    run_label: str
    metrics: dict
    seconds: float
    reused: bool = False
    error: str | None = None
    seed: int = 0
    protocol: str = "full"
    deterministic: bool = False
    worker: str | None = None
    metric_errors: list[str] = field(default_factory=list)
    traceback: str | None = None
    misregister: float | None = None

    @property
    def method(self) -> str:
        """The run label (the earlier name of :attr:`run_label`; the manifest's timings
        still call it ``method``)."""
        return self.run_label


@dataclass
class RunUnit:
    """One run (a method with its parameters, before post-processing) and the columns that
    read it; ``identity`` is its method identity."""

    run_label: str
    method_name: str
    method: Method
    params: dict
    columns: list[Column]
    identity: dict

    @property
    def deterministic(self) -> bool:
        return bool(self.method.deterministic)

    @property
    def variants(self) -> list[str]:
        return sorted({c.variant for c in self.columns})

    def seeds(self, seeds: list[int]) -> list[int]:
        return seeds[:1] if self.deterministic else list(seeds)

    def cell_dir(self, out: Path, prep: Prepared, seed: int) -> Path:
        return RunDir(out).cell(prep.key, self.run_label, seed, self.deterministic)

    def cell_key(self, prep: Prepared, seed: int) -> str:
        """The cell key of this run on ``prep`` with ``seed`` (see the module docstring)."""
        blob = json.dumps(
            {"inputs": prep.inputs_digest, "protocol": prep.protocol, "method": self.method_name,
             "params": self.params, "seed": None if self.deterministic else seed,
             "operator": prep.operator.to_dict(), **self.identity},
            sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def cell_name(self, prep: Prepared, seed: int) -> str:
        """How status lines name a cell: ``D@reduced / run / seed N``."""
        return f"{prep.key} / {self.run_label}" + ("" if self.deterministic else f" / seed {seed}")


@dataclass
class Plan:
    """Everything a run will do, resolved before anything is written: the prepared datasets
    and the runs; :attr:`cells` in the grid's order (datasets, runs, seeds)."""

    prepared: list[Prepared]
    units: list[RunUnit]
    seeds: list[int]

    @property
    def cells(self) -> list[tuple[Prepared, RunUnit, int]]:
        return [(prep, unit, seed) for prep in self.prepared for unit in self.units
                for seed in unit.seeds(self.seeds)]


def status_lines(res: CellResult, unit: RunUnit, prep: Prepared) -> list[str]:
    """The status line of a computed cell (the same in every executor): ``done`` with the
    PSNR of its first variant, or ``FAILED`` with the error (and where its traceback is)."""
    name = unit.cell_name(prep, res.seed)
    where = f" on {res.worker}" if res.worker else ""
    if res.error:
        log = f" (traceback in {res.traceback})" if res.traceback else ""
        return [f"{name}: FAILED{where}: {res.error}{log}"]
    psnr = res.metrics.get(unit.variants[0], {}).get("measured", {}).get("psnr", {}).get("all")
    tail = f", PSNR {psnr:.2f} dB" if psnr is not None else ""
    return [f"{name}: done in {res.seconds:.1f} s{where}{tail}"]


def stale_reason(cell: Path, unit: RunUnit) -> str | None:
    """Why a cell that has a finished record is not reused (its record is for another cell
    key), for the user: another version or code of the method (the usual case after an
    upgrade, which recomputes every cell of that method), or other inputs, parameters or
    operator.  ``None`` when the cell has no readable record."""
    try:
        old = rundir.read_record(cell)
    except (ValueError, OSError):
        return None
    now = unit.identity
    if (old.get("plugin_version"), old.get("code_hash")) != (now.get("plugin_version"),
                                                              now.get("code_hash")):
        return (f"finished earlier by other code of {unit.method_name!r} (plugin version "
                f"{old.get('plugin_version')}, code hash {old.get('code_hash')}; now "
                f"{now.get('plugin_version')}, {now.get('code_hash')})")
    return "finished earlier for other inputs, parameters or operator"


class CellRunner:
    """Runs (or reuses) single cells of a :class:`RunConfig`; ``echo`` and
    ``progress_factory`` decide what the user sees."""

    def __init__(self, config: RunConfig, echo: Callable[[str], None] = lambda s: None,
                 progress_factory: Callable[[str], Callable] | None = None):
        self.config = config
        self.echo = echo
        self.progress_factory = progress_factory
        self._metric_errors_seen: set[str] = set()

    def announce(self, res: CellResult, unit: RunUnit, prep: Prepared) -> None:
        """Say what became of a computed cell: its failed metrics (each once per run), then
        its status line (:func:`status_lines`)."""
        self.echo_metric_errors(res.metric_errors)
        for line in status_lines(res, unit, prep):
            self.echo(line)

    def echo_metric_errors(self, errors: list[str]) -> None:
        """Say each metric plugin's failure once per run, not once per cell."""
        for text in errors:
            if text not in self._metric_errors_seen:
                self._metric_errors_seen.add(text)
                self.echo(f"{text.split(' failed:')[0]} failed: its values are left out, the cells "
                          "are kept (the reason is in manifest.json and at the end of the run)")

    def reuse(self, out: Path, prep: Prepared, unit: RunUnit, seed: int) -> CellResult | None:
        """The result of a finished cell (the reuse test, :func:`maxrf_bench.rundir.finished_record`),
        with the metrics of every variant its columns ask for; ``None`` when it must run."""
        if self.config.force:
            return None
        cell = unit.cell_dir(out, prep, seed)
        meta = rundir.finished_record(cell, unit.cell_key(prep, seed))
        name = unit.cell_name(prep, seed)
        if meta is None:
            why = stale_reason(cell, unit)
            if why:
                self.echo(f"{name}: {why}: running it again")
            return None
        try:
            metric_errors: list[str] = []
            metrics = self._ensure_metrics(cell, meta, prep, unit.variants, metric_errors)
            seconds = meta["seconds"]
        except (ValueError, KeyError, OSError):
            return None  # an unreadable record is recomputed, not trusted
        self.echo(f"{name}: finished earlier, reusing")
        self.echo_metric_errors(metric_errors)
        return CellResult(prep.name, unit.run_label, metrics, seconds, True, seed=seed,
                          protocol=prep.protocol, deterministic=unit.deterministic,
                          worker=meta.get("worker"), metric_errors=metric_errors)

    def run_cell(self, out: Path, prep: Prepared, unit: RunUnit, seed: int,
                 worker: str | None = None) -> CellResult:
        """Run (or reuse) one cell and score every variant its columns ask for."""
        reused = self.reuse(out, prep, unit, seed)
        if reused is not None:
            return reused
        cfg = self.config
        cell = unit.cell_dir(out, prep, seed)
        key = unit.cell_key(prep, seed)
        name = unit.cell_name(prep, seed)
        workdir = rundir.reset_cell(cell, key, cfg.force)
        progress = self.progress_factory(name) if self.progress_factory else None
        inputs = prep.inputs(seed=seed, workdir=workdir, device=cfg.device,
                             **({"progress": progress} if progress else {}))
        self.echo(f"{name}: running")
        t0 = time.perf_counter()
        from .cellguard import InterruptWatch, failure_text, is_method_failure

        interrupts = InterruptWatch()  # a method's sys.exit/KeyboardInterrupt fails its cell only
        try:
            with interrupts:
                sr = run_method(unit.method, inputs, unit.params, prep)
        except MaxrfError:
            raise
        except BaseException as exc:  # noqa: BLE001 - one failing cell must not lose the others
            if not is_method_failure(exc, interrupts):
                raise  # a real Ctrl-C stops the run
            log = rundir.error_log(cell)
            log.write_text(traceback.format_exc())
            res = CellResult(prep.name, unit.run_label, {}, time.perf_counter() - t0,
                             error=failure_text(exc), seed=seed,
                             protocol=prep.protocol, deterministic=unit.deterministic,
                             worker=worker, traceback=str(log))
            self.announce(res, unit, prep)
            return res
        seconds = time.perf_counter() - t0
        # the torch threads the method was given (it restores them): a trained method's output
        # may depend on them (sums in another order), so `rerun` replays the count
        threads = torch_thread_count()
        rundir.write_cell_maps(cell, prep, sr, {"method": unit.run_label, "seed": seed,
                                                "params": json.dumps(unit.params, default=str)})
        metric_errors: list[str] = []
        metrics = score_variants(sr, prep, unit.variants, cfg.metrics, metric_errors)
        meta = {"key": key, "dataset": prep.name, "protocol": prep.protocol,
                "dataset_source": prep.source, "method": unit.method_name, "run_label": unit.run_label,
                "params": unit.params, "preset": cfg.preset, "seed": seed,
                "deterministic": unit.deterministic, "scale": prep.operator.scale,
                "operator": prep.operator.to_dict(), "elements": prep.elements,
                "normalisation": {"offset": prep.offset.tolist(), "span": prep.span.tolist()},
                **unit.identity, "seconds": seconds, "worker": worker, "threads": threads,
                "metric_names": cfg.metrics, "metrics": metrics, "metric_errors": metric_errors,
                "variant_versions": {v: variant_version(v) for v in metrics}}
        rundir.write_record(cell, meta)
        rundir.error_log(cell).unlink(missing_ok=True)
        res = CellResult(prep.name, unit.run_label, metrics, seconds, seed=seed,
                         protocol=prep.protocol, deterministic=unit.deterministic, worker=worker,
                         metric_errors=metric_errors)
        self.announce(res, unit, prep)
        return res

    def _ensure_metrics(self, cell: Path, meta: dict, prep: Prepared, variants: list[str],
                        errors: list[str] | None = None) -> dict:
        """Metrics of every requested variant of a finished cell; computes (from the stored
        raw output) and records the ones an earlier run did not ask for, scored under another
        version of the variant's post-processing (:data:`maxrf_bench.variants.VARIANT_VERSIONS`),
        or that failed then: they are tried again; failures go to ``errors``."""
        metrics = meta.get("metrics", {})
        versions = meta.get("variant_versions", {})
        wanted = set(self.config.metrics or get_metrics())
        missing = [v for v in variants
                   if v not in metrics or versions.get(v, 1) != variant_version(v)
                   or not wanted <= {m for t in metrics[v].values() for m in t}]
        if missing:
            sr = rundir.read_raw(cell)
            metrics.update(score_variants(sr, prep, missing, self.config.metrics, errors))
            meta["metrics"] = metrics
            meta["variant_versions"] = {v: variant_version(v) if v in missing else versions.get(v, 1)
                                        for v in metrics}
            meta["metric_errors"] = list(errors or [])
            rundir.write_record(cell, meta)
        return metrics


class RunRecord:
    """What a run has recorded: the cells' results in the grid's order.  Every executor hands
    each result to :meth:`record`, which rewrites ``results.csv`` and ``manifest.json`` and
    writes a column's maps over seeds once all the seeds of its run are in; :meth:`finish`
    writes the final manifest."""

    def __init__(self, runner: CellRunner, out: Path, plan: Plan):
        self.config = runner.config
        self.run_dir = RunDir(out)
        self.plan = plan
        self.cells = plan.cells
        self.results: list[CellResult | None] = [None] * len(self.cells)
        self.started = time.time()
        self.cluster: dict | None = None  # scheduler and workers, when run on dask

    def begin(self) -> None:
        """Sweep what a killed run left and save every dataset's inputs (once)."""
        out = self.run_dir.path
        out.mkdir(parents=True, exist_ok=True)
        rundir.sweep_temporaries(out, self.run_dir.inputs_dir)
        for prep in self.plan.prepared:
            rundir.save_inputs(prep, out)

    def set_cluster(self, info: dict) -> None:
        """Record the dask scheduler and its workers (the manifest's ``cluster``)."""
        self.cluster = info

    @property
    def done(self) -> list[CellResult]:
        return [r for r in self.results if r is not None]

    def record(self, index: int, result: CellResult, *, write: bool = True) -> None:
        """Record the result of cell ``index`` of the plan; with ``write``, rewrite the
        outputs now (else at the next write or at :meth:`finish`).  The result takes the
        cell's misregistration amplitude here, whichever executor ran or reused it."""
        prep, unit, _ = self.cells[index]
        result.misregister = prep.misregister
        self.results[index] = result
        if write:
            self._write_outputs(finished=False)
            self.aggregate_if_complete(prep, unit)

    def aggregate_if_complete(self, prep: Prepared, unit: RunUnit) -> None:
        mine = [r for (p, u, _), r in zip(self.cells, self.results) if p is prep and u is unit]
        if mine and all(r is not None for r in mine):
            self._write_aggregates(prep, unit, mine)

    def finish(self) -> list[CellResult]:
        for prep in self.plan.prepared:
            for unit in self.plan.units:
                self.aggregate_if_complete(prep, unit)
        self._write_outputs(finished=True)
        return self.done

    def _write_aggregates(self, prep: Prepared, unit: RunUnit, results: list[CellResult]) -> None:
        """Per column: the mean and standard deviation over seeds of the post-processed maps."""
        done = [r.seed for r in results if r.error is None or r.metrics]
        if not done:
            return
        out = self.run_dir.path
        keys = [unit.cell_key(prep, s) for s in done]
        raws = None
        for col in unit.columns:
            path = self.run_dir.column_maps(prep.key, col.label)
            version = variant_version(col.variant)  # a new version rewrites the maps
            maps_key = hashlib.sha256(json.dumps([keys, col.variant] + ([version] if version != 1 else [])
                                                 ).encode()).hexdigest()[:16]
            if rundir.maps_are_current(path, maps_key):
                continue
            if raws is None:
                raws = [rundir.read_raw(unit.cell_dir(out, prep, s)) for s in done]
            maps = np.stack([postprocess_prepared(r, col.variant, prep) for r in raws])
            std = maps.std(0, ddof=1) if len(maps) > 1 else np.zeros_like(maps[0])
            rundir.write_maps(path, prep, maps.mean(0), {
                "method": col.label, "run_label": unit.run_label, "variant": col.variant,
                "seeds": done, "deterministic": unit.deterministic, "fingerprint": maps_key,
                "params": json.dumps(col.params, default=str),
                "maps_std": "standard deviation over the seeds (ddof=1; 0 for one run)"}, std)

    def _keep_earlier_rows(self, w, recorded: set) -> None:
        """Copy the rows of the results table on disk whose column and cell (dataset, protocol,
        scan time, seed, amplitude) this run has not recorded yet: a second run into a finished directory,
        killed while it re-records reused cells, left a table of only the cells it had reached
        (the cells themselves were intact).  :meth:`finish` writes this run's rows alone."""
        path = self.run_dir.results
        if not path.exists():
            return
        try:
            with open(path, newline="") as f:
                rows = list(csv.DictReader(f))
        except (OSError, csv.Error, UnicodeDecodeError):
            return
        for row in rows:
            try:
                key = (row["dataset"], row["protocol"], row.get("scan_time") or "", row["seed"],
                       row.get("misregister") or "", row["method"])
            except KeyError:
                continue
            if key not in recorded:
                w.writerow(tuple(row.get(c) or "" for c in RESULT_COLUMNS))

    def _write_outputs(self, finished: bool) -> None:
        cfg, prepared, units, results = self.config, self.plan.prepared, self.plan.units, self.done
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(RESULT_COLUMNS)
        by_run = {u.run_label: u for u in units}
        for r in results:
            if r.error and not r.metrics:  # the method failed: nothing to score
                continue
            protocol, scan_time = split_protocol(r.protocol)  # acquisition-1_4 → acquisition, 0.25
            mis = amplitude_text(r.misregister)
            for col in by_run[r.run_label].columns:
                for truth, table in r.metrics.get(col.variant, {}).items():
                    for metric, row in table.items():
                        for element, value in row.items():
                            w.writerow((r.dataset, protocol, col.label, r.seed, truth, element,
                                        metric, repr(float(value)), scan_time, mis))
                w.writerow((r.dataset, protocol, col.label, r.seed, TRUTHLESS, "all", "seconds",
                            repr(float(r.seconds)), scan_time, mis))
        if not finished:  # a run into a finished directory keeps its rows until it re-records them
            self._keep_earlier_rows(w, {(r.dataset, *split_protocol(r.protocol), str(r.seed),
                                         amplitude_text(r.misregister), col.label)
                                        for r in results for col in by_run[r.run_label].columns})
        self.run_dir.write_results(buf.getvalue())
        datasets = list(dict.fromkeys(p.name for p in prepared))
        manifest = {
            "command": cfg.command,
            "options": {"methods": [str(m) for m in cfg.methods], "datasets": datasets,
                        "dataset_sources": {p.name: p.source for p in prepared},
                        "scale": {p.name: p.operator.scale for p in prepared},
                        "seeds": cfg.seed_list, "preset": cfg.preset, "sets": cfg.sets,
                        "operator": cfg.operator, "sigma": cfg.sigma, "device": cfg.device,
                        "metrics": cfg.metrics, "protocols": cfg.protocols, "fair": cfg.fair,
                        "force": cfg.force, "scheduler": cfg.scheduler,
                        "misregister": cfg.misregister,
                        **({"acquire": cfg.acquire} if cfg.acquire != "coarse" else {})},
            **({"misregister": describe_misregister(cfg.misregister_seed)}
               if cfg.misregister is not None else {}),
            **({"cluster": self.cluster} if self.cluster is not None else {}),
            "columns": {c.label: {"method": c.spec.name, "variant": c.variant, "run": u.run_label,
                                  "params": c.params, "projects": c.method.projects_with(c.params),
                                  "deterministic": u.deterministic, **u.identity}
                        for u in units for c in u.columns},
            "params": {c.label: c.params for u in units for c in u.columns},
            "seeds": {"methods": cfg.seed_list},
            "noise_ceiling_db": {p.key: psnr_db(p.truth, p.truth_clean) for p in prepared
                                 if p.truth is not None and p.truth_clean is not None},
            **protocol_manifest(prepared, cfg),
            # what reproduces a cell without the command line (maxrf_bench.reproduce)
            "inputs": {p.key: {"dataset": p.name, "protocol": p.protocol, "source": p.source,
                               "misregister": p.misregister, **_hidden_share(p),
                               "path": source_path(p.source), "fingerprint": p.inputs_digest,
                               "operator": p.operator.to_dict(), "elements": p.elements,
                               "saved": RunDir.inputs_name(p.key)} for p in prepared},
            "environment": repro_environment(),
            "versions": package_versions(),
            "plugins": {n: i.version for n, i in get_registry().plugins.items()},
            "plugin_failures": [vars(f) for f in get_registry().failures],
            "metric_failures": list(dict.fromkeys(t for r in results for t in r.metric_errors)),
            "git_commit": git_commit(),
            "host": host_info(),
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(self.started)),
            "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z") if finished else None,
            "timings": [{"dataset": r.dataset, "protocol": r.protocol, "misregister": r.misregister,
                         "method": r.run_label,
                         "columns": [c.label for c in by_run[r.run_label].columns], "seed": r.seed,
                         "seconds": r.seconds, "reused": r.reused, "error": r.error,
                         "worker": r.worker} for r in results],
        }
        self.run_dir.write_manifest(manifest)


def _hidden_share(prep: Prepared) -> dict:
    """``{"hidden_share": {element: share}}`` when the scan records it (else ``{}``)."""
    if "hidden_share" not in prep.scan:
        return {}
    hs = prep.scan["hidden_share"]
    return {"hidden_share": {str(e): float(v) for e, v in zip(hs["element"].values, hs.values)}}
