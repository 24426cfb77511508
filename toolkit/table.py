"""Text tables in the shape of the paper's Table I: datasets × metrics rows, one column per
method label, mean ± standard deviation over the seeds.

Ranking (:func:`rank`): a column is marked best only where its mean beats the second's by
more than the larger of the two standard deviations; otherwise both (and every other
column within that margin of the best) are marked as tied best.  The next column after the
best (or the tied group) is marked second.  With one seed the spreads are 0 and any
difference decides.
"""
from __future__ import annotations

import math

from .results import Results, Summary

LOWER_IS_BETTER = {"rmse", "sam", "ergas", "consistency", "seconds", "d_lambda", "d_s"}
FORMATS = {"rmse": "{:.4f}", "psnr": "{:.2f}", "ssim": "{:.4f}", "sam": "{:.2f}",
           "ergas": "{:.3f}", "consistency": "{:.2e}", "seconds": "{:.1f}", "qnr": "{:.4f}",
           "d_lambda": "{:.4f}", "d_s": "{:.4f}"}
TITLES = {"rmse": "RMSE", "psnr": "PSNR", "ssim": "SSIM", "sam": "SAM", "ergas": "ERGAS",
          "qnr": "QNR", "d_lambda": "D_lambda", "d_s": "D_s"}
NO_REFERENCE = ("consistency", "qnr", "d_lambda", "d_s")
HIGHER_IS_BETTER = {"psnr", "ssim", "qnr"}


def higher_is_better(metric: str) -> bool:
    """The direction of ``metric``: the built-ins' from these tables, a plugin metric's from
    its registration (higher when it cannot be found)."""
    if metric in LOWER_IS_BETTER:
        return False
    if metric in HIGHER_IS_BETTER:
        return True
    try:
        from .plugins import get_metrics

        item = get_metrics().get(metric)
    except Exception:  # noqa: BLE001 - a table must print even when plugins do not load
        item = None
    return True if item is None else bool(item.higher_is_better)


def default_metrics(results: Results) -> list[str]:
    """The rows of a table when none are asked for: RMSE and PSNR, then every metric of the
    run that the host does not know (a plugin's), so plugin metrics show without asking."""
    known = set(FORMATS) | set(TITLES) | set(NO_REFERENCE)
    extra = sorted({r["metric"] for r in results.rows} - known)
    return ["rmse", "psnr", *extra]


def rank(means: list[float], stds: list[float], higher_is_better: bool) -> list[int | None]:
    """Per column: 1 (best, or tied best), 2 (second) or ``None``; NaN means are unranked."""
    finite = [i for i, m in enumerate(means) if not math.isnan(m)]
    out: list[int | None] = [None] * len(means)
    if len(finite) < 2:
        return out
    sign = -1.0 if higher_is_better else 1.0
    order = sorted(finite, key=lambda i: sign * means[i])
    best = order[0]

    def sd(i):
        return 0.0 if math.isnan(stds[i]) else stds[i]

    tied = [i for i in order if i == best or abs(means[i] - means[best]) <= max(sd(best), sd(i))]
    for i in tied:
        out[i] = 1
    rest = [i for i in order if i not in tied]
    if rest and len(finite) > 2:
        out[rest[0]] = 2
    return out


def format_cell(s: Summary | None, metric: str, seeds: int) -> str:
    """``mean ± std`` (``mean`` alone for one seed or a deterministic method)."""
    if s is None or s.n == 0 or math.isnan(s.mean):
        return "—"
    fmt = FORMATS.get(metric, "{:.4g}")
    text = fmt.format(s.mean)
    if seeds > 1 and s.n > 1:
        text += " ± " + fmt.format(s.std)
    elif seeds > 1:
        text += " (1 run)"
    return text


