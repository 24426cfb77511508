"""The ``maxrf-infer`` command (also ``maxrf-bench infer``: the same click command)."""
from __future__ import annotations

import sys

import click

from .model import PROVIDERS, InferError
from .quantize import PRECISIONS
from .stream import DEFAULT_TILE


@click.command("infer", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("model", type=click.Path(dir_okay=False))
@click.argument("scan", type=click.Path(file_okay=False))
@click.option("-o", "--out", required=True, type=click.Path(file_okay=False),
              help="Output Zarr store: 'maps' (element, y, x) in counts (replaced atomically).")
@click.option("--tile", type=int, default=DEFAULT_TILE, show_default=True,
              help="Tile edge in HR pixels (one read, one output chunk), rounded down to whole LR "
                   "blocks; 0 = the whole scan at once.")
@click.option("--compute-tile", type=int, default=None,
              help="HR edge of the pieces each onnxruntime run gets [default: 64 on CPU (128 for a model "
                   "exported without margin_lr), the whole tile on CUDA; 0 = the whole tile].")
@click.option("--provider", type=click.Choice(PROVIDERS), default="auto", show_default=True,
              help="auto: CUDA only when a CUDA session really initialises; cuda: error if it does not.")
@click.option("--scheduler", default=None, metavar="threads|processes|ADDRESS",
              help="Run the tiles as a dask graph: local threads, local processes, or the address "
                   "of a dask.distributed scheduler or its scheduler file (paths must be visible "
                   "to its workers).")
@click.option("--threads", type=int, default=None,
              help="onnxruntime threads per session (default: 1 per worker; all cores with --workers 1; "
                   "1 per task under dask).")
@click.option("--workers", type=int, default=None,
              help="Tiles in flight at once, each on its own onnxruntime session (without "
                   "--scheduler) [default on CPU: cores / threads, i.e. one single-threaded session per "
                   "core; on CUDA 1]. Memory grows by about one tile (a few MB) per worker; the "
                   "output does not depend on it.")
@click.option("--precision", default="fp32", show_default=True, metavar="|".join(PRECISIONS),
              help="fp32: the run's maps (to 1e-5). int8: a labelled faster approximation on the CPU "
                   "(the model quantised by onnxruntime, calibrated on a few tiles of the scan; its "
                   "difference to fp32 is printed, about 1e-2 of the maps' range).")
@click.option("--noise-aware", is_flag=True,
              help="Apply +W, the noise-aware projection (ours), after the model: the maps are then the "
                   "run's +W column (to 1e-5), with the LR noise model the export recorded.")
@click.option("--fuse", is_flag=True,
              help="Apply +F (ours) after the model: fuse the maps with the scan's maps_dwell, the "
                   "short-dwell HR-step scan its maps_lr were binned from (`maxrf-bench import "
                   "--short-dwell`), by its counting noise: the maps are then the run's +F column (to 1e-5).")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
def infer_command(model, scan, out, tile, compute_tile, provider, scheduler, threads, workers, precision,
                  noise_aware, fuse, quiet):
    """Super-resolve SCAN (Zarr with maps_lr and rgb) with MODEL (ONNX from `maxrf-bench export`).

    The scan's elements (names and order) and scale must match the model's metadata.
    Tiles stream through memory, so scans larger than memory run in bounded memory.
    """
    from .stream import infer

    try:
        result = infer(model, scan, out, tile=tile or None, provider=provider,
                       scheduler=scheduler, threads=threads, compute_tile=compute_tile,
                       progress=not quiet, workers=workers, precision=precision, noise_aware=noise_aware,
                       fuse=fuse)
    except InferError as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(exc.exit_code)
    b, h, w = result.shape
    click.echo(f"wrote {result.output} ({b} elements, {h}×{w}) with {', '.join(result.providers)} "
               f"in {result.seconds:.1f} s ({result.megapixels_per_second:.3g} HR MP/s, "
               f"{result.tiles} tiles)", err=True)


def main(argv=None):
    """``maxrf-infer``: bad input exits 2 (``InferError``); an unexpected exception (a bug) is
    one line and exit 70, with the traceback when ``MAXRF_INFER_DEBUG=1`` (or
    ``MAXRF_BENCH_DEBUG=1``), as ``maxrf-bench`` does."""
    import os

    try:
        return infer_command.main(args=argv, prog_name="maxrf-infer")
    except Exception as exc:  # click handles its own errors and SystemExit passes through
        from .atomic import os_error_line

        line = os_error_line(exc)  # read-only, no space, a name too long: the user's to fix
        if line is not None:
            click.echo(f"Error: {line}", err=True)
            sys.exit(2)
        if any(os.environ.get(v, "") not in ("", "0") for v in ("MAXRF_INFER_DEBUG", "MAXRF_BENCH_DEBUG")):
            raise
        click.echo(f"Error: unexpected {type(exc).__name__}: {exc} (a bug; set MAXRF_INFER_DEBUG=1 "
                   f"for the traceback)", err=True)
        sys.exit(70)


if __name__ == "__main__":  # pragma: no cover
    main()
