"""Run a grid of (dataset × column × seed) cells, resumably, and record the results.

Glossary (the words of the code and its docstrings)
---------------------------------------------------
* **column**: a method spec (:mod:`maxrf_bench.variants`): a registered method, a variant
  and parameters, named by its *label* (``guided+P[radius=2]``); a column of Table I and
  the ``method`` field of ``results.csv``.
* **variant**: the host's post-processing of a column: ``""`` (none), ``P`` (the exact
  projection, Eq. 10), ``C`` (clipping to [0, 1]) or ``PC``.
* **run**: one method with its parameters, named by its *run label* (the column label
  without its variant).  Columns that differ only by their variant share a run, and the
  host post-processes the run's raw output once per variant, the same way for every method.
* **cell**: a run on one dataset under one protocol with one seed (``deterministic``: a
  method that ignores the seed runs once, with the first seed).  A cell's folder holds its
  raw output and its *cell record* (``cell.json``); see :mod:`maxrf_bench.rundir`.
* **dataset key**: a dataset under a protocol, ``D`` or ``D@reduced``
  (:func:`maxrf_bench.config.dataset_key`).
* Identities, each with its own name (none of them is called a fingerprint in the code; the
  files keep the key ``fingerprint`` where it was written before):

  - **inputs digest** (:attr:`maxrf_bench.prepare.Prepared.inputs_digest`): what the methods
    of a dataset see (LR maps, photograph, operator);
  - **method identity** (:func:`maxrf_bench.provenance.method_identity`): the plugin that
    registered a method, its version and a hash of its code;
  - **cell key** (:meth:`maxrf_bench.cells.RunUnit.cell_key`): a hash of the inputs digest, the method, its
    parameters, the seed, the operator and the method identity; a cell is reused only when
    its record has the same key;
  - **maps key**: a hash of the cell keys a column's maps over seeds average and the
    variant; the maps are rewritten when it changes;
  - **catalogue key** (:func:`maxrf_bench.plugins.catalog_key`): what the cached plugin
    catalogue was built from.

The protocols
-------------
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

How a run proceeds
------------------
:meth:`Runner.check` resolves every name, option and dataset into a :class:`Plan` before
anything is written; an *executor* runs the plan's cells, one after another in this
process (:func:`run_sequential`) or as dask tasks (:func:`maxrf_bench.scheduler.run_on_dask`);
both reuse a finished cell by the same test (:meth:`~maxrf_bench.cells.CellRunner.reuse`),
compute the others with :meth:`~maxrf_bench.cells.CellRunner.run_cell`, and hand every
result to the same :class:`~maxrf_bench.cells.RunRecord`, which
writes ``results.csv``, ``manifest.json`` and the columns' maps over seeds.  A cell counts
as finished when its record exists and its cell key matches, so a changed plugin is rerun;
``force=True`` reruns everything.  Every file is written atomically.
"""
from __future__ import annotations

import shutil
from pathlib import Path

from .cells import CellResult, CellRunner, Column, Plan, RunRecord, RunUnit, status_lines
from .config import PROTOCOLS, TRUTHS, RunConfig, dataset_key, parse_sets
from .errors import ConfigError, MaxrfError
from .scoring import evaluate
from .lock import run_dir_lock
from .plugins import get_method, get_metrics
from .prepare import (Prepared, check_dataset_name, default_dataset, prepare_datasets,
                      prepare_scan, reduce_resolution, resolve_dataset)
from .provenance import method_identity
from .results import RESULT_COLUMNS, Results, Summary, read_results
from .rundir import RunDir, find_cell, load_inputs, load_maps, noise_ceiling
from .variants import MethodSpec, check_variant, label, parse_spec

__all__ = ["CellResult", "Column", "PROTOCOLS", "Plan", "Prepared", "RESULT_COLUMNS", "Results",
           "RunConfig", "RunRecord", "RunUnit", "Runner", "Summary", "evaluate", "find_cell",
           "load_inputs", "load_maps", "noise_ceiling", "parse_sets", "prepare_scan",
           "read_results", "reduce_resolution", "resolve_dataset", "run_grid", "run_sequential"]

#: the earlier name of :func:`maxrf_bench.provenance.method_identity`
method_fingerprint = method_identity
_ = (TRUTHS, check_dataset_name, dataset_key, status_lines)  # re-exported for older imports