def comparison_table(results: Results, metrics=("rmse", "psnr"), color: bool = False,
                     extra=("seconds",), truth: str = "measured", protocol: str = "full",
                     failed: dict[tuple[str, str], str] | None = None,
                     noise_ceilings: dict[str, float] | None = None,
                     seeds: list[int] | None = None) -> str:
    """Datasets × metrics rows and one column per method label for one truth and protocol.

    Without ``color`` best is shown as ``**x**`` and second as ``_x_``.  ``failed`` maps
    ``(dataset, label)`` to an error: those cells read ``failed``.  Datasets without the
    asked-for truth show the no-reference metrics instead.
    """
    methods = results.methods
    failed = failed or {}
    # the run's seeds (the manifest's): a grid of deterministic methods only has one seed in
    # its rows, but its cells still ran once for several seeds and say so
    n_seeds = max(1, len(results.seeds), len(seeds or []))
    datasets = [d for d in results.datasets
                if any(r["dataset"] == d and r["protocol"] == protocol for r in results.rows)]
    rows = []
    for ds in datasets:
        present = {r["metric"] for r in results.rows if r["dataset"] == ds and r["protocol"] == protocol
                   and (r["truth"] == truth or r["truth"] == "none")}
        has_truth = truth in results.truths(ds) and any(
            r["dataset"] == ds and r["protocol"] == protocol and r["truth"] == truth for r in results.rows)
        wanted = [*metrics, *extra] if has_truth else list(dict.fromkeys(
            [*(m for m in NO_REFERENCE if m in present), *metrics, *extra]))
        for metric in wanted:
            if metric not in present:
                continue
            summ = results.summary(metric, truth=truth, protocol=protocol)
            rows.append((ds, metric, [summ.get((ds, m)) for m in methods]))
    header = ["Dataset", "Metric", *methods]
    body = []
    for ds, metric, summaries in rows:
        means = [s.mean if s else math.nan for s in summaries]
        stds = [s.std if s else math.nan for s in summaries]
        ranked = rank(means, stds, higher_is_better(metric)) if metric != "seconds" else []
        cells = []
        for i, (m, s) in enumerate(zip(methods, summaries)):
            text = "failed" if (s is None and (ds, m) in failed) else format_cell(s, metric, n_seeds)
            cells.append((text, ranked[i] if ranked else None))
        body.append([ds, TITLES.get(metric, metric), *cells])
    widths = [len(h) for h in header]
    for row in body:
        for j, c in enumerate(row):
            n = len(c[0]) + (4 if not color else 0) if isinstance(c, tuple) else len(c)
            widths[j] = max(widths[j], n)
    lines = ["  ".join(h.ljust(widths[j]) for j, h in enumerate(header))]
    lines.append("  ".join("-" * w for w in widths))
    last_ds = None
    for row in body:
        out = []
        for j, c in enumerate(row):
            if isinstance(c, tuple):
                out.append(_mark(c[0], c[1], color, widths[j]))
            else:
                out.append((c if (j != 0 or c != last_ds) else "").ljust(widths[j]))
        last_ds = row[0]
        lines.append("  ".join(out).rstrip())
    for ds in datasets:
        ceiling = (noise_ceilings or {}).get(ds if protocol == "full" else f"{ds}@{protocol}")
        if ceiling is not None and truth == "measured":
            lines.append(f"noise ceiling of {ds}: {ceiling:.2f} dB (PSNR of the measured truth "
                         f"against the clean one; no method can expect more on the measured truth)")
    return "\n".join(lines)


def caption(results: Results, truth: str, protocol: str, seeds: list[int] | None = None) -> str:
    seeds = seeds or results.seeds
    what = {"measured": "against the measured truth", "clean": "against the noise-free truth"}[truth]
    proto = {"full": "full resolution",
             "reduced": "reduced resolution (Wald: degraded once more, scored on the measured LR maps)"}
    spread = (f"mean ± std over seeds {','.join(map(str, seeds))} (deterministic methods: 1 run)"
              if len(seeds) > 1 else f"seed {seeds[0]}" if seeds else "")
    return f"Table I — {proto[protocol]}, {what}; {spread}; best bold, second underlined, ties marked alike"


def tables(results: Results, *, truth: str = "measured", color: bool = False,
           failed=None, noise_ceilings=None, metrics=("rmse", "psnr"), seeds=None) -> str:
    """Every table of a run: one per protocol and truth (``truth='all'``: both truths)."""
    blocks = []
    for protocol in results.protocols:
        truths = [t for t in ("measured", "clean") if truth in (t, "all")]
        for t in truths:
            if t == "clean" and t not in results.truths():
                continue
            blocks.append(caption(results, t, protocol, seeds) + "\n" + comparison_table(
                results, metrics, color=color, truth=t, protocol=protocol, failed=failed,
                noise_ceilings=noise_ceilings, seeds=seeds))
    return "\n\n".join(blocks)


