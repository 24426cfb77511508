"""``maxrf-bench export`` and ``maxrf-bench infer``: trained generators to ONNX, and back.

``export`` reads a finished run of a run directory (``cell.json`` and the method's
``work/`` directory, found with :func:`maxrf_bench.find_cell`), gathers the model metadata the runtime needs (element
names, scale, operator, per-element normalisation, painting id, toolkit version,
preset, parameters) and asks the method's own ``export`` to write the ONNX file.

``infer`` is the ``maxrf-infer`` command of the torch-free runtime (:mod:`maxrf_infer`),
the same click command object, so both spell the same options.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

import maxrf_bench as mb


def cell_dir(run_dir: str | Path, dataset: str | None, method: str, seed: int | None = None,
             protocol: str = "full") -> Path:
    """The finished run behind column ``method`` (a label such as ``proposed[kernel=3]``) on
    ``dataset`` (optional when the run has only one), for ``seed`` (default: the first
    finished one) under ``protocol`` (``full``, or a cell's protocol such as
    ``acquisition-1_16``).  Raises :class:`maxrf_bench.ConfigError` naming what exists."""
    run = mb.RunDir(run_dir)
    if not run.cells_dir.is_dir():
        raise mb.ConfigError(f"{str(run_dir)!r} is not a run directory: expected {str(run.cells_dir)!r} "
                             "(written by `maxrf-bench run --out DIR`)")
    datasets = run.datasets()
    if protocol != "full":
        suffix = f"@{protocol}"
        datasets = sorted(p.name[:-len(suffix)] for p in run.cells_dir.iterdir()
                          if p.is_dir() and p.name.endswith(suffix))
        if not datasets:
            found = sorted({p.name.partition("@")[2] or "full" for p in run.cells_dir.iterdir() if p.is_dir()})
            raise mb.ConfigError(f"run {str(run_dir)!r} has no cells of protocol {protocol!r}; "
                                 f"expected one of {found}")
    if dataset is None:
        if len(datasets) != 1:
            raise mb.ConfigError(f"run {str(run_dir)!r} has datasets {datasets}; expected --dataset "
                                 "naming one of them")
        dataset = datasets[0]
    if dataset not in datasets:
        raise mb.ConfigError(f"run {str(run_dir)!r} has no dataset {dataset!r}; expected one of {datasets}")
    try:
        return mb.find_cell(run_dir, dataset, method, seed=seed, protocol=protocol)
    except mb.StoreError as exc:
        raise mb.ConfigError(f"{exc} (rerun the same `maxrf-bench run` command to complete an "
                             "unfinished one)") from None


def export_metadata(cell: Path) -> dict[str, Any]:
    """Model metadata from a finished cell's ``cell.json`` (see the module docstring)."""
    record = cell / mb.RunDir.CELL_RECORD
    try:
        meta = json.loads(record.read_text())
        meta["elements"], meta["scale"], meta["normalisation"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise mb.StoreError(f"cannot read {str(record)!r}: expected the record of a "
                            f"finished run (elements, scale, normalisation), found "
                            f"{type(exc).__name__}: {exc}") from None
    return {
        "elements": meta["elements"],
        "scale": int(meta["scale"]),
        "operator": meta.get("operator") or {"name": "blockmean", "scale": int(meta["scale"])},
        "normalisation": meta["normalisation"],
        "painting": meta.get("dataset", cell.parent.parent.name),
        "scan_source": meta.get("dataset_source", ""),
        "method": meta.get("method", cell.name),
        "preset": meta.get("preset"),
        "params": meta.get("params", {}),
        "seed": meta.get("seed"),
        "cell_key": meta.get("key"),
        "protocol": meta.get("protocol", "full"),
        "toolkit_version": mb.__version__,
    }


def lr_noise(run_dir: str | Path, cell: Path) -> dict | None:
    """The host's model of the LR noise of the inputs the cell ran on
    (:func:`maxrf_bench.noise_model` of the run's saved inputs: the counts' Poisson variance
    under ``--protocol acquisition``, else a blind std per element), or ``None`` when the run
    directory holds no saved inputs for it."""
    key = cell.parent.parent.name
    if not mb.RunDir(run_dir).inputs(key).exists():
        return None
    return mb.noise_model(mb.load_prepared(run_dir, key))


def owned_model(path: Path) -> bool:
    """A model of ours: an ONNX file whose metadata names the elements, scale and normalisation."""
    try:
        import onnx

        model = onnx.load(str(path), load_external_data=False)
    except Exception:  # noqa: BLE001 - not an ONNX file at all
        return False
    keys = {p.key for p in model.metadata_props}
    return {"elements", "scale", "normalisation"} <= keys


def export_model(run_dir: str | Path, out: str | Path, *, dataset: str | None = None,
                 method: str = "proposed", seed: int | None = None, protocol: str = "full") -> Path:
    """Write the ONNX model of ``method`` trained on ``dataset`` in ``run_dir`` to ``out``.

    Python equivalent of ``maxrf-bench export --run DIR --dataset D --method M -o OUT``.
    The metadata also carries ``lr_noise`` (:func:`lr_noise`), which recorrupted inference
    and the runtime's ``+W`` need.
    """
    m = mb.get_method(mb.parse_spec(method.split("[", 1)[0]).name)
    if m.export is None:
        able = sorted(n for n, x in mb.get_methods().items() if x.export is not None)
        raise mb.ConfigError(f"method {method!r} cannot be exported to ONNX: it registers no export "
                             f"function (methods that can: {', '.join(able) or 'none'})")
    out = Path(out)
    mb.check_output(out, kind="ONNX model of maxrf-bench", owned=owned_model, is_file=True,
                    inputs=[run_dir])
    cell = cell_dir(run_dir, dataset, method, seed, protocol)
    metadata = export_metadata(cell)
    noise = lr_noise(run_dir, cell)
    if noise is not None:
        metadata["lr_noise"] = noise
    m.export(cell / "work", out, metadata)
    if not out.is_file():
        raise mb.ConfigError(f"method {method!r} export did not write {str(out)!r}")
    return out


@click.command("export")
@click.option("--run", "run_dir", required=True, type=click.Path(exists=True, file_okay=False),
              help="Run directory of `maxrf-bench run --out DIR`.")
@click.option("--dataset", "-d", default=None, help="Dataset of the cell (optional when the run has one).")
@click.option("--method", "-m", default="proposed", show_default=True,
              help="Column of the run (a label such as proposed or proposed[kernel=3]).")
@click.option("--seed", type=int, default=None, help="Which seed's model (default: the first finished).")
@click.option("--protocol", default="full", show_default=True,
              help="The cell's protocol: full, or an acquisition cell's such as acquisition-1_16.")
@click.option("-o", "--out", required=True, type=click.Path(dir_okay=False), help="ONNX file to write.")
def export_command(run_dir, dataset, method, seed, protocol, out):
    """Export a trained generator of a finished run as one self-contained ONNX model.

    The model takes the LR maps (1, B, h, w) and the photograph (1, 3, s·h, s·w) and
    contains the upsampling, the network and the projection; run it with
    `maxrf-bench infer` or `maxrf-infer` (no PyTorch needed).
    """
    path = export_model(run_dir, out, dataset=dataset, method=method, seed=seed, protocol=protocol)
    size = path.stat().st_size / 1e6
    click.echo(f"wrote {path} ({size:.2f} MB)", err=True)


@mb.hookimpl
def maxrf_bench_register_commands(cli):
    from maxrf_infer.cli import infer_command

    cli.add_command(export_command, "export")
    cli.add_command(infer_command, "infer")