class Runner(CellRunner):
    """Runs a :class:`RunConfig`: resolves it into a :class:`Plan` (:meth:`check`) and runs
    the plan with an executor (:meth:`run`); a :class:`~maxrf_bench.cells.CellRunner` for
    its cells.  ``echo`` and ``progress_factory`` decide what the user sees."""

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

    def _check_acquire(self) -> None:
        """``--acquire dwell`` belongs to the acquisition protocol alone (the block-mean operator
        it needs is checked where its scans are made, :func:`maxrf_bench.acquisition.
        acquisition_inputs`, still before anything is written)."""
        from .acquisition import ACQUIRE

        cfg = self.config
        if cfg.acquire not in ACQUIRE:
            raise ConfigError(f"--acquire expects {' or '.join(ACQUIRE)}, found {cfg.acquire!r}")
        if cfg.acquire == "dwell" and cfg.protocols != ["acquisition"]:
            raise ConfigError("--acquire dwell makes the scans of --protocol acquisition (alone); "
                              f"found --protocol {','.join(cfg.protocols)}")

    @staticmethod
    def _check_fused(columns, prepared) -> None:
        """``+F`` needs a short-dwell HR-step scan on every prepared dataset of the run (one
        refusal before anything is written)."""
        from .variants import DWELL_VARIANTS

        fused = [c.label for c in columns if c.spec.variant in DWELL_VARIANTS]
        bare = [p.key for p in prepared if p.maps_dwell is None]
        if fused and bare:
            raise ConfigError(f"{fused[0]!r}: +F fuses a method's output with a short-dwell HR-step "
                              "scan, which --protocol acquisition --acquire dwell makes and a scan "
                              f"imported with --short-dwell carries; found none for {bare[0]!r}")

    def check(self) -> Plan:
        """Resolve every name, option and dataset into the plan, before anything is written."""
        cfg = self.config
        columns = self.columns()
        seeds = cfg.seed_list
        if not seeds:
            raise ConfigError("--seeds expects at least one integer seed, found none")
        if len(set(seeds)) != len(seeds):
            raise ConfigError(f"--seeds lists a seed twice: {seeds}")
        # numpy's and torch's generators take seeds in [0, 2**32): a negative one was a
        # failed cell or an internal error (exit 70) when it reached them
        for option, values in (("--seeds" if cfg.seeds is not None else "--seed", seeds),
                               ("--noise-seed", [cfg.noise_seed]),
                               ("--misregister-seed", [cfg.misregister_seed])):
            bad = [v for v in values if not 0 <= int(v) < 2 ** 32]
            if bad:
                raise ConfigError(f"{option} expects integers from 0 to 2**32 − 1, found {bad[0]}")
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
            raise ConfigError(f"--protocol expects {', '.join(PROTOCOLS)} (comma-separated), "
                              f"found {','.join(cfg.protocols) or '(none)'}")
        from .acquisition import parse_scan_times

        parse_scan_times(cfg.scan_times)  # malformed: fails here
        self._check_acquire()
        if cfg.truth not in (*TRUTHS, "all"):
            raise ConfigError(f"--truth expects measured, clean or all, found {cfg.truth!r}")
        prepared = prepare_datasets(cfg.datasets or [default_dataset()], cfg.protocols,
                                    scale=cfg.scale, operator=cfg.operator, sigma=cfg.sigma,
                                    scan_times=cfg.scan_times, noise_seed=cfg.noise_seed,
                                    acquire=cfg.acquire)
        if cfg.misregister is not None:  # one copy per amplitude, its photograph warped
            from .misregister import misregistered

            prepared = [misregistered(p, a, cfg.misregister_seed)
                        for p in prepared for a in cfg.misregister]
        self._check_fused(columns, prepared)
        if cfg.truth == "clean" and not any(p.truth_clean is not None for p in prepared):
            raise ConfigError("--truth clean needs a scan with a noise-free truth ('maps_clean', as "
                              "the simulator writes), found none among: "
                              + ", ".join(sorted({p.name for p in prepared})))
        units: dict[str, RunUnit] = {}
        for col in columns:
            unit = units.get(col.run_label)
            if unit is None:
                unit = units[col.run_label] = RunUnit(
                    col.run_label, col.spec.name, col.method, col.params, [],
                    method_identity(col.spec.name, col.method))
            unit.columns.append(col)
        for unit in units.values():  # pre-flight checks of the methods, once per scale
            if unit.method.check is not None:
                for scale in sorted({p.operator.scale for p in prepared}):
                    unit.method.check(unit.params, scale)
        return Plan(prepared, list(units.values()), seeds)

    # -- the grid --
    def run(self) -> list[CellResult]:
        cfg = self.config
        plan = self.check()
        out = Path(cfg.out)
        from .atomic import check_output  # never a folder of other files, an input
        from .rundir import owned_run_dir

        from .provenance import source_path

        check_output(out, kind="run directory", owned=owned_run_dir,
                     inputs=[p for p in (source_path(x.source) for x in plan.prepared) if p])
        created = not out.exists()
        try:
            # one run per directory; a second one stops here, before writing (maxrf_bench.lock)
            with run_dir_lock(out, cfg.command):
                if cfg.scheduler is not None:  # the same plan, its cells as dask tasks
                    from .scheduler import run_on_dask

                    return run_on_dask(self, out, plan)
                return run_sequential(self, out, plan)
        except MaxrfError:
            # bad input that a method itself found (e.g. missing weights): a run directory
            # this run created, and in which no cell finished, is removed again
            if created and out.is_dir() and not RunDir(out).has_finished_cell():
                shutil.rmtree(out, ignore_errors=True)
            raise


def run_sequential(runner: CellRunner, out: Path, plan: Plan) -> list[CellResult]:
    """The sequential executor: the plan's cells one after another in this process (the run
    directory ``out`` locked by the caller)."""
    record = RunRecord(runner, out, plan)
    record.begin()
    for i, (prep, unit, seed) in enumerate(record.cells):
        record.record(i, runner.run_cell(out, prep, unit, seed))
    return record.finish()


def run_grid(methods: list[str], datasets: list[str] | None = None, out: str | Path = "maxrf-results",
             **kwargs) -> Results:
    """Run every method spec on every dataset (Python API of ``maxrf-bench run``)."""
    cfg = RunConfig(methods=list(methods), datasets=list(datasets or []), out=Path(out), **kwargs)
    Runner(cfg).run()
    return read_results(out)
