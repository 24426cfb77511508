"""An HTML report of a run: the comparison tables and pictures of every method's maps.

``maxrf-bench report DIR`` writes ``DIR/report/index.html`` with PNG figures beside it:
for each dataset, the photograph, the ground truth (when known), the LR input and every
method's output for the elements that differ most between methods, with error maps.
"""
from __future__ import annotations

import html
import json
import math
from pathlib import Path

import numpy as np

from .atomic import atomic_write_text
from .runner import load_inputs, read_results
from .scan import open_scan
from .table import LOWER_IS_BETTER, comparison_table


def _method_maps(run_dir: Path, dataset: str, methods: list[str]) -> dict[str, np.ndarray]:
    out = {}
    for m in methods:
        path = run_dir / "cells" / dataset / m / "sr.zarr"
        if path.exists():
            out[m] = open_scan(path, validate=False)["maps_norm"].values
    return out


def _pick_elements(truth, maps: dict, elements: list[str], n: int) -> list[int]:
    """Elements where the methods disagree most (or err most, when truth is known)."""
    stack = np.stack(list(maps.values()))
    if truth is not None:
        score = np.sqrt(((stack - truth[None]) ** 2).mean(axis=(0, 2, 3)))
    else:
        score = stack.std(axis=0).mean(axis=(1, 2))
    return [int(i) for i in np.argsort(score)[::-1][:n]]


def _figure(path: Path, rgb, truth, lr, maps: dict, element: str, idx: int, scale: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [("photograph", np.moveaxis(rgb, 0, -1), None)]
    if truth is not None:
        panels.append((f"truth {element}", truth[idx], None))
    panels.append((f"LR input ({scale}×)", np.kron(lr[idx], np.ones((scale, scale))), None))
    for m, arr in maps.items():
        panels.append((m, arr[idx], None))
    ncol = len(panels)
    nrow = 2 if truth is not None else 1
    fig, axes = plt.subplots(nrow, ncol, figsize=(2.3 * ncol, 2.5 * nrow), squeeze=False)
    vmax = float(truth[idx].max()) if truth is not None else float(lr[idx].max()) or 1.0
    for j, (title, img, _) in enumerate(panels):
        ax = axes[0, j]
        if img.ndim == 3:
            ax.imshow(np.clip(img, 0, 1))
        else:
            ax.imshow(img, cmap="inferno", vmin=0, vmax=vmax)
        ax.set_title(title, fontsize=8)
        ax.axis("off")
        if nrow == 2:
            ax2 = axes[1, j]
            ax2.axis("off")
            if img.ndim == 2 and title != f"truth {element}":
                err = np.abs(img - truth[idx])
                ax2.imshow(err, cmap="magma", vmin=0, vmax=0.25 * vmax)
                rmse = math.sqrt(float((err**2).mean()))
                ax2.set_title(f"|error| RMSE {rmse:.4f}", fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def write_report(run_dir: str | Path, out: str | Path | None = None, n_elements: int = 2) -> Path:
    """Write ``index.html`` with tables and figures for a run directory; return its path."""
    run_dir = Path(run_dir)
    results = read_results(run_dir)
    out = Path(out) if out else run_dir / "report"
    out.mkdir(parents=True, exist_ok=True)
    manifest = json.loads((run_dir / "manifest.json").read_text()) if (run_dir / "manifest.json").exists() else {}
    parts = [
        "<!doctype html><meta charset='utf-8'><title>maxrf-bench report</title>",
        "<style>body{font-family:sans-serif;max-width:1400px;margin:auto}"
        "table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ccc;padding:2px 6px;"
        "text-align:right}th{background:#eee}.best{font-weight:bold;background:#dfd}</style>",
        "<h1>maxrf-bench report</h1>",
        f"<p>run directory <code>{html.escape(str(run_dir))}</code>; command "
        f"<code>{html.escape(' '.join(manifest.get('command', [])))}</code>; git "
        f"<code>{html.escape(str(manifest.get('git_commit')))}</code></p>",
        "<h2>Comparison (best in bold, second underlined in the text table)</h2>",
        f"<pre>{html.escape(comparison_table(results))}</pre>",
    ]
    for dataset in results.datasets:
        inputs = load_inputs(run_dir, dataset)
        truth = inputs["maps"].values if "maps" in inputs else None
        lr = inputs["maps_lr"].values
        rgb = inputs["rgb"].values
        elements = [str(e) for e in inputs["element"].values]
        scale = int(inputs.attrs.get("scale", rgb.shape[-1] // lr.shape[-1]))
        methods = [m for m in results.methods if any(
            r["dataset"] == dataset and r["method"] == m for r in results.rows)]
        maps = _method_maps(run_dir, dataset, methods)
        parts.append(f"<h2>{html.escape(dataset)}</h2>")
        parts.append(_metric_table(results, dataset, methods))
        if truth is not None:
            parts.append(_element_table(results, dataset, methods, elements))
        if not maps:
            continue
        for idx in _pick_elements(truth, maps, elements, n_elements):
            name = f"{dataset}-{elements[idx]}.png"
            _figure(out / name, rgb, truth, lr, maps, elements[idx], idx, scale)
            parts.append(f"<h3>{html.escape(elements[idx])}</h3><img src='{html.escape(name)}' style='max-width:100%'>")
    path = out / "index.html"
    atomic_write_text(path, "\n".join(parts))
    return path


def _metric_table(results, dataset, methods) -> str:
    metrics = sorted({r["metric"] for r in results.rows if r["dataset"] == dataset})
    rows = ["<table><tr><th>metric</th>" + "".join(f"<th>{html.escape(m)}</th>" for m in methods) + "</tr>"]
    for metric in metrics:
        vals = [results.get(dataset, m, metric) for m in methods]
        good = [v for v in vals if not math.isnan(v)]
        best = None
        if good and metric != "seconds":
            best = min(good) if metric in LOWER_IS_BETTER else max(good)
        cells = "".join(
            f"<td class='{'best' if v == best else ''}'>{v:.4g}</td>" for v in vals)
        rows.append(f"<tr><th>{metric}</th>{cells}</tr>")
    return "\n".join(rows) + "</table>"


def _element_table(results, dataset, methods, elements) -> str:
    rows = ["<p>PSNR per element (dB)</p><table><tr><th>element</th>"
            + "".join(f"<th>{html.escape(m)}</th>" for m in methods) + "</tr>"]
    for el in elements:
        vals = [results.get(dataset, m, "psnr", el) for m in methods]
        best = max((v for v in vals if not math.isnan(v)), default=None)
        cells = "".join(f"<td class='{'best' if v == best else ''}'>{v:.2f}</td>" for v in vals)
        rows.append(f"<tr><th>{html.escape(el)}</th>{cells}</tr>")
    return "\n".join(rows) + "</table>"
