"""Text tables in the shape of the paper's Table I: datasets × metrics rows, method columns."""
from __future__ import annotations

import math

from .runner import Results

LOWER_IS_BETTER = {"rmse", "sam", "ergas", "consistency", "seconds"}
FORMATS = {"rmse": "{:.4f}", "psnr": "{:.2f}", "ssim": "{:.4f}", "sam": "{:.2f}",
           "ergas": "{:.3f}", "consistency": "{:.2e}", "seconds": "{:.1f}"}


def comparison_table(results: Results, metrics=("rmse", "psnr"), color: bool = False,
                     extra=("seconds",)) -> str:
    """Datasets × metrics rows and one column per method; best in bold, second underlined.

    Without ``color``, best is shown as ``**x**`` and second as ``_x_``.
    """
    methods = results.methods
    rows = []
    for ds in results.datasets:
        present = {r["metric"] for r in results.rows if r["dataset"] == ds}
        for metric in [*metrics, *extra]:
            if metric not in present:
                continue
            rows.append((ds, metric, [results.get(ds, m, metric) for m in methods]))
        if not any(m in present for m in metrics) and "consistency" in present:
            rows.append((ds, "consistency", [results.get(ds, m, "consistency") for m in methods]))
    header = ["Dataset", "Metric", *methods]
    body = []
    for ds, metric, vals in rows:
        ranked = _rank(vals, metric) if metric != "seconds" else {}
        cells = []
        for i, v in enumerate(vals):
            text = "—" if math.isnan(v) else FORMATS.get(metric, "{:.4g}").format(v)
            cells.append((text, ranked.get(i)))
        body.append([ds, metric.upper() if metric in ("rmse", "psnr", "ssim", "sam", "ergas") else metric,
                     *cells])
    widths = [len(h) for h in header]
    for row in body:
        for j, c in enumerate(row):
            if isinstance(c, tuple):
                widths[j] = max(widths[j], len(c[0]) + (4 if not color else 0))
            else:
                widths[j] = max(widths[j], len(c))
    lines = ["  ".join(h.ljust(widths[j]) for j, h in enumerate(header))]
    lines.append("  ".join("-" * w for w in widths))
    last_ds = None
    for row in body:
        out = []
        for j, c in enumerate(row):
            if isinstance(c, tuple):
                text, rank = c
                out.append(_mark(text, rank, color, widths[j]))
            else:
                text = c if (j != 0 or c != last_ds) else ""
                out.append(text.ljust(widths[j]))
        last_ds = row[0]
        lines.append("  ".join(out).rstrip())
    return "\n".join(lines)


def _rank(vals, metric):
    finite = [(v, i) for i, v in enumerate(vals) if not math.isnan(v)]
    if len(finite) < 2:
        return {}
    reverse = metric not in LOWER_IS_BETTER
    order = sorted(finite, key=lambda t: t[0], reverse=reverse)
    ranks = {order[0][1]: 1}
    if len(order) > 2:
        ranks[order[1][1]] = 2
    return ranks


def _mark(text, rank, color, width):
    if color:
        import click

        pad = " " * (width - len(text))
        if rank == 1:
            return click.style(text, bold=True) + pad
        if rank == 2:
            return click.style(text, underline=True) + pad
        return text + pad
    if rank == 1:
        text = f"**{text}**"
    elif rank == 2:
        text = f"_{text}_"
    return text.ljust(width)