def by_method_markdown(results: Results, *, metric: str = "psnr", truth: str = "all") -> str:
    """Markdown, one table per protocol: a row per column label, a column per dataset and
    truth (``metric`` as mean ± std, best in bold and second in italics by :func:`rank`),
    and the seconds per dataset.  The transposed Table I, for many methods on few datasets."""
    n_seeds = max(1, len(results.seeds))
    blocks = []
    for protocol in results.protocols:
        datasets = [d for d in results.datasets
                    if any(r["dataset"] == d and r["protocol"] == protocol for r in results.rows)]
        cols = []  # (dataset, truth) with figures
        for ds in datasets:
            for t in ("measured", "clean"):
                if truth in (t, "all") and any(r["dataset"] == ds and r["protocol"] == protocol
                                               and r["truth"] == t and r["metric"] == metric
                                               for r in results.rows):
                    cols.append((ds, t))
        if not cols:
            continue
        methods = results.methods
        header = ["column", *(f"{ds} {TITLES.get(metric, metric)} ({t})" for ds, t in cols),
                  *(f"{ds} s" for ds in datasets)]
        body = [[f"`{m}`"] for m in methods]
        for ds, t in cols:
            summ = results.summary(metric, truth=t, protocol=protocol)
            ss = [summ.get((ds, m)) for m in methods]
            ranked = rank([s.mean if s else math.nan for s in ss], [s.std if s else math.nan for s in ss],
                          higher_is_better(metric))
            for row, s, r in zip(body, ss, ranked):
                text = format_cell(s, metric, n_seeds)
                row.append(f"**{text}**" if r == 1 else f"_{text}_" if r == 2 else text)
        for ds in datasets:
            t = next((t for d, t in cols if d == ds), "measured")
            summ = results.summary("seconds", truth=t, protocol=protocol)
            for row, m in zip(body, methods):
                s = summ.get((ds, m))
                row.append("—" if s is None else f"{s.mean:.0f}")
        lines = [f"protocol: {protocol}", "", "| " + " | ".join(header) + " |",
                 "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(row) + " |" for row in body]
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def _mark(text, r, color, width):
    if color:
        import click

        pad = " " * (width - len(text))
        if r == 1:
            return click.style(text, bold=True) + pad
        if r == 2:
            return click.style(text, underline=True) + pad
        return text + pad
    if r == 1:
        text = f"**{text}**"
    elif r == 2:
        text = f"_{text}_"
    return text.ljust(width)


def run_tables(run_dir, *, truth: str = "measured", color: bool = False,
               metrics: list[str] | None = None) -> str:
    """The tables of a run directory, with its failed cells and noise ceilings (from the
    manifest).  ``metrics``: the rows, in order (``["all"]``: every metric of the run);
    default: the run's ``--metrics`` when it had them, else :func:`default_metrics`."""
    import json
    from pathlib import Path

    from .results import read_results

    results = read_results(run_dir)
    failed: dict[tuple[str, str], str] = {}
    notes: list[str] = []
    ceilings: dict[str, float] = {}
    seeds = None
    manifest = Path(run_dir) / "manifest.json"
    if manifest.exists():
        try:
            m = json.loads(manifest.read_text())
            for t in m.get("timings", []):
                if t.get("error"):
                    for col in t.get("columns", [t.get("method")]):
                        failed[(t["dataset"], col)] = t["error"]
                    seed = f" (seed {t['seed']})" if t.get("seed") is not None else ""
                    where = "" if t.get("protocol", "full") == "full" else f"@{t['protocol']}"
                    notes.append(f"failed: {t['dataset']}{where} / {', '.join(t.get('columns') or [t.get('method')])}"
                                 f"{seed}: {t['error']}")
            for text in m.get("metric_failures", []):
                notes.append(f"{text} (left out of every cell; the maps and other metrics are complete)")
            ceilings = m.get("noise_ceiling_db", {})
            seeds = m.get("options", {}).get("seeds")
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            from .errors import StoreError

            raise StoreError(f"cannot read {str(manifest)!r}: expected the JSON manifest written "
                             f"by maxrf-bench run, found {type(exc).__name__}: {exc}") from None
    present = sorted({r["metric"] for r in results.rows} - {"seconds"})
    if metrics is None and manifest.exists():
        asked = (m.get("options", {}) or {}).get("metrics")
        metrics = [x for x in asked if x != "seconds"] if asked else None
    if metrics == ["all"]:
        metrics = present
    elif metrics is not None:
        unknown = [x for x in metrics if x not in present]
        if unknown and results.rows:
            from .errors import ConfigError

            raise ConfigError(f"--metrics: expected metrics of this run ({', '.join(present)}), "
                              f"found {', '.join(repr(x) for x in unknown)}")
    rows = metrics if metrics is not None else default_metrics(results)
    if failed:  # failed columns appear even when no seed of them finished
        known = set(results.methods)
        extra = [c for (_, c) in failed if c not in known]
        results = Results(results.rows, extra_methods=list(dict.fromkeys(extra)))
    text = tables(results, truth=truth, color=color, failed=failed, noise_ceilings=ceilings,
                  seeds=seeds, metrics=tuple(rows))
    return text + ("\n\n" + "\n".join(notes) if notes else "")
