"""The ablations of the paper (Sec. IV-C): Table II (loss terms) and Table III (components).

Every variant is a configuration of the ``proposed`` method (parameter overrides), so it
runs through the ordinary runner: ``maxrf-bench ablate --dataset D --out DIR`` runs each
configuration as its own resumable run under ``DIR/runs/<slug>/`` (a finished cell is
reused on a rerun), prints both tables in the paper's shape and writes
``DIR/ablation.csv`` (``table,configuration,psnr,rmse``) atomically.
"""
from __future__ import annotations

import csv
import io
import re
from pathlib import Path

import click

import maxrf_bench as mb

#: Table II: which loss terms of Eq. 11 are used (α1, α2 unchanged).
TABLE_II: list[tuple[str, dict]] = [
    ("Lc1+Lc2+Ladv", {}),
    ("Lc1+Ladv", {"use_lc2": False}),
    ("Lc1", {"use_lc2": False, "use_adv": False}),
    ("Lc1+Lc2", {"use_adv": False}),
    ("Lc2+Ladv", {"use_lc1": False}),
]

#: Table III: one component changed at a time.  "Linear Synthesis Layer" is the paper's
#: "No Sigmoid/Bias in D (Linear Synthesis Layer)"; "Use Leaky ReLU" its "(All Sigmoids Removed)".
TABLE_III: list[tuple[str, dict]] = [
    ("Full Model", {}),
    ("Standard LSGAN Loss", {"adv_loss": "standard"}),
    ("Linear Synthesis Layer", {"synthesis": "linear"}),
    ("No Projection Module", {"projection": False}),
    ("Use Leaky ReLU", {"activation": "leaky_relu"}),
]

TABLES = {"II": TABLE_II, "III": TABLE_III}


def configurations() -> dict[str, dict]:
    """Distinct configurations by slug (the full model appears in both tables, runs once)."""
    out: dict[str, dict] = {}
    for rows in TABLES.values():
        for _, overrides in rows:
            out.setdefault(slug(overrides), overrides)
    return out


def slug(overrides: dict) -> str:
    if not overrides:
        return "full"
    text = "-".join(f"{k}={v}" for k, v in sorted(overrides.items()))
    return re.sub(r"[^A-Za-z0-9_.=-]", "_", text)


def run_ablation(dataset: str, out: str | Path, preset: str | None = "fast", seed: int = 0,
                 device: str = "auto", echo=lambda s: None, progress_factory=None) -> list[dict]:
    """Run every configuration of Tables II–III on ``dataset``; returns the rows of the CSV."""
    out = Path(out)
    method = mb.get_method("proposed")
    if preset is not None and preset not in method.presets:
        raise mb.ConfigError(f"method 'proposed' has no preset {preset!r}; expected one of: "
                             f"{', '.join(method.presets)}")
    name, load, _ = mb.resolve_dataset(dataset)
    if "maps" not in load():  # the tables score against the truth: refuse before training
        raise mb.ConfigError(f"the ablation needs a scan with ground truth ('maps'), found "
                             f"{name!r} with measured LR maps only; use a simulated or a "
                             "ground-truth scan")
    scores: dict[str, tuple[float, float]] = {}
    for key, overrides in configurations().items():
        echo(f"ablation {key}: {overrides or 'full model'}")
        cfg = mb.RunConfig(methods=["proposed"], datasets=[dataset], out=out / "runs" / key,
                           seed=seed, preset=preset, sets={"proposed": dict(overrides)},
                           device=device, metrics=["psnr", "rmse"],
                           command=["maxrf-bench", "ablate", "--dataset", dataset])
        mb.Runner(cfg, echo=echo, progress_factory=progress_factory).run()
        res = mb.read_results(out / "runs" / key)
        name = res.datasets[0]
        try:
            scores[key] = (res.value(name, "proposed", "psnr"), res.value(name, "proposed", "rmse"))
        except KeyError:
            raise mb.MaxrfError(f"ablation configuration {key} failed on {dataset!r}: see "
                                f"{out / 'runs' / key / 'cells'}/*/proposed/error.log") from None
    rows = []
    for table, entries in TABLES.items():
        for label, overrides in entries:
            psnr, rmse = scores[slug(overrides)]
            rows.append({"table": table, "configuration": label, "psnr": psnr, "rmse": rmse})
    _write_csv_atomic(out / "ablation.csv", rows)
    return rows


def format_tables(rows: list[dict]) -> str:
    """Both tables in the paper's shape (Table II with ✓ columns for the loss terms)."""
    lines = ["TABLE II: Ablation: Loss Terms",
             f"{'Lc1':^5}{'Lc2':^5}{'Ladv':^6}{'PSNR (dB)':>11}{'RMSE':>9}"]
    for r in (r for r in rows if r["table"] == "II"):
        terms = r["configuration"].split("+")
        marks = "".join(f"{'✓' if t in terms else '':^{w}}" for t, w in (("Lc1", 5), ("Lc2", 5), ("Ladv", 6)))
        lines.append(f"{marks}{r['psnr']:>11.2f}{r['rmse']:>9.4f}")
    lines += ["", "TABLE III: Ablation: Network Components",
              f"{'Configuration':<28}{'PSNR (dB)':>11}{'RMSE':>9}"]
    for r in (r for r in rows if r["table"] == "III"):
        lines.append(f"{r['configuration']:<28}{r['psnr']:>11.2f}{r['rmse']:>9.4f}")
    return "\n".join(lines)


def _write_csv_atomic(path: Path, rows: list[dict]) -> None:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(("table", "configuration", "psnr", "rmse"))
    for r in rows:
        w.writerow((r["table"], r["configuration"], repr(float(r["psnr"])), repr(float(r["rmse"]))))
    mb.atomic_write_text(path, buf.getvalue())


@click.command("ablate")
@click.option("--dataset", "-d", required=True, help="Dataset name or path to a .zarr scan (with ground truth).")
@click.option("--out", "-o", required=True, type=click.Path(file_okay=False),
              help="Directory: one resumable run per configuration and ablation.csv.")
@click.option("--preset", default="fast", show_default=True, help="Preset of the proposed method.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--quiet", "-q", is_flag=True, help="No progress lines.")
def ablate_command(dataset, out, preset, seed, device, quiet):
    """Run the paper's ablations (Tables II and III) of the proposed method on one dataset."""
    progress_factory = None if quiet else (lambda label: mb.progress_printer(label, every=5.0))
    echo = (lambda s: None) if quiet else (lambda s: click.echo(s, err=True))
    rows = run_ablation(dataset, out, preset=preset, seed=seed, device=device, echo=echo,
                        progress_factory=progress_factory)
    click.echo(format_tables(rows))
    click.echo(f"\nwrote {Path(out) / 'ablation.csv'}")
