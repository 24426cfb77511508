"""The ``maxrf-bench`` command line: a thin layer over the Python API.

Every user error (:class:`maxrf_bench.MaxrfError`) becomes one line on stderr and exit 2.
Plugins add commands through the ``maxrf_bench_register_commands`` hook.
"""
from __future__ import annotations

import sys
from pathlib import Path

import click

from . import __version__
from .errors import MaxrfError
from .plugins import get_registry
from .progress import progress_printer


class _Group(click.Group):
    """Turns MaxrfError into one line and exit code 2, wherever it is raised."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except MaxrfError as exc:
            click.echo(f"Error: {exc}", err=True)
            ctx.exit(exc.exit_code)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="maxrf-bench")
def cli():
    """Super-resolve MA-XRF element maps with an RGB photograph, and compare methods fairly."""


def _split(value: str | None) -> list[str]:
    if not value:
        return []
    return [v.strip() for v in value.split(",") if v.strip()]


@cli.command()
@click.option("--methods", "-m", required=True, help="Comma-separated method names (see `list methods`).")
@click.option("--datasets", "-d", default=None,
              help="Comma-separated dataset names or paths to .zarr scans (default: the embedded default).")
@click.option("--out", "-o", default="maxrf-results", show_default=True, type=click.Path(file_okay=False),
              help="Run directory: results.csv, manifest.json, super-resolved maps.")
@click.option("--scale", type=int, default=None, help="Upscaling factor (default 4, or the scan's own).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--preset", default=None, help="Preset for every method that has it (paper, fast…).")
@click.option("--set", "sets", multiple=True, metavar="METHOD.KEY=VALUE", help="Override a method parameter.")
@click.option("--operator", type=click.Choice(["blockmean", "gaussian"]), default="blockmean", show_default=True,
              help="Forward model U from high to low resolution.")
@click.option("--sigma", type=float, default=1.0, show_default=True,
              help="Beam-spot std in HR pixels (gaussian operator).")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--metrics", default=None, help="Comma-separated metrics (default: all registered).")
@click.option("--quiet", "-q", is_flag=True, help="No progress lines.")
def run(methods, datasets, out, scale, seed, preset, sets, operator, sigma, device, metrics, quiet):
    """Run METHODS on DATASETS and print a table in the shape of the paper's Table I."""
    from .runner import RunConfig, Runner, parse_sets, read_results
    from .table import comparison_table

    cfg = RunConfig(methods=_split(methods), datasets=_split(datasets), out=Path(out), scale=scale,
                    seed=seed, preset=preset, sets=parse_sets(sets), operator=operator, sigma=sigma,
                    device=device, metrics=_split(metrics) or None, command=["maxrf-bench", *sys.argv[1:]])
    echo = (lambda s: None) if quiet else (lambda s: click.echo(s, err=True))
    runner = Runner(cfg, echo=echo, progress_factory=None if quiet else progress_printer)
    cells = runner.run()
    results = read_results(out)
    if results.rows:
        click.echo(comparison_table(results, color=sys.stdout.isatty()))
    click.echo(f"\nresults: {Path(out) / 'results.csv'}  manifest: {Path(out) / 'manifest.json'}")
    failed = [c for c in cells if c.error]
    if failed:
        for c in failed:
            click.echo(f"Error: {c.dataset} / {c.method} failed: {c.error}", err=True)
        sys.exit(1)


@cli.command("list")
@click.argument("kind", type=click.Choice(["methods", "datasets", "metrics"]))
def list_(kind):
    """List registered methods, datasets or metrics, one per line."""
    items = get_registry().all(kind)
    width = max((len(n) for n in items), default=0)
    for name in sorted(items):
        item = items[name]
        flag = " (default)" if getattr(item, "default", False) else ""
        click.echo(f"{name.ljust(width)}  {item.description}{flag}")


@cli.command()
def plugins():
    """List plugins, their versions, what each registered, and those that failed."""
    reg = get_registry()
    reg.all("methods")  # collect registrations
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
            click.echo(f"  {f.plugin}: failed to {f.stage}: {f.error}")


@cli.command()
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--metric", default="psnr", show_default=True)
def table(run_dir, metric):
    """Print the comparison table of an earlier run."""
    from .runner import read_results
    from .table import comparison_table

    click.echo(comparison_table(read_results(run_dir), color=sys.stdout.isatty()))


@cli.command()
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--out", "-o", default=None, type=click.Path(file_okay=False),
              help="Folder for index.html and figures (default RUN_DIR/report).")
@click.option("--elements", "n_elements", default=2, show_default=True,
              help="How many elements to picture per dataset.")
def report(run_dir, out, n_elements):
    """Write an HTML report (tables and pictures) of an earlier run."""
    from .report import write_report

    path = write_report(run_dir, out, n_elements=n_elements)
    click.echo(f"report: {path}")


def _install_plugin_commands():
    get_registry().add_commands(cli)


def main(argv=None):
    try:
        _install_plugin_commands()
    except MaxrfError as exc:  # strict plugin mode: a broken plugin is fatal, said plainly
        click.echo(f"Error: {exc}", err=True)
        sys.exit(exc.exit_code)
    return cli.main(args=argv, prog_name="maxrf-bench")


if __name__ == "__main__":  # pragma: no cover
    main()
