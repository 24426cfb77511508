"""The ablations of the paper (Sec. IV-C): Table II (loss terms) and Table III (components).

Every variant is a configuration of the ``proposed`` method (parameter overrides), so it
runs through the ordinary runner: ``maxrf-bench ablate --dataset D --out DIR`` runs each
configuration as its own resumable run under ``DIR/runs/<slug>/`` (a finished cell is
reused on a rerun), prints both tables in the paper's shape and writes
``DIR/ablation.csv`` (``table,configuration,seed,psnr,rmse,psnr_clean,rmse_clean``; the
clean-truth columns are empty for a scan without ``maps_clean``) atomically; with
``--seeds 0,1,2`` every configuration runs once per seed (``DIR/runs/<slug>/seed<N>/``)
and the tables show mean ± sample standard deviation over the seeds.

What the adversarial rows measure: with the ``paper`` values the adversarial stage is
inert (see ``train.py``), so with ``--preset paper`` the ``Ladv`` and "Standard LSGAN"
rows differ from their partners only by sampling noise.  The ``fast`` preset (the
default) uses the calibrated stage, where α2 = 0 and focused vs standard change the maps.
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


def owned_ablation_dir(path: Path) -> bool:
    """An ablation folder of ours: its ``ablation.csv`` or its ``runs/`` of run directories."""
    path = Path(path)
    if (path / "ablation.csv").is_file():
        return True
    runs = path / "runs"
    return runs.is_dir() and any(mb.owned_run_dir(d) for d in runs.glob("*/*"))


def run_ablation(dataset: str, out: str | Path, preset: str | None = "fast", seed: int = 0,
                 device: str = "auto", echo=lambda s: None, progress_factory=None,
                 seeds: list[int] | None = None) -> list[dict]:
    """Run every configuration of Tables II–III on ``dataset`` for every seed.

    Seeds are the outer loop (every configuration of seed 0, then of seed 1, …) and
    ``ablation.csv`` is rewritten after each finished run, so a long background run can be
    read at any time and a rerun resumes where it stopped (finished cells are reused).
    Returns the rows of the CSV: one per (table, configuration, seed).
    """
    out = Path(out)
    seeds = list(dict.fromkeys(int(s) for s in (seeds if seeds else [seed])))
    method = mb.get_method("proposed")
    if preset is not None and preset not in method.presets:
        raise mb.ConfigError(f"method 'proposed' has no preset {preset!r}; expected one of: "
                             f"{', '.join(method.presets)}")
    name, load, _ = mb.resolve_dataset(dataset)
    if "maps" not in load():  # the tables score against the truth: refuse before training
        raise mb.ConfigError(f"the ablation needs a scan with ground truth ('maps'), found "
                             f"{name!r} with measured LR maps only; use a simulated or a "
                             "ground-truth scan")
    for key, overrides in configurations().items():      # bad overrides fail before any run
        method.params(preset, overrides)
    source = Path(dataset) if Path(dataset).exists() else None
    mb.check_output(out, kind="ablation folder", owned=owned_ablation_dir,
                    inputs=[source] if source else [])
    scores: dict[tuple[str, int], tuple[float, float]] = {}
    rows: list[dict] = []
    for s in seeds:
        for key, overrides in configurations().items():
            echo(f"ablation {key} seed {s}: {overrides or 'full model'}")
            run_dir = out / "runs" / key / f"seed{s}"
            cfg = mb.RunConfig(methods=["proposed"], datasets=[dataset], out=run_dir,
                               seed=s, seeds=[s], preset=preset, sets={"proposed": dict(overrides)},
                               device=device, metrics=["psnr", "rmse"],
                               command=["maxrf-bench", "ablate", "--dataset", dataset,
                                        "--seeds", ",".join(map(str, seeds))])
            mb.Runner(cfg, echo=echo, progress_factory=progress_factory).run()
            try:
                res = mb.read_results(run_dir)
                name, label = res.datasets[0], res.methods[0]
                clean = "clean" in res.truths(name)
                scores[key, s] = tuple(res.value(name, label, metric, seed=s, truth=truth)
                                       if truth == "measured" or clean else None
                                       for truth in ("measured", "clean") for metric in ("psnr", "rmse"))
            except (KeyError, IndexError, mb.StoreError):
                raise mb.MaxrfError(f"ablation configuration {key} (seed {s}) failed on {dataset!r}: "
                                    f"see {run_dir / 'cells'}/*/*/error.log") from None
            rows = _rows(scores, seeds)
            _write_csv_atomic(out / "ablation.csv", rows)
    return rows


def _rows(scores: dict, seeds: list[int]) -> list[dict]:
    rows = []
    for s in seeds:
        for table, entries in TABLES.items():
            for label, overrides in entries:
                if (slug(overrides), s) in scores:
                    psnr, rmse, psnr_clean, rmse_clean = scores[slug(overrides), s]
                    rows.append({"table": table, "configuration": label, "seed": s,
                                 "psnr": psnr, "rmse": rmse,
                                 "psnr_clean": psnr_clean, "rmse_clean": rmse_clean})
    return rows


def summarise(rows: list[dict]) -> list[dict]:
    """Per (table, configuration): mean and sample standard deviation over the seeds.

    Returns dicts with ``table``, ``configuration``, ``n`` (seeds), ``psnr``, ``psnr_std``,
    ``rmse``, ``rmse_std`` (std 0 for a single seed), and ``psnr_clean``, ``psnr_clean_std``
    (``None`` without a clean truth), in the tables' order.
    """
    import numpy as np

    groups: dict[tuple[str, str], list[dict]] = {}
    for r in rows:
        groups.setdefault((r["table"], r["configuration"]), []).append(r)
    out = []
    for (table, conf), rs in groups.items():
        p = np.array([float(r["psnr"]) for r in rs])
        e = np.array([float(r["rmse"]) for r in rs])
        sd = (lambda a: float(a.std(ddof=1)) if a.size > 1 else 0.0)
        c = [r.get("psnr_clean") for r in rs]
        c = np.array([float(v) for v in c]) if all(v not in (None, "") for v in c) else None
        out.append({"table": table, "configuration": conf, "n": len(rs), "psnr": float(p.mean()),
                    "psnr_std": sd(p), "rmse": float(e.mean()), "rmse_std": sd(e),
                    "psnr_clean": None if c is None else float(c.mean()),
                    "psnr_clean_std": None if c is None else sd(c)})
    return out


def format_tables(rows: list[dict]) -> str:
    """Both tables in the paper's shape (Table II with ✓ columns for the loss terms), as
    mean ± standard deviation over the seeds of ``rows``."""
    summary = summarise(rows)
    n = max((r["n"] for r in summary), default=0)
    note = f" (mean ± std over {n} seeds)" if n > 1 else ""
    clean = any(r["psnr_clean"] is not None for r in summary)
    head = f"{'PSNR (dB)':>16}{'RMSE':>18}" + (f"{'PSNR clean truth':>20}" if clean else "")
    lines = [f"TABLE II: Ablation: Loss Terms{note}", f"{'Lc1':^5}{'Lc2':^5}{'Ladv':^6}{head}"]

    def cells(r):
        text = f"{r['psnr']:>9.2f} ± {r['psnr_std']:.2f}" f"{r['rmse']:>10.4f} ± {r['rmse_std']:.4f}"
        if clean:
            text += (f"{r['psnr_clean']:>12.2f} ± {r['psnr_clean_std']:.2f}"
                     if r["psnr_clean"] is not None else f"{'—':>19}")
        return text + (f"  (n={r['n']})" if r["n"] != n else "")

    for r in (r for r in summary if r["table"] == "II"):
        terms = r["configuration"].split("+")
        marks = "".join(f"{'✓' if t in terms else '':^{w}}" for t, w in (("Lc1", 5), ("Lc2", 5), ("Ladv", 6)))
        lines.append(f"{marks}{cells(r)}")
    lines += ["", f"TABLE III: Ablation: Network Components{note}",
              f"{'Configuration':<28}{'PSNR (dB)':>14}{'RMSE':>18}" + (f"{'PSNR clean truth':>20}" if clean else "")]
    for r in (r for r in summary if r["table"] == "III"):
        lines.append(f"{r['configuration']:<26}{cells(r)}")
    return "\n".join(lines)


def _write_csv_atomic(path: Path, rows: list[dict]) -> None:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(("table", "configuration", "seed", "psnr", "rmse", "psnr_clean", "rmse_clean"))
    for r in rows:
        opt = [("" if r.get(k) is None else repr(float(r[k]))) for k in ("psnr_clean", "rmse_clean")]
        w.writerow((r["table"], r["configuration"], int(r["seed"]), repr(float(r["psnr"])),
                    repr(float(r["rmse"])), *opt))
    mb.atomic_write_text(path, buf.getvalue())


def _parse_seeds(text: str | None) -> list[int] | None:
    if text is None or not str(text).strip():
        return None
    try:
        seeds = [int(t) for t in str(text).replace(" ", "").split(",") if t != ""]
    except ValueError:
        raise mb.ConfigError(f"--seeds expects comma-separated integers such as 0,1,2, found {text!r}") from None
    if not seeds:
        raise mb.ConfigError(f"--seeds expects at least one integer, found {text!r}")
    return seeds


@click.command("ablate")
@click.option("--dataset", "-d", required=True, help="Dataset name or path to a .zarr scan (with ground truth).")
@click.option("--out", "-o", required=True, type=click.Path(file_okay=False),
              help="Directory: one resumable run per configuration and seed, and ablation.csv.")
@click.option("--preset", default="fast", show_default=True, help="Preset of the proposed method.")
@click.option("--seed", type=int, default=0, show_default=True, help="The seed of a single run.")
@click.option("--seeds", default=None, metavar="0,1,2",
              help="Seeds to run (overrides --seed); the tables show mean ± std over them.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--quiet", "-q", is_flag=True, help="No progress lines (for background runs: "
              "ablation.csv is rewritten after every finished run).")
def ablate_command(dataset, out, preset, seed, seeds, device, quiet):
    """Run the paper's ablations (Tables II and III) of the proposed method on one dataset.

    Long runs can go to the background (``nohup maxrf-bench ablate ... -q > log &``):
    every configuration and seed is its own resumable run under OUT/runs/, and
    OUT/ablation.csv (table, configuration, seed, psnr, rmse) grows as runs finish;
    rerunning the same command continues where it stopped.
    """
    progress_factory = None if quiet else (lambda label: mb.progress_printer(label, every=5.0))
    echo = (lambda s: None) if quiet else (lambda s: click.echo(s, err=True))
    rows = run_ablation(dataset, out, preset=preset, seed=seed, device=device, echo=echo,
                        progress_factory=progress_factory, seeds=_parse_seeds(seeds))
    click.echo(format_tables(rows))
    click.echo(f"\nwrote {Path(out) / 'ablation.csv'}")
