"""The ``maxrf-bench`` command line: a thin layer over the Python API.

Every user error (:class:`maxrf_bench.MaxrfError`) becomes one line on stderr and exit 2.
Plugins add commands through the ``maxrf_bench_register_commands`` hook.

Exit status of every command: 0 success; 1 ``run``: some cells failed (the table shows
them as failed; the others finished) or a metric plugin failed (said once; its values are
missing, the cells and the other metrics are complete); 2 bad input (one line saying what was expected and
what was found; nothing written); 3 the run directory is in use by another run (nothing
written); 70 an unexpected error, a bug (one line; ``--debug`` shows the traceback).
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from . import __version__
from .errors import MaxrfError
from .plugins import get_registry
from .progress import progress_printer


class _Group(click.Group):
    """Turns MaxrfError into one line and exit code 2, wherever it is raised.

    Plugin commands are lazy: ``--help`` lists them from the plugin catalogue cache
    (:func:`maxrf_bench.plugins.catalog`) and a plugin is imported only when one of its
    commands runs, so start-up does not pay for importing every plugin.
    """

    _plugins_installed = False

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except MaxrfError as exc:
            if debug_mode():
                import traceback

                traceback.print_exc()
            click.echo(f"Error: {_one_line(exc)}", err=True)
            ctx.exit(exc.exit_code)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except OSError as exc:  # read-only, no space, a name too long: the user's to fix
            from maxrf_infer.atomic import os_error_line

            line = os_error_line(exc)
            if line is None:
                if debug_mode():
                    raise
                click.echo(f"Error: internal error: {type(exc).__name__}: {_one_line(exc)} (a bug in "
                           "maxrf-bench or in a plugin; rerun with --debug for the traceback)", err=True)
                ctx.exit(INTERNAL_ERROR)
            if debug_mode():
                import traceback

                traceback.print_exc()
            click.echo(f"Error: {line}", err=True)
            ctx.exit(2)
        except Exception as exc:  # noqa: BLE001 - a bug: one line, the traceback with --debug
            if debug_mode():
                raise
            click.echo(f"Error: internal error: {type(exc).__name__}: {_one_line(exc)} (a bug in "
                       "maxrf-bench or in a plugin; rerun with --debug for the traceback)", err=True)
            ctx.exit(INTERNAL_ERROR)

    def install_plugin_commands(self) -> None:
        if not self._plugins_installed:
            type(self)._plugins_installed = True
            reg = get_registry()
            builtin = set(self.commands)
            reg.add_commands(self)
            from .plugins import write_catalog

            write_catalog(reg, builtin)  # the full load is paid for: refresh the cache

    def _catalog_commands(self) -> dict:
        from .plugins import catalog

        try:
            return catalog(reserved=self.commands).commands
        except MaxrfError:
            raise
        except Exception:  # noqa: BLE001 - an unreadable cache must not break --help
            return {}

    def list_commands(self, ctx):
        names = set(self.commands)
        if not self._plugins_installed:
            names |= set(self._catalog_commands())
        return sorted(names)

    def get_command(self, ctx, name):
        cmd = super().get_command(ctx, name)
        if cmd is None and not self._plugins_installed:
            self.install_plugin_commands()
            cmd = super().get_command(ctx, name)
        return cmd

    def format_commands(self, ctx, formatter):
        rows = [(n, c.get_short_help_str(limit=formatter.width - 6 - len(n)))
                for n, c in self.commands.items() if not c.hidden]
        if not self._plugins_installed:
            from click.utils import make_default_short_help

            rows += [(n, make_default_short_help(c["help"], formatter.width - 6 - len(n)))
                     for n, c in self._catalog_commands().items() if n not in self.commands]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(sorted(rows))


#: exit status of an unexpected exception (a bug), as sysexits' EX_SOFTWARE
INTERNAL_ERROR = 70
_DEBUG = False


def debug_mode() -> bool:
    """``--debug`` or ``MAXRF_BENCH_DEBUG=1``: show tracebacks."""
    return _DEBUG or os.environ.get("MAXRF_BENCH_DEBUG", "").strip().lower() not in ("", "0", "false", "no")


def _one_line(exc: BaseException) -> str:
    from .plugins import strict_mode

    text = str(exc)
    return text if strict_mode() else " ".join(part.strip() for part in text.splitlines() if part.strip())


def _set_debug(ctx, param, value):
    global _DEBUG
    _DEBUG = bool(value)
    return value


def _set_quiet(ctx, param, value):
    if value:
        from .progress import set_quiet

        set_quiet(True)
    return value


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="maxrf-bench")
@click.option("--quiet", "-q", is_flag=True, expose_value=False, is_eager=True, callback=_set_quiet,
              help="No progress bars in any command (also MAXRF_BENCH_QUIET=1).")
@click.option("--debug", is_flag=True, expose_value=False, is_eager=True, callback=_set_debug,
              help="Show the traceback of an error (also MAXRF_BENCH_DEBUG=1).")
def cli():
    """Super-resolve MA-XRF element maps with an RGB photograph, and compare methods fairly."""


def _split(value: str | None) -> list[str]:
    if not value:
        return []
    return [v.strip() for v in value.split(",") if v.strip()]


def _seeds(value: str | None) -> list[int] | None:
    if value is None:
        return None
    from .errors import ConfigError

    items = [v.strip() for v in value.split(",")]
    try:
        seeds = [int(v) for v in items if v]
    except ValueError:
        raise ConfigError(f"--seeds expects comma-separated integers (e.g. 0,1,2), found {value!r}") from None
    if not seeds:
        raise ConfigError(f"--seeds expects at least one integer seed (e.g. 0,1,2), found {value!r}")
    return seeds


@cli.command()
@click.option("--methods", "-m", required=True,
              help="Comma-separated method columns: NAME, NAME+P (the host's exact projection, "
                   "Eq. 10), NAME+C (clipped to [0, 1]), NAME+PC, each optionally with "
                   "[key=value,...] (see `list methods`).")
@click.option("--datasets", "-d", default=None,
              help="Comma-separated dataset names or paths to .zarr scans (default: the embedded default).")
@click.option("--out", "-o", default="maxrf-results", show_default=True, type=click.Path(file_okay=False),
              help="Run directory: results.csv, manifest.json, super-resolved maps.")
@click.option("--scale", type=int, default=None, help="Upscaling factor (default 4, or the scan's own).")
@click.option("--seed", type=int, default=None, help="One method seed (default 0).")
@click.option("--seeds", default=None, help="Comma-separated method seeds, e.g. 0,1,2: the table "
                                            "shows mean ± std; deterministic methods run once.")
@click.option("--preset", default=None, help="Preset for every method that has it (paper, fast…).")
@click.option("--set", "sets", multiple=True, metavar="METHOD.KEY=VALUE", help="Override a method parameter.")
@click.option("--fair", is_flag=True,
              help="Also run NAME+P for every method that does not project by itself.")
@click.option("--protocol", "protocols", default="full", show_default=True,
              help="Comma-separated: full (score at the scan's resolution), reduced (Wald: degrade "
                   "once more, score against the measured LR maps), acquisition (LR scans of "
                   "shorter time synthesised from the noise-free truth, see --scan-times), "
                   "thinning (raw counts split in two halves: one in, one to score).")
@click.option("--scan-times", default=None, metavar="1,1/4,1/16,1/64",
              help="acquisition protocol: LR scan times relative to the HR scan's "
                   "(default 1,1/4,1/16,1/64).")
@click.option("--acquire", type=click.Choice(["coarse", "dwell"]), default="coarse", show_default=True,
              help="acquisition protocol: the faster scan is a coarser step through --operator "
                   "(coarse), or the HR step with a t× shorter dwell whose block means the methods "
                   "get (dwell, ours; the variant +F fuses a method's output with that scan).")
@click.option("--noise-seed", type=int, default=0, show_default=True,
              help="Seed of the acquisition protocol's synthetic counting noise and of the "
                   "thinning split (the same for every method and method seed).")
@click.option("--truth", type=click.Choice(["measured", "clean", "all"]), default="measured",
              show_default=True, help="Which truth the printed table scores against (clean: the "
                                      "simulator's noise-free maps).")
@click.option("--operator", type=click.Choice(["blockmean", "gaussian", "scan"]), default="blockmean",
              show_default=True, help="Forward model U from high to low resolution (scan: a "
                                      "coarser continuous scan, integrated along x, sampled along y).")
@click.option("--sigma", type=float, default=1.0, show_default=True,
              help="Beam-spot std in HR pixels (gaussian and scan operators).")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--metrics", default=None, help="Comma-separated metrics (default: all registered).")
@click.option("--force", is_flag=True, help="Recompute finished cells instead of reusing them.")
@click.option("--scheduler", default=None, metavar="threads|processes|ADDRESS",
              help="Run the cells as dask tasks: local threads, local processes (one per core), "
                   "or a dask.distributed scheduler's address or scheduler file (the run "
                   "directory must be on a file system its workers share). "
                   "Default: one after another in this process.")
@click.option("--misregister", default=None, metavar="A,B,...",
              help="Misregistration sweep: warp the photograph the methods see by a smooth random "
                   "displacement field of each RMS amplitude (HR pixels, e.g. 0,1,2,4); truth and LR "
                   "maps stay as they are (see maxrf_bench.misregister).")
@click.option("--misregister-seed", type=int, default=0, show_default=True,
              help="Seed of the displacement field of --misregister.")
@click.option("--quiet", "-q", is_flag=True, help="No progress lines.")
def run(methods, datasets, out, scale, seed, seeds, preset, sets, fair, protocols, scan_times,
        acquire, noise_seed, truth, operator, sigma, device, metrics, force, scheduler, misregister,
        misregister_seed, quiet):
    """Run METHODS on DATASETS and print a table in the shape of the paper's Table I.

    Exit status: 0 when every cell finished, 1 when some cells failed (the table shows them
    as failed) or a metric failed (said once; the cells are complete without it), 2 for bad input (nothing run), 3 when another run holds the --out directory
    (nothing run; start this one again when that one has finished: finished cells are reused)."""
    from .config import RunConfig, parse_sets
    from .errors import ConfigError
    from .runner import Runner
    from .rundir import RunDir
    from .misregister import parse_amplitudes
    from .table import run_tables
    from .variants import split_specs

    seed_list = _seeds(seeds)
    if seed_list is not None and seed is not None and seed_list != [seed]:
        raise ConfigError(f"give either --seed or --seeds, found --seed {seed} and --seeds {seeds}")
    cfg = RunConfig(methods=split_specs(methods), datasets=_split(datasets), out=Path(out), scale=scale,
                    seed=0 if seed is None else seed, seeds=seed_list, preset=preset,
                    sets=parse_sets(sets), operator=operator, sigma=sigma, device=device,
                    metrics=_split(metrics) or None, protocols=_split(protocols), fair=fair,
                    force=force, truth=truth, command=["maxrf-bench", *sys.argv[1:]],
                    scheduler=scheduler, scan_times=scan_times, noise_seed=noise_seed, acquire=acquire,
                    misregister=None if misregister is None else parse_amplitudes(misregister),
                    misregister_seed=misregister_seed)
    from .progress import echo as progress_echo  # prints above a live progress bar

    echo = (lambda s: None) if quiet else progress_echo
    runner = Runner(cfg, echo=echo, progress_factory=None if quiet else progress_printer)
    cells = runner.run()
    click.echo(run_tables(out, truth=truth, color=sys.stdout.isatty()))
    from .report import write_report

    try:
        report_path = write_report(out)
    except MaxrfError as exc:  # the results stand; only the page could not be made
        report_path = f"not written ({exc})"
    click.echo(f"\nresults: {RunDir(out).results}  manifest: {RunDir(out).manifest}  "
               f"report: {report_path}")
    for f in get_registry().failures:
        click.echo(f"Warning: {f.describe()} (see `maxrf-bench plugins`)", err=True)
    failed = [c for c in cells if c.error]
    for c in failed:
        click.echo(f"Error: {c.dataset} / {c.run_label} (seed {c.seed}) failed: {c.error}", err=True)
    # a broken metric is said once, as the metric's failure: the cells and maps are fine, but
    # the run did not compute everything it was asked for, so a CI sees a non-zero status
    metric_failures = list(dict.fromkeys(t for c in cells for t in getattr(c, "metric_errors", [])))
    for text in metric_failures:
        click.echo(f"Error: {text}; its values are missing from every cell (the maps and the "
                   "other metrics are complete)", err=True)
    if failed or metric_failures:
        sys.exit(1)


@cli.command("list")
@click.argument("kind", type=click.Choice(["methods", "datasets", "metrics"]))
def list_(kind):
    """List registered methods, datasets or metrics, one per line."""
    from .plugins import catalog

    cat = catalog(reserved=cli.commands)
    items = cat.items[kind]  # from the cache: no plugin imported
    if cat.failures:
        names = sorted({f["plugin"] for f in cat.failures})
        click.echo(f"Warning: {len(names)} plugin(s) failed to load or had items refused "
                   f"({', '.join(names)}); run `maxrf-bench plugins` to see why", err=True)
    width = max((len(n) for n in items), default=0)
    for name in sorted(items):
        item = items[name]
        flag = " (default)" if item.get("default") else ""
        click.echo(f"{name.ljust(width)}  {item['description']}{flag}")


@cli.command()
@click.argument("name")
@click.option("--kind", type=click.Choice(["methods", "datasets", "metrics"]), default=None,
              help="Look NAME up among these only (default: all three).")
def info(name, kind):
    """Describe a method, dataset or metric (or a .zarr scan): plugin, reference, needs,
    parameters with types, defaults and presets, projection, determinism."""
    from .info import describe

    click.echo(describe(name, kind))


@cli.command("new-plugin")
@click.argument("name")
@click.option("--out", "-o", default=None, type=click.Path(),
              help="Folder to write (default ./NAME); must be new or empty.")
def new_plugin(name, out):
    """Write a working plugin distribution NAME: one method, its entry point and its test."""
    from .newplugin import new_plugin as _new

    path = _new(name, out)
    click.echo(f"wrote {path}: pip install -e {path} && (cd {path} && pytest)")


@cli.command()
@click.option("--check", is_flag=True,
              help="Exit 1 when a plugin failed to load or an item of one was refused (for CI).")
def plugins(check):
    """List plugins, their versions, what each registered, and those that failed."""
    reg = get_registry()
    reg.all("methods")  # collect registrations
    cli.install_plugin_commands()  # records each plugin's commands, refreshes the cache
    for name, info in sorted(reg.plugins.items()):
        version = f" {info.version}" if info.version else ""
        dist = f" ({info.distribution})" if info.distribution else ""
        click.echo(f"{name}{version}{dist}")
        for kind, names in info.registered.items():
            if names:
                click.echo(f"    {kind}: {', '.join(names)}")
        if info.commands:
            click.echo(f"    commands: {', '.join(info.commands)}")
    if reg.failures:
        click.echo("\nfailed plugins (skipped):")
        for f in reg.failures:
            if f.item:
                click.echo(f"  {f.plugin}: {f.item} refused: {f.error}")
            else:
                click.echo(f"  {f.plugin}: failed to {f.stage}: {f.error}")
        if check:
            click.echo(f"Error: {len(reg.failures)} plugin failure(s); see the list above", err=True)
            sys.exit(1)


@cli.command()
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--truth", type=click.Choice(["measured", "clean", "all"]), default="measured",
              show_default=True, help="Which truth the table scores against.")
@click.option("--by-method", "by_method", is_flag=True,
              help="One Markdown table per protocol, a row per column label and a column per "
                   "dataset and truth (PSNR mean ± std, then seconds), for papers and READMEs.")
@click.option("--metrics", default=None,
              help="Comma-separated metrics to show, in order (default: rmse,psnr; plugin "
                   "metrics too; `all`: every metric of the run).")
def table(run_dir, truth, by_method, metrics):
    """Print the comparison tables of an earlier run."""
    from .table import by_method_markdown, run_tables

    if by_method:
        from .results import read_results

        click.echo(by_method_markdown(read_results(run_dir), truth=truth))
        return
    kw = {"metrics": _split(metrics)} if metrics else {}
    click.echo(run_tables(run_dir, truth=truth, color=sys.stdout.isatty(), **kw))


@cli.command()
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--out", "-o", default=None, type=click.Path(),
              help="HTML file to write (default RUN_DIR/report.html; a folder gets index.html). "
                   "PNG figures and Markdown tables go to a folder beside it.")
@click.option("--element", default=None, metavar="LINE",
              help="Element line of the figures (default: the one whose truth has the most structure).")
@click.option("--crop", default=None, metavar="y0:y1,x0:x1", help="Zoom the figures into HR pixels y0:y1, x0:x1.")
@click.option("--no-assets", is_flag=True, help="Only the HTML page (no PNG/Markdown beside it).")
def report(run_dir, out, element, crop, no_assets):
    """Write one self-contained HTML report (tables, figures, manifest) of an earlier run."""
    from .report import write_report

    path = write_report(run_dir, out, element=element, crop=crop, assets=not no_assets)
    click.echo(f"report: {path}")


@cli.command("tradeoff-page")
@click.argument("run_dirs", nargs=-1, required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--out", "-o", default="docs/scan-time.md", show_default=True, type=click.Path(dir_okay=False),
              help="Markdown page to write (figures go to figures/ beside it).")
def tradeoff_page(run_dirs, out):
    """Write the scan-time trade-off page (break-even tables, figures) of acquisition runs."""
    from .tradeoff import write_tradeoff_page

    click.echo(f"wrote {write_tradeoff_page(list(run_dirs), out)}")


#: the --protocol of commands that read one cell of a run: its dataset keys' protocol part
PROTOCOL_KEY_HELP = ("The cell's protocol as the run's dataset keys spell it: full, reduced, thinning, "
                     "acquisition-1_4 (scan time 1/4)…")


@cli.command("save-maps")
@click.argument("source", type=click.Path())
@click.option("--dataset", "-d", default=None, help="Dataset of the cell (optional when the run has one).")
@click.option("--method", "-m", default=None, metavar="LABEL",
              help="Cell label as in the table (bicubic, guided+P…); not for an infer output.")
@click.option("--out", "-o", required=True, type=click.Path(), help="Folder to write the maps into (new, empty, or an earlier save-maps output).")
@click.option("--format", "fmt", type=click.Choice(["tiff", "png", "h5"]), default="tiff", show_default=True,
              help="tiff: float32 per element; png: 16-bit per element + JSON scale; h5: PyXRF layout.")
@click.option("--protocol", default="full", show_default=True, help=PROTOCOL_KEY_HELP + " (run directories)")
def save_maps(source, dataset, method, out, fmt, protocol):
    """Save super-resolved maps (counts) of a run or of `maxrf-bench infer` for ImageJ, PyXRF, PyMca…

    SOURCE is a run directory (pick the cell with --dataset and --method) or the Zarr store
    written by `maxrf-bench infer`.
    """
    from .savemaps import save_maps as _save

    paths = _save(source, out, dataset=dataset, method=method, fmt=fmt, protocol=protocol)
    click.echo(f"wrote {len(paths)} files to {out} ({fmt})", err=True)


@cli.command()
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--dataset", "-d", required=True, help="Dataset of the cell.")
@click.option("--method", "-m", "label", required=True, metavar="LABEL",
              help="Column label as in the table (bicubic, guided+P, proposed[kernel=3]…).")
@click.option("--seed", type=int, default=None, help="Seed of the cell (default: the run's first).")
@click.option("--protocol", default="full", show_default=True, help=PROTOCOL_KEY_HELP)
@click.option("--from-source", is_flag=True,
              help="Prepare the inputs again from the dataset the manifest names, not from the "
                   "copy saved in RUN_DIR/inputs.")
@click.option("--tolerance", type=float, default=0.0, show_default=True,
              help="Largest absolute difference of a metric still counted as reproduced.")
def rerun(run_dir, dataset, label, seed, protocol, from_source, tolerance):
    """Rerun one cell from RUN_DIR/manifest.json alone and compare its metrics with the run's.

    Exit status 0 when every recorded metric is reproduced, 1 when some differ."""
    from .reproduce import rerun_cell

    res = rerun_cell(run_dir, dataset, label, seed, protocol, from_source=from_source,
                     tolerance=tolerance)
    for note in res.notes:
        click.echo(f"Warning: {note}", err=True)
    n = sum(len(row) for table in res.stored.values() for row in table.values())
    on = f" (on {res.threads} torch thread(s), as the cell ran)" if res.threads else ""
    if res.reproduced:
        click.echo(f"{dataset} / {label} / seed {res.seed}: all {n} recorded metric values reproduced"
                   + (" exactly" if tolerance == 0 else f" within {tolerance:g}") + on)
        return
    for truth, metric, element, old, new in res.differences:
        click.echo(f"{dataset} / {label} / seed {res.seed}: {metric} ({truth}, {element}) "
                   f"recorded {old!r}, recomputed {new!r}")
    click.echo(f"{len(res.differences)} of {n} metric values differ", err=True)
    sys.exit(1)


def _install_plugin_commands():
    """Import every plugin now (``MAXRF_BENCH_EAGER_PLUGINS=1``, strict mode, or tests)."""
    cli.install_plugin_commands()


def main(argv=None):
    from .plugins import eager_mode, strict_mode

    try:
        if eager_mode() or strict_mode():
            _install_plugin_commands()
    except MaxrfError as exc:  # strict plugin mode: a broken plugin is fatal, said plainly
        click.echo(f"Error: {exc}", err=True)
        sys.exit(exc.exit_code)
    return cli.main(args=argv, prog_name="maxrf-bench")


if __name__ == "__main__":  # pragma: no cover
    main()
